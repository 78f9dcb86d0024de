"""The web app: the pages behind the links in the emails, the mail catcher's inbox, health checks.

A GET or HEAD never changes anything: mail security scanners open every link
in every email. Each link shows a page whose one button POSTs to the same
address; only the POST acts, through ``drip.changes``. Pages load nothing
from elsewhere.

A POST waits at most a few seconds for the database: if another process holds
it longer, the click is kept (``drip.web.spool``) and recorded as soon as the
database is free, and the page answers 503 with Retry-After, so the one web
thread is never stuck behind a lock and nobody's click is lost.

The mail catcher's inbox shows every participant's links: it answers only
to this machine, unless DRIP_INBOX_PASSWORD puts it behind a password.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import MIMEPart
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, abort, render_template, request
from sqlalchemy import Connection, text
from werkzeug.exceptions import HTTPException

from drip import changes
from drip.config import Settings
from drip.core.errors import ConfigError, StoreBusy, StoreError
from drip.core.plan import goal_dates, local_day
from drip.core.render import long_date
from drip.core.states import GoalStatus, ParticipantStatus
from drip.core.tokens import Action, TokenError, TokenExpired, read_token
from drip.sending import catcher
from drip.storage.keyring import signing_keys, stored_keys
from drip.storage.records import StoredGoal
from drip.storage.store import Store
from drip.web import spool
from drip.web.admin import add_dashboard
from drip.web.gate import Gate, is_loopback, trust_proxies

logger = logging.getLogger(__name__)

#: the largest request body accepted, in bytes
MAX_BODY = 64 * 1024
#: user agents are kept as evidence up to this length
MAX_AGENT = 300
#: how long the link-signing keys are kept in memory before being read again, in seconds
KEYS_FOR = 60.0
#: how long a click waits for the database before it is kept for later, in seconds
WRITE_WAIT = 3.0
#: after a click had to be kept, how long the next ones wait, and for how long that holds
BUSY_WAIT = 0.2
BUSY_FOR = 10.0
#: what a kept click's page asks a browser to wait before trying again, in seconds
RETRY_AFTER = 30


class _Busy:
    """Whether the database was just too busy: then clicks wait less, so a queue of them cannot hold
    the web thread for long."""

    def __init__(self) -> None:
        self._until = 0.0

    def wait(self) -> float:
        return BUSY_WAIT if time.monotonic() < self._until else WRITE_WAIT

    def trip(self) -> None:
        self._until = time.monotonic() + BUSY_FOR

    def clear(self) -> None:
        self._until = 0.0

    @property
    def tripped(self) -> bool:
        return time.monotonic() < self._until


@dataclass(frozen=True)
class Caught:
    name: str
    sender: str
    to: str
    cc: str
    subject: str
    date: str
    step: str
    text: str
    has_html: bool


@dataclass(frozen=True)
class Page:
    """One link page: a heading, a few sentences, and at most one button."""

    title: str
    paragraphs: Sequence[str] = ()
    button: str | None = None
    #: hidden form fields sent with the button
    fields: Sequence[tuple[str, str]] = ()
    note: str | None = None
    program: str = ""
    status: int = 200


class _Database:
    """The store and signing keys, opened on the first request that needs them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._keys: tuple[str, ...] | None = None
        self._keys_read = 0.0
        self._lock = threading.Lock()

    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.settings.database_url)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def keys(self, conn: Any) -> tuple[str, ...]:
        """Return the keys links are verified with (DRIP_SECRET_KEY, and those kept in the database),
        read again every minute so that `drip keys rotate|retire` reaches a running server."""
        if self._keys is None or time.monotonic() - self._keys_read > KEYS_FOR:
            if not self.settings.secret_key and not stored_keys(conn):
                raise TokenError("this link is not one drip sent")  # no cohort was ever started here
            self._keys = signing_keys(self.settings, conn)
            self._keys_read = time.monotonic()
        return self._keys


def create_app(settings: Settings, clock: Callable[[], dt.datetime] | None = None) -> Flask:
    """Return the app. The inbox exists only when drip keeps mail on this machine (no relay set)."""
    app = Flask("drip")  # the package, for its templates folder
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    trust_proxies(app, settings.trusted_proxies)
    database = _Database(settings)
    app.extensions["drip.database"] = database  # closed by whoever serves the app
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    busy = _Busy()
    kept = spool.folder_for(settings.database_url)
    app.extensions["drip.web.spool"] = kept

    @app.before_request
    def _limit_body() -> None:
        # Flask enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse it up front.
        if request.content_length is not None and request.content_length > MAX_BODY:
            abort(413)
        if request.method == "POST" and request.content_length is None:
            request.get_data(cache=True)  # a chunked body: reading it enforces the limit

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'",
        )
        if request.path.startswith(("/done/", "/snooze/", "/unsubscribe/", "/reopen/", "/inbox")):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/healthz")
    def healthz() -> tuple[str, int, dict[str, str]]:
        """Alive: answered without the database, so a held database lock never makes drip look dead."""
        return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/readyz")
    def readyz() -> tuple[str, int, dict[str, str]]:
        """Ready: the database answers, and is not holding clicks back."""
        plain = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
        try:
            with database.store().reading() as conn:
                conn.execute(text("SELECT 1"))
        except (StoreError, OSError) as exc:
            return f"database unavailable: {exc}\n", 503, plain
        if busy.tripped:
            return (
                "database busy: another process holds the write lock; clicks are kept meanwhile\n",
                503,
                plain,
            )
        return "ready\n", 200, plain

    # --- the link pages ----------------------------------------------------------

    def evidence() -> changes.Evidence:
        agent = request.headers.get("User-Agent", "")[:MAX_AGENT]
        return changes.Evidence("link", ip=request.remote_addr, user_agent=agent)

    def goal_of(conn: Any, token: str, action: Action) -> tuple[changes.Person, str]:
        claim = read_token(database.keys(conn), token, action, now().date())
        found = changes.person_by_goal(conn, claim.object_id)
        if found is None:
            raise TokenExpired("this link belongs to a program that is no longer running")
        return found

    def writing(token: str, action: Action, change: Callable[[Connection], Page]) -> Any:
        """Run a click's change; if the database is held too long, keep the click and say so (503)."""
        moment = now()
        try:
            with database.store().transaction(wait=busy.wait()) as conn:
                page = change(conn)
        except StoreBusy:
            busy.trip()
            with database.store().reading() as conn:
                claim = read_token(database.keys(conn), token, action, moment.date())
            agent = request.headers.get("User-Agent", "")[:MAX_AGENT]
            spool.keep(
                kept,
                spool.Click(action.value, claim.object_id, moment.isoformat(), request.remote_addr, agent),
            )
            logger.warning(
                "the database is busy: a click (%s) is kept and will be recorded shortly", action.name
            )
            page = Page(
                "Got it: one moment",
                ["We could not save this just now, so we kept it: it will be recorded within a minute.",
                 "There is nothing more to do; you can close this page."],
                status=503,
            )  # fmt: skip
            html, status = render(page)
            return html, status, {"Retry-After": str(RETRY_AFTER)}
        busy.clear()
        if spool.waiting(kept):
            spool.replay(database.store(), kept)  # clicks kept while it was busy go first chance we get
        return render(page)

    # GET (and the HEAD Flask derives from it) only reads; the POST routes are the only writers.

    @app.get("/done/<token>")
    def confirm_done(token: str) -> tuple[str, int]:
        with database.store().reading() as conn:
            person, key = goal_of(conn, token, Action.DONE)
        return render(_confirm_done(person, key))

    @app.post("/done/<token>")
    def done(token: str) -> Any:
        def change(conn: Connection) -> Page:
            person, key = goal_of(conn, token, Action.DONE)
            outcome = changes.complete(conn, person, key, now(), evidence())
            return _thanks(person, key, outcome.changed, now())

        return writing(token, Action.DONE, change)

    @app.get("/snooze/<token>")
    def confirm_snooze(token: str) -> tuple[str, int]:
        with database.store().reading() as conn:
            person, key = goal_of(conn, token, Action.SNOOZE)
        return render(_confirm_snooze(person, key, now()))

    @app.post("/snooze/<token>")
    def snooze(token: str) -> Any:
        def change(conn: Connection) -> Page:
            person, key = goal_of(conn, token, Action.SNOOZE)
            before = person.goals[key]
            outcome = changes.snooze(conn, person, key, now(), evidence())
            return _snoozed(person, key, outcome.changed, before)

        return writing(token, Action.SNOOZE, change)

    @app.get("/reopen/<token>")
    def confirm_reopen(token: str) -> tuple[str, int]:
        with database.store().reading() as conn:
            person, key = goal_of(conn, token, Action.REOPEN)
        return render(_confirm_reopen(person, key))

    @app.post("/reopen/<token>")
    def reopen(token: str) -> Any:
        def change(conn: Connection) -> Page:
            person, key = goal_of(conn, token, Action.REOPEN)
            outcome = changes.reopen(conn, person, key, now(), evidence())
            return _reopened(person, key, outcome.changed)

        return writing(token, Action.REOPEN, change)

    @app.get("/unsubscribe/<token>")
    def confirm_unsubscribe(token: str) -> tuple[str, int]:
        with database.store().reading() as conn:
            person = person_of(conn, token)
        return render(_confirm_unsubscribe(person))

    @app.post("/unsubscribe/<token>")
    def unsubscribe(token: str) -> Any:
        # RFC 8058 one-click: a POST of List-Unsubscribe=One-Click, answered 200 with no redirect.
        def change(conn: Connection) -> Page:
            person = person_of(conn, token)
            changes.unsubscribe(conn, person, now(), evidence())
            return _unsubscribed(person)

        return writing(token, Action.UNSUBSCRIBE, change)

    def person_of(conn: Any, token: str) -> changes.Person:
        claim = read_token(database.keys(conn), token, Action.UNSUBSCRIBE, now().date())
        person = changes.person_by_id(conn, claim.object_id)
        if person is None:
            raise TokenExpired("this link belongs to a program that is no longer running")
        return person

    def render(page: Page) -> tuple[str, int]:
        return render_template("page.html", page=page), page.status

    @app.errorhandler(TokenError)
    def bad_token(error: TokenError) -> tuple[str, int]:
        if isinstance(error, TokenExpired):
            return render(
                Page(
                    "This link has expired",
                    [
                        f"Sorry: {error}.",
                        "If you meant to tell us a goal is done, reply to the email instead.",
                    ],
                    status=410,
                )
            )
        return render(
            Page(
                "This link does not work",
                [f"Sorry: {error}.", "Open the link from the email itself, or reply to the email instead."],
                status=400,
            )
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        return render(Page(error.name, [error.description or ""], status=error.code or 500))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[str, int]:
        logger.exception("error on %s %s", request.method, request.path)
        return render(
            Page(
                "Something went wrong",
                ["Sorry: drip could not do that just now. Please try again later."],
                status=500,
            )
        )

    add_dashboard(app, settings, database.store, now)
    if not settings.smtp_url:
        _inbox(app, Path(settings.mail_dir), settings.inbox_password)
    return app


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse to serve the mail catcher's inbox beyond this machine without a password.

    The inbox shows every email drip sent, with each participant's done, snooze and unsubscribe
    links: on the network, anyone could act for anyone.
    """
    if settings.smtp_url or settings.inbox_password or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host}: with no DRIP_SMTP_URL the pages include the mail catcher's inbox, "
        "which shows every participant's links; listen on 127.0.0.1, set DRIP_INBOX_PASSWORD, or set "
        "DRIP_SMTP_URL"
    )


# --- what each page says ----------------------------------------------------------------


def _confirm_done(person: changes.Person, key: str) -> Page:
    goal = person.goals[key]
    title = person.title(key)
    if goal.status is GoalStatus.DONE:
        return _already_done(person, key)
    return Page(
        f"{person.first_name}, is this one done?",
        [f"“{title}”", f"Due {long_date(goal.deadline)}."],
        button="Yes, mark it done",
        note="Not yet? Close this page: nothing has been recorded.",
        program=person.cohort.name,
    )


def _already_done(person: changes.Person, key: str) -> Page:
    goal = person.goals[key]
    when = f" on {long_date(goal.completed_at.date())}" if goal.completed_at else ""
    return Page(
        "Already recorded",
        [f"“{person.title(key)}” was marked done{when}. Nothing more to do here."],
        program=person.cohort.name,
    )


def _thanks(person: changes.Person, key: str, changed: bool, now: dt.datetime) -> Page:
    if not changed:
        return _already_done(person, key)
    paragraphs = [f"“{person.title(key)}” is recorded as done. Its reminders stop here."]
    upcoming = person.next_goal(key)
    if upcoming is None:
        paragraphs.append("That was the last goal of the program: well done.")
    else:
        opens = goal_dates(person.program, person.timing())[upcoming.goal].opens
        today = local_day(now, ZoneInfo(person.timezone))
        start = "It is open now" if opens <= today else f"It opens {long_date(opens)}"
        paragraphs.append(
            f"Next: “{person.title(upcoming.goal)}”. {start}, due {long_date(upcoming.deadline)}."
        )
    return Page(f"Thank you, {person.first_name}", paragraphs, program=person.cohort.name)


def _confirm_snooze(person: changes.Person, key: str, now: dt.datetime) -> Page:
    goal = person.goals[key]
    title = person.title(key)
    if goal.status is not GoalStatus.OPEN:
        return Page("Nothing to snooze", [f"“{title}” is already {goal.status}."], program=person.cohort.name)
    if goal.snoozed_at is not None:
        return Page(
            "Already snoozed once",
            [f"“{title}” is due {long_date(goal.deadline)}. A goal can be pushed back only once."],
            program=person.cohort.name,
        )
    today = local_day(now, ZoneInfo(person.timezone))
    new = max(goal.deadline, today) + changes.SNOOZE
    return Page(
        f"{person.first_name}, need another week?",
        [
            f"“{title}” is due {long_date(goal.deadline)}.",
            f"Push it back to {long_date(new)}? You can do this once.",
        ],
        button="Yes, give me a week",
        program=person.cohort.name,
    )


def _snoozed(person: changes.Person, key: str, changed: bool, before: StoredGoal) -> Page:
    if not changed:
        return Page(
            "Already snoozed once",
            [f"“{person.title(key)}” is due {long_date(before.deadline)}."],
            program=person.cohort.name,
        )
    goal = person.goals[key]
    return Page(
        "Done: one more week",
        [f"“{person.title(key)}” is now due {long_date(goal.deadline)}. Reminders will follow the new date."],
        program=person.cohort.name,
    )


def _confirm_reopen(person: changes.Person, key: str) -> Page:
    goal = person.goals[key]
    title = person.title(key)
    if goal.status is not GoalStatus.DONE:
        return Page("Nothing to reopen", [f"“{title}” is {goal.status}."], program=person.cohort.name)
    when = f" on {long_date(goal.completed_at.date())}" if goal.completed_at else ""
    return Page(
        f"{person.first_name}, not done after all?",
        [f"“{title}” was marked done{when} from your reply.", "Reopen it, and its reminders pick up again."],
        button="Yes, reopen it",
        note="Done after all? Close this page: nothing changes.",
        program=person.cohort.name,
    )


def _reopened(person: changes.Person, key: str, changed: bool) -> Page:
    goal = person.goals[key]
    title = person.title(key)
    if not changed:
        return Page(
            "Already open",
            [f"“{title}” is open, due {long_date(goal.deadline)}."],
            program=person.cohort.name,
        )
    return Page(
        "Reopened",
        [f"“{title}” is open again, due {long_date(goal.deadline)}.", "Mark it done when it is."],
        program=person.cohort.name,
    )


def _confirm_unsubscribe(person: changes.Person) -> Page:
    if person.status is ParticipantStatus.UNSUBSCRIBED:
        return _unsubscribed(person)
    return Page(
        "Stop these emails?",
        [f"You will get no more emails from {person.cohort.name}."],
        button="Unsubscribe",
        fields=[("List-Unsubscribe", "One-Click")],
        program=person.cohort.name,
    )


def _unsubscribed(person: changes.Person) -> Page:
    owners = person.cohort.settings.owners
    contact = f" If that was a mistake, write to {owners[0]}." if owners else ""
    return Page(
        "You are unsubscribed",
        [f"You will get no more emails from {person.cohort.name}.{contact}"],
        program=person.cohort.name,
    )


# --- the mail catcher's inbox -------------------------------------------------------------


def _inbox(app: Flask, mail_dir: Path, password: str | None) -> None:
    gate = Gate(password, "drip inbox") if password else None

    @app.before_request
    def _guard() -> Any:
        if request.path != "/inbox" and not request.path.startswith("/inbox/"):
            return None
        if gate is not None:
            return gate.check()
        if not is_loopback(request.remote_addr):
            abort(
                403,
                "The inbox is served to this machine only; DRIP_INBOX_PASSWORD opens it to others.",
            )
        return None

    def load(name: str) -> bytes:
        if not catcher.NAME.match(name):
            abort(404)
        path = mail_dir / name
        if not path.is_file():
            abort(404)
        return path.read_bytes()

    def summary(name: str, data: bytes) -> Caught:
        message = message_from_bytes(data, policy=policy.default)
        text_part = message.get_body(("plain",))
        return Caught(
            name=name,
            sender=str(message.get("From", "")),
            to=str(message.get("To", "")),
            cc=str(message.get("Cc", "")),
            subject=str(message.get("Subject", "(no subject)")),
            date=_when(message.get("Date")),
            step=str(message.get("X-Drip-Step", "")),
            text=_content(text_part) if text_part is not None else "",
            has_html=message.get_body(("html",)) is not None,
        )

    @app.get("/inbox")
    def inbox() -> str:
        found = [summary(path.name, path.read_bytes()) for path in catcher.messages(mail_dir)]
        return render_template("inbox.html", messages=found)

    @app.get("/inbox/<name>")
    def message(name: str) -> str:
        return render_template("message.html", m=summary(name, load(name)))

    @app.get("/inbox/<name>/html")
    def html_part(name: str) -> Response:
        part = message_from_bytes(load(name), policy=policy.default).get_body(("html",))
        if part is None:
            abort(404)
        html = _content(part).replace("<head>", '<head><base target="_blank">', 1)
        response = Response(html, mimetype="text/html")
        # Shown in a sandboxed frame: the email's own styles, no scripts, links open a new tab.
        response.headers["Content-Security-Policy"] = (
            "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:"
        )
        return response

    @app.get("/inbox/<name>/raw")
    def raw(name: str) -> Response:
        return Response(
            load(name),
            mimetype="message/rfc822",
            headers={"Content-Disposition": f"attachment; filename={name}"},
        )


# The catcher keeps whatever reaches it, not only drip's own mail: read it leniently.


def _when(date: object) -> str:
    if not date:
        return ""
    try:
        return email.utils.parsedate_to_datetime(str(date)).strftime("%Y-%m-%d %H:%M %Z").strip()
    except (TypeError, ValueError):
        return str(date)


def _content(part: MIMEPart) -> str:
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
