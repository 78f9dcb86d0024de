"""The database: engines, migrations, transactions, and every query drip runs.

On SQLite, write transactions start with ``BEGIN IMMEDIATE``: a deferred
transaction that reads and then writes fails with "database is locked" when a
second writer got in between, whatever the busy timeout. Reads start
deferred. The journal is WAL so readers never wait for the writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from importlib.resources import files
from itertools import chain, islice
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Integer,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

try:
    import fcntl
except ImportError:  # Windows: threads of one process still queue; processes meet SQLite's busy handler
    fcntl = None  # type: ignore[assignment]
from sqlalchemy.exc import DatabaseError, DBAPIError
from sqlalchemy.pool import StaticPool

from drip.core.errors import StoreBusy, StoreError
from drip.core.states import DeliveryStatus, GoalStatus, ParticipantStatus
from drip.storage import outbox
from drip.storage.leader import Lead
from drip.storage.plainsql import Plain
from drip.storage.records import StoredCohort, StoredDelivery, StoredEvent, StoredParticipant
from drip.storage.tables import (
    CheckIn,
    Cohort,
    Delivery,
    Digest,
    Event,
    Goal,
    Meta,
    Participant,
    Received,
    UTCDateTime,
)

logger = logging.getLogger(__name__)

# The tables behind the models, for bulk statements (typed as tables for mypy).
cohort_table = cast(Table, Cohort.__table__)
participant_table = cast(Table, Participant.__table__)
goal_table = cast(Table, Goal.__table__)
delivery_table = cast(Table, Delivery.__table__)
event_table = cast(Table, Event.__table__)
meta_table = cast(Table, Meta.__table__)
received_table = cast(Table, Received.__table__)
digest_table = cast(Table, Digest.__table__)
check_in_table = cast(Table, CheckIn.__table__)

#: how long a SQLite connection waits for another writer before giving up
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: rows per executemany call; bounds memory and the size of one statement
BATCH_ROWS = 5_000
# An arbitrary, fixed key: every drip process migrating a PostgreSQL database
# takes this advisory lock first, so two cannot upgrade at once.
_MIGRATION_LOCK = 0x6472_6970_0001
#: the first key of per-cohort advisory locks (the second is a hash of the slug)
_COHORT_LOCK_SPACE = 0x6472_6970


class Store:
    """A database holding any number of cohorts."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = _create_engine(url)
        # SQLite has one writer at a time. Writers of every process (link pages, sending, replies)
        # queue on a lock beside the file rather than in SQLite's busy handler, which sleeps in
        # steps of up to 100 ms and would put those sleeps in the pages' response times.
        self._writer: _WriterLock | nullcontext[None] = nullcontext()
        if self.engine.dialect.name == "sqlite":
            self._writer = _WriterLock(self.engine.url.database)
        if migrate:
            try:
                if self.revision() != known_revision():
                    self.migrate()
            except BaseException:
                self.engine.dispose()
                raise

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()
        if isinstance(self._writer, _WriterLock):
            self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, wait: float | None = None) -> Iterator[Connection]:
        """Run a write transaction: committed on success, rolled back on any error.

        ``wait``: the most seconds to wait for another writer (SQLite) or a locked row
        (PostgreSQL) before raising StoreBusy; None waits as long as SQLite's busy timeout.
        """
        writer = self._writer.waiting(wait) if isinstance(self._writer, _WriterLock) else self._writer
        with writer, _translate_errors(self.url), self.engine.connect() as conn:
            if wait is not None:
                conn = conn.execution_options(drip_wait_ms=max(1, int(wait * 1000)))
            with conn.begin():
                yield conn

    @contextmanager
    def trial(self) -> Iterator[Connection]:
        """Run a write transaction that is always rolled back (``--dry-run``)."""
        with _translate_errors(self.url), self.engine.connect() as conn:
            conn.begin()
            try:
                yield conn
            finally:
                conn.rollback()

    def lead(self, job: str) -> Lead:
        """The lead for a job that one worker at a time must run (``drip.storage.leader``)."""
        return Lead(self.engine, job)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """Run a read-only transaction, which never blocks a writer on SQLite."""
        with _translate_errors(self.url), self.engine.connect() as conn:
            conn = conn.execution_options(drip_read_only=True)
            with conn.begin():
                yield conn

    # --- migrations -------------------------------------------------------

    def revision(self) -> str | None:
        """Return the schema revision the database is at (None when empty).

        Read without Alembic: opening a database that is up to date, as every command does,
        costs one query rather than loading every migration."""
        with self.reading() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()

    def migrate(self) -> str | None:
        """Bring the schema to the newest revision; return the revision it is at."""
        from alembic import command
        from alembic.script import ScriptDirectory

        config = _alembic_config()
        head = ScriptDirectory.from_config(config).get_current_head()
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            current = self._revision(conn, config)
            if current != head:
                logger.info("upgrading database schema from %s to %s", current or "empty", head)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        return head

    def needs_migration(self) -> bool:
        return self.revision() != known_revision()

    @staticmethod
    def _revision(conn: Connection, config: Any) -> str | None:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        current = MigrationContext.configure(conn).get_current_revision()
        script = ScriptDirectory.from_config(config)
        if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
            raise StoreError(
                f"the database schema is at revision {current}, newer than this drip knows; "
                "upgrade drip before using this database"
            )
        return current


def head_revision() -> str | None:
    """Return the newest schema revision this drip knows, as Alembic reads it."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def known_revision() -> str:
    """Return the newest schema revision this drip knows, from the migrations' file names.

    Migrations are numbered ``NNNN_what.py`` with revision ``NNNN``, one after another, so the
    newest is the highest number; a test holds this to ``head_revision()``.
    """
    folder = files("drip.storage") / "migrations" / "versions"
    return max(entry.name[:4] for entry in folder.iterdir() if re.fullmatch(r"\d{4}_\w+\.py", entry.name))


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("drip.storage") / "migrations"))
    return config


class _WriterLock:
    """One SQLite writer at a time: a lock for this process's threads, then ``flock`` on a file
    beside the database for the other processes. The kernel wakes the next waiter as soon as
    the lock is let go, where SQLite's busy handler would poll with sleeps."""

    def __init__(self, database: str | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        local = database and database != ":memory:" and fcntl is not None
        self._path = f"{database}.lock" if local else None
        self._file: int | None = None

    def __enter__(self) -> None:
        self.acquire(None)

    @contextmanager
    def waiting(self, wait: float | None) -> Iterator[None]:
        """Hold the lock, waiting at most ``wait`` seconds for it (None: as long as it takes)."""
        self.acquire(wait)
        try:
            yield
        finally:
            self.__exit__()

    def acquire(self, wait: float | None) -> None:
        deadline = None if wait is None else time.monotonic() + wait
        if not self._threads.acquire(timeout=-1 if wait is None else max(wait, 0.0)):
            raise StoreBusy("another part of drip is writing to the database; try again in a moment")
        try:
            if self._depth == 0 and self._path is not None:
                if self._file is None:
                    self._file = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._flock(self._file, deadline)
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1

    @staticmethod
    def _flock(file: int, deadline: float | None) -> None:
        if deadline is None:
            fcntl.flock(file, fcntl.LOCK_EX)
            return
        # flock has no timeout: try, and sleep a little between tries, until the deadline.
        while True:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        "another drip process is writing to the database; try again in a moment"
                    ) from None
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._file is not None:
                os.close(self._file)
                self._file = None


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)

        @event.listens_for(engine, "begin")
        def _lock_wait(conn: Connection) -> None:
            wait = conn.get_execution_options().get("drip_wait_ms")
            if wait is not None:  # a page: a row another transaction holds is waited for only so long
                conn.connection.driver_connection.execute(f"SET LOCAL lock_timeout = {int(wait)}")  # type: ignore[union-attr]

        return engine
    database = parsed.database
    if database and database != ":memory:":
        # Every transaction ends in a commit or a rollback of its own: no reset needed when a
        # connection goes back to the pool (it costs a round trip per transaction).
        engine = create_engine(url, pool_reset_on_return=None)
    else:
        # One connection shared by everything, or each would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, below, issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        read_only = options.get("drip_read_only", False)
        driver = conn.connection.driver_connection
        # A writer that must not wait long (a page) waits for SQLite's lock only that long.
        busy = options.get("drip_wait_ms", SQLITE_BUSY_TIMEOUT_MS)
        info = conn.connection.info
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        try:
            if info.get("busy_ms", SQLITE_BUSY_TIMEOUT_MS) != busy:
                driver.execute(f"PRAGMA busy_timeout = {int(busy)}")  # type: ignore[union-attr]
                info["busy_ms"] = busy
            # Straight to the driver: this runs for every transaction, and a click runs one.
            driver.execute(begin)  # type: ignore[union-attr]
        except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy's own, so callers see one kind
            raise DBAPIError.instance(
                begin, (), exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc

    return engine


@contextmanager
def _translate_errors(url: str) -> Iterator[None]:
    try:
        yield
    except DatabaseError as exc:
        from drip.config import redact_url

        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if "database is locked" in reason or getattr(exc.orig, "sqlstate", None) == "55P03":
            raise StoreBusy(
                f"database {redact_url(url)}: {reason}: another process holds it; try again when it lets go"
            ) from exc
        raise StoreError(f"database {redact_url(url)}: {reason}") from exc


# --- rows ---------------------------------------------------------------------


def chunked(rows: Sequence[Any], size: int = BATCH_ROWS) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def insert_rows(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows that all have the same keys: batched executemany on SQLite, COPY on PostgreSQL
    (a ``drip start`` of 100,000 people writes 1.8 million deliveries). ``rows`` may be a
    generator: on PostgreSQL it is consumed while the server stores what came before."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return
    every = chain([first], iterator)
    if conn.dialect.name != "postgresql":
        while batch := list(islice(every, BATCH_ROWS)):
            conn.execute(insert(table), batch)
        return
    sql = Plain(conn)
    names = list(first)
    convert = [(name, _copy_converter(sql, table.c[name].type)) for name in names]
    sql.copy(
        table.name,
        names,
        ([row[name] if to is None else to(row[name]) for name, to in convert] for row in every),
    )


def _copy_converter(sql: Plain, column_type: Any) -> Callable[[Any], Any] | None:
    """How a value is written for COPY, as the column's SQLAlchemy type would bind it."""
    if isinstance(column_type, UTCDateTime):
        return sql.instant
    if isinstance(column_type, JSON):
        return sql.json
    return None


# --- cohorts ------------------------------------------------------------------


def refresh_statistics(conn: Connection) -> None:
    """Have PostgreSQL sample the tables a launch fills (SQLite plans without statistics)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE cohorts, participants, goals, deliveries, events")


def lock_cohort(conn: Connection, slug: str) -> None:
    """Serialise writers of one cohort until the transaction ends.

    On SQLite, ``BEGIN IMMEDIATE`` already lets one writer in at a time. On
    PostgreSQL two ``drip start`` runs of a new cohort would both see no cohort
    row and both insert one; this advisory lock makes the second wait and then
    see the first's work.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:slug))"),
            {"space": _COHORT_LOCK_SPACE, "slug": slug},
        )


def find_cohort(conn: Connection, slug: str) -> StoredCohort | None:
    row = conn.execute(select(cohort_table).where(cohort_table.c.slug == slug)).one_or_none()
    return None if row is None else StoredCohort.from_row(row)


def find_cohort_by_folder(conn: Connection, folder: str) -> StoredCohort | None:
    row = conn.execute(select(cohort_table).where(cohort_table.c.folder == folder).limit(1)).one_or_none()
    return None if row is None else StoredCohort.from_row(row)


def upsert_cohort(conn: Connection, cohort: StoredCohort, now: dt.datetime) -> tuple[int, bool]:
    """Insert ``cohort``, or update the stored cohort with its slug; return (id, created).

    An update leaves the status alone: syncing a paused cohort keeps it paused.
    """
    table = cohort_table
    values = cohort.to_row()
    existing = conn.execute(select(table.c.id).where(table.c.slug == cohort.slug)).scalar_one_or_none()
    if existing is None:
        row = {**values, "created_at": now, "updated_at": now}
        new_id: int = conn.execute(insert(table).returning(table.c.id), row).scalar_one()
        return new_id, True
    del values["status"]
    conn.execute(update(table).where(table.c.id == existing).values(**values, updated_at=now))
    return existing, False


def cohort_rows(conn: Connection, slug: str | None = None) -> list[StoredCohort]:
    """Return one cohort, or every cohort, oldest first."""
    query = select(cohort_table).order_by(cohort_table.c.created_at, cohort_table.c.slug)
    if slug is not None:
        query = query.where(cohort_table.c.slug == slug)
    return [StoredCohort.from_row(row) for row in conn.execute(query)]


def cohort_slugs(conn: Connection) -> list[str]:
    query = select(cohort_table.c.slug).order_by(cohort_table.c.created_at, cohort_table.c.slug)
    return list(conn.execute(query).scalars())


# --- participants -------------------------------------------------------------


_PARTICIPANT_COLUMNS = [participant_table.c[name] for name in StoredParticipant.COLUMNS]


def participants_by_key(conn: Connection, cohort_id: int) -> dict[str, StoredParticipant]:
    rows = conn.execute(select(*_PARTICIPANT_COLUMNS).where(participant_table.c.cohort_id == cohort_id))
    return {row.email_key: StoredParticipant.from_row(row) for row in rows}


def find_participant(conn: Connection, cohort_id: int, key: str) -> StoredParticipant | None:
    """Return the participant whose case-folded address is ``key``."""
    table = participant_table
    row = conn.execute(
        select(*_PARTICIPANT_COLUMNS).where(table.c.cohort_id == cohort_id, table.c.email_key == key)
    ).one_or_none()
    return None if row is None else StoredParticipant.from_row(row)


def count_participants(conn: Connection, cohort_id: int, email_keys: Iterable[str]) -> int:
    """Count how many of ``email_keys`` are participants of the cohort."""
    table = participant_table
    total = 0
    for batch in chunked(list(email_keys)):
        query = select(func.count()).where(table.c.cohort_id == cohort_id, table.c.email_key.in_(batch))
        total += conn.execute(query).scalar_one()
    return total


def insert_participants(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert participants of one cohort in bulk; return their ids in the order given."""
    table = participant_table
    if conn.dialect.name != "postgresql" or not rows:
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(conn.execute(statement, list(rows)).scalars())
    # COPY, then the ids by address: an INSERT ... RETURNING of thousands of rows costs more
    # in building the statement than in storing them.
    insert_rows(conn, table, rows)
    cohort_id = rows[0]["cohort_id"]
    found = dict(
        Plain(conn).rows(
            "SELECT p.email_key, p.id FROM unnest(?::text[]) AS k (email_key) "
            "JOIN participants p ON p.cohort_id = ? AND p.email_key = k.email_key",
            ([row["email_key"] for row in rows], cohort_id),
        )
    )
    return [found[row["email_key"]] for row in rows]


def update_participants(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Update participants in bulk; each row holds ``pid`` and the columns to set."""
    if not rows:
        return
    table = participant_table
    columns = [key for key in rows[0] if key != "pid"]
    statement = (
        update(table)
        .where(table.c.id == bindparam("pid"))
        .values({name: bindparam(name) for name in columns})
    )
    conn.execute(statement, list(rows))


def set_participant_status(
    conn: Connection, participant_id: int, status: ParticipantStatus, now: dt.datetime
) -> None:
    conn.execute(
        update(participant_table)
        .where(participant_table.c.id == participant_id)
        .values(status=status.value, updated_at=now)
    )


# --- goals --------------------------------------------------------------------


def insert_goals(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    insert_rows(conn, goal_table, rows)


def update_goal_deadlines(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set new deadlines; each row holds ``pid``, ``goal_key``, ``deadline``, ``deadline_at``."""
    if not rows:
        return
    table = goal_table
    statement = (
        update(table)
        .where(table.c.participant_id == bindparam("pid"), table.c.goal == bindparam("goal_key"))
        .values(deadline=bindparam("deadline"), deadline_at=bindparam("deadline_at"))
    )
    conn.execute(statement, list(rows))


def goal_states(
    conn: Connection, participant_ids: Iterable[int]
) -> dict[int, dict[str, tuple[GoalStatus, dt.datetime | None]]]:
    """Return each participant's goals: their status and, when done, when."""
    table = goal_table
    result: dict[int, dict[str, tuple[GoalStatus, dt.datetime | None]]] = defaultdict(dict)
    for batch in chunked(list(participant_ids)):
        query = select(table.c.participant_id, table.c.goal, table.c.status, table.c.completed_at).where(
            table.c.participant_id.in_(batch)
        )
        for row in conn.execute(query):
            result[row.participant_id][row.goal] = (GoalStatus(row.status), row.completed_at)
    return result


def deadline_overrides(conn: Connection, participant_ids: Iterable[int]) -> dict[int, dict[str, dt.date]]:
    """Return the deadlines set by hand (snooze, extend), which a roster sync keeps."""
    table = goal_table
    result: dict[int, dict[str, dt.date]] = defaultdict(dict)
    for batch in chunked(list(participant_ids)):
        query = select(table.c.participant_id, table.c.goal, table.c.deadline_override).where(
            table.c.participant_id.in_(batch), table.c.deadline_override.is_not(None)
        )
        for row in conn.execute(query):
            result[row.participant_id][row.goal] = row.deadline_override
    return result


# --- deliveries ---------------------------------------------------------------


def insert_deliveries(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    insert_rows(conn, delivery_table, rows)


def deliveries_of(conn: Connection, participant_ids: Iterable[int]) -> dict[int, dict[str, StoredDelivery]]:
    """Return each participant's deliveries by step."""
    table = delivery_table
    columns = [table.c[name] for name in StoredDelivery.__dataclass_fields__]
    result: dict[int, dict[str, StoredDelivery]] = defaultdict(dict)
    for batch in chunked(list(participant_ids)):
        for row in conn.execute(select(*columns).where(table.c.participant_id.in_(batch))):
            result[row.participant_id][row.step] = _delivery(row)
    return result


_DELIVERIES_OF_ONE = (  # StoredDelivery's fields, in their order
    "SELECT id, participant_id, step, goal, due_at, status, last_error, sent_at "
    "FROM deliveries WHERE participant_id = ?"
)


def deliveries_of_one(conn: Connection, participant_id: int) -> dict[str, StoredDelivery]:
    """Return one participant's deliveries by step (plain SQL: this runs for every click)."""
    sql = Plain(conn)
    found = {}
    for ident, participant, step, goal, due_at, status, last_error, sent_at in sql.rows(
        _DELIVERIES_OF_ONE, (participant_id,)
    ):
        found[step] = StoredDelivery(
            ident, participant, step, goal, sql.read_instant(due_at), DeliveryStatus(status), last_error,
            sql.read_instant(sent_at),
        )  # fmt: skip
    return found


def _delivery(row: Any) -> StoredDelivery:
    """A row selected with StoredDelivery's columns, in their order, as a StoredDelivery."""
    ident, participant, step, goal, due_at, status, last_error, sent_at = row
    return StoredDelivery(ident, participant, step, goal, due_at, DeliveryStatus(status), last_error, sent_at)


_MOVE_DELIVERY = "UPDATE deliveries SET due_at = ?, status = ?, last_error = ?, updated_at = ? WHERE id = ?"


def update_deliveries(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Move deliveries in time; each row holds ``did``, ``due_at``, ``status``, ``last_error``,
    ``updated_at`` (plain SQL: a click moves its goal's mail)."""
    sql = Plain(conn)
    for batch in chunked(rows):
        sql.run_many(
            _MOVE_DELIVERY,
            [
                (
                    sql.instant(row["due_at"]),
                    row["status"],
                    row["last_error"],
                    sql.instant(row["updated_at"]),
                    row["did"],
                )
                for row in batch
            ],
        )


def cancel_pending(conn: Connection, participant_id: int, reason: str, now: dt.datetime) -> int:
    """Cancel every delivery of a participant that has not left yet; return how many."""
    table = delivery_table
    pending = [DeliveryStatus.WAITING, DeliveryStatus.SCHEDULED]
    result = conn.execute(
        update(table)
        .where(table.c.participant_id == participant_id, table.c.status.in_(pending))
        .values(status=DeliveryStatus.CANCELLED.value, last_error=reason, updated_at=now)
    )
    return result.rowcount


# --- events -------------------------------------------------------------------


_INSERT_EVENT = (
    "INSERT INTO events (cohort_id, participant_id, delivery_id, goal, kind, at, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def append_events(conn: Connection, events: Sequence[StoredEvent]) -> None:
    """Append to the event log; the one way drip writes it (besides the trigger that logs a send).

    One event, as a click, a reply or a change from the command line makes, is written as plain SQL
    (``drip.storage.plainsql``); many, as enrolling a cohort makes, in bulk.
    """
    if len(events) == 1:
        (event,) = events
        sql = Plain(conn)
        sql.run(
            _INSERT_EVENT,
            (event.cohort_id, event.participant_id, event.delivery_id, event.goal, event.kind.value,
             sql.instant(event.at), sql.json(dict(event.data))),
        )  # fmt: skip
    else:
        insert_rows(conn, event_table, (event.to_row() for event in events))
    outbox.queue(conn, events)  # what webhooks asked for, in the same transaction


# --- meta -------------------------------------------------------------------------


def meta_get(conn: Connection, name: str) -> str | None:
    """Return the stored value ``name``, or None."""
    return conn.execute(select(meta_table.c.value).where(meta_table.c.name == name)).scalar_one_or_none()


def meta_set(conn: Connection, name: str, value: str) -> None:
    """Store ``value`` under ``name``, replacing what was there."""
    updated = conn.execute(update(meta_table).where(meta_table.c.name == name).values(value=value)).rowcount
    if not updated:
        conn.execute(insert(meta_table), {"name": name, "value": value})


def meta_value(conn: Connection, name: str, make: Callable[[], str]) -> str:
    """Return the stored value ``name``, storing ``make()`` first if there is none.

    Two processes doing this at once both end up with the value that was stored first.
    """
    query = select(meta_table.c.value).where(meta_table.c.name == name)
    value: str | None = conn.execute(query).scalar_one_or_none()
    if value is not None:
        return value
    row = {"name": name, "value": make()}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(meta_table).values(row).on_conflict_do_nothing())
    else:
        conn.execute(insert(meta_table).prefix_with("OR IGNORE"), row)
    stored: str = conn.execute(query).scalar_one()
    return stored


# --- figures ------------------------------------------------------------------


def scheduled_span(conn: Connection, cohort_id: int) -> tuple[tuple[dt.datetime, str] | None, ...]:
    """Return (instant, participant's zone) of the cohort's first and last scheduled delivery."""
    delivery, people = delivery_table, participant_table
    query = (
        select(delivery.c.due_at, people.c.timezone)
        .join(people, people.c.id == delivery.c.participant_id)
        .where(delivery.c.cohort_id == cohort_id, delivery.c.status == DeliveryStatus.SCHEDULED.value)
        .limit(1)
    )
    first = conn.execute(query.order_by(delivery.c.due_at.asc(), delivery.c.id)).one_or_none()
    last = conn.execute(query.order_by(delivery.c.due_at.desc(), delivery.c.id)).one_or_none()
    return (tuple(first) if first else None, tuple(last) if last else None)


def timeline(conn: Connection, cohort_id: int, email_key: str | None = None) -> list[Any]:
    """Return every delivery of the cohort with its participant, in roster and time order."""
    people, delivery = participant_table, delivery_table
    query = (
        select(
            people.c.email,
            people.c.name,
            people.c.timezone,
            delivery.c.step,
            delivery.c.goal,
            delivery.c.status,
            delivery.c.due_at,
            delivery.c.sent_at,
            delivery.c.last_error,
        )  # fmt: skip
        .join(people, people.c.id == delivery.c.participant_id)
        .where(delivery.c.cohort_id == cohort_id)
        .order_by(
            people.c.roster_row.asc().nulls_last(),
            people.c.id,
            func.coalesce(delivery.c.sent_at, delivery.c.due_at).asc().nulls_last(),
            delivery.c.id,
        )
    )
    if email_key is not None:
        query = query.where(people.c.email_key == email_key)
    return list(conn.execute(query))


def participant_refs(conn: Connection, cohort_id: int, email_key: str) -> tuple[int, dict, dict] | None:
    """Return a stored participant's id, their goals (id, status) and deliveries (id, due_at, status)."""
    person = find_participant(conn, cohort_id, email_key)
    if person is None:
        return None
    goal_rows = conn.execute(
        select(goal_table.c.goal, goal_table.c.id, goal_table.c.status).where(
            goal_table.c.participant_id == person.id
        )
    )
    delivery_rows = conn.execute(
        select(
            delivery_table.c.step, delivery_table.c.id, delivery_table.c.due_at, delivery_table.c.status
        ).where(delivery_table.c.participant_id == person.id)
    )
    goals = {row.goal: (row.id, row.status) for row in goal_rows}
    deliveries = {row.step: (row.id, row.due_at, row.status) for row in delivery_rows}
    return person.id, goals, deliveries


def cohort_figures(conn: Connection, cohort_id: int, now: dt.datetime) -> dict[str, Any]:
    """Count participants by status, goals by status (and overdue), deliveries by status.

    Removed participants are left out of every figure.
    """
    people = participant_table
    counted = people.c.status != ParticipantStatus.REMOVED.value
    by_status: dict[str, int] = dict(
        conn.execute(
            select(people.c.status, func.count())
            .where(people.c.cohort_id == cohort_id)
            .group_by(people.c.status)
        ).all()
    )
    goal_rows = conn.execute(
        select(
            goal_table.c.goal,
            goal_table.c.status,
            goal_table.c.via,
            func.count(),
            func.sum((goal_table.c.deadline_at <= now).cast(Integer)),
        )
        .join(people, people.c.id == goal_table.c.participant_id)
        .where(people.c.cohort_id == cohort_id, counted)
        .group_by(goal_table.c.goal, goal_table.c.status, goal_table.c.via)
    ).all()
    by_goal: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(["open", "done", "waived", "overdue"], 0)
    )
    done_by: dict[str, dict[str, int]] = defaultdict(dict)
    for goal, status, via, count, past_deadline in goal_rows:
        by_goal[goal][status] += count
        if status == GoalStatus.OPEN.value:
            by_goal[goal]["overdue"] += int(past_deadline or 0)
        elif status == GoalStatus.DONE.value:
            done_by[goal][via or "unknown"] = done_by[goal].get(via or "unknown", 0) + count
    return {
        "participants": sum(
            n for status, n in by_status.items() if status != ParticipantStatus.REMOVED.value
        ),
        "participant_status": {s.value: by_status.get(s.value, 0) for s in ParticipantStatus},
        "goals": dict(by_goal),
        #: per goal, how the goals done were recorded: link, reply or admin
        "done_by": dict(done_by),
        "deliveries": delivery_counts(conn, cohort_id),
    }


def delivery_counts(conn: Connection, cohort_id: int) -> dict[str, int]:
    """Count the cohort's deliveries by status, leaving out those of removed participants."""
    people, delivery = participant_table, delivery_table
    # All of the cohort's deliveries (an index-only count), less those of removed participants
    # (few): on 1.8 million deliveries a join to every participant took a second.
    delivery_rows = conn.execute(
        select(delivery.c.status, func.count())
        .where(delivery.c.cohort_id == cohort_id)
        .group_by(delivery.c.status)
    ).all()
    removed_rows = conn.execute(
        select(delivery.c.status, func.count())
        .join(people, people.c.id == delivery.c.participant_id)
        .where(people.c.cohort_id == cohort_id, people.c.status == ParticipantStatus.REMOVED.value)
        .group_by(delivery.c.status)
    ).all()
    by_delivery = dict.fromkeys((s.value for s in DeliveryStatus), 0)
    by_delivery.update({status: count for status, count in delivery_rows})
    for status, count in removed_rows:
        by_delivery[status] -= count
    return by_delivery
