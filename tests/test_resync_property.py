"""Property: however a roster's deadlines are edited, re-syncing never duplicates, never touches sent mail,
and never puts two emails on one day."""

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from conftest import EMAILS
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage.store import Store, delivery_table, participant_table
from drip.storage.tables import metadata

START = dt.date(2027, 1, 11)
ZONES = ["America/New_York", "Asia/Tokyo", "Europe/London", "America/Santiago"]

deadline_sets = st.tuples(st.integers(3, 40), st.integers(0, 40), st.integers(0, 40)).map(
    lambda gaps: (
        START + dt.timedelta(days=gaps[0]),
        START + dt.timedelta(days=gaps[0] + gaps[1]),
        START + dt.timedelta(days=gaps[0] + gaps[1] + gaps[2]),
    )
)


def roster(deadlines: list[tuple[dt.date, dt.date, dt.date]]) -> str:
    lines = ["email,name,timezone,short_deadline,mid_deadline,long_deadline"]
    for n, (short, mid, long) in enumerate(deadlines):
        lines.append(f"p{n}@example.com,P {n},{ZONES[n % len(ZONES)]},{short},{mid},{long}")
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.lists(deadline_sets, min_size=3, max_size=3),
    second=st.lists(deadline_sets, min_size=3, max_size=3),
    hours=st.tuples(st.integers(-24 * 7, 24 * 30), st.integers(0, 24 * 40)),
    sent_every=st.integers(1, 4),
)
def test_resync_keeps_its_promises(make_cohort, first, second, hours, sent_every) -> None:
    now = dt.datetime.combine(START, dt.time(12), dt.UTC) + dt.timedelta(hours=hours[0])
    later = now + dt.timedelta(hours=hours[1])
    folder = make_cohort(roster(first))
    db = Store("sqlite://", migrate=False)
    metadata.create_all(db.engine)
    try:
        with db.transaction() as conn:
            enrol.sync_cohort(conn, load_cohort(folder, [EMAILS]), now)
        with db.transaction() as conn:
            due = conn.execute(
                select(delivery_table.c.id, delivery_table.c.due_at).where(
                    delivery_table.c.status == "scheduled", delivery_table.c.due_at <= later
                )
            ).all()
            for did, due_at in due[::sent_every]:
                sent_at = due_at + dt.timedelta(seconds=5)
                conn.execute(
                    update(delivery_table)
                    .where(delivery_table.c.id == did)
                    .values(status="sent", sent_at=sent_at)
                )
        with db.reading() as conn:
            sent_before = {
                r.id: tuple(r)
                for r in conn.execute(select(delivery_table).where(delivery_table.c.status == "sent"))
            }

        make_cohort(roster(second))
        with db.transaction() as conn:
            enrol.sync_cohort(conn, load_cohort(folder, [EMAILS]), later)

        with db.reading() as conn:
            rows = conn.execute(
                select(delivery_table, participant_table.c.timezone).join(participant_table)
            ).all()
        assert len(rows) == 3 * 27  # 21 steps (3 to the owners) and 6 monthly check-ins each
        assert {r.id: tuple(r[: len(delivery_table.c)]) for r in rows if r.id in sent_before} == sent_before
        by_person: dict[int, list] = {}
        for r in rows:
            if r.status in ("scheduled", "sent") and not r.step.endswith("-escalation"):  # to the owners
                by_person.setdefault(r.participant_id, []).append(
                    (r.sent_at or r.due_at).astimezone(ZoneInfo(r.timezone)).date()
                )
        for days in by_person.values():
            assert len(days) == len(set(days)), sorted(days)
    finally:
        db.close()
