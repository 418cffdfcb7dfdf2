"""Supported candle timeframes, their durations, and the clock rules built on them.

A candle is named by its **open** time t and covers [t, t + tf). So the last closed candle at t was complete at
t + tf, and the signal computed from it is replaced when the next candle closes, at t + 2 tf (`next_close`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, overload

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
# The timeframes models are trained and served for (the default of settings, summaries and demo data).
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


def utc_now() -> pd.Timestamp:
    """The wall clock, timezone-aware UTC; components take a `clock` argument defaulting to this."""
    return pd.Timestamp.now(tz="UTC")


def close_time(candle_time: pd.Timestamp, timeframe: str) -> pd.Timestamp:
    """When the candle that opened at `candle_time` closed."""
    return candle_time + timeframe_delta(timeframe)


def next_close(candle_time: pd.Timestamp, timeframe: str) -> pd.Timestamp:
    """When the candle after `candle_time` closes: until then, a signal from `candle_time` is the newest."""
    return candle_time + 2 * timeframe_delta(timeframe)


def horizon_end(candle_time: pd.Timestamp, timeframe: str, bars: int) -> pd.Timestamp:
    """When a plan opened at the close of `candle_time` and held `bars` bars ends: the close of the last of them."""
    return candle_time + (bars + 1) * timeframe_delta(timeframe)


def last_closed_open(now: pd.Timestamp, timeframe: str) -> pd.Timestamp:
    """Open time of the newest candle that is closed at `now` (bars sit on the epoch grid, UTC)."""
    step_ns = timeframe_seconds(timeframe) * 1_000_000_000
    return pd.Timestamp((now.value // step_ns) * step_ns - step_ns, tz="UTC")


@overload
def iso_z(stamp: pd.Timestamp | datetime) -> str: ...
@overload
def iso_z(stamp: None) -> None: ...
def iso_z(stamp: pd.Timestamp | datetime | None) -> str | None:
    """ISO-8601 UTC with a `Z` suffix (the contract's time format); a naive time is taken as UTC; None stays None."""
    if stamp is None:
        return None
    moment = pd.Timestamp(stamp)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.isoformat().replace("+00:00", "Z")


def timeframes_csv_pattern() -> str:
    """A comma-separated list of supported timeframes, as a regular expression."""
    one = "(" + "|".join(TIMEFRAME_SECONDS) + ")"
    return f"^{one}(,{one})*$"
