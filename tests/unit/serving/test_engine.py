"""SignalEngine routing: single windows go through the runner's batching queue, whole batches call it directly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.serving.catalog import ModelCatalog, ModelEntry
from signals.serving.engine import DIRECT_CALL_MIN_WINDOWS, SignalEngine
from signals.serving.market import MarketData
from tests.support.factories import random_walk_candles
from tests.support.fakes import FakeCnnLstm, FakePpo

SYMBOLS = [f"C{i}/USDT" for i in range(DIRECT_CALL_MIN_WINDOWS)]


@pytest.fixture()
def engine_and_calls(tmp_path: Path) -> tuple[SignalEngine, list[tuple[str, int]]]:
    store = CandleStore(tmp_path)
    for i, symbol in enumerate(SYMBOLS):
        store.write("synthetic", symbol, "1h", random_walk_candles(200, timeframe="1h", seed=i))
    entries = [
        ModelEntry("cnn-lstm", f"m{i}", f"m{i}:v1", "v1", symbol, "1h", {"metrics": {}})
        for i, symbol in enumerate(SYMBOLS)
    ]
    runner = FakeCnnLstm()
    settings = Settings(
        data_dir=tmp_path, exchange="synthetic", universe=SYMBOLS, timeframes=["1h"], signal_cache_size=0
    )
    engine = SignalEngine(settings, ModelCatalog(entries), MarketData(settings), runner, FakePpo())
    return engine, runner.calls


def test_a_batch_of_many_pairs_calls_the_runner_directly_once(engine_and_calls) -> None:  # type: ignore[no-untyped-def]
    engine, calls = engine_and_calls
    answer = asyncio.run(engine.batch(None, "1h"))
    assert len(answer.signals) == len(SYMBOLS) and answer.errors == []
    assert calls == [("predict_many", len(SYMBOLS))]


def test_single_and_small_requests_go_through_the_batching_queue(engine_and_calls) -> None:  # type: ignore[no-untyped-def]
    engine, calls = engine_and_calls
    asyncio.run(engine.predict(SYMBOLS[0], "1h"))
    asyncio.run(engine.batch(SYMBOLS[:3], "1h"))
    assert calls == [("predict", 1), ("predict", 3)]
