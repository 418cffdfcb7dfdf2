"""Four years of one pair: `signals import-candles` joins ../shared/data's 2020-2023 files (`ohlcv_2020/`) and its
2024 files (`ohlcv/`) into one series per timeframe, with Binance's outages left as gaps and nothing invented.

The expected figures are the data README's (bars per file, first and last bar) and its `ohlcv_gaps.csv`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.core.timeframes import timeframe_delta
from signals.data.store import CandleStore
from tests.support.paths import SHARED_DATA

pytestmark = pytest.mark.realdata

# ../shared/data/README.md: ohlcv_2020/ and ohlcv/ tables for BTC/USDT
BARS_2020 = {"1h": 28732, "4h": 7188, "1d": 1198}
BARS_2024 = {"1h": 5980, "4h": 1495, "1d": 249}
LAST_2024 = {"1h": "2024-09-06 03:00", "4h": "2024-09-06 00:00", "1d": "2024-09-05 00:00"}


def _files(timeframe: str) -> list[Path]:
    files = [SHARED_DATA / folder / f"BTC_USDT-{timeframe}.parquet" for folder in ("ohlcv_2020", "ohlcv")]
    for path in files:
        if not path.is_file():
            pytest.skip(f"real data not available: {path} is absent (set SIGNALS_SHARED_DATA to ../shared/data)")
    return files


def _documented_gaps(timeframe: str) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    gaps = pd.read_csv(SHARED_DATA / "ohlcv_gaps.csv")
    mine = gaps[gaps["file"].isin([f"ohlcv_2020/BTC_USDT-{timeframe}.parquet", f"ohlcv/BTC_USDT-{timeframe}.parquet"])]
    return [
        (pd.Timestamp(row.last_bar_before_gap), pd.Timestamp(row.first_bar_after_gap), int(row.missing_bars))
        for row in mine.itertuples()
    ]


@pytest.mark.parametrize("timeframe", ["1h", "4h", "1d"])
def test_the_2020_and_2024_files_of_a_pair_import_as_one_series_with_the_documented_gaps(
    tmp_path: Path, timeframe: str
) -> None:
    files = _files(timeframe)
    result = CliRunner().invoke(
        app, ["import-candles", *map(str, reversed(files)), "--data-dir", str(tmp_path), "--json"]
    )  # the newer file first: the store merges by time, not by the order of the files
    assert result.exit_code == 0, result.output
    assert [row["added"] for row in json.loads(result.stdout)] == [BARS_2024[timeframe], BARS_2020[timeframe]]

    store = CandleStore(tmp_path)
    (entry,) = list(store.entries())
    assert (entry.symbol, entry.timeframe) == ("BTC/USDT", timeframe)
    assert entry.first == pd.Timestamp("2020-09-20 00:00", tz="UTC")
    assert entry.last == pd.Timestamp(LAST_2024[timeframe], tz="UTC")
    assert entry.bars == BARS_2020[timeframe] + BARS_2024[timeframe]
    found = [(g.last_before, g.first_after, g.missing_bars) for g in entry.gaps]
    assert found == _documented_gaps(timeframe)
    if timeframe == "1h":  # the README: 10 gaps, 20 missing bars, all before 2024
        assert len(found) == 10 and sum(missing for *_, missing in found) == 20
    candles = store.read("binance", "BTC/USDT", timeframe)
    seam = candles["timestamp"].searchsorted(pd.Timestamp("2024-01-01", tz="UTC"))
    step = candles["timestamp"].iloc[seam] - candles["timestamp"].iloc[seam - 1]
    assert step == timeframe_delta(timeframe)  # the last 2023 bar and the first 2024 bar are neighbours
    original = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
    pd.testing.assert_frame_equal(candles[original.columns].reset_index(drop=True), original, check_dtype=False)
