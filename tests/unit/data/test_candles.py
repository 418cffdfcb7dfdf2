"""The candle-frame contract: one validation function, a clear error for each way candles go wrong."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from signals.core.errors import CandleDataError, InvalidTimeframe
from signals.data.candles import CANDLE_COLUMNS, validate_candles
from tests.support.factories import random_walk_candles


def test_valid_candles_come_back_clean_and_typed() -> None:
    frame = random_walk_candles(50)
    clean = validate_candles(frame.sample(frac=1.0, random_state=0).sort_values("timestamp"), "15m")
    assert list(clean.columns) == list(CANDLE_COLUMNS)
    assert str(clean["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(clean[c].dtype == np.float64 for c in CANDLE_COLUMNS[1:])
    assert clean.index.equals(pd.RangeIndex(50))


def test_other_timezones_are_converted_to_utc() -> None:
    frame = random_walk_candles(10)
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("Asia/Tokyo")
    assert validate_candles(frame, "15m")["timestamp"].dt.tz is not None


def _broken(mutate) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    frame = random_walk_candles(20)
    mutate(frame)
    return frame


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.loc.__setitem__((5, "timestamp"), f.loc[4, "timestamp"]), "duplicate timestamp"),
        (lambda f: f.loc.__setitem__((5, "timestamp"), f.loc[2, "timestamp"] - pd.Timedelta("1h")), "not sorted"),
        (lambda f: f.loc.__setitem__((3, "close"), np.nan), "NaN in ['close'] at row 3"),
        (lambda f: f.loc.__setitem__((7, "low"), 0.0), "non-positive price at row 7"),
        (lambda f: f.loc.__setitem__((7, "open"), -1.0), "non-positive price at row 7"),
        (lambda f: f.loc.__setitem__((9, "high"), f.loc[9, "low"] / 2), "high < low at row 9"),
        (lambda f: f.loc.__setitem__((9, "close"), f.loc[9, "high"] * 2), "outside [low, high] at row 9"),
        (lambda f: f.loc.__setitem__((4, "volume"), -5.0), "negative volume at row 4"),
        (lambda f: f.loc.__setitem__((6, "timestamp"), f.loc[6, "timestamp"] + pd.Timedelta("1min")), "off the 15m"),
        (lambda f: f.pop("volume"), "lack columns ['volume']"),
    ],
)
def test_each_defect_is_named_with_its_row(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CandleDataError, match=re.escape(message)):
        validate_candles(_broken(mutate), "15m")


def test_naive_timestamps_are_refused() -> None:
    frame = random_walk_candles(5)
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    with pytest.raises(CandleDataError, match="timezone-aware"):
        validate_candles(frame, "15m")


def test_unknown_timeframe_is_refused() -> None:
    with pytest.raises(InvalidTimeframe, match="unknown timeframe '7m'"):
        validate_candles(random_walk_candles(5), "7m")


def test_hourly_bars_must_sit_on_the_hour() -> None:
    frame = random_walk_candles(8, timeframe="15m")
    with pytest.raises(CandleDataError, match="off the 1h grid"):
        validate_candles(frame, "1h")
