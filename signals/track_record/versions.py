"""Model versions side by side: which version serves, which runs in shadow, and how one replaces the other.

The choice itself is `catalog.choose_versions`; this module keeps its state in the ledger and records every
change as an event:
- `current_catalog` builds the catalog from the store and the ledger's state; on a fresh install it records the
  served versions (event `serve`), so that versions stored later wait in shadow;
- `promote` serves a candidate when its scorecard beats the served version's by the PROMOTION_RULE (or when
  forced), `rollback` serves the version served before, `pin` / `unpin` hold a version whatever arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from signals.core.errors import Conflict, ModelNotFound
from signals.core.settings import Settings
from signals.core.timeframes import utc_now
from signals.features.labels import round_trip_cost
from signals.ledger.records import ms
from signals.ledger.rows import ModelEventRecord
from signals.ledger.store import Ledger
from signals.models.registry import list_models
from signals.serving.catalog import ModelCatalog
from signals.serving.engine import SignalEngine
from signals.track_record.scorecard import one_per_candle, scorecard

logger = logging.getLogger(__name__)

MIN_COMMON: Final = 30
PROMOTION_RULE: Final = (
    "on the candles both versions were recorded for (live, shadow or backfill), the candidate needs at least "
    f"{MIN_COMMON} resolved signals, a log-loss skill higher than the served version's, and an edge verdict that "
    "is not negative"
)


def current_catalog(
    settings: Settings, ledger: Ledger | None, clock: Callable[[], pd.Timestamp] = utc_now
) -> ModelCatalog:
    """The catalog the server should serve now (see the module doc)."""
    states = ledger.model_states() if ledger is not None else {}
    catalog = ModelCatalog.from_store(settings, states)
    if ledger is not None:
        for entry in catalog.entries:
            if entry.name not in states and entry.error is None:
                now = ms(clock())
                ledger.set_model_state(entry.name, entry.version, False, now)
                ledger.add_event(
                    {
                        "at_ms": now,
                        "kind": "serve",
                        "model_name": entry.name,
                        "from_version": None,
                        "to_version": entry.version,
                        "reason": "first version served",
                        "detail": None,
                    }
                )
    return catalog


def reload_catalog(
    engine: SignalEngine, settings: Settings, ledger: Ledger | None, clock: Callable[[], pd.Timestamp] = utc_now
) -> dict[str, Any]:
    """Give the engine the catalog it should serve now (`current_catalog`) and say what changed: the one place a
    running engine's catalog is replaced (an operator's reload, a promotion or rollback, the candle-close loop)."""
    before = {e.name: e.version for e in engine.catalog.entries}
    engine.catalog = current_catalog(settings, ledger, clock)
    after = {e.name: e.version for e in engine.catalog.entries}
    return {
        "served": after,
        "changed": {
            name: [before.get(name), version] for name, version in after.items() if before.get(name) != version
        },
        "shadow": {e.name: e.version for e in engine.catalog.shadows},
    }


@dataclass(frozen=True)
class Decision:
    model_name: str
    from_version: str | None
    to_version: str
    promoted: bool
    reason: str
    candidate: dict[str, Any]
    served: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rule": PROMOTION_RULE}


def _versions(model_name: str) -> list[str]:
    versions = [str(m.tag.version) for m in list_models() if m.tag.name == model_name]
    if not versions:
        raise ModelNotFound(f"no model {model_name!r} in the model store; run `signals models` to list them")
    return versions


def promote(
    ledger: Ledger,
    settings: Settings,
    model_name: str,
    version: str | None = None,
    *,
    force: bool = False,
    clock: Callable[[], pd.Timestamp] = utc_now,
) -> Decision:
    """Serve `version` (default: the newest) if it beats the served version by PROMOTION_RULE, or if `force`."""
    versions = _versions(model_name)
    candidate = version or versions[0]
    if candidate not in versions:
        raise ModelNotFound(f"{model_name} has no version {candidate!r}; stored: {', '.join(versions[:10])}")
    state = ledger.model_states().get(model_name)
    served = state["served_version"] if state else None
    if served == candidate:
        return Decision(model_name, served, candidate, False, "already served", {}, {})
    cost = round_trip_cost(settings.fee, settings.slippage)
    cand_card, served_card = _common_scorecards(ledger, model_name, candidate, served, cost)
    beats, why = _beats(cand_card, served_card)
    promoted = force or beats
    reason = ("forced: " + why) if force and not beats else why
    if promoted:
        now = ms(clock())
        ledger.set_model_state(model_name, candidate, bool(state and state["pinned"]), now)
        ledger.add_event(
            {
                "at_ms": now,
                "kind": "promote",
                "model_name": model_name,
                "from_version": served,
                "to_version": candidate,
                "reason": reason,
                "detail": {"candidate": _summary(cand_card), "served": _summary(served_card)},
            }
        )
    return Decision(model_name, served, candidate, promoted, reason, _summary(cand_card), _summary(served_card))


def _common_scorecards(
    ledger: Ledger, model_name: str, candidate: str, served: str | None, cost: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both versions' scorecards on the candles both have resolved records for (a fair comparison)."""
    mine = one_per_candle(ledger.resolved(model_name=model_name, model_version=candidate))
    theirs = one_per_candle(ledger.resolved(model_name=model_name, model_version=served)) if served else []
    if served:
        common = {r["candle_ms"] for r in mine} & {r["candle_ms"] for r in theirs}
        mine = [r for r in mine if r["candle_ms"] in common]
        theirs = [r for r in theirs if r["candle_ms"] in common]
    filters = {"model_name": model_name}
    return (
        scorecard(mine, cost=cost, filters={**filters, "model_version": candidate}),
        scorecard(theirs, cost=cost, filters={**filters, "model_version": served}),
    )


def _beats(candidate: dict[str, Any], served: dict[str, Any]) -> tuple[bool, str]:
    if candidate.get("n", 0) < MIN_COMMON:
        return False, f"only {candidate.get('n', 0)} resolved signals on common candles (needs {MIN_COMMON})"
    if candidate.get("verdict") == "negative":
        return False, "the candidate's edge is negative"
    mine = (candidate.get("log_loss_skill") or {}).get("value")
    theirs = (served.get("log_loss_skill") or {}).get("value") if served.get("n") else None
    if mine is None:
        return False, "the candidate has no log-loss skill to compare"
    if theirs is not None and mine <= theirs:
        return False, f"log-loss skill {mine:+.4f} is not above the served version's {theirs:+.4f}"
    versus = "n/a" if theirs is None else f"{theirs:+.4f}"
    return True, f"log-loss skill {mine:+.4f} vs {versus} of the served version, verdict {candidate.get('verdict')}"


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    return {key: card.get(key) for key in ("n", "verdict", "accuracy", "log_loss_skill", "edge") if key in card}


def rollback(
    ledger: Ledger,
    model_name: str,
    version: str | None = None,
    *,
    force: bool = False,
    clock: Callable[[], pd.Timestamp] = utc_now,
) -> Decision:
    """Serve again an earlier version: by default the one served before the last promotion (or rollback).

    `version` names the version to go back to; it must be one this model served before (its recorded events say
    so), unless `force`, which accepts any stored version. A pinned model is held whatever arrives: rolling it
    back needs `force` too (the pin then moves to the version rolled back to).
    """
    state = ledger.model_states().get(model_name)
    if not state or not state["served_version"]:
        raise Conflict(f"{model_name} has no served version recorded to roll back from")
    current = state["served_version"]
    pinned = bool(state["pinned"])
    if pinned and not force:
        raise Conflict(f"{model_name} is pinned to {current}: unpin it first, or force the rollback")
    events = ledger.events(model_name)
    if version is None:
        target = next(
            (
                e["from_version"]
                for e in events
                if e["kind"] in ("promote", "rollback", "pin") and e["to_version"] == current and e["from_version"]
            ),
            None,
        )
        if target is None:
            raise Conflict(f"{model_name}: no earlier served version is recorded")
    else:
        target = version
        served_before = _served_before(events)
        if target not in served_before:
            if not force:
                shown = ", ".join(sorted(served_before - {current})) or "none"
                raise Conflict(
                    f"{model_name} never served version {target!r} (served before: {shown}); "
                    "force it to serve a version that was never served"
                )
            stored = _versions(model_name)
            if target not in stored:
                raise ModelNotFound(f"{model_name} has no version {target!r}; stored: {', '.join(stored[:10])}")
        if target == current:
            return Decision(model_name, current, current, False, "already served", {}, {})
    reason = "rolled back" + (" (forced)" if force and (pinned or version is not None) else "")
    now = ms(clock())
    ledger.set_model_state(model_name, target, pinned, now)
    ledger.add_event(
        {
            "at_ms": now,
            "kind": "rollback",
            "model_name": model_name,
            "from_version": current,
            "to_version": target,
            "reason": reason,
            "detail": None,
        }
    )
    return Decision(model_name, current, target, True, reason, {}, {})


def _served_before(events: Sequence[ModelEventRecord]) -> set[str]:
    """Every version a model's recorded events show it serving (before or after a change)."""
    kinds = ("serve", "promote", "rollback", "pin", "unpin", "fallback")
    versions: set[str] = set()
    for event in events:
        if event["kind"] in kinds:
            versions.update(v for v in (event["from_version"], event["to_version"]) if v)
    return versions


def pin(
    ledger: Ledger, model_name: str, version: str | None, *, clock: Callable[[], pd.Timestamp] = utc_now
) -> Decision:
    """Hold `version` (None: unpin, keeping the served version) whatever versions arrive."""
    state = ledger.model_states().get(model_name)
    current = state["served_version"] if state else None
    now = ms(clock())
    if version is None:
        if current is None:
            raise Conflict(f"{model_name} is not pinned")
        ledger.set_model_state(model_name, current, False, now)
        ledger.add_event(
            {
                "at_ms": now,
                "kind": "unpin",
                "model_name": model_name,
                "from_version": current,
                "to_version": current,
                "reason": "unpinned",
                "detail": None,
            }
        )
        return Decision(model_name, current, current, False, "unpinned", {}, {})
    if version not in _versions(model_name):
        raise ModelNotFound(f"{model_name} has no version {version!r}")
    ledger.set_model_state(model_name, version, True, now)
    ledger.add_event(
        {
            "at_ms": now,
            "kind": "pin",
            "model_name": model_name,
            "from_version": current,
            "to_version": version,
            "reason": "pinned",
            "detail": None,
        }
    )
    return Decision(model_name, current, version, True, "pinned", {}, {})
