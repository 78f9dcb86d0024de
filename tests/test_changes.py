"""Changes to one participant (done, waive, reopen, snooze, extend, pause, resume, remove,
unsubscribe, bounce), on SQLite and PostgreSQL: what each one moves in the plan."""

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update

from conftest import EMAILS, CohortFactory
from drip import changes
from drip.changes import ActionError, Evidence
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage.store import Store, delivery_table, event_table, goal_table, participant_table

UTC = dt.UTC
ANA = "ana@example.com"
ENROLLED = dt.datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
WEDNESDAY = dt.datetime(2027, 1, 20, 15, 0, tzinfo=UTC)  # 10:00 in New York; welcome and kickoff are out
CLICK = Evidence("link", ip="198.51.100.7", user_agent="Mozilla/5.0 (iPhone)")


def at(day: str, hour: int = 14) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def folder(store: Store, make_cohort: CohortFactory) -> Path:
    folder = make_cohort()
    sync(store, folder, ENROLLED)
    return folder


def sync(db: Store, folder: Path, now: dt.datetime) -> enrol.SyncReport:
    with db.transaction() as conn:
        return enrol.sync_cohort(conn, load_cohort(folder, [EMAILS]), now)


def sent_until(db: Store, moment: dt.datetime) -> None:
    """Pretend dispatch sent everything due before ``moment``."""
    with db.transaction() as conn:
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.status == "scheduled", delivery_table.c.due_at <= moment)
            .values(status="sent", sent_at=delivery_table.c.due_at)
        )


def change(db: Store, action, *args, email: str = ANA, now: dt.datetime = WEDNESDAY) -> changes.Outcome:
    with db.transaction() as conn:
        return action(conn, changes.find_person(conn, "test-cohort", email), *args, now=now)


def plan_of(db: Store, email: str = ANA) -> dict[str, tuple]:
    query = (
        select(
            delivery_table.c.step,
            delivery_table.c.status,
            delivery_table.c.due_at,
            delivery_table.c.last_error,
        )
        .join(participant_table)
        .where(participant_table.c.email == email)
    )
    with db.reading() as conn:
        return {row.step: (row.status, row.due_at, row.last_error) for row in conn.execute(query)}


def goal_of(db: Store, key: str, email: str = ANA):
    query = (
        select(goal_table)
        .join(participant_table)
        .where(participant_table.c.email == email, goal_table.c.goal == key)
    )
    with db.reading() as conn:
        return conn.execute(query).one()


def events_of(db: Store, kind: str) -> list:
    with db.reading() as conn:
        return conn.execute(select(event_table).where(event_table.c.kind == kind)).all()


def complete(conn, person, key="short", evidence=CLICK, *, now):
    return changes.complete(conn, person, key, now, evidence)


def test_done_cancels_the_goals_mail_and_plans_its_congratulations(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    outcome = change(store, complete)
    plan = plan_of(store)
    for step in ("short-reminder", "short-due", "short-overdue", "short-escalation"):
        assert plan[step][0] == "cancelled" and plan[step][2] == "the goal short is done"
    assert plan["short-done"][:2] == ("scheduled", at("2027-01-21"))  # the next morning in New York
    assert plan["mid-kickoff"][:2] == ("scheduled", at("2027-02-02"))  # the next goal keeps its day
    assert outcome.changed and outcome.cancelled == 4
    assert "short-done planned for Thu 21 Jan 2027 09:00 America/New_York" in outcome.summary
    goal = goal_of(store, "short")
    assert (goal.status, goal.completed_at, goal.via) == ("done", WEDNESDAY, "link")
    [event] = events_of(store, "completed")
    assert event.goal == "short" and event.data["ip"] == "198.51.100.7"
    assert event.data["seconds_since_sent"] == (WEDNESDAY - at("2027-01-12")).total_seconds()
    assert "label" not in event.data

    again = change(store, complete, now=WEDNESDAY + dt.timedelta(hours=1))
    assert not again.changed and "already done" in again.summary
    assert len(events_of(store, "completed")) == 1 and plan_of(store) == plan


@pytest.mark.parametrize(("evidence", "label"), [
    (CLICK, "possible link scanner (seconds after sending)"),
    (changes.ADMIN, None),
    (Evidence("reply", message_id="<r@example.com>"), None),
])  # fmt: skip
def test_only_a_click_soon_after_the_email_is_labelled_a_possible_scanner(
    store: Store, folder: Path, evidence: Evidence, label: str | None
) -> None:
    sent_until(store, at("2027-01-12"))
    moment = at("2027-01-12") + dt.timedelta(seconds=3)  # three seconds after the kickoff went
    with store.transaction() as conn:
        changes.complete(conn, changes.find_person(conn, "test-cohort", ANA), "short", moment, evidence)
    [event] = events_of(store, "completed")
    assert event.data.get("label") == label and event.data["seconds_since_sent"] == 3.0
    assert goal_of(store, "short").status == "done", "a label never decides"


def test_congratulations_never_push_planned_mail_aside(store: Store, folder: Path) -> None:
    friday = dt.datetime(2027, 1, 22, 15, 0, tzinfo=UTC)  # Monday's window already holds the policy email
    sent_until(store, friday)
    change(store, complete, now=friday)
    plan = plan_of(store)
    assert plan["policy"][:2] == ("scheduled", at("2027-01-25"))
    assert plan["short-done"][:2] == ("scheduled", at("2027-01-26"))


def test_done_before_the_start_waits_for_the_welcome(store: Store, folder: Path) -> None:
    change(store, complete, "short", changes.ADMIN, now=ENROLLED)
    plan = plan_of(store)
    assert plan["welcome"][:2] == ("scheduled", at("2027-01-11"))
    assert plan["short-kickoff"][0] == "cancelled"
    assert plan["short-done"][:2] == ("scheduled", at("2027-01-12"))


def test_waive_then_reopen_puts_the_plan_back(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    before = plan_of(store)
    waived = change(store, lambda c, p, now: changes.waive(c, p, "short", now))
    plan = plan_of(store)
    assert waived.cancelled == 5 and plan["short-done"] == ("cancelled", None, "the goal short is waived")
    reopened = change(store, lambda c, p, now: changes.reopen(c, p, "short", now))
    assert reopened.changed and plan_of(store) == before
    assert goal_of(store, "short").status == "open"
    assert [e.kind for e in events_of(store, "waived") + events_of(store, "reopened")] == [
        "waived",
        "reopened",
    ]


def test_reopening_a_done_goal_takes_back_congratulations_not_yet_sent(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    before = plan_of(store)
    change(store, complete)
    change(store, lambda c, p, now: changes.reopen(c, p, "short", now))
    assert plan_of(store) == before
    goal = goal_of(store, "short")
    assert (goal.status, goal.completed_at, goal.via) == ("open", None, None)


def test_reopened_reminders_whose_moment_passed_are_skipped(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    change(store, complete)
    later = dt.datetime(2027, 1, 30, 15, 0, tzinfo=UTC)  # the reminder's Friday has passed
    change(store, lambda c, p, now: changes.reopen(c, p, "short", now), now=later)
    plan = plan_of(store)
    assert plan["short-reminder"][0] == "skipped" and "had passed" in plan["short-reminder"][2]
    assert plan["short-due"][:2] == ("scheduled", at("2027-02-01"))


def test_snooze_pushes_the_deadline_a_week_once(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    outcome = change(store, lambda c, p, now: changes.snooze(c, p, "short", now, CLICK))
    assert "short snoozed from 2027-02-01 to 2027-02-08" in outcome.summary
    plan = plan_of(store)
    assert plan["short-reminder"][1] == at("2027-02-05")
    assert plan["short-due"][1] == at("2027-02-08")
    assert plan["mid-kickoff"][1] == at("2027-02-09")  # mid opens when short is due
    goal = goal_of(store, "short")
    assert (goal.deadline, goal.deadline_override, goal.snoozed_at) == (
        dt.date(2027, 2, 8),
        dt.date(2027, 2, 8),
        WEDNESDAY,
    )
    again = change(store, lambda c, p, now: changes.snooze(c, p, "short", now, CLICK))
    assert not again.changed and "already snoozed once" in again.summary
    # Starting the cohort again from its unchanged folder keeps the snoozed deadline.
    report = sync(store, folder, WEDNESDAY)
    assert report.replanned == 0 and plan_of(store) == plan


def test_a_snoozed_deadline_survives_a_roster_change(
    store: Store, folder: Path, make_cohort: CohortFactory
) -> None:
    change(store, lambda c, p, now: changes.snooze(c, p, "short", now, CLICK))
    make_cohort("email,name,timezone,mid_deadline\nana@example.com,Ana Ruiz,America/New_York,2027-03-08\n")
    report = sync(store, folder, WEDNESDAY)
    assert report.replanned == 1
    assert goal_of(store, "short").deadline == dt.date(2027, 2, 8)
    assert goal_of(store, "mid").deadline == dt.date(2027, 3, 8)


def test_snoozing_a_done_goal_changes_nothing(store: Store, folder: Path) -> None:
    change(store, complete)
    outcome = change(store, lambda c, p, now: changes.snooze(c, p, "short", now, CLICK))
    assert not outcome.changed and "nothing to snooze" in outcome.summary


def test_extend_moves_a_deadline_and_keeps_goals_in_order(store: Store, folder: Path) -> None:
    outcome = change(store, lambda c, p, now: changes.extend(c, p, "short", dt.date(2027, 2, 15), now))
    assert "short deadline moved from 2027-02-01 to 2027-02-15" in outcome.summary
    assert plan_of(store)["short-due"][1] == at("2027-02-15")
    with pytest.raises(
        ActionError, match=r"short would be due 2027-03-10, after mid \(2027-03-01\).*move mid"
    ):
        change(store, lambda c, p, now: changes.extend(c, p, "short", dt.date(2027, 3, 10), now))
    with pytest.raises(ActionError, match="short opens on 2027-01-11"):
        change(store, lambda c, p, now: changes.extend(c, p, "short", dt.date(2027, 1, 5), now))
    with pytest.raises(ActionError, match="has no goal 'medium'; its goals are short, mid, long"):
        change(store, lambda c, p, now: changes.extend(c, p, "medium", dt.date(2027, 3, 5), now))
    assert goal_of(store, "short").deadline == dt.date(2027, 2, 15)  # the refused changes wrote nothing


def test_pause_and_resume(store: Store, folder: Path) -> None:
    assert change(store, changes.pause).changed
    assert not change(store, changes.pause).changed
    with store.reading() as conn:
        status = conn.execute(select(participant_table.c.status).where(participant_table.c.email == ANA))
        assert status.scalar_one() == "paused"
    assert "resumed (was paused)" in change(store, changes.resume).summary
    assert not change(store, changes.resume).changed


def test_resume_takes_back_a_removal(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    before = plan_of(store)
    removed = change(store, changes.remove)
    # 27 deliveries (21 steps, the owners' 3 among them, and 6 check-ins), 2 of them sent
    assert removed.cancelled == 25 and {s for s, _, _ in plan_of(store).values()} == {"sent", "cancelled"}
    [event] = events_of(store, "removed")
    assert event.data == {"via": "admin", "cancelled": 25}
    change(store, changes.resume)
    assert plan_of(store) == before
    [back] = events_of(store, "resumed")
    assert back.data == {"via": "admin", "was": "removed"}


def test_unsubscribe_is_for_good(store: Store, folder: Path) -> None:
    sent_until(store, WEDNESDAY)
    outcome = change(store, lambda c, p, now: changes.unsubscribe(c, p, now, Evidence("link")))
    assert outcome.cancelled == 25 and "unsubscribed" in outcome.summary
    assert not change(store, lambda c, p, now: changes.unsubscribe(c, p, now, Evidence("link"))).changed
    with pytest.raises(ActionError, match="unsubscribed themselves"):
        change(store, changes.resume)
    with pytest.raises(ActionError, match="pausing would change nothing"):
        change(store, changes.pause)
    # A goal done afterwards is recorded, but plans no email.
    done = change(store, complete)
    assert done.changed and plan_of(store)["short-done"][0] == "cancelled"


def test_bounce_cancels_what_is_pending(store: Store, folder: Path) -> None:
    outcome = change(
        store, lambda c, p, now: changes.bounce(c, p, now, Evidence("reply"), "550 5.1.1 no such user")
    )
    assert outcome.cancelled == 27
    [event] = events_of(store, "bounced")
    assert event.data["label"] == "550 5.1.1 no such user"


def test_unknown_cohort_or_participant(store: Store, folder: Path) -> None:
    with (
        pytest.raises(ActionError, match="no cohort 'nope'; known cohorts: test-cohort"),
        store.reading() as conn,
    ):
        changes.find_person(conn, "nope", ANA)
    with pytest.raises(ActionError, match="zed@example.com is not a participant of 'test-cohort'"):
        with store.reading() as conn:
            changes.find_person(conn, "test-cohort", "zed@example.com")
    with store.reading() as conn:
        assert changes.find_person(conn, "test-cohort", "ANA@Example.com").email == ANA


@pytest.mark.parametrize(
    ("agent", "seconds", "label"),
    [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", 3600.0, None),
        ("Mozilla/5.0 (compatible; Mimecast URL Protect)", 3600.0, "possible link scanner (user agent)"),
        ("python-requests/2.31", 3600.0, "possible link scanner (user agent)"),
        ("", 3600.0, "possible link scanner (user agent)"),
        ("Mozilla/5.0 (Windows NT 10.0)", 2.0, "possible link scanner (seconds after sending)"),
        (None, None, None),
    ],
)
def test_scanner_labels(agent: str | None, seconds: float | None, label: str | None) -> None:
    assert changes.scanner_label(agent, seconds) == label
