"""Labels that are the trade plan the server serves (a triple barrier), and what that plan would have earned.

The plan at bar t: entry = close[t], risk R = stop_atr x ATR[t], stop 1 R away, first target 1 R away. Over
the next `horizon` bars:
- LONG if the high reaches entry + R before the low reaches entry - R;
- SHORT if the low reaches entry - R first;
- NO_TRADE if neither is reached within the horizon, or if the first bar that reaches one reaches both: from a
  candle we cannot tell which came first, so both plans count as stopped (the pessimistic intra-candle rule).

The same function labels training windows, scores evaluation folds and resolves live signals, so a label always
means "what the served plan would have done". Pure: row t reads candles t..t+horizon only, and the last
`horizon` rows (whose horizon has not ended) and the ATR warm-up have no label (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from signals.core.vocab import LONG, NO_TRADE, SHORT
from signals.features.indicators import atr

# What the first barrier bar touched (`first_touch`): nothing within the horizon, the target side of a LONG
# (upper), the target side of a SHORT (lower), or both in one candle.
TOUCHED_NONE: Final = 0
TOUCHED_UPPER: Final = 1
TOUCHED_LOWER: Final = 2
TOUCHED_BOTH: Final = 3


@dataclass(frozen=True)
class PlanOutcomes:
    """Per bar: the label and what a LONG and a SHORT plan opened at that bar's close would have returned.

    Returns are fractions of the entry price before costs; `long_r` / `short_r` are the same in units of R.
    Everything is NaN where the label is unknown (warm-up, or the horizon has not ended yet).
    """

    timestamps: pd.DatetimeIndex
    label: np.ndarray  # float: SHORT, NO_TRADE, LONG or NaN
    touched: np.ndarray  # float: TOUCHED_* or NaN
    bars_to_exit: np.ndarray  # float: bars until the first barrier bar (horizon when none was touched), NaN
    risk: np.ndarray  # R as a fraction of the entry price (stop distance / entry)
    long_return: np.ndarray
    short_return: np.ndarray

    @property
    def long_r(self) -> np.ndarray:
        return self.long_return / self.risk

    @property
    def short_r(self) -> np.ndarray:
        return self.short_return / self.risk

    def __len__(self) -> int:
        return len(self.label)


def trade_plan_outcomes(candles: pd.DataFrame, horizon: int, stop_atr: float = 1.5) -> PlanOutcomes:
    """Label every bar by what the served plan would have done within `horizon` bars (see the module doc)."""
    if horizon < 1 or not stop_atr > 0:
        raise ValueError(f"need horizon >= 1 and stop_atr > 0, got {horizon}, {stop_atr}")
    high = candles["high"].to_numpy(dtype=np.float64)
    low = candles["low"].to_numpy(dtype=np.float64)
    close = candles["close"].to_numpy(dtype=np.float64)
    n = len(close)
    distance = stop_atr * atr(high, low, close)
    upper, lower = close + distance, close - distance
    touched = np.full(n, np.nan)
    bars_to_exit = np.full(n, np.nan)
    exit_close = np.full(n, np.nan)
    known = np.zeros(n, dtype=bool)
    known[: max(n - horizon, 0)] = np.isfinite(distance[: max(n - horizon, 0)])
    open_plans = known.copy()
    touched[known] = TOUCHED_NONE
    for step in range(1, horizon + 1):
        rows = np.flatnonzero(open_plans)
        if not len(rows):
            break
        up = high[rows + step] >= upper[rows]
        down = low[rows + step] <= lower[rows]
        hit = up | down
        done = rows[hit]
        touched[done] = np.where(up[hit] & down[hit], TOUCHED_BOTH, np.where(up[hit], TOUCHED_UPPER, TOUCHED_LOWER))
        bars_to_exit[done] = step
        open_plans[done] = False
    timed_out = np.flatnonzero(open_plans)
    bars_to_exit[timed_out] = horizon
    exit_close[timed_out] = close[timed_out + horizon]
    risk = np.where(known, distance / close, np.nan)
    label = np.full(n, np.nan)
    label[known] = NO_TRADE
    label[touched == TOUCHED_UPPER] = LONG
    label[touched == TOUCHED_LOWER] = SHORT
    drift = exit_close / close - 1.0  # a plan that timed out leaves at the horizon's close
    long_return = np.select(
        [touched == TOUCHED_UPPER, (touched == TOUCHED_LOWER) | (touched == TOUCHED_BOTH), touched == TOUCHED_NONE],
        [risk, -risk, drift],
        np.nan,
    )
    short_return = np.select(
        [touched == TOUCHED_LOWER, (touched == TOUCHED_UPPER) | (touched == TOUCHED_BOTH), touched == TOUCHED_NONE],
        [risk, -risk, -drift],
        np.nan,
    )
    return PlanOutcomes(
        timestamps=pd.DatetimeIndex(candles["timestamp"], name="timestamp"),
        label=label,
        touched=touched,
        bars_to_exit=bars_to_exit,
        risk=risk,
        long_return=long_return,
        short_return=short_return,
    )


def trade_plan_labels(candles: pd.DataFrame, horizon: int, stop_atr: float = 1.5) -> pd.Series:
    """The labels alone, as a Series indexed by bar open time (NaN where unknown)."""
    outcomes = trade_plan_outcomes(candles, horizon, stop_atr)
    return pd.Series(outcomes.label, index=outcomes.timestamps, name="label")


def reversal_calls(close: np.ndarray, horizon: int) -> np.ndarray:
    """The reversal rule's call at each bar: against the last `horizon`-bar move (SHORT after a rise, LONG after a
    fall, NO_TRADE when flat or unknown). A baseline: known at the bar, nothing learned."""
    move = np.full(len(close), np.nan)
    move[horizon:] = close[horizon:] - close[:-horizon]
    return np.where(move > 0, SHORT, np.where(move < 0, LONG, NO_TRADE)).astype(int)


def persistence_calls(label: np.ndarray, horizon: int) -> np.ndarray:
    """The persistence baseline's call at each bar: the label of bar t - horizon, the newest one whose horizon has
    ended at t (NO_TRADE where none is known)."""
    calls = np.full(len(label), NO_TRADE, dtype=int)
    resolved = label[: max(len(label) - horizon, 0)]
    calls[horizon:] = np.where(np.isfinite(resolved), resolved, NO_TRADE).astype(int)
    return calls


def round_trip_cost(fee: float, slippage: float) -> float:
    """What one round trip (entry and exit) costs as a fraction of the notional: fee and slippage on each side."""
    return 2.0 * (fee + slippage)


def break_even_hit_rate(risk: float, cost: float) -> float:
    """The share of plans that must reach their 1 R target (the rest losing 1 R) for the plan to pay its costs.

    p (R - c) - (1 - p)(R + c) = 0  =>  p = (R + c) / 2R, with R and the round-trip cost c as fractions of price.
    """
    if not risk > 0:
        return float("nan")
    return (risk + cost) / (2.0 * risk)
