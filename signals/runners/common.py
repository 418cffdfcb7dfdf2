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
from collections.abc import Callable, Iterable
from typing import Any

import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from signals.core.settings import Settings
from signals.models.device import configure_torch, resolve_device
from signals.models.family import ModelFamily
from signals.models.registry import list_models

logger = logging.getLogger(__name__)

_ATTR_UNSAFE = re.compile(r"[^a-z0-9]+")


def model_attr(name: str) -> str:
    """The class attribute that declares store model `name` (`cnn-lstm-btc-usdt-1h` -> `model_cnn_lstm_btc_usdt_1h`)."""
    return "model_" + _ATTR_UNSAFE.sub("_", name.lower()).strip("_")


def stored_names(family: ModelFamily, settings: Settings) -> list[str]:
    """Names of the stored models of `family` that the settings ask to serve.

    Never raises: a runner module must import (and `bentoml build` must read it) with an empty or odd store.
    """
    wanted = family.wanted(settings)
    try:
        names = {wanted(model.info.labels) for model in list_models(family.name)}
    except Exception as error:  # the store may be absent or half-written; loading reports details later
        logger.warning("could not list %s models in the store: %s", family.name, error)
        return []
    return sorted(name for name in names if name)


def declare_models(cls: type, names: Iterable[str]) -> None:
    """Add a `BentoModel("<name>:latest")` class attribute per name, before `bentoml.service` wraps `cls`.

    BentoML collects only class attributes as the service's models; `bentoml build` then copies exactly
    those into the bento and pins their versions. The set is dynamic (whatever the store holds for the
    configured universe), hence `setattr` at import time.
    """
    for name in names:
        setattr(cls, model_attr(name), bentoml.models.BentoModel(f"{name}:latest"))


def declared_tag(instance: object, name: str) -> str:
    """The tag to load for `name`: the declared class attribute's, else the store's latest of that name."""
    declared = getattr(instance, model_attr(name), None)
    if isinstance(declared, bentoml.models.BentoModel):
        return str(declared.tag)
    return f"{name}:latest"


# Every runner service: a short request lifetime (DESIGN: RSS and GC pauses grow with traffic.timeout), the
# dependency-connection fix for upstream issue #5540 (recycling a connection with requests in flight gave
# 7-27 % HTTP 500s under load), and one worker (a model copy per worker would not fit the 2-core budget).
RUNNER_SERVICE_CONFIG: dict[str, Any] = {
    "traffic": {"timeout": 10},
    "runner_connection": {"max_requests": 10**9, "max_age": 1e9},
    "workers": 1,
}


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
        declare_models(cls, names)
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

    loaded: dict[str, str] = Field(description="model name -> loaded tag (name:version)")
    failed: dict[str, str] = Field(description="model name -> why it was refused (names the file when a file failed)")
    device: str
    batching: BatchStats


class ModelRunner:
    """What both runners do at start and report: load the served models of a family, verified, and say how."""

    models: dict[str, Any]
    failed: dict[str, str]

    def _load_models(self, settings: Settings, family: ModelFamily) -> None:
        """Device from settings, one torch thread on CPU, every served model loaded on its own, heap frozen."""
        self.device = resolve_device(settings.device)
        configure_torch(self.device)
        self.counters = BatchCounters()
        names = sorted(set(stored_names(family, settings)) | set(getattr(type(self), "_declared", ())))
        self.models, self.failed = load_each(names, lambda name: family.load(declared_tag(self, name), self.device))
        logger.info(
            "%s runner on %s: %d loaded, %d failed", family.name, self.device, len(self.models), len(self.failed)
        )
        freeze_heap()

    def _status(self) -> RunnerStatus:
        return RunnerStatus(
            loaded={name: model.tag for name, model in self.models.items()},
            failed=dict(self.failed),
            device=str(self.device),
            batching=self.counters.snapshot(),
        )


def group_by_model(models: Iterable[str]) -> dict[str, np.ndarray]:
    """Model name -> positions of its requests in the batch, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for position, name in enumerate(models):
        groups.setdefault(name, []).append(position)
    return {name: np.asarray(positions, dtype=np.int64) for name, positions in groups.items()}


def load_each(names: Iterable[str], load: Callable[[str], Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Load every name independently: one bad model is recorded with its error and the others still load."""
    loaded: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            loaded[name] = load(name)
        except Exception as error:  # any failure of one model must leave the others serving
            failed[name] = f"{type(error).__name__}: {error}"
            logger.error("model %s left out: %s", name, failed[name])
    return loaded, failed
