"""Record the "sent" event in the database itself, in the same statement that marks a delivery sent.

Marking a delivery sent is the one write per email on the sending path;
letting a trigger append its event makes that write a single statement,
atomic on both backends, instead of a transaction of two.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE = """
CREATE TRIGGER deliveries_sent_event AFTER UPDATE OF status ON deliveries
WHEN NEW.status = 'sent' AND OLD.status <> 'sent'
BEGIN
    INSERT INTO events (cohort_id, participant_id, delivery_id, goal, kind, at, data)
    VALUES (NEW.cohort_id, NEW.participant_id, NEW.id, NEW.goal, 'sent', NEW.sent_at,
            json_object('message_id', NEW.message_id));
END
"""

POSTGRES_FUNCTION = """
CREATE FUNCTION drip_sent_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (cohort_id, participant_id, delivery_id, goal, kind, at, data)
    VALUES (NEW.cohort_id, NEW.participant_id, NEW.id, NEW.goal, 'sent', NEW.sent_at,
            json_build_object('message_id', NEW.message_id));
    RETURN NEW;
END
$$
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER deliveries_sent_event AFTER UPDATE OF status ON deliveries
FOR EACH ROW WHEN (NEW.status = 'sent' AND OLD.status <> 'sent')
EXECUTE FUNCTION drip_sent_event()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS deliveries_sent_event"
        + (" ON deliveries" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS drip_sent_event()")
