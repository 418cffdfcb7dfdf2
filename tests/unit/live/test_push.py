"""The push hub over a real ledger (SQLite and PostgreSQL): each recorded signal reaches each subscriber that wants
it once, late commits included; a caller's own position is never broadcast; a reconnect resumes from its event id;
a subscriber that cannot keep up is closed, not silently skipped."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pandas as pd
import pytest

from signals.core.errors import InvalidInput
from signals.ledger.records import ms
from signals.ledger.store import Ledger
from signals.live import push
from signals.live.push import Event, Interest, PushHub, Subscription, parse_event_id
from tests.support.factories import action_record, signal_record

START = pd.Timestamp("2026-11-20 10:00:05", tz="UTC")
HOUR_MS = 3_600_000


class Clock:
    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now


def signal_at(symbol: str, timeframe: str, *, candle: int = 0, seconds_after_start: float = 1.0, **extra: Any) -> dict:
    version = f"v-{symbol[:3].lower()}-{timeframe}"
    return signal_record(
        model_name=f"cnn-lstm-{symbol[:3].lower()}-usdt-{timeframe}",
        model_version=version,
        symbol=symbol,
        timeframe=timeframe,
        candle_ms=ms(START.floor("h")) + candle * HOUR_MS,
        recorded_ms=ms(START) + int(seconds_after_start * 1000),
        payload={"symbol": symbol, "timeframe": timeframe, "candle": candle},
        **extra,
    )


def drained(subscription: Subscription) -> list[Event]:
    events: list[Event] = []
    while not subscription.queue.empty():
        events.extend(subscription.queue.get_nowait())
    return events


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_each_recorded_signal_reaches_each_subscriber_that_wants_it_once(ledger: Ledger) -> None:
    clock = Clock(START)
    hub = PushHub(ledger, clock=clock)
    everything = hub.subscribe(Interest())
    btc_hourly = hub.subscribe(Interest.parse(["BTCUSDT"], ["1h"]))
    ledger.record_signals([signal_at("BTC/USDT", "1h"), signal_at("ETH/USDT", "1h"), signal_at("BTC/USDT", "15m")])
    clock.now = START + pd.Timedelta(seconds=2)

    assert run(hub.tail()) == 3
    assert run(hub.tail()) == 0  # the same records are not published twice
    assert [(e.symbol, e.timeframe) for e in drained(everything)] == [
        ("BTC/USDT", "1h"),
        ("ETH/USDT", "1h"),
        ("BTC/USDT", "15m"),
    ]
    (only,) = drained(btc_hourly)
    assert only.kind == "signal" and only.id == "v-btc-1h|BTC/USDT|2026-11-20T10:00:00Z"
    assert only.data == {"symbol": "BTC/USDT", "timeframe": "1h", "candle": 0}  # the payload, as served


def test_a_record_committed_after_a_later_one_is_still_published_once(ledger: Ledger) -> None:
    clock = Clock(START)
    hub = PushHub(ledger, clock=clock, settle_ms=30_000)
    subscription = hub.subscribe(Interest())
    ledger.record_signals([signal_at("ETH/USDT", "1h", seconds_after_start=5)])
    clock.now = START + pd.Timedelta(seconds=6)
    assert run(hub.tail()) == 1
    # A busy writer commits a record stamped before the one already published (and before the last look).
    ledger.record_signals([signal_at("BTC/USDT", "1h", seconds_after_start=3)])
    clock.now = START + pd.Timedelta(seconds=8)
    assert run(hub.tail()) == 1
    assert run(hub.tail()) == 0
    assert [e.symbol for e in drained(subscription)] == ["ETH/USDT", "BTC/USDT"]


def test_only_what_everyone_may_see_is_published(ledger: Ledger) -> None:
    clock = Clock(START)
    hub = PushHub(ledger, clock=clock)
    subscription = hub.subscribe(Interest())
    recorded = ms(START) + 1000
    ledger.record_actions(
        [
            action_record(symbol="BTC/USDT", position="flat", recorded_ms=recorded),
            action_record(symbol="BTC/USDT", position="long", recorded_ms=recorded),  # a caller's own position
        ]
    )
    ledger.record_signals(
        [
            signal_at("BTC/USDT", "1h", candle=1, mode="shadow"),  # a candidate version, never served
            signal_at("ETH/USDT", "1h", candle=-5, mode="backfill"),  # history, not news
        ]
    )
    clock.now = START + pd.Timedelta(seconds=2)
    run(hub.tail())
    (event,) = drained(subscription)
    assert event.kind == "action" and event.symbol == "BTC/USDT" and event.id.startswith("ppo1|")


def test_kinds_and_bad_parameters(ledger: Ledger) -> None:
    clock = Clock(START)
    hub = PushHub(ledger, clock=clock)
    actions_only = hub.subscribe(Interest.parse(None, None, ["action"]))
    ledger.record_signals([signal_at("BTC/USDT", "1h")])
    ledger.record_actions([action_record(recorded_ms=ms(START) + 1000)])
    clock.now = START + pd.Timedelta(seconds=2)
    run(hub.tail())
    assert [e.kind for e in drained(actions_only)] == ["action"]
    for symbols, timeframes, kinds, says in [
        (["XXX"], None, None, "quote currency"),
        (None, ["7m"], None, "unknown timeframe"),
        (None, None, ["trade"], "unknown event kind"),
    ]:
        with pytest.raises(InvalidInput, match=says):
            Interest.parse(symbols, timeframes, kinds)


def test_records_from_before_a_subscription_are_left_to_the_replay(ledger: Ledger) -> None:
    clock = Clock(START + pd.Timedelta(seconds=10))
    hub = PushHub(ledger, clock=clock)
    ledger.record_signals([signal_at("BTC/USDT", "1h", seconds_after_start=5)])  # before anyone subscribed
    subscription = hub.subscribe(Interest())
    ledger.record_signals([signal_at("ETH/USDT", "1h", seconds_after_start=11)])
    clock.now = START + pd.Timedelta(seconds=12)
    run(hub.tail())
    assert [e.symbol for e in drained(subscription)] == ["ETH/USDT"]


def test_a_reconnect_resumes_after_its_last_event_in_order(ledger: Ledger) -> None:
    hub = PushHub(ledger, clock=Clock(START))
    rows = [signal_at("BTC/USDT", "1h", candle=c, seconds_after_start=c + 1) for c in range(4)]
    ledger.record_signals([*rows, signal_at("ETH/USDT", "1h", candle=2, seconds_after_start=2.5)])
    ledger.record_actions([action_record(candle_ms=rows[3]["candle_ms"], recorded_ms=rows[3]["recorded_ms"] + 1)])
    first = Event.from_row({**rows[0], "kind": "signal", "id": 1})

    everything = run(hub.replay(first.id, Interest()))
    assert [(e.kind, e.symbol, e.data.get("candle")) for e in everything] == [
        ("signal", "BTC/USDT", 1),
        ("signal", "ETH/USDT", 2),  # recorded at 2.5 s: the stream's order is the recording order
        ("signal", "BTC/USDT", 2),
        ("signal", "BTC/USDT", 3),
        ("action", "BTC/USDT", None),
    ]
    assert [e.symbol for e in run(hub.replay(first.id, Interest.parse(["ETH/USDT"], None)))] == ["ETH/USDT"]
    assert run(hub.replay("v-unknown|BTC/USDT|2026-11-20T10:00:00Z", Interest())) is None
    with pytest.raises(InvalidInput, match="not an event id"):
        parse_event_id("garbage")
    assert parse_event_id(first.id) == ("v-btc-1h", "BTC/USDT", rows[0]["candle_ms"])


def test_a_subscriber_that_cannot_keep_up_is_closed_not_skipped(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "QUEUE_BATCHES", 2)
    clock = Clock(START)
    hub = PushHub(ledger, clock=clock)
    slow, fast = hub.subscribe(Interest()), hub.subscribe(Interest())
    for candle in range(3):
        ledger.record_signals([signal_at("BTC/USDT", "1h", candle=candle, seconds_after_start=candle + 1)])
        clock.now = START + pd.Timedelta(seconds=candle + 2)
        run(hub.tail())
        if candle < 2:
            drained(fast)  # the fast one keeps reading
    assert slow.overflowed and slow not in hub.subscriptions and hub.closed_slow == 1
    assert [e.data["candle"] for e in drained(slow)] == [0, 1]  # what it had stays in order; then it is closed
    assert slow.closed
    assert [e.data["candle"] for e in drained(fast)] == [2] and fast in hub.subscriptions


def test_the_worker_that_records_wakes_its_subscribers_at_once(ledger: Ledger) -> None:
    async def scenario() -> list[Event]:
        hub = PushHub(ledger, poll_s=60.0)  # only a poke can wake it within the test
        hub.start()
        try:
            subscription = hub.subscribe(Interest())
            row = signal_at("BTC/USDT", "1h")
            row["recorded_ms"] = ms(pd.Timestamp.now(tz="UTC"))

            def writer_thread() -> None:
                ledger.record_signals([row])
                hub.poke("signal", [row])

            threading.Thread(target=writer_thread).start()
            return await asyncio.wait_for(subscription.queue.get(), timeout=5)
        finally:
            await hub.stop()

    (event,) = asyncio.run(scenario())
    assert event.symbol == "BTC/USDT"


def test_a_new_subscriber_is_shown_the_newest_record_of_each_pair_it_wants(ledger: Ledger) -> None:
    clock = Clock(START + pd.Timedelta(hours=2))
    hub = PushHub(ledger, clock=clock)
    ledger.record_signals(
        [
            signal_at("BTC/USDT", "1h", candle=0, seconds_after_start=1),
            signal_at("BTC/USDT", "1h", candle=1, seconds_after_start=3601),
            signal_at("ETH/USDT", "1h", candle=1, seconds_after_start=3602),
            signal_at("BTC/USDT", "15m", candle=1, seconds_after_start=3603),
            signal_at("SOL/USDT", "1h", candle=0, seconds_after_start=1, mode="shadow"),  # not served: not shown
        ]
    )
    recorded = ms(START) + 3_604_000
    ledger.record_actions(
        [
            action_record(candle_ms=ms(START.floor("h")), recorded_ms=recorded - 3_600_000),
            action_record(candle_ms=ms(START.floor("h")) + HOUR_MS, recorded_ms=recorded),
            action_record(candle_ms=ms(START.floor("h")) + HOUR_MS, position="long", recorded_ms=recorded + 1),
        ]
    )
    everything = run(hub.snapshot(Interest()))
    assert [(e.kind, e.symbol, e.timeframe, e.data.get("candle")) for e in everything if e.kind == "signal"] == [
        ("signal", "BTC/USDT", "1h", 1),
        ("signal", "ETH/USDT", "1h", 1),
        ("signal", "BTC/USDT", "15m", 1),
    ]
    (action,) = [e for e in everything if e.kind == "action"]
    assert action.id == "ppo1|BTC/USDT|2026-11-20T11:00:00Z"  # the newest flat-position action
    btc_hourly = run(hub.snapshot(Interest.parse(["BTC-USDT"], ["1h"], ["signal"])))
    assert [(e.symbol, e.data["candle"]) for e in btc_hourly] == [("BTC/USDT", 1)]
    clock.now = START + pd.Timedelta(days=3)  # nothing recorded in the last two days: nothing to show
    assert run(hub.snapshot(Interest())) == []


def test_a_refresh_of_a_recorded_candle_is_pushed_again_to_current_subscribers(ledger: Ledger) -> None:
    clock = Clock(START)
    hub = PushHub(ledger, clock=clock)
    ledger.record_signals([signal_at("BTC/USDT", "1h"), signal_at("ETH/USDT", "1h")])
    clock.now = START + pd.Timedelta(minutes=5)
    late = hub.subscribe(Interest.parse(["BTCUSDT"], None))  # subscribed after the candle was recorded
    assert run(hub.tail()) == 0 or drained(late) == []  # the tail publishes a record once, to those before it
    rows = ledger.published_since(0)
    assert hub.republish(rows) == 2
    (again,) = drained(late)
    assert again.again and again.symbol == "BTC/USDT" and again.id == "v-btc-1h|BTC/USDT|2026-11-20T10:00:00Z"


def test_an_interest_keeps_each_symbol_as_the_subscriber_wrote_it() -> None:
    interest = Interest.parse(["BTC-USDT", " ethusdt "], None)
    assert interest.symbols == frozenset({"BTC/USDT", "ETH/USDT"})
    assert interest.spelling("BTC/USDT") == "BTC-USDT" and interest.spelling("ETH/USDT") == "ethusdt"
    assert interest.spelling("SOL/USDT") is None and Interest().spelling("BTC/USDT") is None
    assert interest == Interest.parse(["BTC/USDT", "ETHUSDT"], None)  # the spelling is not what it wants
