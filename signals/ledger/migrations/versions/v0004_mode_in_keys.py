"""the mode joins the records' unique keys (a live and a backfill record of one candle are both kept); paper calls

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SIGNAL_KEY = ["model_name", "model_version", "symbol", "timeframe", "candle_ms"]
ACTION_KEY = ["model_name", "model_version", "symbol", "timeframe", "candle_ms", "position"]


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a constraint in place, so the table is rebuilt; PostgreSQL alters it.
    with op.batch_alter_table("signal_records") as batch:
        batch.add_column(sa.Column("paper", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.drop_constraint("uq_signal_once", type_="unique")
        batch.create_unique_constraint("uq_signal_once", [*SIGNAL_KEY, "mode"])
    with op.batch_alter_table("action_records") as batch:
        batch.drop_constraint("uq_action_once", type_="unique")
        batch.create_unique_constraint("uq_action_once", [*ACTION_KEY, "mode"])


def downgrade() -> None:
    """Back to one record per candle whatever the mode: of each candle's records, the live one (else the first
    recorded) is kept."""
    for table, key in (("signal_records", SIGNAL_KEY), ("action_records", ACTION_KEY)):
        columns = ", ".join(key)
        op.execute(
            f"DELETE FROM {table} WHERE id NOT IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY "
            f"{columns} ORDER BY CASE WHEN mode = 'live' THEN 0 ELSE 1 END, id) AS rank FROM {table}) AS ranked "
            "WHERE rank = 1)"
        )
    with op.batch_alter_table("action_records") as batch:
        batch.drop_constraint("uq_action_once", type_="unique")
        batch.create_unique_constraint("uq_action_once", ACTION_KEY)
    with op.batch_alter_table("signal_records") as batch:
        batch.drop_constraint("uq_signal_once", type_="unique")
        batch.create_unique_constraint("uq_signal_once", SIGNAL_KEY)
        batch.drop_column("paper")
