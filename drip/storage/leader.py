"""Which worker runs the jobs that must run once: reading the inbox, and later the digest.

Every ``drip run`` dispatches: the queue's claims already keep workers from
sending the same email. A job such as reading the inbox must instead run in
one worker at a time, or two would fetch the same messages and forward the
same replies. So each worker asks for the lead before such a job, and only
the one that holds it runs the job.

The lead is a lock the database's own machinery releases when its holder dies:

- PostgreSQL: a session-level advisory lock on a connection kept open for the
  purpose. A worker killed with -9 drops its connection and with it the lock,
  on any machine; the next worker to ask takes the lead.
- SQLite: ``flock`` on a file beside the database, which the kernel releases
  when the process ends. SQLite workers share one machine by definition.

The lead is sticky: its holder keeps it until it stops, so the same worker
reads the inbox each time, and a second worker only takes over when it must.
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: the first key of the leads' advisory locks (the second is a hash of the job's name); the
#: cohort locks of drip.storage.store use the key before it
_LEADER_LOCK_SPACE = 0x6472_6971


class Lead:
    """The lead for one kind of job, asked for with ``held()`` before each run of the job."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.name = name
        self._engine = engine
        self._held = False
        self._connection: Any = None
        self._file: int | None = None
        self._path: str | None = None
        if engine.dialect.name == "sqlite":
            database = make_url(str(engine.url)).database
            if database and database != ":memory:":
                self._path = f"{database}.{name}.lead"

    @property
    def holding(self) -> bool:
        """Whether this process held the lead when last it asked."""
        return self._held

    def held(self) -> bool:
        """Return whether this process holds the lead, taking it if nobody does."""
        if self._engine.dialect.name == "postgresql":
            return self._postgres()
        return self._sqlite()

    def close(self) -> None:
        """Give the lead up (stopping does it too)."""
        if self._connection is not None:
            # Detached from the pool: closing ends the session and its lock. A dead connection
            # has nothing left to release, so its error on closing is of no interest.
            with suppress(self._engine.dialect.loaded_dbapi.Error):
                self._connection.close()
            self._connection = None
        if self._file is not None:
            os.close(self._file)
            self._file = None
        self._held = False

    def __enter__(self) -> Lead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sqlite(self) -> bool:
        if self._path is None or fcntl is None:
            self._held = True  # one database in one process: nobody to share with
            return True
        if self._file is None:
            self._file = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        if not self._held:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self._took()
        return True

    def _postgres(self) -> bool:
        if self._held and self._alive():
            return True
        if self._held:  # the connection died, and the server let the lock go with it
            logger.warning("lost the lead for %s with the database connection; asking again", self.name)
            self.close()
        try:
            if self._connection is None:
                # A connection of its own, never returned to the pool: the lock lives as long as it does.
                self._connection = self._engine.raw_connection()
                self._connection.driver_connection.autocommit = True
                self._connection.detach()
            row = self._run("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LEADER_LOCK_SPACE, self.name))
        except self._engine.dialect.loaded_dbapi.Error as exc:
            logger.warning("cannot ask for the lead for %s: %s", self.name, str(exc).strip())
            self.close()
            return False
        if row[0]:
            self._took()
        return self._held

    def _alive(self) -> bool:
        try:
            self._run("SELECT 1")
        except self._engine.dialect.loaded_dbapi.Error:
            return False  # the session, and the lock with it, are gone
        return True

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        cursor = self._connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchone()
        finally:
            cursor.close()

    def _took(self) -> None:
        self._held = True
        logger.info("took the lead for %s", self.name)
