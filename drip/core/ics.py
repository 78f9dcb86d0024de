"""Calendar entries (RFC 5545) for goal deadlines, written directly: one all-day event.

The UID is stable per participant and goal, so a later email carrying a moved
deadline replaces the entry instead of adding one; SEQUENCE grows with the
moment the email is sent, which is what calendar clients compare.
"""

from __future__ import annotations

import datetime as dt

_FOLD_AT = 75  # octets per line, CRLF not counted
_SEQUENCE_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def escape_text(value: str) -> str:
    """Escape a TEXT value: backslash, semicolon, comma and line breaks."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _common_name(name: str) -> str:
    """Return ``;CN="..."`` for a display name (RFC 5545, 3.2), quoted always: readers differ on
    spaces, "=" and the like bare.

    A double quote or a caret is written as RFC 6868 says (^' and ^^), which calendar readers decode;
    control characters cannot be carried and backslashes are read as escapes by some readers: those
    are dropped.
    """
    name = "".join(char for char in name if char != "\\" and char.isprintable()).strip()
    if not name:
        return ""
    return ';CN="' + name.replace("^", "^^").replace('"', "^'") + '"'


def fold(line: str) -> bytes:
    """Return one content line as UTF-8, folded at 75 octets without splitting a character."""
    data = line.encode()
    if len(data) <= _FOLD_AT:
        return data + b"\r\n"
    out, start, limit = [], 0, _FOLD_AT
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # inside a multi-byte character
            end -= 1
        out.append(data[start:end])
        start, limit = end, _FOLD_AT - 1  # continuation lines start with a space
    return b"\r\n ".join(out) + b"\r\n"


def deadline_event(
    *,
    uid: str,
    summary: str,
    description: str,
    day: dt.date,
    stamp: dt.datetime,
    url: str | None = None,
    organizer: tuple[str, str] | None = None,
) -> bytes:
    """Return a VCALENDAR holding one all-day event on ``day``, as of ``stamp`` (aware).

    ``organizer`` is the (name, ASCII address) of who publishes it; RFC 5546 requires an
    ORGANIZER in a METHOD:PUBLISH event, and Outlook shows it as the event's sender.
    """
    utc = stamp.astimezone(dt.UTC)
    sequence = int((utc - _SEQUENCE_EPOCH).total_seconds() // 60)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//drip//drip//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{utc:%Y%m%dT%H%M%SZ}",
        f"SEQUENCE:{max(sequence, 0)}",
        f"DTSTART;VALUE=DATE:{day:%Y%m%d}",
        f"DTEND;VALUE=DATE:{day + dt.timedelta(days=1):%Y%m%d}",
        f"SUMMARY:{escape_text(summary)}",
        f"DESCRIPTION:{escape_text(description)}",
        "TRANSP:TRANSPARENT",
    ]
    if organizer:
        name, address = organizer
        lines.append(f"ORGANIZER{_common_name(name)}:mailto:{address}")
    if url:
        lines.append(f"URL:{url}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return b"".join(fold(line) for line in lines)
