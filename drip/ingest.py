"""What a message in the reply mailbox does.

- Sent to a plus-addressed "reply done" link (``comms+TOKEN@...``): the goal
  is done (or, for the List-Unsubscribe address, the participant is
  unsubscribed).
- A reply to one of drip's emails (In-Reply-To / References) whose new text
  says done: that email's goal is done. Any other reply is kept as an event
  and forwarded to the cohort's reply_to (or first owner), unless that is the
  very mailbox it was read from.
- An auto-reply never does anything but leave an event.
- A delivery status notification with a 5.x.x failure: the participant is
  marked bounced and their pending email cancelled.
- Anything else is not drip's, and is left alone.

A message is acted on once, whichever way it is read again: its Message-ID
is kept in the ``received`` table. A forward that could not be sent is tried
again the next time the message is read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from email.utils import make_msgid
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from drip import actions, inbound, mime, store
from drip.config import Settings
from drip.errors import DripError
from drip.inbound import Incoming, Kind
from drip.keys import reply_address, signing_keys
from drip.mailboxes import Source
from drip.mime import Mailbox, compose_forward
from drip.roster import email_key
from drip.states import EventKind, ParticipantStatus
from drip.store import Store, delivery_table, event_table, participant_table, received_table
from drip.tokens import Action, TokenError, read_token

logger = logging.getLogger(__name__)

#: how much of a reply's new text its event keeps
EXCERPT = 500


#: messages acted on per transaction
BATCH = 200

# Built once and reused: a message costs a handful of statements, and building them was a third of it.
_SEEN = select(
    received_table.c.key_hash, received_table.c.id, received_table.c.forward_to, received_table.c.forwarded_at
).where(received_table.c.key_hash.in_(bindparam("keys", expanding=True)))
_RECORD = insert(received_table).returning(received_table.c.id)
_FORWARDED = (
    update(received_table).where(received_table.c.id == bindparam("rid")).values(forwarded_at=bindparam("at"))
)
_ANSWERED = select(
    delivery_table.c.id, delivery_table.c.participant_id, delivery_table.c.step, delivery_table.c.goal,
    delivery_table.c.message_id,
).where(delivery_table.c.message_id.in_(bindparam("ids", expanding=True)))  # fmt: skip
_INSERT_EVENT = insert(event_table)


@dataclass(frozen=True)
class _Seen:
    """A message acted on before: in an earlier pass, or earlier in this batch."""

    id: int
    forward_to: str | None
    forwarded_at: dt.datetime | None
    this_batch: bool = False


@dataclass(frozen=True)
class Forward:
    """A reply to hand on to a person."""

    sender: str
    to: str
    data: bytes
    message_id: str


@dataclass
class Tally:
    """What one pass over a mailbox did, by outcome."""

    outcomes: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0
    forward_failures: int = 0

    def summary(self) -> str:
        total = sum(self.outcomes.values())
        if not total:
            return "no new messages"
        said = ", ".join(
            f"{count} {_LABELS.get(outcome, outcome)}" for outcome, count in self.outcomes.most_common()
        )
        extra = f"; {self.forwarded} forwarded" if self.forwarded else ""
        extra += f"; {self.forward_failures} forwards to retry" if self.forward_failures else ""
        return f"{total} message{'s' if total != 1 else ''}: {said}{extra}"


_LABELS = {
    "completed": "completed a goal",
    "already": "about a goal already done",
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "replied": "replies kept",
    "auto_reply": "auto-replies",
    "unmatched": "not drip's",
    "seen": "seen before",
    "unreadable": "unreadable (left in the mailbox)",
}


class Ingester:
    """Acts on messages from the reply mailbox; one per ``drip ingest`` or ``drip run``."""

    def __init__(
        self,
        db: Store,
        settings: Settings,
        send: Callable[[Forward], None] | None = None,
        done_words: Iterable[str] = inbound.DEFAULT_DONE_WORDS,
    ) -> None:
        self.db = db
        self.settings = settings
        self.send = send
        self.done_words = tuple(done_words)

    def read(self, source: Source, now: dt.datetime) -> Tally:
        """Act on every new message of ``source``; tell it which are dealt with.

        Messages are taken in batches, one transaction each, with a savepoint per message: a
        message that cannot be read is left in the mailbox and the rest of its batch goes on.
        A message whose forward failed stays for the next pass too.
        """
        tally = Tally()
        batch: list[tuple[str, bytes]] = []
        for item in source.messages():
            batch.append(item)
            if len(batch) >= BATCH:
                self._batch(batch, now, tally, source)
                batch = []
        if batch:
            self._batch(batch, now, tally, source)
        return tally

    def ingest(self, data: bytes, now: dt.datetime, tally: Tally | None = None) -> bool:
        """Act on one message, once; say whether it is dealt with (False: a forward is still to go)."""
        settled: list[str] = []

        class One:
            def done(self, reference: str) -> None:
                settled.append(reference)

        self._batch([("1", data)], now, tally if tally is not None else Tally(), One())
        return settled == ["1"]

    def _batch(self, batch: Sequence[tuple[str, bytes]], now: dt.datetime, tally: Tally, source: Any) -> None:
        read: list[tuple[str, bytes, Incoming]] = []
        for reference, data in batch:
            try:
                read.append((reference, data, inbound.read(data)))
            except Exception:  # noqa: BLE001 - one odd message must not stop the others
                logger.exception("could not read message %s; it stays in the mailbox", reference)
                tally.outcomes["unreadable"] += 1
        try:
            # The usual case: every message goes through, in one transaction with no savepoints.
            results, outcomes = self._act_on_all(read, now, careful=False)
        except DripError:
            raise  # the database: stop, and take it up again next time
        except Exception:  # noqa: BLE001 - rolled back whole; now one savepoint per message
            results, outcomes = self._act_on_all(read, now, careful=True)
        tally.outcomes.update(outcomes)
        forwarded = []
        for reference, row_id, forward in results:
            if forward is not None:
                if not self._deliver(forward, tally):
                    continue
                forwarded.append(row_id)
            source.done(reference)
        if forwarded:
            with self.db.transaction() as conn:
                conn.execute(_FORWARDED, [{"rid": row_id, "at": now} for row_id in forwarded])

    def _act_on_all(
        self, read: Sequence[tuple[str, bytes, Incoming]], now: dt.datetime, *, careful: bool
    ) -> tuple[list[tuple[str, int, Forward | None]], Counter[str]]:
        """Act on a batch in one transaction. Careful: a savepoint per message, and one that fails
        is left in the mailbox; else the first failure rolls the whole batch back (and raises)."""
        results: list[tuple[str, int, Forward | None]] = []
        outcomes: Counter[str] = Counter()
        hashes = [hashlib.sha256(incoming.key.encode()).hexdigest() for _, _, incoming in read]
        with self.db.transaction() as conn:
            seen = {
                row.key_hash: _Seen(row.id, row.forward_to, row.forwarded_at)
                for row in (conn.execute(_SEEN, {"keys": hashes}) if hashes else ())
            }
            for (reference, data, incoming), key_hash in zip(read, hashes, strict=True):
                try:
                    with conn.begin_nested() if careful else nullcontext():
                        name, row_id, forward = self._once(conn, incoming, key_hash, seen, data, now)
                except DripError:
                    raise
                except Exception:
                    if not careful:
                        raise
                    logger.exception("could not act on message %s; it stays in the mailbox", reference)
                    outcomes["unreadable"] += 1
                    continue
                outcomes[name] += 1
                results.append((reference, row_id, forward))
        return results, outcomes

    def _once(
        self,
        conn: Connection,
        incoming: Incoming,
        key_hash: str,
        seen: dict[str, _Seen],
        data: bytes,
        now: dt.datetime,
    ) -> tuple[str, int, Forward | None]:
        """Act on a message unless it was seen before; return its outcome, its row and any forward to send."""
        before = seen.get(key_hash)
        if before is not None:
            pending = before.forward_to and not before.forwarded_at and not before.this_batch
            return "seen", before.id, self._forward_again(conn, incoming, data) if pending else None
        outcome, forward = self._act(conn, incoming, data, now)
        row_id = conn.execute(
            _RECORD,
            {
                "key_hash": key_hash,
                "message_id": incoming.key[:998],
                "received_at": now,
                "outcome": outcome.name,
                "cohort_id": outcome.cohort_id,
                "participant_id": outcome.participant_id,
                "forward_to": forward.to if forward else None,
                "forwarded_at": None,
            },
        ).scalar_one()
        # The same message twice in one batch: the second is a repeat, and the first does any forward.
        seen[key_hash] = _Seen(row_id, forward.to if forward else None, None, this_batch=True)
        return outcome.name, row_id, forward

    # --- deciding -------------------------------------------------------------------

    def _act(
        self, conn: Connection, incoming: Incoming, data: bytes, now: dt.datetime
    ) -> tuple[_Outcome, Forward | None]:
        if incoming.kind is Kind.BOUNCE:
            return self._bounce(conn, incoming, now), None
        evidence = actions.Evidence("reply", message_id=incoming.key[:300], user_agent=None)
        taken_back: tuple[actions.Person, str] | None = None
        for token in incoming.tokens:
            outcome = self._token(conn, token, incoming, evidence, now)
            if isinstance(outcome, _Outcome):
                return outcome, None
            taken_back = taken_back or outcome
        delivery = self._answered(conn, incoming.answers)
        if delivery is None and taken_back is not None:
            delivery = _last_sent(conn, *taken_back)  # "not yet" to a reply-done address, out of thread
        if delivery is None:
            return _Outcome("unmatched"), None
        person = actions.person_by_id(conn, delivery.participant_id)
        if person is None:
            return _Outcome("unmatched"), None
        if incoming.kind is Kind.AUTO_REPLY:
            self._keep(conn, person, delivery, incoming, now, auto=True)
            return _Outcome("auto_reply", person), None
        if delivery.goal and incoming.says_done(self.done_words):
            done = actions.complete(conn, person, delivery.goal, now, evidence)
            return _Outcome("completed" if done.changed else "already", person), None
        self._keep(conn, person, delivery, incoming, now, auto=False)
        forward = self._forward(person, delivery.step, incoming, data)
        return _Outcome("replied", person), forward

    def _token(
        self, conn: Connection, token: str, incoming: Incoming, evidence: actions.Evidence, now: dt.datetime
    ) -> _Outcome | tuple[actions.Person, str] | None:
        """Act on a plus-addressed token; None when it is not a genuine, current one.

        A message to a reply-done address whose text takes it back ("not yet", "almost finished")
        completes nothing: the participant and goal come back, so it is kept and forwarded as a reply.
        """
        if incoming.kind is Kind.AUTO_REPLY:
            return None
        keys = signing_keys(self.settings, conn)
        for action in (Action.DONE, Action.UNSUBSCRIBE):
            try:
                claim = read_token(keys, token, action, now.date())
            except TokenError:
                continue
            if action is Action.DONE:
                found = actions.person_by_goal(conn, claim.object_id)
                if found is None:
                    return None
                person, goal = found
                if inbound.takes_back(incoming.new_text, self.done_words):
                    return person, goal
                done = actions.complete(conn, person, goal, now, evidence)
                return _Outcome("completed" if done.changed else "already", person)
            unsubscribing = actions.person_by_id(conn, claim.object_id)
            if unsubscribing is None:
                return None
            actions.unsubscribe(conn, unsubscribing, now, evidence)
            return _Outcome("unsubscribed", unsubscribing)
        return None

    def _bounce(self, conn: Connection, incoming: Incoming, now: dt.datetime) -> _Outcome:
        """Mark the participants whose address failed for good as bounced."""
        bounced: list[actions.Person] = []
        evidence = actions.Evidence("reply", message_id=incoming.key[:300])
        delivery = self._answered(conn, (incoming.bounced_message_id,) if incoming.bounced_message_id else ())
        for failure in incoming.bounces:
            people = self._people_at(conn, failure.address, delivery)
            for person in people:
                actions.bounce(conn, person, now, evidence, f"{failure.status} {failure.diagnostic}".strip())
                bounced.append(person)
        if not bounced:
            return _Outcome("unmatched")
        return _Outcome("bounced", bounced[0])

    def _people_at(self, conn: Connection, address: str, delivery: Any) -> list[actions.Person]:
        """The participants whose own address bounced: the one the bounced email went to, else every one."""
        key = email_key(address)
        if delivery is not None:
            person = actions.person_by_id(conn, delivery.participant_id)
            return [person] if person is not None and email_key(person.email) == key else []
        ids = conn.execute(
            select(participant_table.c.id).where(
                participant_table.c.email_key == key,
                participant_table.c.status.in_(
                    [ParticipantStatus.ACTIVE.value, ParticipantStatus.PAUSED.value]
                ),
            )
        ).scalars()
        return [person for pid in ids if (person := actions.person_by_id(conn, pid)) is not None]

    @staticmethod
    def _answered(conn: Connection, message_ids: Sequence[str]) -> Any:
        """Return the delivery one of ``message_ids`` names (the most recent reference first)."""
        if not message_ids:
            return None
        rows = conn.execute(_ANSWERED, {"ids": list(message_ids)}).all()
        by_id = {row.message_id: row for row in rows}
        return next((by_id[mid] for mid in message_ids if mid in by_id), None)

    def _keep(
        self,
        conn: Connection,
        person: actions.Person,
        delivery: Any,
        incoming: Incoming,
        now: dt.datetime,
        *,
        auto: bool,
    ) -> None:
        data: dict[str, Any] = {
            "message_id": incoming.key[:300],
            "from": incoming.sender,
            "subject": incoming.subject[:300],
            "step": delivery.step,
            "excerpt": incoming.new_text[:EXCERPT],
        }
        if auto:
            data["auto"] = incoming.auto_reason
        conn.execute(
            _INSERT_EVENT,
            {
                "cohort_id": person.cohort_id,
                "participant_id": person.id,
                "delivery_id": delivery.id,
                "goal": delivery.goal,
                "kind": EventKind.REPLIED.value,
                "at": now,
                "data": data,
            },
        )

    # --- forwarding -----------------------------------------------------------------

    def _forward(self, person: actions.Person, step: str, incoming: Incoming, data: bytes) -> Forward | None:
        """A reply for a person: to the cohort's reply_to (else its first owner), unless replies go there."""
        settings = person.cohort_settings
        sender = Mailbox(*settings["sender"])
        reply_to = Mailbox(*settings["reply_to"]) if settings.get("reply_to") else None
        target = reply_to.address if reply_to else (settings.get("owners") or [None])[0]
        inbox = reply_address(self.settings, sender, reply_to)
        if not target or email_key(target) == email_key(inbox):
            return None  # the reply already sits in the mailbox people read
        message_id = make_msgid("drip.forward", domain=sender.address.rpartition("@")[2])
        body = _forward_bytes(sender, target, person, step, incoming, data, message_id)
        return Forward(sender.address, target, body, message_id)

    def _forward_again(self, conn: Connection, incoming: Incoming, data: bytes) -> Forward | None:
        delivery = self._answered(conn, incoming.answers)
        person = actions.person_by_id(conn, delivery.participant_id) if delivery is not None else None
        return None if person is None else self._forward(person, delivery.step, incoming, data)

    def _deliver(self, forward: Forward, tally: Tally) -> bool:
        if self.send is None:
            tally.forward_failures += 1
            return False
        try:
            self.send(forward)
        except (DripError, OSError) as exc:
            logger.warning("could not forward a reply to %s (will try again): %s", forward.to, exc)
            tally.forward_failures += 1
            return False
        tally.forwarded += 1
        return True


def _last_sent(conn: Connection, person: actions.Person, goal: str) -> store.DeliveryRow | None:
    """The last email about ``goal`` that went to ``person``, the one a reply-done message answers."""
    sent = [
        row for row in store.deliveries_of_one(conn, person.id).values() if row.sent_at and row.goal == goal
    ]
    return max(sent, key=lambda row: row.sent_at or dt.datetime.min, default=None)


@dataclass(frozen=True)
class _Outcome:
    name: str
    person: actions.Person | None = None

    @property
    def cohort_id(self) -> int | None:
        return self.person.cohort_id if self.person else None

    @property
    def participant_id(self) -> int | None:
        return self.person.id if self.person else None


_UNSAFE = re.compile(r"[\r\n\0]")


def _header_text(value: str) -> str:
    """Make text from someone else's message fit for a header we write (CVE-2024-6923)."""
    return " ".join(_UNSAFE.sub(" ", value).replace("=?", "= ?").split())


def _forward_bytes(
    sender: Mailbox,
    target: str,
    person: actions.Person,
    step: str,
    incoming: Incoming,
    data: bytes,
    message_id: str,
) -> bytes:
    note = (
        f"{person.name} <{person.email}>, in {person.cohort_name}, replied to the '{step}' email. "
        "Answering this message writes to them.\n\n"
        f"{incoming.new_text or '(no new text)'}\n\nTheir whole message is attached.\n"
    )
    return compose_forward(
        mime.Forward(
            sender=sender,
            to=target,
            reply_to=Mailbox(person.name, person.email),
            subject=_header_text(f"Reply from {person.name}: {incoming.subject or '(no subject)'}"),
            date=dt.datetime.now(dt.UTC),
            message_id=message_id,
            note=note,
            original=data,
        )
    )
