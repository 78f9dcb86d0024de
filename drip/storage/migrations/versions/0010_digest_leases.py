"""Digests: a claim on an owner's weekly copy ends with a lease, as a delivery's does.

A copy being sent was taken over once its created_at was older than the
lease, on whatever clock the sender ran; it now records when its lease ends,
by the real clock. Copies recorded before get their created_at, so any left
"sending" may be taken over at once, as they could be before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("digests", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE digests SET lease_expires_at = created_at WHERE status = 'sending'")


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch:
        batch.drop_column("lease_expires_at")
