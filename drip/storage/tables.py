"""Tables, as SQLAlchemy declarative models.

Every instant is stored as UTC and comes back aware, on every backend. Bulk
writes go through the tables (``Delivery.__table__``) with executemany; the
classes serve reads and single-row changes.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from drip.storage.decode import as_utc


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An instant: refuses naive datetimes, stores UTC, returns aware UTC.

    SQLite has no time zone type and silently drops offsets, so there the value
    is stored as naive UTC text and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: dt.datetime | None) -> str | None:
            return None if value is None else sqlite_text(value)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        instant: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if instant.tzinfo is None:
            return instant.replace(tzinfo=dt.UTC)
        return instant.astimezone(dt.UTC)


@lru_cache(maxsize=1 << 14)
def sqlite_text(value: dt.datetime) -> str:
    """Return the text SQLAlchemy's SQLite DATETIME writes and reads, for an instant.

    Cached: a bulk insert binds hundreds of thousands of instants, most of them
    the same few (``now``, and send times shared by everyone in one zone).
    """
    return as_utc(value).isoformat(" ", "microseconds")[:26]


# BIGINT on PostgreSQL (a busy install passes 2**31 events); plain INTEGER on
# SQLite, where only "INTEGER PRIMARY KEY" is the fast rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    # Stable constraint names, so migrations can refer to them on every backend.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


class Cohort(Base):
    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)
    program: Mapped[str] = mapped_column(String(64))
    program_path: Mapped[str] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    #: the validated cohort.toml settings, for templates and reports
    settings: Mapped[dict[str, Any]]
    start_date: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    #: when drip noted every planned email gone; before the last one's due time: not since then
    finished_at: Mapped[dt.datetime | None]


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("cohort_id", "email_key"),
        # A reply without a thread reference is matched to its sender, in any cohort.
        Index(None, "email_key"),
        Index(None, "delegate_key"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(Id, ForeignKey("cohorts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    #: the address case-folded: a participant's identity within the cohort
    email_key: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64))
    delegate_email: Mapped[str | None] = mapped_column(String(320))
    #: the delegate's address case-folded, to find a reply's sender by
    delegate_key: Mapped[str | None] = mapped_column(String(320))
    #: a delegate address (case-folded) that bounced: left out of Cc while the roster still names it
    delegate_bounced: Mapped[str | None] = mapped_column(String(320))
    #: every other roster column, available to templates
    fields: Mapped[dict[str, Any]]
    #: the roster's language tag (BCP 47); NULL: the cohort's
    language: Mapped[str | None] = mapped_column(String(35))
    status: Mapped[str] = mapped_column(String(16))
    #: digest of the inputs that placed this participant's plan (plan.Timing.signature)
    plan_signature: Mapped[str] = mapped_column(String(32))
    roster_row: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class Goal(Base):
    __tablename__ = "goals"
    __table_args__ = (UniqueConstraint("participant_id", "goal"), Index(None, "status", "deadline_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    participant_id: Mapped[int] = mapped_column(Id, ForeignKey("participants.id", ondelete="CASCADE"))
    goal: Mapped[str] = mapped_column(String(32))
    deadline: Mapped[dt.date] = mapped_column(Date)
    #: when the deadline day ends in the participant's zone: overdue from then on
    deadline_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))
    completed_at: Mapped[dt.datetime | None]
    #: how it was completed or waived: link, reply, admin
    via: Mapped[str | None] = mapped_column(String(16))
    #: a deadline set by hand (snooze, extend), kept when the roster is synced again
    deadline_override: Mapped[dt.date | None] = mapped_column(Date)
    #: when the participant pushed the deadline back a week (once only)
    snoozed_at: Mapped[dt.datetime | None]
    #: when drip noted the goal overdue; before deadline_at: not for the deadline it has now
    overdue_noted_at: Mapped[dt.datetime | None]
    #: the participant's answer to the goal's question, given when it was done (also in its event)
    answer: Mapped[str | None] = mapped_column(Text)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("participant_id", "step"),
        # The claim's order, id included: PostgreSQL then reads due email in order and stops at the
        # batch size, where (status, due_at) alone made it sort every row due at the same time.
        Index(None, "status", "due_at", "id"),
        # A cohort's counts by status, and its check-ins sent by step with the first sending, are
        # read from this index alone (migration 0016).
        Index(None, "cohort_id", "status", "step", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(Id, ForeignKey("cohorts.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(Id, ForeignKey("participants.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(64))
    goal: Mapped[str | None] = mapped_column(String(32))
    #: None while waiting for a goal's completion
    due_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: the id of the signing key its Message-ID is made with, fixed when it is first claimed
    message_key: Mapped[str | None] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None]
    #: why it was skipped or cancelled, or the server's reply when it failed
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    #: after a passing failure: not to be tried again before this
    retry_at: Mapped[dt.datetime | None]
    #: addresses already accepted by the relay when another was put off (comma-separated)
    delivered_to: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class CheckIn(Base):
    """A participant's answer to one check-in email (an occurrence of a step with ``answers``).

    One row per participant and step: a later answer replaces the earlier one here, and the event
    log keeps both.
    """

    __tablename__ = "check_ins"
    __table_args__ = (UniqueConstraint("participant_id", "step"), Index(None, "cohort_id", "step"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(Id, ForeignKey("cohorts.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(Id, ForeignKey("participants.id", ondelete="CASCADE"))
    #: the occurrence's step key: sustain-1, sustain-2 ...
    step: Mapped[str] = mapped_column(String(64))
    #: the email it answers
    delivery_id: Mapped[int] = mapped_column(Id)
    #: one of the step's answers, as program.toml names it
    answer: Mapped[str] = mapped_column(String(24))
    answered_at: Mapped[dt.datetime]
    #: link or reply
    via: Mapped[str] = mapped_column(String(16))


class Outbox(Base):
    """Webhook events waiting to be posted, posted, or given up on (``drip.storage.outbox``)."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index(None, "status", "next_attempt_at", "id"), Index(None, "cohort_id", "status"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: the id receivers see, the same on every attempt
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    cohort_id: Mapped[int] = mapped_column(Id, ForeignKey("cohorts.id", ondelete="CASCADE"))
    participant_id: Mapped[int | None] = mapped_column(Id)
    type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(8))
    #: "env:NAME": where the signing secret is; never the secret
    secret: Mapped[str] = mapped_column(String(140))
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[dt.datetime]
    #: pending, delivered or failed
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]


class Event(Base):
    """An append-only record of something that happened; never updated or deleted."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "cohort_id", "kind", "at"), Index(None, "participant_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # By id only, no foreign keys: a key would check, and on PostgreSQL lock, three parent rows for
    # every email sent, and a DELETE of a parent would erase the record (migration 0012).
    cohort_id: Mapped[int] = mapped_column(Id)
    participant_id: Mapped[int | None] = mapped_column(Id)
    delivery_id: Mapped[int | None] = mapped_column(Id)
    goal: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime]
    data: Mapped[dict[str, Any]]


class Received(Base):
    """A message read from the reply mailbox: never acted on twice, whichever mailbox it is read from."""

    __tablename__ = "received"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: SHA-256 of the Message-ID (or of the bytes, when there is none)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime]
    #: what it did: completed, unsubscribed, bounced, replied, auto_reply, unmatched ...
    outcome: Mapped[str] = mapped_column(String(16))
    cohort_id: Mapped[int | None] = mapped_column(Id, ForeignKey("cohorts.id", ondelete="SET NULL"))
    participant_id: Mapped[int | None] = mapped_column(Id, ForeignKey("participants.id", ondelete="SET NULL"))
    #: a reply to hand on to a person, and when that was done
    forward_to: Mapped[str | None] = mapped_column(String(320))
    forwarded_at: Mapped[dt.datetime | None]


class Digest(Base):
    """One weekly digest to one owner, recorded before it is sent so that no week goes twice."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("cohort_id", "period_end", "recipient", "manual"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    cohort_id: Mapped[int] = mapped_column(Id, ForeignKey("cohorts.id", ondelete="CASCADE"))
    #: the end of the week it covers: its scheduled moment, or when someone asked for it
    period_end: Mapped[dt.datetime]
    recipient: Mapped[str] = mapped_column(String(320))
    #: scheduled by drip run, or asked for with drip digest
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    message_id: Mapped[str] = mapped_column(String(255))
    #: sending (claimed, perhaps in flight), sent
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    #: while sending: when the claim's lease ends (real time), after which another worker may take it
    lease_expires_at: Mapped[dt.datetime | None]


class Meta(Base):
    """Values drip makes once per database and keeps: the link-signing key, the instance id."""

    __tablename__ = "meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


metadata = Base.metadata
