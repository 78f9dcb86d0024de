"""Values as the database drivers return them, read into what drip uses; no SQLAlchemy.

On SQLite, instants are naive UTC text, dates ISO text and JSON text; on
PostgreSQL the driver returns datetime, date and decoded JSON itself. The
records (``drip.storage.records``) use these without importing SQLAlchemy, so
that they can cross to the composing process cheaply.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` in UTC; refuse anything but an aware datetime."""
    if getattr(value, "tzinfo", None) is dt.UTC:
        return value
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"refusing to store {value!r}: instants must be aware datetimes")
    return value.astimezone(dt.UTC)


def read_instant(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else as_utc(value)


def read_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def read_optional_date(value: Any) -> dt.date | None:
    return None if value is None else read_date(value)


def read_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value
