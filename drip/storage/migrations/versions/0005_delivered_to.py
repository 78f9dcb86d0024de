"""Deliveries: the addresses a relay already accepted when it put off another one.

When the relay takes the delegate's copy but asks to try the participant
later, the retry goes to the participant alone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite's batch mode would rebuild the table and drop its trigger (0004).
    op.add_column("deliveries", sa.Column("delivered_to", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("delivered_to")
