"""What a message in the reply mailbox does.

- Sent to a plus-addressed "reply done" address (``comms+TOKEN@...``): the
  goal is done, unless the message's own words take it back or hedge ("not
  yet", "I'll do it tomorrow"). Sent to the List-Unsubscribe address: the
  participant is unsubscribed.
- A reply to a check-in (a step with ``answers``) answers it when the sender may speak for the
  participant and their words plainly say yes (the first of two answers) or no (the second);
  anything else is kept and forwarded, as below.
- A reply in the thread of one of drip's emails (In-Reply-To / References, or
  Outlook's Thread-Index) completes that email's goal only when its From (or
  Sender) is the participant or their delegate, the receiving server does not
  say the sender's domain failed DMARC, and the sender's own words say plainly
  that it is done (``drip.core.wording``). Any other reply is kept as an event and
  forwarded to a person: the cohort's reply_to (or first owner), unless that
  is the very mailbox it was read from.
- A message from a participant or delegate that names no email of drip's is
  kept and forwarded too: never dropped, never acted on.
- An auto-reply never does anything but leave an event.
- A bounce acts only on an email drip sent: its Message-ID must be in the
  bounce, and the failed address must be one that email went to. A hard
  failure bounces the participant; a soft one is counted; a delegate's hard
  failure leaves the delegate out of Cc.
- Anything else is not drip's, and is left alone.

Every change records who sent the message, what tied it to the participant
(the Message-ID it answers, or the token) and the rule that decided.

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
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from email.utils import make_msgid
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from sqlalchemy import Connection, bindparam, select, update

from drip import changes
from drip.config import Settings
from drip.core import answers, mime, reading, wording
from drip.core.bounces import Severity
from drip.core.errors import DripError
from drip.core.mime import Mailbox, compose_forward
from drip.core.program import Choices
from drip.core.reading import Incoming, Kind
from drip.core.senders import Vouch, address_forms, domain_of, same_address, trusted_results
from drip.core.states import EventKind, ParticipantStatus
from drip.core.tokens import Action, TokenError, read_thread_index, read_token
from drip.core.values import Address, email_key
from drip.core.wording import Reading, Said, Verdict
from drip.replies.mailboxes import Data, Oversize, Source
from drip.storage import store
from drip.storage.keyring import reply_address, signing_keys
from drip.storage.plainsql import Plain
from drip.storage.records import StoredDelivery, StoredEvent
from drip.storage.store import Store, delivery_table, received_table

logger = logging.getLogger(__name__)

#: how much of a reply's new text its event keeps
EXCERPT = 500
#: messages acted on per transaction
BATCH = 200
#: the link pages whose addresses only drip's own emails hold
_LINK_PAGES = tuple(action.path for action in Action)

# Built once and reused: a message costs a handful of statements, and building them was a third of it.
_SEEN = select(
    received_table.c.key_hash, received_table.c.id, received_table.c.forward_to, received_table.c.forwarded_at
).where(received_table.c.key_hash.in_(bindparam("keys", expanding=True)))
# Plain SQL (drip.storage.plainsql): these run for every message.
_RECORD = (
    "INSERT INTO received (key_hash, message_id, received_at, outcome, cohort_id, participant_id, "
    "forward_to) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_ANSWERED = (
    "SELECT id, participant_id, step, goal, message_id, sent_at FROM deliveries WHERE message_id IN ({})"
)
_FORWARDED = (
    update(received_table).where(received_table.c.id == bindparam("rid")).values(forwarded_at=bindparam("at"))
)
_DELIVERY = (
    delivery_table.c.id, delivery_table.c.participant_id, delivery_table.c.step, delivery_table.c.goal,
    delivery_table.c.message_id, delivery_table.c.sent_at,
)  # fmt: skip
_BY_ID = select(*_DELIVERY).where(
    delivery_table.c.id == bindparam("did"), delivery_table.c.message_id.is_not(None)
)
_WRITER = (
    "SELECT id FROM participants WHERE (email_key IN ({keys}) OR delegate_key IN ({keys})) "
    f"AND status <> '{ParticipantStatus.REMOVED.value}'"
)
_LATEST_SENT = (
    "SELECT id, participant_id, step, goal, message_id, sent_at FROM deliveries "
    "WHERE participant_id IN ({ids}) AND sent_at IS NOT NULL ORDER BY sent_at DESC, id DESC LIMIT 1"
)


class _Sent(NamedTuple):
    """A delivery that went out: what a reply or a bounce refers to."""

    id: int
    participant_id: int
    step: str
    goal: str | None
    message_id: str
    sent_at: dt.datetime | None


def _sent(conn: Connection, message_ids: Sequence[str]) -> list[_Sent]:
    """Return the deliveries sent under ``message_ids``."""
    if not message_ids:
        return []
    sql = Plain(conn)
    found = sql.rows(_ANSWERED.format(", ".join("?" * len(message_ids))), list(message_ids))
    return [_sent_row(sql, row) for row in found]


def _sent_row(sql: Plain, row: Sequence[Any]) -> _Sent:
    ident, participant_id, step, goal, message_id, sent_at = row
    return _Sent(ident, participant_id, step, goal, message_id, sql.read_instant(sent_at))


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
    "answered": "answered a check-in",
    "already": "about a goal already done",
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "soft_bounce": "soft bounces counted",
    "delegate_bounced": "delegates' addresses bounced",
    "delayed": "delay notices",
    "replied": "kept for a person",
    "auto_reply": "auto-replies",
    "unmatched": "not drip's",
    "seen": "seen before",
    "unreadable": "unreadable (set aside, left in the mailbox)",
    "too_large": "too large to read (set aside, left in the mailbox)",
    "to_retry": "not acted on (read again next time)",
}


@dataclass(frozen=True)
class _Outcome:
    name: str
    person: changes.Person | None = None

    @property
    def cohort_id(self) -> int | None:
        return self.person.cohort.id if self.person else None

    @property
    def participant_id(self) -> int | None:
        return self.person.id if self.person else None


_Result = tuple[_Outcome, "Forward | None"]


class Ingester:
    """Acts on messages from the reply mailbox; one per ``drip ingest`` or ``drip run``."""

    def __init__(self, db: Store, settings: Settings, send: Callable[[Forward], None] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.send = send
        self.done_words = settings.done_words
        self.ours = own_links(settings.base_url)
        self.trusted = settings.inbox_authserv_id or ()
        self._keys: tuple[str, ...] | None = None

    def read(self, source: Source, now: dt.datetime) -> Tally:
        """Act on every new message of ``source``; tell it which are dealt with.

        Messages are taken in batches, one transaction each, with a savepoint per message: a
        message that cannot be read is left in the mailbox and the rest of its batch goes on.
        A message whose forward failed stays for the next pass too.
        """
        tally = Tally()
        batch: list[tuple[str, Data]] = []
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

    def _batch(self, batch: Sequence[tuple[str, Data]], now: dt.datetime, tally: Tally, source: Any) -> None:
        read: list[tuple[str, bytes, Incoming]] = []
        set_aside: list[tuple[str, str, str]] = []
        for reference, data in batch:
            if isinstance(data, Oversize):
                limit = self.settings.max_message_bytes
                why = f"{data.size:,} bytes, more than DRIP_MAX_MESSAGE_BYTES ({limit:,})"
                set_aside.append((reference, f"oversize:{reference}:{data.size}", f"too_large: {why}"))
                continue
            try:
                read.append((reference, data, reading.read(data, self.ours)))
            except Exception as exc:  # noqa: BLE001 - one odd message must not stop the others
                why = (
                    str(exc) if isinstance(exc, reading.UnreadableMessage) else f"{type(exc).__name__}: {exc}"
                )
                set_aside.append(
                    (reference, "sha256:" + hashlib.sha256(data).hexdigest(), f"unreadable: {why}")
                )
        if set_aside:
            self._set_aside(set_aside, now, tally, source)
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

    def _set_aside(
        self, items: Sequence[tuple[str, str, str]], now: dt.datetime, tally: Tally, source: Any
    ) -> None:
        """Keep messages drip will not read out of every later read: recorded once, with a log line,
        and marked dealt with in the mailbox, where a person can still open them."""
        with self.db.transaction() as conn:
            hashes = {hashlib.sha256(key.encode()).hexdigest(): (ref, key, why) for ref, key, why in items}
            known = {row.key_hash for row in conn.execute(_SEEN, {"keys": list(hashes)})}
            sql = Plain(conn)
            for key_hash, (reference, key, why) in hashes.items():
                outcome = why.split(":", 1)[0]
                if key_hash not in known:
                    logger.warning("message %s set aside, never to be read again: %s", reference, why)
                    sql.rows(_RECORD, (key_hash, key[:998], sql.instant(now), outcome, None, None, None))
                tally.outcomes[outcome] += 1
        for reference, _, _ in items:
            source.done(reference)

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
                    outcomes["to_retry"] += 1
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
            return "seen", before.id, self._forward_again(conn, incoming, data, now) if pending else None
        outcome, forward = self._act(conn, incoming, data, now)
        sql = Plain(conn)
        [(row_id,)] = sql.rows(
            _RECORD,
            (key_hash, incoming.key[:998], sql.instant(now), outcome.name, outcome.cohort_id,
             outcome.participant_id, forward.to if forward else None),
        )  # fmt: skip
        # The same message twice in one batch: the second is a repeat, and the first does any forward.
        seen[key_hash] = _Seen(row_id, forward.to if forward else None, None, this_batch=True)
        return outcome.name, row_id, forward

    # --- deciding -------------------------------------------------------------------

    def _act(self, conn: Connection, incoming: Incoming, data: bytes, now: dt.datetime) -> _Result:
        if incoming.kind is Kind.BOUNCE:
            return self._bounce(conn, incoming, now), None
        for token in incoming.tokens:
            done = self._token(conn, token, incoming, data, now)
            if done is not None:
                return done
        delivery, matched = self._thread(conn, incoming)
        if delivery is None:
            return self._untied(conn, incoming, data, now)
        person = changes.person_by_id(conn, delivery.participant_id)
        if person is None:
            return _Outcome("unmatched"), None
        if incoming.kind is Kind.AUTO_REPLY:
            self._keep(conn, person, delivery, incoming, now, "an automatic reply", matched, auto=True)
            return _Outcome("auto_reply", person), None
        return self._reply(conn, person, delivery, matched, incoming, data, now)

    def _reply(
        self,
        conn: Connection,
        person: changes.Person,
        delivery: Any,
        matched: str,
        incoming: Incoming,
        data: bytes,
        now: dt.datetime,
    ) -> _Result:
        """A reply in the thread of one of drip's emails: done, a check-in's answer, or for a person."""
        why, who = self._sender(person, incoming)
        choices = person.program.choices_of(delivery.step)
        if choices is not None:
            return self._check_in(conn, person, delivery, choices, matched, incoming, data, now, why, who)
        reading = incoming.reading(self.done_words)
        if why is None and delivery.goal and reading.verdict is Verdict.DONE:
            evidence = self._evidence(incoming, matched, f"a reply {who}; {reading.rule}")
            evidence = _answering(evidence, person, delivery.goal, incoming, reading)
            done = changes.complete(conn, person, delivery.goal, now, evidence)
            if done.changed:
                return _Outcome("completed", person), None
            step = person.program.step(delivery.step)
            if step is None or not step.waits_for_completion:
                return _Outcome("already", person), None
            # "Done" to a congratulations email is likely about the next goal: a person reads it.
            why = f"{delivery.goal} was already done; it answers the '{delivery.step}' email"
        elif why is None and reading.verdict is Verdict.DONE:
            why = f"it answers the '{delivery.step}' email, which is about no goal"
        elif why is None:
            why = f"their words are {reading.verdict} ({reading.rule})"
        self._keep(conn, person, delivery, incoming, now, why, matched)
        return _Outcome("replied", person), self._forward(person, delivery.step, incoming, data, why)

    def _check_in(
        self,
        conn: Connection,
        person: changes.Person,
        delivery: Any,
        choices: Choices,
        matched: str,
        incoming: Incoming,
        data: bytes,
        now: dt.datetime,
        why: str | None,
        who: str,
    ) -> _Result:
        """A reply to a check-in: a plain yes or no answers one with two answers; the rest is for a person."""
        pair = choices.yes_no
        read = wording.read_answer(incoming.new_text)
        if why is None and person.status is ParticipantStatus.REMOVED:
            why = "they were removed from the cohort"
        if why is None and pair is not None and read.said in (Said.YES, Said.NO):
            choice = pair[0] if read.said is Said.YES else pair[1]
            evidence = self._evidence(incoming, matched, f"a reply {who}; {read.rule}")
            evidence = replace(evidence, excerpt=incoming.new_text[:EXCERPT])
            done = changes.answer(conn, person, delivery.step, choice, delivery.id, now, evidence)
            return _Outcome("answered" if done.changed else "already", person), None
        if why is None and pair is None:
            offers = f"the '{delivery.step}' email offers {len(choices.keys)} answers"
            why = f"{offers}; a reply is read as one only when there are two, a yes and a no"
        elif why is None:
            why = f"their words are {read.said} ({read.rule})"
        self._keep(conn, person, delivery, incoming, now, why, matched)
        return _Outcome("replied", person), self._forward(person, delivery.step, incoming, data, why)

    def _sender(self, person: changes.Person, incoming: Incoming) -> tuple[str | None, str]:
        """Say why the sender may not speak for the participant (None: they may), and who they are."""
        who = ""
        for address in (incoming.sender, incoming.on_behalf):
            if same_address(address, person.email):
                who = who or "from the participant"
            elif same_address(address, person.delegate_email):
                who = who or "from their delegate"
        if not who:
            said = incoming.sender or "no address"
            return f"it was sent from {said}, which is not the participant's or their delegate's address", ""
        results = trusted_results(incoming.authentication, self.trusted)
        if results is not None:
            vouch, how = results.vouch(domain_of(incoming.sender))
            if vouch is Vouch.FAIL:
                return f"the receiving server says {incoming.sender} failed authentication ({how})", who
            if vouch is Vouch.PASS:
                who += f" ({how})"
        return None, who

    def _token(
        self, conn: Connection, token: str, incoming: Incoming, data: bytes, now: dt.datetime
    ) -> _Result | None:
        """Act on a plus-addressed token; None when it is not a genuine, current one.

        A message to a reply-done address whose words take it back or hedge ("not yet", "I'll do it
        tomorrow") completes nothing: it is kept and forwarded, like a reply.
        """
        keys = self._signing_keys(conn)
        for action in (Action.DONE, Action.UNSUBSCRIBE):
            try:
                claim = read_token(keys, token, action, now.date())
            except TokenError:
                continue
            found = changes.person_of(conn, claim)
            if found is None:
                return None
            person, goal = found
            if goal is None:
                # An unsubscribe button may send its message marked Auto-Submitted: it still counts.
                evidence = self._evidence(incoming, "token", "unsubscribe address")
                changes.act(conn, claim, person, goal, now, evidence)
                return _Outcome("unsubscribed", person), None
            delivery = _last_sent(conn, person, goal)
            if incoming.kind is Kind.AUTO_REPLY:
                self._keep(conn, person, delivery, incoming, now, "an automatic reply", "token", auto=True)
                return _Outcome("auto_reply", person), None
            reading = incoming.reading(self.done_words)
            if reading.verdict in (Verdict.DONE, Verdict.OTHER, Verdict.EMPTY):
                evidence = self._evidence(
                    incoming, "token", f"the reply-done address of {goal}; {reading.rule}"
                )
                evidence = _answering(evidence, person, goal, incoming, reading)
                done = changes.complete(conn, person, goal, now, evidence)
                return _Outcome("completed" if done.changed else "already", person), None
            why = f"it went to the reply-done address of {goal}, but their words are {reading.verdict}"
            why += f" ({reading.rule})"
            self._keep(conn, person, delivery, incoming, now, why, "token")
            step = delivery.step if delivery is not None else goal
            return _Outcome("replied", person), self._forward(person, step, incoming, data, why)
        return None

    def _thread(self, conn: Connection, incoming: Incoming) -> tuple[Any, str]:
        """Return the delivery a reply answers and what tied it (a Message-ID, or Outlook's Thread-Index)."""
        row = self._answered(conn, incoming.answers)
        if row is not None:
            return row, row.message_id
        if incoming.thread_index:
            number = read_thread_index(self._signing_keys(conn), incoming.thread_index)
            found = conn.execute(_BY_ID, {"did": number}).one_or_none() if number is not None else None
            if found is not None:
                return found, f"Thread-Index of {found.message_id}"
        return None, ""

    def _untied(self, conn: Connection, incoming: Incoming, data: bytes, now: dt.datetime) -> _Result:
        """A message naming no email of drip's: kept for a person if a participant or delegate wrote it."""
        person, delivery = self._writer(conn, incoming)
        if person is None:
            return _Outcome("unmatched"), None
        if incoming.kind is Kind.AUTO_REPLY:
            self._keep(conn, person, delivery, incoming, now, "an automatic reply", "sender", auto=True)
            return _Outcome("auto_reply", person), None
        why = (
            "it names no email of drip's (no In-Reply-To, References or Thread-Index of drip's, no "
            "reply-done address), so drip cannot tell which goal it is about"
        )
        self._keep(conn, person, delivery, incoming, now, why, "sender")
        step = delivery.step if delivery is not None else "(none yet)"
        return _Outcome("replied", person), self._forward(person, step, incoming, data, why)

    def _writer(self, conn: Connection, incoming: Incoming) -> tuple[changes.Person | None, Any]:
        """Return the participant (or delegate's participant) who wrote, the one drip wrote to last."""
        keys = sorted(
            {form for address in (incoming.sender, incoming.on_behalf) for form in address_forms(address)}
        )
        if not keys:
            return None, None
        sql = Plain(conn)
        marks = ", ".join("?" * len(keys))
        ids = [row[0] for row in sql.rows(_WRITER.format(keys=marks), [*keys, *keys])]
        if not ids:
            return None, None
        found = sql.rows(_LATEST_SENT.format(ids=", ".join("?" * len(ids))), ids)
        latest = _sent_row(sql, found[0]) if found else None
        person = changes.person_by_id(conn, latest.participant_id if latest is not None else ids[0])
        return person, latest

    def _bounce(self, conn: Connection, incoming: Incoming, now: dt.datetime) -> _Outcome:
        """Act on a bounce of an email drip sent, for the addresses that email went to."""
        bounce = incoming.bounce
        if bounce is None or not bounce.failures:
            return _Outcome("delayed" if bounce is not None and bounce.only_delays else "unmatched")
        rows = self._returned(conn, (*bounce.message_ids, *incoming.answers))
        found: list[_Outcome] = []
        for failure in bounce.failures:
            for row in rows:
                person = changes.person_by_id(conn, row.participant_id)
                if person is None:
                    continue
                rule = f"{bounce.form} bounce, {failure.severity} ({failure.status or 'no status'})"
                evidence = self._evidence(incoming, row.message_id, rule, via="bounce")
                if same_address(failure.address, person.email):
                    if failure.severity is Severity.HARD:
                        changes.bounce(conn, person, now, evidence, failure.reason)
                    else:
                        changes.soft_bounce(
                            conn, person, now, evidence, failure.reason,
                            limit=self.settings.soft_bounce_limit,
                            within=dt.timedelta(days=self.settings.soft_bounce_days),
                        )  # fmt: skip
                    name = "bounced" if person.status is ParticipantStatus.BOUNCED else "soft_bounce"
                    found.append(_Outcome(name, person))
                elif (
                    same_address(failure.address, person.delegate_email) and failure.severity is Severity.HARD
                ):
                    changes.bounce_delegate(conn, person, failure.address, now, evidence, failure.reason)
                    found.append(_Outcome("delegate_bounced", person))
        order = ("bounced", "delegate_bounced", "soft_bounce")
        return min(found, key=lambda o: order.index(o.name)) if found else _Outcome("unmatched")

    @staticmethod
    def _answered(conn: Connection, message_ids: Sequence[str]) -> _Sent | None:
        """Return the delivery one of ``message_ids`` names (the most recent reference first)."""
        by_id = {row.message_id: row for row in _sent(conn, message_ids)}
        return next((by_id[mid] for mid in message_ids if mid in by_id), None)

    @staticmethod
    def _returned(conn: Connection, message_ids: Sequence[str]) -> list[_Sent]:
        """Return the deliveries a bounce names (the email that failed)."""
        return _sent(conn, [mid for mid in dict.fromkeys(message_ids) if mid])

    def _signing_keys(self, conn: Connection) -> tuple[str, ...]:
        if self._keys is None:
            self._keys = signing_keys(self.settings, conn)
        return self._keys

    @staticmethod
    def _evidence(incoming: Incoming, matched: str, rule: str, via: str = "reply") -> changes.Evidence:
        return changes.Evidence(
            via, message_id=incoming.key[:300], sender=incoming.sender[:320] or None, matched=matched[:300],
            rule=rule[:300],
        )  # fmt: skip

    def _keep(
        self,
        conn: Connection,
        person: changes.Person,
        delivery: Any,
        incoming: Incoming,
        now: dt.datetime,
        why: str,
        matched: str,
        *,
        auto: bool = False,
    ) -> None:
        data: dict[str, Any] = {
            "message_id": incoming.key[:300],
            "from": incoming.sender,
            "subject": incoming.subject[:300],
            "step": delivery.step if delivery is not None else None,
            "excerpt": incoming.new_text[:EXCERPT],
            "why": why[:300],
            "matched": matched[:300],
        }
        if auto:
            data["auto"] = incoming.auto_reason
        event = StoredEvent(person.cohort.id, EventKind.REPLIED, now, person.id, data=data)
        if delivery is not None:
            event = replace(event, delivery_id=delivery.id, goal=delivery.goal)
        store.append_events(conn, [event])

    # --- forwarding -----------------------------------------------------------------

    def _forward(
        self, person: changes.Person, step: str, incoming: Incoming, data: bytes, why: str
    ) -> Forward | None:
        """A reply for a person: to the cohort's reply_to (else its first owner), unless replies go there."""
        settings = person.cohort.settings
        sender, reply_to = settings.sender, settings.reply_to
        target = reply_to.address if reply_to else next(iter(settings.owners), None)
        inbox = reply_address(self.settings, sender, reply_to)
        if not target or email_key(target) == email_key(inbox):
            return None  # the reply already sits in the mailbox people read
        message_id = make_msgid("drip.forward", domain=Address(sender.address).ascii_domain)
        body = _forward_bytes(sender, target, person, step, incoming, data, message_id, why)
        return Forward(sender.address, target, body, message_id)

    def _forward_again(
        self, conn: Connection, incoming: Incoming, data: bytes, now: dt.datetime
    ) -> Forward | None:
        """Rebuild the forward of a message whose forward failed before (nothing is acted on again)."""
        delivery, _ = self._thread(conn, incoming)
        person = changes.person_by_id(conn, delivery.participant_id) if delivery is not None else None
        for token in incoming.tokens if person is None else ():
            try:
                claim = read_token(self._signing_keys(conn), token, Action.DONE, now.date())
            except TokenError:
                continue
            found = changes.person_by_goal(conn, claim.object_id)
            person = found[0] if found is not None else None
        if person is None:
            person, delivery = self._writer(conn, incoming)
        if person is None:
            return None
        step = delivery.step if delivery is not None else "(none yet)"
        return self._forward(person, step, incoming, data, "it was kept for a person when first read")

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


def _answering(
    evidence: changes.Evidence, person: changes.Person, goal: str, incoming: Incoming, reading: Reading
) -> changes.Evidence:
    """Keep the reply's own words (quotes and signature cut) as the answer to the goal's question."""
    ask = person.program.goal(goal).ask
    if ask is None:
        return evidence
    return replace(evidence, answer=answers.from_reply(incoming.new_text, ask, reading.said))


def own_links(base_url: str) -> tuple[str, ...]:
    """Return what only drip's own emails hold: its link pages' addresses, plain and URL-encoded (as
    Outlook's Safe Links and other scanners rewrite them). A line holding one is quoted text."""
    parts = urlsplit(base_url)
    base = f"{parts.netloc}{parts.path.rstrip('/')}"
    plain = [f"{base}/{page}/" for page in _LINK_PAGES]
    return tuple(plain + [quote(link, safe="") for link in plain])


def _last_sent(conn: Connection, person: changes.Person, goal: str) -> StoredDelivery | None:
    """The last email about ``goal`` that went to ``person``, the one a reply-done message answers."""
    sent = [
        row for row in store.deliveries_of_one(conn, person.id).values() if row.sent_at and row.goal == goal
    ]
    return max(sent, key=lambda row: row.sent_at or dt.datetime.min, default=None)


_UNSAFE = re.compile(r"[\r\n\0]")


def _header_text(value: str) -> str:
    """Make text from someone else's message fit for a header we write (CVE-2024-6923)."""
    return " ".join(_UNSAFE.sub(" ", value).replace("=?", "= ?").split())


def _forward_bytes(
    sender: Mailbox,
    target: str,
    person: changes.Person,
    step: str,
    incoming: Incoming,
    data: bytes,
    message_id: str,
    why: str,
) -> bytes:
    note = (
        f"{person.name} <{person.email}>, in {person.cohort.name}, replied to the '{step}' email. "
        "Answering this message writes to them.\n\n"
        f"drip recorded nothing from it: {why}.\n\n"
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
