"""Live candles when the exchange misbehaves: real ccxt against the local exchange on 127.0.0.1.

A slow exchange answers within the request budget (503 + Retry-After, the fetch finishing in the background); one
fetch per pair serves every waiter; a failing exchange opens the circuit (fail fast) and one probe closes it; a
truncated body is asked again; a short answer is never served as fresh; a full or read-only store does not fail
the request and loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from signals.core.errors import ExchangeUnavailable
from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.serving.market import MarketData
from signals.testing.local_exchange import LocalExchange
from tests.support.factories import random_walk_candles

NOW = pd.Timestamp("2026-11-20 10:20:00", tz="UTC")
LAST_CLOSED = pd.Timestamp("2026-11-20 09:00:00", tz="UTC")
BTC = "BTC/USDT"


class Clock:
    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now


def hourly(until: pd.Timestamp, bars: int = 600) -> pd.DataFrame:
    """Candles whose last bar opens at `until` (the forming one at NOW when `until` is NOW's hour)."""
    candles = random_walk_candles(bars, seed=5, timeframe="1h", start="2026-01-01")
    candles["timestamp"] += until - candles["timestamp"].iloc[-1]
    return candles


def market(tmp_path: Path, exchange: LocalExchange, clock: Clock, **overrides: Any) -> MarketData:
    settings = Settings(
        data_dir=tmp_path / "data",
        source="live",
        exchange="binance",
        exchange_url=exchange.url,
        exchange_retries=overrides.pop("retries", 1),
        exchange_backoff_s=0.01,
        exchange_timeout_ms=overrides.pop("timeout_ms", 3000),
        universe=[BTC],
        **overrides,
    )
    return MarketData(settings, clock=clock)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def stored(tmp_path: Path, candle_time: pd.Timestamp, timeout_s: float = 20) -> None:
    """Until the market's store holds BTC 1h up to `candle_time` (a fetch in the background wrote it)."""
    store = CandleStore(tmp_path / "data")
    deadline = time.monotonic() + timeout_s
    while (last := store.last_timestamp("binance", BTC, "1h")) != candle_time:
        if time.monotonic() > deadline:
            pytest.fail(f"the background fetch stored nothing up to {candle_time} in {timeout_s} s (last: {last})")
        await asyncio.sleep(0.05)


def test_a_slow_exchange_is_a_503_within_the_budget_and_the_fetch_finishes_in_the_background(tmp_path: Path) -> None:
    clock = Clock(NOW)
    with LocalExchange(frames={(BTC, "1h"): hourly(NOW.floor("h"))}, now=NOW, delay_s=1.0) as exchange:

        async def scenario() -> tuple[pd.Timestamp | None, ExchangeUnavailable, Any]:
            data = market(tmp_path, exchange, clock, exchange_budget_s=0.3)
            with pytest.raises(ExchangeUnavailable) as refused:
                await data.snapshot(BTC, "1h")
            # The order, not a duration: the refusal came while the exchange was still answering (nothing stored).
            stored_when_refused = CandleStore(tmp_path / "data").last_timestamp("binance", BTC, "1h")
            await stored(tmp_path, LAST_CLOSED)  # the background fetch (markets, then klines: ~1 s each) ends
            exchange.delay_s = 0.0
            snapshot = await data.snapshot(BTC, "1h")
            await data.aclose()
            return stored_when_refused, refused.value, snapshot

        stored_when_refused, refused, snapshot = run(scenario())
    assert stored_when_refused != LAST_CLOSED, "the request waited for the exchange past its budget"
    assert "within 0.3 s" in str(refused) and refused.retry_after_s is not None
    assert snapshot.candle_time == LAST_CLOSED  # the fetch that outlived the request serves the next one


def test_one_fetch_per_pair_serves_every_waiter(tmp_path: Path) -> None:
    clock = Clock(NOW)
    with LocalExchange(frames={(BTC, "1h"): hourly(NOW.floor("h"))}, now=NOW, delay_s=0.3) as exchange:

        async def scenario() -> list[Any]:
            data = market(tmp_path, exchange, clock, exchange_budget_s=5.0)
            answers = await asyncio.gather(*(data.snapshot(BTC, "1h") for _ in range(8)))
            await data.aclose()
            return answers

        answers = run(scenario())
        assert len(exchange.klines_requests()) == 1
    assert all(answer is answers[0] for answer in answers)


def test_a_failing_exchange_opens_the_circuit_and_one_probe_closes_it(tmp_path: Path) -> None:
    clock = Clock(NOW)
    with LocalExchange(frames={(BTC, "1h"): hourly(NOW.floor("h"))}, now=NOW) as exchange:

        async def scenario() -> None:
            data = market(
                tmp_path, exchange, clock, retries=0, exchange_breaker_failures=2, exchange_breaker_cooldown_s=0.5
            )
            exchange.fail_next(1000, 503)
            for _ in range(2):
                with pytest.raises(ExchangeUnavailable, match="after 1 attempt"):
                    await data.snapshot(BTC, "1h")
            asked = len(exchange.requests)
            started = time.perf_counter()
            with pytest.raises(ExchangeUnavailable, match="not asking it again") as fast:
                await data.snapshot(BTC, "1h")
            assert time.perf_counter() - started < 0.1 and len(exchange.requests) == asked  # nothing sent
            assert fast.value.retry_after_s is not None and data.status()["exchange"]["state"] == "open"
            assert data.status()["degraded"] is True
            await asyncio.sleep(0.6)
            exchange.fail_next(0)
            snapshot = await data.snapshot(BTC, "1h")  # the probe
            assert snapshot.candle_time == LAST_CLOSED
            assert data.status()["exchange"]["state"] == "closed" and data.status()["degraded"] is False
            await data.aclose()

        run(scenario())


def test_a_truncated_body_is_asked_again(tmp_path: Path) -> None:
    clock = Clock(NOW)
    with LocalExchange(frames={(BTC, "1h"): hourly(NOW.floor("h"))}, now=NOW) as exchange:

        async def scenario() -> Any:
            data = market(tmp_path, exchange, clock, retries=2)
            await data.snapshot(BTC, "1h")  # markets loaded, candles cached
            clock.now = exchange.now = NOW + pd.Timedelta(hours=1)
            exchange.clear_log()
            exchange.truncate_next(1)
            snapshot = await data.snapshot(BTC, "1h")
            await data.aclose()
            return snapshot

        snapshot = run(scenario())
        assert len(exchange.klines_requests()) == 2  # the cut-off answer, then the whole one
    assert snapshot.candle_time == LAST_CLOSED + pd.Timedelta(hours=1)


def test_an_answer_that_stops_short_is_never_served_as_fresh(tmp_path: Path) -> None:
    clock = Clock(NOW)
    behind = NOW.floor("h") - pd.Timedelta(hours=4)  # the exchange's candles end 4 bars early
    with LocalExchange(frames={(BTC, "1h"): hourly(behind)}, now=NOW) as exchange:

        async def scenario() -> None:
            data = market(tmp_path, exchange, clock, retries=1)
            for _ in range(2):  # not cached: asked again next time
                with pytest.raises(ExchangeUnavailable, match="expected \\(a truncated or late answer\\)"):
                    await data.snapshot(BTC, "1h")
            await data.aclose()

        run(scenario())
        assert len(exchange.klines_requests()) == 4  # two attempts per request


def test_a_store_that_cannot_be_written_does_not_fail_the_request_and_loses_nothing(tmp_path: Path) -> None:
    clock = Clock(NOW)
    with LocalExchange(frames={(BTC, "1h"): hourly(NOW.floor("h") + pd.Timedelta(hours=2))}, now=NOW) as exchange:

        async def scenario() -> None:
            data = market(tmp_path, exchange, clock)
            blocker = tmp_path / "data" / "binance"
            blocker.parent.mkdir(parents=True)
            blocker.write_text("a file where the exchange's directory should be")  # every write fails, even as root
            first = await data.snapshot(BTC, "1h")
            assert first.candle_time == LAST_CLOSED
            status = data.status()
            assert status["degraded"] is True and "cannot write binance/BTC_USDT-1h.parquet" in status["store_error"]
            assert str(tmp_path) not in status["store_error"]  # relative to the store, not this machine's path
            blocker.unlink()
            clock.now = exchange.now = NOW + pd.Timedelta(hours=1)
            second = await data.snapshot(BTC, "1h")
            assert second.candle_time == LAST_CLOSED + pd.Timedelta(hours=1)
            assert data.status()["store_error"] is None and data.status()["unsaved_series"] == 0
            await data.aclose()

        run(scenario())
    stored = CandleStore(tmp_path / "data").read("binance", BTC, "1h")
    assert stored["timestamp"].iloc[-1] == LAST_CLOSED + pd.Timedelta(hours=1)
    assert len(stored) > 460  # the first fetch's candles, written with the second: nothing lost
