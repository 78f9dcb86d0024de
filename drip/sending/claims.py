"""The deliveries table as a queue: claiming due email, and every state change of sending.

A delivery moves ``scheduled -> claimed -> sending -> sent`` (or ``failed``,
``skipped``, ``cancelled``, or back to ``scheduled`` for a retry). Which
deliveries are due, and when a claim may be taken over, is decided here:

- due: ``scheduled``, ``due_at <= now`` (the virtual clock, if any), not
  waiting for a retry, participant and cohort both active;
- taken over: ``claimed`` or ``sending`` whose lease ended
  (``drip.storage.leases``), or whose owner is a process of this machine
  that no longer exists.

A ``sending`` delivery keeps its Message-ID when taken over, so the one
message a crash may leave in doubt goes again under the same id.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, case, or_, select, update

from drip.core.states import CohortStatus, DeliveryStatus, EventKind, ParticipantStatus
from drip.storage import store
from drip.storage.leases import Lease
from drip.storage.records import StoredCohort, StoredEvent, StoredGoal, StoredParticipant
from drip.storage.store import (
    cohort_table,
    delivery_table,
    goal_table,
    participant_table,
)
from drip.storage.tables import sqlite_text

_PENDING_CLAIM = (DeliveryStatus.CLAIMED.value, DeliveryStatus.SENDING.value)


@dataclass(frozen=True)
class Claimed:
    id: int
    cohort_id: int
    participant_id: int
    step: str
    goal: str | None
    due_at: dt.datetime
    attempts: int
    message_id: str | None
    #: addresses the relay already accepted on an earlier attempt
    delivered_to: str | None = None


def worker_id() -> str:
    """Return an id for this process: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_workers(conn: Connection) -> int:
    """Put back the claims of processes of this machine that died; return how many."""
    host = socket.gethostname()
    owners = conn.execute(
        select(delivery_table.c.lease_owner)
        .where(delivery_table.c.status.in_(_PENDING_CLAIM), delivery_table.c.lease_owner.like(f"{host}:%"))
        .distinct()
    ).scalars()
    dead = [owner for owner in owners if owner and not _alive(int(owner.split(":")[1]))]
    if not dead:
        return 0
    result = conn.execute(
        update(delivery_table)
        .where(delivery_table.c.lease_owner.in_(dead), delivery_table.c.status.in_(_PENDING_CLAIM))
        .values(status=DeliveryStatus.SCHEDULED.value, lease_owner=None, lease_expires_at=None)
    )
    return result.rowcount


def claim_due(
    conn: Connection,
    now: dt.datetime,
    real_now: dt.datetime,
    owner: str,
    limit: int,
    lease: Lease,
    skip_cohorts: Iterable[int] = (),
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for ``owner`` until the lease ends: first those whose
    claim was abandoned (their worker died or stalled), then the scheduled ones, oldest first.

    Two statements rather than one with OR: each then walks the (status, due_at) index in order and
    stops at ``limit``, where the OR made the database gather and sort every due row for each
    batch, a cost that grew with the size of the queue.
    """
    d = delivery_table
    abandoned = and_(
        d.c.status.in_(_PENDING_CLAIM), Lease.ended_in_sql(d.c.lease_expires_at, real_now), d.c.due_at <= now
    )
    due = and_(
        d.c.status == DeliveryStatus.SCHEDULED.value,
        d.c.due_at <= now,
        or_(d.c.retry_at.is_(None), d.c.retry_at <= now),
    )
    skip = list(skip_cohorts)
    claimed = _claim(conn, abandoned, real_now, owner, limit, lease, skip)
    if len(claimed) < limit:
        claimed += _claim(conn, due, real_now, owner, limit - len(claimed), lease, skip)
    return sorted(claimed, key=lambda row: (row.due_at, row.id))


def _claim(
    conn: Connection,
    which: Any,
    real_now: dt.datetime,
    owner: str,
    limit: int,
    lease: Lease,
    skip_cohorts: list[int],
) -> list[Claimed]:
    d, p, c = delivery_table, participant_table, cohort_table
    candidates = (
        select(d.c.id)
        .join(p, p.c.id == d.c.participant_id)
        .join(c, c.c.id == d.c.cohort_id)
        .where(
            which,
            p.c.status == ParticipantStatus.ACTIVE.value,
            c.c.status == CohortStatus.ACTIVE.value,
            d.c.cohort_id.not_in(skip_cohorts),
        )
        .order_by(d.c.due_at, d.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=d)
    claim = (
        update(d)
        .where(d.c.id.in_(candidates.scalar_subquery()))
        .values(status=DeliveryStatus.CLAIMED.value, lease_owner=owner, lease_expires_at=lease.ends(real_now))
        .returning(
            d.c.id,
            d.c.cohort_id,
            d.c.participant_id,
            d.c.step,
            d.c.goal,
            d.c.due_at,
            d.c.attempts,
            d.c.message_id,
            d.c.delivered_to,
        )
    )
    return [Claimed(*row) for row in conn.execute(claim).all()]


def renew(conn: Connection, owner: str, real_now: dt.datetime, lease: Lease) -> int:
    """Extend every claim ``owner`` still holds: a worker alive keeps its deliveries."""
    d = delivery_table
    result = conn.execute(
        update(d)
        .where(d.c.lease_owner == owner, d.c.status.in_(_PENDING_CLAIM))
        .values(lease_expires_at=lease.ends(real_now))
    )
    return result.rowcount


def mark_sending(conn: Connection, rows: Sequence[tuple[int, str]], now: dt.datetime, owner: str) -> None:
    """Fix each delivery's Message-ID and count the attempt, before anything is handed to a server."""
    if not rows:
        return
    d = delivery_table
    conn.execute(
        update(d)
        .where(d.c.id == bindparam("did"), d.c.lease_owner == owner)
        .values(
            status=DeliveryStatus.SENDING.value,
            message_id=bindparam("mid"),
            attempts=d.c.attempts + 1,
            updated_at=now,
        ),
        [{"did": did, "mid": mid} for did, mid in rows],
    )


def mark_sent(conn: Connection, row: Claimed, sent_at: dt.datetime, note: str | None = None) -> None:
    """Mark a delivery sent; its ``sent`` event is appended by a trigger (migration 0004)."""
    d = delivery_table
    conn.execute(
        update(d)
        .where(d.c.id == row.id)
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=sent_at,
            last_error=note,
            lease_owner=None,
            lease_expires_at=None,
            retry_at=None,
            updated_at=sent_at,
        )
    )


class SentRecorder:
    """Records ``sent`` right after each 250, as cheaply as the database allows.

    This is the one write per email on the hot path, made by each sending
    thread on a database connection of its own: a single UPDATE, as plain SQL
    on the driver's connection, whose ``sent`` event a trigger appends in the
    same statement (migration 0004).
    """

    def __init__(self, engine: Engine, owner: str) -> None:
        self.owner = owner
        self.raw = engine.raw_connection()
        self.sqlite = engine.dialect.name == "sqlite"
        if not self.sqlite:
            # One round trip per email: the UPDATE commits itself, as it does on SQLite. The
            # connection is this recorder's alone, and closed, not pooled, when it is done.
            driver: Any = self.raw.driver_connection
            driver.autocommit = True
            self.raw.detach()
        mark = "?" if self.sqlite else "%s"
        self.update = (
            f"UPDATE deliveries SET status = '{DeliveryStatus.SENT.value}', "
            f"sent_at = {mark}, last_error = {mark}, "
            "lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL, "
            f"updated_at = {mark} WHERE id = {mark} AND lease_owner = {mark}"
        )

    def record(self, row: Claimed, at: dt.datetime, note: str | None = None) -> bool:
        """Mark ``row`` sent; False if this worker no longer held it (its lease was taken over)."""
        stamp: Any = sqlite_text(at) if self.sqlite else at
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.update, (stamp, note, stamp, row.id, self.owner))  # its own transaction
            return bool(cursor.rowcount == 1)
        finally:
            cursor.close()

    def close(self) -> None:
        self.raw.close()


def finish(
    conn: Connection,
    row: Claimed,
    status: DeliveryStatus,
    reason: str,
    now: dt.datetime,
    kind: EventKind,
    owner: str,
) -> None:
    """End a delivery as failed, skipped or cancelled, with the reason kept."""
    d = delivery_table
    conn.execute(
        update(d)
        .where(d.c.id == row.id, d.c.lease_owner == owner)
        .values(
            status=status.value, last_error=reason, lease_owner=None, lease_expires_at=None, updated_at=now
        )
    )
    _event(conn, row, kind, now, {"reason": reason})


def retry_later(
    conn: Connection,
    row: Claimed,
    reason: str,
    at: dt.datetime,
    now: dt.datetime,
    owner: str,
    delivered_to: Sequence[str] = (),
) -> None:
    """Put a delivery back in the queue after a passing failure; it keeps its Message-ID.

    ``delivered_to``: addresses the relay accepted this time, which the retry leaves out.
    """
    d = delivery_table
    done = sorted({*(row.delivered_to or "").split(","), *delivered_to} - {""})
    conn.execute(
        update(d)
        .where(d.c.id == row.id, d.c.lease_owner == owner)
        .values(
            status=DeliveryStatus.SCHEDULED.value,
            delivered_to=",".join(done) or None,
            retry_at=at,
            last_error=reason,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    _event(conn, row, EventKind.DEFERRED, now, {"reason": reason, "retry_at": at.isoformat()})


def release(conn: Connection, ids: Iterable[int], owner: str) -> int:
    """Give back claims not yet sent (shutting down, or the relay refused us); no attempt is counted."""
    ids = list(ids)
    if not ids:
        return 0
    d = delivery_table
    # An attempt was counted when it was marked sending; it never happened.
    attempts = case((d.c.status == DeliveryStatus.SENDING.value, d.c.attempts - 1), else_=d.c.attempts)
    result = conn.execute(
        update(d)
        .where(d.c.id.in_(ids), d.c.lease_owner == owner, d.c.status.in_(_PENDING_CLAIM))
        .values(
            status=DeliveryStatus.SCHEDULED.value, lease_owner=None, lease_expires_at=None, attempts=attempts
        )
    )
    return result.rowcount


def _event(conn: Connection, row: Claimed, kind: EventKind, at: dt.datetime, data: dict[str, Any]) -> None:
    store.append_events(
        conn, [StoredEvent(row.cohort_id, kind, at, row.participant_id, row.id, row.goal, data)]
    )


# --- what building the messages needs ------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Everything needed to build a batch's messages, read in three queries."""

    cohorts: dict[int, StoredCohort]
    participants: dict[int, StoredParticipant]
    #: participant id -> their goals
    goals: dict[int, list[StoredGoal]]


def load_batch(conn: Connection, rows: Sequence[Claimed]) -> Batch:
    cohort_ids = sorted({row.cohort_id for row in rows})
    participant_ids = sorted({row.participant_id for row in rows})
    cohorts = {
        r.id: StoredCohort.from_row(r)
        for r in conn.execute(select(cohort_table).where(cohort_table.c.id.in_(cohort_ids)))
    }
    # Only the columns the records hold: decoding the rest, for every email, was most of the cost.
    p, g = participant_table, goal_table
    people = {
        r.id: StoredParticipant.from_row(r)
        for r in conn.execute(
            select(*(p.c[name] for name in StoredParticipant.COLUMNS)).where(p.c.id.in_(participant_ids))
        )
    }
    goals: dict[int, list[StoredGoal]] = {}
    goal_columns = (g.c.participant_id, *(g.c[name] for name in StoredGoal.COLUMNS))
    for goal in conn.execute(select(*goal_columns).where(g.c.participant_id.in_(participant_ids))):
        goals.setdefault(goal.participant_id, []).append(StoredGoal.from_row(goal))
    return Batch(cohorts, people, goals)
