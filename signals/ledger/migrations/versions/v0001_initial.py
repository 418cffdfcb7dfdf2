"""the ledger: signals, actions, refresh leases, model events and state

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=96), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=48), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("candle_ms", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.String(length=8), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("action_name", sa.String(length=8), nullable=False),
        sa.Column("p_hold", sa.Double(), nullable=False),
        sa.Column("p_buy", sa.Double(), nullable=False),
        sa.Column("p_sell", sa.Double(), nullable=False),
        sa.Column("actionable", sa.Boolean(), nullable=False),
        sa.Column("edge_verdict", sa.String(length=24), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("data_source", sa.String(length=48), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "model_name", "model_version", "symbol", "timeframe", "candle_ms", "position", name="uq_action_once"
        ),
    )
    with op.batch_alter_table("action_records", schema=None) as batch_op:
        batch_op.create_index("ix_actions_pair_time", ["symbol", "timeframe", "candle_ms"], unique=False)

    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("model_name", sa.String(length=96), nullable=False),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("to_version", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.create_index("ix_model_events_name", ["model_name", "at_ms"], unique=False)

    op.create_table(
        "model_state",
        sa.Column("model_name", sa.String(length=96), nullable=False),
        sa.Column("served_version", sa.String(length=64), nullable=True),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_name"),
    )
    op.create_table(
        "refresh_leases",
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("candle_ms", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("timeframe", "candle_ms"),
    )
    op.create_table(
        "signal_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=96), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=48), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("candle_ms", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("p_short", sa.Double(), nullable=False),
        sa.Column("p_no_trade", sa.Double(), nullable=False),
        sa.Column("p_long", sa.Double(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("actionable", sa.Boolean(), nullable=False),
        sa.Column("abstain_reason", sa.Text(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("edge_verdict", sa.String(length=24), nullable=False),
        sa.Column("horizon_bars", sa.Integer(), nullable=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("risk", sa.Double(), nullable=True),
        sa.Column("reversal", sa.SmallInteger(), nullable=True),
        sa.Column("persistence", sa.SmallInteger(), nullable=True),
        sa.Column("features_hash", sa.String(length=64), nullable=False),
        sa.Column("data_source", sa.String(length=48), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome_label", sa.SmallInteger(), nullable=True),
        sa.Column("touched", sa.SmallInteger(), nullable=True),
        sa.Column("bars_to_exit", sa.Integer(), nullable=True),
        sa.Column("long_return", sa.Double(), nullable=True),
        sa.Column("short_return", sa.Double(), nullable=True),
        sa.Column("call_return", sa.Double(), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_name", "model_version", "symbol", "timeframe", "candle_ms", name="uq_signal_once"),
    )
    with op.batch_alter_table("signal_records", schema=None) as batch_op:
        batch_op.create_index("ix_signals_due", ["resolved_ms", "expires_ms"], unique=False)
        batch_op.create_index("ix_signals_pair_time", ["symbol", "timeframe", "candle_ms"], unique=False)
        batch_op.create_index("ix_signals_version", ["model_name", "model_version"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signal_records", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_version")
        batch_op.drop_index("ix_signals_pair_time")
        batch_op.drop_index("ix_signals_due")

    op.drop_table("signal_records")
    op.drop_table("refresh_leases")
    op.drop_table("model_state")
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.drop_index("ix_model_events_name")

    op.drop_table("model_events")
    with op.batch_alter_table("action_records", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_pair_time")

    op.drop_table("action_records")
