"""What both runners share: model discovery for `bentoml build`, batch bookkeeping, status, grouping by model.

The batching counters live in the runner process on purpose: they count the batches the runner's own
dispatcher formed, which is the proof that adaptive batching happens across the `bentoml.depends` hop.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, ConfigDict, Field

from signals.contract.wire import ActionRow
from signals.core.logs import configure_logging
from signals.core.settings import Settings, get_settings
from signals.models.family import ModelFamily, stored_names

if TYPE_CHECKING:  # a runner imports its model set when it starts (torch: `signals.models.local`), the API never
    from signals.models.model_set import ModelSet

logger = logging.getLogger(__name__)

_ATTR_UNSAFE = re.compile(r"[^a-z0-9]+")


def model_attr(name: str) -> str:
    """The class attribute that declares store model `name` (`cnn-lstm-btc-usdt-1h` -> `model_cnn_lstm_btc_usdt_1h`)."""
    return "model_" + _ATTR_UNSAFE.sub("_", name.lower()).strip("_")


def declare_models(cls: type, names: Iterable[str], pinned: Mapping[str, str]) -> None:
    """Add a `BentoModel("<name>:<pinned version, else latest>")` class attribute per name, before
    `bentoml.service` wraps `cls`.

    BentoML collects only class attributes as the service's models; `bentoml build` then copies exactly
    those into the bento and pins their versions. The set is dynamic (whatever the store holds for the
    configured universe), hence `setattr` at import time. A pin (`SIGNALS_PINNED_VERSIONS`) names the version:
    `make image` pins the versions the ledger serves, so a candidate in shadow never becomes the image's.
    """
    for name in names:
        setattr(cls, model_attr(name), bentoml.models.BentoModel(f"{name}:{pinned.get(name, 'latest')}"))


def declared_tag(instance: object, name: str) -> str:
    """The tag to load for `name`: the declared class attribute's, else the store's latest of that name."""
    declared = getattr(instance, model_attr(name), None)
    if isinstance(declared, bentoml.models.BentoModel):
        return str(declared.tag)
    return f"{name}:latest"


# Every runner service: a short request lifetime (DESIGN: RSS and GC pauses grow with traffic.timeout), the
# dependency-connection fix for upstream issue #5540 (recycling a connection with requests in flight gave
# 7-27 % HTTP 500s under load), one worker (a model copy per worker would not fit the 2-core budget), and BentoML's
# access log as the API service has it (`SIGNALS_ACCESS_LOG`, off: a line per runner call was ~5 % of its CPU).
RUNNER_SERVICE_CONFIG: dict[str, Any] = {
    "traffic": {"timeout": 10},
    "runner_connection": {"max_requests": 10**9, "max_age": 1e9},
    "workers": 1,
    "logging": {"access": {"enabled": get_settings().access_log}},
}

# The answers' media type, stated: BentoML 1.4.39 otherwise derives it for a list answer from a JSON schema that it
# builds again on every response (`IORootModel.mime_type`: ~0.1 ms, a tenth of the runner's CPU on a cold request).
# The same media type it derived, so the same response.
ProbabilityRows = Annotated[list[list[float]], ContentType("application/json")]
ActionRows = Annotated[list[ActionRow], ContentType("application/json")]


def batching_options(settings: Settings) -> dict[str, Any]:
    """Adaptive batching per settings; `max_batch_size` 1 means not batchable (BentoML refuses 1 as a size).

    Read at import: BentoML fixes an API's batching when the class is defined.
    """
    size = settings.max_batch_size
    return {"batchable": size > 1, "max_batch_size": max(size, 2), "max_latency_ms": settings.max_latency_ms}


def declare_stored(family: ModelFamily, settings: Settings) -> Callable[[type], type]:
    """Class decorator: declare every stored model of `family` that the settings serve (see `declare_models`)."""

    def declare(cls: type) -> type:
        names = stored_names(family, settings)
        declare_models(cls, names, settings.pinned_versions)
        cls._declared = tuple(names)  # type: ignore[attr-defined]
        return cls

    return declare


def freeze_heap() -> None:
    """Move everything loaded so far out of the GC's reach: under load this halves gen-2 pauses (DESIGN)."""
    gc.collect()
    gc.freeze()


class BatchStats(BaseModel):
    """How the runner's dispatcher batched: calls, items, the largest batch, and a histogram of sizes."""

    calls: int = 0
    items: int = 0
    max_batch_size: int = 0
    histogram: dict[int, int] = Field(default_factory=dict, description="batch size -> number of calls")

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.calls if self.calls else 0.0


class BatchCounters:
    """Thread-safe batch counters (BentoML may call a sync API from a worker thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: Counter[int] = Counter()

    def record(self, size: int) -> None:
        with self._lock:
            self._sizes[size] += 1

    def snapshot(self) -> BatchStats:
        with self._lock:
            sizes = dict(sorted(self._sizes.items()))
        return BatchStats(
            calls=sum(sizes.values()),
            items=sum(size * count for size, count in sizes.items()),
            max_batch_size=max(sizes, default=0),
            histogram=sizes,
        )


class RunnerStatus(BaseModel):
    """What a runner loaded, what it refused and why, where it computes, and how it has batched."""

    model_config = ConfigDict(extra="forbid")

    loaded: dict[str, str] = Field(description="model name -> the tag loaded at start (name:version)")
    versions: list[str] = Field(default_factory=list, description="every loaded tag, also those loaded on request")
    failed: dict[str, str] = Field(description="name or tag -> why it was refused (names the file when a file failed)")
    device: str
    batching: BatchStats


class ModelRunner:
    """What both runner services share: their local model set (`signals.models.model_set`), batch counters, status."""

    local: ModelSet

    def _start(self, local: ModelSet) -> None:
        configure_logging(get_settings().log_format)  # in the runner's worker, after BentoML's handlers exist
        self.local = local
        self.counters = BatchCounters()
        freeze_heap()

    def _status(self) -> RunnerStatus:
        return RunnerStatus(
            loaded={name: model.tag for name, model in self.local.models.items()},
            versions=sorted(self.local.versions),
            failed=dict(self.local.failed),
            device=str(self.local.device),
            batching=self.counters.snapshot(),
        )
