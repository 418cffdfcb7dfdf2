"""The PPO runner: the latest `ppo-<tf>` policy of each configured timeframe, behind one batchable API.

The model work is `signals.models.local.LocalPpo`; this service adds adaptive batching, counters and status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bentoml

from signals.contract.wire import ObservationRequest
from signals.core.settings import Settings, get_settings
from signals.models.families import PPO
from signals.runners.common import (
    RUNNER_SERVICE_CONFIG,
    ActionRows,
    ModelRunner,
    RunnerStatus,
    batching_options,
    declare_stored,
    declared_tag,
)

if TYPE_CHECKING:  # torch: imported when the runner starts, so that the API process and the arbiter never import it
    from signals.models.local import LocalPpo


class _PpoRunner(ModelRunner):
    """Loads the latest version of each configured PPO policy present in the store, verified, once at start."""

    local: LocalPpo

    def __init__(self, settings: Settings | None = None) -> None:
        from signals.models.local import LocalPpo

        declared = getattr(type(self), "_declared", ())
        self._start(LocalPpo(settings or get_settings(), names=declared, tag_of=lambda name: declared_tag(self, name)))

    @bentoml.api(**batching_options(get_settings()))
    def act(self, requests: list[ObservationRequest]) -> ActionRows:
        """Deterministic action, action probabilities and state value per request, in request order."""
        self.counters.record(len(requests))
        return self.local.rows(requests)

    @bentoml.api
    def status(self) -> RunnerStatus:
        """Loaded policies (name -> tag), refused ones (name -> reason), device, and batching counters."""
        return self._status()


PpoRunner = bentoml.service(name="ppo_runner", **RUNNER_SERVICE_CONFIG)(declare_stored(PPO, get_settings())(_PpoRunner))
