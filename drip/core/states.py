"""The states of a cohort, a participant, a goal, a delivery and an owner's digest; the event kinds.

Cohort: ``active`` and ``paused`` (``drip cohort pause|resume``); a paused
cohort's email waits, and what falls stale meanwhile is skipped.

Participant: ``active`` and ``paused`` go back and forth; ``removed`` (gone
from the roster, or ``drip participant remove``) comes back with a resume;
``unsubscribed`` and ``bounced`` are final. Those three are ``silenced``:
nothing of theirs is re-planned.

Goal: ``open`` becomes ``done`` or ``waived``; a reopen makes it ``open`` again.

Delivery, one email to one participant::

    waiting ──(its goal done)──> scheduled ──claim──> claimed ──> sending ──> sent
                                     ▲                   │           │
                                     ├──── released ─────┴───────────┤
                                     └──── retried later ────────────┘

- released: paused since it was claimed, the relay paused sending, or its
  worker died; no attempt is counted;
- retried later: the relay deferred it (4xx), with backoff;
- ``claimed`` or ``sending`` to ``failed``: it could not be built, the relay
  refused it for good, or it ran out of attempts;
- ``claimed`` to ``cancelled`` (the participant, goal or step no longer wants
  it) or to ``skipped`` (its moment passed too long ago);
- re-planning (``drip.core.replan``) moves ``waiting``, ``scheduled``,
  ``skipped`` and some ``cancelled`` ones, never one already claimed;
- a ``claimed`` or ``sending`` delivery whose lease ended is claimed again by
  another worker (``drip.storage.leases``); a ``sending`` one keeps its
  Message-ID, so the one email a crash may leave in doubt goes again as the
  same message.

``sent`` and ``failed`` are final. ``drip.sending.claims`` makes every change
of sending.

Digest, one owner's copy of one week: recorded ``sending`` before it goes,
``sent`` once the relay took it; one that did not go is deleted, to be tried
on the next pass, and one left ``sending`` by a worker that stopped is taken
over when its lease ends.
"""

from __future__ import annotations

from enum import StrEnum


class CohortStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class ParticipantStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    REMOVED = "removed"

    @property
    def silenced(self) -> bool:
        """Whether they get no more email, whatever becomes of their goals (nothing is re-planned)."""
        return self in (ParticipantStatus.UNSUBSCRIBED, ParticipantStatus.BOUNCED, ParticipantStatus.REMOVED)


class GoalStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    WAIVED = "waived"


class DeliveryStatus(StrEnum):
    WAITING = "waiting"
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class DigestStatus(StrEnum):
    """An owner's copy of one week's digest: recorded as ``sending`` before it goes, ``sent`` after."""

    SENDING = "sending"
    SENT = "sent"


#: deliveries that reached, or may have reached, the participant's mailbox
DISPATCHED = frozenset({DeliveryStatus.CLAIMED, DeliveryStatus.SENDING, DeliveryStatus.SENT})


class EventKind(StrEnum):
    COHORT_STARTED = "cohort_started"
    COHORT_SYNCED = "cohort_synced"
    ENROLLED = "enrolled"
    UPDATED = "updated"
    REPLANNED = "replanned"
    REMOVED = "removed"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    CLICKED = "clicked"
    COMPLETED = "completed"
    REPLIED = "replied"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    #: a bounce that may pass (mailbox full, a server down for days): counted; bounced after several
    SOFT_BOUNCED = "soft_bounced"
    #: the delegate's address bounced: they are left out of Cc, the participant keeps getting email
    DELEGATE_BOUNCED = "delegate_bounced"
    SNOOZED = "snoozed"
    #: a goal's deadline day ended with the goal still open (noted once per deadline)
    OVERDUE = "overdue"
    #: every email the cohort had planned has gone out
    COHORT_FINISHED = "cohort_finished"
    WAIVED = "waived"
    REOPENED = "reopened"
    #: a check-in answered (data: the step, the answer, and the answer it replaced, if any)
    ANSWERED = "answered"
    EXTENDED = "extended"
    PAUSED = "paused"
    RESUMED = "resumed"
