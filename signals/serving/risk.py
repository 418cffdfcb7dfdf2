"""ATR-based risk levels for a directional signal: entry, stop-loss, take-profits and their ETA.

LONG: entry = last close, stop = entry - k_sl * ATR, take-profit r = entry + r * (entry - stop).
SHORT mirrors it. NO_TRADE has no levels.

ETA: a market moving like a random walk with a typical bar range of one ATR covers a distance of d ATRs
in about d**2 bars (distance grows with the square root of time). So
``eta_minutes = ceil((distance / ATR) ** 2) * minutes_per_bar``, with distance = |take_profit - entry|.
It is an order-of-magnitude expectation, not a promise: it assumes no drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from signals.core.timeframes import timeframe_seconds


@dataclass(frozen=True)
class TakeProfit:
    level: int
    price: float
    r_multiple: float
    eta_minutes: int


@dataclass(frozen=True)
class RiskLevels:
    entry: float
    stop_loss: float
    take_profits: list[TakeProfit]
    atr: float
    risk_reward: float


def round_to_tick(price: float, tick: float | None) -> float:
    """Round to the market's tick size when known (ccxt's precision), else keep 10 significant digits."""
    if tick and tick > 0:
        step = Decimal(str(tick))
        return float((Decimal(str(price)) / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * step)
    return float(f"{price:.10g}")


def eta_minutes(distance: float, atr: float, timeframe: str) -> int:
    bars = math.ceil((distance / atr) ** 2) if atr > 0 else 0
    return max(bars, 1) * timeframe_seconds(timeframe) // 60


def risk_levels(
    direction: str,
    *,
    close: float,
    atr: float,
    timeframe: str,
    stop_atr: float = 1.5,
    r_multiples: tuple[float, ...] = (1.0, 2.0, 3.0),
    tick: float | None = None,
) -> RiskLevels | None:
    """Levels for LONG or SHORT from the last close and the ATR of the same closed window; None for NO_TRADE."""
    if direction == "NO_TRADE":
        return None
    if direction not in ("LONG", "SHORT"):
        raise ValueError(f"direction must be LONG, SHORT or NO_TRADE, got {direction!r}")
    if not (math.isfinite(close) and math.isfinite(atr)) or close <= 0 or atr <= 0:
        raise ValueError(f"need a positive close and ATR, got close={close}, atr={atr}")
    sign = 1.0 if direction == "LONG" else -1.0
    risk = stop_atr * atr
    entry = round_to_tick(close, tick)
    stop = round_to_tick(close - sign * risk, tick)
    take_profits = [
        TakeProfit(
            level=i,
            price=round_to_tick(close + sign * r * risk, tick),
            r_multiple=float(r),
            eta_minutes=eta_minutes(r * risk, atr, timeframe),
        )
        for i, r in enumerate(r_multiples, start=1)
    ]
    return RiskLevels(
        entry=entry,
        stop_loss=stop,
        take_profits=take_profits,
        atr=float(f"{atr:.10g}"),
        risk_reward=float(max(r_multiples)) if r_multiples else 0.0,
    )
