"""Events: no foreign keys. The log names its cohort, participant and delivery by id only.

Events are appended and never updated or deleted; drip deletes no cohort,
participant or delivery either. The keys therefore guarded nothing, and cost
on every email: each ``sent`` event checked three parent rows, and on
PostgreSQL locked each of them FOR KEY SHARE, so two workers appending events
for the same cohort shared its row lock (a MultiXact) once per email. They
also meant a hand-made DELETE of a cohort would have erased the record of what
was sent to whom, which a log should keep.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

from alembic import op
from alembic.operations import BatchOperations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KEYS = [
    ("fk_events_cohort_id_cohorts", "cohort_id", "cohorts", "CASCADE"),
    ("fk_events_participant_id_participants", "participant_id", "participants", "CASCADE"),
    ("fk_events_delivery_id_deliveries", "delivery_id", "deliveries", "SET NULL"),
]


def upgrade() -> None:
    with _rebuilding_events() as batch:
        for name, _, _, _ in KEYS:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with _rebuilding_events() as batch:
        for name, column, parent, action in KEYS:
            batch.create_foreign_key(name, parent, [column], ["id"], ondelete=action)


@contextmanager
def _rebuilding_events() -> Iterator[BatchOperations]:
    """Alter events; SQLite rebuilds the table, which it refuses while the sent trigger (0004) names
    it, so there the trigger is dropped for the rebuild and made again."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER deliveries_sent_event")
    with op.batch_alter_table("events") as batch:
        yield batch
    if sqlite:
        op.execute(_revision_0004().SQLITE)


def _revision_0004() -> ModuleType:
    """Revision 0004, which made the trigger (alembic loads revisions by path, not as a package)."""
    spec = spec_from_file_location(
        "drip_revision_0004", Path(__file__).with_name("0004_sent_event_trigger.py")
    )
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
