"""Calendar entries (.ics) attached to kept messages, read as a person reads them in a calendar."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from icalendar import Calendar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One event of a calendar attachment, in words."""

    summary: str
    start: str
    end: str
    description: str
    location: str
    organizer: str
    url: str


def read_entries(data: bytes) -> list[Entry] | None:
    """Return the events of a calendar file; None when it cannot be read (then show it as text)."""
    try:
        calendar = Calendar.from_ical(data)
    except ValueError as exc:
        logger.info("a calendar attachment could not be read: %s", exc)
        return None
    entries = []
    for event in calendar.walk("VEVENT"):
        start = _moment(event.get("DTSTART"))
        end = _moment(event.get("DTEND"))
        if isinstance(start, dt.date) and not isinstance(start, dt.datetime):
            # all-day: the end is the day after the last (RFC 5545, 3.6.1)
            last = end - dt.timedelta(days=1) if isinstance(end, dt.date) else start
            shown_start = f"{_day(start)}, all day"
            shown_end = "" if last <= start else f"{_day(last)}, all day"
        else:
            shown_start = _instant(start)
            shown_end = _instant(end)
        entries.append(
            Entry(
                summary=str(event.get("SUMMARY", "")),
                start=shown_start,
                end=shown_end,
                description=str(event.get("DESCRIPTION", "")),
                location=str(event.get("LOCATION", "")),
                organizer=_organizer(event.get("ORGANIZER")),
                url=str(event.get("URL", "")),
            )
        )
    return entries


def _moment(prop: object) -> object:
    return getattr(prop, "dt", None)


def _day(day: dt.date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def _instant(moment: object) -> str:
    if not isinstance(moment, dt.datetime):
        return ""
    if moment.tzinfo is None:
        return f"{_day(moment)}, {moment:%H:%M} (floating: the reader's own time)"
    zone = moment.tzname() or moment.strftime("%z")
    return f"{_day(moment)}, {moment:%H:%M} {zone}"


def _organizer(prop: object) -> str:
    if prop is None:
        return ""
    address = str(prop)
    if address.casefold().startswith("mailto:"):
        address = address[len("mailto:") :]
    params = getattr(prop, "params", {})
    name = str(params.get("CN", "")) if params else ""
    return f"{name} <{address}>" if name else address
