"""The states a participant, a goal and a delivery can be in, and the event kinds.

Deliveries move forward only::

    waiting ──(goal completed)──> scheduled ──claim──> claimed ──> sending ──> sent
       │                             │                    │           └─────> failed
       └──────────> cancelled <──────┴────────────────────┘
                                     └──(moment passed unsent)──> skipped

``waiting``: anchored on a goal's completion, not yet due. ``skipped`` and
``cancelled`` carry a reason. What re-planning may move is decided in
``drip.launch.enrol``; nothing ever touches ``sent`` or ``failed``.
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
    WAIVED = "waived"
    REOPENED = "reopened"
    EXTENDED = "extended"
    PAUSED = "paused"
    RESUMED = "resumed"
