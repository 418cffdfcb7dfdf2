"""Models held in this process, answering the runner ports (`wire.py`): what each runner service runs, and what
the command line uses where no server runs (`signals backfill`, bootstrap).

A model set loads the served models of a family at start, verified, and any other version a request names
(`name:version`: a promoted, pinned or shadow version) on first use; one that fails verification answers NaN for
its own requests only. The CNN-LSTM set stacks same-shape networks so that a batch over many models costs one
forward pass (`models.cnn_lstm.stacked`). The torch-free parts (the model set, the installed families' set) are
`signals.models.model_set`, re-exported here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from signals.contract.wire import N_CLASSES, ActionRow, ObservationRequest, WindowRequest
from signals.core.settings import Settings
from signals.models.cnn_lstm.stacked import StackedGroup, stack_predictors
from signals.models.families import CNN_LSTM, PPO
from signals.models.family import stored_names
from signals.models.model_set import LocalFamilies, ModelSet, group_by_model, load_each

__all__ = ["LocalCnnLstm", "LocalFamilies", "LocalPpo", "ModelSet", "group_by_model", "load_each", "stored_names"]

logger = logging.getLogger(__name__)


class LocalCnnLstm(ModelSet):
    """CNN-LSTMs in this process: (SHORT, NO_TRADE, LONG) probabilities per window, NaN rows for absent models."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(settings, CNN_LSTM, **options)
        self._stacked_versions = self.versions
        self.stacks = stack_predictors(dict(self.versions))

    def forward(self, requests: list[WindowRequest]) -> list[list[float]]:
        out = np.full((len(requests), N_CLASSES), np.nan, dtype=np.float32)
        tags = [self.resolve(request.model) for request in requests]
        with torch.inference_mode():
            for group in self._current_stacks():
                positions = [i for i, tag in enumerate(tags) if tag in group.index]
                if not positions:
                    continue
                try:
                    names = [str(tags[i]) for i in positions]
                    out[positions] = group.predict_proba(names, np.stack([requests[i].window for i in positions]))
                except Exception:  # isolate the failure: retry model by model, NaN only for the failing one
                    logger.exception("stacked forward failed on %d windows; falling back to per-model", len(positions))
                    self._predict_each(requests, tags, positions, out)
        result: list[list[float]] = out.tolist()
        return result

    def _current_stacks(self) -> list[StackedGroup]:
        """The stacks over every loaded version, rebuilt when a version was loaded on request."""
        versions = self.versions
        if versions is not self._stacked_versions:
            with self._loading:
                if versions is not self._stacked_versions:
                    self.stacks = stack_predictors(dict(versions))
                    self._stacked_versions = versions
        return self.stacks

    def _predict_each(
        self, requests: list[WindowRequest], tags: list[str | None], positions: list[int], out: np.ndarray
    ) -> None:
        """Each model of a failed group on its own rows of `out`; a failing model leaves its rows NaN."""
        for tag, group_positions in group_by_model(str(tags[i]) for i in positions).items():
            rows = np.asarray(positions)[group_positions]
            try:
                out[rows] = self.versions[tag].predict_proba(np.stack([requests[i].window for i in rows]))
            except Exception:  # one model's failure answers NaN for its requests only
                logger.exception("cnn-lstm %s failed on a batch of %d", tag, len(rows))

    async def predict(self, requests: list[WindowRequest]) -> list[list[float]]:
        return self.forward(requests)

    async def predict_many(self, requests: list[WindowRequest]) -> list[list[float]]:
        return self.forward(requests)


class LocalPpo(ModelSet):
    """PPO policies in this process: deterministic action, probabilities and value per observation."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(settings, PPO, **options)

    def rows(self, requests: list[ObservationRequest]) -> list[ActionRow]:
        rows = [ActionRow.not_loaded() for _ in requests]
        with torch.inference_mode():
            for key, positions in group_by_model(request.model for request in requests).items():
                tag = self.resolve(key)
                policy = None if tag is None else self.versions.get(tag)
                if policy is None:
                    continue
                try:
                    actions, probs, values = policy.act(np.stack([requests[i].observation for i in positions]))
                except Exception:  # one policy's failure answers NaN for its requests only
                    logger.exception("ppo %s failed on a batch of %d", tag, len(positions))
                    continue
                for row, position in enumerate(positions):
                    rows[position] = ActionRow(
                        action=int(actions[row]),
                        probabilities=[float(p) for p in probs[row]],
                        value=float(values[row]),
                    )
        return rows

    async def act(self, requests: list[ObservationRequest]) -> list[ActionRow]:
        return self.rows(requests)
