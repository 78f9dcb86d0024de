"""The deliveries table as a queue: claiming due email, and every state change of sending.

A delivery moves ``scheduled -> sending -> sent`` (or ``failed``, ``skipped``,
``cancelled``, or back to ``scheduled`` for a retry). Which deliveries are
due, and when a claim may be taken over, is decided here:

- due: ``scheduled``, ``due_at <= now`` (the virtual clock, if any), not
  waiting for a retry, participant and cohort both active;
- taken over: ``sending`` (or ``claimed``, the state earlier versions of drip wrote first) whose
  lease ended (``drip.storage.leases``), or whose owner is a process of this
  machine that no longer exists.

A claim is the attempt: it counts it, and fixes the signing key the
delivery's Message-ID is made with (``message_key``). The Message-ID itself is
written with the outcome (``sent``, a retry, a failure), so each email costs
two writes: its claim, shared with its batch, and its outcome. A delivery
taken over goes again under the Message-ID it had or would have had: the one
message a crash may leave in doubt keeps its id. Claims given back unsent
(shutting down, the relay refused drip) do not count as attempts.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, or_, select, update

from drip.core.states import CohortStatus, DeliveryStatus, EventKind, ParticipantStatus
from drip.storage import store
from drip.storage.leases import Lease
from drip.storage.plainsql import Plain
from drip.storage.records import Batch, Claimed, StoredCohort, StoredEvent, StoredGoal, StoredParticipant
from drip.storage.store import (
    cohort_table,
    delivery_table,
    participant_table,
)
from drip.storage.tables import sqlite_text

_PENDING_CLAIM = (DeliveryStatus.CLAIMED.value, DeliveryStatus.SENDING.value)


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


def end_dead_leases(conn: Connection, real_now: dt.datetime) -> int:
    """End the leases of processes of this machine that died, so that their claims are taken over
    first, as abandoned (see :func:`claim_due`); return how many."""
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
        # ended, even to a clock that stands still (a virtual one, in tests)
        .values(lease_expires_at=real_now - dt.timedelta(seconds=1))
    )
    return result.rowcount


def claim_due(
    conn: Connection,
    now: dt.datetime,
    real_now: dt.datetime,
    owner: str,
    limit: int,
    lease: Lease,
    message_key: str,
    skip_cohorts: Iterable[int] = (),
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for ``owner`` until the lease ends: first those whose
    claim was abandoned (their worker died or stalled), then the scheduled ones, oldest first.

    Each goes straight to ``sending`` with its attempt counted; ``message_key`` (the id of the key
    that signs now) becomes the key of its Message-ID unless it already has one.

    Two statements rather than one with OR: each then walks the (status, due_at, id) index in
    order and stops at ``limit``, where the OR made the database gather and sort every due row
    for each batch, a cost that grew with the size of the queue.
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
    # Cohorts not active are few: leaving them out by id, rather than joining cohorts, keeps the
    # planner's estimate of what is due from depending on that small table's statistics.
    c = cohort_table
    resting = conn.execute(select(c.c.id).where(c.c.status != CohortStatus.ACTIVE.value)).scalars()
    skip = sorted({*skip_cohorts, *resting})
    # Taken over, an attempt already counted goes on (only a "claimed" one had not counted yet).
    go_on = case((d.c.status == DeliveryStatus.CLAIMED.value, d.c.attempts + 1), else_=d.c.attempts)
    claimed = _claim(conn, abandoned, go_on, real_now, owner, limit, lease, message_key, skip)
    if len(claimed) < limit:
        more = limit - len(claimed)
        claimed += _claim(conn, due, d.c.attempts + 1, real_now, owner, more, lease, message_key, skip)
    return sorted(claimed, key=lambda row: (row.due_at, row.id))


def _claim(
    conn: Connection,
    which: Any,
    attempts: Any,
    real_now: dt.datetime,
    owner: str,
    limit: int,
    lease: Lease,
    message_key: str,
    skip_cohorts: list[int],
) -> list[Claimed]:
    d, p = delivery_table, participant_table
    candidates = (
        select(d.c.id)
        .join(p, p.c.id == d.c.participant_id)
        .where(which, p.c.status == ParticipantStatus.ACTIVE.value, d.c.cohort_id.not_in(skip_cohorts))
        .order_by(d.c.due_at, d.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=d)
    claim = (
        update(d)
        .where(d.c.id.in_(candidates.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING.value,
            lease_owner=owner,
            lease_expires_at=lease.ends(real_now),
            attempts=attempts,
            message_key=func.coalesce(d.c.message_key, message_key),
            updated_at=real_now,
        )
        .returning(
            d.c.id,
            d.c.cohort_id,
            d.c.participant_id,
            d.c.step,
            d.c.goal,
            d.c.due_at,
            d.c.attempts,
            d.c.message_id,
            d.c.message_key,
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


class SentRecorder:
    """Records ``sent`` right after each 250, as cheaply as the database allows.

    This is the one write of its own each email makes, made by each sending
    thread on a database connection of its own: a single UPDATE, as plain SQL
    on the driver's connection, that also fixes the Message-ID and whose
    ``sent`` event a trigger appends in the same statement (migration 0004).
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
            f"sent_at = {mark}, message_id = {mark}, last_error = {mark}, "
            "lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL, "
            f"updated_at = {mark} WHERE id = {mark} AND lease_owner = {mark}"
        )

    def record(self, row: Claimed, message_id: str, at: dt.datetime, note: str | None = None) -> bool:
        """Mark ``row`` sent under ``message_id``; False if this worker no longer held it (its lease
        was taken over)."""
        stamp: Any = sqlite_text(at) if self.sqlite else at
        cursor = self.raw.cursor()
        try:
            cursor.execute(
                self.update, (stamp, message_id, note, stamp, row.id, self.owner)
            )  # its own transaction
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
    message_id: str | None = None,
) -> None:
    """End a delivery as failed, skipped or cancelled, with the reason kept.

    ``message_id``: what it was handed to the relay under; None when it never was, and then its
    claim counts no attempt.
    """
    d = delivery_table
    tried = {"message_id": message_id} if message_id else {"attempts": d.c.attempts - 1}
    conn.execute(
        update(d)
        .where(d.c.id == row.id, d.c.lease_owner == owner)
        .values(
            status=status.value,
            last_error=reason,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
            **tried,
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
    message_id: str,
    delivered_to: Sequence[str] = (),
) -> None:
    """Put a delivery back in the queue after a passing failure; it keeps ``message_id``, the
    Message-ID it was handed over under.

    ``delivered_to``: addresses the relay accepted this time, which the retry leaves out.
    """
    d = delivery_table
    done = sorted({*(row.delivered_to or "").split(","), *delivered_to} - {""})
    conn.execute(
        update(d)
        .where(d.c.id == row.id, d.c.lease_owner == owner)
        .values(
            status=DeliveryStatus.SCHEDULED.value,
            message_id=message_id,
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


def load_batch(conn: Connection, rows: Sequence[Claimed]) -> Batch:
    cohort_ids = sorted({row.cohort_id for row in rows})
    participant_ids = sorted({row.participant_id for row in rows})
    cohorts = {
        r.id: StoredCohort.from_row(r)
        for r in conn.execute(select(cohort_table).where(cohort_table.c.id.in_(cohort_ids)))
    }
    # Plain SQL, only the columns the records hold: SQLAlchemy's result processing, for everyone's
    # row and three goals each, was a tenth of what sending an email cost.
    sql = Plain(conn)
    marks = ", ".join("?" * len(participant_ids))
    people_sql = f"SELECT {', '.join(StoredParticipant.COLUMNS)} FROM participants WHERE id IN ({marks})"
    people = {row[0]: StoredParticipant.from_driver(row) for row in sql.rows(people_sql, participant_ids)}
    goals: dict[int, list[StoredGoal]] = {}
    goals_sql = (
        f"SELECT participant_id, {', '.join(StoredGoal.COLUMNS)} FROM goals WHERE participant_id IN ({marks})"
    )
    for owner, *goal in sql.rows(goals_sql, participant_ids):
        goals.setdefault(owner, []).append(StoredGoal.from_driver(goal))
    return Batch(cohorts, people, goals)
