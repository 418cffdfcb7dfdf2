"""The ledger's tables (SQLAlchemy Core). Times are UTC epoch milliseconds (BigInteger): exact, portable between
SQLite and PostgreSQL, and cheap to index; probabilities are DOUBLE so that a replay compares them bit for bit.

Changing a table means a new Alembic revision in `migrations/versions/` (tests check that the migrated database
and this metadata agree).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.sql.dml import Insert

metadata = MetaData()

signal_records = Table(
    "signal_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(96), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("symbol", String(48), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("candle_ms", BigInteger, nullable=False),  # open time of the last closed candle the signal used
    Column("mode", String(16), nullable=False),  # live | backfill | shadow
    # A live call withheld by probation: it would have been actionable (LONG/SHORT, confidence at or above the
    # threshold, fresh) but the model's own live record had not confirmed its edge yet. It counts as a paper call.
    Column("paper", Boolean, nullable=False, server_default=sa_false()),
    Column("p_short", Double, nullable=False),
    Column("p_no_trade", Double, nullable=False),
    Column("p_long", Double, nullable=False),
    Column("direction", String(8), nullable=False),
    Column("confidence", Double, nullable=False),
    Column("actionable", Boolean, nullable=False),
    Column("abstain_reason", Text),
    Column("threshold", Double),
    Column("edge_verdict", String(24), nullable=False),
    Column("horizon_bars", Integer),
    Column("expires_ms", BigInteger),  # end of the horizon: the resolver's due time
    Column("close", Double, nullable=False),
    Column("risk", Double),  # stop distance / entry, the plan's R as a fraction of price
    Column("reversal", SmallInteger),  # what the reversal rule said at this candle (filled when resolved)
    Column("persistence", SmallInteger),  # the last resolved label at this candle (filled when resolved)
    Column("features_hash", String(64), nullable=False),  # SHA-256 of the float32 window bytes
    Column("data_source", String(48), nullable=False),
    Column("recorded_ms", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),  # the Signal as served
    Column("request_id", String(32)),  # the trace id of the request that computed it (X-Request-ID); null: the loop
    # What happened (filled by the resolver once the horizon ended)
    Column("resolved_ms", BigInteger),
    Column("outcome_label", SmallInteger),
    Column("touched", SmallInteger),
    Column("bars_to_exit", Integer),
    Column("long_return", Double),
    Column("short_return", Double),
    Column("call_return", Double),  # after costs, of the direction called (actionable) or the argmax (counterfactual)
    Column("outcome_note", Text),
    # The mode is part of the key: a backfill and the live run may both reach a candle, and both records are kept.
    UniqueConstraint("model_name", "model_version", "symbol", "timeframe", "candle_ms", "mode", name="uq_signal_once"),
    Index("ix_signals_pair_time", "symbol", "timeframe", "candle_ms"),
    Index("ix_signals_due", "resolved_ms", "expires_ms"),
    Index("ix_signals_version", "model_name", "model_version"),
    Index("ix_signals_recorded", "recorded_ms"),
)

action_records = Table(
    "action_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(96), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("symbol", String(48), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("candle_ms", BigInteger, nullable=False),
    Column("position", String(8), nullable=False),  # flat | long: the caller's position the action answered
    Column("mode", String(16), nullable=False),
    Column("action_name", String(8), nullable=False),
    Column("p_hold", Double, nullable=False),
    Column("p_buy", Double, nullable=False),
    Column("p_sell", Double, nullable=False),
    Column("actionable", Boolean, nullable=False),
    Column("edge_verdict", String(24), nullable=False),
    Column("close", Double, nullable=False),
    Column("data_source", String(48), nullable=False),
    Column("recorded_ms", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("request_id", String(32)),  # the trace id of the request that computed it (X-Request-ID)
    UniqueConstraint(
        "model_name", "model_version", "symbol", "timeframe", "candle_ms", "position", "mode", name="uq_action_once"
    ),
    Index("ix_actions_pair_time", "symbol", "timeframe", "candle_ms"),
    Index("ix_actions_recorded", "recorded_ms"),
)

refresh_leases = Table(
    "refresh_leases",
    metadata,
    Column("timeframe", String(8), primary_key=True),
    Column("candle_ms", BigInteger, primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("lease_until_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # claimed | done | failed
    Column("attempts", Integer, nullable=False, default=1),
    Column("started_ms", BigInteger, nullable=False),
    Column("finished_ms", BigInteger),
    Column("detail", JSON),
)

model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # serve | promote | rollback | pin | unpin | probation | ...
    Column("model_name", String(96), nullable=False),
    Column("from_version", String(64)),
    Column("to_version", String(64)),
    Column("reason", Text, nullable=False),
    Column("detail", JSON),
    Index("ix_model_events_name", "model_name", "at_ms"),
)

model_state = Table(
    "model_state",
    metadata,
    Column("model_name", String(96), primary_key=True),
    Column("served_version", String(64)),  # None: the newest verified version serves
    Column("pinned", Boolean, nullable=False, default=False),  # a pin holds even when newer versions arrive
    Column("updated_ms", BigInteger, nullable=False),
)


alert_subscriptions = Table(
    "alert_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # webhook | telegram
    Column("target", String(512), nullable=False),  # the URL, or the Telegram chat id
    Column("secret", String(128)),  # HMAC key of a webhook (it must sign, so it is kept as given)
    Column("filters", JSON, nullable=False),  # symbols, timeframes, directions, actionable_only, min_confidence, events
    Column("active", Boolean, nullable=False, default=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("kind", "target", name="uq_alert_target"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", Integer, nullable=False),
    Column("event_key", String(200), nullable=False),  # the receivers' idempotency key
    Column("event_type", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sending | delivered | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("lease_until_ms", BigInteger),  # a sender's claim; expired: the next sender takes the message
    Column("delivered_ms", BigInteger),
    Column("last_error", Text),
    UniqueConstraint("subscription_id", "event_key", name="uq_outbox_once"),
    Index("ix_outbox_due", "status", "next_attempt_ms"),
)

alert_attempts = Table(
    "alert_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("outbox_id", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("status_code", Integer),  # the receiver's HTTP status; null when none came (timeout, refused)
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Index("ix_attempts_outbox", "outbox_id"),
)


def insert_ignoring_duplicates(table: Table, dialect: str) -> Insert:
    """An INSERT that skips rows whose unique key is taken (ON CONFLICT DO NOTHING, in either database's dialect):
    recording, leases and the outbox are idempotent through it. The dialects are imported here: PostgreSQL's
    costs ~0.15 s of CPU at the import of this module, paid by every process of the service graph (its runners
    import service.py too) on a server whose ledger is SQLite."""
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
