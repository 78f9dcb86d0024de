"""The replies drip read, for the inbox: who wrote, when, and what drip did with each.

Each message read from the reply mailbox is a row of ``received`` (its outcome); the event it
left (a goal completed, a reply kept for a person, a bounce) holds its sender, subject and words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, make_url, select

from drip.core.states import EventKind
from drip.storage.store import cohort_table, event_table, participant_table, received_table
from drip.web.context import Site

#: the most replies listed
LIMIT = 300
_KINDS = [
    EventKind.COMPLETED.value,
    EventKind.ANSWERED.value,
    EventKind.REPLIED.value,
    EventKind.UNSUBSCRIBED.value,
    EventKind.BOUNCED.value,
    EventKind.SOFT_BOUNCED.value,
    EventKind.DELEGATE_BOUNCED.value,
]


@dataclass(frozen=True)
class Reply:
    at: dt.datetime
    outcome: str
    #: who wrote: the sender's address as read, else the participant
    sender: str
    participant: str
    cohort: str
    goal: str
    subject: str
    excerpt: str
    #: what drip did, in words
    did: str
    #: why: the rule that decided, or why it was left for a person
    why: str
    message_id: str
    forward_to: str


@contextmanager
def reading(here: Site) -> Iterator[Connection | None]:
    """Yield a reading connection, or None when this machine has no database yet (none is made)."""
    url = make_url(here.settings.database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or not Path(database).is_file():
            yield None
            return
    with here.database.store().reading() as conn:
        yield conn


def replies(conn: Connection, limit: int = LIMIT) -> list[Reply]:
    """Return the messages drip read from the reply mailbox, newest first."""
    people, cohorts = participant_table, cohort_table
    rows = conn.execute(
        select(
            received_table,
            people.c.name.label("person_name"),
            people.c.email.label("person_email"),
            cohorts.c.slug.label("cohort_slug"),
        )
        .select_from(
            received_table.outerjoin(people, people.c.id == received_table.c.participant_id).outerjoin(
                cohorts, cohorts.c.id == received_table.c.cohort_id
            )
        )
        .order_by(received_table.c.received_at.desc(), received_table.c.id.desc())
        .limit(limit)
    ).all()
    events = _events(conn, {row.participant_id for row in rows if row.participant_id is not None})
    return [_reply(row, events.get((row.participant_id, row.message_id[:300]), {})) for row in rows]


def _events(conn: Connection, people: set[int]) -> dict[tuple[int, str], dict[str, Any]]:
    """Return the events replies left, by participant and the reply's Message-ID."""
    if not people:
        return {}
    found: dict[tuple[int, str], dict[str, Any]] = {}
    rows = conn.execute(
        select(event_table.c.participant_id, event_table.c.kind, event_table.c.goal, event_table.c.data)
        .where(event_table.c.participant_id.in_(sorted(people)), event_table.c.kind.in_(_KINDS))
        .order_by(event_table.c.id)
    )
    for row in rows:
        data = dict(row.data or {})
        if data.get("message_id"):
            data.setdefault("goal", row.goal)
            found.setdefault((row.participant_id, data["message_id"]), data)
    return found


def _reply(row: Any, data: dict[str, Any]) -> Reply:
    person = f"{row.person_name} <{row.person_email}>" if row.person_email else ""
    goal = str(data.get("goal") or "")
    return Reply(
        at=row.received_at,
        outcome=row.outcome,
        sender=str(data.get("from") or data.get("sender") or row.person_email or ""),
        participant=person,
        cohort=row.cohort_slug or "",
        goal=goal,
        subject=str(data.get("subject") or ""),
        excerpt=str(data.get("excerpt") or ""),
        did=_did(row.outcome, goal, row.forward_to, data),
        why=str(data.get("why") or data.get("rule") or data.get("label") or ""),
        message_id=row.message_id,
        forward_to=row.forward_to or "",
    )


def _did(outcome: str, goal: str, forward_to: str | None, data: dict[str, Any]) -> str:
    named = f" {goal}" if goal else ""
    if outcome == "replied":
        return f"forwarded to {forward_to}" if forward_to else "kept for a person (left in the mailbox)"
    if outcome == "auto_reply":
        reason = data.get("auto")
        return "ignored an automatic reply" + (f" ({reason})" if reason else "")
    said = {
        "completed": f"completed goal{named}",
        "answered": f"answered {data.get('step', 'a check-in')}: {data.get('answer', '')}",
        "already": f"nothing: goal{named} was already done",
        "unsubscribed": "unsubscribed them",
        "bounced": "marked the address bounced",
        "soft_bounce": "counted a soft bounce",
        "delegate_bounced": "took the delegate out of Cc",
        "delayed": "nothing: a delay notice",
        "unmatched": "nothing: not about drip's email",
        "unreadable": "set it aside: unreadable",
        "too_large": "set it aside: too large to read",
    }
    return said.get(outcome, outcome.replace("_", " "))
