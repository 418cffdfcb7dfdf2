"""The candle frame contract, and the one validation function that every source passes through."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from signals.core.timeframes import parse_timeframe, timeframe_seconds
from signals.core.errors import CandleDataError

PRICE_COLUMNS: Final = ("open", "high", "low", "close")
_UTC_NS: Final = pd.DatetimeTZDtype("ns", "UTC")
CANDLE_COLUMNS: Final = ("timestamp", *PRICE_COLUMNS, "volume")


def empty_candles() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in CANDLE_COLUMNS})
    frame["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def validate_candles(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Return a clean copy (`timestamp` UTC ns, OHLCV float64, RangeIndex) or raise `CandleDataError`.

    Checks, each with a message naming the first offending bar: columns present, timezone-aware
    timestamps, strictly increasing (unsorted and duplicate reported apart), on the timeframe grid,
    no NaN, positive prices, low <= open, close <= high, volume >= 0.
    """
    parse_timeframe(timeframe)
    missing = [column for column in CANDLE_COLUMNS if column not in frame.columns]
    if missing:
        raise CandleDataError(f"candles lack columns {missing}; expected {list(CANDLE_COLUMNS)}")
    out = frame.loc[:, list(CANDLE_COLUMNS)].reset_index(drop=True)
    if out["timestamp"].dtype != _UTC_NS:
        out["timestamp"] = _utc_timestamps(out["timestamp"])
    for column in CANDLE_COLUMNS[1:]:
        if out[column].dtype != np.float64:  # already float64 (the store, ccxt frames): nothing to convert
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    if out.empty:
        return out
    _check_order(out["timestamp"])
    _check_grid(out["timestamp"], timeframe)
    _check_values(out)
    return out


def _utc_timestamps(column: pd.Series) -> pd.Series:
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        raise CandleDataError(
            f"timestamp column has dtype {column.dtype}; expected timezone-aware UTC datetimes (bar open time)"
        )
    return column.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _check_order(timestamps: pd.Series) -> None:
    steps = np.diff(timestamps.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    if (steps == 0).any():
        at = int(np.flatnonzero(steps == 0)[0]) + 1
        raise CandleDataError(f"duplicate timestamp {timestamps.iloc[at].isoformat()} at row {at}")
    if (steps < 0).any():
        at = int(np.flatnonzero(steps < 0)[0]) + 1
        raise CandleDataError(
            f"timestamps are not sorted: row {at} ({timestamps.iloc[at].isoformat()}) "
            f"comes before row {at - 1} ({timestamps.iloc[at - 1].isoformat()})"
        )


def _check_grid(timestamps: pd.Series, timeframe: str) -> None:
    step_ns = timeframe_seconds(timeframe) * 1_000_000_000
    off_grid = timestamps.to_numpy(dtype="datetime64[ns]").astype(np.int64) % step_ns != 0
    if off_grid.any():
        at = int(np.flatnonzero(off_grid)[0])
        raise CandleDataError(
            f"timestamp {timestamps.iloc[at].isoformat()} at row {at} is off the {timeframe} grid "
            "(bar open times must be multiples of the timeframe since the epoch, UTC)"
        )


def _check_values(frame: pd.DataFrame) -> None:
    """In plain numpy: this runs on every read of the store, and pandas' row-wise operations cost milliseconds."""
    o, h, lo, c, v = (frame[column].to_numpy() for column in CANDLE_COLUMNS[1:])
    values = np.column_stack((o, h, lo, c, v))
    bad_rows = np.isnan(values).any(axis=1)
    if bad_rows.any():
        at = int(np.flatnonzero(bad_rows)[0])
        columns = [name for name, value in zip(CANDLE_COLUMNS[1:], values[at], strict=True) if np.isnan(value)]
        raise CandleDataError(f"NaN in {columns} at row {at} ({frame['timestamp'].iloc[at].isoformat()})")
    _first_failing(frame, np.asarray((values[:, :4] <= 0).any(axis=1)), "non-positive price")
    _first_failing(frame, h < lo, "high < low")
    _first_failing(frame, (np.maximum(o, c) > h) | (np.minimum(o, c) < lo), "open/close outside [low, high]")
    _first_failing(frame, v < 0, "negative volume")


def _first_failing(frame: pd.DataFrame, failing: np.ndarray, what: str) -> None:
    if failing.any():
        at = int(np.flatnonzero(failing)[0])
        row = frame.iloc[at]
        raise CandleDataError(
            f"{what} at row {at} ({row['timestamp'].isoformat()}): "
            f"open={row['open']} high={row['high']} low={row['low']} close={row['close']} volume={row['volume']}"
        )
