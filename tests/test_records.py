"""What the database keeps comes back typed, decoded in one place, on both databases."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from conftest import ROOT, CohortFactory
from drip.core.mime import Mailbox
from drip.core.states import CohortStatus, EventKind, ParticipantStatus
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage import store as store_module
from drip.storage.records import DEFAULT_DIGEST, CohortSettings, DigestTime, StoredCohort, StoredEvent
from drip.storage.store import Store, cohort_table, event_table

UTC = dt.UTC


def test_a_started_cohort_comes_back_as_it_was_stored(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    cohort = load_cohort(make_cohort(extra_toml='reply_to = "Help <help@example.com>"\n'), [ROOT / "emails"])
    with store.transaction() as conn:
        enrol.sync_cohort(conn, cohort, now)
    with store.reading() as conn:
        found = store_module.find_cohort(conn, cohort.slug)
        (listed,) = store_module.cohort_rows(conn)
    assert isinstance(found, StoredCohort) and found == listed
    expected = cohort.stored()
    assert found.id > 0
    assert found.settings == expected.settings
    assert (found.slug, found.program, found.folder, found.status) == (
        expected.slug, expected.program, expected.folder, CohortStatus.ACTIVE,
    )  # fmt: skip
    assert found.settings.reply_to == Mailbox("Help", "help@example.com")
    assert found.settings.deadlines == dict(cohort.deadlines)
    people = store_module.participants_by_key
    with store.reading() as conn:
        stored = people(conn, found.id)
    assert {p.email for p in stored.values()} == {p.email for p in cohort.participants}
    assert all(p.status is ParticipantStatus.ACTIVE and p.cohort_id == found.id for p in stored.values())


def test_syncing_a_paused_cohort_keeps_it_paused(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    cohort = load_cohort(make_cohort(), [ROOT / "emails"])
    with store.transaction() as conn:
        enrol.sync_cohort(conn, cohort, now)
        conn.execute(update(cohort_table).values(status=CohortStatus.PAUSED.value))
        enrol.sync_cohort(conn, cohort, now + dt.timedelta(minutes=1))
    with store.reading() as conn:
        assert store_module.find_cohort(conn, cohort.slug).status is CohortStatus.PAUSED


def test_settings_written_by_an_older_drip_read_with_the_defaults() -> None:
    # Cohorts started before digests, owners and reply_to existed kept fewer keys.
    old = {"timezone": "Europe/Paris", "send_time": "09:00", "skip_weekends": True, "sender": ["", "c@x.org"]}
    settings = CohortSettings.from_json(old)
    assert settings.digest == DEFAULT_DIGEST
    assert settings.owners == () and settings.reply_to is None and settings.end is None
    assert settings.deadlines == {}
    off = CohortSettings.from_json({**old, "digest": None})
    assert off.digest is None, "a digest turned off stays off"


def test_settings_survive_a_round_trip_through_json() -> None:
    settings = CohortSettings(
        timezone="Asia/Tokyo", send_time=dt.time(7, 30), skip_weekends=False,
        sender=Mailbox("Comms", "comms@bücher-gruppe.example"), reply_to=None, owners=("o@x.org",),
        digest=DigestTime(4, dt.time(16, 30)), deadlines={"short": dt.date(2027, 2, 1)},
        end=dt.date(2027, 6, 30), roster="/r/roster.csv",
    )  # fmt: skip
    assert CohortSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


def test_a_stored_record_cannot_be_changed_in_place() -> None:
    settings = CohortSettings.from_json(
        {"send_time": "09:00", "skip_weekends": False, "sender": ["", "c@x.org"], "deadlines": {}}
    )
    with pytest.raises(TypeError):
        settings.deadlines["short"] = dt.date(2027, 1, 1)  # type: ignore[index]
    row = SimpleNamespace(
        id=1, slug="c", name="C", program="p", program_path="/p", folder="/f", status="active",
        start_date=dt.date(2027, 1, 4), settings=settings.to_json(),
    )  # fmt: skip
    cohort = StoredCohort.from_row(row)
    with pytest.raises(AttributeError):
        cohort.status = CohortStatus.PAUSED  # type: ignore[misc]
    assert StoredCohort.from_row(SimpleNamespace(**{**vars(row), **cohort.to_row()})) == cohort


def test_an_unknown_status_in_the_database_is_an_error_not_a_string() -> None:
    row = SimpleNamespace(
        id=1, slug="c", name="C", program="p", program_path="/p", folder="/f", status="archived",
        start_date=dt.date(2027, 1, 4),
        settings={"send_time": "09:00", "skip_weekends": False, "sender": ["", "c@x.org"]},
    )  # fmt: skip
    with pytest.raises(ValueError, match="archived"):
        StoredCohort.from_row(row)


def test_one_event_and_many_are_appended_alike(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    cohort = load_cohort(make_cohort(), [ROOT / "emails"])
    with store.transaction() as conn:
        enrol.sync_cohort(conn, cohort, now)
        cohort_id = store_module.find_cohort(conn, cohort.slug).id
        one = StoredEvent(cohort_id, EventKind.PAUSED, now, data={"who": "één"})
        many = [
            StoredEvent(cohort_id, EventKind.RESUMED, now + dt.timedelta(seconds=s), goal="short")
            for s in (1, 2)
        ]
        store_module.append_events(conn, [one])
        store_module.append_events(conn, many)
    with store.reading() as conn:
        rows = conn.execute(
            select(event_table.c.kind, event_table.c.at, event_table.c.goal, event_table.c.data)
            .where(event_table.c.kind.in_([EventKind.PAUSED.value, EventKind.RESUMED.value]))
            .order_by(event_table.c.at)
        ).all()
    assert [(r.kind, r.at, r.goal, r.data) for r in rows] == [
        ("paused", now, None, {"who": "één"}),
        ("resumed", now + dt.timedelta(seconds=1), "short", {}),
        ("resumed", now + dt.timedelta(seconds=2), "short", {}),
    ]


@pytest.mark.parametrize(
    ("status", "silenced"),
    [("active", False), ("paused", False), ("unsubscribed", True), ("bounced", True), ("removed", True)],
)
def test_who_gets_no_more_email(status: str, silenced: bool) -> None:
    assert ParticipantStatus(status).silenced is silenced
