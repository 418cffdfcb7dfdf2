"""Loaded models by name and version, torch-free: the model set of one family and the set of every installed family.

A family on torch (the CNN-LSTM, the PPO: `ModelFamily.on_torch`) loads onto the device the settings resolve, and
only then is torch imported; an installed family (`models.plugin`) computes where its own library does (the seam
hands it no device), so the families runner of a server with no torch-based family never imports torch (~1.7 s of
CPU at each start). The torch-based sets are in `signals.models.local`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from signals.contract.wire import N_CLASSES, WindowRequest
from signals.core.settings import Settings
from signals.models.family import ModelFamily, stored_names

if TYPE_CHECKING:
    from signals.models.family import Device

logger = logging.getLogger(__name__)

NO_TORCH_DEVICE = "cpu"  # what a set of families off torch reports: their libraries compute on the CPU here


def family_device(settings: Settings, family: ModelFamily) -> Device:
    """The torch device the settings resolve (torch configured for it) for a family on torch, else "cpu"."""
    if not family.on_torch:
        return NO_TORCH_DEVICE
    from signals.models.device import configure_torch, resolve_device  # torch: only where a family needs it

    device = resolve_device(settings.device)
    configure_torch(device)
    return device


def group_by_model(models: Iterable[str]) -> dict[str, np.ndarray]:
    """Model key -> positions of its requests in the batch, in first-seen order."""
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


class ModelSet:
    """The loaded models of one family, by name (loaded at start) and by tag (every loaded version)."""

    def __init__(
        self,
        settings: Settings,
        family: ModelFamily,
        *,
        names: Iterable[str] = (),
        tag_of: Callable[[str], str] = lambda name: f"{name}:latest",
    ) -> None:
        self.device = family_device(settings, family)
        self.family = family
        self._loading = threading.Lock()
        wanted = sorted(set(stored_names(family, settings)) | set(names))
        self.models, self.failed = load_each(wanted, lambda name: family.load(tag_of(name), self.device))
        self.versions: Mapping[str, Any] = {model.tag: model for model in self.models.values()}
        logger.info("%s on %s: %d loaded, %d failed", family.name, self.device, len(self.models), len(self.failed))

    def settled(self, key: str) -> bool:
        """Whether `resolve(key)` answers from memory: a name, a loaded tag or a refused one (no store read)."""
        return ":" not in key or key in self.versions or key in self.failed

    def resolve(self, key: str) -> str | None:
        """The loaded tag for a request's `model`: a tag (loaded now if need be) or a name (its start version);
        None when that model cannot be served here (absent, or refused: see `failed`)."""
        if ":" not in key:
            model = self.models.get(key)
            return None if model is None else str(model.tag)
        if key in self.versions:
            return key
        if key in self.failed:
            return None
        with self._loading:
            if key not in self.versions and key not in self.failed:
                try:
                    self.versions = {**self.versions, key: self.family.load(key, self.device)}
                    logger.info("loaded %s on request", key)
                except Exception as error:  # a bad version is refused for its requests only
                    self.failed[key] = f"{type(error).__name__}: {error}"
                    logger.error("model %s refused: %s", key, self.failed[key])
        return key if key in self.versions else None


class LocalFamilies:
    """Every installed family's models in this process (`models.plugin`), one model set per family, answering like
    the CNN-LSTM set: (SHORT, NO_TRADE, LONG) probabilities per window, NaN rows for what is not loaded. A request
    is routed to its family by the model's store name."""

    def __init__(
        self,
        settings: Settings,
        *,
        names: Iterable[str] = (),
        tag_of: Callable[[str], str] = lambda name: f"{name}:latest",
    ) -> None:
        from signals.models.families import plugin_families

        wanted = list(names)
        self.sets = {
            family.name: ModelSet(
                settings,
                family,
                names=[n for n in wanted if n.startswith(f"{family.name}-")],
                tag_of=tag_of,
            )
            for family in plugin_families()
        }
        devices = sorted({str(each.device) for each in self.sets.values()})
        self.device = ", ".join(devices) or NO_TORCH_DEVICE  # what its status reports

    @property
    def models(self) -> dict[str, Any]:
        return {name: model for each in self.sets.values() for name, model in each.models.items()}

    @property
    def versions(self) -> dict[str, Any]:
        return {tag: model for each in self.sets.values() for tag, model in each.versions.items()}

    @property
    def failed(self) -> dict[str, str]:
        return {name: reason for each in self.sets.values() for name, reason in each.failed.items()}

    def _set_of(self, key: str) -> ModelSet | None:
        name = key.split(":", 1)[0]
        found = [family for family in self.sets if name.startswith(f"{family}-")]
        return self.sets[max(found, key=len)] if found else None

    def forward(self, requests: list[WindowRequest]) -> list[list[float]]:
        out = np.full((len(requests), N_CLASSES), np.nan, dtype=np.float32)
        for key, positions in group_by_model(request.model for request in requests).items():
            models = self._set_of(key)
            tag = None if models is None else models.resolve(key)
            if models is None or tag is None:
                continue
            try:
                out[positions] = models.versions[tag].predict_proba(np.stack([requests[i].window for i in positions]))
            except Exception:  # one model's failure answers NaN for its requests only
                logger.exception("model %s failed on a batch of %d", tag, len(positions))
        result: list[list[float]] = out.tolist()
        return result

    async def predict(self, requests: list[WindowRequest]) -> list[list[float]]:
        return self.forward(requests)

    async def predict_many(self, requests: list[WindowRequest]) -> list[list[float]]:
        return self.forward(requests)
