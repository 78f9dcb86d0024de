"""Enrolling and re-syncing cohorts, on SQLite and PostgreSQL."""

import datetime as dt
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from conftest import COHORT_TOML, EMAILS, ROSTER, CohortFactory
from drip import changes
from drip.core.errors import DripError, StoreError
from drip.core.states import DeliveryStatus, GoalStatus, ParticipantStatus
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage.store import (
    Store,
    cohort_figures,
    cohort_table,
    delivery_table,
    event_table,
    goal_table,
    participant_table,
)

UTC = dt.UTC


def sync(db: Store, folder: Path, now: dt.datetime) -> enrol.SyncReport:
    with db.transaction() as conn:
        return enrol.sync_cohort(conn, load_cohort(folder, [EMAILS]), now)


def deliveries(db: Store, email: str) -> dict[str, dict]:
    query = (
        select(delivery_table)
        .join(participant_table, participant_table.c.id == delivery_table.c.participant_id)
        .where(participant_table.c.email == email)
    )
    with db.reading() as conn:
        return {row.step: dict(row._mapping) for row in conn.execute(query)}


def count(db: Store, table) -> int:
    with db.reading() as conn:
        return len(conn.execute(select(table.c.id)).all())


def test_start_stores_participants_goals_and_the_plan(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    report = sync(store, make_cohort(), now)
    assert report.created and report.enrolled == 3
    # 27 each: 21 steps (3 of them notes to the owners) and the 6 monthly check-ins; 3 wait for a goal
    assert report.planned == {"scheduled": 72, "waiting": 9}
    assert (count(store, participant_table), count(store, goal_table), count(store, delivery_table)) == (
        3,
        9,
        81,
    )
    ana = deliveries(store, "ana@example.com")
    assert ana["welcome"]["due_at"] == dt.datetime(2027, 1, 11, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert ana["short-done"]["status"] == "waiting" and ana["short-done"]["due_at"] is None
    ben = deliveries(store, "ben@example.com")
    assert ben["welcome"]["due_at"] == dt.datetime(2027, 1, 11, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    first, _last = report.first_send, report.last_send
    assert first == (dt.datetime(2027, 1, 11, 0, 0, tzinfo=UTC), "Asia/Tokyo")
    with store.reading() as conn:
        kinds = sorted(conn.execute(select(event_table.c.kind)).scalars())
    assert kinds == ["cohort_started", "enrolled", "enrolled", "enrolled"]


def test_running_start_again_duplicates_nothing(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    before = deliveries(store, "ana@example.com")
    report = sync(store, folder, now + dt.timedelta(days=3))
    assert not report.created
    assert (report.enrolled, report.replanned, report.updated, report.unchanged) == (0, 0, 0, 3)
    assert count(store, delivery_table) == 81
    assert deliveries(store, "ana@example.com") == before


def test_new_rows_are_enrolled(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    make_cohort(ROSTER + "dee@example.com,Dee Park,Europe/Paris,sales\n")
    report = sync(store, folder, now)
    assert (report.enrolled, report.unchanged) == (1, 3)
    assert len(deliveries(store, "dee@example.com")) == 27


def test_changed_deadline_replans_only_unsent_mail(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort("email,name,short_deadline\nana@example.com,Ana,\nben@example.com,Ben,\n")
    sync(store, folder, now)
    sent_at = dt.datetime(2027, 1, 11, 14, 0, 5, tzinfo=UTC)
    with store.transaction() as conn:
        ana_welcome = deliveries(store, "ana@example.com")["welcome"]["id"]
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.id == ana_welcome)
            .values(status="sent", sent_at=sent_at)
        )
    ben_before = deliveries(store, "ben@example.com")
    later = now + dt.timedelta(days=10)  # 2027-01-14, after the welcome went out
    make_cohort("email,name,short_deadline\nana@example.com,Ana,2027-02-08\nben@example.com,Ben,\n")
    report = sync(store, folder, later)
    assert (report.replanned, report.unchanged) == (1, 1)
    # short-reminder, short-due, short-overdue, the owners' short-escalation, and mid-kickoff (mid opens at
    # the short deadline)
    assert report.moved == 5 and sum(report.planned.values()) == 0
    ana = deliveries(store, "ana@example.com")
    assert ana["short-kickoff"]["due_at"] == dt.datetime(2027, 1, 12, 14, 0, tzinfo=UTC)  # due: dispatch's
    assert ana["mid-kickoff"]["due_at"] == dt.datetime(2027, 2, 9, 14, 0, tzinfo=UTC)
    assert ana["welcome"]["status"] == "sent" and ana["welcome"]["sent_at"] == sent_at
    assert ana["short-due"]["due_at"] == dt.datetime(2027, 2, 8, 14, 0, tzinfo=UTC)
    assert ana["short-reminder"]["due_at"] == dt.datetime(2027, 2, 5, 14, 0, tzinfo=UTC)
    assert ana["short-due"]["updated_at"] == later
    assert deliveries(store, "ben@example.com") == ben_before
    with store.reading() as conn:
        deadline = conn.execute(
            select(goal_table.c.deadline, goal_table.c.deadline_at)
            .join(participant_table)
            .where(participant_table.c.email == "ana@example.com", goal_table.c.goal == "short")
        ).one()
    assert deadline == (dt.date(2027, 2, 8), dt.datetime(2027, 2, 9, 5, 0, tzinfo=UTC))
    assert count(store, delivery_table) == 54  # two people, 27 each


def test_a_done_goal_keeps_its_steps_when_replanned(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort("email,name,short_deadline\nana@example.com,Ana,\n")
    sync(store, folder, now)
    with store.transaction() as conn:
        conn.execute(
            update(goal_table).where(goal_table.c.goal == "short").values(status=GoalStatus.DONE.value)
        )
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.goal == "short", delivery_table.c.status == "scheduled")
            .values(status="cancelled", last_error="goal done")
        )
    make_cohort("email,name,short_deadline\nana@example.com,Ana,2027-02-08\n")
    sync(store, folder, now)
    ana = deliveries(store, "ana@example.com")
    assert (
        ana["short-reminder"]["status"] == "cancelled" and ana["short-reminder"]["last_error"] == "goal done"
    )
    # A done goal's congratulations, still waiting, take the first free send day: the welcome keeps the
    # start day, and the goal's own kickoff is no longer planned.
    assert ana["short-done"]["status"] == "scheduled"
    assert ana["short-done"]["due_at"] == dt.datetime(2027, 1, 12, 14, 0, tzinfo=UTC)
    assert ana["welcome"]["due_at"] == dt.datetime(2027, 1, 11, 14, 0, tzinfo=UTC)


def test_detail_changes_update_without_replanning(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    before = deliveries(store, "ana@example.com")
    make_cohort(ROSTER.replace("Ana Ruiz", "Ana Ruiz-Vega").replace(",sales", ",sales and marketing"))
    report = sync(store, folder, now)
    assert (report.updated, report.replanned) == (1, 0)
    assert deliveries(store, "ana@example.com") == before
    with store.reading() as conn:
        row = conn.execute(
            select(participant_table).where(participant_table.c.email == "ana@example.com")
        ).one()
    assert row.name == "Ana Ruiz-Vega" and row.fields == {"objective": "sales and marketing"}


def test_timezone_change_replans(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    make_cohort(
        ROSTER.replace("ana@example.com,Ana Ruiz,America/New_York", "ana@example.com,Ana Ruiz,Europe/Madrid")
    )
    assert sync(store, folder, now).replanned == 1
    assert deliveries(store, "ana@example.com")["welcome"]["due_at"] == dt.datetime(
        2027, 1, 11, 8, 0, tzinfo=UTC
    )


def test_cohort_settings_change_replans_everyone(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    make_cohort(toml=COHORT_TOML.replace('"09:00"', '"08:30"'))
    assert sync(store, folder, now).replanned == 3
    assert deliveries(store, "cleo@example.com")["welcome"]["due_at"] == dt.datetime(
        2027, 1, 11, 8, 30, tzinfo=UTC
    )


def test_removed_step_is_cancelled(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    make_cohort(extra_toml='skip_steps = ["policy"]\n')
    sync(store, folder, now)
    policy = deliveries(store, "ana@example.com")["policy"]
    assert policy["status"] == "cancelled" and "removed from the program" in policy["last_error"]


def test_missing_rows_are_reported_and_stay_until_removed(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    make_cohort("email,name,timezone,objective\nana@example.com,Ana Ruiz,America/New_York,sales\n")
    report = sync(store, folder, now)
    assert sorted(report.missing) == [("ben@example.com", "Ben Ito"), ("cleo@example.com", "Cleo Hart")]
    assert all(d["status"] != "cancelled" for d in deliveries(store, "ben@example.com").values())

    with store.transaction() as conn:
        cancelled = remove(conn, "test-cohort", "BEN@example.com", now).cancelled
    assert cancelled == 27
    with store.transaction() as conn:
        again = remove(conn, "test-cohort", "ben@example.com", now)
    assert not again.changed and again.cancelled == 0
    assert {d["status"] for d in deliveries(store, "ben@example.com").values()} == {"cancelled"}
    report = sync(store, folder, now)
    assert report.missing == [("cleo@example.com", "Cleo Hart")]
    with store.reading() as conn:
        figures = cohort_figures(conn, 1, now)
    assert figures["participants"] == 2
    assert figures["participant_status"]["removed"] == 1
    assert figures["goals"]["short"]["open"] == 2


def remove(conn, slug: str, email: str, now: dt.datetime) -> changes.Outcome:
    return changes.remove(conn, changes.find_person(conn, slug, email), now)


def test_remove_unknown_participant_or_cohort(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    sync(store, make_cohort(), now)
    with pytest.raises(DripError, match="not a participant"), store.transaction() as conn:
        remove(conn, "test-cohort", "zed@example.com", now)
    with pytest.raises(DripError, match="known cohorts: test-cohort"), store.transaction() as conn:
        remove(conn, "nope", "ana@example.com", now)


def test_late_start_records_why_mail_was_skipped(store: Store, make_cohort: CohortFactory) -> None:
    late = dt.datetime(2027, 3, 3, 20, 0, tzinfo=UTC)
    report = sync(store, make_cohort(), late)
    assert report.planned["skipped"] > 0
    ana = deliveries(store, "ana@example.com")
    assert ana["short-reminder"]["status"] == "skipped"
    assert "had passed when it was planned" in ana["short-reminder"]["last_error"]
    scheduled = [d["due_at"] for d in ana.values() if d["status"] == "scheduled"]
    assert min(scheduled) > late


def test_status_figures_count_overdue(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> None:
    sync(store, make_cohort(), now)
    with store.transaction() as conn:
        conn.execute(
            update(goal_table)
            .where(goal_table.c.participant_id == 1, goal_table.c.goal == "short")
            .values(status="done", via="admin")
        )
    after_deadline = dt.datetime(2027, 2, 2, 12, 0, tzinfo=UTC)
    with store.reading() as conn:
        figures = cohort_figures(conn, 1, after_deadline)
    assert figures["goals"]["short"] == {"open": 2, "done": 1, "waived": 0, "overdue": 2}
    assert figures["goals"]["mid"] == {"open": 3, "done": 0, "waived": 0, "overdue": 0}
    assert figures["deliveries"]["scheduled"] == 72 and figures["deliveries"]["waiting"] == 9


def test_switching_program_is_refused(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    with store.transaction() as conn:
        conn.execute(update(cohort_table).values(program="other"))
    with pytest.raises(StoreError, match="started with program 'other'"):
        sync(store, folder, now)


def test_participant_status_values_are_the_documented_ones() -> None:
    assert [s.value for s in ParticipantStatus] == ["active", "paused", "unsubscribed", "bounced", "removed"]
    assert {s.value for s in DeliveryStatus} >= {
        "scheduled",
        "claimed",
        "sending",
        "sent",
        "failed",
        "skipped",
        "cancelled",
    }


def test_two_starts_at_once_enrol_everyone_once(
    store: Store, make_cohort: CohortFactory, now: dt.datetime, database_url: str
) -> None:
    """Two operators launching the same new cohort at the same moment."""
    import threading

    folder = make_cohort()
    barrier = threading.Barrier(2)
    reports: list[enrol.SyncReport] = []
    errors: list[BaseException] = []

    def launch() -> None:
        try:
            with Store(database_url) as own:
                cohort = load_cohort(folder, [EMAILS])
                barrier.wait()
                with own.transaction() as conn:
                    reports.append(enrol.sync_cohort(conn, cohort, now))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(r.enrolled for r in reports) == [0, 3]
    assert count(store, participant_table) == 3 and count(store, delivery_table) == 81


def test_a_step_put_back_in_the_program_comes_back(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    make_cohort(extra_toml='skip_steps = ["policy"]\n')
    sync(store, folder, now)
    make_cohort()
    report = sync(store, folder, now)
    policy = deliveries(store, "ana@example.com")["policy"]
    assert (policy["status"], policy["last_error"]) == ("scheduled", None)
    assert policy["due_at"] == dt.datetime(2027, 1, 25, 14, 0, tzinfo=UTC)
    assert report.moved == 3


def test_a_sorted_roster_changes_nobody(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    header, *rows = ROSTER.splitlines(keepends=True)
    make_cohort(header + "".join(reversed(rows)))
    report = sync(store, folder, now)
    assert (report.updated, report.unchanged) == (0, 3)
    with store.reading() as conn:
        assert conn.execute(select(event_table.c.kind).where(event_table.c.kind == "updated")).all() == []
        rows_now = dict(conn.execute(select(participant_table.c.email, participant_table.c.roster_row)).all())
    assert rows_now["ana@example.com"] == 4  # the stored row number follows the sheet


def test_removed_participant_back_in_the_roster_is_reported(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    with store.transaction() as conn:
        remove(conn, "test-cohort", "ben@example.com", now)
    report = sync(store, folder, now)
    assert report.returned == [("ben@example.com", "Ben Ito")]
    assert {d["status"] for d in deliveries(store, "ben@example.com").values()} == {"cancelled"}


def test_mail_of_a_done_goal_keeps_its_day(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    """Congratulations already planned for a done goal keep their day when another goal moves onto it."""
    folder = make_cohort("email,name,mid_deadline\nana@example.com,Ana,\n")
    sync(store, folder, now)
    congratulations = dt.datetime(2027, 2, 24, 14, 0, tzinfo=UTC)  # the day mid-reminder will want
    with store.transaction() as conn:
        conn.execute(update(goal_table).where(goal_table.c.goal == "short").values(status="done", via="link"))
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.step == "short-done")
            .values(status="scheduled", due_at=congratulations)
        )
    make_cohort("email,name,mid_deadline\nana@example.com,Ana,2027-02-27\n")
    sync(store, folder, now)
    ana = deliveries(store, "ana@example.com")
    assert ana["short-done"]["due_at"] == congratulations
    scheduled = [
        d["due_at"].astimezone(ZoneInfo("America/New_York")).date()
        for step, d in ana.items()
        if d["status"] == "scheduled" and not step.endswith("-escalation")  # the owners' notes are not hers
    ]
    assert len(scheduled) == len(set(scheduled))


def test_a_goal_added_to_the_program_reaches_enrolled_participants(
    store: Store, make_cohort: CohortFactory, now: dt.datetime, tmp_path: Path
) -> None:
    program = tmp_path / "programs" / "cwr"
    shutil.copytree(EMAILS / "crawl-walk-run", program)
    folder = make_cohort(toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    sync(store, folder, now)
    text = (program / "program.toml").read_text()
    (program / "program.toml").write_text(
        text
        + '\n[[goals]]\nkey = "sustain"\ntitle = "Keep it up"\ndeadline = "+16w"\nopens = "long.deadline"\n'
        '\n[[steps]]\nkey = "sustain-kickoff"\nat = "sustain.opens+1d"\ntemplate = "closing"\n'
    )
    report = sync(store, folder, now)
    assert report.replanned == 3 and report.planned == {"scheduled": 3}
    with store.reading() as conn:
        goals = conn.execute(select(goal_table.c.goal).where(goal_table.c.goal == "sustain")).all()
    assert len(goals) == 3


def test_changing_send_time_during_the_day_does_not_drop_todays_mail(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    folder = make_cohort("email,name\nana@example.com,Ana\n", toml=COHORT_TOML.replace('"09:00"', '"17:00"'))
    sync(store, folder, now)
    assert deliveries(store, "ana@example.com")["short-due"]["due_at"] == dt.datetime(
        2027, 2, 1, 22, 0, tzinfo=UTC
    )
    noon = dt.datetime(2027, 2, 1, 17, 0, tzinfo=UTC)  # 12:00 in New York, before 17:00, after 09:00
    make_cohort("email,name\nana@example.com,Ana\n")  # send_time back to 09:00
    sync(store, folder, noon)
    due = deliveries(store, "ana@example.com")["short-due"]
    assert due["status"] == "scheduled" and due["due_at"] > noon


# --- the monthly check-ins (a repeating step) ---------------------------------------


def check_ins(db: Store, email: str = "ana@example.com") -> dict[str, dict]:
    return {step: row for step, row in deliveries(db, email).items() if step.startswith("sustain-")}


@pytest.mark.parametrize("leaving", ["unsubscribe", "remove"])
def test_a_participant_who_left_gets_no_more_check_ins(
    store: Store, make_cohort: CohortFactory, now: dt.datetime, leaving: str
) -> None:
    folder = make_cohort()
    sync(store, folder, now)
    first = check_ins(store)["sustain-1"]["due_at"]
    with store.transaction() as conn:  # everything up to the first check-in went out
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.status == "scheduled", delivery_table.c.due_at <= first)
            .values(status="sent", sent_at=delivery_table.c.due_at)
        )
    later = first + dt.timedelta(days=1)
    with store.transaction() as conn:
        person = changes.find_person(conn, "test-cohort", "ana@example.com")
        if leaving == "unsubscribe":
            changes.unsubscribe(conn, person, later, changes.Evidence("link"))
        else:
            changes.remove(conn, person, later)
    statuses = {step: row["status"] for step, row in check_ins(store).items()}
    assert statuses == {"sustain-1": "sent", **{f"sustain-{n}": "cancelled" for n in range(2, 7)}}
    # A later deadline for her, which would move the check-ins of anyone still in, brings none back.
    make_cohort(
        ROSTER.replace("objective\n", "objective,long_deadline\n").replace(",sales\n", ",sales,2027-04-19\n")
    )
    report = sync(store, folder, later)
    assert report.replanned == 0 and sum(report.planned.values()) == 0
    assert {step: row["status"] for step, row in check_ins(store).items()} == statuses
    assert not any(row["status"] == "scheduled" for row in deliveries(store, "ana@example.com").values())


@pytest.mark.parametrize("how", ["extend", "roster"])
def test_a_later_long_deadline_moves_the_check_ins_anchored_on_it(
    store: Store, make_cohort: CohortFactory, now: dt.datetime, how: str
) -> None:
    folder = make_cohort("email,name,long_deadline\nana@example.com,Ana,\n")
    sync(store, folder, now)
    before = {step: row["due_at"] for step, row in check_ins(store).items()}
    assert sorted(before) == [f"sustain-{n}" for n in range(1, 7)]
    later = dt.date(2027, 4, 19)  # two weeks after the default, 5 April
    if how == "extend":
        with store.transaction() as conn:
            person = changes.find_person(conn, "test-cohort", "ana@example.com")
            changes.extend(conn, person, "long", later, now)
    else:
        make_cohort(f"email,name,long_deadline\nana@example.com,Ana,{later}\n")
        assert sync(store, folder, now).replanned == 1
    after = {step: row["due_at"] for step, row in check_ins(store).items()}
    # Two weeks later each, same weekday, same local time (EDT from May to October).
    assert after == {step: due + dt.timedelta(weeks=2) for step, due in before.items()}
    assert {row["status"] for row in check_ins(store).values()} == {"scheduled"}


def test_a_check_in_pushed_past_the_cohorts_end_is_cancelled_and_comes_back(
    store: Store, make_cohort: CohortFactory, now: dt.datetime
) -> None:
    # The cohort ends on 30 September: check-ins on 5 May, 4 June, 5 July (4th a Sunday), 3 August, 2 September.
    folder = make_cohort("email,name\nana@example.com,Ana\n", extra_toml="end = 2027-09-30\n")
    sync(store, folder, now)
    assert sorted(check_ins(store)) == [f"sustain-{n}" for n in range(1, 6)]

    def extend(to: dt.date) -> None:
        with store.transaction() as conn:
            changes.extend(conn, changes.find_person(conn, "test-cohort", "ana@example.com"), "long", to, now)

    extend(dt.date(2027, 5, 10))  # the fifth would fall on 7 October, after the end
    fifth = check_ins(store)["sustain-5"]
    assert (fifth["status"], fifth["last_error"]) == (
        "cancelled", "the occurrence now falls after its step's until or the program's end",
    )  # fmt: skip
    assert check_ins(store)["sustain-4"]["due_at"] == dt.datetime(2027, 9, 7, 13, 0, tzinfo=UTC)
    extend(dt.date(2027, 4, 5))  # back again
    fifth = check_ins(store)["sustain-5"]
    assert (fifth["status"], fifth["last_error"]) == ("scheduled", None)
    assert fifth["due_at"] == dt.datetime(2027, 9, 2, 13, 0, tzinfo=UTC)
