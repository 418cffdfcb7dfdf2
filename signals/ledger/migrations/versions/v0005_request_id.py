"""records name the request that computed them: `request_id`, the trace id in X-Request-ID and the log lines

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("signal_records", "action_records"):
        op.add_column(table, sa.Column("request_id", sa.String(32), nullable=True))


def downgrade() -> None:
    for table in ("signal_records", "action_records"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_id")
