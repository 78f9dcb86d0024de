"""The owners' dashboard at /admin: every cohort's progress, and each cohort's report. Read-only.

It is off unless an operator sets DRIP_ADMIN_PASSWORD; then it asks for that
password with HTTP Basic authentication (over HTTPS in front of drip, as the
README says). The comparison takes the same time whatever is typed, and an
address that keeps guessing wrong is turned away for a while.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, abort, request

from drip import pages, progress, report
from drip.config import Settings

#: wrong passwords from one address within FAILURE_WINDOW before it must wait
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
#: addresses remembered at most; the oldest are forgotten first
MAX_TRACKED = 10_000
REALM = 'Basic realm="drip dashboard", charset="UTF-8"'


class FailureLimit:
    """Count wrong passwords per client address; refuse an address that has too many lately.

    Kept in each process's memory: several link servers behind a load balancer each count
    their own, which still caps guessing at a few per minute per server.
    """

    def __init__(
        self,
        limit: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, address: str) -> float:
        """Return how many seconds ``address`` must wait before trying again (0: it may try now)."""
        with self._lock:
            recent = self._recent(address)
            if recent is None or len(recent) < self.limit:
                return 0.0
            return max(recent[0] + self.window - self.clock(), 0.0)

    def fail(self, address: str) -> None:
        with self._lock:
            recent = self._recent(address)
            if recent is None:
                if len(self._failures) >= MAX_TRACKED:
                    self._failures.pop(next(iter(self._failures)))
                recent = self._failures[address] = deque(maxlen=self.limit)
            recent.append(self.clock())

    def forgive(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is not None:
            while recent and recent[0] <= self.clock() - self.window:
                recent.popleft()
            if not recent:
                del self._failures[address]
                return None
        return recent


def password_matches(given: str, expected: str) -> bool:
    """Compare in constant time: digests first, so not even the length shows in the timing."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8")).digest(), hashlib.sha256(expected.encode("utf-8")).digest()
    )


def add_dashboard(
    app: Flask, settings: Settings, store: Callable[[], Any], now: Callable[[], dt.datetime]
) -> None:
    """Serve /admin on ``app``: refused entirely while DRIP_ADMIN_PASSWORD is unset."""
    limit = FailureLimit()

    def dashboard_page() -> bool:
        return request.path == "/admin" or request.path.startswith("/admin/")

    @app.before_request
    def _guard() -> Response | None:
        if not dashboard_page():
            return None
        if not settings.admin_password:
            abort(403, "The dashboard is off. An operator turns it on by setting DRIP_ADMIN_PASSWORD.")
        address = request.remote_addr or "?"
        wait = limit.wait(address)
        if wait:
            response = Response("Too many wrong passwords; try again later.\n", 429, mimetype="text/plain")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        given = request.authorization
        if given is not None and given.type == "basic" and given.password is not None:
            if password_matches(given.password, settings.admin_password):
                limit.forgive(address)
                return None
            limit.fail(address)
        response = Response("The dashboard needs its password.\n", 401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = REALM
        return response

    @app.after_request
    def _private(response: Response) -> Response:
        if dashboard_page():
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Robots-Tag"] = "noindex"
        return response

    @app.get("/admin")
    def dashboard() -> str:
        moment = now()
        cohorts = report.cohort_status(store(), None, moment, names=0)
        return pages.render_page("admin.html", cohorts=cohorts, now=moment)

    @app.get("/admin/cohorts/<slug>")
    def cohort_report(slug: str) -> str:
        with store().reading() as conn:
            found = progress.read_progress(conn, slug, now())
        if found is None:
            abort(404, f"No cohort {slug!r} here.")
        return pages.report_html(found, link_back="/admin")
