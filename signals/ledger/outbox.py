"""The alert outbox in the ledger database: subscriptions, messages written in the same transaction as the record
that caused them, claims by senders, every attempt, and the dead letters.

A message is `pending` until a sender claims it (`sending`, with a lease); the sender records the answer:
`delivered` on 2xx, else `pending` again after a backoff with jitter, and `dead` after `max_attempts`. A sender that
dies holding a claim loses it when the lease expires and another sender delivers the message again: at least once,
with the event key as the receivers' idempotency key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from signals.ledger.rows import AttemptRow, MessageLogRow, RecordedAction, RecordedSignal, Subscription
from signals.ledger.rules import AlertEvent, Filters, action_event, recorded_event, signal_event, wants
from signals.ledger.schema import (
    action_records,
    alert_attempts,
    alert_outbox,
    alert_subscriptions,
    insert_ignoring_duplicates,
    signal_records,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    first_delay_s: float = 2.0
    max_delay_s: float = 900.0
    jitter: float = 0.2  # each delay varies by up to +-20 %, so that senders retrying together spread out

    def delay_ms(self, attempts: int, rng: random.Random | None = None) -> int:
        """The wait after the `attempts`-th failed attempt (1-based)."""
        base = min(self.max_delay_s, self.first_delay_s * 2 ** max(attempts - 1, 0))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return int(1000 * base * spread)


@dataclass(frozen=True)
class Claimed:
    """A message a sender holds: where it goes and what it says."""

    id: int
    kind: str
    target: str
    secret: str | None
    event_key: str
    event_type: str
    payload: dict[str, Any]
    attempts: int


# --- subscriptions ------------------------------------------------------------------------------------------
def add_subscription(
    engine: Engine, *, name: str, kind: str, target: str, secret: str | None, filters: Mapping[str, Any], now_ms: int
) -> int:
    """Add (or, for the same kind and target, replace) a subscription; its id."""
    with engine.begin() as connection:
        existing = connection.execute(
            sa.select(alert_subscriptions.c.id).where(
                alert_subscriptions.c.kind == kind, alert_subscriptions.c.target == target
            )
        ).scalar()
        values = {"name": name, "secret": secret, "filters": dict(filters), "active": True}
        if existing is not None:
            connection.execute(alert_subscriptions.update().where(alert_subscriptions.c.id == existing).values(values))
            return int(existing)
        row = {**values, "kind": kind, "target": target, "created_ms": now_ms}
        inserted = connection.execute(alert_subscriptions.insert().values(row)).inserted_primary_key
        assert inserted is not None
        return int(inserted[0])


def sync_webhooks(engine: Engine, configured: Sequence[Mapping[str, Any]], now_ms: int | None = None) -> int:
    """Add or update the webhooks of the settings (`SIGNALS_WEBHOOKS`), by URL; how many."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    for hook in configured:
        filters = Filters.model_validate(hook.get("filters", {}))
        add_subscription(
            engine,
            name=str(hook.get("name") or hook["url"]),
            kind="webhook",
            target=str(hook["url"]),
            secret=hook.get("secret"),
            filters=filters.model_dump(),
            now_ms=now_ms,
        )
    return len(configured)


def remove_subscription(engine: Engine, subscription: int | str, *, kind: str | None = None) -> bool:
    """Deactivate a subscription by id (or by target, for a kind); whether one was active. Its messages stay in the
    log; pending ones are no longer sent."""
    with engine.begin() as connection:
        where = (
            alert_subscriptions.c.id == subscription
            if isinstance(subscription, int)
            else (alert_subscriptions.c.target == str(subscription)) & (alert_subscriptions.c.kind == kind)
        )
        done = connection.execute(
            alert_subscriptions.update().where(where, alert_subscriptions.c.active.is_(True)).values(active=False)
        )
        return bool(done.rowcount)


def subscriptions(engine: Engine) -> list[Subscription]:
    """The active subscriptions, oldest first."""
    query = (
        sa.select(alert_subscriptions).where(alert_subscriptions.c.active.is_(True)).order_by(alert_subscriptions.c.id)
    )
    with engine.connect() as connection:
        return [cast(Subscription, dict(row)) for row in connection.execute(query).mappings()]


# --- writing messages -----------------------------------------------------------------------------------------
Subscribers = list[tuple[int, Filters]]


def active_subscribers(connection: Connection) -> Subscribers:
    """(id, filters) of every active subscription, the filters validated once for all the events they judge."""
    rows = connection.execute(
        sa.select(alert_subscriptions.c.id, alert_subscriptions.c.filters).where(alert_subscriptions.c.active.is_(True))
    ).all()
    return [(int(subscription_id), Filters.model_validate(filters)) for subscription_id, filters in rows]


def enqueue(
    connection: Connection, events: Iterable[AlertEvent], now_ms: int, subscribers: Subscribers | None = None
) -> int:
    """One message per (event, subscription that wants it), in the caller's transaction; how many are new (an event
    enqueued twice, e.g. by two workers noticing the same change, is kept once)."""
    events = list(events)
    if not events:
        return 0
    if subscribers is None:
        subscribers = active_subscribers(connection)
    rows = [
        {
            "subscription_id": subscription_id,
            "event_key": event.key,
            "event_type": event.type,
            "payload": event.payload(),
            "created_ms": now_ms,
            "status": "pending",
            "attempts": 0,
            "next_attempt_ms": now_ms,
        }
        for event in events
        for subscription_id, filters in subscribers
        if wants(filters, event)
    ]
    if not rows:
        return 0
    statement = insert_ignoring_duplicates(alert_outbox, connection.dialect.name).returning(alert_outbox.c.id)
    return len(connection.execute(statement, rows).all())


def enqueue_signal_events(connection: Connection, new_rows: Sequence[RecordedSignal], now_ms: int) -> int:
    """The events of newly recorded live signals (each against the pair's previous live record), enqueued in the
    transaction that recorded them. Nothing is read when nobody subscribes."""
    subscribers = active_subscribers(connection)
    if not subscribers:
        return 0
    events = []
    for row in new_rows:
        if row.get("mode") != "live":
            continue
        previous = _previous_live(connection, signal_records, row, ("direction", "actionable"))
        event = signal_event(row, previous, now_ms)
        if event is not None:
            events.append(event)
        events.append(recorded_event(row, now_ms))
    return enqueue(connection, events, now_ms, subscribers)


def enqueue_action_events(connection: Connection, new_rows: Sequence[RecordedAction], now_ms: int) -> int:
    """The events of newly recorded live actions for a flat position (a caller's own position is not news)."""
    subscribers = active_subscribers(connection)
    if not subscribers:
        return 0
    events = []
    for row in new_rows:
        if row.get("mode") != "live" or row.get("position") != "flat":
            continue
        previous = _previous_live(
            connection, action_records, row, ("action_name",), action_records.c.position == "flat"
        )
        event = action_event(row, previous, now_ms)
        if event is not None:
            events.append(event)
    return enqueue(connection, events, now_ms, subscribers)


def _previous_live(
    connection: Connection,
    table: sa.Table,
    row: Mapping[str, Any],
    columns: Sequence[str],
    *where: sa.ColumnElement[bool],
) -> dict[str, Any] | None:
    """The pair's live record before `row`'s candle: its candle and the `columns` the alert rules compare."""
    found = (
        connection.execute(
            sa.select(table.c.candle_ms, *(table.c[name] for name in columns))
            .where(
                table.c.symbol == row["symbol"],
                table.c.timeframe == row["timeframe"],
                table.c.mode == "live",
                table.c.candle_ms < row["candle_ms"],
                *where,
            )
            .order_by(table.c.candle_ms.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return None if found is None else dict(found)


# --- sending ----------------------------------------------------------------------------------------------------
def claim_due(engine: Engine, now_ms: int, lease_ms: int, limit: int = 20) -> list[Claimed]:
    """Messages due now (pending and their time come, or held by a sender whose lease expired), each claimed by
    one conditional update so that two senders never hold the same message."""
    due = ((alert_outbox.c.status == "pending") & (alert_outbox.c.next_attempt_ms <= now_ms)) | (
        (alert_outbox.c.status == "sending") & (alert_outbox.c.lease_until_ms < now_ms)
    )
    claimed = []
    with engine.connect() as connection:
        candidates = (
            connection.execute(sa.select(alert_outbox.c.id).where(due).order_by(alert_outbox.c.id).limit(limit))
            .scalars()
            .all()
        )
    for message_id in candidates:
        with engine.begin() as connection:
            taken = connection.execute(
                alert_outbox.update()
                .where(alert_outbox.c.id == message_id, due)
                .values(status="sending", lease_until_ms=now_ms + lease_ms)
            ).rowcount
            if taken != 1:
                continue  # another sender took it
            row = connection.execute(
                sa.select(alert_outbox, alert_subscriptions.c.kind, alert_subscriptions.c.target,
                          alert_subscriptions.c.secret, alert_subscriptions.c.active)
                .join(alert_subscriptions, alert_subscriptions.c.id == alert_outbox.c.subscription_id)
                .where(alert_outbox.c.id == message_id)
            ).mappings().one()  # fmt: skip
            if not row["active"]:  # unsubscribed meanwhile: not sent
                connection.execute(
                    alert_outbox.update().where(alert_outbox.c.id == message_id)
                    .values(status="dead", last_error="the subscription was removed")
                )  # fmt: skip
                continue
        claimed.append(
            Claimed(
                id=message_id,
                kind=str(row["kind"]),
                target=str(row["target"]),
                secret=row["secret"],
                event_key=str(row["event_key"]),
                event_type=str(row["event_type"]),
                payload=dict(row["payload"]),
                attempts=int(row["attempts"]),
            )
        )
    return claimed


def record_attempt(
    engine: Engine,
    message: Claimed,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    now_ms: int,
    policy: RetryPolicy,
) -> str:
    """Record one attempt and move the message on: `delivered`, `pending` (retry later) or `dead`; the new status."""
    attempts = message.attempts + 1
    if ok:
        values: dict[str, Any] = {"status": "delivered", "delivered_ms": now_ms, "last_error": None}
    elif attempts >= policy.max_attempts:
        values = {"status": "dead", "last_error": error}
    else:
        values = {"status": "pending", "next_attempt_ms": now_ms + policy.delay_ms(attempts), "last_error": error}
    with engine.begin() as connection:
        connection.execute(
            alert_attempts.insert().values(
                outbox_id=message.id, at_ms=now_ms, status_code=status_code, error=error, duration_ms=duration_ms
            )
        )
        connection.execute(
            alert_outbox.update()
            .where(alert_outbox.c.id == message.id)
            .values(attempts=attempts, lease_until_ms=None, **values)
        )
    return str(values["status"])


def message_log(engine: Engine, limit: int = 50) -> list[MessageLogRow]:
    """The newest messages with their subscription and every attempt (`signals alerts log`)."""
    with engine.connect() as connection:
        messages = [
            cast(MessageLogRow, {**row, "attempt_log": []})
            for row in connection.execute(
                sa.select(alert_outbox, alert_subscriptions.c.name, alert_subscriptions.c.kind,
                          alert_subscriptions.c.target)
                .join(alert_subscriptions, alert_subscriptions.c.id == alert_outbox.c.subscription_id)
                .order_by(alert_outbox.c.id.desc())
                .limit(limit)
            ).mappings()
        ]  # fmt: skip
        ids = [m["id"] for m in messages]
        attempts: dict[int, list[AttemptRow]] = {}
        if ids:
            for row in connection.execute(
                sa.select(alert_attempts).where(alert_attempts.c.outbox_id.in_(ids)).order_by(alert_attempts.c.id)
            ).mappings():
                attempts.setdefault(int(row["outbox_id"]), []).append(cast(AttemptRow, dict(row)))
    for message in messages:
        message["attempt_log"] = attempts.get(int(message["id"]), [])
    return messages


def outbox_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(alert_outbox.c.status, sa.func.count()).group_by(alert_outbox.c.status)
        ).all()
    return {str(status): int(count) for status, count in rows}
