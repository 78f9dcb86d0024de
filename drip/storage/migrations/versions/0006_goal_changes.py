"""Goals: a deadline set by hand (snooze, extend) and when the participant snoozed.

A deadline moved by hand outlives a later sync of the roster; a goal is
snoozed at most once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("goals", sa.Column("deadline_override", sa.Date(), nullable=True))
    op.add_column("goals", sa.Column("snoozed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("goals") as batch:
        batch.drop_column("snoozed_at")
        batch.drop_column("deadline_override")
