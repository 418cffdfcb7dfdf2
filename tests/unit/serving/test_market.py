"""Market data for serving: the simulated demo market extends the store to the last closed candle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd

from signals.core.settings import Settings
from signals.data.store import CandleStore, write_parquet_atomic
from signals.data.synthetic import synthetic_universe
from signals.serving.market import MarketData


def test_the_simulated_source_serves_the_last_closed_candle_of_a_market_that_goes_on(tmp_path: Path) -> None:
    end = pd.Timestamp("2026-11-20", tz="UTC")
    store = CandleStore(tmp_path)
    for (symbol, tf), frame in synthetic_universe(["SOL/USDT"], ["15m", "1h", "4h", "1d"], 120, 7, end=end).items():
        store.write("synthetic", symbol, tf, frame)
    now = [end + pd.Timedelta(hours=5, minutes=3)]
    settings = Settings(data_dir=tmp_path, exchange="synthetic", source="simulated")
    market = MarketData(settings, clock=lambda: now[0])
    hourly = asyncio.run(market.snapshot("SOL/USDT", "1h"))
    assert hourly.candle_time == end + pd.Timedelta(hours=4)  # closed at 05:00
    assert asyncio.run(market.snapshot("SOL/USDT", "15m")).candle_time == end + pd.Timedelta(hours=4, minutes=45)
    now[0] = end + pd.Timedelta(hours=6, minutes=1)
    assert asyncio.run(market.snapshot("SOL/USDT", "1h")).candle_time == end + pd.Timedelta(hours=5)
    assert store.read("synthetic", "SOL/USDT", "1d")["timestamp"].iloc[-1] == end - pd.Timedelta(days=1)
    assert hourly.data_source == "synthetic"


def test_a_snapshot_that_keeps_history_reads_the_file_once_and_serves_the_same_tail(tmp_path: Path) -> None:
    """`keep_history` (the market context's longer tails): the snapshot's candles are those of a plain snapshot,
    bit for bit, and the longer tail comes from the same read; a bad candle older than the serving tail fails only
    the longer read: the snapshot still serves."""
    from signals.features.cnn import SERVING_TAIL

    end = pd.Timestamp("2026-11-20", tz="UTC")
    store = CandleStore(tmp_path)
    frame = synthetic_universe(["SOL/USDT"], ["1h"], 90, 7, end=end)[("SOL/USDT", "1h")]
    store.write("synthetic", "SOL/USDT", "1h", frame)
    settings = Settings(data_dir=tmp_path, exchange="synthetic")
    plain = asyncio.run(MarketData(settings).snapshot("SOL/USDT", "1h"))
    market = MarketData(settings)
    market.keep_history("1h", 1000)
    kept = asyncio.run(market.snapshot("SOL/USDT", "1h"))
    assert kept.history is not None and len(kept.history) == 1000 and plain.history is None
    pd.testing.assert_frame_equal(kept.candles, plain.candles)
    assert len(kept.candles) == SERVING_TAIL
    pd.testing.assert_frame_equal(kept.history.iloc[-SERVING_TAIL:].reset_index(drop=True), kept.candles)
    broken = frame.copy()
    broken.loc[len(broken) - 800, "high"] = broken.loc[len(broken) - 800, "low"] / 2  # high below low, old bar
    write_parquet_atomic(broken, store.path_for("synthetic", "SOL/USDT", "1h"))  # as a bad import leaves it
    again = asyncio.run(market.snapshot("SOL/USDT", "1h"))
    assert again.history is None
    pd.testing.assert_frame_equal(again.candles, plain.candles)
