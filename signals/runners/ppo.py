"""The PPO runner: the latest `ppo-<tf>` policy of each configured timeframe, behind one batchable API.

Same pattern as the CNN-LSTM runner: a batch is grouped by model, each group is one forward pass, and a
request for a policy that is not loaded gets a NaN row (action -1) instead of failing its neighbours.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Annotated, Any

import bentoml
import numpy as np
import torch
from bentoml.validators import TensorSchema
from pydantic import BaseModel, ConfigDict, Field

from signals.core.settings import Settings, get_settings
from signals.core.timeframes import parse_timeframe
from signals.features.ppo import PPO_OBS_SHAPE
from signals.models.ppo.artifact import FAMILY, PpoPolicy, load_ppo, model_name
from signals.models.ppo.env import ACTION_NAMES
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

NO_ACTION = -1


Observation = Annotated[
    np.ndarray,
    TensorSchema("numpy-array", "float32", PPO_OBS_SHAPE),
    exact_float32(PPO_OBS_SHAPE, "observation (bars x features: 9 market + the position)"),
]


class ObservationRequest(BaseModel):
    """One observation for one stored policy (`ppo-1h`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str
    observation: Observation


class ActionRow(BaseModel):
    """The policy's answer to one observation. `action == -1` and NaN numbers: that policy is not loaded.

    NaN is written to JSON as the `NaN` literal (`ser_json_inf_nan="constants"`), which Python's and
    BentoML's JSON readers accept, so the row survives the HTTP hop between services.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    action: int = Field(description=f"index into {list(ACTION_NAMES)}; -1 when the policy is not loaded")
    probabilities: list[float] = Field(description=f"probability of each action, {list(ACTION_NAMES)} order")
    value: float = Field(description="the critic's state value")

    @property
    def missing(self) -> bool:
        return self.action == NO_ACTION or any(math.isnan(p) for p in self.probabilities)


def served_names(settings: Settings) -> set[str]:
    """Store names of the policies the settings ask for: one `ppo-<tf>` per timeframe."""
    names = set()
    for timeframe in settings.timeframes:
        try:
            names.add(model_name(parse_timeframe(timeframe)))
        except ValueError as error:
            logger.warning("timeframe %r ignored: %s", timeframe, error)
    return names


def _wanted(settings: Settings) -> Any:
    names = served_names(settings)

    def wanted(labels: Mapping[str, str]) -> str | None:
        name = model_name(labels.get("timeframe", ""))
        return name if name in names else None

    return wanted


def _missing_row() -> ActionRow:
    return ActionRow(action=NO_ACTION, probabilities=[math.nan] * len(ACTION_NAMES), value=math.nan)


class _PpoRunner(ModelRunner):
    """Loads the latest version of each configured PPO policy present in the store, verified, once at start."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self.models: dict[str, PpoPolicy]
        self._load_models(settings, FAMILY, _wanted(settings), lambda tag, device: load_ppo(tag, str(device)))

    @bentoml.api(**batching_options(get_settings()))
    def act(self, requests: list[ObservationRequest]) -> list[ActionRow]:
        """Deterministic action, action probabilities and state value per request, in request order."""
        self.counters.record(len(requests))
        rows = [_missing_row() for _ in requests]
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


PpoRunner = bentoml.service(name="ppo_runner", **RUNNER_SERVICE_CONFIG)(
    declare_stored(FAMILY, _wanted(get_settings()))(_PpoRunner)
)
