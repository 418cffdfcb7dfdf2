"""Market data for serving: the simulated demo market extends the store to the last closed candle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd

from signals.core.settings import Settings
from signals.data.store import CandleStore
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
