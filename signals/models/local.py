"""Models held in this process, answering the runner ports (`wire.py`): what each runner service runs, and what
the command line uses where no server runs (`signals backfill`, bootstrap).

A model set loads the served models of a family at start, verified, and any other version a request names
(`name:version`: a promoted, pinned or shadow version) on first use; one that fails verification answers NaN for
its own requests only. The CNN-LSTM set stacks same-shape networks so that a batch over many models costs one
forward pass (`models.cnn_lstm.stacked`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from signals.contract.wire import N_CLASSES, ActionRow, ObservationRequest, WindowRequest
from signals.core.settings import Settings
from signals.models.cnn_lstm.stacked import StackedGroup, stack_predictors
from signals.models.device import configure_torch, resolve_device
from signals.models.families import CNN_LSTM, PPO
from signals.models.family import ModelFamily, stored_names

logger = logging.getLogger(__name__)


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
        self.device = resolve_device(settings.device)
        configure_torch(self.device)
        self.family = family
        self._loading = threading.Lock()
        wanted = sorted(set(stored_names(family, settings)) | set(names))
        self.models, self.failed = load_each(wanted, lambda name: family.load(tag_of(name), self.device))
        self.versions: Mapping[str, Any] = {model.tag: model for model in self.models.values()}
        logger.info("%s on %s: %d loaded, %d failed", family.name, self.device, len(self.models), len(self.failed))

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

        self.device = resolve_device(settings.device)
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
