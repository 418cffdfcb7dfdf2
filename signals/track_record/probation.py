"""Probation: a model whose walk-forward edge is positive serves trade plans only once its own live calls confirm it,
and loses them again when its live calls fall below break-even.

The calls judged are a version's resolved `live` records that served a plan (actionable) or would have but for
probation (`paper`: LONG/SHORT, confidence at or above the threshold, fresh); their after-cost return is the
resolver's `call_return`. The interval is `skill.block_bootstrap`'s 95 % interval of the mean, resampling whole
horizons of calendar time (overlapping plans share a block), as the scorecard does. See RULE.

`standing` is the pure rule; `refresh_standings` reads the ledger, applies it to every served positive model and
records each change once in `model_events` (kinds `probation`, `probation_pass`, `demotion`) with its figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np

from signals.core.timeframes import timeframe_seconds
from signals.ledger.rows import CallRow, ModelEventRecord
from signals.ledger.store import Ledger
from signals.models.families import PPO
from signals.models.skill import block_bootstrap
from signals.serving.catalog import ModelEntry
from signals.serving.gate import Standing

logger = logging.getLogger(__name__)

SEED: Final = 0  # the bootstrap's draws: the same calls always give the same standing
RULE: Final = (
    "a model with a positive walk-forward edge serves plans only after at least N of its live calls (LONG/SHORT at "
    "or above its threshold, fresh; paper calls while on probation) have resolved and the 95 % block-bootstrap "
    "interval of their mean after-cost return lies above 0; it is demoted (no plans) when, over at least N resolved "
    "calls, that interval lies entirely below 0. N is SIGNALS_PROBATION_CALLS (default 30)."
)
EVENTS: Final = {"probation": "probation", "serving": "probation_pass", "demoted": "demotion"}


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:+.2f} %"


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def standing(calls: Sequence[CallRow], *, needed: int, previous: str | None = None) -> Standing:
    """The standing of one model version from its resolved calls (each with candle_ms, timeframe, horizon_bars and
    call_return) and its `previous` state (from its events: None, probation, serving or demoted).

    Too few calls is probation, never a pass; a served model stays served while its interval straddles 0; a
    demotion holds for the version (a new version starts its own probation)."""
    n = len(calls)
    if n:
        returns = np.array([float(c["call_return"]) for c in calls], dtype=np.float64)
        blocks = np.array(
            [
                int(c["candle_ms"])
                // (max(int(c.get("horizon_bars") or 1), 1) * timeframe_seconds(c["timeframe"]) * 1000)
                for c in calls
            ],
            dtype=np.int64,
        )
        interval = block_bootstrap(returns, None, blocks, rng=np.random.default_rng(SEED))
        value, low, high = _finite(interval.value), _finite(interval.low), _finite(interval.high)
    else:
        value = low = high = None
    figures = describe(Standing("probation", None, n, needed, value, low, high))

    def make(state: str, reason: str | None) -> Standing:
        return Standing(state, reason, n, needed, value, low, high)  # type: ignore[arg-type]

    if previous == "demoted":
        return make("demoted", f"demoted: its live calls fell below break-even ({figures})")
    if n >= needed and high is not None and high < 0:
        return make("demoted", f"demoted: its live calls fell below break-even ({figures})")
    if n >= needed and low is not None and low > 0:
        return make("serving", None)
    if previous == "serving":
        return make("serving", None)  # confirmed once; only an interval entirely below 0 takes the plans away
    if n < needed:
        return make("probation", f"on probation: {n} of {needed} resolved calls")
    return make("probation", f"on probation: {figures} does not clear 0 yet")


def describe(standing: Standing) -> str:
    """The figures behind a standing, in one line (returns as percent of price for reading)."""
    interval = f"[{_percent(standing.ci_low)}, {_percent(standing.ci_high)}]"
    return f"mean after-cost return {_percent(standing.value)} per call {interval} over {standing.n} calls"


def previous_state(events: Iterable[ModelEventRecord], version: str) -> str | None:
    """The version's last probation state recorded in its model's events (newest first, as `Ledger.events`)."""
    states = {kind: state for state, kind in EVENTS.items()}
    for event in events:
        if event["to_version"] == version and event["kind"] in states:
            return states[event["kind"]]
    return None


def refresh_standings(
    ledger: Ledger,
    entries: Iterable[ModelEntry],
    *,
    needed: int,
    now_ms: int,
    record_events_for: Iterable[str] = (),
) -> dict[tuple[str, str], Standing]:
    """The standing of every served CNN-LSTM model whose walk-forward edge is positive; each change of state becomes one
    `model_events` row, for the models of the timeframes in `record_events_for` (the refreshes this worker led:
    one writer per change, however many workers read)."""
    writing = set(record_events_for)
    standings: dict[tuple[str, str], Standing] = {}
    for entry in entries:
        if entry.family == PPO.name or entry.error is not None or entry.edge.get("verdict") != "positive":
            continue  # the PPO's actions are not resolved: it has no probation yet
        events = ledger.events(entry.name)
        previous = previous_state(events, entry.version)
        now = standing(ledger.calls(entry.name, entry.version), needed=needed, previous=previous)
        standings[(entry.name, entry.version)] = now
        if now.state != previous and entry.timeframe in writing:
            ledger.add_event(
                {
                    "at_ms": now_ms,
                    "kind": EVENTS[now.state],
                    "model_name": entry.name,
                    "from_version": entry.version,
                    "to_version": entry.version,
                    "reason": now.reason or f"probation passed, plans served: {describe(now)}",
                    "detail": {**now.as_dict(), "previous": previous, "rule": RULE},
                }
            )
            logger.info("%s:%s %s -> %s (%s)", entry.name, entry.version, previous, now.state, now.reason)
    return standings
