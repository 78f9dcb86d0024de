"""Change one participant of a running cohort: the commands program owners run by hand."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection

from drip import store
from drip.errors import DripError
from drip.roster import email_key
from drip.states import EventKind, ParticipantStatus


def remove_participant(conn: Connection, slug: str, email: str, now: dt.datetime) -> int:
    """Mark a participant removed and cancel their pending email; return how many were cancelled.

    Removing someone already removed changes nothing and returns 0.
    """
    cohort = store.find_cohort(conn, slug)
    if cohort is None:
        raise DripError(f"no cohort {slug!r}; known cohorts: {', '.join(store.cohort_slugs(conn)) or 'none'}")
    row = store.find_participant(conn, cohort.id, email_key(email))
    if row is None:
        raise DripError(f"{email} is not a participant of {slug!r}")
    if row.status is ParticipantStatus.REMOVED:
        return 0
    store.set_participant_status(conn, row.id, ParticipantStatus.REMOVED, now)
    cancelled = store.cancel_pending(conn, row.id, "the participant was removed", now)
    store.record_event(
        conn, cohort.id, EventKind.REMOVED, now, participant_id=row.id, data={"cancelled": cancelled}
    )
    return cancelled
