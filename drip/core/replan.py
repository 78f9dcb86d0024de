"""Re-planning one participant whose plan must change: what may move, and where it goes.

Shared by a roster sync (a deadline, zone or the program changed) and by
changes to one participant (a goal done, waived or reopened, a deadline
snoozed or extended). Pure: it takes the stored deliveries and returns the
changes; the caller writes them.

What may move: mail still to come (``scheduled`` for later), ``skipped`` and
``waiting`` mail, and mail cancelled only because its step left the program,
its occurrence of a repeating step fell past the step's until or the
program's end, its goal was settled or the participant was removed (so that
it comes back when the step, the occurrence, the goal or the participant
does). Nothing that has left, may have left, or is already due moves: sending
or skipping that is dispatch's call. A settled goal's pending mail is
cancelled with the reason, except a done goal's own completion steps, which
are placed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from drip.core.plan import PlannedStep, Timing, expand_steps, plan_participant
from drip.core.program import Program
from drip.core.states import DISPATCHED, DeliveryStatus, GoalStatus


class Stored(Protocol):
    """What re-planning reads of a stored delivery (``drip.storage.records.StoredDelivery``)."""

    @property
    def id(self) -> int: ...
    @property
    def step(self) -> str: ...
    @property
    def goal(self) -> str | None: ...
    @property
    def due_at(self) -> dt.datetime | None: ...
    @property
    def status(self) -> DeliveryStatus: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def sent_at(self) -> dt.datetime | None: ...


#: why a delivery was cancelled when its step left the program; it comes back if the step does
STEP_REMOVED = "the step was removed from the program"
#: why a participant's mail was cancelled when they were removed; it comes back if they are resumed
PARTICIPANT_REMOVED = "the participant was removed"
#: why an occurrence of a repeating step was cancelled when its day moved past the step's until or the
#: program's end; it comes back if they move back
OCCURRENCE_DROPPED = "the occurrence now falls after its step's until or the program's end"


def settled_reason(goal: str, status: str) -> str:
    """Why a goal's pending mail is cancelled once the goal is done or waived."""
    return f"the goal {goal} is {status}"


@dataclass
class Changes:
    """What re-planning one participant changes."""

    #: steps with no delivery yet (added to the program since enrolment)
    new: list[PlannedStep] = field(default_factory=list)
    #: (delivery, where it goes now)
    moves: list[tuple[Stored, dt.datetime | None, DeliveryStatus, str | None]] = field(default_factory=list)

    def move(
        self, row: Stored, due_at: dt.datetime | None, status: DeliveryStatus, reason: str | None
    ) -> None:
        if (row.due_at, row.status, row.last_error) != (due_at, status, reason):
            self.moves.append((row, due_at, status, reason))

    def rows(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Return the moves as rows for ``store.update_deliveries``."""
        return [
            {"did": row.id, "due_at": due_at, "status": status.value, "last_error": reason, "updated_at": now}
            for row, due_at, status, reason in self.moves
        ]


def replan(
    program: Program,
    timing: Timing,
    current: Mapping[str, Stored],
    goals: Mapping[str, tuple[GoalStatus, dt.datetime | None]],
    now: dt.datetime,
) -> Changes:
    """Return how one participant's stored deliveries change under ``timing`` and goal states.

    ``goals`` maps each goal to its status and, when done, its completion time.
    """
    changes = Changes()
    waits = {step.key for step in program.steps if step.waits_for_completion}
    movable = {key for key, row in current.items() if _movable(row, goals, key in waits, now)}
    # Whatever stays keeps its day taken, so nothing is planned beside it.
    fixed: dict[str, dt.datetime] = {}
    for key, row in current.items():
        instant = row.sent_at or row.due_at
        staying = row.status in DISPATCHED or row.status is DeliveryStatus.SCHEDULED
        if key not in movable and staying and instant is not None:
            fixed[key] = instant
    # Mail still to come keeps its time if its new moment has already passed.
    upcoming: dict[str, dt.datetime] = {}
    for key in movable:
        due_at = current[key].due_at
        if current[key].status is DeliveryStatus.SCHEDULED and due_at is not None:
            upcoming[key] = due_at
    completed = {goal: at or now for goal, (status, at) in goals.items() if status is GoalStatus.DONE}
    settled = {goal: status for goal, (status, _) in goals.items() if status is not GoalStatus.OPEN}
    for step in plan_participant(program, timing, now, fixed, upcoming, completed, settled):
        if step.step.key not in current:
            changes.new.append(step)
        elif step.step.key in movable:
            changes.move(current[step.step.key], step.due_at, step.status, step.reason)
    steps = {step.key for step in expand_steps(program, timing)}
    for key, row in current.items():
        if key not in movable:
            continue
        if key not in steps:
            reason = OCCURRENCE_DROPPED if program.occurrence_of(key) else STEP_REMOVED
            changes.move(row, row.due_at, DeliveryStatus.CANCELLED, reason)
        elif row.goal in settled and not (settled[row.goal] is GoalStatus.DONE and key in waits):
            changes.move(
                row, row.due_at, DeliveryStatus.CANCELLED, settled_reason(row.goal, settled[row.goal])
            )
    return changes


def _movable(
    row: Stored,
    goals: Mapping[str, tuple[GoalStatus, dt.datetime | None]],
    waits_for_completion: bool,
    now: dt.datetime,
) -> bool:
    status = goals.get(row.goal or "", (GoalStatus.OPEN, None))[0]
    if row.status is DeliveryStatus.SCHEDULED:
        if status is GoalStatus.DONE and waits_for_completion:
            return False  # congratulations already placed keep their day
        return row.due_at is not None and row.due_at > now
    if row.status is DeliveryStatus.WAITING:
        return True
    if row.status is DeliveryStatus.SKIPPED:
        return status is GoalStatus.OPEN  # a settled goal's history stays as it was
    if row.status is DeliveryStatus.CANCELLED:
        if row.last_error in (STEP_REMOVED, OCCURRENCE_DROPPED, PARTICIPANT_REMOVED):
            return True
        # Cancelled because its goal was settled: it comes back when the goal is reopened,
        # and a done goal's completion step comes back to be sent.
        for_goal = row.goal is not None and (row.last_error or "").startswith(settled_reason(row.goal, ""))
        wanted = status is GoalStatus.OPEN or (status is GoalStatus.DONE and waits_for_completion)
        return for_goal and wanted
    return False
