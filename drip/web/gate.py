"""Pages behind a password, and who is asking.

The dashboard (``DRIP_ADMIN_PASSWORD``) and the mail catcher's inbox
(``DRIP_INBOX_PASSWORD``) use HTTP Basic authentication over the TLS proxy in
front of drip: no session, no cookie, no form to forge. The password is
compared as SHA-256 digests in constant time, so timing reveals neither its
content nor its length. Wrong passwords from one client make that client wait
(five in five minutes); the right password always gets through, so nobody
can lock the owner out by guessing wrong, not even from behind the same
proxy.

The client is ``request.remote_addr``: the proxy's address, unless the
operator says how many proxies stand in front (``DRIP_TRUSTED_PROXIES``);
then it is read from that many X-Forwarded-For entries, counted from the
right, and the rest of that header is ignored. With the setting unset,
X-Forwarded-For is never read: anyone can write it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

#: wrong passwords from one client within FAILURE_WINDOW before it must wait
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
#: clients remembered at most; the oldest are forgotten first
MAX_TRACKED = 10_000


class FailureLimit:
    """Count wrong passwords per client address; make a client that has too many lately wait.

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
        """Return how many seconds ``address`` must wait before guessing again (0: it may try now)."""
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


class Gate:
    """One password in front of some pages."""

    def __init__(self, password: str, realm: str, limit: FailureLimit | None = None) -> None:
        self.password = password
        self.realm = f'Basic realm="{realm}", charset="UTF-8"'
        self.limit = limit or FailureLimit()

    def check(self) -> Response | None:
        """Return None to let the request through, or the 401 or 429 answer."""
        address = request.remote_addr or "?"
        given = request.authorization
        if given is not None and given.type == "basic" and given.password is not None:
            if password_matches(given.password, self.password):
                self.limit.forgive(address)
                return None
            wait = self.limit.wait(address)
            if wait:
                answer = Response("Too many wrong passwords; try again later.\n", 429, mimetype="text/plain")
                answer.headers["Retry-After"] = str(int(wait) + 1)
                return answer
            self.limit.fail(address)
        answer = Response("This page needs its password.\n", 401, mimetype="text/plain")
        answer.headers["WWW-Authenticate"] = self.realm
        return answer


def trust_proxies(app: Flask, count: int) -> None:
    """Read the client's address (and scheme) from the ``count`` proxies in front of drip."""
    if count > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)  # type: ignore[method-assign]


def is_loopback(address: Any) -> bool:
    """Say whether an address (a client's, or one to listen on) is this machine's own."""
    if address in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(str(address).strip("[]")).is_loopback
    except ValueError:
        return False
