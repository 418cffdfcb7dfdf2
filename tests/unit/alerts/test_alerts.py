"""Alerts over a real ledger (SQLite and PostgreSQL) and a real receiving HTTP server on 127.0.0.1.

What becomes an alert, in the same transaction as the record that caused it; signed deliveries; retries with
backoff through failures and timeouts; dead letters; and at least once through a sender killed mid-delivery,
a repeat only for the message whose answer was lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from signals.alerts import webhook
from signals.alerts.dispatcher import AlertDispatcher
from signals.alerts.targets import TargetPolicy
from signals.ledger import outbox as outbox_module
from signals.ledger.outbox import RetryPolicy, add_subscription, message_log, outbox_counts, remove_subscription
from signals.ledger.rules import Filters
from signals.ledger.schema import alert_outbox, signal_records
from signals.ledger.store import Ledger
from tests.support.clock import FakeClock
from tests.support.factories import action_record, signal_record
from tests.support.receiver import Receiver, webhook_receiver

HOUR = 3_600_000
T0 = 1_795_000_000_000 - 1_795_000_000_000 % HOUR
BACKOFF = RetryPolicy(max_attempts=4, first_delay_s=2, max_delay_s=60, jitter=0.0)  # retries 2 s, 4 s, 8 s later
RECORDED = T0 + 2 * HOUR + 5_000  # when signal_at(1) is recorded: the alerts it makes are due then


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def signal_at(candle: int, direction: str, *, actionable: bool = False, symbol: str = "BTC/USDT", **extra: Any) -> dict:
    return signal_record(
        symbol=symbol,
        model_name=f"cnn-lstm-{symbol[:3].lower()}-usdt-1h",
        model_version="v1",
        candle_ms=T0 + candle * HOUR,
        recorded_ms=T0 + candle * HOUR + HOUR + 5_000,
        direction=direction,
        actionable=actionable,
        payload={"symbol": symbol, "direction": direction, "candle": candle},
        **extra,
    )


def subscribe(ledger: Ledger, url: str, **filters: Any) -> int:
    return add_subscription(
        ledger.engine,
        name="desk",
        kind="webhook",
        target=url,
        secret="s3cret",
        filters=Filters(**filters).model_dump(),
        now_ms=T0,
    )


def messages(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.select(alert_outbox).order_by(alert_outbox.c.id)).mappings()]


@pytest.fixture
def clock() -> FakeClock:
    """The senders' clock, at the moment the test's alerts are written."""
    return FakeClock(pd.Timestamp(RECORDED, unit="ms", tz="UTC"))


def dispatcher(ledger: Ledger, clock: FakeClock, **extra: Any) -> AlertDispatcher:
    return AlertDispatcher(ledger.engine, policy=BACKOFF, timeout_s=extra.pop("timeout_s", 2.0), clock=clock, **extra)


def deliver_all(sender: AlertDispatcher, ledger: Ledger, clock: FakeClock, rounds: int = 20) -> None:
    """Deliver what is due; when nothing is, move the clock to the next retry's time (no wait): every attempt
    happens when the policy says, on the sender's clock."""

    async def go() -> None:
        try:
            for _ in range(rounds):
                if await sender.deliver_due():
                    continue
                due = next_attempt_ms(ledger)
                if due is None:
                    return
                clock.advance_to(pd.Timestamp(due, unit="ms", tz="UTC"))
            pytest.fail(f"messages still due after {rounds} rounds: {outbox_counts(ledger.engine)}")
        finally:
            await sender.stop()

    asyncio.run(go())


def next_attempt_ms(ledger: Ledger) -> int | None:
    """When the next pending message is due; None when none is pending."""
    with ledger.engine.connect() as connection:
        pending = alert_outbox.c.status == "pending"
        due = connection.execute(sa.select(sa.func.min(alert_outbox.c.next_attempt_ms)).where(pending)).scalar()
    return None if due is None else int(due)


# --- what is an alert ---------------------------------------------------------------------------------------------
def test_a_direction_change_at_a_candle_close_is_one_alert_per_subscriber_that_wants_it(ledger: Ledger) -> None:
    everything = subscribe(ledger, "http://127.0.0.1:9/all", actionable_only=False)
    eth_only = subscribe(ledger, "http://127.0.0.1:9/eth", actionable_only=False, symbols=["ETH/USDT"])
    actionable = subscribe(ledger, "http://127.0.0.1:9/plans")  # the default: actionable signals only
    ledger.record_signals([signal_at(0, "LONG")])  # nothing to compare with yet
    ledger.record_signals([signal_at(1, "LONG")])  # no change
    ledger.record_signals([signal_at(2, "SHORT")])  # a change, not actionable
    ledger.record_signals([signal_at(2, "SHORT")])  # recorded again (another worker): no second alert
    ledger.record_signals([signal_at(3, "SHORT", actionable=True)])  # becomes actionable
    ledger.record_signals([signal_at(4, "LONG", mode="backfill")])  # history is not news
    sent = [(m["subscription_id"], m["event_type"], m["event_key"]) for m in messages(ledger)]
    assert sent == [
        (everything, "signal.changed", "signal.changed:v1:BTC/USDT:" + _iso(2)),
        (everything, "signal.actionable", "signal.actionable:v1:BTC/USDT:" + _iso(3)),
        (actionable, "signal.actionable", "signal.actionable:v1:BTC/USDT:" + _iso(3)),
    ]
    assert all(m["subscription_id"] != eth_only for m in messages(ledger))
    payload = messages(ledger)[0]["payload"]
    assert payload["data"]["previous"] == {"direction": "LONG", "actionable": False, "candle_time": _iso(1)}
    assert payload["data"]["signal"]["direction"] == "SHORT" and payload["type"] == "signal.changed"


def _iso(candle: int) -> str:
    return pd.Timestamp(T0 + candle * HOUR, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_alert_is_written_with_the_record_or_neither_is(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    subscribe(ledger, "http://127.0.0.1:9/all", actionable_only=False)
    ledger.record_signals([signal_at(0, "LONG")])

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the outbox write failed")

    monkeypatch.setattr("signals.ledger.store.enqueue_signal_events", broken)
    with pytest.raises(RuntimeError):
        ledger.record_signals([signal_at(1, "SHORT")])
    with ledger.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(signal_records)).scalar() == 1
    assert messages(ledger) == []


def test_promotions_policy_actions_and_every_signal_on_request(ledger: Ledger) -> None:
    hooks = subscribe(
        ledger,
        "http://127.0.0.1:9/ops",
        actionable_only=False,
        events=["model.promoted", "signal.recorded", "action.changed"],
    )
    ledger.add_event({"at_ms": T0, "kind": "promote", "model_name": "cnn-lstm-btc-usdt-1h", "from_version": "v1",
                      "to_version": "v2", "reason": "beats the served version", "detail": None})  # fmt: skip
    ledger.add_event({"at_ms": T0, "kind": "pin", "model_name": "cnn-lstm-btc-usdt-1h", "from_version": "v2",
                      "to_version": "v2", "reason": "pinned", "detail": None})  # fmt: skip
    ledger.record_actions([action_record(candle_ms=T0, action_name="HOLD", recorded_ms=T0 + HOUR)])
    ledger.record_actions([action_record(candle_ms=T0 + HOUR, action_name="BUY", recorded_ms=T0 + 2 * HOUR)])
    ledger.record_actions(
        [action_record(candle_ms=T0 + 2 * HOUR, position="long", action_name="SELL", recorded_ms=T0 + 3 * HOUR)]
    )
    ledger.record_signals([signal_at(0, "LONG")])
    types = Counter(m["event_type"] for m in messages(ledger) if m["subscription_id"] == hooks)
    assert types == Counter({"model.promoted": 1, "action.changed": 1, "signal.recorded": 1})  # no pin, no position


# --- delivery -----------------------------------------------------------------------------------------------------
def test_a_delivery_is_signed_and_carries_its_idempotency_key(
    ledger: Ledger, receiver: Receiver, clock: FakeClock
) -> None:
    subscribe(ledger, receiver.url, actionable_only=False)
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger, clock), ledger, clock)
    (delivery,) = receiver.wait_for(1)
    assert webhook.verify("s3cret", delivery.headers, delivery.body)
    assert not webhook.verify("wrong", delivery.headers, delivery.body)
    assert not webhook.verify("s3cret", delivery.headers, delivery.body + b" ")  # the body is what is signed
    assert not webhook.verify("s3cret", delivery.headers, delivery.body, now=time.time() + 3600)  # a replay
    assert delivery.key == delivery.payload["id"] == "signal.changed:v1:BTC/USDT:" + _iso(1)
    assert delivery.event == "signal.changed" and delivery.headers["Content-Type"] == "application/json"
    assert outbox_counts(ledger.engine) == {"delivered": 1}


def test_failures_and_timeouts_are_retried_with_backoff_and_every_attempt_is_logged(
    ledger: Ledger, receiver: Receiver, clock: FakeClock
) -> None:
    subscribe(ledger, receiver.url, actionable_only=False)
    receiver.hold_next(1)  # the first attempt gets no answer at all: the sender times out, however busy the machine
    receiver.fail_next(2)  # the next two get 500, the fourth gets through
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger, clock, timeout_s=1.0), ledger, clock)
    receiver.wait_for(1)
    (logged,) = message_log(ledger.engine)
    attempts = logged["attempt_log"]
    assert logged["status"] == "delivered" and logged["attempts"] == len(attempts) == 4
    # Attempt 1 when the alert was written, then each retry after its backoff (2 s, 4 s, 8 s) on the sender's clock.
    assert [(a["at_ms"] - RECORDED, a["status_code"]) for a in attempts] == [
        (0, None),
        (2_000, 500),
        (6_000, 500),
        (14_000, 204),
    ]
    assert "Timeout" in attempts[0]["error"] and all("HTTP 500" in a["error"] for a in attempts[1:3])


def test_a_message_no_receiver_takes_is_dead_after_its_attempts(
    ledger: Ledger, receiver: Receiver, clock: FakeClock
) -> None:
    subscribe(ledger, receiver.url, actionable_only=False)
    receiver.fail_next(100)
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger, clock), ledger, clock)
    (logged,) = message_log(ledger.engine)
    assert logged["status"] == "dead" and logged["attempts"] == BACKOFF.max_attempts
    assert "HTTP 500" in logged["last_error"] and receiver.refused == BACKOFF.max_attempts
    assert [a["at_ms"] - RECORDED for a in logged["attempt_log"]] == [0, 2_000, 6_000, 14_000]
    assert outbox_counts(ledger.engine) == {"dead": 1} and next_attempt_ms(ledger) is None  # no fifth attempt


def test_a_target_the_policy_refuses_is_never_contacted(ledger: Ledger, receiver: Receiver, clock: FakeClock) -> None:
    """A URL stored before the policy (or by hand) still goes through the check before every attempt."""
    subscribe(ledger, receiver.url, actionable_only=False)  # http://127.0.0.1: loopback and plain http
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger, clock, targets=TargetPolicy()), ledger, clock)
    (logged,) = message_log(ledger.engine)
    assert receiver.deliveries == [] and receiver.refused == 0
    assert logged["status"] == "dead" and "refused by the webhook policy" in logged["last_error"]


def test_a_removed_subscription_gets_no_more_messages(ledger: Ledger, receiver: Receiver, clock: FakeClock) -> None:
    hook = subscribe(ledger, receiver.url, actionable_only=False)
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    assert remove_subscription(ledger.engine, hook)
    deliver_all(dispatcher(ledger, clock), ledger, clock)
    assert receiver.deliveries == [] and outbox_counts(ledger.engine) == {"dead": 1}


def test_health_changes_are_alerts_once_each(ledger: Ledger) -> None:
    subscribe(ledger, "http://127.0.0.1:9/ops")
    state = {"exchange": (False, None)}
    sender = AlertDispatcher(ledger.engine, health=lambda: dict(state), policy=BACKOFF)

    async def go() -> list[int]:
        first = await sender.watch_health()  # learns
        state["exchange"] = (True, "binance is failing")
        changed = await sender.watch_health()
        again = await sender.watch_health()
        state["exchange"] = (False, None)
        back = await sender.watch_health()
        return [first, changed, again, back]

    assert asyncio.run(go()) == [0, 1, 0, 1]
    assert [m["event_type"] for m in messages(ledger)] == ["health.degraded", "health.recovered"]


def test_a_sender_killed_mid_delivery_loses_nothing_and_repeats_only_that_message(
    database_url: str, ledger: Ledger, receiver: Receiver, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("one database suffices for the process-level kill (the claim logic is tested on both)")
    subscribe(ledger, receiver.url, actionable_only=False, events=["signal.recorded"])
    ledger.record_signals([signal_at(c, "LONG") for c in range(4)])  # four messages
    receiver.hold_next(1)  # the first delivery is in flight when the sender dies
    env = {
        **os.environ,
        "SIGNALS_DATABASE_URL": database_url,
        "SIGNALS_ALERT_LEASE_S": "60",
        "SIGNALS_DATA_DIR": str(tmp_path),
        "SIGNALS_WEBHOOK_ALLOW_HTTP": "true",  # the receiver is http://127.0.0.1
        "SIGNALS_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    command = [str(Path(sys.executable).parent / "signals"), "alerts", "run"]
    sender = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        receiver.wait_until_held(1)
        wait_for_counts(ledger, {"delivered": 3, "sending": 1})  # the other three are delivered and recorded
        os.killpg(sender.pid, signal.SIGKILL)  # mid-delivery: the answer will never be recorded
    finally:
        sender.wait(10)
    receiver.release()  # the held request completes at the receiver; nobody records its answer
    receiver.wait_for(4)
    # The next sender runs two minutes later on its clock (SIGNALS_CLOCK_OFFSET_S): the dead sender's 60 s lease
    # has expired by then, without waiting for it.
    later = {**env, "SIGNALS_CLOCK_OFFSET_S": "120"}
    done = subprocess.run([*command, "--once"], env=later, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    keys = Counter(receiver.keys())
    expected = {f"signal.recorded:v1:BTC/USDT:{_iso(c)}" for c in range(4)}
    assert set(keys) == expected  # nothing lost
    repeated = [key for key, count in keys.items() if count > 1]
    assert len(repeated) <= 1  # only the message whose answer was lost, under the same key
    assert outbox_counts(ledger.engine) == {"delivered": 4}


def wait_for_counts(ledger: Ledger, expected: dict[str, int], timeout_s: float = 30) -> None:
    """Until the outbox's counts are `expected` (another process delivers); fails with the last counts seen."""
    deadline = time.monotonic() + timeout_s
    counts = outbox_counts(ledger.engine)
    while counts != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"the outbox never reached {expected} in {timeout_s} s: {counts}")
        time.sleep(0.05)
        counts = outbox_counts(ledger.engine)


def test_the_retry_policy_backs_off_exponentially_with_bounded_jitter() -> None:
    import random

    policy = RetryPolicy(first_delay_s=2, max_delay_s=60, jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay_ms(n, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        base = min(60_000, 2_000 * 2 ** (n - 1))
        assert 0.8 * base <= delay <= 1.2 * base
    assert outbox_module.RetryPolicy().max_attempts == 8
