"""The CNN-LSTM runner: every (symbol, timeframe) model of the configured universe, behind one batchable API.

A batch mixes models; it is grouped by model and each group runs as one forward pass. A request for a model
that is not loaded (absent, or refused at load) gets a row of NaN instead of failing its neighbours; the
caller turns that row into a 503 (failed, see `status()`) or 404 (absent) for that model only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

import bentoml
import numpy as np
import torch
from bentoml.validators import TensorSchema
from pydantic import BaseModel, ConfigDict

from signals.core.settings import Settings, get_settings
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.features.cnn import LOOKBACK, N_FEATURES
from signals.features.labels import CLASS_NAMES
from signals.models.cnn_lstm.artifact import FAMILY, CnnLstmPredictor, load_cnn_lstm, model_name
from signals.models.cnn_lstm.stacked import stack_predictors
from signals.runners.common import (
    RUNNER_SERVICE_CONFIG,
    ModelRunner,
    RunnerStatus,
    batching_options,
    declare_stored,
    exact_float32,
    group_by_model,
)

logger = logging.getLogger(__name__)

WINDOW_SHAPE = (LOOKBACK, N_FEATURES)
N_CLASSES = len(CLASS_NAMES)


Window = Annotated[
    np.ndarray,
    TensorSchema("numpy-array", "float32", WINDOW_SHAPE),
    exact_float32(WINDOW_SHAPE, "window (lookback x features)"),
]


class WindowRequest(BaseModel):
    """One unscaled feature window for one stored model (`cnn-lstm-btc-usdt-1h`); the runner applies the scaler."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str
    window: Window


def served_names(settings: Settings) -> set[str]:
    """Store names of the CNN-LSTMs the settings ask for: universe x timeframes."""
    names = set()
    for symbol in settings.universe:
        for timeframe in settings.timeframes:
            try:
                names.add(model_name(symbol, timeframe))
            except ValueError as error:  # a bad entry in the settings must not stop the others
                logger.warning("universe entry %r / %r ignored: %s", symbol, timeframe, error)
    return names


def _wanted(settings: Settings) -> Any:
    names = served_names(settings)

    def wanted(labels: Mapping[str, str]) -> str | None:
        try:
            name = model_name(normalize_symbol(labels.get("symbol", "")), parse_timeframe(labels.get("timeframe", "")))
        except ValueError:
            return None
        return name if name in names else None

    return wanted


class _CnnLstmRunner(ModelRunner):
    """Loads the latest version of each configured CNN-LSTM present in the store, verified, once at start."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self.models: dict[str, CnnLstmPredictor]
        self._load_models(settings, FAMILY, _wanted(settings), load_cnn_lstm)
        # Same-shape models stacked into one network: a /batch over 34 pairs costs one forward, not 34.
        self.stacks = stack_predictors(self.models)

    @bentoml.api(**batching_options(get_settings()))
    def predict(self, requests: list[WindowRequest]) -> list[list[float]]:
        """(SHORT, NO_TRADE, LONG) probabilities per request, in request order; NaN row = model not loaded."""
        self.counters.record(len(requests))
        return self._forward(requests)

    @bentoml.api
    def predict_many(self, requests: list[WindowRequest]) -> list[list[float]]:
        """The same answers, without the batching queue: for a caller that already holds a batch (`/batch`).

        Queued behind single requests, a 34-window call would wait for the dispatcher and fill its batches alone;
        BentoML's dispatcher also learns its wait from such queueing, which slows later lone requests.
        """
        return self._forward(requests)

    def _forward(self, requests: list[WindowRequest]) -> list[list[float]]:
        out = np.full((len(requests), N_CLASSES), np.nan, dtype=np.float32)
        with torch.inference_mode():
            for group in self.stacks:
                positions = [i for i, request in enumerate(requests) if request.model in group.index]
                if not positions:
                    continue
                try:
                    names = [requests[i].model for i in positions]
                    out[positions] = group.predict_proba(names, np.stack([requests[i].window for i in positions]))
                except Exception:  # isolate the failure: retry model by model, NaN only for the failing one
                    logger.exception("stacked forward failed on %d windows; falling back to per-model", len(positions))
                    self._predict_each(requests, positions, out)
        return out.tolist()

    def _predict_each(self, requests: list[WindowRequest], positions: list[int], out: np.ndarray) -> None:
        for name, group_positions in group_by_model(requests[i].model for i in positions).items():
            rows = np.asarray(positions)[group_positions]
            try:
                out[rows] = self.models[name].predict_proba(np.stack([requests[i].window for i in rows]))
            except Exception:  # one model's failure answers NaN for its requests only
                logger.exception("cnn-lstm %s failed on a batch of %d", name, len(rows))
        return out.tolist()

    @bentoml.api
    def status(self) -> RunnerStatus:
        """Loaded models (name -> tag), refused ones (name -> reason), device, and batching counters."""
        return self._status()


CnnLstmRunner = bentoml.service(name="cnn_lstm_runner", **RUNNER_SERVICE_CONFIG)(
    declare_stored(FAMILY, _wanted(get_settings()))(_CnnLstmRunner)
)
