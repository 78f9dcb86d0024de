"""Webhooks: what drip tells the tools owners use, from an outbox, signed, at least once.

An event worth telling (``goal.completed``, ``goal.overdue``, ``participant.bounced``,
``participant.unsubscribed``, ``reply.needs_person``, ``cohort.finished``, ``check_in.answered``)
is written to the ``webhook_outbox`` table in the same transaction as the change it reports
(``drip.storage.store.append_events``): one row per endpoint of the cohort's cohort.toml that
asks for it. ``drip run`` posts them from a thread of its own, so a slow or dead receiver never
holds up email:

- a POST with a JSON body, ``X-Drip-Signature: sha256=<hex HMAC-SHA256 of the body>`` under the
  endpoint's secret, ``X-Drip-Timestamp`` (Unix seconds, also in the body as ``sent_at``, so it is
  signed) and ``X-Drip-Event`` with the event's id;
- each row is leased before it is posted, so two workers never post it at once; a worker that
  dies mid-post leaves it to be posted again when the lease ends: at least once, and every
  attempt carries the same id for receivers to drop repeats;
- a 2xx answer delivers it; anything else, a refused connection or a time-out is tried again
  after 30 s, 2 min, 10 min, 1 h and then every 6 h, 12 attempts in all (about two days), and
  then given up: ``drip status`` and the digest show what failed and why.

``format = "slack"`` and ``"teams"`` post a readable message in those tools' incoming-webhook
shapes (Teams: an Adaptive Card) instead of the event itself; they are signed all the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, and_, case, exists, func, or_, select, update

from drip.core.states import CohortStatus, DeliveryStatus, EventKind, GoalStatus, ParticipantStatus
from drip.storage import outbox
from drip.storage import store as storage
from drip.storage.records import OutboxRow, StoredEvent

logger = logging.getLogger(__name__)

#: how long one POST may take, in seconds: to connect, and in all
CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
#: waits before each next attempt; the last repeats until MAX_ATTEMPTS
BACKOFF = (
    dt.timedelta(seconds=30), dt.timedelta(minutes=2), dt.timedelta(minutes=10), dt.timedelta(hours=1),
    dt.timedelta(hours=6),
)  # fmt: skip
MAX_ATTEMPTS = 12
#: rows leased at a time
BATCH = 50
#: a batch is leased for longer than its posts can take, every one of them to its time-out: no other
#: worker takes a row while it may still be posted; a worker that died leaves its rows this long
LEASE = dt.timedelta(seconds=BATCH * (CONNECT_TIMEOUT + TOTAL_TIMEOUT) + 60)
#: how often, at most, the thread notes what time made true (overdue goals, finished cohorts), in seconds
NOTE_EVERY = 30.0
#: a receiver's answer kept, at most, as the reason it failed
MAX_REASON = 300


def backoff(attempts: int) -> dt.timedelta:
    """Return the wait after the ``attempts``-th failed attempt (1 after the first)."""
    return BACKOFF[min(attempts, len(BACKOFF)) - 1]


def signature(secret: str, body: bytes) -> str:
    """Return the X-Drip-Signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def secret_of(reference: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the secret ``env:NAME`` names, or None if that variable is not set (or empty)."""
    name = reference.removeprefix("env:")
    return (environ if environ is not None else os.environ).get(name) or None


# --- what a POST says ----------------------------------------------------------------------------


def body(row: OutboxRow, sent_at: int) -> bytes:
    """Return the bytes to post for ``row``: the event as JSON, or a Slack or Teams message."""
    event = {"id": row.event_id, "type": row.type, "occurred_at": row.occurred_at.isoformat(),
             "sent_at": sent_at, **row.payload}  # fmt: skip
    if row.format == "slack":
        shown: Any = _slack(row, sent_at)
    elif row.format == "teams":
        shown = _teams(row, sent_at)
    else:
        shown = event
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":")).encode()


def summary(row: OutboxRow) -> tuple[str, str]:
    """Return a heading and one sentence saying what happened, in plain words."""
    data = row.payload
    person = data.get("participant") or {}
    who = person.get("name") or person.get("email") or "A participant"
    goal = (data.get("goal") or {}).get("title") or (data.get("goal") or {}).get("key") or "a goal"
    cohort = (data.get("cohort") or {}).get("name") or "the cohort"
    if row.type == "goal.completed":
        how = {"link": "by the link", "reply": "by reply", "admin": "recorded by an owner"}.get(
            str(data.get("via")), ""
        )
        return "Goal completed", f"{who} completed “{goal}”{' ' + how if how else ''}."
    if row.type == "goal.overdue":
        return "Goal overdue", f"{who}'s goal “{goal}” was due {data.get('deadline', '')} and is still open."
    if row.type == "participant.bounced":
        return (
            "Email bounced",
            f"Email to {person.get('email', who)} bounced: {data.get('reason', '')}".strip(),
        )
    if row.type == "participant.unsubscribed":
        return "Unsubscribed", f"{who} unsubscribed from {cohort}."
    if row.type == "reply.needs_person":
        return "A reply needs a person", f"{who} replied, and drip left it to a person: {data.get('why', '')}"
    if row.type == "cohort.finished":
        return "Cohort finished", f"{cohort} has finished: {data.get('completed_all', 0)} of " \
            f"{data.get('participants', 0)} participants did every goal."  # fmt: skip
    if row.type == "check_in.answered":
        earlier = data.get("replaced_label") or data.get("replaced")
        was = f" (it was “{earlier}”)" if earlier else ""
        return (
            "Check-in answered",
            f"{who} answered “{data.get('label', '')}” to {data.get('step', '')}{was}.",
        )
    return row.type, f"{row.type} in {cohort}."


def _slack_text(text: str) -> str:
    # Slack's mrkdwn reads <...> as links and mentions (<!channel>): a name must not be able to ping
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(row: OutboxRow, sent_at: int) -> dict[str, Any]:
    heading, said = summary(row)
    cohort = (row.payload.get("cohort") or {}).get("name", "")
    return {
        "text": _slack_text(f"{heading}: {said}"),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{_slack_text(heading)}*\n{_slack_text(said)}"},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _slack_text(f"{cohort} · {row.event_id}")}],
            },
        ],
    }


_TEAMS_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\*_~`[]()#>-+!|{}"})


def _inert(text: str) -> str:
    """Return ``text`` with the characters Teams' Markdown reads escaped: a name stays a name."""
    return text.translate(_TEAMS_MARKDOWN)


def _teams(row: OutboxRow, sent_at: int) -> dict[str, Any]:
    heading, said = summary(row)
    facts = [{"title": "Cohort", "value": (row.payload.get("cohort") or {}).get("name", "")}]
    person = row.payload.get("participant") or {}
    if person:
        facts.append(
            {"title": "Participant", "value": f"{person.get('name', '')} <{person.get('email', '')}>"}
        )
    facts.append({"title": "Event", "value": row.event_id})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": _inert(heading), "weight": "Bolder", "size": "Medium",
             "wrap": True},
            {"type": "TextBlock", "text": _inert(said), "wrap": True},
            {"type": "FactSet", "facts": [{"title": f["title"], "value": _inert(f["value"])} for f in facts]},
        ],
    }  # fmt: skip
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                         "content": card}],
    }  # fmt: skip


# --- posting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """What one round did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def post(
    client: httpx.Client, row: OutboxRow, now: dt.datetime, environ: Mapping[str, str] | None = None
) -> tuple[str | None, bool]:
    """POST one row; return None when the receiver took it, else why not (for the row's last error),
    and whether the receiver could not be reached at all (refused, or no answer in time)."""
    secret = secret_of(row.secret, environ)
    if secret is None:
        return f"the secret's environment variable {row.secret.removeprefix('env:')} is not set", False
    sent_at = int(now.timestamp())
    data = body(row, sent_at)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "drip-webhooks",
        "X-Drip-Event": row.event_id,
        "X-Drip-Timestamp": str(sent_at),
        "X-Drip-Signature": signature(secret, data),
    }
    try:
        answer = client.post(row.url, content=data, headers=headers)
    except httpx.TimeoutException:
        return f"no answer within {client.timeout.read:g} s", True
    except httpx.HTTPError as exc:
        return f"could not post: {type(exc).__name__}: {exc}"[:MAX_REASON], True
    if 200 <= answer.status_code < 300:
        return None, False
    text = " ".join(answer.text.split())[:120]
    return f"HTTP {answer.status_code} {answer.reason_phrase}{': ' + text if text else ''}"[
        :MAX_REASON
    ], False


# --- what becomes an event with time alone ----------------------------------------------------------


def note(conn: Connection, now: dt.datetime) -> int:
    """Record what time alone made true at ``now``: goals whose deadline day ended open (``overdue``),
    and cohorts whose planned email has all gone (``cohort_finished``); return how many events.

    Each is noted once: the UPDATE that marks it is the test, so two workers never both note it.
    A deadline moved later is noted again when it passes; a cohort that gets new email finishes
    again when that has gone.
    """
    return _note_overdue(conn, now) + _note_finished(conn, now)


def _note_overdue(conn: Connection, now: dt.datetime) -> int:
    goals, people = storage.goal_table, storage.participant_table
    due = and_(
        goals.c.status == GoalStatus.OPEN.value,
        goals.c.deadline_at <= now,
        or_(goals.c.overdue_noted_at.is_(None), goals.c.overdue_noted_at < goals.c.deadline_at),
    )
    marked = conn.execute(
        update(goals).where(due).values(overdue_noted_at=now).returning(goals.c.participant_id, goals.c.goal,
                                                                         goals.c.deadline)
    ).all()  # fmt: skip
    if not marked:
        return 0
    cohorts = dict(
        conn.execute(
            select(people.c.id, people.c.cohort_id).where(
                people.c.id.in_({row.participant_id for row in marked}),
                people.c.status != ParticipantStatus.REMOVED.value,
            )
        ).all()
    )
    events = [
        StoredEvent(cohorts[row.participant_id], EventKind.OVERDUE, now, row.participant_id, goal=row.goal,
                    data={"deadline": row.deadline.isoformat()})
        for row in marked
        if row.participant_id in cohorts
    ]  # fmt: skip
    storage.append_events(conn, events)
    return len(events)


_PENDING = (DeliveryStatus.SCHEDULED.value, DeliveryStatus.CLAIMED.value, DeliveryStatus.SENDING.value)


def _note_finished(conn: Connection, now: dt.datetime) -> int:
    cohorts, deliveries = storage.cohort_table, storage.delivery_table
    last_sent = (
        select(func.max(deliveries.c.due_at))
        .where(deliveries.c.cohort_id == cohorts.c.id, deliveries.c.status == DeliveryStatus.SENT.value)
        .scalar_subquery()
    )
    pending = exists().where(deliveries.c.cohort_id == cohorts.c.id, deliveries.c.status.in_(_PENDING))
    finished = (
        conn.execute(
            update(cohorts)
            .where(
                cohorts.c.status == CohortStatus.ACTIVE.value,
                ~pending,
                last_sent.is_not(None),
                or_(cohorts.c.finished_at.is_(None), cohorts.c.finished_at < last_sent),
            )
            .values(finished_at=now)
            .returning(cohorts.c.id)
        )
        .scalars()
        .all()
    )
    events = []
    for cohort_id in finished:
        figures = storage.cohort_figures(conn, cohort_id, now)
        people = figures["participants"]
        done_all = _completed_all(conn, cohort_id)
        goals = {key: counts.get("done", 0) for key, counts in figures["goals"].items()}
        data = {"participants": people, "completed_all": done_all, "goals": goals}
        events.append(StoredEvent(cohort_id, EventKind.COHORT_FINISHED, now, data=data))
    storage.append_events(conn, events)
    return len(events)


def _completed_all(conn: Connection, cohort_id: int) -> int:
    """Return how many of the cohort's participants (not removed) did every goal."""
    goals, people = storage.goal_table, storage.participant_table
    everyone = (
        select(goals.c.participant_id)
        .join(people, people.c.id == goals.c.participant_id)
        .where(people.c.cohort_id == cohort_id, people.c.status != ParticipantStatus.REMOVED.value)
        .group_by(goals.c.participant_id)
        .having(func.sum(case((goals.c.status == GoalStatus.DONE.value, 0), else_=1)) == 0)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(everyone)).scalar_one())


def round_of(
    db: storage.Store, now: dt.datetime, owner: str, client: httpx.Client | None = None, noting: bool = True
) -> Posted:
    """Note what time made true (unless told not to), then post what is due: one round of the thread."""
    if noting:
        with db.transaction() as conn:
            note(conn, now)
    return deliver_due(db, now, owner, client)


def deliver_due(
    db: storage.Store,
    now: dt.datetime,
    owner: str,
    client: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
) -> Posted:
    """Post what is due at ``now``, a batch at a time, until nothing is; return what became of it."""
    own = client is None
    client = client or new_client()
    delivered = retrying = failed = 0
    # a receiver that does not answer costs one time-out a round: its other rows wait for the next
    dead: set[str] = set()
    try:
        while True:
            with db.reading() as conn:
                if not outbox.any_due(conn, now):
                    break
            with db.transaction() as conn:
                rows = outbox.lease(conn, now, owner, LEASE, BATCH, skip=dead)
            if not rows:
                break
            outcomes: list[tuple[OutboxRow, str | None, dt.datetime | None]] = []
            for row in rows:
                if row.url in dead:
                    with db.transaction() as conn:
                        outbox.release(conn, row, owner)
                    continue
                reason, unreachable = post(client, row, now, environ)
                if reason is None:
                    delivered += 1
                    outcomes.append((row, None, None))
                    continue
                if unreachable:
                    dead.add(row.url)
                attempts = row.attempts + 1
                retry = now + backoff(attempts) if attempts < MAX_ATTEMPTS else None
                retrying += retry is not None
                failed += retry is None
                logger.warning(
                    "webhook %s to %s: %s (attempt %d)", row.type, _shown(row.url), reason, attempts
                )
                outcomes.append((row, reason, retry))
            with db.transaction() as conn:
                outbox.settle(conn, outcomes, owner, now)
            if len(rows) < BATCH:
                break
    finally:
        if own:
            client.close()
    return Posted(delivered, retrying, failed)


def _shown(url: str) -> str:
    """The URL as logs may show it: Slack's and Teams' webhook URLs carry their secret in the path."""
    return outbox.shown_url(url)


def new_client() -> httpx.Client:
    """An HTTP client with time-outs, no cookies kept, redirects not followed (a POST is not replayed)."""
    return httpx.Client(
        timeout=httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT), follow_redirects=False, trust_env=False
    )


class Poster:
    """A thread of its own that notes and posts every few seconds, apart from the email: ``drip run
    --once`` walks virtual time while it posts, and a slow receiver holds up nothing else."""

    def __init__(
        self, db: storage.Store, clock: Callable[[], dt.datetime], owner: str, every: float = 1.0
    ) -> None:
        self.db, self.clock, self.owner, self.every = db, clock, owner, every
        self._stop = threading.Event()
        self._final = False
        self._thread = threading.Thread(target=self._loop, name="drip-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, wait: float = 3 * TOTAL_TIMEOUT) -> None:
        """Stop after one more round, as of the clock's moment now: ``drip run --once`` at its end."""
        self._final = True
        self.stop(wait)

    def stop(self, wait: float = TOTAL_TIMEOUT + 2) -> None:
        self._stop.set()
        self._thread.join(wait)

    def _loop(self) -> None:
        noted = -NOTE_EVERY
        with new_client() as client:
            while not self._stop.is_set():
                # noting writes (on SQLite, the one write lock): twice a minute is soon enough
                noting = time.monotonic() - noted >= NOTE_EVERY
                if self._round(client, noting) and noting:
                    noted = time.monotonic()
                self._stop.wait(self.every)
            if self._final:
                self._round(client, noting=True)

    def _round(self, client: httpx.Client, noting: bool) -> bool:
        try:
            round_of(self.db, self.clock(), self.owner, client, noting)
        except Exception:  # noqa: BLE001 - the thread must outlive a database hiccup, and say so
            logger.exception("posting webhooks failed; trying again shortly")
            return False
        return True
