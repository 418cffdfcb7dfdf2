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

import pytest
import sqlalchemy as sa

from signals.alerts import webhook
from signals.alerts.dispatcher import AlertDispatcher
from signals.ledger import outbox as outbox_module
from signals.ledger.outbox import RetryPolicy, add_subscription, message_log, outbox_counts, remove_subscription
from signals.ledger.rules import Filters
from signals.ledger.schema import alert_outbox, signal_records
from signals.ledger.store import Ledger
from tests.support.factories import action_record, signal_record
from tests.support.receiver import Receiver, webhook_receiver

HOUR = 3_600_000
T0 = 1_795_000_000_000 - 1_795_000_000_000 % HOUR
FAST = RetryPolicy(max_attempts=4, first_delay_s=0.05, max_delay_s=0.2, jitter=0.0)


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


def dispatcher(ledger: Ledger, **extra: Any) -> AlertDispatcher:
    return AlertDispatcher(ledger.engine, policy=FAST, timeout_s=extra.pop("timeout_s", 2.0), **extra)


def deliver_all(sender: AlertDispatcher, ledger: Ledger, timeout_s: float = 20) -> None:
    async def go() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = outbox_counts(ledger.engine)
            if not counts.get("pending") and not counts.get("sending"):
                break
            await sender.deliver_due()
            await asyncio.sleep(0.05)
        await sender.stop()

    asyncio.run(go())


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
    import pandas as pd

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
def test_a_delivery_is_signed_and_carries_its_idempotency_key(ledger: Ledger, receiver: Receiver) -> None:
    subscribe(ledger, receiver.url, actionable_only=False)
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger), ledger)
    (delivery,) = receiver.wait_for(1)
    assert webhook.verify("s3cret", delivery.headers, delivery.body)
    assert not webhook.verify("wrong", delivery.headers, delivery.body)
    assert not webhook.verify("s3cret", delivery.headers, delivery.body + b" ")  # the body is what is signed
    assert not webhook.verify("s3cret", delivery.headers, delivery.body, now=time.time() + 3600)  # a replay
    assert delivery.key == delivery.payload["id"] == "signal.changed:v1:BTC/USDT:" + _iso(1)
    assert delivery.event == "signal.changed" and delivery.headers["Content-Type"] == "application/json"
    assert outbox_counts(ledger.engine) == {"delivered": 1}


def test_failures_and_timeouts_are_retried_with_backoff_and_every_attempt_is_logged(
    ledger: Ledger, receiver: Receiver
) -> None:
    subscribe(ledger, receiver.url, actionable_only=False)
    receiver.fail_next(2)
    receiver.hang_next(1, 1.5)  # the first attempt waits past the sender's timeout, then the next two get 500
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger, timeout_s=0.5), ledger)
    receiver.wait_for(1)
    (logged,) = message_log(ledger.engine)
    attempts = logged["attempt_log"]
    assert logged["status"] == "delivered" and logged["attempts"] == len(attempts) >= 3
    assert attempts[0]["status_code"] is None and "Timeout" in attempts[0]["error"]
    assert [a["status_code"] for a in attempts[-2:]] in ([500, 204], [500, 500]) or attempts[-1]["status_code"] == 204
    gaps = [b["at_ms"] - a["at_ms"] for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(gap >= 40 for gap in gaps)  # each retry waited its backoff


def test_a_message_no_receiver_takes_is_dead_after_its_attempts(ledger: Ledger, receiver: Receiver) -> None:
    subscribe(ledger, receiver.url, actionable_only=False)
    receiver.fail_next(100)
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    deliver_all(dispatcher(ledger), ledger)
    (logged,) = message_log(ledger.engine)
    assert logged["status"] == "dead" and logged["attempts"] == FAST.max_attempts
    assert "HTTP 500" in logged["last_error"] and receiver.refused == FAST.max_attempts


def test_a_removed_subscription_gets_no_more_messages(ledger: Ledger, receiver: Receiver) -> None:
    hook = subscribe(ledger, receiver.url, actionable_only=False)
    ledger.record_signals([signal_at(0, "LONG"), signal_at(1, "SHORT")])
    assert remove_subscription(ledger.engine, hook)
    deliver_all(dispatcher(ledger), ledger)
    assert receiver.deliveries == [] and outbox_counts(ledger.engine) == {"dead": 1}


def test_health_changes_are_alerts_once_each(ledger: Ledger) -> None:
    subscribe(ledger, "http://127.0.0.1:9/ops")
    state = {"exchange": (False, None)}
    sender = AlertDispatcher(ledger.engine, health=lambda: dict(state), policy=FAST)

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
    receiver.hang_next(1, 4.0)  # the first delivery is in flight when the sender dies
    env = {
        **os.environ,
        "SIGNALS_DATABASE_URL": database_url,
        "SIGNALS_ALERT_LEASE_S": "1",
        "SIGNALS_DATA_DIR": str(tmp_path),
    }
    command = [str(Path(sys.executable).parent / "signals"), "alerts", "run"]
    sender = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while receiver.hangs_pending() and time.monotonic() < deadline:  # until the sender's first request is held
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(sender.pid, signal.SIGKILL)  # mid-delivery: the answer will never be recorded
    finally:
        sender.wait(10)
    time.sleep(4.5)  # the held request completes at the receiver; the dead sender's lease expires
    done = subprocess.run([*command, "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    keys = Counter(receiver.keys())
    expected = {f"signal.recorded:v1:BTC/USDT:{_iso(c)}" for c in range(4)}
    assert set(keys) == expected  # nothing lost
    repeated = [key for key, count in keys.items() if count > 1]
    assert len(repeated) <= 1  # only the message whose answer was lost, under the same key
    assert outbox_counts(ledger.engine) == {"delivered": 4}


def test_the_retry_policy_backs_off_exponentially_with_bounded_jitter() -> None:
    import random

    policy = RetryPolicy(first_delay_s=2, max_delay_s=60, jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay_ms(n, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        base = min(60_000, 2_000 * 2 ** (n - 1))
        assert 0.8 * base <= delay <= 1.2 * base
    assert outbox_module.RetryPolicy().max_attempts == 8
