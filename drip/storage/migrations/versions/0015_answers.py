"""Answers: what a participant said when a goal was done (the program's ``ask``).

The answer is kept in the completion event's data, as the record, and in ``goals.answer`` for the
goal as it stands (cleared when the goal is reopened), so reports and exports read it without
walking the event log.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("goals", sa.Column("answer", sa.Text(), nullable=True))  # plain ADD COLUMN: no rebuild


def downgrade() -> None:
    with op.batch_alter_table("goals") as batch:
        batch.drop_column("answer")
