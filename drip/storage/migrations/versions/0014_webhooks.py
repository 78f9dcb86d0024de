"""Webhooks: the outbox of events for owners' tools, and the moments drip noted a goal overdue and a
cohort finished (each an event a webhook may ask for).

Goals already overdue when this runs are noted as of their deadline, so that an upgrade does not
announce every old overdue goal at once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", ID, primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("cohort_id", ID, sa.ForeignKey("cohorts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("participant_id", ID, nullable=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("secret", sa.String(140), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_webhook_outbox_status_next_attempt_at_id", "webhook_outbox", ["status", "next_attempt_at", "id"]
    )
    op.create_index("ix_webhook_outbox_cohort_id_status", "webhook_outbox", ["cohort_id", "status"])
    # plain ADD COLUMNs: SQLite's batch mode would rebuild the tables
    op.add_column("goals", sa.Column("overdue_noted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("cohorts", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE goals SET overdue_noted_at = deadline_at "
        "WHERE status = 'open' AND deadline_at <= CURRENT_TIMESTAMP"
    )


def downgrade() -> None:
    with op.batch_alter_table("cohorts") as batch:
        batch.drop_column("finished_at")
    with op.batch_alter_table("goals") as batch:
        batch.drop_column("overdue_noted_at")
    op.drop_table("webhook_outbox")
