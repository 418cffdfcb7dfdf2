"""Which model versions the server answers with, each verified, and which run beside them in shadow.

The API service keeps its own catalog (the runners load whatever version it asks for) so that it can answer 404
with the list of models and 503 for a model whose file failed its SHA-256 without a hop to a runner.

Which version serves (`choose_versions`), for each model name:
1. a pin (the `SIGNALS_PINNED_VERSIONS` setting, else `signals models pin`) serves that version;
2. else the version last promoted (`signals models promote`, recorded in the ledger);
3. else, on a fresh install, the newest version (and it is recorded as promoted, so that later ones wait);
4. a version newer than the served one is a *candidate*: computed and recorded in shadow, never served, until
   promoted (or, with `SIGNALS_AUTO_PROMOTE`, served at once).
A served version that fails verification falls back to the newest earlier version that passes, and says so.

Which family serves a (symbol, timeframe) that more than one family has a model for: `FAMILY_RULE`, applied in
`choose_family` (the one place); the other family's model runs in shadow beside it (computed and recorded with mode
`shadow`, never served), and `/models` shows both with their figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from signals.contract import schemas
from signals.core.errors import ModelIntegrityError, ModelNotFound, SignalsError
from signals.core.settings import Settings
from signals.core.symbols import current_symbol
from signals.models.card import ModelCard
from signals.models.families import CNN_LSTM, PPO, all_families
from signals.models.family import ModelFamily
from signals.models.plugin import Skipped, discover
from signals.models.registry import Unreadable, load_model, scan_store

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
    role: str = "served"  # served | shadow
    note: str | None = None  # e.g. why an earlier version serves (fallback)
    lost_to: str | None = None  # the family served instead of this one (`choose_family`)

    @property
    def log_loss_skill(self) -> float | None:
        """The pair's walk-forward log-loss skill over the class frequencies (what `choose_family` compares)."""
        return self.card.log_loss_skill

    @cached_property
    def card(self) -> ModelCard:
        """The metadata, typed (read once per entry)."""
        return ModelCard.from_metadata(self.metadata)

    @property
    def accuracy(self) -> float | None:
        """The model's walk-forward (out-of-sample) accuracy on this pair."""
        return self.card.accuracy

    @property
    def accuracy_ci(self) -> list[float] | None:
        """The 95 % interval of `accuracy` ([low, high]); None for a model stored without one."""
        return self.card.accuracy_ci

    @property
    def baseline_accuracy(self) -> float | None:
        """The majority class's share of the same walk-forward test samples (the evaluation period's own)."""
        return self.card.baseline_accuracy

    @cached_property
    def edge(self) -> dict[str, Any]:
        """The stored edge verdict as the gate may read it (`ModelCard.edge`): never positive without the rule.
        Derived once per catalog load (an entry's metadata does not change), not once per signal."""
        return self.card.edge

    @cached_property
    def edge_model(self) -> schemas.Edge:
        """`edge` validated once as the answers' Edge (shared by every signal of this entry: read-only)."""
        return schemas.Edge.model_validate(self.edge)

    @property
    def threshold(self) -> float | None:
        return self.card.threshold

    @property
    def horizon(self) -> int | None:
        return self.card.horizon

    @property
    def break_even_hit_rate(self) -> float | None:
        return self.card.break_even_hit_rate


@dataclass(frozen=True)
class VersionChoice:
    served: str | None  # version
    candidate: str | None  # a newer version to run in shadow
    reason: str  # pinned | promoted | newest | auto-promote


def choose_versions(
    versions: list[str], state: Mapping[str, Any] | None, pinned: str | None, auto_promote: bool
) -> VersionChoice:
    """The served and candidate version of one model among its `versions` (newest first); see the module doc."""
    if not versions:
        return VersionChoice(None, None, "none stored")
    newest = versions[0]
    if pinned is not None:
        return VersionChoice(pinned, None, "pinned by setting")
    if state and state.get("pinned") and state.get("served_version") in versions:
        return VersionChoice(state["served_version"], None, "pinned")
    promoted = state.get("served_version") if state else None
    if promoted not in versions or auto_promote:
        return VersionChoice(newest, None, "auto-promote" if auto_promote else "newest")
    return VersionChoice(promoted, newest if newest != promoted else None, "promoted")


FAMILY_RULE = (
    "Per (symbol, timeframe), of the families with a verified model, the one with the higher walk-forward log-loss "
    "skill (the pair's out-of-sample test blocks, against the class frequencies) serves and the others run in shadow; "
    "a model without that figure ranks below any with it; on a tie the built-in CNN-LSTM, then the family name first"
)


def choose_family(entries: list[ModelEntry]) -> tuple[ModelEntry, list[ModelEntry]]:
    """`FAMILY_RULE`: the entry that serves among one (symbol, timeframe)'s families, and the others (in shadow)."""

    def rank(entry: ModelEntry) -> tuple[bool, bool, float, bool]:
        skill = entry.log_loss_skill
        return (
            entry.error is None,
            skill is not None,
            skill if skill is not None else 0.0,
            entry.family == CNN_LSTM.name,
        )

    by_name = sorted(entries, key=lambda entry: entry.family)  # a stable sort keeps name order on a full tie
    ordered = sorted(by_name, key=rank, reverse=True)
    return ordered[0], ordered[1:]


def _figure(entry: ModelEntry) -> str:
    skill = entry.log_loss_skill
    return f"{entry.family} {'n/a' if skill is None else f'{skill:+.4f}'}"


def _by_evidence(entries: list[ModelEntry]) -> tuple[list[ModelEntry], list[ModelEntry]]:
    """Served entries with one signal family per (symbol, timeframe) (`choose_family`), and the losers as shadows."""
    groups: dict[tuple[str | None, str | None], list[ModelEntry]] = {}
    served: list[ModelEntry] = []
    for entry in entries:
        if entry.family == PPO.name:
            served.append(entry)
        else:
            groups.setdefault((entry.symbol, entry.timeframe), []).append(entry)
    shadows: list[ModelEntry] = []
    for group in groups.values():
        winner, losers = choose_family(group)
        if not losers:
            served.append(winner)
            continue
        figures = "; ".join(_figure(e) for e in [winner, *losers])
        served.append(replace(winner, note=winner.note or f"chosen by walk-forward log-loss skill ({figures})"))
        for loser in losers:
            if loser.error is None:
                note = f"in shadow: {winner.family} serves by walk-forward log-loss skill ({figures})"
                shadows.append(replace(loser, role="shadow", note=note, lost_to=winner.family))
    return served, shadows


class ModelCatalog:
    """The served version of each model of the configured universe, verified; candidates in shadow beside them."""

    def __init__(
        self,
        entries: list[ModelEntry],
        shadows: list[ModelEntry] | None = None,
        unreadable: list[Unreadable] | None = None,
        skipped: tuple[Skipped, ...] = (),
    ) -> None:
        self.entries = entries
        self.shadows = shadows or []
        self.unreadable = unreadable or []  # versions whose model.yaml BentoML cannot read: skipped, named
        self.skipped = skipped  # installed family packages discovery refused (`models.plugin`): named in /models
        self._cnn = {(e.symbol, e.timeframe): e for e in entries if e.family != PPO.name}  # every signal family
        self._ppo = {e.timeframe: e for e in entries if e.family == PPO.name}

    @classmethod
    def from_store(
        cls,
        settings: Settings,
        states: Mapping[str, Mapping[str, Any]] | None = None,
        verified: dict[str, ModelEntry] | None = None,
    ) -> ModelCatalog:
        """Every model the settings serve, at the version `choose_versions` picks, verified (SHA-256 and input
        contract); `verified` caches verification per tag across reloads."""
        cache = verified if verified is not None else {}
        entries, shadows = [], []
        newest_first, unreadable = scan_store()
        for family in all_families():
            wanted = family.wanted(settings)
            versions: dict[str, list[Any]] = {}
            for model in (m for m in newest_first if m.info.labels.get("family") == family.name):
                if wanted(model.info.labels) is not None:
                    versions.setdefault(model.tag.name, []).append(model)
            labels = {name: models[0].info.labels for name, models in versions.items()}
            current = {family.key(tags) for tags in labels.values() if not family.renamed(tags)}
            for name, models in versions.items():
                key = family.key(labels[name])
                assert key is not None, "wanted() keeps only models with well-formed labels"
                if family.renamed(labels[name]) and key in current:
                    continue  # one trained under the pair's current name serves it; the old name's model retires
                choice = choose_versions(
                    [str(m.tag.version) for m in models],
                    (states or {}).get(name),
                    settings.pinned_versions.get(name),
                    settings.auto_promote,
                )
                if choice.served is None:
                    continue
                tags = [str(m.tag) for m in models]
                entries.append(_served_entry(family, name, choice.served, tags, key, cache))
                if choice.candidate is not None:
                    shadow = verified_entry(family, f"{name}:{choice.candidate}", *key, cache)
                    if shadow.error is None:
                        shadows.append(replace(shadow, role="shadow", note="newer than the served version"))
        entries, lost = _by_evidence(entries)
        shadows += lost
        logger.info(
            "catalog: %d models (%d unavailable), %d in shadow",
            len(entries),
            sum(e.error is not None for e in entries),
            len(shadows),
        )
        return cls(sorted(entries, key=_order), sorted(shadows, key=_order), unreadable, discover().skipped)

    def cnn(self, symbol: str, timeframe: str) -> ModelEntry:
        """The CNN-LSTM for (symbol, timeframe): 404 listing what exists, 503 if it failed verification."""
        entry = self._cnn.get((symbol, timeframe))
        if entry is None:
            self._raise_if_unreadable(CNN_LSTM.store_name(symbol, timeframe))
            available = sorted(f"{s} {tf}" for s, tf in self._cnn)
            now = current_symbol(symbol)
            renamed = f" ({symbol} trades as {now} now: ask for {now})" if now != symbol else ""
            raise ModelNotFound(
                f"no CNN-LSTM model for {symbol} {timeframe}{renamed}; available: {', '.join(available) or 'none'}"
            )
        return _usable(entry)

    def ppo(self, timeframe: str) -> ModelEntry:
        entry = self._ppo.get(timeframe)
        if entry is None:
            self._raise_if_unreadable(PPO.store_name(None, timeframe))
            available = ", ".join(sorted(tf for tf in self._ppo if tf)) or "none"
            raise ModelNotFound(f"no PPO policy for timeframe {timeframe}; available: {available}")
        return _usable(entry)

    def _raise_if_unreadable(self, name: str) -> None:
        """A model that exists but cannot be read is a 503 naming it, not a 404."""
        bad = next((u for u in self.unreadable if u.name == name), None)
        if bad is not None:
            raise ModelIntegrityError(f"model {bad.tag} is unreadable ({bad.reason}); fix or re-import it")

    def serves_ppo(self, timeframe: str) -> bool:
        """A verified policy serves this timeframe."""
        entry = self._ppo.get(timeframe)
        return entry is not None and entry.error is None

    def served_cnn(self, symbol: str, timeframe: str) -> ModelEntry | None:
        """The served CNN-LSTM entry, usable or not; None when there is none."""
        return self._cnn.get((symbol, timeframe))

    def cnn_symbols(self, timeframe: str) -> list[str]:
        return sorted(s for (s, tf) in self._cnn if tf == timeframe and s is not None)

    def shadow_cnn(self, timeframe: str) -> list[ModelEntry]:
        """The shadow signal models of a timeframe: newer versions, and the families that lost `choose_family`."""
        return [e for e in self.shadows if e.family != PPO.name and e.timeframe == timeframe]

    def by_name(self, name: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    @property
    def ready(self) -> bool:
        return any(e.error is None for e in self.entries)


def _order(entry: ModelEntry) -> tuple[str, str, str]:
    return (entry.family, entry.symbol or "", entry.timeframe or "")


def _usable(entry: ModelEntry) -> ModelEntry:
    if entry.error is not None:
        raise ModelIntegrityError(f"model {entry.name} is unavailable: {entry.error}")
    return entry


def _served_entry(
    family: ModelFamily,
    name: str,
    version: str,
    tags: list[str],
    key: tuple[str | None, str],
    cache: dict[str, ModelEntry],
) -> ModelEntry:
    """The chosen version, verified; if it fails, the newest earlier version that passes (a fallback, noted)."""
    chosen = verified_entry(family, f"{name}:{version}", *key, cache)
    if chosen.error is None:
        return chosen
    earlier = tags[tags.index(f"{name}:{version}") + 1 :] if f"{name}:{version}" in tags else []
    for tag in earlier:
        fallback = verified_entry(family, tag, *key, cache)
        if fallback.error is None:
            note = f"fallback: version {version} failed verification ({chosen.error})"
            logger.error("model %s: serving %s instead: %s", name, fallback.version, note)
            return replace(fallback, note=note)
    return chosen


def verified_entry(
    family: ModelFamily, tag: str, symbol: str | None, timeframe: str, cache: dict[str, ModelEntry]
) -> ModelEntry:
    if tag in cache:
        return cache[tag]
    name, version = tag.split(":", 1)
    try:
        stored = load_model(tag)
        family.check_contract(stored)
        entry = ModelEntry(family.name, name, tag, version, symbol, timeframe, stored.metadata)
    except SignalsError as error:
        logger.error("model %s left out: %s", tag, error)
        entry = ModelEntry(family.name, name, tag, version, symbol, timeframe, {}, error=str(error))
    cache[tag] = entry
    return entry
