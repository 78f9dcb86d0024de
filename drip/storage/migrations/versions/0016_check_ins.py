"""Check-ins: a participant's answer to each check-in email (a step with ``answers``).

One row per participant and step, replaced by a later answer; the event log keeps every answer.

The deliveries' (cohort_id, status) index gains step and sent_at, so that the check-ins sent, by
step, are counted from the index alone, as the counts by status already were.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "check_ins",
        sa.Column("id", ID, nullable=False),
        sa.Column("cohort_id", ID, nullable=False),
        sa.Column("participant_id", ID, nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("answer", sa.String(length=24), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_check_ins_cohort_id_cohorts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_check_ins_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_ins")),
        sa.UniqueConstraint("participant_id", "step", name=op.f("uq_check_ins_participant_id_step")),
    )
    op.create_index(op.f("ix_check_ins_cohort_id_step"), "check_ins", ["cohort_id", "step"])
    op.drop_index("ix_deliveries_cohort_id_status", table_name="deliveries")
    op.create_index(
        op.f("ix_deliveries_cohort_id_status_step_sent_at"),
        "deliveries",
        ["cohort_id", "status", "step", "sent_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_cohort_id_status_step_sent_at"), table_name="deliveries")
    op.create_index("ix_deliveries_cohort_id_status", "deliveries", ["cohort_id", "status"])
    op.drop_index(op.f("ix_check_ins_cohort_id_step"), table_name="check_ins")
    op.drop_table("check_ins")
