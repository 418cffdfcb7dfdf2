"""the push stream reads records by the time they were recorded

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_signals_recorded", "signal_records", ["recorded_ms"], unique=False)
    op.create_index("ix_actions_recorded", "action_records", ["recorded_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_actions_recorded", table_name="action_records")
    op.drop_index("ix_signals_recorded", table_name="signal_records")
