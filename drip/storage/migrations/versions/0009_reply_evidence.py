"""Participants: a case-folded delegate address to find a reply's sender by, and a delegate that bounced.

A reply with no thread reference or token is matched to a participant by its
sender (indexed email_key and delegate_key). A delegate whose address bounced
is left out of Cc until the roster names another.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("participants", sa.Column("delegate_key", sa.String(length=320), nullable=True))
    op.add_column("participants", sa.Column("delegate_bounced", sa.String(length=320), nullable=True))
    op.execute(
        "UPDATE participants SET delegate_key = lower(delegate_email) WHERE delegate_email IS NOT NULL"
    )
    op.create_index(op.f("ix_participants_email_key"), "participants", ["email_key"])
    op.create_index(op.f("ix_participants_delegate_key"), "participants", ["delegate_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_participants_delegate_key"), table_name="participants")
    op.drop_index(op.f("ix_participants_email_key"), table_name="participants")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("delegate_bounced")
        batch.drop_column("delegate_key")
