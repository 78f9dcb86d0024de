"""Initial schema: cohorts, participants, goals, deliveries, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Timestamps are TIMESTAMP WITH TIME ZONE on PostgreSQL and UTC text on SQLite;
drip.storage.tables.UTCDateTime converts at the boundary.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cohorts",
        sa.Column("id", ID, nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=False),
        sa.Column("program_path", sa.Text(), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohorts")),
        sa.UniqueConstraint("slug", name=op.f("uq_cohorts_slug")),
    )
    op.create_table(
        "participants",
        sa.Column("id", ID, nullable=False),
        sa.Column("cohort_id", ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("delegate_email", sa.String(length=320), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("plan_signature", sa.String(length=32), nullable=False),
        sa.Column("roster_row", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_participants_cohort_id_cohorts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("cohort_id", "email_key", name=op.f("uq_participants_cohort_id_email_key")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("cohort_id", ID, nullable=False),
        sa.Column("participant_id", ID, nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("goal", sa.String(length=32), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_deliveries_cohort_id_cohorts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_deliveries_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("message_id", name=op.f("uq_deliveries_message_id")),
        sa.UniqueConstraint("participant_id", "step", name=op.f("uq_deliveries_participant_id_step")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_cohort_id_status"), ["cohort_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deliveries_status_due_at"), ["status", "due_at"], unique=False)

    op.create_table(
        "goals",
        sa.Column("id", ID, nullable=False),
        sa.Column("participant_id", ID, nullable=False),
        sa.Column("goal", sa.String(length=32), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_goals_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_goals")),
        sa.UniqueConstraint("participant_id", "goal", name=op.f("uq_goals_participant_id_goal")),
    )
    with op.batch_alter_table("goals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_goals_status_deadline_at"), ["status", "deadline_at"], unique=False
        )

    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("cohort_id", ID, nullable=False),
        sa.Column("participant_id", ID, nullable=True),
        sa.Column("delivery_id", ID, nullable=True),
        sa.Column("goal", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_events_cohort_id_cohorts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_events_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_events_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_events_cohort_id_kind_at"), ["cohort_id", "kind", "at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_events_participant_id"), ["participant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_participant_id"))
        batch_op.drop_index(batch_op.f("ix_events_cohort_id_kind_at"))

    op.drop_table("events")
    with op.batch_alter_table("goals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_goals_status_deadline_at"))

    op.drop_table("goals")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_status_due_at"))
        batch_op.drop_index(batch_op.f("ix_deliveries_cohort_id_status"))

    op.drop_table("deliveries")
    op.drop_table("participants")
    op.drop_table("cohorts")
