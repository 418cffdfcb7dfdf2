"""SignalEngine routing: single windows go through the runner's batching queue, whole batches call it directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from signals.core.errors import RunnerUnavailable
from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.serving.catalog import ModelCatalog, ModelEntry
from signals.serving.engine import DIRECT_CALL_MIN_WINDOWS, SignalEngine, runner_call
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


def test_a_runner_call_on_a_closed_kept_alive_connection_is_made_once_more() -> None:
    """The runner had closed an idle connection: the first write fails before anything ran, so asking again is safe;
    a second failure, or any other, is a 503 with Retry-After."""
    calls: list[int] = []

    def flaky(failures: int, error: Exception) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            calls.append(1)
            if len(calls) <= failures:
                raise error
            return "answer"

        return call

    closing = aiohttp.ClientOSError(None, "Can not write request body")
    assert asyncio.run(runner_call("CNN-LSTM", flaky(1, closing), 1.0)) == "answer" and len(calls) == 2
    calls.clear()
    with pytest.raises(RunnerUnavailable) as refused:
        asyncio.run(runner_call("CNN-LSTM", flaky(2, closing), 1.0))
    assert len(calls) == 2 and refused.value.retry_after_s
    calls.clear()
    with pytest.raises(RunnerUnavailable):
        asyncio.run(runner_call("PPO", flaky(1, ValueError("bad answer")), 1.0))
    assert len(calls) == 1  # not a connection failure: not asked again
