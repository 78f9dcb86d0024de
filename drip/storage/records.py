"""What the database keeps about a cohort and a participant, as frozen, typed records.

A started cohort is stored as columns plus one JSON column, ``settings``, that
holds what cohort.toml said. Both are decoded here and nowhere else:
:meth:`StoredCohort.from_row` reads a row of ``cohorts`` and
:meth:`StoredCohort.to_row` writes one, and the defaults for cohorts started by
an older drip (no digest setting, no owners) are applied once, in
:meth:`CohortSettings.from_json`. The same goes for participants.

Nothing here talks to the database: the store selects rows and hands them over,
as SQLAlchemy rows (``from_row``) or as the driver's own tuples (``from_driver``,
for plain SQL on the hot paths).
"""

from __future__ import annotations

import copyreg
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from drip.core.mime import Mailbox
from drip.core.plan import PlannedStep, Timing
from drip.core.states import CohortStatus, DeliveryStatus, EventKind, GoalStatus, ParticipantStatus
from drip.core.values import first_name, parse_clock
from drip.storage.decode import read_date, read_instant, read_json, read_optional_date

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

#: the id of a cohort that is not stored yet; :meth:`StoredCohort.to_row` leaves ids out
NOT_STORED = 0


@dataclass(frozen=True)
class DigestTime:
    """When the owners' weekly digest goes: a weekday and a time, in the cohort's zone."""

    weekday: int
    at: dt.time

    def record(self) -> dict[str, str]:
        return {"day": WEEKDAYS[self.weekday], "time": self.at.strftime("%H:%M")}

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> DigestTime:
        return cls(WEEKDAYS.index(record["day"]), parse_clock(record["time"]))


#: Mondays at 08:00, unless cohort.toml says otherwise
DEFAULT_DIGEST = DigestTime(0, dt.time(8, 0))


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _pickle_frozen(view: MappingProxyType[str, Any]) -> tuple[Any, tuple[dict[str, Any]]]:
    return _frozen, (dict(view),)


# Records cross to the composing process (drip.sending.composer) pickled; a read-only view goes as
# a copy of what it shows, and is made read-only again there.
copyreg.pickle(MappingProxyType, _pickle_frozen)


#: the events a webhook may ask for, in cohort.toml's ``[[webhooks]]`` ``events``
WEBHOOK_EVENTS = (
    "goal.completed", "goal.overdue", "participant.bounced", "participant.unsubscribed",
    "reply.needs_person", "cohort.finished", "check_in.answered",
)  # fmt: skip
#: what a webhook's POST looks like: the event as JSON, or a Slack or Teams message
WEBHOOK_FORMATS = ("json", "slack", "teams")


@dataclass(frozen=True)
class Webhook:
    """One ``[[webhooks]]`` entry of cohort.toml."""

    url: str
    events: tuple[str, ...]
    #: ``env:NAME``: the environment variable that holds the signing secret; never the secret
    secret: str
    format: str = "json"

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "events": list(self.events), "secret": self.secret, "format": self.format}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        return cls(data["url"], tuple(data["events"]), data["secret"], data.get("format") or "json")


@dataclass(frozen=True)
class OutboxRow:
    """A row of ``webhook_outbox``, as a worker posts it."""

    id: int
    event_id: str
    cohort_id: int
    participant_id: int | None
    type: str
    url: str
    format: str
    secret: str
    payload: Mapping[str, Any]
    occurred_at: dt.datetime
    attempts: int

    @classmethod
    def from_row(cls, row: Any) -> OutboxRow:
        return cls(
            row.id, row.event_id, row.cohort_id, row.participant_id, row.type, row.url, row.format,
            row.secret, read_json(row.payload) or {}, row.occurred_at, row.attempts,
        )  # fmt: skip


@dataclass(frozen=True)
class CohortSettings:
    """What cohort.toml said, as a started cohort keeps it (the ``cohorts.settings`` column)."""

    timezone: str
    send_time: dt.time
    skip_weekends: bool
    sender: Mailbox
    reply_to: Mailbox | None
    owners: tuple[str, ...]
    #: when the owners' digest goes; None: cohort.toml turned it off
    digest: DigestTime | None
    #: the cohort's goal deadlines, before any participant's own
    deadlines: Mapping[str, dt.date] = field(default_factory=dict)
    end: dt.date | None = None
    roster: str = ""
    #: the language of participants without one, and of the owners' notes; None: the program's
    language: str | None = None
    #: where events go (cohort.toml ``[[webhooks]]``)
    webhooks: tuple[Webhook, ...] = ()
    #: whether the report shows web-address answers as links (cohort.toml ``link_answers``); else text
    link_answers: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "deadlines", _frozen(self.deadlines))

    def to_json(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "send_time": self.send_time.strftime("%H:%M"),
            "skip_weekends": self.skip_weekends,
            "sender": [self.sender.name, self.sender.address],
            "reply_to": [self.reply_to.name, self.reply_to.address] if self.reply_to else None,
            "owners": list(self.owners),
            "digest": self.digest.record() if self.digest else None,
            "deadlines": {key: day.isoformat() for key, day in self.deadlines.items()},
            "end": self.end.isoformat() if self.end else None,
            "roster": self.roster,
            "language": self.language,
            "webhooks": [hook.to_json() for hook in self.webhooks],
            "link_answers": self.link_answers,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CohortSettings:
        """Decode the column; a cohort started before digests existed gets the default digest."""
        digest = data["digest"] if "digest" in data else DEFAULT_DIGEST.record()
        return cls(
            timezone=data.get("timezone") or "UTC",
            send_time=parse_clock(data["send_time"]),
            skip_weekends=bool(data["skip_weekends"]),
            sender=Mailbox(*data["sender"]),
            reply_to=Mailbox(*data["reply_to"]) if data.get("reply_to") else None,
            owners=tuple(data.get("owners") or ()),
            digest=DigestTime.from_record(digest) if digest else None,
            deadlines={key: dt.date.fromisoformat(day) for key, day in (data.get("deadlines") or {}).items()},
            end=dt.date.fromisoformat(data["end"]) if data.get("end") else None,
            roster=data.get("roster") or "",
            language=data.get("language") or None,
            webhooks=tuple(Webhook.from_json(hook) for hook in data.get("webhooks") or ()),
            link_answers=data.get("link_answers") is True,
        )

    def timing(self, start: dt.date, timezone: str, deadlines: Mapping[str, dt.date]) -> Timing:
        """Return what places a participant's steps in time, from what the database keeps."""
        return Timing(
            start=start,
            timezone=timezone,
            send_time=self.send_time,
            skip_weekends=self.skip_weekends,
            deadlines=dict(deadlines),
            end=self.end,
        )


@dataclass(frozen=True)
class StoredCohort:
    """A row of ``cohorts``."""

    id: int
    slug: str
    name: str
    #: the program's key (its folder's name)
    program: str
    #: the program's folder, resolved when the cohort was started or last synced
    program_path: str
    #: the cohort folder, resolved
    folder: str
    status: CohortStatus
    start_date: dt.date
    settings: CohortSettings

    @classmethod
    def from_row(cls, row: Any) -> StoredCohort:
        """Decode a row selected from ``cohorts`` (any of its columns beyond these are ignored)."""
        return cls(
            id=row.id,
            slug=row.slug,
            name=row.name,
            program=row.program,
            program_path=row.program_path,
            folder=row.folder,
            status=CohortStatus(row.status),
            start_date=row.start_date,
            settings=CohortSettings.from_json(row.settings),
        )

    def to_row(self) -> dict[str, Any]:
        """Return the columns to write, without the id (the database gives it)."""
        return {
            "slug": self.slug,
            "name": self.name,
            "program": self.program,
            "program_path": self.program_path,
            "folder": self.folder,
            "status": self.status.value,
            "start_date": self.start_date,
            "settings": self.settings.to_json(),
        }

    @property
    def program_dir(self) -> Path:
        return Path(self.program_path)

    def timing(self, timezone: str, deadlines: Mapping[str, dt.date]) -> Timing:
        """Return what places the steps of a participant in ``timezone`` with ``deadlines``."""
        return self.settings.timing(self.start_date, timezone, deadlines)


@dataclass(frozen=True)
class StoredParticipant:
    """A row of ``participants``."""

    id: int
    cohort_id: int
    email: str
    #: the address case-folded: how participants are told apart
    email_key: str
    name: str
    timezone: str
    delegate_email: str | None
    #: the delegate's address case-folded, for matching replies
    delegate_key: str | None
    #: the delegate address (case-folded) that bounced, if any: they are left out of Cc
    delegate_bounced: str | None
    #: the roster's other columns, for templates
    fields: Mapping[str, Any]
    status: ParticipantStatus
    plan_signature: str
    roster_row: int | None
    #: the language tag the roster gave; None: the cohort's
    language: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _frozen(self.fields))

    #: the columns :meth:`from_row` reads, in this order
    COLUMNS = (
        "id", "cohort_id", "email", "email_key", "name", "timezone", "delegate_email", "delegate_key",
        "delegate_bounced", "fields", "status", "plan_signature", "roster_row", "language",
    )  # fmt: skip

    @classmethod
    def from_row(cls, row: Any) -> StoredParticipant:
        """Decode a row selected from ``participants`` with at least :attr:`COLUMNS`."""
        values = {name: getattr(row, name) for name in cls.COLUMNS}
        values["status"] = ParticipantStatus(values["status"])
        values["fields"] = values["fields"] or {}
        return cls(**values)

    @classmethod
    def from_driver(cls, row: Sequence[Any]) -> StoredParticipant:
        """Decode :attr:`COLUMNS`, in order, as the database driver returns them (plain SQL)."""

        ident, cohort_id, email, email_key, name, zone, delegate, delegate_key, bounced = row[:9]
        fields, status, signature, roster_row, language = row[9:]
        return cls(
            ident, cohort_id, email, email_key, name, zone, delegate, delegate_key, bounced,
            read_json(fields) or {}, ParticipantStatus(status), signature, roster_row, language,
        )  # fmt: skip

    def to_row(self) -> dict[str, Any]:
        """Return the columns to write, without the id."""
        row = {name: getattr(self, name) for name in self.COLUMNS if name != "id"}
        row["status"] = self.status.value
        row["fields"] = dict(self.fields)
        return row

    @property
    def first_name(self) -> str:
        return first_name(self.name, self.fields)


@dataclass(frozen=True)
class StoredGoal:
    """A row of ``goals``: one participant's goal."""

    id: int
    #: the goal's key in the program
    goal: str
    status: GoalStatus
    #: the deadline in force: the participant's own, or one moved since
    deadline: dt.date
    completed_at: dt.datetime | None
    #: how it was completed or waived: "link", "reply", "cli", ...
    via: str | None
    deadline_override: dt.date | None
    snoozed_at: dt.datetime | None

    #: the columns :meth:`from_row` reads, in this order
    COLUMNS = ("id", "goal", "status", "deadline", "completed_at", "via", "deadline_override", "snoozed_at")

    @classmethod
    def from_driver(cls, row: Sequence[Any]) -> StoredGoal:
        """Decode :attr:`COLUMNS`, in order, as the database driver returns them (plain SQL)."""

        ident, goal, status, deadline, completed_at, via, override, snoozed_at = row
        return cls(
            ident, goal, GoalStatus(status), read_date(deadline), read_instant(completed_at),
            via, read_optional_date(override), read_instant(snoozed_at),
        )  # fmt: skip


@dataclass(frozen=True)
class StoredDelivery:
    """A row of ``deliveries``: one planned email to one participant."""

    id: int
    participant_id: int
    #: the step's key; an occurrence of a repeating step has its own (``Program.occurrence_of``)
    step: str
    goal: str | None
    due_at: dt.datetime | None
    status: DeliveryStatus
    last_error: str | None
    sent_at: dt.datetime | None


def delivery_row(
    cohort_id: int, participant_id: int, planned: PlannedStep, now: dt.datetime
) -> dict[str, Any]:
    """The new row of ``deliveries`` for one planned step."""
    return {
        "cohort_id": cohort_id,
        "participant_id": participant_id,
        "step": planned.step.key,
        "goal": planned.step.goal,
        "due_at": planned.due_at,
        "status": planned.status.value,
        "attempts": 0,
        "last_error": planned.reason,
        "created_at": now,
        "updated_at": now,
    }


@dataclass(frozen=True)
class StoredEvent:
    """A row of ``events``, the log of everything that happened to a cohort and its people."""

    cohort_id: int
    kind: EventKind
    at: dt.datetime
    participant_id: int | None = None
    delivery_id: int | None = None
    goal: str | None = None
    #: what an owner reading the log needs: the evidence, the reason, what moved
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "cohort_id": self.cohort_id,
            "participant_id": self.participant_id,
            "delivery_id": self.delivery_id,
            "goal": self.goal,
            "kind": self.kind.value,
            "at": self.at,
            "data": dict(self.data),
        }


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
    #: the id of the signing key its Message-ID is made with (``drip.storage.keyring.key_id``)
    message_key: str | None
    #: addresses the relay already accepted on an earlier attempt
    delivered_to: str | None = None


@dataclass(frozen=True)
class Batch:
    """Everything needed to build a batch's messages, read in three queries."""

    cohorts: dict[int, StoredCohort]
    participants: dict[int, StoredParticipant]
    #: participant id -> their goals
    goals: dict[int, list[StoredGoal]]
