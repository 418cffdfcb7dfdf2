"""The track record, end to end in process, on SQLite and a real PostgreSQL: every computed signal recorded once,
recording that never fails a request, outcomes resolved with the training label function, backfill, scorecard,
history, replay bit for bit, and the candle-close refresh that exactly one of several workers leads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from signals.contract import schemas
from signals.core.errors import ExchangeUnavailable
from signals.core.metrics import server_metrics
from signals.core.settings import Settings
from signals.core.timeframes import close_time, last_closed_open, timeframe_delta
from signals.features.cnn import SERVING_TAIL
from signals.features.labels import persistence_calls, reversal_calls, trade_plan_outcomes
from signals.ledger.records import ms
from signals.ledger.schema import refresh_leases, signal_records
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.live.operations import scorecard_of
from signals.live.scheduler import Scheduler
from signals.models.local import LocalCnnLstm, LocalPpo
from signals.serving.catalog import ModelCatalog
from signals.serving.engine import SignalEngine
from signals.track_record import audit
from signals.track_record.backfill import backfill
from signals.track_record.versions import current_catalog
from tests.support.clock import FakeClock
from tests.support.factories import positive_edge
from tests.support.world import EXCHANGE, World

BTC, ETH = "BTC/USDT", "ETH/USDT"


@pytest.fixture(scope="module")
def world(trained_world: World) -> World:
    return trained_world  # read only: each test has its own ledger database


@pytest.fixture(scope="module")
def models(world: World) -> tuple[LocalCnnLstm, LocalPpo]:
    settings = settings_of(world, "sqlite:///unused")
    return LocalCnnLstm(settings), LocalPpo(settings)


def settings_of(world: World, url: str, **overrides: Any) -> Settings:
    return Settings(
        data_dir=world.data_dir,
        exchange=EXCHANGE,
        universe=list(world.symbols),
        timeframes=list(world.timeframes),
        device="cpu",
        database_url=url,
        scheduler_retries=2,
        exchange_backoff_s=0.0,
        **overrides,
    )


class Stack:
    """An engine with its ledger and writer, as one API worker has them."""

    def __init__(self, world: World, url: str, models: tuple[LocalCnnLstm, LocalPpo], clock: Any = None) -> None:
        self.settings = settings_of(world, url)
        self.ledger = Ledger(url)
        self.ledger.migrate()
        self.writer = LedgerWriter(self.ledger, server_metrics())
        extra = {} if clock is None else {"clock": clock}
        self.engine = SignalEngine.offline(
            self.settings,
            current_catalog(self.settings, self.ledger),
            cnn_lstm=models[0],
            ppo=models[1],
            writer=self.writer,
            **extra,
        )

    def close(self) -> None:
        self.writer.close()
        self.ledger.close()


@pytest.fixture
def stack(world: World, database_url: str, models: tuple[LocalCnnLstm, LocalPpo]) -> Iterator[Stack]:
    made = Stack(world, database_url, models)
    yield made
    made.close()


def last_candle(world: World, symbol: str, timeframe: str) -> pd.Timestamp:
    from signals.data.store import CandleStore

    return CandleStore(world.data_dir).read(EXCHANGE, symbol, timeframe)["timestamp"].iloc[-1]


# --- recording ----------------------------------------------------------------------------------------------
def test_every_computed_signal_is_recorded_once_and_cache_hits_are_not(stack: Stack, world: World) -> None:
    first = asyncio.run(stack.engine.predict(BTC, "1h"))
    again = asyncio.run(stack.engine.predict(BTC, "1h"))  # from the cache
    asyncio.run(stack.engine.action(schemas.ActionRequest(symbol=BTC)))
    assert stack.writer.flush(10)
    assert again == first
    row = stack.ledger.signal_at(BTC, "1h", ms(first.candle_time))
    assert row is not None and row["mode"] == "live" and row["model_version"] == first.model_version
    assert (row["p_short"], row["p_no_trade"], row["p_long"]) == (
        first.probabilities.SHORT,
        first.probabilities.NO_TRADE,
        first.probabilities.LONG,
    )
    assert row["features_hash"] and row["risk"] > 0
    assert row["reversal"] is None and row["persistence"] is None  # the baselines come with the outcome
    assert row["expires_ms"] == ms(first.candle_time) + (first.horizon_bars + 1) * 3_600_000
    assert stack.ledger.counts() == {"signals": 1, "pending": 1, "actions": 1}


def test_a_ledger_that_cannot_be_written_loses_the_record_but_never_the_answer(
    world: World, models: tuple[LocalCnnLstm, LocalPpo], tmp_path: Path
) -> None:
    made = Stack(world, f"sqlite:///{tmp_path / 'ledger.db'}", models)
    try:
        with made.ledger.engine.begin() as connection:  # the database goes away under the server
            connection.execute(sa.text("DROP TABLE signal_records"))
        signal = asyncio.run(made.engine.predict(ETH, "1h"))
        assert signal.symbol == ETH  # answered as usual
        assert made.writer.flush(10)
        assert made.writer.status.failed == 1 and made.writer.status.degraded
        assert "signal_records" in (made.writer.status.last_error or "")
    finally:
        made.close()


# --- outcomes, backfill, scorecard, history ---------------------------------------------------------------------
def test_backfill_records_resolves_and_scores_with_the_training_label_function(stack: Stack, world: World) -> None:
    end = last_candle(world, BTC, "1h")
    reports = asyncio.run(
        backfill(
            stack.engine, stack.ledger, stack.writer, timeframes=["1h"], since=end - pd.Timedelta(days=6), until=end
        )
    )
    (report,) = reports
    assert report.pairs == 2 and report.computed == report.recorded == 2 * (6 * 24 + 1)
    assert report.resolved > 0
    rows = stack.ledger.resolved(timeframe="1h", modes=["backfill"])
    horizon = rows[0]["horizon_bars"]
    # The newest `horizon` candles of each pair never got their horizon (the world ends there): closed as missing.
    assert len(rows) == report.resolved - 2 * horizon
    from signals.data.store import CandleStore

    candles = CandleStore(world.data_dir).read(EXCHANGE, BTC, "1h")
    for row in [r for r in rows if r["symbol"] == BTC][:20]:  # the same function training labels with
        at = int(np.searchsorted(candles["timestamp"].to_numpy("datetime64[ms]").astype(np.int64), row["candle_ms"]))
        window = candles.iloc[at - SERVING_TAIL + 1 : at + row["horizon_bars"] + 1].reset_index(drop=True)
        expected = trade_plan_outcomes(window, row["horizon_bars"], 1.5)
        assert row["outcome_label"] == int(expected.label[SERVING_TAIL - 1])
        close = window["close"].to_numpy(np.float64)
        assert row["reversal"] == int(reversal_calls(close, row["horizon_bars"])[SERVING_TAIL - 1])
        assert row["persistence"] == int(persistence_calls(expected.label, row["horizon_bars"])[SERVING_TAIL - 1])
        assert row["long_return"] == pytest.approx(expected.long_return[SERVING_TAIL - 1], rel=1e-12)
        signal = json.loads(json.dumps(row["payload"]))
        assert signal["prediction_time"] == close_time(
            pd.Timestamp(row["candle_ms"], unit="ms", tz="UTC"), "1h"
        ).isoformat().replace("+00:00", "Z")
    unresolved = stack.ledger.due(ms(stack.engine.clock()))
    assert unresolved == []  # what is not resolved waits for candles the store does not have yet

    card = scorecard_of(stack.ledger, stack.settings, schemas.ScorecardRequest(timeframe="1h", mode="backfill"))
    assert card["n"] == len(rows) and card["modes"] == ["backfill"]
    assert card["verdict"] in {"insufficient_data", "no_evidence", "positive", "negative"}
    assert card["accuracy_wilson"]["ci_low"] <= card["accuracy"]["value"] <= card["accuracy_wilson"]["ci_high"]
    assert set(card["baselines"]) == {"majority", "reversal", "persistence"} and card["reliability"]
    assert card["log_loss_skill"]["value"] is not None and card["calls"]["break_even_hit_rate"] > 0.5

    history = audit.history(stack.ledger, schemas.HistoryRequest(symbol="btcusdt", timeframe="1h", limit=500))
    assert history.symbol == BTC and len(history.items) == 6 * 24 + 1
    assert [i.signal.candle_time for i in history.items] == sorted(
        (i.signal.candle_time for i in history.items), reverse=True
    )
    resolved = [i for i in history.items if i.outcome is not None]
    assert resolved and all(i.mode == "backfill" for i in history.items)
    labelled = [i.outcome for i in resolved if i.outcome and i.outcome.note != "candles missing"]
    assert len(labelled) == len(resolved) - horizon
    assert all(o.label in {"SHORT", "NO_TRADE", "LONG"} and o.touched is not None for o in labelled)

    again = asyncio.run(
        backfill(
            stack.engine, stack.ledger, stack.writer, timeframes=["1h"], since=end - pd.Timedelta(days=6), until=end
        )
    )
    assert again[0].computed == report.computed and again[0].recorded == 0  # recorded once, ever


def test_replay_rebuilds_recorded_signals_bit_for_bit_and_shows_what_differs(stack: Stack, world: World) -> None:
    end = last_candle(world, ETH, "1h")
    asyncio.run(
        backfill(
            stack.engine,
            stack.ledger,
            stack.writer,
            timeframes=["1h"],
            since=end - pd.Timedelta(hours=5),
            until=end,
            symbols=[ETH],
        )
    )
    asyncio.run(stack.engine.predict(ETH, "1h"))  # a live record too (same candle: recorded once, as backfill)
    for hours in range(6):
        candle = end - pd.Timedelta(hours=hours)
        answer = asyncio.run(
            audit.replay(
                stack.engine, stack.ledger, schemas.ReplayRequest(symbol=ETH, timeframe="1h", candle_time=candle)
            )
        )
        assert answer.match and answer.features_match and answer.differences == [], answer.differences
        assert answer.rebuilt.probabilities == answer.recorded.probabilities  # float equality: bit for bit

    row = stack.ledger.signal_at(ETH, "1h", ms(end))
    assert row is not None
    payload = dict(row["payload"])
    payload["probabilities"] = {**payload["probabilities"], "LONG": payload["probabilities"]["LONG"] + 1e-12}
    with stack.ledger.engine.begin() as connection:  # a record altered afterwards, however slightly, is caught
        connection.execute(
            sa.update(signal_records)
            .where(signal_records.c.id == row["id"])
            .values(payload=payload, features_hash="0" * 64)
        )
    request = schemas.ReplayRequest(symbol=ETH, timeframe="1h", candle_time=end)
    altered = asyncio.run(audit.replay(stack.engine, stack.ledger, request))
    assert not altered.match and not altered.features_match
    assert [d.field for d in altered.differences] == ["probabilities"]


def test_replay_of_an_unrecorded_candle_is_404(stack: Stack, world: World) -> None:
    from signals.core.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match="no recorded signal for BTC/USDT 1h"):
        asyncio.run(
            audit.replay(
                stack.engine,
                stack.ledger,
                schemas.ReplayRequest(symbol=BTC, timeframe="1h", candle_time=pd.Timestamp("2020-01-01", tz="UTC")),
            )
        )


# --- the candle-close loop ----------------------------------------------------------------------------------------
def test_exactly_one_of_several_workers_leads_each_refresh_and_the_others_warm_their_caches(
    world: World, database_url: str, models: tuple[LocalCnnLstm, LocalPpo]
) -> None:
    candle = last_candle(world, BTC, "1h")
    just_after = close_time(candle, "1h") + pd.Timedelta(seconds=10)  # the world's newest candle has just closed
    frozen = FakeClock(just_after, autojump=False)  # the three workers ask at the same instant, which lasts
    workers = [Stack(world, database_url, models, clock=frozen.now) for _ in range(3)]
    schedulers = [Scheduler(w.engine, w.ledger, w.writer, w.settings, clock=frozen) for w in workers]
    try:

        async def all_at_once() -> list[Any]:
            return await asyncio.gather(*(s.tick(["1h", "15m"]) for s in schedulers))

        reports = [r for tick in asyncio.run(all_at_once()) for r in tick]
        for timeframe in ("1h", "15m"):
            roles = sorted(r.role for r in reports if r.timeframe == timeframe)
            assert roles == ["follower", "follower", "leader"], roles
        leader = next(r for r in reports if r.timeframe == "1h" and r.role == "leader")
        assert leader.signals == 2 and leader.errors == {} and leader.stale == []
        with workers[0].ledger.engine.connect() as connection:
            leases = connection.execute(sa.select(refresh_leases)).mappings().all()
            recorded = connection.execute(
                sa.select(sa.func.count()).select_from(signal_records).where(signal_records.c.mode == "live")
            ).scalar()
        assert {(lease["timeframe"], lease["status"], lease["attempts"]) for lease in leases} == {
            ("1h", "done", 1),
            ("15m", "done", 1),
        }
        assert recorded == 3  # BTC 15m, BTC 1h, ETH 1h: once each
        for worker in workers:  # every worker answers the new candle from its cache: nothing more is recorded
            signal = asyncio.run(worker.engine.predict(ETH, "1h"))
            assert pd.Timestamp(signal.candle_time) == candle
        for worker in workers:
            worker.writer.flush(10)
        assert workers[0].ledger.counts()["signals"] == 3
        followers = [r for r in reports if r.role == "follower" and r.timeframe == "1h"]
        assert all(f.signals == 2 for f in followers)  # warmed from the ledger
    finally:
        for worker in workers:
            worker.close()


def test_a_failing_exchange_is_retried_and_its_pairs_reported_stale_while_the_rest_refresh(
    stack: Stack, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[pd.Timestamp, list[str]]] = []
    real = stack.engine.predict_many
    t0 = pd.Timestamp("2026-11-20 10:00:05", tz="UTC")
    clock = FakeClock(t0)

    async def flaky(pairs: Any, *, trigger: str = "request") -> list[Any]:
        calls.append((clock.now(), [s for s, _ in pairs]))
        answers = await real(pairs, trigger=trigger)
        return [
            ExchangeUnavailable("binance unavailable for ETH/USDT") if s == ETH else a
            for (s, _), a in zip(pairs, answers, strict=True)
        ]

    monkeypatch.setattr(stack.engine, "predict_many", flaky)
    settings = stack.settings.model_copy(update={"exchange_backoff_s": 1.5})
    scheduler = Scheduler(stack.engine, stack.ledger, stack.writer, settings, clock=clock)
    report = asyncio.run(scheduler.refresh("1h"))
    assert report.role == "leader" and report.signals == 1 and report.stale == [ETH]
    second = pd.Timedelta(seconds=1)
    # Two retries of the failing pair only, each after its backoff (1.5 s, then 3 s) on the scheduler's clock.
    assert calls == [(t0, [BTC, ETH]), (t0 + 1.5 * second, [ETH]), (t0 + 4.5 * second, [ETH])]
    assert [seconds for _, seconds in clock.sleeps] == [1.5, 3.0]
    assert "unavailable" in report.errors[ETH]
    lease = stack.ledger.lease("1h", ms(report.candle_time))
    assert lease is not None and lease.status == "done" and lease.detail and lease.detail["stale"] == [ETH]


def test_the_next_refresh_is_the_next_close_plus_the_delay(stack: Stack) -> None:
    scheduler = Scheduler(
        stack.engine, stack.ledger, stack.writer, stack.settings.model_copy(update={"scheduler_delay_s": 5.0})
    )
    at, due = scheduler.next_due(pd.Timestamp("2026-11-20 10:00:02", tz="UTC"))  # inside the delay after 10:00
    assert at == pd.Timestamp("2026-11-20 10:00:05", tz="UTC") and set(due) == {"15m", "1h"}
    at, due = scheduler.next_due(pd.Timestamp("2026-11-20 10:00:06", tz="UTC"))
    assert at == pd.Timestamp("2026-11-20 10:15:05", tz="UTC") and due == ["15m"]
    at, due = scheduler.next_due(pd.Timestamp("2026-11-20 23:59:59", tz="UTC"))
    assert at == pd.Timestamp("2026-11-21 00:00:05", tz="UTC") and set(due) == {"15m", "1h", "4h", "1d"}
    assert timeframe_delta("1h") == pd.Timedelta(hours=1)


# --- modes and probation in the live loop ---------------------------------------------------------------------
def test_the_catch_up_records_live_on_a_candle_a_backfill_reached_and_lookups_read_the_live_one(
    world: World, database_url: str, models: tuple[LocalCnnLstm, LocalPpo]
) -> None:
    end = last_candle(world, BTC, "1h")
    just_after = close_time(end, "1h") + pd.Timedelta(seconds=10)
    made = Stack(world, database_url, models, clock=lambda: just_after)
    try:
        asyncio.run(
            backfill(made.engine, made.ledger, made.writer, timeframes=["1h"], since=end, until=end, symbols=[BTC])
        )
        report = asyncio.run(
            Scheduler(made.engine, made.ledger, made.writer, made.settings, clock=FakeClock(just_after)).refresh("1h")
        )
        assert report.role == "leader" and report.recorded == report.signals > 0
        modes = sorted(r["mode"] for r in made.ledger.history(BTC, "1h") if r["candle_ms"] == ms(end))
        assert modes == ["backfill", "live"]  # the live record is no longer dropped for the backfill's
        found = made.ledger.signal_at(BTC, "1h", ms(end))
        assert found is not None and found["mode"] == "live"
    finally:
        made.close()


def test_the_scheduler_puts_positive_models_on_probation_and_records_it_once(stack: Stack) -> None:
    edge = positive_edge()
    entries = [replace(e, metadata={**e.metadata, "edge": edge}) for e in stack.engine.catalog.entries]
    stack.engine.catalog = ModelCatalog(entries)
    scheduler = Scheduler(stack.engine, stack.ledger, stack.writer, stack.settings)
    asyncio.run(scheduler.refresh_standings(["1h"]))  # this worker led the 1h refresh only
    asyncio.run(scheduler.refresh_standings(["1h"]))
    assert {s.state for s in stack.engine.standings.values()} == {"probation"}
    assert len(stack.engine.standings) == sum(e.family == "cnn-lstm" for e in entries)  # the PPO has no probation
    events = [e for e in stack.ledger.events() if e["kind"] == "probation"]
    one_hour = {e.name for e in entries if e.timeframe == "1h" and e.family == "cnn-lstm"}
    assert sorted(e["model_name"] for e in events) == sorted(one_hour)  # once each, by the 1h leader
    assert all(e["reason"] == "on probation: 0 of 30 resolved calls" for e in events)
    signal = asyncio.run(stack.engine.predict(BTC, "1h"))
    assert signal.actionable is False


def test_the_loop_wakes_at_each_close_plus_the_delay_on_its_clock(stack: Stack) -> None:
    """The loop itself, in virtual time: the catch-up at start, then one wake-up per close (plus the delay) with the
    timeframes that closed; a whole hour of closes in no wall time."""
    clock = FakeClock("2026-11-20 10:00:06Z")
    settings = stack.settings.model_copy(update={"scheduler_delay_s": 5.0})
    scheduler = Scheduler(stack.engine, stack.ledger, stack.writer, settings, clock=clock)
    ticks: list[tuple[pd.Timestamp, list[str]]] = []

    async def run_five_ticks() -> None:
        done = asyncio.Event()

        async def record(timeframes: list[str], **_: Any) -> list[Any]:
            ticks.append((clock.now(), sorted(timeframes)))
            if len(ticks) == 5:
                done.set()
            return []

        scheduler.tick = record  # type: ignore[method-assign]
        scheduler.start()
        await asyncio.wait_for(done.wait(), timeout=10)
        await scheduler.stop()

    asyncio.run(run_five_ticks())
    at = pd.Timestamp("2026-11-20 10:00:05", tz="UTC")
    minutes = pd.Timedelta(minutes=1)
    assert ticks[:5] == [
        (at + pd.Timedelta(seconds=1), sorted(settings.timeframes)),  # the catch-up, at start
        (at + 15 * minutes, ["15m"]),
        (at + 30 * minutes, ["15m"]),
        (at + 45 * minutes, ["15m"]),
        (at + 60 * minutes, ["15m", "1h"]),
    ]


def test_the_start_up_catch_up_is_not_counted_as_scheduler_lag(stack: Stack) -> None:
    """A restart 15 h after the 1d close: the catch-up's lag counts from the start (0 s on a clock that stands
    still), not from the close (55,060 s); the next close's refresh counts from its close (the 5 s delay)."""
    start = pd.Timestamp("2026-11-20 15:17:40Z")
    clock = FakeClock(start)
    settings = stack.settings.model_copy(update={"scheduler_delay_s": 5.0})
    scheduler = Scheduler(stack.engine, stack.ledger, stack.writer, settings, clock=clock)
    gauge = stack.engine.metrics.scheduler_lag
    seen: list[tuple[str, bool, float, float]] = []  # (timeframe, catch-up, report's lag, gauge)

    async def catch_up_then_one_close() -> None:
        real = scheduler.refresh

        async def watched(timeframe: str, **kwargs: Any) -> Any:
            report = await real(timeframe, **kwargs)
            seen.append((timeframe, report.catch_up, report.lag_seconds, gauge.labels(timeframe)._value.get()))
            return report

        scheduler.refresh = watched  # type: ignore[method-assign]
        scheduler.start()
        while len(seen) <= len(scheduler.timeframes):
            await asyncio.sleep(0.01)
        await scheduler.stop()

    asyncio.run(catch_up_then_one_close())
    caught_up, first_close = seen[: len(scheduler.timeframes)], seen[len(scheduler.timeframes)]
    assert "1d" in scheduler.timeframes and {tf for tf, *_ in caught_up} == set(scheduler.timeframes)
    assert all(catch_up and lag == 0.0 and metric == 0.0 for _, catch_up, lag, metric in caught_up), caught_up
    assert (clock.now() - close_time(last_closed_open(start, "1d"), "1d")).total_seconds() > 55_000
    assert first_close == ("15m", False, 5.0, 5.0)  # 15:30:05, five seconds after the 15:30 close
