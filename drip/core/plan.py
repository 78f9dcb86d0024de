"""Place each participant's steps in time. Pure: no I/O, ``now`` is a parameter.

Rules, in the order they apply:

1. A step's *day* is its anchor's local date plus its offset. Goals open at
   the start unless the program says otherwise; deadlines are the
   participant's own, else the cohort's, else the program's default.
2. With ``skip_weekends``, a Saturday or Sunday moves to a weekday: to the
   Friday before for mail about a deadline that has not passed yet
   (``GOAL.deadline`` with an offset of zero or less), so it arrives before the
   deadline; to the Monday after for everything else.
3. The *moment* is ``send_time`` on that day in the participant's zone. A time
   that does not exist (a daylight-saving gap) becomes the first instant after
   the gap; a time that happens twice takes the first.
4. A step whose moment has passed at enrolment (``now``) is skipped with a
   reason, unless the program marks it ``late = "send"`` and its goal's
   deadline has not passed: then it goes at the next send window. A step
   before the cohort's start is skipped.
5. One email per participant per local day: steps are taken in order of day
   (ties by their order in program.toml) and each one that would share a day
   with an earlier one, or with mail already sent, moves to the next free send
   day. Moving later, never earlier, keeps the sequence in order (a reminder
   never arrives before its kickoff). Mail about a deadline (``GOAL.deadline``
   with an offset of zero or less) that would move past that deadline is
   skipped instead, with the reason: "three days left" after the deadline
   would be wrong, and the overdue nudge follows anyway.
6. Steps anchored on ``GOAL.completed`` wait until the goal is done; then
   they go at the first send window from the completion (plus any offset)
   that has no other email for the participant: they never push planned mail
   aside. The other steps of a goal that is settled (done or waived) are not
   planned at all.
7. Mail a step sends to someone else (``to = "owners"`` or ``"delegate"``) is
   not in the participant's inbox: it takes no day of theirs and moves for
   none; it goes at the first send window from its own day.
8. A repeating step becomes one step per occurrence (``KEY-1``, ``KEY-2``,
   ...), each placed by the rules above like any other: its day is the first
   occurrence's plus the interval times the occurrences before it, up to and
   including ``until``'s day and never after the program's end. An occurrence
   that weekends or spacing would push past the program's end is skipped,
   with the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

from drip.core.program import MAX_OCCURRENCES, Anchor, AnchorKind, Audience, LatePolicy, Program, Step
from drip.core.states import DeliveryStatus

UTC = dt.UTC
_ONE_DAY = dt.timedelta(days=1)
_SATURDAY = 5
_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Timing:
    """Everything that places one participant's steps in time."""

    start: dt.date
    timezone: str
    send_time: dt.time
    skip_weekends: bool
    deadlines: Mapping[str, dt.date]
    #: the cohort's own end date; otherwise the program's ``ends`` anchor decides
    end: dt.date | None = None

    def key(self) -> tuple[object, ...]:
        """Return a hashable value equal for equal timings: they place every step alike."""
        deadlines = tuple(sorted(self.deadlines.items()))
        return (self.start, self.timezone, self.send_time, self.skip_weekends, deadlines, self.end)

    def signature(self, program: Program) -> str:
        """Return a digest that changes whenever re-planning could move a step."""
        parts = [
            self.start.isoformat(),
            self.timezone,
            self.send_time.isoformat(),
            self.skip_weekends,
            sorted((key, day.isoformat()) for key, day in self.deadlines.items()),
            self.end.isoformat() if self.end else None,
            program.timing_signature,
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedStep:
    """Where one step of one participant's plan landed, and why."""

    step: Step
    status: DeliveryStatus
    #: aware UTC; None while waiting for a goal's completion or when skipped before the start
    due_at: dt.datetime | None
    #: the local day the program asked for, before weekends, lateness and spacing
    nominal_day: dt.date | None
    reason: str | None = None


@dataclass(frozen=True)
class GoalDates:
    opens: dt.date
    deadline: dt.date
    #: the instant the deadline day ends in the participant's zone
    deadline_ends_at: dt.datetime


def local_instant(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """Return the UTC instant of wall-clock ``at`` on ``day`` in ``zone``.

    A wall time inside a daylight-saving gap becomes the first instant after
    the gap; an ambiguous wall time takes its first occurrence.
    """
    return _local_instant(day, at, zone)


@lru_cache(maxsize=1 << 16)
def _local_instant(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    wall = dt.datetime.combine(day, at)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 reads the wall time with the offset before the change
    # and fold=1 with the one after; the change itself lies between the two.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(low, first), max(low, first)
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def local_day(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    """Return the calendar day ``instant`` falls on in ``zone``."""
    return instant.astimezone(zone).date()


def is_send_day(day: dt.date, skip_weekends: bool) -> bool:
    return not skip_weekends or day.weekday() < _SATURDAY


def off_weekend(day: dt.date, *, earlier: bool) -> dt.date:
    """Move a Saturday or Sunday to the Friday before or the Monday after."""
    weekday = day.weekday()
    if weekday < _SATURDAY:
        return day
    if earlier:
        return day - dt.timedelta(days=weekday - 4)
    return day + dt.timedelta(days=7 - weekday)


def _no_day() -> dt.date | None:
    return None


def goal_dates(program: Program, timing: Timing) -> dict[str, GoalDates]:
    """Return when each goal opens and is due for one participant."""
    zone = ZoneInfo(timing.timezone)
    opens: dict[str, dt.date] = {}

    def opening(key: str) -> dt.date:
        if key not in opens:
            # A goal opens at the start, or at another goal's opening or deadline (program.py checks).
            day = program.goal(key).opens.falls_on(timing.start, _no_day, opening, timing.deadlines.get)
            assert day is not None
            opens[key] = day
        return opens[key]

    midnight = dt.time(0)
    return {
        goal.key: GoalDates(
            opening(goal.key),
            timing.deadlines[goal.key],
            local_instant(timing.deadlines[goal.key] + _ONE_DAY, midnight, zone),
        )
        for goal in program.goals
    }


def anchor_day(
    anchor: Anchor, timing: Timing, goals: Mapping[str, GoalDates], end: dt.date | None
) -> dt.date:
    """Return the local day of a fixed anchor (not ``GOAL.completed``)."""
    day = anchor.falls_on(
        timing.start, lambda: end, lambda goal: goals[goal].opens, lambda goal: goals[goal].deadline
    )
    assert day is not None, f"{anchor} has no fixed day"
    return day


def program_end(program: Program, timing: Timing, goals: Mapping[str, GoalDates] | None = None) -> dt.date:
    """Return the participant's last day in the program."""
    if timing.end is not None:
        return timing.end
    return anchor_day(program.ends, timing, goals or goal_dates(program, timing), None)


def expand_steps(
    program: Program,
    timing: Timing,
    goals: Mapping[str, GoalDates] | None = None,
    end: dt.date | None = None,
) -> list[Step]:
    """Return the steps of one participant's plan: the program's, each repeating one as its occurrences."""
    if all(step.repeat is None for step in program.steps):
        return list(program.steps)
    goals = goals or goal_dates(program, timing)
    end = end or program_end(program, timing, goals)
    expanded: list[Step] = []
    for step in program.steps:
        if step.repeat is None:
            expanded.append(step)
        else:
            count = min(_occurrence_count(step, timing, goals, end), MAX_OCCURRENCES)
            expanded += [step.nth(number, count) for number in range(1, count + 1)]
    return expanded


def _occurrence_count(step: Step, timing: Timing, goals: Mapping[str, GoalDates], end: dt.date) -> int:
    """Return how many occurrences of repeating ``step`` fall from its anchor up to its until and the end."""
    assert step.repeat is not None
    first = anchor_day(step.at, timing, goals, end)
    last = end
    if step.repeat.until is not None:
        last = min(last, anchor_day(step.repeat.until, timing, goals, end))
    return 0 if last < first else (last - first).days // step.repeat.every_days + 1


def find_step(program: Program, key: str, timing: Timing) -> Step | None:
    """Return the step that a delivery's key names in one participant's plan, or None if it has none.

    An occurrence's key names it only while it is one of the participant's
    occurrences (its until and the program's end have not moved before it).
    """
    step = program.step(key)
    if step is not None and step.repeat is None:
        return step
    if program.occurrence_of(key) is None:
        return None
    return next((s for s in expand_steps(program, timing) if s.key == key), None)


def repeat_warnings(program: Program, timing: Timing) -> list[str]:
    """Say which repeating steps would repeat more often than drip plans for one participant."""
    goals = goal_dates(program, timing)
    end = program_end(program, timing, goals)
    warnings = []
    for step in program.steps:
        if (
            step.repeat is not None
            and (count := _occurrence_count(step, timing, goals, end)) > MAX_OCCURRENCES
        ):
            warnings.append(
                f"{step.key} would repeat {count} times up to {end}; "
                f"only the first {MAX_OCCURRENCES} are planned"
            )
    return warnings


def next_window(now: dt.datetime, timing: Timing, zone: ZoneInfo) -> dt.date:
    """Return the first send day whose send time is at or after ``now``."""
    day = local_day(now, zone)
    while not is_send_day(day, timing.skip_weekends) or local_instant(day, timing.send_time, zone) < now:
        day += _ONE_DAY
    return day


def plan_participant(
    program: Program,
    timing: Timing,
    now: dt.datetime,
    fixed: Mapping[str, dt.datetime] | None = None,
    upcoming: Mapping[str, dt.datetime] | None = None,
    completed: Mapping[str, dt.datetime] | None = None,
    settled: Iterable[str] = (),
) -> list[PlannedStep]:
    """Plan every step of ``program`` for one participant, enrolled at ``now``.

    ``fixed`` maps steps that must stay where they are (sent, on their way, or
    already due) to their instant: they are left out of the plan but keep
    their day taken. ``upcoming`` maps mail that was still to come before
    re-planning to its instant: if its new moment has already passed, it keeps
    that instant rather than being skipped. ``completed`` maps each goal done
    to when: its ``GOAL.completed`` steps are placed. The steps of ``settled``
    goals (done or waived) are left out, but for a done goal's completion steps.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    fixed = fixed or {}
    upcoming = upcoming or {}
    completed = completed or {}
    kept: list[dt.datetime] = []
    zone = ZoneInfo(timing.timezone)
    goals = goal_dates(program, timing)
    end = program_end(program, timing, goals)
    program_ends_at = local_instant(end + _ONE_DAY, dt.time(0), zone)
    result: dict[str, PlannedStep] = {}
    late: list[_Wanted] = []
    about_deadlines: list[_Wanted] = []
    others: list[_Wanted] = []
    completions: list[_Wanted] = []
    aside: list[_Wanted] = []  # mail to someone else than the participant
    left_out = set(settled)
    steps = expand_steps(program, timing, goals, end)

    for step in steps:
        if step.key in fixed:
            continue
        if step.waits_for_completion:
            done_at = completed.get(step.at.goal or "")
            if done_at is not None:
                nominal = local_day(done_at, zone) + dt.timedelta(days=step.at.offset_days)
                day = max(nominal, next_window(now, timing, zone), timing.start)
                wanted = _Wanted(day, step.order, step, nominal, None)
                (completions if step.to is Audience.PARTICIPANT else aside).append(wanted)
            elif step.at.goal not in left_out:
                result[step.key] = PlannedStep(step, DeliveryStatus.WAITING, None, None)
            continue
        if step.goal in left_out:
            continue
        nominal = anchor_day(step.at, timing, goals, end)
        if nominal < timing.start:
            reason = f"falls on {nominal}, before the cohort starts on {timing.start}"
            result[step.key] = PlannedStep(step, DeliveryStatus.SKIPPED, None, nominal, reason)
            continue
        on_deadline = step.at.kind is AnchorKind.DEADLINE and step.at.goal is not None
        before_deadline = on_deadline and step.at.offset_days <= 0
        latest = None
        if before_deadline:
            deadline = goals[step.at.goal].deadline  # type: ignore[index]
            # A reminder must arrive before the deadline day, the due-day email on it.
            latest = deadline - _ONE_DAY if step.at.offset_days < 0 else deadline
        if step.occurrence is not None:
            latest = end if latest is None else min(latest, end)  # never after the program's end
        day = nominal
        if timing.skip_weekends:
            day = max(off_weekend(nominal, earlier=before_deadline), timing.start)
        if before_deadline and step.goal and day < goals[step.goal].opens:
            reason = f"falls on {day}, before {step.goal} opens on {goals[step.goal].opens}"
            result[step.key] = PlannedStep(step, DeliveryStatus.SKIPPED, None, nominal, reason)
            continue
        moment = local_instant(day, timing.send_time, zone)
        if moment < now and upcoming.get(step.key, now) > now:
            if step.to is Audience.PARTICIPANT:
                kept.append(upcoming[step.key])
            result[step.key] = PlannedStep(step, DeliveryStatus.SCHEDULED, upcoming[step.key], nominal)
            continue
        if moment < now:
            still_open = goals[step.goal].deadline_ends_at if step.goal else program_ends_at
            if step.late is LatePolicy.SEND and still_open > now:
                wanted = _Wanted(next_window(now, timing, zone), step.order, step, nominal, latest)
                (late if step.to is Audience.PARTICIPANT else aside).append(wanted)
            else:
                local = moment.astimezone(zone)
                reason = (
                    f"its moment, {local:%Y-%m-%d %H:%M} {timing.timezone}, had passed when it was planned"
                )
                result[step.key] = PlannedStep(step, DeliveryStatus.SKIPPED, moment, nominal, reason)
            continue
        wanted = _Wanted(day, step.order, step, nominal, latest)
        if step.to is not Audience.PARTICIPANT:
            aside.append(wanted)
        else:
            (about_deadlines if on_deadline else others).append(wanted)

    # Mail to the owners or a delegate is not in the participant's inbox: it neither takes their day
    # nor moves for it; each such email goes on its own first send day.
    to_of = {step.key: step.to for step in steps}
    theirs = [i for key, i in fixed.items() if to_of.get(key, Audience.PARTICIPANT) is Audience.PARTICIPANT]
    slots = _Slots(timing, zone, {local_day(instant, zone) for instant in (*theirs, *kept)})
    placed: dict[str, tuple[_Wanted, dt.datetime | None]] = {}
    for items, in_sequence in ((late, True), (about_deadlines, False), (others, True), (completions, True)):
        for item, due in slots.place(items, in_sequence=in_sequence):
            placed[item.step.key] = (item, due)
    _openings_first(placed, zone)
    for item in aside:
        placed.update(
            (i.step.key, (i, due)) for i, due in _Slots(timing, zone, set()).place([item], in_sequence=False)
        )
    for item, due in placed.values():
        if due is None:
            reason = f"every send day up to {item.latest} already had an email"
            if item.step.occurrence is not None and item.latest == end:
                reason = f"no send day was left for it from {item.nominal} to the program's end, {end}"
            result[item.step.key] = PlannedStep(item.step, DeliveryStatus.SKIPPED, None, item.nominal, reason)
        else:
            result[item.step.key] = PlannedStep(item.step, DeliveryStatus.SCHEDULED, due, item.nominal)
    return [result[step.key] for step in steps if step.key in result]


def _openings_first(placed: dict[str, tuple[_Wanted, dt.datetime | None]], zone: ZoneInfo) -> None:
    """Make opening mail come before deadline mail, by trading days.

    Opening mail is the program's first email (anchored on ``start`` itself,
    before every goal's deadline mail) and each goal's kickoff (anchored on
    ``GOAL.opens``, before that goal's deadline mail). Deadline mail is placed
    first so that it keeps its day; when that pushed opening mail behind it,
    the two trade days. Mail about a coming deadline that would then land too
    late is skipped instead.
    """

    def comes_first(opening: Anchor, other: Anchor) -> bool:
        if other.kind is not AnchorKind.DEADLINE:
            return False
        if opening.kind is AnchorKind.START:
            return opening.offset_days == 0
        return opening.kind is AnchorKind.OPENS and opening.goal == other.goal

    by_time = sorted(placed, key=lambda key: placed[key][1] or _NEVER)
    for first in by_time:
        for other in by_time:
            (first_item, first_due), (item, due) = placed[first], placed[other]
            if first_due is None or due is None or due >= first_due:
                continue
            if comes_first(first_item.step.at, item.step.at):
                fits = item.latest is None or local_day(first_due, zone) <= item.latest
                placed[first] = (first_item, due)
                placed[other] = (item, first_due if fits else None)


@dataclass(frozen=True)
class _Wanted:
    """A step asking for a day, before spacing."""

    day: dt.date
    order: int
    step: Step
    nominal: dt.date
    #: the last day it still makes sense on, for mail about a coming deadline
    latest: dt.date | None


class _Slots:
    """One participant's send days: at most one email per local day."""

    def __init__(self, timing: Timing, zone: ZoneInfo, taken: set[dt.date]) -> None:
        self.timing = timing
        self.zone = zone
        self.taken = taken

    def place(
        self, wanted: Iterable[_Wanted], *, in_sequence: bool
    ) -> list[tuple[_Wanted, dt.datetime | None]]:
        """Give each step the first free send day from the one it wants.

        In order of wanted day (ties by program order). With ``in_sequence``
        each step also comes after the one before, so the group keeps its
        order. A step that would move past its ``latest`` day gets None.
        """
        placed: list[tuple[_Wanted, dt.datetime | None]] = []
        last: dt.date | None = None
        for item in sorted(wanted, key=lambda item: (item.day, item.order)):
            day = item.day if not in_sequence or last is None else max(item.day, last + _ONE_DAY)
            while True:
                due = local_instant(day, self.timing.send_time, self.zone)
                # A daylight-saving gap at send time can push the moment into the next day.
                actual = local_day(due, self.zone)
                if is_send_day(day, self.timing.skip_weekends) and actual not in self.taken:
                    if last is None or not in_sequence or actual > last:
                        break
                day += _ONE_DAY
            if item.latest is not None and actual > item.latest:
                placed.append((item, None))
                continue
            self.taken.add(actual)
            placed.append((item, due))
            last = actual
        return placed


def timing_warnings(program: Program, timing: Timing) -> list[str]:
    """Say which goals are too short for their own steps to arrive in order.

    E.g. a goal whose deadline equals the one before it opens on its deadline:
    its kickoff would come after its reminders.
    """
    warnings = []
    dates = goal_dates(program, timing)
    for goal in program.goals:
        mine = [step.at for step in program.steps if step.at.goal == goal.key]
        after_opening = [a.offset_days for a in mine if a.kind is AnchorKind.OPENS]
        before_deadline = [-a.offset_days for a in mine if a.kind is AnchorKind.DEADLINE]
        needed = max([0, *after_opening]) + max([0, *before_deadline]) + 1
        opens, deadline = dates[goal.key].opens, dates[goal.key].deadline
        if (deadline - opens).days < needed:
            warnings.append(
                f"{goal.key} opens {opens} and is due {deadline}: {(deadline - opens).days} day(s), "
                f"but its emails need {needed} to arrive in order"
            )
    return warnings
