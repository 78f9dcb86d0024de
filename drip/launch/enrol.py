"""Enrol a cohort: plan every participant and store the plan, or bring a stored one in sync.

Re-running on an edited roster or cohort.toml:

- new rows are enrolled;
- changed names, delegates and extra columns are updated;
- a participant whose timing changed (deadline, zone, or the cohort's start,
  send time, weekends, or the program's steps) is re-planned: deliveries
  ``scheduled`` for later or ``skipped`` move, ``waiting`` ones stay; nothing
  that has left (or may have), and nothing already due, is touched (sending
  or skipping those is dispatch's call); goals already done keep their steps;
- rows that disappeared are reported and left as they are until
  ``drip participant remove``.

Everything happens in one transaction: on any error nothing is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection

from drip.core.errors import StoreError
from drip.core.plan import GoalDates, PlannedStep, Timing, goal_dates, plan_participant
from drip.core.program import Program
from drip.core.replan import replan
from drip.core.states import EventKind, GoalStatus, ParticipantStatus
from drip.core.values import email_key
from drip.launch.cohort import COHORT_FILE, Cohort
from drip.launch.roster import Participant
from drip.storage import store
from drip.storage.records import StoredEvent, StoredParticipant, delivery_row

Made = TypeVar("Made")

logger = logging.getLogger(__name__)

#: participants planned and inserted per batch: bounds memory on large rosters
ENROL_BATCH = 1_000
#: enrolling this many at once refreshes the database's statistics, so that its plans for
#: status, claims and reports fit the new size at once rather than after autovacuum's next visit
ANALYZE_AFTER = 1_000


@dataclass
class SyncReport:
    """What ``drip start`` did (or, in a dry run, would do)."""

    slug: str
    created: bool
    enrolled: int = 0
    updated: int = 0
    replanned: int = 0
    unchanged: int = 0
    #: (email, name) of stored participants no longer in the roster
    missing: list[tuple[str, str]] = field(default_factory=list)
    #: things the operator should know that did not stop the sync
    warnings: list[str] = field(default_factory=list)
    #: (email, name) of participants removed earlier who are in the roster again
    returned: list[tuple[str, str]] = field(default_factory=list)
    #: new deliveries written by this run, by status
    planned: Counter[str] = field(default_factory=Counter)
    #: stored deliveries that re-planning moved, skipped or cancelled
    moved: int = 0
    #: (instant, that participant's zone) of the first and last scheduled email
    first_send: tuple[dt.datetime, str] | None = None
    last_send: tuple[dt.datetime, str] | None = None


class _Plans:
    """Plans of new participants, made once per distinct timing.

    Planning is a pure function of the program, the timing and ``now``, and most of a
    cohort shares a few timings (one per zone, unless deadlines are set per person).
    """

    def __init__(self, program: Program, now: dt.datetime) -> None:
        self.program = program
        self.now = now
        self._steps: dict[tuple[object, ...], list[PlannedStep]] = {}
        self._goals: dict[tuple[object, ...], dict[str, GoalDates]] = {}

    def steps(self, timing: Timing) -> list[PlannedStep]:
        return self._once(self._steps, timing, lambda: plan_participant(self.program, timing, self.now))

    def goals(self, timing: Timing) -> dict[str, GoalDates]:
        return self._once(self._goals, timing, lambda: goal_dates(self.program, timing))

    @staticmethod
    def _once(made: dict[tuple[object, ...], Made], timing: Timing, make: Callable[[], Made]) -> Made:
        key = timing.key()
        if key not in made:
            made[key] = make()
        return made[key]


def plan_cohort(cohort: Cohort, now: dt.datetime) -> Iterable[tuple[Participant, list[PlannedStep]]]:
    """Yield each participant's plan as if enrolled at ``now``; writes nothing."""
    plans = _Plans(cohort.program, now)
    for participant in cohort.participants:
        yield participant, plans.steps(cohort.timing(participant))


def sync_cohort(
    conn: Connection,
    cohort: Cohort,
    now: dt.datetime,
    progress: Callable[[int], None] | None = None,
) -> SyncReport:
    """Store ``cohort`` and its plan on ``conn``, or bring the stored copy in sync."""
    store.lock_cohort(conn, cohort.slug)
    stored_cohort = cohort.stored()
    warnings = _check_identity(conn, cohort, stored_cohort.folder)
    cohort_id, created = store.upsert_cohort(conn, stored_cohort, now)
    report = SyncReport(cohort.slug, created, warnings=warnings)
    stored = store.participants_by_key(conn, cohort_id)
    fresh = [p for p in cohort.participants if p.key not in stored]
    known = [p for p in cohort.participants if p.key in stored]
    roster_keys = {p.key for p in cohort.participants}
    report.missing = [
        (row.email, row.name)
        for key, row in stored.items()
        if key not in roster_keys and row.status is not ParticipantStatus.REMOVED
    ]
    plans = _Plans(cohort.program, now)
    for start in range(0, len(fresh), ENROL_BATCH):
        batch = fresh[start : start + ENROL_BATCH]
        _enrol(conn, cohort, cohort_id, batch, plans, report)
        if progress:
            progress(len(batch))
    _resync(conn, cohort, cohort_id, known, stored, now, report)
    if len(fresh) >= ANALYZE_AFTER:
        store.refresh_statistics(conn)
    if progress and known:
        progress(len(known))

    kind = EventKind.COHORT_STARTED if created else EventKind.COHORT_SYNCED
    summary = {
        "enrolled": report.enrolled,
        "updated": report.updated,
        "replanned": report.replanned,
        "missing": len(report.missing),
    }
    store.append_events(conn, [StoredEvent(cohort_id, kind, now, data=summary)])
    report.first_send, report.last_send = store.scheduled_span(conn, cohort_id)
    return report


def _check_identity(conn: Connection, cohort: Cohort, folder: str) -> list[str]:
    """Refuse what would launch a cohort twice, or let two folders drive one cohort.

    Return warnings about a folder that moved.
    """
    existing = store.find_cohort(conn, cohort.slug)
    if existing is None:
        other = store.find_cohort_by_folder(conn, folder)
        if other is not None:
            raise StoreError(
                f"{cohort.path} was started as cohort {other.slug!r}; under the id {cohort.slug!r} drip "
                f'would launch it a second time and email everyone again. Put back slug = "{other.slug}" in '
                f"{cohort.path / 'cohort.toml'}, or copy the folder and give the copy a slug of its own"
            )
        if not cohort.slug_is_explicit:
            _refuse_renamed_folder(conn, cohort)
        return []
    if existing.program != cohort.program.key:
        raise StoreError(
            f"cohort {cohort.slug!r} was started with program {existing.program!r}, not "
            f'{cohort.program.key!r}; a different program needs a new cohort (set slug = "...")'
        )
    if existing.folder != folder:
        if (Path(existing.folder) / COHORT_FILE).is_file():
            raise StoreError(
                f"cohort {cohort.slug!r} belongs to {existing.folder}, which still exists; two folders "
                f"cannot drive one cohort. Give {cohort.path / 'cohort.toml'} a slug of its own to launch "
                "a separate cohort"
            )
        return [f"cohort {cohort.slug!r} was started from {existing.folder}; it now follows {folder}"]
    return []


def _refuse_renamed_folder(conn: Connection, cohort: Cohort) -> None:
    """Refuse to launch, as new, a cohort whose folder was only renamed.

    Its id comes from the folder name, so a rename looks like a new cohort: a
    stored cohort of the same program whose folder is gone and which shares
    most of this roster is taken to be the same one.
    """
    keys = {p.key for p in cohort.participants}
    for row in store.cohort_rows(conn):
        if row.program != cohort.program.key or (Path(row.folder) / COHORT_FILE).is_file():
            continue
        shared = store.count_participants(conn, row.id, keys)
        if shared * 2 >= len(keys):
            raise StoreError(
                f"{cohort.path} looks like cohort {row.slug!r}, started from {row.folder}, which no longer "
                f"exists: {shared} of its {len(keys)} participants are the same. To carry on with it, set "
                f'slug = "{row.slug}" in {cohort.path / "cohort.toml"}; to launch a new cohort for them '
                "anyway, set a new slug there explicitly"
            )


def _participant_values(
    cohort: Cohort, participant: Participant, timing: Timing | None = None
) -> dict[str, Any]:
    return {
        "email": participant.email,
        "name": participant.name,
        "timezone": participant.timezone,
        "delegate_email": participant.delegate_email,
        "delegate_key": email_key(participant.delegate_email) if participant.delegate_email else None,
        "fields": dict(participant.fields),
        "language": participant.language,
        "plan_signature": (timing or cohort.timing(participant)).signature(cohort.program),
        "roster_row": participant.row,
    }


def _enrol(
    conn: Connection,
    cohort: Cohort,
    cohort_id: int,
    batch: Sequence[Participant],
    plans: _Plans,
    report: SyncReport,
) -> None:
    now = plans.now
    rows = [
        {
            **_participant_values(cohort, p),
            "cohort_id": cohort_id,
            "email_key": p.key,
            "status": ParticipantStatus.ACTIVE.value,
            "created_at": now,
            "updated_at": now,
        }
        for p in batch
    ]
    ids = store.insert_participants(conn, rows)
    timings = [cohort.timing(participant) for participant in batch]
    goal_rows = [
        {
            "participant_id": participant_id,
            "goal": key,
            "deadline": dates.deadline,
            "deadline_at": dates.deadline_ends_at,
            "status": GoalStatus.OPEN.value,
        }
        for participant_id, timing in zip(ids, timings, strict=True)
        for key, dates in plans.goals(timing).items()
    ]
    store.insert_goals(conn, goal_rows)

    planned = [
        (participant_id, step) for participant_id, timing in zip(ids, timings, strict=True)
        for step in plans.steps(timing)
    ]  # fmt: skip
    report.planned.update(step.status.value for _, step in planned)
    store.insert_deliveries(conn, [delivery_row(cohort_id, pid, step, now) for pid, step in planned])
    store.append_events(
        conn, [StoredEvent(cohort_id, EventKind.ENROLLED, now, participant_id) for participant_id in ids]
    )
    report.enrolled += len(batch)


def _resync(
    conn: Connection,
    cohort: Cohort,
    cohort_id: int,
    known: Sequence[Participant],
    stored: dict[str, StoredParticipant],
    now: dt.datetime,
    report: SyncReport,
) -> None:
    updates, events = [], []
    retimed: list[tuple[StoredParticipant, Timing]] = []
    # Deadlines moved by hand (snooze, extend) outlive the roster's.
    overrides = store.deadline_overrides(conn, [stored[p.key].id for p in known])
    for participant in known:
        row = stored[participant.key]
        timing = cohort.timing(participant)
        if row.id in overrides:
            timing = replace(timing, deadlines={**timing.deadlines, **overrides[row.id]})
        values = _participant_values(cohort, participant, timing)
        current = {name: getattr(row, name) for name in values} | {"fields": dict(row.fields)}
        if row.status is ParticipantStatus.REMOVED:
            report.returned.append((row.email, row.name))
        if values == current:
            report.unchanged += 1
            continue
        updates.append({"pid": row.id, **values, "updated_at": now})
        # A sorted or re-ordered sheet moves rows; that is not a change to the person.
        changed = sorted(name for name in values if values[name] != current[name] and name not in _QUIET)
        if values["plan_signature"] != row.plan_signature and not row.status.silenced:
            retimed.append((row, timing))
        elif changed:
            report.updated += 1
        else:
            report.unchanged += 1
        if changed:
            events.append(_event(cohort_id, row.id, EventKind.UPDATED, now, {"changed": changed}))
    store.update_participants(conn, updates)
    store.append_events(conn, events)
    _replan(conn, cohort, cohort_id, retimed, now, report)


#: participant columns whose change is recorded without an event
_QUIET = frozenset({"plan_signature", "roster_row", "delegate_key"})


def _replan(
    conn: Connection,
    cohort: Cohort,
    cohort_id: int,
    retimed: Sequence[tuple[StoredParticipant, Timing]],
    now: dt.datetime,
    report: SyncReport,
) -> None:
    """Re-plan participants whose timing changed, moving only what may move."""
    ids = [row.id for row, _ in retimed]
    deliveries = store.deliveries_of(conn, ids)
    goal_states = store.goal_states(conn, ids)
    deadline_updates, new_goals, delivery_updates, new_deliveries, events = [], [], [], [], []
    for row, timing in retimed:
        states = goal_states.get(row.id, {})
        for key, dates in goal_dates(cohort.program, timing).items():
            goal = {"deadline": dates.deadline, "deadline_at": dates.deadline_ends_at}
            if key in states:
                deadline_updates.append({"pid": row.id, "goal_key": key, **goal})
            else:  # a goal added to the program after this participant was enrolled
                new_goals.append(
                    {"participant_id": row.id, "goal": key, "status": GoalStatus.OPEN.value, **goal}
                )
        changes = replan(cohort.program, timing, deliveries.get(row.id, {}), states, now)
        for planned in changes.new:
            new_deliveries.append(delivery_row(cohort_id, row.id, planned, now))
            report.planned[planned.status.value] += 1
        delivery_updates += changes.rows(now)
        report.replanned += 1
        report.moved += len(changes.moves)
        events.append(_event(cohort_id, row.id, EventKind.REPLANNED, now, {"moved": len(changes.moves)}))

    store.update_goal_deadlines(conn, deadline_updates)
    store.insert_goals(conn, new_goals)
    store.update_deliveries(conn, delivery_updates)
    store.insert_deliveries(conn, new_deliveries)
    store.append_events(conn, events)


def _event(
    cohort_id: int, participant_id: int, kind: EventKind, at: dt.datetime, data: dict[str, Any]
) -> StoredEvent:
    return StoredEvent(cohort_id, kind, at, participant_id, data=data)
