"""The PPO runner: the latest `ppo-<tf>` policy of each configured timeframe, behind one batchable API.

Same pattern as the CNN-LSTM runner: a batch is grouped by model, each group is one forward pass, and a
request for a policy that is not loaded gets a NaN row (action -1) instead of failing its neighbours.
"""

from __future__ import annotations

import logging

import bentoml
import numpy as np
import torch

from signals.core.settings import Settings, get_settings
from signals.models.families import PPO
from signals.models.ppo.artifact import PpoPolicy
from signals.runners.common import (
    RUNNER_SERVICE_CONFIG,
    ModelRunner,
    RunnerStatus,
    batching_options,
    declare_stored,
    group_by_model,
)
from signals.serving.wire import ActionRow, ObservationRequest

logger = logging.getLogger(__name__)


class _PpoRunner(ModelRunner):
    """Loads the latest version of each configured PPO policy present in the store, verified, once at start."""

    models: dict[str, PpoPolicy]

    def __init__(self, settings: Settings | None = None) -> None:
        self._load_models(settings or get_settings(), PPO)

    @bentoml.api(**batching_options(get_settings()))
    def act(self, requests: list[ObservationRequest]) -> list[ActionRow]:
        """Deterministic action, action probabilities and state value per request, in request order."""
        self.counters.record(len(requests))
        rows = [ActionRow.not_loaded() for _ in requests]
        with torch.inference_mode():
            for name, positions in group_by_model(request.model for request in requests).items():
                policy = self.models.get(name)
                if policy is None:
                    continue
                try:
                    actions, probs, values = policy.act(np.stack([requests[i].observation for i in positions]))
                except Exception:  # one policy's failure answers NaN for its requests only
                    logger.exception("ppo %s failed on a batch of %d", name, len(positions))
                    continue
                for row, position in enumerate(positions):
                    rows[position] = ActionRow(
                        action=int(actions[row]),
                        probabilities=[float(p) for p in probs[row]],
                        value=float(values[row]),
                    )
        return rows

    @bentoml.api
    def status(self) -> RunnerStatus:
        """Loaded policies (name -> tag), refused ones (name -> reason), device, and batching counters."""
        return self._status()


PpoRunner = bentoml.service(name="ppo_runner", **RUNNER_SERVICE_CONFIG)(declare_stored(PPO, get_settings())(_PpoRunner))
