"""Deliveries: the signing key a delivery's Message-ID is made with, fixed when it is first claimed.

A claim now takes a delivery straight to ``sending`` and its Message-ID is
written with the ``sent`` mark, one write fewer per email. If the worker dies
in between, the message it may have handed over goes again under the same
Message-ID, worked out again from this key even if the keys were rotated
meanwhile.

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


def downgrade() -> None:
    op.drop_column("deliveries", "message_key")
