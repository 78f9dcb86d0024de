"""Deliveries: the key of each Message-ID, fixed at the claim; the queue index in the claim's order.

A claim now takes a delivery straight to ``sending`` and its Message-ID is
written with the ``sent`` mark, one write fewer per email. If the worker dies
in between, the message it may have handed over goes again under the same
Message-ID, worked out again from this key even if the keys were rotated
meanwhile.

The claim reads due email ordered by (due_at, id). The index on (status,
due_at) gave PostgreSQL the first half of that order only, so every batch
sorted all the email due at the same instant (a whole launch); with id in the
index it reads the batch in order and stops.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite's batch mode would rebuild the table and drop its trigger (0004).
    op.add_column("deliveries", sa.Column("message_key", sa.String(16), nullable=True))
    op.create_index("ix_deliveries_status_due_at_id", "deliveries", ["status", "due_at", "id"])
    op.drop_index("ix_deliveries_status_due_at", "deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_status_due_at", "deliveries", ["status", "due_at"])
    op.drop_index("ix_deliveries_status_due_at_id", "deliveries")
    op.drop_column("deliveries", "message_key")
