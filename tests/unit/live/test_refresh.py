"""The refresh at a candle close, in order: every candle its models read is read first (all at once), then the served
signals are computed, recorded and pushed, and only then the shadows, which no served signal waits for. Sequences on
a clock that stands still, not durations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from signals.core.metrics import server_metrics
from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.live.scheduler import Scheduler
from signals.serving.catalog import ModelCatalog, ModelEntry
from signals.serving.engine import SignalEngine
from tests.support.clock import FakeClock
from tests.support.factories import random_walk_candles
from tests.support.fakes import FakeCnnLstm, FakePpo

PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
TIMEFRAMES = ("15m", "1h", "4h")
BARS = 300  # fewer than the market context's long tail: the store holds all there is


@dataclass
class Refresh:
    scheduler: Scheduler
    engine: SignalEngine
    ledger: Ledger
    events: list[tuple[Any, ...]]


def entry(family: str, symbol: str, timeframe: str, role: str = "served") -> ModelEntry:
    name = f"{family}-{symbol.replace('/', '-').lower()}-{timeframe}"
    metadata = {"metrics": {}, "threshold": 0.6, "horizon": 10, "training": {"pooled_symbols": list(PAIRS)}}
    return ModelEntry(family, name, f"{name}:v1", "v1", symbol, timeframe, metadata, role=role)


@pytest.fixture
def refresh(tmp_path: Path) -> Iterator[Refresh]:
    """Three pairs served by a CNN-LSTM on 15m, each with a market-context GBM in shadow (it reads its pooled
    universe's 15m candles and their 1h and 4h ones); the runners answer fixed numbers."""
    store = CandleStore(tmp_path / "data")
    end = pd.Timestamp("2024-03-01", tz="UTC")
    for seed, symbol in enumerate(PAIRS):
        for timeframe in TIMEFRAMES:
            step = pd.Timedelta(timeframe)
            candles = random_walk_candles(BARS, timeframe=timeframe, seed=seed, start=str(end - BARS * step))
            store.write("synthetic", symbol, timeframe, candles)
    settings = Settings(
        data_dir=tmp_path / "data", exchange="synthetic", universe=list(PAIRS), timeframes=["15m"],
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}", probation_calls=0,
    )  # fmt: skip
    ledger = Ledger.from_settings(settings)
    ledger.migrate()
    writer = LedgerWriter(ledger, server_metrics())
    clock = FakeClock(end + pd.Timedelta(seconds=5))
    catalog = ModelCatalog(
        [entry("cnn-lstm", symbol, "15m") for symbol in PAIRS],
        [entry("gbm", symbol, "15m", role="shadow") for symbol in PAIRS],
    )
    engine = SignalEngine.offline(
        settings, catalog, cnn_lstm=FakeCnnLstm(), ppo=FakePpo(), families=FakeCnnLstm(), writer=writer, clock=clock.now
    )
    events: list[tuple[Any, ...]] = []
    market, store_reads = engine.market, engine.market.store.read_tail

    def read_tail(exchange: str, symbol: str, timeframe: str, rows: int) -> pd.DataFrame:
        events.append(("read", symbol, timeframe))
        return store_reads(exchange, symbol, timeframe, rows)

    market.store.read_tail = read_tail  # type: ignore[method-assign]
    try:
        yield Refresh(Scheduler(engine, ledger, writer, settings, clock=clock), engine, ledger, events)
    finally:
        writer.close()
        ledger.close()


def watch(refresh: Refresh, name: str, event: Any) -> None:
    """Log `event(...)` in the sequence each time the engine's `name` step finishes."""
    real = getattr(refresh.engine, name)

    async def watched(*args: Any, **kwargs: Any) -> Any:
        answer = await real(*args, **kwargs)
        refresh.events.append(event(answer))
        return answer

    setattr(refresh.engine, name, watched)


def live_rows(ledger: Ledger) -> int:
    return sum(row["mode"] == "live" for row in ledger.recorded_since("15m", 0))


def test_every_candle_is_read_first_and_the_served_signals_are_recorded_before_the_shadows_run(
    refresh: Refresh,
) -> None:
    watch(refresh, "read_candles", lambda read: ("candles read", read))
    watch(refresh, "predict_many", lambda signals: ("served", len(signals)))
    watch(refresh, "shadow", lambda shadows: ("shadows", len(shadows), live_rows(refresh.ledger)))
    report = asyncio.run(refresh.scheduler.refresh("15m"))

    wanted = {(symbol, timeframe) for symbol in PAIRS for timeframe in TIMEFRAMES}  # the context's universe
    read = refresh.events.index(("candles read", len(wanted)))
    assert {event[1:] for event in refresh.events[:read]} == wanted  # each series once, all before anything else
    assert len(refresh.events[:read]) == len(wanted)
    # Then the served signals, recorded (so pushed) before the shadows are computed; nothing is read again.
    assert refresh.events[read + 1 :] == [("served", 3), ("shadows", 3, 3)]
    assert (report.signals, report.recorded, report.shadows) == (3, 3, 3)
    assert list(report.phases)[:5] == ["lease", "read", "signals", "actions", "record"]
    assert report.read_seconds == report.phases["read"] and report.shadow_seconds == report.phases["shadows"]
    phases = report.phases
    assert report.seconds == pytest.approx(phases["signals"] + phases["actions"] + phases["record"])


def test_a_pair_whose_candles_cannot_be_read_fails_alone_in_the_computing_step(refresh: Refresh) -> None:
    """A read error is not the refresh's: the computing step meets it again and reports it for that pair."""
    CandleStore(refresh.engine.settings.data_dir).path_for("synthetic", "SOL/USDT", "15m").unlink()
    report = asyncio.run(refresh.scheduler.refresh("15m"))
    assert report.signals == 2 and set(report.errors) == {"SOL/USDT"}
    assert "no 15m candles for SOL/USDT" in report.errors["SOL/USDT"]
