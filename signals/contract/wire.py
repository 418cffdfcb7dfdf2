"""What crosses the hop between the API service and the runners: the request and answer types, and the ports.

The runners (`signals.runners`) implement these ports as BentoML services; the engine only knows the ports, so
importing the engine neither reads settings nor scans the model store, and tests can hand it a small fake.
`service.py` passes each runner's `to_async` client, which has exactly these async methods.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Protocol

import numpy as np
from bentoml.validators import TensorSchema
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from signals.core.vocab import ACTION_NAMES, CLASS_NAMES
from signals.features.cnn import LOOKBACK, N_FEATURES
from signals.features.ppo import PPO_OBS_SHAPE
from signals.features.registry import CONTEXT_WIDTH

WINDOW_SHAPE: Final = (LOOKBACK, N_FEATURES)
CONTEXT_WINDOW_SHAPE: Final = (LOOKBACK, CONTEXT_WIDTH)  # a family that reads the market context
N_CLASSES: Final = len(CLASS_NAMES)
NO_ACTION: Final = -1


def exact_float32(shape: tuple[int, ...], what: str, *others: tuple[int, ...]) -> BeforeValidator:
    """Pydantic validator: nested lists or an array, coerced to float32, of exactly `shape` (or one of `others`;
    never reshaped)."""

    def coerce(value: Any) -> np.ndarray:
        array = np.asarray(value, dtype=np.float32)
        if array.shape != shape and array.shape not in others:
            allowed = " or ".join(str(s) for s in (shape, *others))
            raise ValueError(f"{what} must have shape {allowed}, got {array.shape}")
        return array

    return BeforeValidator(coerce)


Window = Annotated[
    np.ndarray,
    TensorSchema("numpy-array", "float32"),
    exact_float32(WINDOW_SHAPE, "window (lookback x features)", CONTEXT_WINDOW_SHAPE),
]
Observation = Annotated[
    np.ndarray,
    TensorSchema("numpy-array", "float32", PPO_OBS_SHAPE),
    exact_float32(PPO_OBS_SHAPE, "observation (bars x features: 9 market + the position)"),
]


class WindowRequest(BaseModel):
    """One unscaled feature window for one stored model (`cnn-lstm-btc-usdt-1h`); the runner applies the scaler."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str
    window: Window


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

    @classmethod
    def not_loaded(cls) -> ActionRow:
        return cls(action=NO_ACTION, probabilities=[math.nan] * len(ACTION_NAMES), value=math.nan)


class CnnLstmPort(Protocol):
    """The CNN-LSTM runner as the engine calls it. A row of NaN means: that model is not loaded there."""

    async def predict(self, requests: list[WindowRequest]) -> list[list[float]]:
        """Through the runner's adaptive-batching queue (single requests from many callers)."""
        ...

    async def predict_many(self, requests: list[WindowRequest]) -> list[list[float]]:
        """Straight to the model, for a caller that already holds a batch."""
        ...


class FamiliesPort(CnnLstmPort, Protocol):
    """The runner of the installed model families (`signals.models.plugin`): the same calls, routed by model name."""


class PpoPort(Protocol):
    """The PPO runner as the engine calls it."""

    async def act(self, requests: list[ObservationRequest]) -> list[ActionRow]: ...
