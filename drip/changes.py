"""Changes to one participant: a goal done, waived, reopened, snoozed or extended; a participant
paused, resumed, removed, unsubscribed or bounced.

One function per change, used alike by the link pages, replies and the CLI.
Each runs in the caller's transaction, appends an event, re-plans what the
change moves (``drip.core.replan``), and returns what it did in words a program
owner can read. Doing a change twice is harmless: the second time says so and
changes nothing. Like ``drip.sending.claims``, this module holds the SQL of its own
state changes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select, update

from drip.core.errors import DripError
from drip.core.plan import Timing, goal_dates, local_day
from drip.core.program import Choices, Program, program_at
from drip.core.replan import PARTICIPANT_REMOVED, Changes, replan
from drip.core.states import CohortStatus, DeliveryStatus, EventKind, GoalStatus, ParticipantStatus
from drip.core.tokens import Action, Claim, read_answer_object
from drip.core.values import email_key, first_name
from drip.storage import store
from drip.storage.plainsql import Plain
from drip.storage.records import (
    CohortSettings,
    StoredCohort,
    StoredDelivery,
    StoredEvent,
    StoredGoal,
    delivery_row,
)
from drip.storage.store import cohort_table, goal_table, participant_table

#: how far one snooze pushes a deadline back
SNOOZE = dt.timedelta(days=7)
# User agents of mail security scanners and link previewers: such a visit is labelled, never refused.
_SCANNER_AGENTS = re.compile(
    r"bot|crawl|spider|preview|scan|safelinks|mimecast|proofpoint|barracuda|python-|curl/|wget/|"
    r"go-http-client|headless|okhttp|java/|libwww",
    re.IGNORECASE,
)
#: a visit sooner than this after the email was sent is probably a scanner's
_TOO_SOON = dt.timedelta(seconds=10)


class ActionError(DripError):
    """A change that cannot be made, with why and what to do instead."""


@dataclass(frozen=True)
class Evidence:
    """Where a change came from, kept with its event."""

    #: link, reply or admin
    via: str
    ip: str | None = None
    user_agent: str | None = None
    #: the reply's Message-ID, for changes made by email
    message_id: str | None = None
    #: what drip's heuristics make of it (e.g. "possible link scanner"); never decides anything
    label: str | None = None
    #: for changes made by email: its From address, what tied it to the participant (the Message-ID it
    #: answers, or "token"), and the rule that decided
    sender: str | None = None
    matched: str | None = None
    rule: str | None = None
    #: the participant's answer to the goal's question (``drip.core.answers``), kept with the event
    answer: str | None = None
    #: for a check-in answered by reply: the reply's own words, as the event keeps them
    excerpt: str | None = None

    def data(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


ADMIN = Evidence("admin")


@dataclass
class Person:
    """A participant with everything a change to them needs."""

    id: int
    email: str
    name: str
    timezone: str
    fields: dict[str, Any]
    status: ParticipantStatus
    cohort: StoredCohort
    program: Program
    goals: dict[str, StoredGoal]
    delegate_email: str | None = None
    #: the delegate address (case-folded) that bounced, if any
    delegate_bounced: str | None = None
    #: the roster's language tag; None: the cohort's
    language: str | None = None

    @property
    def reads(self) -> str:
        """Return the language this person's email is written in: theirs, the cohort's or the program's."""
        return self.language or self.cohort.settings.language or self.program.language

    @property
    def first_name(self) -> str:
        return first_name(self.name, self.fields)

    def timing(self, deadlines: dict[str, dt.date] | None = None) -> Timing:
        return self.cohort.timing(
            self.timezone, deadlines or {key: goal.deadline for key, goal in self.goals.items()}
        )

    def goal(self, key: str) -> StoredGoal:
        if key not in self.goals:
            known = ", ".join(self.goals)
            raise ActionError(f"{self.cohort.slug!r} has no goal {key!r}; its goals are {known}")
        return self.goals[key]

    def next_goal(self, after: str) -> StoredGoal | None:
        """Return the first goal after ``after``, in the program's order, that is still open."""
        keys = list(self.goals)
        later = keys[keys.index(after) + 1 :] if after in keys else keys
        return next((self.goals[key] for key in later if self.goals[key].status is GoalStatus.OPEN), None)

    def title(self, key: str) -> str:
        return self.program.goal(key).title


@dataclass(frozen=True)
class Outcome:
    """What a change did."""

    person: Person
    changed: bool
    #: one or two sentences for the command line and the event log
    summary: str
    goal: str | None = None
    cancelled: int = 0
    #: (step, when) of mail the change planned
    planned: tuple[tuple[str, dt.datetime], ...] = field(default_factory=tuple)


# --- finding people ---------------------------------------------------------------


# Plain SQL (``drip.storage.plainsql``): the link pages and replies find a person for every click and
# every message.
_PEOPLE = """
SELECT p.id, p.email, p.name, p.timezone, p.fields, p.status, c.id, c.slug, c.name, c.settings,
       c.start_date, c.program_path, c.program, c.folder, c.status, p.delegate_email, p.delegate_bounced,
       p.language{goal}
FROM participants p JOIN cohorts c ON c.id = p.cohort_id"""
_PERSON = _PEOPLE.format(goal="") + " WHERE p.id = ?"
_PERSON_OF_GOAL = _PEOPLE.format(goal=", g.goal") + " JOIN goals g ON g.participant_id = p.id WHERE g.id = ?"
_GOALS = f"SELECT {', '.join(StoredGoal.COLUMNS)} FROM goals WHERE participant_id = ?"


def person_by_id(conn: Connection, participant_id: int) -> Person | None:
    sql = Plain(conn)
    rows = sql.rows(_PERSON, (participant_id,))
    return _person(sql, rows[0]) if rows else None


def person_by_goal(conn: Connection, goal_id: int) -> tuple[Person, str] | None:
    """Return the participant a goal row belongs to, and the goal's key."""
    sql = Plain(conn)
    rows = sql.rows(_PERSON_OF_GOAL, (goal_id,))
    return (_person(sql, rows[0]), rows[0][-1]) if rows else None


def _person(sql: Plain, row: tuple[Any, ...]) -> Person:
    ident, address, name, zone, fields, status, cohort_id, slug, cohort_name, settings, start, path = row[:12]
    program_key, folder, cohort_status, delegate, delegate_bounced, language = row[12:18]
    program = program_at(path)
    cohort = StoredCohort(
        cohort_id, slug, cohort_name, program_key, path, folder, CohortStatus(cohort_status),
        sql.read_date(start), CohortSettings.from_json(sql.read_json(settings)),
    )  # fmt: skip
    by_key = {goal.goal: goal for goal in map(StoredGoal.from_driver, sql.rows(_GOALS, (ident,)))}
    return Person(
        id=ident,
        email=address,
        name=name,
        timezone=zone,
        fields=dict(sql.read_json(fields)),
        status=ParticipantStatus(status),
        cohort=cohort,
        program=program,
        goals={key: by_key[key] for key in program.goal_keys if key in by_key},
        delegate_email=delegate,
        delegate_bounced=delegate_bounced,
        language=language,
    )


_SENT_TO = "SELECT participant_id, step FROM deliveries WHERE id = ? AND sent_at IS NOT NULL"


def person_of(conn: Connection, claim: Claim) -> tuple[Person, str | None] | None:
    """Return whom a genuine link's token is about, and the goal for a goal's link (for an answer's,
    the step of the email it answers); None if gone."""
    if claim.action is Action.ANSWER:
        delivery_id, _ = read_answer_object(claim.object_id)
        rows = Plain(conn).rows(_SENT_TO, (delivery_id,))
        person = person_by_id(conn, rows[0][0]) if rows else None
        return None if person is None else (person, rows[0][1])
    if not claim.action.on_goal:
        person = person_by_id(conn, claim.object_id)
        return None if person is None else (person, None)
    return person_by_goal(conn, claim.object_id)


def chosen(person: Person, step_key: str, claim: Claim) -> tuple[Choices, str]:
    """Return the answers of the check-in an answer link is for and the one it gives, as the program
    stands."""
    choices = person.program.choices_of(step_key)
    _, index = read_answer_object(claim.object_id)
    if choices is None or index >= len(choices.keys):
        raise ActionError(f"{step_key} no longer asks this question: the program was changed")
    return choices, choices.keys[index]


def act(
    conn: Connection, claim: Claim, person: Person, key: str | None, now: dt.datetime, evidence: Evidence
) -> Outcome:
    """Do what a link's action means, for the link pages, kept clicks and unsubscribe replies alike."""
    if claim.action is Action.UNSUBSCRIBE:
        return unsubscribe(conn, person, now, evidence)
    assert key is not None, "a goal's link names its goal, an answer's its email's step"
    if claim.action is Action.ANSWER:
        _, choice = chosen(person, key, claim)
        return answer(conn, person, key, choice, read_answer_object(claim.object_id)[0], now, evidence)
    change = {Action.DONE: complete, Action.SNOOZE: snooze, Action.REOPEN: reopen}[claim.action]
    return change(conn, person, key, now, evidence)


def find_person(conn: Connection, slug: str, email: str) -> Person:
    """Return a participant of cohort ``slug`` by address, or say clearly why not."""
    cohort = store.find_cohort(conn, slug)
    if cohort is None:
        known = ", ".join(store.cohort_slugs(conn)) or "none"
        raise ActionError(f"no cohort {slug!r}; known cohorts: {known}")
    found = store.find_participant(conn, cohort.id, email_key(email))
    person = person_by_id(conn, found.id) if found is not None else None
    if person is None:
        raise ActionError(f"{email} is not a participant of {slug!r}")
    return person


def check_not_backdated(conn: Connection, person: Person, now: dt.datetime) -> None:
    """Refuse a change dated before the cohort's start or before the participant's last event: it
    would rewrite history (a goal done before the program began). ``--backdate`` skips this."""
    zone = ZoneInfo(person.timezone)
    began = dt.datetime.combine(person.cohort.start_date, dt.time(), zone)
    if now < began:
        raise ActionError(
            f"--now {now:%Y-%m-%d %H:%M} UTC is before {person.cohort.slug!r} started "
            f"({person.cohort.start_date}); "
            "a change dated then would rewrite history; give --backdate if you mean it"
        )
    events = store.event_table
    last = conn.execute(
        select(func.max(events.c.at)).where(events.c.participant_id == person.id)
    ).scalar_one_or_none()
    if last is not None and now < last:
        raise ActionError(
            f"--now {now:%Y-%m-%d %H:%M} UTC is before {person.email}'s last recorded event "
            f"({last:%Y-%m-%d %H:%M} UTC); give --backdate if you mean it"
        )


# --- goals --------------------------------------------------------------------------


def complete(conn: Connection, person: Person, key: str, now: dt.datetime, evidence: Evidence) -> Outcome:
    """Record goal ``key`` done: its pending mail is cancelled and its congratulations planned."""
    goal = person.goal(key)
    if goal.status is GoalStatus.DONE:
        when = goal.completed_at.date().isoformat() if goal.completed_at else "earlier"
        said = f"{person.email}: {key} was already done ({when}, via {goal.via})."
        return Outcome(person, False, said, key)
    current = store.deliveries_of_one(conn, person.id)
    data = _attested(evidence, current, key, now)
    _settle_goal(conn, goal, GoalStatus.DONE, now, evidence.via, evidence.answer)
    person.goals[key] = replace(goal, status=GoalStatus.DONE, completed_at=now, via=evidence.via)
    changes = _replan(conn, person, now, current)
    _event(conn, person, EventKind.COMPLETED, now, key, data)
    return _outcome(person, key, f"{key} marked done via {evidence.via}", changes)


def waive(
    conn: Connection, person: Person, key: str, now: dt.datetime, evidence: Evidence = ADMIN
) -> Outcome:
    """Excuse goal ``key``: its pending mail, congratulations included, is cancelled."""
    goal = person.goal(key)
    if goal.status is GoalStatus.WAIVED:
        return Outcome(person, False, f"{person.email}: {key} was already waived.", key)
    _settle_goal(conn, goal, GoalStatus.WAIVED, None, evidence.via)
    person.goals[key] = replace(goal, status=GoalStatus.WAIVED, completed_at=None, via=evidence.via)
    changes = _replan(conn, person, now)
    _event(conn, person, EventKind.WAIVED, now, key, evidence.data())
    return _outcome(person, key, f"{key} waived", changes)


def reopen(
    conn: Connection, person: Person, key: str, now: dt.datetime, evidence: Evidence = ADMIN
) -> Outcome:
    """Open goal ``key`` again: its mail still to come is planned again, its congratulations wait."""
    goal = person.goal(key)
    if goal.status is GoalStatus.OPEN:
        return Outcome(person, False, f"{person.email}: {key} is already open.", key)
    undone = _last_settled(conn, person, key)
    _settle_goal(conn, goal, GoalStatus.OPEN, None, None)
    person.goals[key] = replace(goal, status=GoalStatus.OPEN, completed_at=None, via=None)
    changes = _replan(conn, person, now)
    data = {**evidence.data(), "was": goal.status.value}
    if undone is not None:
        data["undid"] = undone.id
    _event(conn, person, EventKind.REOPENED, now, key, data)
    said = f"{key} reopened" + (f" (undid {_described(undone)})" if undone is not None else "")
    return _outcome(person, key, said, changes)


def _last_settled(conn: Connection, person: Person, key: str) -> Any:
    """Return the event that recorded goal ``key`` done or waived, the latest first."""
    events = store.event_table
    return conn.execute(
        select(events.c.id, events.c.kind, events.c.at, events.c.data)
        .where(
            events.c.participant_id == person.id,
            events.c.goal == key,
            events.c.kind.in_([EventKind.COMPLETED.value, EventKind.WAIVED.value]),
        )
        .order_by(events.c.at.desc(), events.c.id.desc())
        .limit(1)
    ).one_or_none()


def _described(event: Any) -> str:
    """Say which event a change undid: "the completion of 13 Jan 2027 15:42 UTC by reply from ..."."""
    data = event.data or {}
    what = "the completion" if event.kind == EventKind.COMPLETED else "the waiver"
    said = f"{what} of {event.at:%d %b %Y %H:%M} UTC (event {event.id}) via {data.get('via', 'unknown')}"
    if data.get("sender"):
        said += f" from {data['sender']}"
    if data.get("rule"):
        said += f", {data['rule']}"
    return said


# --- check-ins ----------------------------------------------------------------------


_ANSWER_OF = "SELECT answer, answered_at, via FROM check_ins WHERE participant_id = ? AND step = ?"
_ANSWER_NEW = (
    "INSERT INTO check_ins (cohort_id, participant_id, step, delivery_id, answer, answered_at, via) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ANSWER_AGAIN = (
    "UPDATE check_ins SET answer = ?, answered_at = ?, via = ?, delivery_id = ? WHERE participant_id = ? "
    "AND step = ?"
)


@dataclass(frozen=True)
class Given:
    """A participant's answer to one check-in, as it stands."""

    answer: str
    at: dt.datetime
    via: str


def sent_at(conn: Connection, delivery_id: int) -> dt.datetime | None:
    """Return when the email ``delivery_id`` went out, or None."""
    sql = Plain(conn)
    rows = sql.rows("SELECT sent_at FROM deliveries WHERE id = ?", (delivery_id,))
    return sql.read_instant(rows[0][0]) if rows else None


def given(conn: Connection, person: Person, step: str) -> Given | None:
    """Return the participant's answer to check-in ``step`` (an occurrence's key), or None."""
    sql = Plain(conn)
    rows = sql.rows(_ANSWER_OF, (person.id, step))
    if not rows:
        return None
    answer, at, via = rows[0]
    instant = sql.read_instant(at)
    assert instant is not None
    return Given(answer, instant, via)


def answer(
    conn: Connection,
    person: Person,
    step: str,
    choice: str,
    delivery_id: int,
    now: dt.datetime,
    evidence: Evidence,
) -> Outcome:
    """Record ``choice`` as the participant's answer to check-in ``step``; a later answer replaces an
    earlier one, and the event log keeps both. Answering plans and cancels nothing."""
    if person.status is ParticipantStatus.REMOVED:
        raise ActionError(f"{person.email} was removed from {person.cohort.slug!r}; nothing is recorded")
    before = given(conn, person, step)
    if before is not None and before.answer == choice:
        said = (
            f"{person.email}: {step} was already answered {choice} ({before.at:%Y-%m-%d}, via {before.via})."
        )
        return Outcome(person, False, said)
    sql = Plain(conn)
    if before is None:
        values = (person.cohort.id, person.id, step, delivery_id, choice, sql.instant(now), evidence.via)
        sql.run(_ANSWER_NEW, values)
    else:
        sql.run(_ANSWER_AGAIN, (choice, sql.instant(now), evidence.via, delivery_id, person.id, step))
    data = {**_attested(evidence, {}, None, now), "step": step, "answer": choice}
    if before is not None:
        data["replaced"] = before.answer
    store.append_events(
        conn,
        [
            StoredEvent(
                person.cohort.id, EventKind.ANSWERED, now, person.id, delivery_id=delivery_id, data=data
            )
        ],
    )
    replaced = f" (was {before.answer})" if before is not None else ""
    return Outcome(person, True, f"{person.email}: {step} answered {choice}{replaced} via {evidence.via}.")


def snooze(conn: Connection, person: Person, key: str, now: dt.datetime, evidence: Evidence) -> Outcome:
    """Push goal ``key``'s deadline back a week, once, and re-plan the mail still to come."""
    goal = person.goal(key)
    if goal.status is not GoalStatus.OPEN:
        said = f"{person.email}: {key} is {goal.status}; there is nothing to snooze."
        return Outcome(person, False, said, key)
    if goal.snoozed_at is not None:
        return Outcome(
            person, False, f"{person.email}: {key} was already snoozed once; it is due {goal.deadline}.", key
        )
    today = local_day(now, ZoneInfo(person.timezone))
    new = max(goal.deadline, today) + SNOOZE
    data = _attested(evidence, store.deliveries_of_one(conn, person.id), key, now)
    return _move_deadline(conn, person, key, new, now, data, EventKind.SNOOZED, snoozed=True)


def extend(
    conn: Connection, person: Person, key: str, to: dt.date, now: dt.datetime, evidence: Evidence = ADMIN
) -> Outcome:
    """Set goal ``key``'s deadline to ``to`` and re-plan the mail still to come."""
    goal = person.goal(key)
    if goal.deadline == to:
        return Outcome(person, False, f"{person.email}: {key} is already due {to}.", key)
    return _move_deadline(conn, person, key, to, now, evidence.data(), EventKind.EXTENDED, snoozed=False)


def _move_deadline(
    conn: Connection,
    person: Person,
    key: str,
    new: dt.date,
    now: dt.datetime,
    evidence: dict[str, Any],
    kind: EventKind,
    *,
    snoozed: bool,
) -> Outcome:
    goal = person.goals[key]
    deadlines = {k: g.deadline for k, g in person.goals.items()} | {key: new}
    _check_order(person, deadlines, key)
    dates = goal_dates(person.program, person.timing(deadlines))
    if new < dates[key].opens:
        raise ActionError(f"{key} opens on {dates[key].opens}; its deadline cannot come before that")
    values: dict[str, Any] = {
        "deadline": new,
        "deadline_at": dates[key].deadline_ends_at,
        "deadline_override": new,
    }
    if snoozed:
        values["snoozed_at"] = now
    _set_goal(conn, goal, **values)
    snoozed_at = now if snoozed else goal.snoozed_at
    person.goals[key] = replace(goal, deadline=new, deadline_override=new, snoozed_at=snoozed_at)
    conn.execute(
        update(participant_table)
        .where(participant_table.c.id == person.id)
        .values(plan_signature=person.timing().signature(person.program), updated_at=now)
    )
    changes = _replan(conn, person, now)
    data = {**evidence, "from": goal.deadline.isoformat(), "to": new.isoformat()}
    _event(conn, person, kind, now, key, data)
    verb = "snoozed" if snoozed else "deadline moved"
    return _outcome(person, key, f"{key} {verb} from {goal.deadline} to {new}", changes)


def _check_order(person: Person, deadlines: dict[str, dt.date], moved: str) -> None:
    keys = list(person.program.goal_keys)
    for before, after in zip(keys, keys[1:], strict=False):
        if deadlines[before] > deadlines[after]:
            other = after if moved == before else before
            raise ActionError(
                f"{before} would be due {deadlines[before]}, after {after} ({deadlines[after]}); goals "
                f"fall due in order, so move {other}'s deadline first"
            )


# --- participants -------------------------------------------------------------------


def pause(conn: Connection, person: Person, now: dt.datetime, evidence: Evidence = ADMIN) -> Outcome:
    """Hold a participant's email; what falls stale meanwhile is skipped when they are resumed."""
    if person.status is ParticipantStatus.PAUSED:
        return Outcome(person, False, f"{person.email} was already paused.")
    if person.status is not ParticipantStatus.ACTIVE:
        raise ActionError(f"{person.email} is {person.status}; pausing would change nothing")
    _set_status(conn, person, ParticipantStatus.PAUSED, now)
    _event(conn, person, EventKind.PAUSED, now, None, evidence.data())
    return Outcome(person, True, f"{person.email} paused: their email waits until `drip participant resume`.")


def resume(conn: Connection, person: Person, now: dt.datetime, evidence: Evidence = ADMIN) -> Outcome:
    """Let a paused participant's email go again, or take back a removal."""
    if person.status is ParticipantStatus.ACTIVE:
        return Outcome(person, False, f"{person.email} was already active.")
    if person.status in (ParticipantStatus.UNSUBSCRIBED, ParticipantStatus.BOUNCED):
        why = "unsubscribed themselves" if person.status is ParticipantStatus.UNSUBSCRIBED else "bounced"
        raise ActionError(
            f"{person.email} {why}; drip does not email them again. If the address is right again, enrol "
            "them in a new cohort"
        )
    was = person.status
    _set_status(conn, person, ParticipantStatus.ACTIVE, now)
    changes = _replan(conn, person, now) if was is ParticipantStatus.REMOVED else Changes()
    _event(conn, person, EventKind.RESUMED, now, None, {**evidence.data(), "was": was.value})
    return _outcome(person, None, f"resumed (was {was})", changes)


def remove(conn: Connection, person: Person, now: dt.datetime, evidence: Evidence = ADMIN) -> Outcome:
    """Stop all email to a participant and leave them out of the figures."""
    if person.status is ParticipantStatus.REMOVED:
        return Outcome(person, False, f"{person.email} was already removed.")
    return _silence(
        conn, person, ParticipantStatus.REMOVED, PARTICIPANT_REMOVED, now, evidence.data(), EventKind.REMOVED
    )


def unsubscribe(conn: Connection, person: Person, now: dt.datetime, evidence: Evidence) -> Outcome:
    """Honour an unsubscribe: no more email to this participant, ever."""
    if person.status is ParticipantStatus.UNSUBSCRIBED:
        return Outcome(person, False, f"{person.email} was already unsubscribed.")
    data = _attested(evidence, store.deliveries_of_one(conn, person.id), None, now)
    return _silence(
        conn, person, ParticipantStatus.UNSUBSCRIBED, "the participant unsubscribed", now, data,
        EventKind.UNSUBSCRIBED,
    )  # fmt: skip


def bounce(conn: Connection, person: Person, now: dt.datetime, evidence: Evidence, reason: str) -> Outcome:
    """Record that mail to the participant bounces for good: their pending mail is cancelled."""
    if person.status is ParticipantStatus.BOUNCED:
        return Outcome(person, False, f"{person.email} was already marked bounced.")
    data = replace(evidence, label=reason[:200]).data()
    return _silence(
        conn, person, ParticipantStatus.BOUNCED, "the address bounced", now, data, EventKind.BOUNCED
    )


def soft_bounce(
    conn: Connection,
    person: Person,
    now: dt.datetime,
    evidence: Evidence,
    reason: str,
    *,
    limit: int,
    within: dt.timedelta,
) -> Outcome:
    """Count a bounce that may pass (a full mailbox, a server down for days).

    The participant is bounced once ``limit`` soft bounces fall within ``within``, on more than one
    day: one bad hour at their server is not a dead address.
    """
    if person.status is ParticipantStatus.BOUNCED:
        return Outcome(person, False, f"{person.email} was already marked bounced.")
    _event(conn, person, EventKind.SOFT_BOUNCED, now, None, replace(evidence, label=reason[:200]).data())
    events = store.event_table
    recent = conn.execute(
        select(events.c.at).where(
            events.c.participant_id == person.id,
            events.c.kind == EventKind.SOFT_BOUNCED.value,
            events.c.at > now - within,
        )
    ).scalars().all()  # fmt: skip
    days = within.days
    if len(recent) >= limit and len({at.date() for at in recent}) > 1:
        said = f"{len(recent)} soft bounces in {days} days, the last: {reason}"
        return bounce(conn, person, now, evidence, said)
    said = f"{person.email}: soft bounce {len(recent)} of {limit} in {days} days ({reason[:120]})."
    return Outcome(person, True, said)


def bounce_delegate(
    conn: Connection, person: Person, address: str, now: dt.datetime, evidence: Evidence, reason: str
) -> Outcome:
    """Leave a delegate whose address bounces out of Cc; the participant keeps getting email."""
    key = email_key(address)
    if person.delegate_bounced == key:
        return Outcome(person, False, f"{person.email}: the delegate {address} was already left out.")
    conn.execute(
        update(participant_table)
        .where(participant_table.c.id == person.id)
        .values(delegate_bounced=key, updated_at=now)
    )
    person.delegate_bounced = key
    data = {**replace(evidence, label=reason[:200]).data(), "delegate": address}
    _event(conn, person, EventKind.DELEGATE_BOUNCED, now, None, data)
    return Outcome(person, True, f"{person.email}: the delegate {address} bounced and is no longer copied.")


# --- cohorts ------------------------------------------------------------------------


def set_cohort_status(
    conn: Connection, slug: str, status: CohortStatus, now: dt.datetime, evidence: Evidence = ADMIN
) -> tuple[bool, str]:
    """Pause or resume a whole cohort; say whether it changed, and what."""
    cohort = store.find_cohort(conn, slug)
    if cohort is None:
        known = ", ".join(store.cohort_slugs(conn)) or "none"
        raise ActionError(f"no cohort {slug!r}; known cohorts: {known}")
    if cohort.status is status:
        return False, f"Cohort {slug!r} was already {status}; nothing changed."
    conn.execute(update(cohort_table).where(cohort_table.c.id == cohort.id).values(status=status.value))
    kind = EventKind.PAUSED if status is CohortStatus.PAUSED else EventKind.RESUMED
    store.append_events(
        conn, [StoredEvent(cohort.id, kind, now, data={**evidence.data(), "was": cohort.status.value})]
    )
    if status is CohortStatus.PAUSED:
        return True, f"Cohort {slug!r} paused: its email waits until `drip cohort resume {slug}`."
    return True, f"Cohort {slug!r} resumed: email that fell stale meanwhile is skipped, the rest goes."


def _silence(
    conn: Connection,
    person: Person,
    status: ParticipantStatus,
    reason: str,
    now: dt.datetime,
    evidence: dict[str, Any],
    kind: EventKind,
) -> Outcome:
    _set_status(conn, person, status, now)
    cancelled = store.cancel_pending(conn, person.id, reason, now)
    _event(conn, person, kind, now, None, {**evidence, "cancelled": cancelled})
    said = f"{person.email} {status}; {_count(cancelled, 'pending email')} cancelled."
    return Outcome(person, True, said, cancelled=cancelled)


# --- heuristics -------------------------------------------------------------------


def scanner_label(user_agent: str | None, seconds_since_sent: float | None) -> str | None:
    """Label a click that looks like a mail scanner's. A label is kept as evidence; it decides nothing."""
    if user_agent is not None and (not user_agent.strip() or _SCANNER_AGENTS.search(user_agent)):
        return "possible link scanner (user agent)"
    if seconds_since_sent is not None and seconds_since_sent < _TOO_SOON.total_seconds():
        return "possible link scanner (seconds after sending)"
    return None


# --- shared -------------------------------------------------------------------------


def _attested(
    evidence: Evidence, deliveries: dict[str, StoredDelivery], key: str | None, now: dt.datetime
) -> dict[str, Any]:
    """The evidence of a participant's own action, with seconds since the email and any scanner label.

    Only a click can be a scanner's: a reply or a comms person's command right after a send is not.
    """
    seconds = _seconds_since_sent(deliveries.values(), key, now)
    guess = scanner_label(evidence.user_agent, seconds) if evidence.via == "link" else None
    label = evidence.label or guess
    return {**replace(evidence, label=label).data(), "seconds_since_sent": seconds}


def _seconds_since_sent(
    deliveries: Iterable[StoredDelivery], key: str | None, now: dt.datetime
) -> float | None:
    """Seconds since the last email about goal ``key`` (else any email) went to the participant."""
    sent = [(row.goal, row.sent_at) for row in deliveries if row.sent_at is not None]
    about = [at for goal, at in sent if goal == key] or [at for _, at in sent]
    return round((now - max(about)).total_seconds(), 1) if about else None


def _replan(
    conn: Connection, person: Person, now: dt.datetime, current: dict[str, StoredDelivery] | None = None
) -> Changes:
    if person.status.silenced:
        return Changes()
    if current is None:
        current = store.deliveries_of_one(conn, person.id)
    goals = {key: (goal.status, goal.completed_at) for key, goal in person.goals.items()}
    changes = replan(person.program, person.timing(), current, goals, now)
    store.update_deliveries(conn, changes.rows(now))
    store.insert_deliveries(
        conn, [delivery_row(person.cohort.id, person.id, planned, now) for planned in changes.new]
    )
    return changes


_SETTLE_GOAL = "UPDATE goals SET status = ?, completed_at = ?, via = ?, answer = ? WHERE id = ?"


def _settle_goal(
    conn: Connection, goal: StoredGoal, status: GoalStatus, at: dt.datetime | None, via: str | None,
    answer: str | None = None,
) -> None:  # fmt: skip
    """Done, waived or reopened: the change a click makes. Only a goal done keeps an answer."""
    sql = Plain(conn)
    sql.run(_SETTLE_GOAL, (status.value, sql.instant(at), via, answer, goal.id))


def _set_goal(conn: Connection, goal: StoredGoal, **values: Any) -> None:
    conn.execute(update(goal_table).where(goal_table.c.id == goal.id).values(**values))


def _set_status(conn: Connection, person: Person, status: ParticipantStatus, now: dt.datetime) -> None:
    store.set_participant_status(conn, person.id, status, now)
    person.status = status


def _event(
    conn: Connection,
    person: Person,
    kind: EventKind,
    now: dt.datetime,
    goal: str | None,
    data: dict[str, Any],
) -> None:
    store.append_events(conn, [StoredEvent(person.cohort.id, kind, now, person.id, goal=goal, data=data)])


def _outcome(person: Person, key: str | None, did: str, changes: Changes) -> Outcome:
    cancelled = sum(1 for _, _, status, _ in changes.moves if status is DeliveryStatus.CANCELLED)
    planned = tuple(
        (row.step, due_at)
        for row, due_at, status, _ in changes.moves
        if status is DeliveryStatus.SCHEDULED and due_at is not None and row.status is DeliveryStatus.WAITING
    )
    parts = [f"{person.email}: {did}"]
    if cancelled:
        parts.append(f"{_count(cancelled, 'pending email')} cancelled")
    moved = len(changes.moves) - cancelled - len(planned)
    if moved > 0:
        parts.append(f"{_count(moved, 'email')} re-planned")
    zone = ZoneInfo(person.timezone)
    for step, due_at in planned:
        parts.append(f"{step} planned for {due_at.astimezone(zone):%a %d %b %Y %H:%M} {person.timezone}")
    return Outcome(person, True, "; ".join(parts) + ".", key, cancelled, planned)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
