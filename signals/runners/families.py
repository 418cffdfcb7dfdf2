"""The runner of every installed model family (`signals.models.plugin`): one service, routed by model name.

BentoML 1.4 declares services when their module is imported, so a family installed later cannot bring a service of
its own without a change here; instead this one service serves every family discovery finds when it starts, behind
one batchable API with adaptive batching (a batch is grouped by model and each group is one `predict_proba` call).
A family needs no change to the package: install it, train it, restart (or `/admin/reload` for new versions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bentoml

from signals.contract.wire import WindowRequest
from signals.core.settings import Settings, get_settings
from signals.models.families import plugin_families
from signals.models.family import stored_names
from signals.runners.common import (
    RUNNER_SERVICE_CONFIG,
    ModelRunner,
    ProbabilityRows,
    RunnerStatus,
    batching_options,
    declare_models,
    declared_tag,
)

if TYPE_CHECKING:  # imported when the runner starts: the API process and the arbiter never load a family's libraries
    from signals.models.model_set import LocalFamilies


class _FamiliesRunner(ModelRunner):
    """Loads the latest version of each configured model of every installed family, verified, once at start."""

    local: LocalFamilies  # type: ignore[assignment]

    def __init__(self, settings: Settings | None = None) -> None:
        from signals.models.model_set import LocalFamilies  # torch-free: a family imports its own libraries

        declared = getattr(type(self), "_declared", ())
        local = LocalFamilies(settings or get_settings(), names=declared, tag_of=lambda name: declared_tag(self, name))
        self._start(local)  # type: ignore[arg-type]

    @bentoml.api(**batching_options(get_settings()))
    def predict(self, requests: list[WindowRequest]) -> ProbabilityRows:
        """(SHORT, NO_TRADE, LONG) probabilities per request, in request order; NaN row = model not loaded."""
        self.counters.record(len(requests))
        return self.local.forward(requests)

    @bentoml.api
    def predict_many(self, requests: list[WindowRequest]) -> ProbabilityRows:
        """The same answers without the batching queue, for a caller that already holds a batch (`/batch`)."""
        return self.local.forward(requests)

    @bentoml.api
    def status(self) -> RunnerStatus:
        """Loaded models (name -> tag), refused ones (name -> reason), device, and batching counters."""
        return self._status()


def _declare(cls: type) -> type:
    """Declare every stored model of every installed family the settings serve (`bentoml build` copies them)."""
    names = [name for family in plugin_families() for name in stored_names(family, get_settings())]
    declare_models(cls, names, get_settings().pinned_versions)
    cls._declared = tuple(names)  # type: ignore[attr-defined]
    return cls


FamiliesRunner = bentoml.service(name="families_runner", **RUNNER_SERVICE_CONFIG)(_declare(_FamiliesRunner))
