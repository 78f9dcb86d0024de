"""Planning: time zones, daylight saving, weekends, late starts, one email a day."""

import datetime as dt
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import PROGRAM
from drip.core.plan import (
    PlannedStep,
    Timing,
    expand_steps,
    find_step,
    local_instant,
    plan_participant,
    repeat_warnings,
)
from drip.core.program import (
    Anchor,
    AnchorKind,
    Audience,
    Goal,
    LatePolicy,
    Program,
    Repeat,
    Step,
    load_program,
    parse_anchor,
)
from drip.core.states import DeliveryStatus

UTC = dt.UTC
CWR = load_program(PROGRAM)


def program(*steps: tuple[str, str] | tuple[str, str, str], deadline_days: int = 21) -> Program:
    """A one-goal program whose steps are (key, anchor[, late])."""
    goal = Goal("g", "Goal", "", deadline_days, Anchor(AnchorKind.START))
    made = tuple(
        Step(
            s[0],
            "g" if "g." in s[1] else None,
            parse_anchor(s[1]),
            s[0],
            LatePolicy(s[2] if len(s) > 2 else "skip"),
            i,
        )
        for i, s in enumerate(steps)
    )
    return Program("test", Path("."), "Test", "", (goal,), made, Anchor(AnchorKind.DEADLINE, "g"))


def timing(
    start: dt.date,
    zone: str = "America/New_York",
    at: str = "09:00",
    weekends: bool = True,
    **deadlines: dt.date,
) -> Timing:
    hour, minute = map(int, at.split(":"))
    return Timing(
        start, zone, dt.time(hour, minute), weekends, deadlines or {"g": start + dt.timedelta(days=21)}
    )


def by_key(plan: list[PlannedStep]) -> dict[str, PlannedStep]:
    return {p.step.key: p for p in plan}


def local(instant: dt.datetime | None, zone: str) -> dt.datetime:
    assert instant is not None
    return instant.astimezone(ZoneInfo(zone))


EARLY = dt.datetime(2020, 1, 1, tzinfo=UTC)


# --- daylight saving ----------------------------------------------------------


def test_new_york_spring_gap_moves_to_the_first_instant_after_it() -> None:
    # 2027-03-14: clocks jump from 02:00 EST to 03:00 EDT; 02:30 does not exist.
    plan = plan_participant(
        program(("s", "start")), timing(dt.date(2027, 3, 14), at="02:30", weekends=False), EARLY
    )
    due = plan[0].due_at
    assert due == dt.datetime(2027, 3, 14, 7, 0, tzinfo=UTC)
    assert local(due, "America/New_York").strftime("%H:%M %Z") == "03:00 EDT"


def test_new_york_autumn_repeat_takes_the_first_occurrence() -> None:
    # 2027-11-07: 01:30 happens twice, first in EDT (UTC-4), then in EST.
    plan = plan_participant(
        program(("s", "start")), timing(dt.date(2027, 11, 7), at="01:30", weekends=False), EARLY
    )
    assert plan[0].due_at == dt.datetime(2027, 11, 7, 5, 30, tzinfo=UTC)


def test_send_time_keeps_local_clock_across_the_change() -> None:
    plan = plan_participant(
        program(("before", "start"), ("after", "start+7d")),
        timing(dt.date(2027, 3, 8), weekends=False),
        EARLY,
    )
    before, after = (p.due_at for p in plan)
    assert before == dt.datetime(2027, 3, 8, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert after == dt.datetime(2027, 3, 15, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_santiago_skipped_midnight() -> None:
    # 2027-09-05 in Chile: midnight does not exist, the day starts at 01:00 (-03).
    zone = "America/Santiago"
    start = dt.date(2027, 9, 5)
    plan = plan_participant(
        program(("s", "start"), ("n", "start+1d")), timing(start, zone, "00:00", weekends=False), EARLY
    )
    first, second = (local(p.due_at, zone) for p in plan)
    assert (first.date(), first.strftime("%H:%M")) == (start, "01:00")
    assert (second.date(), second.strftime("%H:%M")) == (dt.date(2027, 9, 6), "00:00")


def test_deadline_ends_at_the_end_of_the_local_day_even_when_midnight_is_missing() -> None:
    from drip.core.plan import goal_dates

    dates = goal_dates(
        program(("s", "start")), timing(dt.date(2027, 8, 1), "America/Santiago", g=dt.date(2027, 9, 4))
    )
    # The deadline day 4 September ends when 5 September begins: at 01:00 -03, 04:00 UTC.
    assert dates["g"].deadline_ends_at == dt.datetime(2027, 9, 5, 4, 0, tzinfo=UTC)


def test_local_instant_is_cached_but_correct_per_zone() -> None:
    day, at = dt.date(2027, 6, 1), dt.time(9)
    assert local_instant(day, at, ZoneInfo("Asia/Tokyo")) == dt.datetime(2027, 6, 1, 0, 0, tzinfo=UTC)
    assert local_instant(day, at, ZoneInfo("Europe/London")) == dt.datetime(2027, 6, 1, 8, 0, tzinfo=UTC)


# --- weekends -----------------------------------------------------------------


def test_weekends_move_deadline_mail_earlier_and_everything_else_later() -> None:
    saturday = dt.date(2027, 1, 30)
    steps = program(
        ("kick", "start+5d"), ("remind", "g.deadline-3d"), ("due", "g.deadline"), ("late", "g.deadline+1d")
    )
    plan = by_key(plan_participant(steps, timing(dt.date(2027, 1, 4), g=saturday), EARLY))
    days = {key: local(p.due_at, "America/New_York").date() for key, p in plan.items()}
    assert days["kick"] == dt.date(2027, 1, 11)  # Saturday 9th -> Monday
    assert days["remind"] == dt.date(2027, 1, 27)  # a Wednesday: unchanged
    assert days["due"] == dt.date(2027, 1, 29)  # Saturday deadline: the Friday before
    assert days["late"] == dt.date(2027, 2, 1)  # Sunday after the deadline: Monday
    assert all(day.weekday() < 5 for day in days.values())


def test_weekends_kept_when_not_skipped() -> None:
    plan = plan_participant(program(("s", "start+5d")), timing(dt.date(2027, 1, 4), weekends=False), EARLY)
    assert local(plan[0].due_at, "America/New_York").date() == dt.date(2027, 1, 9)


# --- one email a day ----------------------------------------------------------


def test_two_steps_on_one_day_are_spread_over_send_days() -> None:
    friday = dt.date(2027, 1, 8)
    steps = program(("a", "start"), ("b", "start"), ("c", "start+1d"))
    plan = by_key(plan_participant(steps, timing(friday), EARLY))
    days = [local(plan[key].due_at, "America/New_York").date() for key in "abc"]
    assert days == [friday, dt.date(2027, 1, 11), dt.date(2027, 1, 12)]
    assert plan["b"].nominal_day == friday


def test_days_already_used_by_sent_mail_are_not_reused() -> None:
    monday = dt.date(2027, 1, 11)
    sent = {"a": dt.datetime(2027, 1, 11, 14, 0, tzinfo=UTC)}
    plan = by_key(plan_participant(program(("a", "start"), ("b", "start")), timing(monday), EARLY, sent))
    assert "a" not in plan
    assert local(plan["b"].due_at, "America/New_York").date() == dt.date(2027, 1, 12)


def test_deadline_mail_keeps_its_day_and_other_mail_moves() -> None:
    # Starting on a Friday puts the policy module (start+2w) on the short reminder's day.
    deadlines = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 5), "long": dt.date(2027, 4, 5)}
    plan = by_key(plan_participant(CWR, timing(dt.date(2027, 1, 15), **deadlines), EARLY))
    days = {key: local(p.due_at, "America/New_York").date() for key, p in plan.items() if p.due_at}
    assert days["short-reminder"] == dt.date(2027, 1, 29)
    assert days["short-due"] == dt.date(2027, 2, 1)
    assert days["policy"] == dt.date(2027, 2, 2)  # Friday and Monday were taken
    assert days["mid-kickoff"] == dt.date(2027, 2, 3)  # after the policy module, as in the program
    assert plan["policy"].nominal_day == dt.date(2027, 1, 29)


def test_reminder_never_lands_on_its_deadline_day() -> None:
    steps = program(("other", "start+1d"), ("remind", "g.deadline-1d"), ("due", "g.deadline"))
    start = dt.date(2027, 1, 11)
    # The reminder wants Tuesday, the day "other" has; the next free day would be the deadline day.
    plan = by_key(plan_participant(steps, timing(start, weekends=False, g=dt.date(2027, 1, 13)), EARLY))
    assert plan["remind"].status is DeliveryStatus.SCHEDULED
    assert local(plan["remind"].due_at, "America/New_York").date() == dt.date(2027, 1, 12)
    assert local(plan["other"].due_at, "America/New_York").date() == dt.date(2027, 1, 14)
    plan = by_key(plan_participant(
        program(("a", "start+1d"), ("b", "start+1d"), ("remind", "g.deadline-1d"), ("due", "g.deadline")),
        timing(start, weekends=False, g=dt.date(2027, 1, 13)), EARLY,
        {"a": dt.datetime(2027, 1, 12, 14, tzinfo=UTC)},
    ))  # fmt: skip
    assert plan["remind"].status is DeliveryStatus.SKIPPED  # its only day was taken by mail already sent
    assert local(plan["due"].due_at, "America/New_York").date() == dt.date(2027, 1, 13)


def test_daylight_gap_across_midnight_still_one_email_a_day() -> None:
    # Nuuk, 2027-03-27: 23:30 does not exist; the first instant after the gap is 00:00 on the 28th.
    zone = "America/Nuuk"
    steps = program(("a", "start"), ("b", "start+1d"))
    plan = plan_participant(steps, timing(dt.date(2027, 3, 27), zone, "23:30", weekends=False), EARLY)
    first, second = (local(p.due_at, zone) for p in plan)
    assert first.strftime("%Y-%m-%d %H:%M") == "2027-03-28 00:00"
    assert second.date() == dt.date(2027, 3, 29)


def test_a_kickoff_pushed_behind_its_reminder_trades_days_with_it() -> None:
    # short due Friday 5 Feb, mid due Thursday 11 Feb: the mid kickoff (Sat 6 -> Mon 8) meets the short
    # overdue nudge (Mon 8), and the mid reminder (Mon 8) moves to Tue 9, ahead of the kickoff.
    deadlines = {"short": dt.date(2027, 2, 5), "mid": dt.date(2027, 2, 11), "long": dt.date(2027, 4, 5)}
    plan = by_key(plan_participant(CWR, timing(dt.date(2027, 1, 11), **deadlines), EARLY))
    days = {key: local(p.due_at, "America/New_York").date() for key, p in plan.items() if p.due_at}
    assert days["short-overdue"] == dt.date(2027, 2, 8)
    assert days["mid-kickoff"] < days["mid-reminder"] < days["mid-due"]
    assert (days["mid-kickoff"], days["mid-reminder"]) == (dt.date(2027, 2, 9), dt.date(2027, 2, 10))


def test_replanned_mail_whose_new_moment_has_passed_keeps_its_time() -> None:
    # Due at 17:00 today; the send time moves to 09:00, which has passed: it stays at 17:00.
    steps = program(("s", "start"), ("r", "start+1d"))
    start = dt.date(2027, 1, 11)
    now = dt.datetime(2027, 1, 11, 20, 0, tzinfo=UTC)  # 15:00 in New York
    plain = by_key(plan_participant(steps, timing(start, weekends=False), now))
    assert plain["s"].status is DeliveryStatus.SKIPPED
    before = dt.datetime(2027, 1, 11, 22, 0, tzinfo=UTC)
    kept = by_key(plan_participant(steps, timing(start, weekends=False), now, upcoming={"s": before}))
    assert (kept["s"].status, kept["s"].due_at) == (DeliveryStatus.SCHEDULED, before)
    assert local(kept["r"].due_at, "America/New_York").date() == dt.date(2027, 1, 12)


def test_equal_deadlines_are_warned_about() -> None:
    from drip.core.plan import timing_warnings

    start = dt.date(2027, 1, 11)
    same = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 3, 1)}
    (warning,) = timing_warnings(CWR, timing(start, **same))
    assert warning.startswith("long opens 2027-03-01 and is due 2027-03-01: 0 day(s)")
    fine = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 4, 5)}
    assert timing_warnings(CWR, timing(start, **fine)) == []


# --- late enrolment -----------------------------------------------------------


def test_late_start_sends_welcome_and_kickoff_next_without_breaking_deadline_mail() -> None:
    start = dt.date(2027, 1, 11)
    deadlines = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 4, 5)}
    now = dt.datetime(2027, 1, 28, 18, 0, tzinfo=UTC)  # Thursday, after 09:00 in New York
    plan = by_key(plan_participant(CWR, timing(start, **deadlines), now))
    days = {key: local(p.due_at, "America/New_York").date() for key, p in plan.items() if p.due_at}
    # welcome, kickoff and policy module were due: they go on the next send days, one a day.
    assert days["welcome"] == dt.date(2027, 1, 29)
    assert days["short-kickoff"] == dt.date(2027, 2, 1)
    assert days["policy"] == dt.date(2027, 2, 2)
    # "three days left" and "due today" cannot arrive after the deadline: skipped, with the reason.
    for key in ("short-reminder", "short-due"):
        assert plan[key].status is DeliveryStatus.SKIPPED
    assert "every send day up to 2027-01-31 already had an email" in (plan["short-reminder"].reason or "")
    assert "every send day up to 2027-02-01 already had an email" in (plan["short-due"].reason or "")
    assert days["mid-kickoff"] == dt.date(2027, 2, 3)
    assert days["short-overdue"] == dt.date(2027, 2, 4)
    assert all(p.due_at >= now for p in plan.values() if p.status is DeliveryStatus.SCHEDULED)


def test_late_start_never_bursts_stale_reminders() -> None:
    start = dt.date(2027, 1, 11)
    deadlines = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 4, 5)}
    now = dt.datetime(2027, 3, 3, 20, 0, tzinfo=UTC)  # after the short and mid deadlines
    plan = by_key(plan_participant(CWR, timing(start, **deadlines), now))
    for key in (
        "short-kickoff",
        "short-reminder",
        "short-due",
        "short-overdue",
        "mid-kickoff",
        "mid-reminder",
        "mid-due",
    ):
        assert plan[key].status is DeliveryStatus.SKIPPED, key
        assert "had passed when it was planned" in (plan[key].reason or "")
    assert plan["welcome"].status is DeliveryStatus.SCHEDULED
    assert plan["long-kickoff"].status is DeliveryStatus.SCHEDULED  # its goal is still open
    scheduled = sorted(p.due_at for p in plan.values() if p.status is DeliveryStatus.SCHEDULED)
    theirs = [
        p.due_at
        for p in plan.values()
        if p.status is DeliveryStatus.SCHEDULED and p.step.to is Audience.PARTICIPANT
    ]
    local_days = [local(d, "America/New_York").date() for d in theirs]
    assert len(local_days) == len(set(local_days))  # no burst: one a day at most in their inbox
    assert min(scheduled) >= now


def test_enrolled_after_the_program_ended_gets_nothing() -> None:
    deadlines = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 4, 5)}
    # The program ends six months after the long deadline, when the last monthly check-in is due.
    plan = plan_participant(
        CWR, timing(dt.date(2027, 1, 11), **deadlines), dt.datetime(2027, 10, 6, tzinfo=UTC)
    )
    assert {p.status for p in plan} == {DeliveryStatus.SKIPPED, DeliveryStatus.WAITING}


def test_steps_before_the_start_are_skipped() -> None:
    start = dt.date(2027, 1, 11)
    plan = by_key(
        plan_participant(
            program(("r", "g.deadline-5d")), timing(start, g=start + dt.timedelta(days=2)), EARLY
        )
    )
    assert plan["r"].status is DeliveryStatus.SKIPPED and "before the cohort starts" in (
        plan["r"].reason or ""
    )


def test_completion_steps_wait() -> None:
    plan = by_key(plan_participant(program(("done", "g.completed")), timing(dt.date(2027, 1, 11)), EARLY))
    assert plan["done"].status is DeliveryStatus.WAITING and plan["done"].due_at is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        plan_participant(CWR, timing(dt.date(2027, 1, 11)), dt.datetime(2027, 1, 1))


# --- repeating steps --------------------------------------------------------------


def repeating(
    every_days: int, at: str = "g.deadline+7d", until: str | None = None, ends_days: int = 56
) -> Program:
    """A one-goal program: a welcome at the start, and "check" every ``every_days`` from ``at``.

    The goal is due three weeks after the start; the program ends ``ends_days`` after that.
    """
    goal = Goal("g", "Goal", "", 21, Anchor(AnchorKind.START))
    repeat = Repeat(every_days, parse_anchor(until) if until else None)
    steps = (
        Step("welcome", None, parse_anchor("start"), "welcome", LatePolicy.SEND, 0),
        Step("check", None, parse_anchor(at), "check", LatePolicy.SKIP, 1, repeat),
    )
    return Program("test", Path("."), "Test", "", (goal,), steps, Anchor(AnchorKind.DEADLINE, "g", ends_days))


def checks(plan: list[PlannedStep]) -> list[PlannedStep]:
    return [p for p in plan if p.step.key.startswith("check-")]


@pytest.mark.parametrize(
    ("zone", "change", "before", "after"),
    [
        ("America/New_York", dt.date(2027, 3, 14), "14:00", "13:00"),  # EST to EDT
        ("Europe/London", dt.date(2027, 3, 28), "09:00", "08:00"),  # GMT to BST
        ("Australia/Sydney", dt.date(2027, 4, 4), "22:00", "23:00"),  # AEDT to AEST, the day before in UTC
    ],
)
def test_occurrences_keep_the_local_send_time_across_a_daylight_saving_change(
    zone: str, change: dt.date, before: str, after: str
) -> None:
    # Due Monday 22 February 2027; a weekly check-in from 1 March to the end, 19 April: eight Mondays.
    plan = checks(plan_participant(repeating(7), timing(dt.date(2027, 2, 1), zone), EARLY))
    assert [p.step.key for p in plan] == [f"check-{n}" for n in range(1, 9)]
    walls = [local(p.due_at, zone) for p in plan]
    assert [w.date() for w in walls] == [dt.date(2027, 3, 1) + dt.timedelta(weeks=n) for n in range(8)]
    assert {w.strftime("%H:%M") for w in walls} == {"09:00"}
    utc = [(w.date(), local(p.due_at, "UTC").strftime("%H:%M")) for w, p in zip(walls, plan, strict=True)]
    assert {at for day, at in utc if day < change} == {before}
    assert {at for day, at in utc if day > change} == {after}


def test_an_occurrence_in_the_spring_gap_goes_at_the_first_instant_after_it() -> None:
    # 2027-03-14 in New York: 02:30 does not exist. The second weekly check-in falls on that Sunday.
    program = repeating(7, at="g.deadline+7d", until="g.deadline+21d")
    plan = checks(plan_participant(program, timing(dt.date(2027, 2, 7), at="02:30", weekends=False), EARLY))
    walls = [local(p.due_at, "America/New_York").strftime("%Y-%m-%d %H:%M %Z") for p in plan]
    assert walls == ["2027-03-07 02:30 EST", "2027-03-14 03:00 EDT", "2027-03-21 02:30 EDT"]


def test_an_occurrence_on_a_weekend_moves_to_the_monday_after() -> None:
    # Due Monday 25 January 2027; every 30 days from 24 February. The third falls on Sunday 25 April.
    program, start = repeating(30, at="g.deadline+30d", ends_days=26 * 7), dt.date(2027, 1, 4)
    plan = checks(plan_participant(program, timing(start), EARLY))
    days = [local(p.due_at, "America/New_York").date() for p in plan]
    assert days[:3] == [dt.date(2027, 2, 24), dt.date(2027, 3, 26), dt.date(2027, 4, 26)]
    assert plan[2].nominal_day == dt.date(2027, 4, 25)
    assert days[5] == dt.date(2027, 7, 26)  # Saturday 24 July: the Monday after, the program's last day
    assert all(day.weekday() < 5 for day in days)
    unmoved = checks(plan_participant(program, timing(start, weekends=False), EARLY))
    assert local(unmoved[2].due_at, "America/New_York").date() == dt.date(2027, 4, 25)


def test_an_occurrence_that_a_weekend_would_push_past_the_end_is_skipped() -> None:
    # The program ends on Sunday 25 July; the sixth check-in falls on Saturday 24 July.
    program = repeating(30, at="g.deadline+30d", ends_days=181)
    plan = by_key(plan_participant(program, timing(dt.date(2027, 1, 4)), EARLY))
    assert [key for key in plan if key.startswith("check-")] == [f"check-{n}" for n in range(1, 7)]
    last = plan["check-6"]
    assert (last.status, last.due_at, last.nominal_day) == (
        DeliveryStatus.SKIPPED,
        None,
        dt.date(2027, 7, 24),
    )
    assert last.reason == "no send day was left for it from 2027-07-24 to the program's end, 2027-07-25"
    assert plan["check-5"].status is DeliveryStatus.SCHEDULED


def test_an_occurrence_before_a_deadline_moves_to_the_friday_before_like_a_reminder() -> None:
    # Due Saturday 20 February 2027 (the start is 30 January): a weekly countdown lands on Saturdays.
    program = repeating(7, at="g.deadline-14d", until="g.deadline")
    plan = checks(plan_participant(program, timing(dt.date(2027, 1, 30)), EARLY))
    days = [local(p.due_at, "America/New_York").date() for p in plan]
    assert days == [dt.date(2027, 2, 5), dt.date(2027, 2, 12), dt.date(2027, 2, 19)]


@pytest.mark.parametrize(
    ("until", "end", "count"),
    [
        (None, None, 8),  # weekly from the deadline + 7 days to its + 56, the program's end: inclusive
        ("g.deadline+21d", None, 3),  # until is inclusive: 7, 14 and 21 days after the deadline
        ("g.deadline+20d", None, 2),
        ("g.deadline+100d", None, 8),  # never after the program's end
        (None, dt.date(2027, 2, 22) + dt.timedelta(days=30), 4),  # the cohort's own, earlier end
        (None, dt.date(2027, 2, 22) + dt.timedelta(days=6), 0),  # the cohort ends before the first
    ],
)
def test_occurrences_stop_at_until_and_never_pass_the_end(
    until: str | None, end: dt.date | None, count: int
) -> None:
    program = repeating(7, until=until)
    t = replace(timing(dt.date(2027, 2, 1)), end=end)  # due Monday 22 February
    plan = checks(plan_participant(program, t, EARLY))
    assert [p.step.key for p in plan] == [f"check-{n}" for n in range(1, count + 1)]
    assert [(p.step.occurrence, p.step.occurrences) for p in plan] == [
        (n, count) for n in range(1, count + 1)
    ]
    last_day = end or dt.date(2027, 2, 22) + dt.timedelta(days=56)
    assert all(p.status is DeliveryStatus.SCHEDULED for p in plan)
    assert all(local(p.due_at, "America/New_York").date() <= last_day for p in plan)


def test_a_repeating_step_is_planned_at_most_sixty_times_and_the_rest_is_warned_about() -> None:
    t = replace(timing(dt.date(2027, 2, 1)), end=dt.date(2032, 1, 1))
    plan = checks(plan_participant(repeating(7), t, EARLY))
    assert len(plan) == 60 and plan[-1].step.key == "check-60"
    (warning,) = repeat_warnings(repeating(7), t)
    assert warning == "check would repeat 253 times up to 2032-01-01; only the first 60 are planned"
    assert repeat_warnings(repeating(7), timing(dt.date(2027, 2, 1))) == []


def test_a_late_start_skips_the_check_ins_that_passed_and_bursts_nothing() -> None:
    now = dt.datetime(2027, 3, 17, 18, 0, tzinfo=UTC)  # Wednesday, after the third check-in (Monday 15th)
    plan = by_key(plan_participant(repeating(7), timing(dt.date(2027, 2, 1)), now))
    for key in ("check-1", "check-2", "check-3"):
        assert plan[key].status is DeliveryStatus.SKIPPED
        assert "had passed when it was planned" in (plan[key].reason or "")
    assert local(plan["welcome"].due_at, "America/New_York").date() == dt.date(2027, 3, 18)  # late = "send"
    later = [local(plan[f"check-{n}"].due_at, "America/New_York").date() for n in range(4, 9)]
    assert later == [dt.date(2027, 3, 22) + dt.timedelta(weeks=n) for n in range(5)]  # each on its own Monday


def test_a_moved_deadline_moves_the_occurrences_anchored_on_it() -> None:
    def days(deadline: dt.date) -> list[dt.date]:
        plan = checks(plan_participant(repeating(7), timing(dt.date(2027, 2, 1), g=deadline), EARLY))
        return [local(p.due_at, "America/New_York").date() for p in plan]

    assert days(dt.date(2027, 3, 8)) == [day + dt.timedelta(weeks=2) for day in days(dt.date(2027, 2, 22))]


def test_an_occurrence_key_names_a_step_only_while_the_participant_has_it() -> None:
    deadlines = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 4, 5)}
    t = timing(dt.date(2027, 1, 11), **deadlines)
    sixth = find_step(CWR, "sustain-6", t)
    assert sixth is not None and (sixth.occurrence, sixth.occurrences, sixth.template) == (6, 6, "sustain")
    assert find_step(CWR, "sustain-7", t) is None
    assert find_step(CWR, "sustain", t) is None  # the step as declared is no delivery of its own
    assert find_step(CWR, "closing", t) is CWR.step("closing")
    shorter = replace(t, end=dt.date(2027, 7, 1))  # a cohort that ends early: two check-ins
    assert find_step(CWR, "sustain-2", shorter) is not None and find_step(CWR, "sustain-3", shorter) is None


def test_the_shipped_program_checks_in_monthly_for_six_months_after_the_long_deadline() -> None:
    deadlines = {"short": dt.date(2027, 2, 1), "mid": dt.date(2027, 3, 1), "long": dt.date(2027, 4, 5)}
    plan = by_key(plan_participant(CWR, timing(dt.date(2027, 1, 11), **deadlines), EARLY))
    days = [local(plan[f"sustain-{n}"].due_at, "America/New_York").date() for n in range(1, 7)]
    assert days == [
        dt.date(2027, 5, 5), dt.date(2027, 6, 4), dt.date(2027, 7, 5), dt.date(2027, 8, 3),
        dt.date(2027, 9, 2), dt.date(2027, 10, 4),
    ]  # fmt: skip
    assert local(plan["closing"].due_at, "America/New_York").date() == dt.date(2027, 4, 19)
    assert "sustain-7" not in plan and plan["sustain-1"].step.goal is None


# --- properties -----------------------------------------------------------------

ZONES = [
    "America/New_York", "America/Santiago", "Europe/London", "Asia/Tokyo", "Australia/Lord_Howe",
    "Pacific/Apia", "Asia/Kolkata", "America/St_Johns", "Africa/Casablanca", "Pacific/Chatham", "UTC",
    "America/Nuuk", "America/Havana", "Asia/Gaza",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@example(
    zone="Pacific/Apia", start=dt.date(2011, 11, 1), minutes=1, gaps=(1, 0, 44), weekends=False, late_by=0
)  # a whole local day that never happened
@given(
    zone=st.sampled_from(ZONES),
    start=st.dates(dt.date(2010, 1, 1), dt.date(2035, 12, 31)),
    minutes=st.integers(0, 24 * 60 - 1),
    gaps=st.tuples(st.integers(1, 60), st.integers(0, 60), st.integers(0, 60)),
    weekends=st.booleans(),
    late_by=st.one_of(st.none(), st.integers(0, 120 * 24)),
)
def test_every_send_is_at_send_time_and_times_strictly_increase(
    zone: str, start: dt.date, minutes: int, gaps: tuple[int, int, int], weekends: bool, late_by: int | None
) -> None:
    at = dt.time(minutes // 60, minutes % 60)
    short = start + dt.timedelta(days=gaps[0])
    mid = short + dt.timedelta(days=gaps[1])
    long = mid + dt.timedelta(days=gaps[2])
    t = Timing(start, zone, at, weekends, {"short": short, "mid": mid, "long": long})
    tz = ZoneInfo(zone)
    now = EARLY if late_by is None else local_instant(start, dt.time(0), tz) + dt.timedelta(hours=late_by)
    plan = plan_participant(CWR, t, now)
    assert {p.step.key for p in plan} == {s.key for s in expand_steps(CWR, t)}
    scheduled = sorted(p.due_at for p in plan if p.status is DeliveryStatus.SCHEDULED)
    for due in scheduled:
        assert due.tzinfo is UTC and due >= now
        wall = due.astimezone(tz)
        if wall.time() != at:
            # Only when send_time does not exist that day: then it is the first instant after the gap.
            # A gap may swallow the rest of a day, even a whole one (Samoa skipped 30 December 2011):
            # then the send time that did not exist was on the day before.
            missing = [
                naive
                for day in (wall.date(), wall.date() - dt.timedelta(days=1))
                if (naive := dt.datetime.combine(day, at))
                .replace(tzinfo=tz)
                .astimezone(UTC)
                .astimezone(tz)
                .replace(tzinfo=None)
                != naive
            ]
            assert missing, f"{wall} is not {at}, and {at} existed"
            assert (
                (due - dt.timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
                < missing[0]
                < wall.replace(tzinfo=None)
            )
        if weekends:
            assert wall.weekday() < 5
    # one email a local day in the participant's inbox (notes to the owners are not in it)
    theirs = [
        p.due_at for p in plan if p.status is DeliveryStatus.SCHEDULED and p.step.to is Audience.PARTICIPANT
    ]
    days = [d.astimezone(tz).date() for d in theirs]
    assert len(days) == len(set(days))
    # Each goal's emails strictly increase in program order: kickoff, reminder, due day, overdue.
    by_key = {p.step.key: p.due_at for p in plan if p.status is DeliveryStatus.SCHEDULED}
    for goal in ("short", "mid", "long"):
        times = [
            by_key[f"{goal}-{kind}"]
            for kind in ("kickoff", "reminder", "due", "overdue")
            if f"{goal}-{kind}" in by_key
        ]
        assert times == sorted(times), goal
    assert by_key.get("welcome") is None or by_key["welcome"] == scheduled[0]
