"""The web app: a small factory that registers the pages drip serves.

- ``drip.web.links``: the pages behind the links in the emails;
- ``drip.web.admin``: the owners' dashboard (off without DRIP_ADMIN_PASSWORD);
- ``drip.web.inbox``: the mail catcher's inbox, when drip keeps mail on this machine;
- here: health checks, the headers every page carries, and the error pages.

Pages load nothing from elsewhere, and no page changes anything on a GET.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, request
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from drip.config import Settings
from drip.core.errors import ConfigError, StoreError
from drip.web import admin, inbox, links, spool
from drip.web.context import Database, Page, Site, render, site
from drip.web.gate import is_loopback, trust_proxies

logger = logging.getLogger(__name__)

#: the largest request body accepted, in bytes
MAX_BODY = 64 * 1024
_PLAIN = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


def create_app(settings: Settings, clock: Callable[[], dt.datetime] | None = None) -> Flask:
    """Return the app. The inbox exists only when drip keeps mail on this machine (no relay set)."""
    app = Flask("drip")  # the package, for its templates folder
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    trust_proxies(app, settings.trusted_proxies)
    app.extensions["drip"] = Site(
        settings, Database(settings), clock or (lambda: dt.datetime.now(dt.UTC)),
        spool.folder_for(settings.database_url),
    )  # fmt: skip
    app.before_request(_limit_body)
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.register_blueprint(_health())
    app.register_blueprint(links.make_blueprint())
    app.register_blueprint(admin.make_blueprint(settings))
    if not settings.smtp_url:
        app.register_blueprint(inbox.make_blueprint(Path(settings.mail_dir), settings.inbox_password))
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


def _health() -> Blueprint:
    blueprint = Blueprint("health", __name__)

    @blueprint.get("/healthz")
    def healthz() -> tuple[str, int, dict[str, str]]:
        """Alive: answered without the database, so a held database lock never makes drip look dead."""
        return "ok\n", 200, _PLAIN

    @blueprint.get("/readyz")
    def readyz() -> tuple[str, int, dict[str, str]]:
        """Ready: the database answers, and is not holding clicks back."""
        here = site()
        try:
            with here.database.store().reading() as conn:
                conn.execute(text("SELECT 1"))
        except (StoreError, OSError) as exc:
            return f"database unavailable: {exc}\n", 503, _PLAIN
        if here.busy.tripped:
            busy = "database busy: another process holds the write lock; clicks are kept meanwhile\n"
            return busy, 503, _PLAIN
        return "ready\n", 200, _PLAIN

    return blueprint


def _limit_body() -> None:
    # Flask enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse it up front.
    if request.content_length is not None and request.content_length > MAX_BODY:
        abort(413)
    if request.method == "POST" and request.content_length is None:
        request.get_data(cache=True)  # a chunked body: reading it enforces the limit


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'",
    )
    return response


def _http_error(error: HTTPException) -> tuple[str, int]:
    return render(Page(error.name, [error.description or ""], status=error.code or 500))


def _unexpected(error: Exception) -> tuple[str, int]:
    logger.exception("error on %s %s", request.method, request.path)
    return render(
        Page(
            "Something went wrong",
            ["Sorry: drip could not do that just now. Please try again later."],
            status=500,
        )
    )
