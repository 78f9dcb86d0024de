"""``drip run``: APScheduler drives the periodic jobs; the deliveries table is the queue.

There is one job per purpose, never one per email: dispatch every few
seconds (coalesced, one at a time, and a late run is never dropped), the
inbox poll and the owners' weekly digest (each in the one worker holding
its lead, ``drip.storage.leader``). ``--once`` sends what is due and exits,
for cron and tests; ``--now`` runs on a virtual clock; SIGTERM or SIGINT
finish the message in flight, give back the rest, and exit.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from drip.config import Settings, redact_url
from drip.core.errors import ConfigError, DripError, StoreError
from drip.owners import digest
from drip.owners.digest import Send
from drip.replies import mailboxes
from drip.replies.handling import Forward, Ingester
from drip.replies.handling import Tally as InboxTally
from drip.sending import catcher, dkim, oauth, webhooks
from drip.sending.dispatcher import Dispatcher, DispatchError, RelayPaused, Tally
from drip.sending.transport import SMTPSettings, SMTPTransport, Transport, open_transport, signed
from drip.storage.leader import Lead
from drip.storage.store import Store
from drip.web import spool

logger = logging.getLogger(__name__)

#: how often the dispatch job runs
DISPATCH_EVERY = dt.timedelta(seconds=5)
#: how often the digest job looks for a digest due
DIGEST_EVERY = dt.timedelta(minutes=1)
#: how long sending waits after the relay refused drip itself
#: after the relay refuses drip itself or is busy (421): the first pause, doubled each time in a row
PAUSE_AFTER_RELAY_ERROR = dt.timedelta(minutes=1)
PAUSE_AFTER_RELAY_ERROR_MAX = dt.timedelta(minutes=30)
#: how long sending waits after the database refused it (held by another process, or down), in seconds
PAUSE_AFTER_STORE_ERROR = 30
#: how often a server records the clicks it kept while the database was busy, in seconds
KEPT_CLICKS_EVERY = 5.0


class Clock:
    """Real time, or virtual time that starts at ``start`` and runs at real speed."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.start = start
        self.began = time.monotonic()

    def now(self) -> dt.datetime:
        if self.start is None:
            return dt.datetime.now(dt.UTC)
        return self.start + dt.timedelta(seconds=time.monotonic() - self.began)


@contextmanager
def transports(settings: Settings, say: Callable[[str], None]) -> Iterator[Callable[[], Transport]]:
    """Yield a factory of transports: the relay in DRIP_SMTP_URL, or the built-in mail catcher."""
    sign = dkim.signing(settings)
    if settings.smtp_url:
        relay(settings).close()  # a set-up drip cannot send with (URL, DKIM key, OAuth2) is said now
        say(f"Sending through {redact_url(settings.smtp_url)}.")
        yield lambda: relay(settings)
        return
    with catcher.running(Path(settings.mail_dir), settings.catcher_port) as (host, port):
        say(
            "No DRIP_SMTP_URL is set: email goes to the built-in mail catcher and nothing leaves this "
            f"machine. Read it at {settings.base_url}/inbox"
        )
        yield lambda: signed(SMTPTransport(SMTPSettings(host, port, tls=False, starttls=False)), sign)


def relay(settings: Settings) -> Transport:
    """Return the transport DRIP_SMTP_URL names, signing with DKIM when that is set up."""
    return signed(open_transport(settings.smtp_url, oauth.source_for(settings)), dkim.signing(settings))


@contextmanager
def sending_one_by_one(settings: Settings) -> Iterator[Send]:
    """Yield how to send the odd message (a forwarded reply, a digest asked for by hand): through
    the relay, or into the mail catcher's folder when there is none."""
    if not settings.smtp_url:
        sign = dkim.signing(settings)

        def keep(sender: str, recipients: Sequence[str], data: bytes, message_id: str) -> None:
            catcher.keep(Path(settings.mail_dir), sign(data) if sign else data)  # nothing leaves the machine

        yield keep
        return
    relay(settings).close()  # a set-up drip cannot send with is said before the first message, once
    with opened_on_first_use(lambda: relay(settings)) as send:
        yield send


@contextmanager
def opened_on_first_use(factory: Callable[[], Transport]) -> Iterator[Send]:
    """Yield a sender that opens one transport when first used, and close it afterwards."""
    opened: list[Transport] = []

    def send(sender: str, recipients: Sequence[str], data: bytes, message_id: str) -> None:
        if not opened:
            opened.append(factory())
        opened[0].send(sender, recipients, data, message_id)

    try:
        yield send
    finally:
        for transport in opened:
            transport.close()


@contextmanager
def forwarding(settings: Settings) -> Iterator[Callable[[Forward], None]]:
    """Yield how to hand a reply on: through the relay, or into the mail catcher's folder."""
    with sending_one_by_one(settings) as send:
        yield lambda forward: send(forward.sender, [forward.to], forward.data, forward.message_id)


def send_digests(
    settings: Settings, db: Store, now: dt.datetime, factory: Callable[[], Transport], lead: Lead,
    say: Callable[[str], None],
) -> int:  # fmt: skip
    """Send the owners' digests due at ``now``, from the one worker holding the digest lead."""
    if not lead.held():
        return 0
    with opened_on_first_use(factory) as send:
        sent = digest.send_due(db, settings, now, send)
    if sent:
        say(f"Sent {len(sent)} weekly digest(s) to cohort owners.")
    return len(sent)


def read_inbox(
    settings: Settings, db: Store, now: dt.datetime, say: Callable[[str], None], lead: Lead
) -> InboxTally | None:
    """Act on what arrived in DRIP_INBOX_URL; None when no inbox is set, or another worker reads it."""
    if not settings.inbox_url:
        return None
    was_held = lead.holding
    if not lead.held():
        return None
    if not was_held:
        say("This worker reads the inbox; other workers on this database leave it.")
    try:
        with mailboxes.opened(
            mailboxes.source_for(
                inbox_url=settings.inbox_url,
                limit=settings.max_message_bytes,
                oauth=oauth.source_for(settings),
            )
        ) as source:
            with forwarding(settings) as send:
                tally = Ingester(db, settings, send).read(source, now)
    except mailboxes.MailboxError as exc:
        logger.error(
            "reading the inbox failed (sending goes on; next try in %s s): %s", settings.inbox_every, exc
        )
        say(f"Inbox not read: {exc}")
        return None
    if sum(tally.outcomes.values()):
        say(f"Inbox: {tally.summary()}.")
    return tally


def run_once(
    settings: Settings,
    db: Store,
    now: dt.datetime | None,
    until: dt.datetime | None,
    step: dt.timedelta,
    say: Callable[[str], None],
) -> Tally:
    """Send what is due at ``now``; with ``until``, walk virtual time to it, ``step`` by step.

    SIGTERM or SIGINT finish the message in flight, give back the rest, and return.
    """
    total = Tally()
    with ExitStack() as stack:
        factory = stack.enter_context(transports(settings, say))
        dispatcher = Dispatcher(db, settings, factory)
        with stop_on_signals(dispatcher, say):
            moment = now or dt.datetime.now(dt.UTC)
            end = until or moment
            with db.lead("inbox") as lead:  # a reply may stop a reminder that is about to go
                read_inbox(settings, db, moment, say, lead)
            digests = stack.enter_context(db.lead("digest"))
            walked = [moment]  # the webhook thread posts as of the moment the walk has reached
            poster = stack.enter_context(posting(db, lambda: walked[0]))
            while True:
                walked[0] = moment
                tally = dispatcher.run_until_idle(moment)
                send_digests(settings, db, moment, factory, digests, say)
                total.merge(tally)
                if moment >= end or dispatcher.stop.is_set():
                    poster.finish()  # what is due at the end goes, within the posts' time-outs
                    return total
                moment = min(moment + step, end)


@contextmanager
def posting(db: Store, clock: Callable[[], dt.datetime]) -> Iterator[webhooks.Poster]:
    """Run the webhook thread while the block runs: it never holds up sending email."""
    poster = webhooks.Poster(db, clock, f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    poster.start()
    try:
        yield poster
    finally:
        poster.stop()


@contextmanager
def stop_on_signals(
    dispatcher: Dispatcher, say: Callable[[str], None], also: threading.Event | None = None
) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT ask the dispatcher to stop after the message in flight."""

    def stop(signum: int, _frame: object) -> None:
        say(f"{signal.Signals(signum).name}: finishing the message in flight, then stopping.")
        dispatcher.stop.set()
        if also is not None:
            also.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_forever(
    settings: Settings, db: Store, start: dt.datetime | None, web: bool, say: Callable[[str], None]
) -> None:
    """Dispatch every few seconds until SIGTERM or SIGINT."""
    from apscheduler.schedulers.background import BackgroundScheduler

    clock = Clock(start)
    stopping = threading.Event()
    paused_until = [0.0]
    relay_pauses = [0]  # in a row: each doubles the next pause

    with ExitStack() as stack:
        factory = stack.enter_context(transports(settings, say))
        dispatcher = Dispatcher(db, settings, factory)
        if web:
            stack.enter_context(serving(settings, say, clock.now))
        stack.enter_context(posting(db, clock.now))

        def dispatch() -> None:
            if time.monotonic() < paused_until[0] or stopping.is_set():
                return
            try:
                tally = dispatcher.run_until_idle(clock.now())
            except (RelayPaused, DispatchError) as exc:
                pause = relay_pause(relay_pauses[0])
                relay_pauses[0] += 1
                paused_until[0] = time.monotonic() + pause.total_seconds()
                logger.error("%s; nothing was charged an attempt; trying again in %s", exc, _said(pause))
                return
            except StoreError as exc:  # the database is held or down: say so once, try again soon
                paused_until[0] = time.monotonic() + PAUSE_AFTER_STORE_ERROR
                logger.error("sending waits: %s; trying again in %d s", exc, PAUSE_AFTER_STORE_ERROR)
                return
            relay_pauses[0] = 0
            if tally.summary() != "nothing due":
                logger.info("dispatch: %s", tally.summary())

        scheduler = BackgroundScheduler(timezone=dt.UTC)

        def every(seconds: float, name: str, job: Callable[[], object]) -> None:
            # Coalesced, one at a time, first run now; a late run is never dropped (APScheduler's
            # default grace of one second would drop it silently). A job that fails says so in one
            # line and runs again at its next time.
            def run() -> None:
                if stopping.is_set():
                    return
                try:
                    job()
                except DripError as exc:
                    logger.error("%s: %s; trying again in %d s", name, exc, seconds)

            scheduler.add_job(
                run,
                "interval",
                seconds=seconds,
                id=name,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                next_run_time=dt.datetime.now(dt.UTC),
            )

        every(DISPATCH_EVERY.total_seconds(), "dispatch", dispatch)
        if settings.inbox_url:
            lead = stack.enter_context(db.lead("inbox"))
            every(settings.inbox_every, "inbox", lambda: read_inbox(settings, db, clock.now(), say, lead))
        digests = stack.enter_context(db.lead("digest"))
        every(
            DIGEST_EVERY.total_seconds(),
            "digest",
            lambda: send_digests(settings, db, clock.now(), factory, digests, say),
        )

        logging.getLogger("apscheduler.scheduler").setLevel(
            logging.ERROR
        )  # a tick skipped while one runs is normal
        logging.getLogger("apscheduler.executors").setLevel(logging.ERROR)
        with stop_on_signals(dispatcher, say, stopping):
            scheduler.start()
            inbox = f", the inbox every {settings.inbox_every} s" if settings.inbox_url else ""
            say(f"Running: dispatch every {DISPATCH_EVERY.total_seconds():.0f} s{inbox}. Stop with Ctrl-C.")
            try:
                while not stopping.wait(1.0):
                    pass
            finally:
                scheduler.shutdown(wait=True)
    say("Stopped.")


def relay_pause(in_a_row: int) -> dt.timedelta:
    """How long sending pauses after the relay refused drip ``in_a_row`` times before: 1, 2, 4 ... 30 min."""
    doubled: dt.timedelta = PAUSE_AFTER_RELAY_ERROR * 2 ** min(in_a_row, 10)
    return min(doubled, PAUSE_AFTER_RELAY_ERROR_MAX)


def _said(pause: dt.timedelta) -> str:
    minutes = int(pause.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@contextmanager
def serving(
    settings: Settings, say: Callable[[str], None], clock: Callable[[], dt.datetime] | None = None
) -> Iterator[None]:
    """Serve the web app with waitress in a thread for the duration of the block."""
    from drip.web.app import create_app

    app = create_app(settings, clock)
    server = web_server(settings, app, "or run with --no-web")
    thread = threading.Thread(target=server.run, name="drip-web", daemon=True)
    thread.start()
    host, port = settings.listen_address()
    say(f"Web pages on {host}:{port}, reached as {settings.base_url}.")
    try:
        with replaying_kept_clicks(app):
            yield
    finally:
        server.close()
        app.extensions["drip"].database.close()


def web_server(settings: Settings, app: Any, otherwise: str) -> Any:
    """Return a waitress server for ``app`` where the settings say, refusing to show the inbox to the
    network. No Server header: it tells a scanner nothing it needs."""
    from waitress.server import create_server

    from drip.web.app import check_exposure

    host, port = settings.listen_address()
    check_exposure(settings, host)
    try:
        return create_server(app, host=host, port=port, threads=settings.web_thread_count(), ident="")
    except OSError as exc:
        raise ConfigError(
            f"cannot serve the web pages on {host}:{port}: {exc.strerror or exc}; set DRIP_LISTEN to a free "
            f"address, {otherwise}"
        ) from None


@contextmanager
def replaying_kept_clicks(app: Any, every: float = KEPT_CLICKS_EVERY) -> Iterator[None]:
    """Record, every few seconds, the clicks the pages kept while the database was busy."""
    stopped = threading.Event()
    folder, database = app.extensions["drip"].spool, app.extensions["drip"].database

    def loop() -> None:
        while not stopped.wait(every):
            if spool.waiting(folder):
                try:
                    recorded = spool.replay(database.store(), folder)
                except DripError as exc:
                    logger.warning("kept clicks not recorded yet: %s", exc)
                    continue
                if recorded:
                    logger.info("recorded %d click(s) kept while the database was busy", recorded)

    thread = threading.Thread(target=loop, name="drip-kept-clicks", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()
