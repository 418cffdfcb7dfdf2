"""SignalEngine routing: a lone window or a whole batch calls the runner directly, windows beside a call in flight join
its batching queue; a miss past the request budget is a 503 while it computes on; a positive model's plans wait for
its probation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest

from signals.contract.wire import WindowRequest
from signals.core.errors import RunnerUnavailable, StillComputing
from signals.core.metrics import server_metrics
from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.serving.catalog import ModelCatalog, ModelEntry
from signals.serving.engine import DIRECT_CALL_MIN_WINDOWS, SignalEngine, runner_call
from signals.serving.market import MarketData
from signals.track_record.probation import standing
from tests.support.factories import positive_edge, random_walk_candles
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
    engine = SignalEngine.offline(settings, ModelCatalog(entries), cnn_lstm=runner, ppo=FakePpo())
    return engine, runner.calls


def test_a_batch_of_many_pairs_calls_the_runner_directly_once(engine_and_calls) -> None:  # type: ignore[no-untyped-def]
    engine, calls = engine_and_calls
    answer = asyncio.run(engine.batch(None, "1h"))
    assert len(answer.signals) == len(SYMBOLS) and answer.errors == []
    assert calls == [("predict_many", len(SYMBOLS))]


def test_a_lone_call_goes_direct_and_calls_beside_another_join_the_batching_queue(engine_and_calls) -> None:  # type: ignore[no-untyped-def]
    """Alone, a call would only wait in the dispatcher's queue; beside a call in flight it can share a batch."""
    engine, calls = engine_and_calls
    asyncio.run(engine.predict(SYMBOLS[0], "1h"))
    asyncio.run(engine.batch(SYMBOLS[:3], "1h"))
    assert calls == [("predict_many", 1), ("predict_many", 3)]
    held = HeldCnnLstm()
    engine.cnn_lstm = held

    async def together() -> None:
        first = asyncio.ensure_future(engine.predict(SYMBOLS[0], "1h"))
        while not engine._runner_calls:  # the first call reaches the runner and stays there
            await asyncio.sleep(0)
        await asyncio.gather(*(engine.predict(symbol, "1h") for symbol in SYMBOLS[1:3]))
        held.release.set()
        await first

    asyncio.run(together())
    assert held.calls == [("predict", 1), ("predict", 1), ("predict_many", 1)]  # the others queued beside the first


def test_with_batching_off_single_calls_take_the_one_at_a_time_method(tmp_path: Path) -> None:
    engine, calls = _engine(tmp_path, max_batch_size=1)
    asyncio.run(engine.predict(SYMBOLS[0], "1h"))
    assert calls == [("predict", 1)] and engine.batching_path(DIRECT_CALL_MIN_WINDOWS) == "direct"


class HeldCnnLstm(FakeCnnLstm):
    """A runner that answers only once the test lets it (`release`)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def predict_many(self, requests: list[WindowRequest]) -> list[list[float]]:
        await self.release.wait()
        return await super().predict_many(requests)


def _engine(
    tmp_path: Path, *, runner: FakeCnnLstm | None = None, budget: asyncio.Event | None = None, **settings: Any
) -> tuple[SignalEngine, list[tuple[str, int]]]:
    store = CandleStore(tmp_path)
    store.write("synthetic", SYMBOLS[0], "1h", random_walk_candles(200, timeframe="1h", seed=0))
    entry = ModelEntry("cnn-lstm", "m0", "m0:v1", "v1", SYMBOLS[0], "1h", {"metrics": {}})
    values = Settings(data_dir=tmp_path, exchange="synthetic", universe=SYMBOLS[:1], timeframes=["1h"], **settings)
    runner = runner or FakeCnnLstm()

    async def budget_sleep(_seconds: float) -> None:  # the budget ends when the test says so
        if budget is not None:
            await budget.wait()
        else:
            await asyncio.Event().wait()

    engine = SignalEngine(
        values, ModelCatalog([entry]), MarketData(values), runner, FakePpo(), budget_sleep=budget_sleep
    )
    return engine, runner.calls


def test_a_miss_past_the_request_budget_is_a_503_and_its_signal_is_cached_when_done(tmp_path: Path) -> None:
    runner, budget = HeldCnnLstm(), asyncio.Event()
    engine, calls = _engine(tmp_path, runner=runner, budget=budget)

    async def scenario() -> None:
        request = asyncio.ensure_future(engine.predict(SYMBOLS[0], "1h"))
        await asyncio.sleep(0)
        budget.set()  # the budget ends with the runner still computing
        with pytest.raises(StillComputing) as refused:
            await request
        assert refused.value.error_code == HTTPStatus.SERVICE_UNAVAILABLE and refused.value.retry_after_s
        assert "request budget" in str(refused.value) and calls == []
        runner.release.set()  # the work went on: it finishes in the background and caches its signal
        while engine._background:
            await asyncio.sleep(0)
        assert calls == [("predict_many", 1)]
        served = await engine.predict(SYMBOLS[0], "1h")
        assert served.symbol == SYMBOLS[0] and calls == [("predict_many", 1)]  # a cache hit: no second call

    asyncio.run(scenario())


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


# --- probation -----------------------------------------------------------------------------------------------
POSITIVE_EDGE = positive_edge()


def resolved_calls(returns: list[float]) -> list[dict[str, object]]:
    """Resolved live calls a ledger would hand probation: one 1h plan per horizon, so each its own block."""
    return [
        {"candle_ms": i * 3_600_000, "timeframe": "1h", "horizon_bars": 1, "call_return": r}
        for i, r in enumerate(returns)
    ]


def test_a_positive_model_serves_paper_calls_until_its_own_live_calls_confirm_the_edge(tmp_path: Path) -> None:
    candles = random_walk_candles(200, timeframe="1h", seed=3)
    CandleStore(tmp_path).write("synthetic", "BTC/USDT", "1h", candles)
    metadata = {"metrics": {}, "edge": POSITIVE_EDGE, "threshold": 0.6, "horizon": 10}
    entry = ModelEntry("cnn-lstm", "cnn-lstm-btc-usdt-1h", "cnn-lstm-btc-usdt-1h:v1", "v1", "BTC/USDT", "1h", metadata)
    settings = Settings(
        data_dir=tmp_path, exchange="synthetic", universe=["BTC/USDT"], timeframes=["1h"], signal_cache_size=0
    )
    ledger = Ledger(f"sqlite:///{tmp_path / 'signals.db'}")
    ledger.migrate()
    writer = LedgerWriter(ledger, server_metrics())
    fresh = candles["timestamp"].iloc[-1] + pd.Timedelta(hours=1, seconds=5)
    engine = SignalEngine.offline(
        settings,
        ModelCatalog([entry]),
        cnn_lstm=FakeCnnLstm((0.1, 0.2, 0.7)),  # LONG at 0.7, above the threshold 0.6
        ppo=FakePpo(),
        clock=lambda: fresh,
        writer=writer,
    )
    try:
        unknown = asyncio.run(engine.predict("BTC/USDT", "1h"))  # no standing read yet: on probation, not a pass
        assert unknown.actionable is False and unknown.levels is None
        assert unknown.abstain_reason is not None and unknown.abstain_reason.startswith("on probation: ")

        engine.standings[(entry.name, "v1")] = standing(resolved_calls([0.01, -0.002, 0.004, 0.003]), needed=30)
        paper = asyncio.run(engine.predict("BTC/USDT", "1h"))
        assert (paper.actionable, paper.abstain_reason) == (False, "on probation: 4 of 30 resolved calls")
        assert writer.flush()
        (row,) = ledger.history("BTC/USDT", "1h")
        assert row["mode"] == "live" and row["paper"] is True and row["actionable"] is False  # a paper call

        passed = standing(resolved_calls([0.004 + 0.002 * (i % 3) for i in range(30)]), needed=30)
        assert passed.state == "serving" and passed.ci_low is not None and passed.ci_low > 0
        engine.standings[(entry.name, "v1")] = passed
        served = asyncio.run(engine.predict("BTC/USDT", "1h"))
        assert served.actionable is True and served.abstain_reason is None and served.levels is not None
    finally:
        writer.close()
        ledger.close()


def test_probation_off_serves_plans_on_the_walk_forward_verdict_alone(tmp_path: Path) -> None:
    """SIGNALS_PROBATION_CALLS=0 names the old behaviour; a model whose edge is not positive has no probation."""
    positive = ModelEntry("cnn-lstm", "m", "m:v1", "v1", "BTC/USDT", "1h", {"edge": POSITIVE_EDGE})
    none = ModelEntry("cnn-lstm", "m", "m:v1", "v1", "BTC/USDT", "1h", {"edge": {**POSITIVE_EDGE, "verdict": "none"}})

    def engine(probation_calls: int) -> SignalEngine:
        settings = Settings(data_dir=tmp_path, universe=["BTC/USDT"], probation_calls=probation_calls)
        return SignalEngine.offline(settings, ModelCatalog([positive]), cnn_lstm=FakeCnnLstm(), ppo=FakePpo())

    assert engine(0).withheld(positive) is None
    assert (engine(30).withheld(positive) or "").startswith("on probation: ")
    assert engine(30).withheld(none) is None  # the gate's first rule refuses it already
