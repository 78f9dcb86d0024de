"""The messages the mail catcher kept, read for the inbox: summaries, search, and each part.

A kept file never changes (the catcher writes it whole under a new name), so its summary is
parsed once and kept in memory: listing thousands stays quick. The catcher keeps whatever
reaches it, not only drip's own mail, so everything here reads leniently.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import cast

from drip.sending import catcher

#: the bytes read for a summary: the header block of any message drip or a person would send
HEAD_BYTES = 64 * 1024
#: what a search term may name before a colon, and the summary fields it looks in
FIELDS = {
    "to": ("to", "cc"),
    "from": ("sender",),
    "subject": ("subject",),
    "step": ("step",),
    "cohort": ("cohort",),
}
_ANYWHERE = ("to", "cc", "sender", "subject", "step", "cohort")
_HEADERS_ONLY = BytesHeaderParser(policy=policy.default)


@dataclass(frozen=True)
class Summary:
    """What the list shows of one kept message, from its headers alone."""

    name: str
    sender: str
    to: str
    cc: str
    subject: str
    date: str
    step: str
    cohort: str
    goal: str
    #: "forward" for a reply drip handed on to a person, "digest" for an owner's digest, else ""
    kind: str

    def matches(self, terms: list[tuple[str, str]]) -> bool:
        """Whether every term is found, case-insensitively, in the fields it names (any, unnamed)."""
        for field_name, word in terms:
            fields = FIELDS.get(field_name, _ANYWHERE)
            if not any(word in str(getattr(self, name)).casefold() for name in fields):
                return False
        return True


def parse_query(query: str) -> list[tuple[str, str]]:
    """Return a search's terms: ``to:ana step:welcome "three steps"`` gives three (field, word) pairs."""
    terms = []
    for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', query):
        word = quoted or bare
        field_name, colon, rest = word.partition(":")
        if colon and field_name.casefold() in FIELDS and rest:
            terms.append((field_name.casefold(), rest.casefold()))
        elif word.strip():
            terms.append(("", word.casefold()))
    return terms


class Shelf:
    """The catcher's folder, with each file's summary parsed once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._summaries: dict[str, Summary] = {}
        #: each forward's name, and the Message-ID of the reply it carries
        self._carried: dict[str, str] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Return the kept messages' names, newest first."""
        return [path.name for path in catcher.messages(self.folder)]

    def path(self, name: str) -> Path | None:
        """Return a kept message's file, or None for any name that is not one."""
        if not catcher.NAME.match(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def summaries(self, names: list[str], *, every: bool = False) -> list[Summary]:
        """Return the summaries of ``names``, parsing only those not seen before.

        ``every``: ``names`` are all the kept messages, so the summaries of any others (removed by
        a person) are forgotten.
        """
        with self._lock:
            known = self._summaries
        found, fresh = [], {}
        for name in names:
            summary = known.get(name)
            if summary is None:
                try:
                    summary = fresh[name] = summarise(name, _head(self.folder / name))
                except FileNotFoundError:  # removed by a person while listing
                    continue
            found.append(summary)
        if every and len(known) > len(names):
            present = set(names)
            known = {n: s for n, s in known.items() if n in present}
        if fresh or known is not self._summaries:
            with self._lock:
                self._summaries = known | fresh
        return found

    def search(self, query: str) -> tuple[list[Summary], int]:
        """Return the messages matching ``query``, newest first, and how many are kept in all."""
        names = self.names()
        terms = parse_query(query)
        kept = self.summaries(names, every=True)
        return [s for s in kept if s.matches(terms)], len(names)

    def forwards(self, summaries: list[Summary]) -> dict[str, str]:
        """Return the kept forwards among ``summaries`` by the Message-ID of the reply each carries."""
        found = {}
        for summary in summaries:
            if summary.kind != "forward":
                continue
            carried = self._carried.get(summary.name)
            if carried is None:
                path = self.path(summary.name)
                carried = carried_id(parse(path.read_bytes())) if path is not None else ""
                self._carried[summary.name] = carried
            if carried:
                found[carried] = summary.name
        return found


def carried_id(message: EmailMessage) -> str:
    """Return the Message-ID of the message a forward carries, or ""."""
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessage):
                return header(payload[0], "Message-ID")
    return ""


def _head(path: Path) -> bytes:
    with path.open("rb") as kept:
        data = kept.read(HEAD_BYTES)
    ends = [at for at in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if at >= 0]
    return data[: min(ends) + 2] if ends else data


def summarise(name: str, data: bytes) -> Summary:
    """Return the summary of a message from its bytes (its header block is enough)."""
    head = _HEADERS_ONLY.parsebytes(data)
    step = header(head, "X-Drip-Step")
    kind = ""
    if header(head, "Auto-Submitted").casefold().startswith("auto-forwarded"):
        kind = "forward"
    elif step == "digest":
        kind = "digest"
    return Summary(
        name=name,
        sender=header(head, "From"),
        to=header(head, "To"),
        cc=header(head, "Cc"),
        subject=header(head, "Subject") or "(no subject)",
        date=when(head.get("Date")),
        step=step,
        cohort=header(head, "X-Drip-Cohort"),
        goal=header(head, "X-Drip-Goal"),
        kind=kind,
    )


def header(message: EmailMessage | MIMEPart, name: str) -> str:
    """Return a header's decoded value, or "" when it is missing or cannot be read."""
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the parser cannot make sense of
        raw = message.get_all(name, failobj=[""])
        value = raw[0] if raw else ""
    return "" if value is None else " ".join(str(value).split())


def when(date: object) -> str:
    """Return a Date header as ``2027-01-11 20:00 UTC``, or as written when it is not a date."""
    if not date:
        return ""
    try:
        moment = email.utils.parsedate_to_datetime(str(date))
    except (TypeError, ValueError):
        return str(date)
    if moment.tzinfo is not None and moment.utcoffset() == dt.timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M %z").strip()


# --- one message, whole ----------------------------------------------------------------------


def parse(data: bytes) -> EmailMessage:
    return cast(EmailMessage, message_from_bytes(data, policy=policy.default))


def content(part: MIMEPart) -> str:
    """Return a text part's text, however its charset lies."""
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def body_text(message: EmailMessage, kind: str) -> str | None:
    """Return the message's ``plain`` or ``html`` body, or None when it has none."""
    part = message.get_body((kind,))
    return None if part is None else content(part)


def headers(message: EmailMessage) -> list[tuple[str, str]]:
    """Return every header of the message, in order, decoded (encoded-words read, lines unfolded)."""
    found = []
    for name, raw in message.raw_items():
        try:
            value = str(message.policy.header_fetch_parse(name, raw))
        except (ValueError, IndexError, TypeError):
            value = str(raw)
        found.append((name, " ".join(value.split())))
    return found


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int
    data: bytes

    @property
    def is_calendar(self) -> bool:
        return self.content_type == "text/calendar" or self.filename.casefold().endswith(".ics")


def attachments(message: EmailMessage) -> list[Attachment]:
    """Return the message's attachments (and inline parts that are not its body), numbered from 1."""
    found: list[Attachment] = []
    for part in message.iter_attachments():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            data = inner.as_bytes() if isinstance(inner, EmailMessage) else b""
        else:
            raw = part.get_payload(decode=True)
            data = raw if isinstance(raw, bytes) else b""
        filename = part.get_filename() or ""
        found.append(Attachment(len(found) + 1, filename, part.get_content_type(), len(data), data))
    return found


# --- the dark preview -------------------------------------------------------------------------

_DARK = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)


def darkened(html: str) -> str:
    """Return an email's HTML as a mail client in dark mode shows it (Apple Mail, say).

    A frame cannot be told to prefer dark: its media queries follow the browser. So each
    ``(prefers-color-scheme: dark)`` becomes a feature every screen has, each ``light`` one a
    feature none has, and the page says it is dark, for the parts the email leaves unstyled.
    """
    html = _DARK.sub("(min-width: 0px)", html)
    html = _LIGHT.sub("(max-width: -1px)", html)
    return _with_head(
        html, '<meta name="color-scheme" content="dark"><style>:root{color-scheme:dark !important}</style>'
    )


def framed(html: str) -> str:
    """Return an email's HTML ready for the inbox's frame: its links open in a new tab."""
    return _with_head(html, '<base target="_blank">')


def _with_head(html: str, extra: str) -> str:
    found = re.search(r"<head(\s[^>]*)?>", html, re.IGNORECASE)
    if found:
        return html[: found.end()] + extra + html[found.end() :]
    return extra + html
