"""What every page of one app shares: the settings, the database and its signing keys, the clock.

``create_app`` makes one :class:`Site` and keeps it in ``app.extensions["drip"]``;
the blueprints reach it with :func:`site`. Pages are rendered with :func:`render`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from flask import current_app, render_template

from drip.config import Settings
from drip.core.tokens import TokenError
from drip.storage.keyring import signing_keys, stored_keys
from drip.storage.store import Store

#: how long the link-signing keys are kept in memory before being read again, in seconds
KEYS_FOR = 60.0
#: how long a click waits for the database before it is kept for later, in seconds
WRITE_WAIT = 3.0
#: after a click had to be kept, how long the next ones wait, and for how long that holds
BUSY_WAIT = 0.2
BUSY_FOR = 10.0


class Database:
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


class Busy:
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


@dataclass
class Site:
    settings: Settings
    #: closed by whoever serves the app
    database: Database
    now: Callable[[], dt.datetime]
    #: where clicks are kept while the database is too busy (``drip.web.spool``)
    spool: Path
    busy: Busy = field(default_factory=Busy)


def site() -> Site:
    """The Site of the app serving the current request."""
    return cast(Site, current_app.extensions["drip"])


@dataclass(frozen=True)
class Question:
    """The one optional field above a page's button: a goal's question (program.toml ``ask``)."""

    label: str
    #: "text" (a few lines) or "url" (one line, a web address)
    kind: str
    limit: int
    #: the word after the label that says it may be left empty
    optional: str
    #: what was typed, shown again with ``error`` when it could not be kept
    value: str = ""
    error: str = ""


@dataclass(frozen=True)
class Page:
    """One page for a participant: a heading, a few sentences, and at most one button."""

    title: str
    paragraphs: Sequence[str] = ()
    button: str | None = None
    #: hidden form fields sent with the button
    fields: Sequence[tuple[str, str]] = ()
    note: str | None = None
    program: str = ""
    status: int = 200
    #: the page's language, a BCP 47 tag
    language: str = "en"
    question: Question | None = None


def render(page: Page) -> tuple[str, int]:
    return render_template("page.html", page=page), page.status
