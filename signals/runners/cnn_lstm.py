"""The CNN-LSTM runner: every (symbol, timeframe) model of the configured universe, behind one batchable API.

A batch mixes models; same-shape models run stacked as one batched network, others one forward pass per model.
A request for a model that is not loaded (absent, or refused at load) gets a row of NaN instead of failing its
neighbours; the caller turns that row into a 503 (failed, see `status()`) or 404 (absent) for that model only.
"""

from __future__ import annotations

import logging

import bentoml
import numpy as np
import torch

from signals.core.settings import Settings, get_settings
from signals.models.cnn_lstm.artifact import CnnLstmPredictor
from signals.models.cnn_lstm.stacked import stack_predictors
from signals.models.families import CNN_LSTM
from signals.runners.common import (
    RUNNER_SERVICE_CONFIG,
    ModelRunner,
    RunnerStatus,
    batching_options,
    declare_stored,
    group_by_model,
)
from signals.serving.wire import N_CLASSES, WindowRequest

logger = logging.getLogger(__name__)


class _CnnLstmRunner(ModelRunner):
    """Loads the latest version of each configured CNN-LSTM present in the store, verified, once at start."""

    models: dict[str, CnnLstmPredictor]

    def __init__(self, settings: Settings | None = None) -> None:
        self._load_models(settings or get_settings(), CNN_LSTM)
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
        result: list[list[float]] = out.tolist()
        return result

    def _predict_each(self, requests: list[WindowRequest], positions: list[int], out: np.ndarray) -> None:
        """Each model of the failed group on its own rows of `out`; a failing model leaves its rows NaN."""
        for name, group_positions in group_by_model(requests[i].model for i in positions).items():
            rows = np.asarray(positions)[group_positions]
            try:
                out[rows] = self.models[name].predict_proba(np.stack([requests[i].window for i in rows]))
            except Exception:  # one model's failure answers NaN for its requests only
                logger.exception("cnn-lstm %s failed on a batch of %d", name, len(rows))

    @bentoml.api
    def status(self) -> RunnerStatus:
        """Loaded models (name -> tag), refused ones (name -> reason), device, and batching counters."""
        return self._status()


CnnLstmRunner = bentoml.service(name="cnn_lstm_runner", **RUNNER_SERVICE_CONFIG)(
    declare_stored(CNN_LSTM, get_settings())(_CnnLstmRunner)
)
