"""The owners' weekly digest: the week's completions, who is overdue, overall progress.

Each cohort's digest falls due once a week, on the day and at the time its
cohort.toml sets (Mondays at 08:00 by default), in the cohort's zone; the
first goes a week or less after the start, the last on the first digest day
after the program ends. ``drip run`` sends what is due from the one worker
that holds the "digest" lead, and each owner's copy for a week is recorded
before it is sent (one row per cohort, week and owner, unique), so a week
never goes twice even when the lead changes hands. A copy whose sending was
cut off (a crash between the record and the server's answer) goes again
after the lease, with the same Message-ID.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from drip.config import Settings
from drip.core.errors import DripError, StoreError
from drip.core.message import mail_system_headers
from drip.core.mime import Attachment, Mailbox, Message, compose
from drip.core.plan import local_day, local_instant, program_end
from drip.core.program import program_at
from drip.core.states import DigestStatus, GoalStatus
from drip.core.values import Address
from drip.owners import documents
from drip.owners.outcomes import Attention, Occurrence
from drip.owners.progress import Person, Problem, Progress, Reply, progress_of
from drip.storage import outbox, store
from drip.storage.leases import Lease
from drip.storage.records import StoredCohort

logger = logging.getLogger(__name__)

WEEK = dt.timedelta(days=7)
#: names listed per goal among the overdue; the rest are counted
MAX_NAMES = 15
#: the report goes along as an attachment for cohorts up to this size (beyond, it is too big for mail)
ATTACH_REPORT_UP_TO = 1000

#: sends one message: (envelope sender, recipients, bytes, Message-ID)
Send = Callable[[str, Sequence[str], bytes, str], Any]


@dataclass(frozen=True)
class Week:
    """What one digest covers: [since, until), read at ``now``."""

    since: dt.datetime
    until: dt.datetime
    #: the scheduled moment that names the week, or None when someone asked for it by hand
    scheduled: dt.datetime | None


def due_week(cohort: StoredCohort, now: dt.datetime, conn: Connection | None = None) -> Week | None:
    """Return the week whose digest is due at ``now`` for a stored cohort, or None between digests.

    With ``conn``, participants' own later deadlines extend the digests past the cohort's end.
    """
    when = cohort.settings.digest
    if when is None or not cohort.settings.owners:
        return None
    zone = ZoneInfo(cohort.settings.timezone)
    today = local_day(now, zone)
    day = today - dt.timedelta(days=(today.weekday() - when.weekday) % 7)
    moment = local_instant(day, when.at, zone)
    if moment > now:
        day -= WEEK
        moment = local_instant(day, when.at, zone)
    if day <= cohort.start_date:
        return None  # the first digest goes on the first digest day after the start
    last = _last_day(cohort, {})
    if last is not None and day - WEEK >= last and conn is not None:
        last = _last_day(cohort, _latest_deadlines(conn, cohort))
    if last is not None and day - WEEK >= last:
        return None  # past the digest day that followed the last day
    return Week(moment - WEEK, moment, moment)


def _last_day(cohort: StoredCohort, later: dict[str, dt.date]) -> dt.date | None:
    """Return the cohort's last day: its end, else the program's end on the latest deadlines."""
    settings = cohort.settings
    if settings.end:
        return settings.end
    try:
        program = program_at(cohort.program_path)
    except (OSError, DripError) as exc:
        logger.warning("cannot read the program at %s to end the digests: %s", cohort.program_path, exc)
        return None
    deadlines = dict(settings.deadlines)
    for key, day in later.items():
        deadlines[key] = max(day, deadlines.get(key, day))
    return program_end(program, cohort.timing(settings.timezone, deadlines))


def _latest_deadlines(conn: Connection, cohort: StoredCohort) -> dict[str, dt.date]:
    """Return each goal's latest deadline among the cohort's participants.

    Asked only once the cohort's own end has passed (then once a minute, per cohort: one
    indexed aggregate), so the last digest waits for whoever finishes last."""
    goals, people = store.goal_table, store.participant_table
    rows = conn.execute(
        select(goals.c.goal, func.max(goals.c.deadline))
        .join(people, people.c.id == goals.c.participant_id)
        .where(people.c.cohort_id == cohort.id)
        .group_by(goals.c.goal)
    )
    return {goal: day for goal, day in rows}


@dataclass(frozen=True)
class Digest:
    """One cohort's digest for one week, ready to render."""

    progress: Progress
    week: Week
    completions: list[tuple[Person, str, dt.datetime]]
    failures: list[Problem]
    bounces: list[Problem]
    #: the dashboard's page of this cohort, when the dashboard is on
    link: str | None
    #: the cohort's sender, whom the digest comes from
    sender: Mailbox
    #: delegates whose address bounced this week: they are no longer copied
    delegate_bounces: list[Problem] = field(default_factory=list)
    #: webhook endpoints with posts given up on or being retried (``outbox.failing``)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    #: replies of this week that drip kept for a person to answer ("not yet", a question)
    replies: list[Reply] = field(default_factory=list)
    #: each check-in sent so far, with its answers: one line per month of sustained use
    sustain: tuple[Occurrence, ...] = ()
    #: participants who gave a check-in's attention answer ("not this month") twice in a row this week
    attention: list[Attention] = field(default_factory=list)

    @property
    def needs_a_look(self) -> bool:
        return bool(
            self.failures or self.bounces or self.delegate_bounces or self.webhooks or self.replies
            or self.attention
        )  # fmt: skip

    @property
    def subject(self) -> str:
        zone = ZoneInfo(self.progress.timezone)
        last = (self.week.until - dt.timedelta(seconds=1)).astimezone(zone)
        # the week first: a subject that starts with the company's name, to a bare address, is one of
        # SpamAssassin's phishing signs (PDS_BRAND_SUBJ_NAKED_TO)
        return f"Week to {last.day} {last:%B}: {self.progress.name}"

    def goal_rows(self) -> list[dict[str, Any]]:
        """Return per goal its title, counts and the overdue names shown (most overdue first)."""
        rows = []
        for goal in self.progress.goals:
            counts = self.progress.counts(goal.key)
            # Most overdue first; on the same deadline, in roster order (the people are in it).
            late = sorted(self.progress.overdue(goal.key), key=lambda p: p.goals[goal.key].deadline)
            rows.append(
                {
                    "key": goal.key,
                    "title": goal.title,
                    "counts": counts,
                    "share": counts["done"] / counts["total"] if counts["total"] else 0.0,
                    "overdue": late[:MAX_NAMES],
                    "more": max(len(late) - MAX_NAMES, 0),
                }
            )
        return rows


def read_digest(
    conn: Connection, slug: str, week: Week, now: dt.datetime, settings: Settings
) -> Digest | None:
    """Return cohort ``slug``'s digest of ``week``, with progress as it stands at ``now``."""
    cohort = store.find_cohort(conn, slug)
    if cohort is None:
        return None
    found = progress_of(conn, cohort, now)

    def this_week(problems: Sequence[Problem]) -> list[Problem]:
        return [p for p in problems if week.since <= p.at < week.until]

    link = f"{settings.base_url}/admin/cohorts/{slug}" if settings.admin_password else None
    return Digest(
        found,
        week,
        found.completions(week.since, week.until),
        this_week(found.failures),
        this_week(found.bounces),
        link,
        cohort.settings.sender,
        this_week(found.delegate_bounces),
        outbox.failing(conn, cohort.id),
        [r for r in found.replies if r.outcome == "reply" and week.since <= r.at < week.until][::-1],
        found.check_ins.occurrences,
        [a for a in found.check_ins.attention() if week.since <= a.at < week.until],
    )


def render_digest(digest: Digest) -> tuple[str, str]:
    """Return the digest's text and HTML parts."""
    context = {
        "d": digest,
        "p": digest.progress,
        "goals": digest.goal_rows(),
        "titles": {g.key: g.title for g in digest.progress.goals},
        "zone": ZoneInfo(digest.progress.timezone),
        "done": GoalStatus.DONE.value,
    }
    return documents.render_page("digest.txt", **context), documents.render_page("digest.html", **context)


def compose_digest(digest: Digest, owner: str, message_id: str, now: dt.datetime) -> bytes:
    """Return the digest to ``owner`` as bytes, the report attached when the cohort is small enough."""
    text, html = render_digest(digest)
    attachments: tuple[Attachment, ...] = ()
    if len(digest.progress.people) <= ATTACH_REPORT_UP_TO:
        report = documents.report_html(digest.progress).encode("utf-8")
        attachments = (Attachment("text/html; charset=utf-8", f"{digest.progress.slug}-report.html", report),)
    domain = Address(digest.sender.address).ascii_domain
    message = Message(
        sender=digest.sender,
        to=Mailbox("", owner),
        subject=digest.subject,
        date=now,
        message_id=message_id,
        text=text,
        html=html,
        boundary_seed=hashlib.sha256(message_id.encode()).hexdigest()[:16],
        headers=(
            ("Auto-Submitted", "auto-generated"),
            *mail_system_headers(digest.progress.slug, digest.progress.name, "digest", domain),
            ("X-Drip-Step", "digest"),
        ),
        attachments=attachments,
    )
    return compose(message)


def message_id(cohort: StoredCohort, period_end: dt.datetime, owner: str) -> str:
    """Return the digest's Message-ID: the same for the same cohort, week and owner."""
    owner_hash = hashlib.sha256(owner.casefold().encode()).hexdigest()[:10]
    domain = Address(cohort.settings.sender.address).ascii_domain
    return f"<digest.{cohort.id}.{period_end:%Y%m%dT%H%M}.{owner_hash}@{domain}>"


# --- sending --------------------------------------------------------------------------------------


def send_due(
    db: store.Store, settings: Settings, now: dt.datetime, send: Send, real_now: dt.datetime | None = None
) -> list[str]:
    """Send every digest due at ``now`` that has not gone yet; return "cohort: owner" of each sent.

    ``real_now`` is the real clock's time (by default, read from it), for the claims' leases.
    """
    sent: list[str] = []
    with db.reading() as conn:
        cohorts = [(row, week) for row in store.cohort_rows(conn) if (week := due_week(row, now, conn))]
    for cohort, week in cohorts:
        sent += _send_week(db, settings, cohort, week, now, send, real_now)
    return sent


def send_now(
    db: store.Store, settings: Settings, slug: str, now: dt.datetime, send: Send
) -> list[str] | None:
    """Send cohort ``slug``'s digest of the seven days to ``now`` to its owners; None if no such cohort."""
    with db.reading() as conn:
        cohort = store.find_cohort(conn, slug)
    if cohort is None:
        return None
    if not cohort.settings.owners:
        raise DigestError(f"cohort {slug!r} has no owners; list them in cohort.toml: owners = [...]")
    return _send_week(db, settings, cohort, Week(now - WEEK, now, None), now, send)


def preview(db: store.Store, settings: Settings, slug: str, now: dt.datetime) -> Digest | None:
    """Return the digest of the seven days to ``now``, as it would go; sends and records nothing."""
    with db.reading() as conn:
        return read_digest(conn, slug, Week(now - WEEK, now, None), now, settings)


class DigestError(DripError):
    """A digest that cannot go, said so that the person asking can fix it."""


def _send_week(
    db: store.Store,
    settings: Settings,
    cohort: StoredCohort,
    week: Week,
    now: dt.datetime,
    send: Send,
    real_now: dt.datetime | None = None,
) -> list[str]:
    digest: Digest | None = None
    sent: list[str] = []
    for owner in cohort.settings.owners:
        mid = _claim(db, settings, cohort, week, owner, now, real_now)
        if mid is None:
            continue
        try:
            if digest is None:
                with db.reading() as conn:
                    digest = read_digest(conn, cohort.slug, week, now, settings)
                if digest is None:  # the cohort went away meanwhile
                    return sent
            send(digest.sender.address, [owner], compose_digest(digest, owner, mid, now), mid)
        except (DripError, OSError) as exc:
            # Nothing was accepted: give the week back so that the next pass tries again.
            logger.warning(
                "the digest of %s to %s did not go (next pass tries again): %s", cohort.slug, owner, exc
            )
            _release(db, cohort.id, week, owner)
            continue
        with db.transaction() as conn:
            conn.execute(
                update(store.digest_table)
                .where(*_row(cohort.id, week, owner))
                .values(status=DigestStatus.SENT.value, sent_at=now, lease_expires_at=None)
            )
        logger.info("sent the digest of %s to %s", cohort.slug, owner)
        sent.append(f"{cohort.slug}: {owner}")
    return sent


def _row(cohort_id: int, week: Week, owner: str) -> tuple[Any, ...]:
    table = store.digest_table
    return (
        table.c.cohort_id == cohort_id,
        table.c.period_end == week.until,
        table.c.recipient == owner,
        table.c.manual == (week.scheduled is None),
    )


def _claim(
    db: store.Store,
    settings: Settings,
    cohort: StoredCohort,
    week: Week,
    owner: str,
    now: dt.datetime,
    real_now: dt.datetime | None = None,
) -> str | None:
    """Record this week's copy for ``owner`` as being sent; return its Message-ID, or None if taken.

    A copy left "sending" by a worker that stopped is taken over once its lease ends.
    """
    table = store.digest_table
    mid = message_id(cohort, week.until, owner)
    real_now = real_now or dt.datetime.now(dt.UTC)
    lease = Lease.of_seconds(settings.lease_seconds)
    try:
        with db.transaction() as conn:
            existing = conn.execute(
                select(table.c.status, table.c.lease_expires_at, table.c.message_id).where(
                    *_row(cohort.id, week, owner)
                )
            ).first()
            if existing is None:
                conn.execute(
                    table.insert().values(
                        cohort_id=cohort.id,
                        period_end=week.until,
                        recipient=owner,
                        manual=week.scheduled is None,
                        message_id=mid,
                        status=DigestStatus.SENDING.value,
                        created_at=now,
                        lease_expires_at=lease.ends(real_now),
                    )  # fmt: skip
                )
                return mid
            if existing.status != DigestStatus.SENDING or not Lease.ended(
                existing.lease_expires_at, real_now
            ):
                return None
            # Cut off mid-send: its sender is gone. Same Message-ID, so a copy the server did take
            # shows up as the same message.
            conn.execute(
                update(table)
                .where(*_row(cohort.id, week, owner))
                .values(lease_expires_at=lease.ends(real_now))
            )
            return str(existing.message_id)
    except StoreError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return None  # another worker recorded it first
        raise


def _release(db: store.Store, cohort_id: int, week: Week, owner: str) -> None:
    with db.transaction() as conn:
        conn.execute(
            delete(store.digest_table).where(
                *_row(cohort_id, week, owner), store.digest_table.c.status == DigestStatus.SENDING.value
            )
        )
