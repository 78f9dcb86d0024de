"""A cohort's progress as its owners see it, read in one place for the report, digest, dashboard and export.

Everything here reads; nothing changes state. Removed participants are left
out of every figure, as in ``drip status``. A goal is *overdue* when it is
still open and its deadline day has ended in the participant's own zone
(``goals.deadline_at``), the same rule the reminders follow.

``drip status`` keeps to counts and a few names (``overdue_names``,
``recent_problems``) so that it stays quick on a cohort of any size; the
report reads every participant (``read_progress``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, select

from drip.core.errors import DripError
from drip.core.languages import display_name
from drip.core.program import program_at
from drip.core.states import CohortStatus, DeliveryStatus, EventKind, GoalStatus, ParticipantStatus
from drip.owners.outcomes import CheckIns, linked_goals, read_check_ins
from drip.storage import store
from drip.storage.records import StoredCohort

logger = logging.getLogger(__name__)

#: how soon after an email its goal must be done to count in the step's funnel
DEFAULT_WITHIN = dt.timedelta(days=7)
#: participants whose emails and events are read for the report's timeline, in roster order
TIMELINE_LIMIT = 100
#: the events a participant's timeline shows beside their emails and goals
TIMELINE_EVENTS = (
    EventKind.WAIVED, EventKind.SNOOZED, EventKind.EXTENDED, EventKind.BOUNCED, EventKind.UNSUBSCRIBED,
)  # fmt: skip


@dataclass(frozen=True)
class GoalInfo:
    key: str
    title: str
    #: the cohort's deadline (participants may have their own)
    deadline: dt.date | None


@dataclass(frozen=True)
class GoalState:
    status: str
    deadline: dt.date
    completed_at: dt.datetime | None
    #: link, reply or admin
    via: str | None
    overdue: bool
    #: when the deadline day ends in the participant's zone
    deadline_at: dt.datetime | None = None
    #: their answer to the goal's question, given when it was done (plain text, never markup)
    answer: str | None = None


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    name: str
    timezone: str
    status: str
    goals: dict[str, GoalState]
    #: the language their email is written in (their own, else the cohort's), a BCP 47 tag; "" if not known
    language: str = ""


@dataclass(frozen=True)
class Problem:
    """A failed email or a bounced address."""

    at: dt.datetime
    email: str
    name: str
    #: the step whose email failed; None for a bounce
    step: str | None
    reason: str


@dataclass(frozen=True)
class Reply:
    at: dt.datetime
    email: str
    name: str
    goal: str | None
    #: what drip made of it: "completed" the goal, "answered" a check-in, a "reply" kept for people, or an
    #: "auto-reply"
    outcome: str
    text: str
    #: why a reply was kept for people rather than acted on, or the rule that completed the goal
    why: str = ""


@dataclass(frozen=True)
class Email:
    """One email planned for one participant, as their timeline shows it."""

    step: str
    goal: str | None
    status: str
    #: when it went, or is due; None while it waits for its goal
    at: dt.datetime | None
    #: why it was cancelled, skipped or failed
    reason: str


@dataclass(frozen=True)
class Happening:
    """One of ``TIMELINE_EVENTS`` for one participant."""

    at: dt.datetime
    kind: str
    goal: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class StepFigures:
    """One step's funnel: emails sent, then how many of those people did the goal soon after."""

    step: str
    goal: str | None
    sent: int
    #: of those sent, how many completed the step's goal within ``Progress.within``; None without a goal
    completed: int | None


@dataclass(frozen=True)
class LanguageFigures:
    """The participants who read one language, and how many of them did each goal."""

    tag: str
    name: str
    people: int
    done: dict[str, int]


def _status(person: Person, key: str) -> str | None:
    state = person.goals.get(key)
    return None if state is None else state.status


@dataclass(frozen=True)
class Progress:
    slug: str
    name: str
    program: str
    status: CohortStatus
    start: dt.date
    end: dt.date | None
    timezone: str
    owners: tuple[str, ...]
    now: dt.datetime
    within: dt.timedelta
    goals: tuple[GoalInfo, ...]
    people: tuple[Person, ...]
    deliveries: dict[str, int]
    steps: tuple[StepFigures, ...]
    failures: tuple[Problem, ...]
    bounces: tuple[Problem, ...]
    replies: tuple[Reply, ...]
    #: delegates whose address bounced and who are no longer copied (email: the delegate's address)
    delegate_bounces: tuple[Problem, ...] = ()
    #: the emails of the first ``TIMELINE_LIMIT`` participants, by participant id, in time order
    emails: dict[int, tuple[Email, ...]] = field(default_factory=dict)
    #: their ``TIMELINE_EVENTS``, oldest first
    happenings: dict[int, tuple[Happening, ...]] = field(default_factory=dict)
    #: the check-ins sent so far, and every answer given to them
    check_ins: CheckIns = field(default_factory=CheckIns)
    #: the goals whose web-address answers the owners show as links (cohort.toml ``link_answers``)
    linked: frozenset[str] = frozenset()
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def counts(self, key: str) -> dict[str, int]:
        """Return how many participants have goal ``key`` open, done, waived and overdue."""
        counts = dict.fromkeys(["open", "done", "waived", "overdue", "total"], 0)
        for person in self.people:
            state = person.goals.get(key)
            if state is not None:
                counts[state.status] += 1
                counts["overdue"] += state.overdue
                counts["total"] += 1
        return counts

    def languages(self) -> list[LanguageFigures]:
        """Return how many participants read each language and did each goal, the most read first."""
        found: dict[str, list[Person]] = {}
        for person in self.people:
            found.setdefault(person.language, []).append(person)
        return [
            LanguageFigures(
                tag,
                display_name(tag) if tag else "not known",
                len(people),
                {
                    goal.key: sum(1 for person in people if _status(person, goal.key) == GoalStatus.DONE)
                    for goal in self.goals
                },
            )
            for tag, people in sorted(found.items(), key=lambda item: (-len(item[1]), item[0]))
        ]

    def overdue(self, key: str) -> list[Person]:
        return [p for p in self.people if key in p.goals and p.goals[key].overdue]

    def completions(self, since: dt.datetime, until: dt.datetime) -> list[tuple[Person, str, dt.datetime]]:
        """Return the goals completed in [since, until), oldest first (waived goals are not completions)."""
        found = [
            (person, key, state.completed_at)
            for person in self.people
            for key, state in person.goals.items()
            if state.status == GoalStatus.DONE and state.completed_at and since <= state.completed_at < until
        ]
        return sorted(found, key=lambda item: item[2])

    def days(self) -> list[dt.date]:
        """Return the days the chart spans, in the cohort's zone: from the start to today, or to the end."""
        if "days" not in self._cache:
            today = self.now.astimezone(ZoneInfo(self.timezone)).date()
            last = min(today, self.end) if self.end and self.end >= self.start else today
            count = max((last - self.start).days + 1, 1)
            self._cache["days"] = [self.start + dt.timedelta(days=n) for n in range(count)]
        days: list[dt.date] = self._cache["days"]
        return days

    def series(self, key: str) -> list[int]:
        """Return, for each of ``days()``, how many participants had goal ``key`` done by that day's end."""
        zone = ZoneInfo(self.timezone)
        per_day: dict[dt.date, int] = defaultdict(int)
        for person in self.people:
            state = person.goals.get(key)
            if state and state.status == GoalStatus.DONE and state.completed_at:
                per_day[max(state.completed_at.astimezone(zone).date(), self.start)] += 1
        total, out = 0, []
        for day in self.days():
            total += per_day.get(day, 0)
            out.append(total)
        return out


def read_progress(
    conn: Connection, slug: str, now: dt.datetime, within: dt.timedelta = DEFAULT_WITHIN
) -> Progress | None:
    """Return cohort ``slug``'s progress at ``now`` (None if it was never started)."""
    cohort = store.find_cohort(conn, slug)
    return None if cohort is None else progress_of(conn, cohort, now, within)


def progress_of(
    conn: Connection, cohort: StoredCohort, now: dt.datetime, within: dt.timedelta = DEFAULT_WITHIN
) -> Progress:
    """Return the progress at ``now`` of a stored cohort."""
    settings = cohort.settings
    people = tuple(_people(conn, cohort.id, now, settings.language or _program_language(cohort)))
    ids = {person.id: person for person in people}
    drawn = [person.id for person in people[:TIMELINE_LIMIT]]
    return Progress(
        slug=cohort.slug,
        name=cohort.name,
        program=cohort.program,
        status=cohort.status,
        start=cohort.start_date,
        end=settings.end,
        timezone=settings.timezone,
        owners=settings.owners,
        now=now,
        within=within,
        goals=_goals(cohort),
        people=people,
        deliveries=store.delivery_counts(conn, cohort.id),
        steps=tuple(_steps(conn, cohort.id, ids, within)),
        failures=tuple(failures(conn, cohort.id)),
        bounces=tuple(bounces(conn, cohort.id)),
        replies=tuple(_replies(conn, cohort.id, ids)),
        delegate_bounces=tuple(_delegate_bounces(conn, cohort.id, ids)),
        emails=_emails(conn, drawn),
        happenings=_happenings(conn, drawn),
        check_ins=read_check_ins(conn, cohort.id, cohort.program_path),
        linked=linked_goals(cohort),
    )


def _goals(cohort: StoredCohort) -> tuple[GoalInfo, ...]:
    deadlines = cohort.settings.deadlines
    try:
        titles = {goal.key: goal.title for goal in program_at(cohort.program_path).goals}
    except (OSError, DripError) as exc:  # the program's folder moved: keys still say which goal
        logger.warning("cannot read the program at %s for goal titles: %s", cohort.program_path, exc)
        titles = {}
    return tuple(GoalInfo(key, titles.get(key, key), day) for key, day in deadlines.items())


def _program_language(cohort: StoredCohort) -> str:
    try:
        return program_at(cohort.program_path).language
    except (OSError, DripError):  # logged by _goals
        return ""


def _people(conn: Connection, cohort_id: int, now: dt.datetime, language: str) -> Iterator[Person]:
    """Yield the cohort's participants and their goals; ``language``: theirs when the roster gave none."""
    people, goals = store.participant_table, store.goal_table
    rows = conn.execute(
        select(
            people.c.id,
            people.c.email,
            people.c.name,
            people.c.timezone,
            people.c.status,
            people.c.language,
            goals.c.goal,
            goals.c.status.label("goal_status"),
            goals.c.deadline,
            goals.c.deadline_at,
            goals.c.completed_at,
            goals.c.via,
            goals.c.answer,
        )  # fmt: skip
        .outerjoin(goals, goals.c.participant_id == people.c.id)
        .where(people.c.cohort_id == cohort_id, people.c.status != ParticipantStatus.REMOVED.value)
        .order_by(people.c.roster_row.asc().nulls_last(), people.c.id)
    )
    person: Person | None = None
    for row in rows:
        if person is None or person.id != row.id:
            if person is not None:
                yield person
            person = Person(
                row.id, row.email, row.name, row.timezone, row.status, {}, row.language or language
            )
        if row.goal is not None:
            person.goals[row.goal] = GoalState(
                row.goal_status,
                row.deadline,
                row.completed_at,
                row.via,
                overdue=row.goal_status == GoalStatus.OPEN and row.deadline_at <= now,
                deadline_at=row.deadline_at,
                answer=row.answer,
            )
    if person is not None:
        yield person


def _steps(
    conn: Connection, cohort_id: int, people: dict[int, Person], within: dt.timedelta
) -> Iterator[StepFigures]:
    delivery = store.delivery_table
    sent = conn.execute(
        select(delivery.c.participant_id, delivery.c.step, delivery.c.goal, delivery.c.sent_at).where(
            delivery.c.cohort_id == cohort_id, delivery.c.status == DeliveryStatus.SENT.value
        )
    )
    figures: dict[str, list[Any]] = {}
    for row in sent:
        person = people.get(row.participant_id)
        if person is None:  # removed
            continue
        entry = figures.setdefault(row.step, [row.goal, 0, 0, row.sent_at])
        entry[1] += 1
        entry[3] = min(entry[3], row.sent_at)
        state = person.goals.get(row.goal) if row.goal else None
        if state and state.status == GoalStatus.DONE and state.completed_at:
            entry[2] += row.sent_at <= state.completed_at <= row.sent_at + within
    # In the order the cohort first met them: the program's order, repeated steps included.
    for step, (goal, count, completed, _) in sorted(figures.items(), key=lambda item: (item[1][3], item[0])):
        yield StepFigures(step, goal, count, completed if goal else None)


def _emails(conn: Connection, ids: list[int]) -> dict[int, tuple[Email, ...]]:
    """Return the emails of the participants ``ids``, sent or due, in time order (waiting ones last)."""
    delivery = store.delivery_table
    at = func.coalesce(delivery.c.sent_at, delivery.c.due_at)
    rows = conn.execute(
        select(
            delivery.c.participant_id,
            delivery.c.step,
            delivery.c.goal,
            delivery.c.status,
            at.label("at"),
            delivery.c.last_error,
        )  # fmt: skip
        .where(delivery.c.participant_id.in_(ids))
        .order_by(delivery.c.participant_id, at.asc().nulls_last(), delivery.c.id)
    )
    found: dict[int, list[Email]] = defaultdict(list)
    for row in rows:
        email = Email(row.step, row.goal, row.status, row.at, row.last_error or "")
        found[row.participant_id].append(email)
    return {key: tuple(value) for key, value in found.items()}


def _happenings(conn: Connection, ids: list[int]) -> dict[int, tuple[Happening, ...]]:
    event = store.event_table
    rows = conn.execute(
        select(event.c.participant_id, event.c.at, event.c.kind, event.c.goal, event.c.data)
        .where(event.c.participant_id.in_(ids), event.c.kind.in_([k.value for k in TIMELINE_EVENTS]))
        .order_by(event.c.at, event.c.id)
    )
    found: dict[int, list[Happening]] = defaultdict(list)
    for row in rows:
        found[row.participant_id].append(Happening(row.at, row.kind, row.goal, row.data or {}))
    return {key: tuple(value) for key, value in found.items()}


def failures(conn: Connection, cohort_id: int, limit: int | None = None) -> list[Problem]:
    """Return the cohort's failed emails, newest first, with the server's reply."""
    people, delivery = store.participant_table, store.delivery_table
    query = (
        select(people.c.email, people.c.name, delivery.c.step, delivery.c.last_error, delivery.c.updated_at)
        .join(people, people.c.id == delivery.c.participant_id)
        .where(
            delivery.c.cohort_id == cohort_id,
            delivery.c.status == DeliveryStatus.FAILED.value,
            people.c.status != ParticipantStatus.REMOVED.value,
        )
        .order_by(delivery.c.updated_at.desc(), delivery.c.id.desc())
        .limit(limit)
    )
    return [Problem(r.updated_at, r.email, r.name, r.step, r.last_error or "") for r in conn.execute(query)]


def bounces(conn: Connection, cohort_id: int, limit: int | None = None) -> list[Problem]:
    """Return the participants whose address bounced, newest first, with why."""
    people, event = store.participant_table, store.event_table
    query = (
        select(people.c.email, people.c.name, event.c.at, event.c.data)
        .join(event, and_(event.c.participant_id == people.c.id, event.c.kind == EventKind.BOUNCED.value))
        .where(people.c.cohort_id == cohort_id, people.c.status == ParticipantStatus.BOUNCED.value)
        .order_by(event.c.at.desc(), event.c.id.desc())
        .limit(limit)
    )
    return [
        Problem(r.at, r.email, r.name, None, (r.data or {}).get("label", "")) for r in conn.execute(query)
    ]


def _delegate_bounces(conn: Connection, cohort_id: int, people: dict[int, Person]) -> Iterator[Problem]:
    """Yield the delegates left out of Cc because their address bounced, newest first."""
    event = store.event_table
    rows = conn.execute(
        select(event.c.participant_id, event.c.at, event.c.data)
        .where(event.c.cohort_id == cohort_id, event.c.kind == EventKind.DELEGATE_BOUNCED.value)
        .order_by(event.c.at.desc(), event.c.id.desc())
    )
    for row in rows:
        person = people.get(row.participant_id)
        if person is not None:
            data = row.data or {}
            yield Problem(row.at, str(data.get("delegate", "")), person.name, None, data.get("label", ""))


def _replies(conn: Connection, cohort_id: int, people: dict[int, Person]) -> Iterator[Reply]:
    """Yield the replies drip read, newest first: those that completed a goal or answered a check-in,
    and those kept for people."""
    event = store.event_table
    rows = conn.execute(
        select(event.c.participant_id, event.c.goal, event.c.kind, event.c.at, event.c.data)
        .where(
            event.c.cohort_id == cohort_id,
            event.c.kind.in_([EventKind.REPLIED.value, EventKind.COMPLETED.value, EventKind.ANSWERED.value]),
        )
        .order_by(event.c.at.desc(), event.c.id.desc())
    )
    for row in rows:
        person = people.get(row.participant_id)
        data = row.data or {}
        if person is None or (row.kind != EventKind.REPLIED and data.get("via") != "reply"):
            continue
        if row.kind == EventKind.COMPLETED:
            outcome, text, why = "completed", data.get("excerpt", ""), data.get("rule", "")
        elif row.kind == EventKind.ANSWERED:
            outcome, text = "answered", data.get("excerpt", "")
            why = f"{data.get('step', '')}: {data.get('answer', '')}; {data.get('rule', '')}"
        else:
            outcome = "auto-reply" if data.get("auto") else "reply"
            text, why = data.get("excerpt") or data.get("subject", ""), data.get("why", "")
        yield Reply(row.at, person.email, person.name, row.goal, outcome, text, why)


def overdue_names(
    conn: Connection, cohort_id: int, now: dt.datetime, limit: int | None
) -> dict[str, list[Any]]:
    """Return, per goal, the overdue participants (name, email, deadline), most overdue first.

    ``limit`` caps how many per goal (None: all)."""
    people, goals = store.participant_table, store.goal_table
    ranked = (
        select(
            goals.c.goal,
            people.c.name,
            people.c.email,
            goals.c.deadline,
            func.row_number()
            .over(partition_by=goals.c.goal, order_by=(goals.c.deadline_at, people.c.id))
            .label("n"),
        )  # fmt: skip
        .join(people, people.c.id == goals.c.participant_id)
        .where(
            people.c.cohort_id == cohort_id,
            people.c.status != ParticipantStatus.REMOVED.value,
            goals.c.status == GoalStatus.OPEN.value,
            goals.c.deadline_at <= now,
        )
        .subquery()
    )
    found: dict[str, list[Any]] = defaultdict(list)
    query = select(ranked).order_by(ranked.c.goal, ranked.c.n)
    if limit is not None:
        query = query.where(ranked.c.n <= limit)
    for row in conn.execute(query):
        found[row.goal].append(row)
    return dict(found)
