"""Send what is due: claim, re-check, render, send, record. One bad email never stops the rest.

The main thread claims a batch (straight into ``sending``, each attempt
counted and the key of its Message-ID fixed), re-checks each delivery against
the database (participant still active, goal still open, step still in the
program, not stale), and renders and composes the messages. Sending threads,
one per SMTP connection, hand them to the relay and record each outcome,
with its Message-ID, right after the server's reply: ``sent``, a retry with
backoff, ``failed`` with the reply kept. If the relay refuses *us* (login, TLS, unreachable),
sending pauses: claims go back unsent and nothing is marked failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue as queues
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drip import changes
from drip.config import Settings
from drip.core.bounces import Severity, severity, status_of
from drip.core.errors import DripError
from drip.core.message import current_delegate
from drip.core.plan import Timing
from drip.core.program import Audience, Step
from drip.core.senders import same_address
from drip.core.states import CohortStatus, DeliveryStatus, EventKind, GoalStatus, ParticipantStatus
from drip.sending import claims, dkim
from drip.sending.composer import (
    CohortParts,
    CohortPartsCache,
    Composer,
    ComposerGone,
    Job,
    Outgoing,
    Task,
    build_or_say_why,
    composer_for,
)
from drip.sending.transport import PermanentSendError, RelayError, TokenBucket, TransientSendError, Transport
from drip.storage import store
from drip.storage.keyring import instance_id, key_id, reply_address, signing_keys
from drip.storage.leases import Lease
from drip.storage.records import StoredCohort

logger = logging.getLogger(__name__)

#: deliveries claimed at once
BATCH_SIZE = 200
#: messages handed to a sending thread at once: one queue operation, and one wake-up, per handful
HANDFUL = 20
#: the first retry waits this long; each further one twice as long, up to RETRY_CAP
RETRY_BASE = dt.timedelta(minutes=1)
RETRY_CAP = dt.timedelta(hours=2)


class RelayPaused(DripError):
    """Sending stopped because the relay refused drip itself; nothing was marked failed."""


class DispatchError(DripError):
    """Sending stopped because something other than the relay failed (the database, most likely)."""


@dataclass
class Tally:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    released: int = 0
    #: what held email back, for the operator
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, outcome: str) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def merge(self, other: Tally) -> None:
        """Count ``other``'s outcomes and problems in this one too."""
        for name in ("sent", "deferred", "failed", "skipped", "cancelled", "released"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += [p for p in other.problems if p not in self.problems]

    def summary(self) -> str:
        parts = [(self.sent, "sent"), (self.deferred, "to retry"), (self.failed, "failed"),
                 (self.skipped, "skipped"), (self.cancelled, "cancelled")]  # fmt: skip
        said = ", ".join(f"{n} {label}" for n, label in parts if n) or "nothing due"
        return "; ".join([said, *self.problems])


@dataclass(frozen=True)
class _Ending:
    """How a claimed delivery ends without being sent."""

    status: DeliveryStatus
    reason: str
    kind: EventKind
    #: which Tally count it adds to
    outcome: str


def _cancel(reason: str) -> _Ending:
    return _Ending(DeliveryStatus.CANCELLED, reason, EventKind.CANCELLED, "cancelled")


def _skip(reason: str) -> _Ending:
    return _Ending(DeliveryStatus.SKIPPED, reason, EventKind.SKIPPED, "skipped")


def _could_not_build(row: claims.Claimed, reason: str) -> _Ending:
    logger.error("delivery %d (%s): %s", row.id, row.step, reason)
    return _Ending(DeliveryStatus.FAILED, reason, EventKind.FAILED, "failed")


#: a delivery checked and due to be built: its claim, cohort parts, participant's timing and step
_Job = tuple[claims.Claimed, CohortParts, Timing, Step]


@dataclass
class _Prepared:
    """A claimed batch after its checks: its messages, built here, or pending in the composing process."""

    batch: claims.Batch
    jobs: list[_Job]
    ready: list[Outgoing] = field(default_factory=list)
    #: the composing process building it, if any
    composer: Composer | None = None


class _Hold:
    """A delivery that waits: its participant or cohort was paused after it was claimed."""


_HOLD = _Hold()


class Dispatcher:
    """Sends due email for every cohort in one database."""

    def __init__(
        self,
        db: store.Store,
        settings: Settings,
        transport_factory: Callable[[], Transport],
        *,
        owner: str | None = None,
        real_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.db = db
        self.settings = settings
        self.transport_factory = transport_factory
        self.owner = owner or claims.worker_id()
        self.real_clock = real_clock
        self.batch_size = batch_size
        self.stale_after = dt.timedelta(hours=settings.stale_after_hours)
        self.lease = Lease.of_seconds(settings.lease_seconds)
        self.bucket = TokenBucket(settings.smtp_rate) if settings.smtp_rate else None
        self.stop = threading.Event()
        self._cohorts = CohortPartsCache()
        #: the composing process signs what it composes (its own core); what is built here, the
        #: transport signs in the sending threads, where OpenSSL's signing overlaps this thread
        self.dkim = dkim.key_spec(settings)
        #: cohorts whose program cannot be loaded, held for the rest of a run
        self._held: set[int] = set()
        with db.transaction() as conn:
            self.keys = signing_keys(settings, conn, create=True)
            self.instance = instance_id(conn, create=True)
            released = claims.end_dead_leases(conn, real_clock())
        if released:
            logger.warning("taking over %d deliveries claimed by processes that are gone", released)

    # --- the main loop -------------------------------------------------------------

    def run_until_idle(self, now: dt.datetime) -> Tally:
        """Send everything due at ``now`` (the virtual clock, if any); return what happened.

        Raises RelayPaused when the relay refuses drip itself, and DispatchError
        when sending could not go on (the database failed under a sending thread).
        """
        tally = Tally()
        with self.db.reading() as conn:  # `drip keys rotate|retire` reaches a running worker
            self.keys = signing_keys(self.settings, conn)
        batch_size = self._batch_size()
        outgoing: queues.Queue[list[Outgoing] | None] = queues.Queue(
            maxsize=max(2, 2 * batch_size // HANDFUL)
        )
        halted: list[Exception] = []  # why sending stopped early: a RelayError, or what broke a thread
        unsent: list[int] = []  # taken by a thread that stopped before trying them
        self._held = set()
        senders = [
            threading.Thread(
                target=self._send_loop,
                args=(outgoing, now, tally, halted, unsent),
                name=f"drip-sender-{n}",
                daemon=True,
            )
            for n in range(self.settings.smtp_connections)
        ]
        for sender in senders:
            sender.start()
        renewing = threading.Event()
        heartbeat = threading.Thread(
            target=self._renew_leases, args=(renewing,), name="drip-leases", daemon=True
        )
        heartbeat.start()
        composer = composer_for(self.settings.compose_processes)
        waiting: _Prepared | None = None  # a batch the composing process is building

        def hand_over_all(ready: list[Outgoing]) -> None:
            for start in range(0, len(ready), HANDFUL):
                handful = ready[start : start + HANDFUL]
                if self.stop.is_set() or halted or not self._hand_over(outgoing, handful, senders):
                    self._release([item.row.id for item in handful], tally)

        try:
            while not self.stop.is_set() and not halted:
                with self.db.transaction() as conn:
                    rows = claims.claim_due(
                        conn, now, self.real_clock(), self.owner, batch_size, self.lease,
                        key_id(self.keys[0]), self._held,
                    )  # fmt: skip
                if not rows:
                    break
                aside = composer is not None and composer.takes(len(rows) >= batch_size)
                prepared = self._prepare(rows, now, tally, composer if aside else None)
                if waiting is not None:
                    hand_over_all(self._collect(waiting, now, tally))
                    waiting = None
                if prepared.composer is None:
                    hand_over_all(prepared.ready)
                else:
                    waiting = prepared
            if waiting is not None:
                hand_over_all(self._collect(waiting, now, tally))
                waiting = None
        finally:
            if waiting is not None:  # the loop broke off: what was being composed goes back unsent
                self._release([job[0].id for job in waiting.jobs], tally)
            if composer is not None:
                composer.close()
            for _ in senders:
                self._hand_over(outgoing, None, senders)
            for sender in senders:
                sender.join()
            renewing.set()
            heartbeat.join()
            # Whatever no thread took, or a thread took but never tried (it broke), goes back.
            leftovers = list(unsent)
            while not outgoing.empty():
                left = outgoing.get_nowait()
                leftovers += [item.row.id for item in left or ()]
            self._release(leftovers, tally)
        if halted:
            if isinstance(halted[0], RelayError):
                raise RelayPaused(f"sending paused: {halted[0]}")
            raise DispatchError(f"sending stopped: {halted[0]}")
        return tally

    def _batch_size(self) -> int:
        """Claim no more than can be sent well within a lease (a slow relay gets small batches)."""
        if self.bucket is None:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.bucket.rate * self.lease.length.total_seconds() / 4)))

    def _renew_leases(self, done: threading.Event) -> None:
        """Keep this worker's claims alive while it runs: another worker takes them only if it dies."""
        while not done.wait(self.lease.length.total_seconds() / 3):
            try:
                with self.db.transaction() as conn:
                    claims.renew(conn, self.owner, self.real_clock(), self.lease)
            except DripError as exc:
                logger.warning("could not renew claims: %s", exc)

    @staticmethod
    def _hand_over(
        outgoing: queues.Queue[list[Outgoing] | None],
        item: list[Outgoing] | None,
        senders: list[threading.Thread],
    ) -> bool:
        """Queue a handful of messages (None: stop) for a sending thread; False when none is left
        alive to take it."""
        while any(sender.is_alive() for sender in senders):
            try:
                outgoing.put(item, timeout=0.5)
                return True
            except queues.Full:
                continue
        return False

    def _send_loop(
        self,
        outgoing: queues.Queue[list[Outgoing] | None],
        now: dt.datetime,
        tally: Tally,
        halted: list[Exception],
        unsent: list[int],
    ) -> None:
        """Send what the main thread hands over; ``unsent`` gets what this thread took but, having
        stopped, never tried (the main thread gives it back)."""
        transport = self.transport_factory()
        recorder = claims.SentRecorder(self.db.engine, self.owner)
        try:
            while (handful := outgoing.get()) is not None:
                for n, item in enumerate(handful):
                    if self.stop.is_set() or halted:
                        # not sent: back in the queue, no attempt counted
                        self._release([rest.row.id for rest in handful[n:]], tally)
                        break
                    try:
                        self._send_one(transport, recorder, item, now, tally, halted)
                    except Exception as exc:  # noqa: BLE001 - the per-delivery boundary: stop, never die silently
                        # Most likely the database failed; the delivery stays "sending" and, if it did
                        # go, goes again under the same Message-ID once its lease runs out.
                        logger.exception("sending stopped at delivery %d", item.row.id)
                        halted.append(exc)
                        unsent += [rest.row.id for rest in handful[n + 1 :]]
                        return
        finally:
            transport.close()
            recorder.close()

    def _send_one(
        self,
        transport: Transport,
        recorder: claims.SentRecorder,
        item: Outgoing,
        now: dt.datetime,
        tally: Tally,
        halted: list[Exception],
    ) -> None:
        if self.bucket:
            self.bucket.acquire()
        try:
            refused = transport.send(item.sender, item.recipients, item.data, item.message_id)
        except RelayError as exc:
            halted.append(exc)
            logger.error("sending paused: %s", exc)
            self._release([item.row.id], tally)
        except PermanentSendError as exc:
            note = f" ({', '.join(exc.accepted)} received it)" if exc.accepted else ""
            theirs = bool(exc.recipient) and item.audience is Audience.PARTICIPANT
            self._fail(item.row, f"{exc}{note}", now, tally, item.message_id, refused=theirs)
        except TransientSendError as exc:
            theirs = bool(exc.recipient) and item.audience is Audience.PARTICIPANT
            self._retry(item.row, str(exc), now, tally, item.message_id, exc.accepted, refused=theirs)
        else:
            self._sent(recorder, item, max(now, item.row.due_at), refused, tally)
            if refused and item.audience is Audience.PARTICIPANT:
                self._record(lambda c: self._delegate_refused(c, item, refused, now))

    def _record(self, change: Callable[[Any], None]) -> None:
        with self.db.transaction() as conn:
            change(conn)

    def _release(self, ids: list[int], tally: Tally) -> None:
        with self.db.transaction() as conn:
            released = claims.release(conn, ids, self.owner)
        for _ in range(released):
            tally.add("released")

    def _sent(
        self,
        recorder: claims.SentRecorder,
        item: Outgoing,
        at: dt.datetime,
        refused: dict[str, str],
        tally: Tally,
    ) -> None:
        # A delegate's address refused while the participant's was taken: sent, with a note.
        note = "; ".join(f"{address} refused: {reply}" for address, reply in refused.items()) or None
        if not recorder.record(item.row, item.message_id, at, note):
            logger.warning("delivery %d was sent after another worker took it over", item.row.id)
        tally.add("sent")

    def _fail(
        self,
        row: claims.Claimed,
        reason: str,
        now: dt.datetime,
        tally: Tally,
        message_id: str,
        *,
        refused: bool = False,
    ) -> None:
        """Record a delivery failed after it was handed to the relay under ``message_id``. ``refused``:
        the server refused the participant's address at RCPT, which makes it a bounce."""
        logger.warning("delivery %d (%s) failed: %s", row.id, row.step, reason)

        def change(conn: Any) -> None:
            claims.finish(
                conn, row, DeliveryStatus.FAILED, reason, now, EventKind.FAILED, self.owner, message_id
            )
            if refused:
                self._address_refused(conn, row, message_id, reason, now)

        self._record(change)
        tally.add("failed")

    def _address_refused(
        self, conn: Any, row: claims.Claimed, message_id: str, reason: str, now: dt.datetime
    ) -> None:
        """The relay refused the participant's address for good: 5.1.x bounces them at once (no further
        email is tried), anything else counts as a soft bounce."""
        person = changes.person_by_id(conn, row.participant_id)
        if person is None:
            return
        status = status_of(reason)
        found = severity(status, reason)
        evidence = changes.Evidence("send", matched=message_id, rule=f"refused at RCPT, {found} ({status})")
        if found is Severity.HARD:
            changes.bounce(conn, person, now, evidence, reason)
        else:
            changes.soft_bounce(
                conn, person, now, evidence, reason, limit=self.settings.soft_bounce_limit,
                within=dt.timedelta(days=self.settings.soft_bounce_days),
            )  # fmt: skip

    def _delegate_refused(self, conn: Any, item: Outgoing, refused: dict[str, str], now: dt.datetime) -> None:
        """The participant's copy went but the delegate's address was refused for good: stop copying them."""
        person = changes.person_by_id(conn, item.row.participant_id)
        if person is None:
            return
        for address, reply in refused.items():
            if (
                same_address(address, person.delegate_email)
                and severity(status_of(reply), reply) is Severity.HARD
            ):
                evidence = changes.Evidence("send", matched=item.message_id, rule="delegate refused at RCPT")
                changes.bounce_delegate(conn, person, address, now, evidence, reply)

    def _retry(
        self,
        row: claims.Claimed,
        reason: str,
        now: dt.datetime,
        tally: Tally,
        message_id: str,
        accepted: tuple[str, ...] = (),
        *,
        refused: bool = False,
    ) -> None:
        attempts = row.attempts  # the claim counted this one
        if attempts >= self.settings.max_attempts:
            self._fail(
                row, f"gave up after {attempts} attempts: {reason}", now, tally, message_id, refused=refused
            )
            return
        wait = min(RETRY_BASE * 2 ** (attempts - 1), RETRY_CAP) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter
        self._record(
            lambda c: claims.retry_later(c, row, reason, now + wait, now, self.owner, message_id, accepted)
        )
        tally.add("deferred")

    # --- preparing a batch ---------------------------------------------------------------

    def _prepare(
        self, rows: list[claims.Claimed], now: dt.datetime, tally: Tally, composer: Composer | None = None
    ) -> _Prepared:
        """Re-check a claimed batch, end what must not be sent, give back what must wait, and build the
        rest: here, or (with ``composer``) in the composing process, collected by ``_collect``."""
        endings: list[tuple[claims.Claimed, _Ending]] = []
        release: list[int] = []
        jobs: list[_Job] = []
        with self.db.reading() as conn:
            batch = claims.load_batch(conn, rows)
        cohorts: dict[int, CohortParts] = {}
        for cohort in batch.cohorts.values():
            if cohort.id in self._held:
                continue
            try:
                cohorts[cohort.id] = self._cohort(cohort)
            except DripError as exc:
                # A program that cannot load holds its own cohort's email, not everyone's.
                self._held.add(cohort.id)
                logger.error("cohort %s is held: its program cannot be loaded: %s", cohort.slug, exc)
                tally.problems.append(f"cohort {cohort.slug!r} held: {exc}")
        for row in rows:
            if row.cohort_id in self._held:
                release.append(row.id)
                continue
            parts = cohorts[row.cohort_id]
            timing = parts.timing(row, batch)
            verdict = self._check(row, batch, parts, timing, now)
            if isinstance(verdict, _Hold):
                release.append(row.id)
            elif isinstance(verdict, _Ending):
                endings.append((row, verdict))
            else:
                jobs.append((row, parts, timing, verdict))
        self._end(endings, release, now, tally)
        prepared = _Prepared(batch, jobs)
        if composer is not None and jobs:
            task = Task(
                now, self.settings.base_url, self.instance,
                {cid: (parts.cohort, parts.reply_address) for cid, parts in cohorts.items()},
                batch, [Job(row, self._keys_for(row)) for row, _, _, _ in jobs], self.dkim,
            )  # fmt: skip
            try:
                composer.submit(task)
                prepared.composer = composer
            except ComposerGone as exc:
                composer.give_up(exc)
        if prepared.composer is None:
            prepared.ready = self._build_here(prepared, jobs, now, tally)
        return prepared

    def _collect(self, prepared: _Prepared, now: dt.datetime, tally: Tally) -> list[Outgoing]:
        """Return the messages the composing process built for ``prepared``, ending those it could not
        build; if it failed, build the batch here, and every batch after."""
        assert prepared.composer is not None
        try:
            results = prepared.composer.result()
        except ComposerGone as exc:
            prepared.composer.give_up(exc)
            return self._build_here(prepared, prepared.jobs, now, tally)
        ready: list[Outgoing] = []
        endings: list[tuple[claims.Claimed, _Ending]] = []
        again: list[_Job] = []
        for job, result in zip(prepared.jobs, results, strict=True):
            if isinstance(result, Outgoing):
                ready.append(result)
            elif result is None:
                again.append(job)
            else:
                endings.append((job[0], _could_not_build(job[0], result)))
        self._end(endings, [], now, tally)
        return ready + self._build_here(prepared, again, now, tally)

    def _build_here(
        self, prepared: _Prepared, jobs: list[_Job], now: dt.datetime, tally: Tally
    ) -> list[Outgoing]:
        """Build ``jobs`` in this process; end those that cannot be built."""
        ready: list[Outgoing] = []
        endings: list[tuple[claims.Claimed, _Ending]] = []
        for row, parts, timing, step in jobs:
            built = build_or_say_why(
                row, prepared.batch, parts, timing, step, now,
                base_url=self.settings.base_url, keys=self._keys_for(row), instance=self.instance,
            )  # fmt: skip
            if isinstance(built, Outgoing):
                ready.append(built)
            else:
                endings.append((row, _could_not_build(row, built)))
        self._end(endings, [], now, tally)
        return ready

    def _end(
        self,
        endings: list[tuple[claims.Claimed, _Ending]],
        release: list[int],
        now: dt.datetime,
        tally: Tally,
    ) -> None:
        """End claimed deliveries that will not be sent, and give back those that wait."""
        if not endings and not release:
            return
        with self.db.transaction() as conn:
            for row, ending in endings:
                claims.finish(conn, row, ending.status, ending.reason, now, ending.kind, self.owner)
            claims.release(conn, release, self.owner)
        for _, ending in endings:
            tally.add(ending.outcome)

    def _check(
        self, row: claims.Claimed, batch: claims.Batch, parts: CohortParts, timing: Timing, now: dt.datetime
    ) -> _Ending | _Hold | Step:
        """Say whether a claimed delivery may go now: its step (yes), _HOLD (not yet), or how it ends."""
        person = batch.participants[row.participant_id]
        if parts.cohort.status is not CohortStatus.ACTIVE or person.status is ParticipantStatus.PAUSED:
            return _HOLD  # paused since it was claimed: it waits, and goes if resumed in time
        if person.status is not ParticipantStatus.ACTIVE:
            return _cancel(f"the participant is {person.status}")
        step = parts.step(row.step, timing)
        if step is None:
            return _cancel("the step is no longer in the program")
        if step.goal:
            goal = next((g for g in batch.goals.get(row.participant_id, []) if g.goal == step.goal), None)
            status = goal.status if goal else GoalStatus.OPEN
            wanted = GoalStatus.DONE if step.waits_for_completion else GoalStatus.OPEN
            if status is not wanted:
                return _cancel(f"the goal {step.goal} is {status}")
        if step.to is Audience.DELEGATE and not current_delegate(person):
            return _skip("the participant has no delegate to send it to")
        if step.to is Audience.OWNERS and not parts.cohort.settings.owners:
            return _skip("the cohort has no owners to send it to")
        late = now - row.due_at
        if late > self.stale_after:
            hours = late.total_seconds() / 3600
            return _skip(f"{hours:.0f} hours late (due {row.due_at:%Y-%m-%d %H:%M} UTC); too stale to send")
        return step

    def _cohort(self, cohort: StoredCohort) -> CohortParts:
        """Return what the cohort's emails share, made again when its program or its row changed."""
        sender, reply_to = cohort.settings.sender, cohort.settings.reply_to
        return self._cohorts.get(cohort, reply_address(self.settings, sender, reply_to))

    def _keys_for(self, row: claims.Claimed) -> tuple[str, ...]:
        """Return the keys with the one ``row``'s Message-ID is made with first: a delivery taken over
        after the keys were rotated goes again under the id it may already have gone under."""
        if row.message_key is None or row.message_key == key_id(self.keys[0]):
            return self.keys
        first = next((key for key in self.keys if key_id(key) == row.message_key), None)
        if first is None:  # retired since: its ids no longer verify, so a new one is right
            return self.keys
        return (first, *(key for key in self.keys if key != first))
