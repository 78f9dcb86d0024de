"""Who gets which email when, and what became of it: a line per participant.

``plan_timeline`` reads it from ``drip plan``'s entries, ``report_timeline`` from a cohort's
progress; ``drip.owners.timeline_svg`` draws either.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from drip.core.states import DeliveryStatus, EventKind, GoalStatus
from drip.owners import progress
from drip.owners.texts import Entry


class Kind(StrEnum):
    """What a mark on a participant's line shows."""

    SENT = "sent"
    TO_COME = "to-come"
    WAITING = "waiting"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DONE = "done"
    WAIVED = "waived"
    DEADLINE = "deadline"
    MOVED = "moved"
    OVERDUE = "overdue"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"


#: what each mark means, in the legend's order
LEGEND = {
    Kind.SENT: "sent",
    Kind.TO_COME: "to come",
    Kind.WAITING: "waits for its goal to be done",
    Kind.SKIPPED: "skipped: its moment had passed",
    Kind.CANCELLED: "cancelled: its goal was done, or they stopped",
    Kind.FAILED: "failed",
    Kind.DONE: "goal done",
    Kind.WAIVED: "goal waived",
    Kind.DEADLINE: "their own deadline",
    Kind.MOVED: "deadline snoozed or moved",
    Kind.OVERDUE: "overdue: deadline passed, goal open",
    Kind.BOUNCED: "address bounced",
    Kind.UNSUBSCRIBED: "unsubscribed",
}

#: the mark of a delivery in each state, and the word that says it
EMAIL_MARKS: dict[str, tuple[Kind, str]] = {
    DeliveryStatus.SENT: (Kind.SENT, "sent"),
    DeliveryStatus.SCHEDULED: (Kind.TO_COME, "due"),
    DeliveryStatus.CLAIMED: (Kind.TO_COME, "going out"),
    DeliveryStatus.SENDING: (Kind.TO_COME, "going out"),
    DeliveryStatus.WAITING: (Kind.WAITING, "waiting"),
    DeliveryStatus.SKIPPED: (Kind.SKIPPED, "skipped"),
    DeliveryStatus.CANCELLED: (Kind.CANCELLED, "cancelled"),
    DeliveryStatus.FAILED: (Kind.FAILED, "failed"),
}


@dataclass(frozen=True)
class Mark:
    at: dt.datetime
    kind: Kind
    #: what it says to a pointer and a screen reader, e.g. "short-reminder: sent Fri 29 Jan 2027 09:00 EST"
    text: str


@dataclass(frozen=True)
class Row:
    """One participant's line."""

    name: str
    email: str
    marks: tuple[Mark, ...]
    #: steps that go when a goal is done, so have no date yet
    waiting: tuple[str, ...] = ()
    #: (from, until, what): how long a goal has been overdue, and which
    overdue: tuple[tuple[dt.datetime, dt.datetime, str], ...] = ()
    #: their status, when not active
    note: str = ""


@dataclass(frozen=True)
class Timeline:
    title: str
    #: the zone whose days the axis counts
    zone: str
    rows: tuple[Row, ...]
    #: the cohort's deadlines, drawn across every line
    deadlines: Mapping[str, dt.date]
    now: dt.datetime | None = None


def plan_timeline(
    title: str, zone: str, entries: Sequence[Entry], deadlines: Mapping[str, dt.date], now: dt.datetime
) -> Timeline:
    """Return the timeline of ``drip plan``'s entries (planned, or stored with what was sent)."""
    rows = []
    for email, group in itertools.groupby(entries, key=lambda entry: entry.email):
        items = list(group)
        marks, waiting = _email_marks(
            [progress.Email(e.step, e.goal, e.status, e.at, e.note) for e in items], items[0].timezone
        )
        rows.append(Row(items[0].name, email, marks, waiting))
    return Timeline(title, zone, tuple(rows), deadlines, now)


def report_timeline(found: progress.Progress) -> Timeline:
    """Return the report's timeline: its first ``progress.TIMELINE_LIMIT`` participants and what happened."""
    cohort_deadlines = {goal.key: goal.deadline for goal in found.goals if goal.deadline}
    rows = []
    for person in found.people[: progress.TIMELINE_LIMIT]:
        marks, waiting = _email_marks(found.emails.get(person.id, ()), person.timezone)
        extra, overdue = [], []
        for key, state in person.goals.items():
            if state.status == GoalStatus.DONE and state.completed_at:
                via = f" via {state.via}" if state.via else ""
                extra.append(
                    Mark(
                        state.completed_at,
                        Kind.DONE,
                        f"{key} done {_when(state.completed_at, person.timezone)}{via}",
                    )
                )
            if state.deadline_at and state.deadline != cohort_deadlines.get(key):
                extra.append(Mark(state.deadline_at, Kind.DEADLINE, f"{key} due {short_day(state.deadline)}"))
            if state.overdue and state.deadline_at:
                overdue.append(
                    (state.deadline_at, found.now, f"{key} overdue, due {short_day(state.deadline)}")
                )
        for event in found.happenings.get(person.id, ()):
            extra.append(_event_mark(event, person.timezone))
        note = "" if person.status == "active" else person.status
        rows.append(Row(person.name, person.email, marks + tuple(extra), waiting, tuple(overdue), note))
    title = f"{found.name}: each participant's emails and goals"
    return Timeline(title, found.timezone, tuple(rows), cohort_deadlines, found.now)


def _email_marks(emails: Sequence[progress.Email], zone: str) -> tuple[tuple[Mark, ...], tuple[str, ...]]:
    marks, waiting = [], []
    for email in emails:
        kind, word = EMAIL_MARKS.get(email.status, (Kind.TO_COME, email.status))
        if kind is Kind.WAITING:
            waiting.append(email.step)
        elif email.at is not None:  # else cancelled while it waited: it never had a moment
            why = f" ({email.reason})" if email.reason else ""
            marks.append(Mark(email.at, kind, f"{email.step}: {word} {_when(email.at, zone)}{why}"))
    return tuple(marks), tuple(waiting)


def _event_mark(event: progress.Happening, zone: str) -> Mark:
    when = _when(event.at, zone)
    data = event.data
    if event.kind == EventKind.WAIVED:
        return Mark(event.at, Kind.WAIVED, f"{event.goal} waived {when}")
    if event.kind in (EventKind.SNOOZED, EventKind.EXTENDED):
        verb = "snoozed" if event.kind == EventKind.SNOOZED else "deadline moved"
        return Mark(
            event.at, Kind.MOVED, f"{event.goal} {verb} from {data.get('from')} to {data.get('to')} {when}"
        )
    if event.kind == EventKind.BOUNCED:
        why = f": {data['label']}" if data.get("label") else ""
        return Mark(event.at, Kind.BOUNCED, f"address bounced {when}{why}")
    return Mark(event.at, Kind.UNSUBSCRIBED, f"unsubscribed {when}")


def _when(instant: dt.datetime, zone: str) -> str:
    local = instant.astimezone(ZoneInfo(zone))
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


def short_day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"
