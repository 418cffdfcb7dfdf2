"""Which models the server answers for, each verified once at start-up.

The API service keeps its own catalog (the runners keep theirs) so that it can answer 404 with the list of
models and 503 for a model whose file failed its SHA-256 without a hop to a runner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from signals.core.errors import ModelIntegrityError, ModelNotFound, SignalsError
from signals.core.settings import Settings
from signals.models.families import CNN_LSTM, FAMILIES, PPO
from signals.models.family import ModelFamily
from signals.models.registry import list_models, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    family: str
    name: str
    tag: str
    version: str
    symbol: str | None
    timeframe: str | None
    metadata: dict[str, Any] = field(repr=False)
    error: str | None = None

    @property
    def accuracy(self) -> float | None:
        """The model's walk-forward (out-of-sample) accuracy on this pair."""
        found = self.metadata.get("metrics", {}).get("accuracy")
        return _number(found.get("value") if isinstance(found, dict) else None)

    @property
    def baseline_accuracy(self) -> float | None:
        """The majority class's share of the same walk-forward test samples (the evaluation period's own)."""
        return _number(self.metadata.get("metrics", {}).get("majority_share"))

    @property
    def edge(self) -> dict[str, Any]:
        """The stored edge verdict; a model stored before the skill gate has none, so it has no evidence."""
        found = self.metadata.get("edge")
        if not isinstance(found, dict) or "verdict" not in found:
            return {
                "verdict": "insufficient_data",
                "metric": "expectancy_after_costs_pct",
                "n": 0,
                "source": "walk_forward",
                "reason": "the model was stored without a walk-forward evaluation; retrain it",
            }
        return found

    @property
    def threshold(self) -> float | None:
        return _number(self.metadata.get("threshold"))

    @property
    def horizon(self) -> int | None:
        value = _number(self.metadata.get("horizon"))
        return None if value is None else int(value)

    @property
    def break_even_hit_rate(self) -> float | None:
        return _number(self.metadata.get("break_even_hit_rate"))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class ModelCatalog:
    """Latest version of each model of the configured universe, with its verification result."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        self.entries = entries
        self._cnn = {(e.symbol, e.timeframe): e for e in entries if e.family == CNN_LSTM.name}
        self._ppo = {e.timeframe: e for e in entries if e.family == PPO.name}

    @classmethod
    def from_store(cls, settings: Settings) -> ModelCatalog:
        """The latest version of every model the settings serve, each verified (SHA-256 and input contract)."""
        entries = []
        for family in FAMILIES:
            wanted = family.wanted(settings)
            latest: dict[str, Any] = {}
            for model in list_models(family.name):  # newest first per name
                if wanted(model.info.labels) is not None:
                    latest.setdefault(model.tag.name, model)
            for model in latest.values():
                key = family.key(model.info.labels)
                assert key is not None, "wanted() keeps only models with well-formed labels"
                entries.append(_verified_entry(family, str(model.tag), *key))
        logger.info("catalog: %d models (%d unavailable)", len(entries), sum(e.error is not None for e in entries))
        return cls(sorted(entries, key=lambda e: (e.family, e.symbol or "", e.timeframe or "")))

    def cnn(self, symbol: str, timeframe: str) -> ModelEntry:
        """The CNN-LSTM for (symbol, timeframe): 404 listing what exists, 503 if it failed verification."""
        entry = self._cnn.get((symbol, timeframe))
        if entry is None:
            available = sorted(f"{s} {tf}" for s, tf in self._cnn)
            raise ModelNotFound(
                f"no CNN-LSTM model for {symbol} {timeframe}; available: {', '.join(available) or 'none'}"
            )
        return _usable(entry)

    def ppo(self, timeframe: str) -> ModelEntry:
        entry = self._ppo.get(timeframe)
        if entry is None:
            available = ", ".join(sorted(tf for tf in self._ppo if tf)) or "none"
            raise ModelNotFound(f"no PPO policy for timeframe {timeframe}; available: {available}")
        return _usable(entry)

    def cnn_symbols(self, timeframe: str) -> list[str]:
        return sorted(s for (s, tf) in self._cnn if tf == timeframe and s is not None)

    @property
    def ready(self) -> bool:
        return any(e.error is None for e in self.entries)


def _usable(entry: ModelEntry) -> ModelEntry:
    if entry.error is not None:
        raise ModelIntegrityError(f"model {entry.name} is unavailable: {entry.error}")
    return entry


def _verified_entry(family: ModelFamily, tag: str, symbol: str | None, timeframe: str) -> ModelEntry:
    name, version = tag.split(":", 1)
    try:
        stored = load_model(tag)
        family.check_contract(stored)
        return ModelEntry(family.name, name, tag, version, symbol, timeframe, stored.metadata)
    except SignalsError as error:
        logger.error("model %s left out: %s", tag, error)
        return ModelEntry(family.name, name, tag, version, symbol, timeframe, {}, error=str(error))
