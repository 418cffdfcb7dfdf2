"""Supported candle timeframes and their durations."""

from __future__ import annotations

from typing import Final

import pandas as pd

from signals.core.errors import InvalidTimeframe

TIMEFRAME_SECONDS: Final[dict[str, int]] = {
    "1m": 60,
    "5m": 5 * 60,
    "15m": 15 * 60,
    "30m": 30 * 60,
    "1h": 3600,
    "2h": 2 * 3600,
    "4h": 4 * 3600,
    "1d": 86400,
}
MODEL_TIMEFRAMES: Final[tuple[str, ...]] = ("15m", "1h", "4h", "1d")


def parse_timeframe(timeframe: str) -> str:
    """Return `timeframe` if supported, else raise with the accepted list."""
    if not isinstance(timeframe, str) or timeframe not in TIMEFRAME_SECONDS:
        accepted = ", ".join(TIMEFRAME_SECONDS)
        raise InvalidTimeframe(f"unknown timeframe {str(timeframe)[:20]!r}; accepted: {accepted}")
    return timeframe


def timeframe_seconds(timeframe: str) -> int:
    return TIMEFRAME_SECONDS[parse_timeframe(timeframe)]


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    return pd.Timedelta(seconds=timeframe_seconds(timeframe))
