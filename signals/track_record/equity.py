"""The equity curve of the calls the server made, beside buy-and-hold of the same pairs over the same period.

One code path with the scorecard: the same resolved records (`one_per_candle`), the same calls
(`scored_from_records`) and the same after-cost returns (`skill.call_returns`), so the curve's last point is the
sum of the returns whose mean the scorecard reports as expectancy.

- `served`: the actionable calls (a trade plan was served); `paper`: the calls probation withheld (direction
  recorded, no plan served).
- Each call risks one unit of capital and is booked when its plan ended (signal candle's close plus the bars it
  took to exit, else its horizon): equity is the running sum of after-cost returns, not compounded (calls
  overlap in time and across pairs).
- Buy-and-hold: an equal-weight basket of the records' pairs, bought at the first record's close and marked at
  each record's close, one round-trip cost paid once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np

from signals.core.timeframes import timeframe_seconds
from signals.ledger.rows import SignalRecord
from signals.models.skill import call_returns
from signals.track_record.scorecard import one_per_candle, scored_from_records

EquityMode = Literal["served", "paper"]
MAX_POINTS: Final = 2000  # a chart needs no more; the last point is always kept
NOTE: Final = (
    "each call risks one unit and is booked when its plan ended; after fees and slippage; not compounded. "
    "Buy-and-hold: an equal-weight basket of the same pairs from the first record on, one round trip paid."
)


def equity_curve(
    rows: Sequence[SignalRecord], *, cost: float, mode: EquityMode, filters: dict[str, Any]
) -> dict[str, Any]:
    """The curve of `mode`'s calls among the resolved records `rows` (oldest first); JSON-ready."""
    rows = one_per_candle(rows)
    base: dict[str, Any] = {"mode": mode, "filters": filters, "cost": cost, "note": NOTE}
    if not rows:
        return {**base, **_empty(), "reason": "no resolved signal matches the filters"}
    scored, calls = scored_from_records(rows)
    returns = call_returns(calls, scored.long_return, scored.short_return, cost)
    actionable = np.array([bool(r["actionable"]) for r in rows])
    paper = np.array([bool(r.get("paper")) for r in rows]) & ~actionable
    chosen = (actionable if mode == "served" else paper) & ~np.isnan(returns)
    booked_ms = np.array([_exit_ms(r) for r in rows], dtype=np.int64)
    candle_close_ms = np.array([r["candle_ms"] + 1000 * timeframe_seconds(r["timeframe"]) for r in rows])
    pairs = sorted({r["symbol"] for r in rows})
    times = np.unique(np.concatenate([candle_close_ms, booked_ms[chosen]]))
    equity = _running_sum(booked_ms[chosen], returns[chosen], times)
    basket = _buy_and_hold(rows, candle_close_ms, times, pairs, cost)
    keep = _thinned(len(times))
    points = [
        {"time": int(times[i] // 1000), "equity": float(equity[i]), "buy_and_hold": _finite(basket[i])} for i in keep
    ]
    hits = int((returns[chosen] > 0).sum())
    answer = {
        **base,
        "calls": int(chosen.sum()),
        "hits": hits,
        "total_return": float(returns[chosen].sum()) if chosen.any() else 0.0,
        "mean_return": float(returns[chosen].mean()) if chosen.any() else None,
        "buy_and_hold_return": _finite(basket[-1]),
        "pairs": pairs,
        "points": points,
    }
    if not chosen.any():
        answer["reason"] = f"no {'actionable' if mode == 'served' else 'paper'} call among {len(rows)} resolved records"
    return answer


def _empty() -> dict[str, Any]:
    return {"calls": 0, "hits": 0, "total_return": 0.0, "mean_return": None, "buy_and_hold_return": None,
            "pairs": [], "points": []}  # fmt: skip


def _exit_ms(row: SignalRecord) -> int:
    bars = row.get("bars_to_exit") or row.get("horizon_bars") or 1
    return int(row["candle_ms"] + (1 + int(bars)) * 1000 * timeframe_seconds(row["timeframe"]))


def _running_sum(at_ms: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """At each of `times`: the sum of `values` booked at or before it."""
    order = np.argsort(at_ms, kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(values[order])])
    return cumulative[np.searchsorted(at_ms[order], times, side="right")]


def _buy_and_hold(
    rows: Sequence[SignalRecord], close_ms: np.ndarray, times: np.ndarray, pairs: list[str], cost: float
) -> np.ndarray:
    """The basket's return at each of `times`: each pair marked at its last record's close at or before then; a
    pair counts from its first record on (NaN before any pair has one)."""
    growth = np.full((len(pairs), len(times)), np.nan)
    for i, pair in enumerate(pairs):
        mine = [(t, float(r["close"])) for t, r in zip(close_ms, rows, strict=True) if r["symbol"] == pair]
        mine.sort()
        at = np.array([t for t, _ in mine], dtype=np.int64)
        price = np.array([p for _, p in mine])
        index = np.searchsorted(at, times, side="right") - 1
        known = index >= 0
        growth[i, known] = price[index[known]] / price[0] - 1.0
    with np.errstate(all="ignore"):
        counted = ~np.isnan(growth)
        total = np.where(counted, growth, 0.0).sum(axis=0)
        n = counted.sum(axis=0)
        return np.where(n > 0, total / np.maximum(n, 1) - cost, np.nan)


def _thinned(n: int) -> list[int]:
    if n <= MAX_POINTS:
        return list(range(n))
    step = int(np.ceil(n / MAX_POINTS))
    return sorted(set(range(0, n, step)) | {n - 1})


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
