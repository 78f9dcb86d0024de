"""The webhook outbox: events owners' tools asked for, queued with the change, leased to post.

``queue`` runs inside ``store.append_events``, so an event reaches the outbox in the same
transaction as the change it reports, or not at all. ``lease`` hands a worker the rows due,
each to one worker at a time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer);
``settle`` records what the receiver said. Posting them is ``drip.sending.webhooks``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Table, and_, func, or_, select, update

from drip.core.program import program_at
from drip.core.states import EventKind
from drip.storage.records import CohortSettings, OutboxRow, StoredEvent, Webhook
from drip.storage.tables import Cohort, Outbox, Participant

outbox_table = cast(Table, Outbox.__table__)
_cohorts = cast(Table, Cohort.__table__)
_people = cast(Table, Participant.__table__)

#: what each webhook event is made from
KINDS = {
    EventKind.COMPLETED: "goal.completed",
    EventKind.OVERDUE: "goal.overdue",
    EventKind.BOUNCED: "participant.bounced",
    EventKind.UNSUBSCRIBED: "participant.unsubscribed",
    EventKind.REPLIED: "reply.needs_person",
    EventKind.COHORT_FINISHED: "cohort.finished",
    EventKind.ANSWERED: "check_in.answered",
}
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _type(event: StoredEvent) -> str | None:
    kind = KINDS.get(event.kind)
    if kind == "reply.needs_person" and event.data.get("auto"):
        return None  # an out-of-office note is kept, and needs nobody
    return kind


def queue(conn: Connection, events: Sequence[StoredEvent], now: dt.datetime | None = None) -> int:
    """Write an outbox row for each event and endpoint that asked for it; return how many."""
    wanted = [(event, kind) for event in events if (kind := _type(event)) is not None]
    if not wanted:
        return 0
    cohort_ids = {event.cohort_id for event, _ in wanted}
    cohorts = {
        row.id: (row, CohortSettings.from_json(row.settings or {}))
        for row in conn.execute(
            select(
                _cohorts.c.id, _cohorts.c.slug, _cohorts.c.name, _cohorts.c.settings, _cohorts.c.program_path
            ).where(_cohorts.c.id.in_(cohort_ids))
        )
    }  # fmt: skip
    hooked = [
        (event, kind)
        for event, kind in wanted
        if event.cohort_id in cohorts and _endpoints(cohorts[event.cohort_id][1], kind)
    ]
    if not hooked:
        return 0
    people_ids = {event.participant_id for event, _ in hooked if event.participant_id is not None}
    people = {
        row.id: row
        for row in conn.execute(
            select(_people.c.id, _people.c.email, _people.c.name).where(_people.c.id.in_(people_ids))
        )
    } if people_ids else {}  # fmt: skip
    rows = []
    for event, kind in hooked:
        cohort, settings = cohorts[event.cohort_id]
        payload = _payload(event, kind, cohort, people.get(event.participant_id))
        for hook in _endpoints(settings, kind):
            rows.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "cohort_id": event.cohort_id,
                    "participant_id": event.participant_id,
                    "type": kind,
                    "url": hook.url,
                    "format": hook.format,
                    "secret": hook.secret,
                    "payload": payload,
                    "occurred_at": event.at,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": event.at,
                    "created_at": now or event.at,
                }
            )
    conn.execute(outbox_table.insert(), rows)
    return len(rows)


def _endpoints(settings: CohortSettings, kind: str) -> list[Webhook]:
    return [hook for hook in settings.webhooks if kind in hook.events]


def _payload(event: StoredEvent, kind: str, cohort: Any, person: Any) -> dict[str, Any]:
    data = dict(event.data)
    payload: dict[str, Any] = {"cohort": {"slug": cohort.slug, "name": cohort.name}}
    if person is not None:
        payload["participant"] = {"email": person.email, "name": person.name}
    if event.goal:
        payload["goal"] = {"key": event.goal, "title": _title(cohort.program_path, event.goal)}
    if kind == "goal.completed":
        payload["via"] = data.get("via")
        if data.get("answer"):
            payload["answer"] = data["answer"]  # plain text: a receiver shows it escaped, as drip does
    elif kind == "goal.overdue":
        payload["deadline"] = data.get("deadline")
    elif kind == "participant.bounced":
        payload["reason"] = str(data.get("label") or data.get("reason") or "")[:300]
    elif kind == "reply.needs_person":
        payload |= {"why": data.get("why"), "subject": data.get("subject"), "step": data.get("step")}
    elif kind == "cohort.finished":
        payload |= {key: data.get(key) for key in ("participants", "completed_all", "goals")}
    elif kind == "check_in.answered":
        payload |= {"step": data.get("step"), "answer": data.get("answer"), "via": data.get("via")}
        payload["label"] = _label(cohort.program_path, str(data.get("step")), str(data.get("answer")))
        if data.get("replaced"):
            payload["replaced"] = data["replaced"]
            payload["replaced_label"] = _label(
                cohort.program_path, str(data.get("step")), str(data["replaced"])
            )
    return payload


def _label(program_path: str, step: str, answer: str) -> str:
    """The words readers saw for a check-in's answer, or its key when the program no longer has it."""
    try:
        found = program_at(program_path).occurrence_of(step)
    except Exception:  # noqa: BLE001 - a moved program: the key still says which answer
        return answer
    choices = found[0].choices if found is not None else None
    return choices.label(answer) if choices is not None and answer in choices.keys else answer


def _title(program_path: str, key: str) -> str:
    try:
        return program_at(program_path).goal(key).title
    except Exception:  # noqa: BLE001 - a moved program: the key still says which goal
        return key


def _due(now: dt.datetime) -> Any:
    return and_(
        outbox_table.c.status == PENDING,
        outbox_table.c.next_attempt_at <= now,
        or_(outbox_table.c.lease_expires_at.is_(None), outbox_table.c.lease_expires_at <= now),
    )


def any_due(conn: Connection, now: dt.datetime) -> bool:
    """Say whether anything is due at ``now``: a read, so that an idle round takes no write lock."""
    return conn.execute(select(outbox_table.c.id).where(_due(now)).limit(1)).first() is not None


def lease(
    conn: Connection,
    now: dt.datetime,
    owner: str,
    hold: dt.timedelta,
    limit: int,
    skip: Iterable[str] = (),
) -> list[OutboxRow]:
    """Take up to ``limit`` rows due at ``now`` for ``owner``, each leased for ``hold``, oldest first;
    none for the URLs in ``skip`` (receivers that did not answer this round)."""
    due = select(outbox_table.c.id).where(_due(now)).order_by(outbox_table.c.id).limit(limit)
    skipped = list(skip)
    if skipped:
        due = due.where(outbox_table.c.url.not_in(skipped))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(conn.execute(due).scalars())
    if not ids:
        return []
    conn.execute(
        update(outbox_table)
        .where(outbox_table.c.id.in_(ids))
        .values(lease_owner=owner, lease_expires_at=now + hold)
    )
    rows = conn.execute(select(outbox_table).where(outbox_table.c.id.in_(ids)).order_by(outbox_table.c.id))
    return [OutboxRow.from_row(row) for row in rows]


def settle(
    conn: Connection,
    outcomes: Iterable[tuple[OutboxRow, str | None, dt.datetime | None]],
    owner: str,
    now: dt.datetime,
) -> None:
    """Record each row's outcome: delivered (no reason), to retry at a time, or failed for good.

    Only the lease's owner settles a row: one whose lease ran out and went to another worker is
    that worker's now.
    """
    for row, reason, retry in outcomes:
        mine = and_(outbox_table.c.id == row.id, outbox_table.c.lease_owner == owner)
        if reason is None:
            values: dict[str, Any] = {"status": DELIVERED, "delivered_at": now, "last_error": None}
        else:
            values = {
                "status": PENDING if retry else FAILED,
                "last_error": reason,
                "next_attempt_at": retry or now,
            }
        conn.execute(
            update(outbox_table)
            .where(mine)
            .values(attempts=outbox_table.c.attempts + 1, lease_owner=None, lease_expires_at=None, **values)
        )


def release(conn: Connection, row: OutboxRow, owner: str) -> None:
    """Give a leased row back untried: its receiver did not answer another row this round."""
    conn.execute(
        update(outbox_table)
        .where(outbox_table.c.id == row.id, outbox_table.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


def failing(conn: Connection, cohort_id: int) -> list[dict[str, Any]]:
    """Return, per endpoint, the rows given up on and those being retried, with the last reason."""
    rows = conn.execute(
        select(
            outbox_table.c.url,
            outbox_table.c.status,
            func.count().label("count"),
            func.max(outbox_table.c.id).label("last"),
        )
        .where(
            outbox_table.c.cohort_id == cohort_id,
            or_(
                outbox_table.c.status == FAILED,
                and_(outbox_table.c.status == PENDING, outbox_table.c.attempts > 0),
            ),
        )
        .group_by(outbox_table.c.url, outbox_table.c.status)
    ).all()
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = found.setdefault(row.url, {"url": shown_url(row.url), "failed": 0, "retrying": 0, "last": 0})
        entry["failed" if row.status == FAILED else "retrying"] += row.count
        entry["last"] = max(entry["last"], row.last)
    if not found:
        return []
    reasons = dict(
        conn.execute(
            select(outbox_table.c.id, outbox_table.c.last_error).where(
                outbox_table.c.id.in_([entry["last"] for entry in found.values()])
            )
        ).all()
    )
    return [
        {"url": entry["url"], "failed": entry["failed"], "retrying": entry["retrying"],
         "reason": reasons.get(entry["last"]) or ""}
        for entry in found.values()
    ]  # fmt: skip


def shown_url(url: str) -> str:
    """Return the URL as owners and logs may see it: scheme, host and the path's start, without
    what Slack and Teams put in the rest of the path (their secret), a query or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    first = parts.path.strip("/").split("/", 1)[0]
    more = "/…" if parts.path.strip("/").count("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}/{first}{more}"
