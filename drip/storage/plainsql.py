"""Plain SQL on the driver's own connection, for the statements run on every click and reply.

A one-row statement through SQLAlchemy Core costs several times what the
driver itself spends on it: compiling from the cache, an execution context,
result processing and row objects. On the link pages that overhead was the
largest part of a click. The few statements a click runs (find the person,
their goals and deliveries, settle the goal, move its mail, append the event)
are therefore written here once, as SQL text, and run on the driver's
connection inside the caller's SQLAlchemy transaction, as
``queue.SentRecorder`` does for sending.

Each value is converted as the column types in ``drip.storage.tables`` convert it:
on SQLite, instants are naive UTC text, dates ISO text and JSON text; on
PostgreSQL the driver speaks timestamptz, date and json itself. Driver errors
come out as SQLAlchemy's, so callers see the same errors either way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from drip.storage import decode
from drip.storage.decode import as_utc
from drip.storage.tables import sqlite_text


class Plain:
    """Runs SQL written with ``?`` placeholders, and converts values, for one connection's dialect."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sqlite = conn.dialect.name == "sqlite"

    # --- running ------------------------------------------------------------------

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor(sql, params) as cursor:
            cursor.execute(self._sql(sql), params)
            found: list[tuple[Any, ...]] = cursor.fetchall()
            return found

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        with self._cursor(sql, params) as cursor:
            cursor.execute(self._sql(sql), params)
            return int(cursor.rowcount)

    def run_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if not params:
            return
        with self._cursor(sql, params) as cursor:
            cursor.executemany(self._sql(sql), params)

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Append rows with PostgreSQL's COPY, several times quicker than INSERTs for thousands of
        rows. Values as ``instant`` and ``json`` give them; COPY reads text into each column's type.
        """
        with self._cursor(f"COPY {table}", ()) as cursor:
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)

    @contextmanager
    def _cursor(self, sql: str, params: Any) -> Iterator[Any]:
        driver = self.conn.connection.driver_connection
        if driver is None:  # pragma: no cover - only a closed connection has none
            raise RuntimeError("the database connection is closed")
        cursor = driver.cursor()
        try:
            yield cursor
        except self.conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, params, exc, self.conn.dialect.loaded_dbapi.Error, dialect=self.conn.dialect
            ) from exc
        finally:
            cursor.close()

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else _pyformat(sql)

    # --- values going in ----------------------------------------------------------

    def instant(self, value: dt.datetime | None) -> Any:
        if value is None:
            return None
        return sqlite_text(value) if self.sqlite else as_utc(value)

    def date(self, value: dt.date | None) -> Any:
        return value.isoformat() if self.sqlite and value is not None else value

    def json(self, value: Any) -> str:
        # Text on both: psycopg sends a str untyped, and PostgreSQL reads it as the json column's type.
        return json.dumps(value)

    # --- values coming out --------------------------------------------------------

    read_instant = staticmethod(decode.read_instant)
    read_date = staticmethod(decode.read_date)
    read_optional_date = staticmethod(decode.read_optional_date)
    read_json = staticmethod(decode.read_json)


_PYFORMAT: dict[str, str] = {}


def _pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the statements here hold no literal ``?`` or ``%``)."""
    found = _PYFORMAT.get(sql)
    if found is None:
        found = _PYFORMAT[sql] = sql.replace("?", "%s")
    return found
