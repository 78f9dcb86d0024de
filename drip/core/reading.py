"""Reading what arrives in the reply mailbox: replies, auto-replies and bounces.

Pure: bytes in, a description out. What a reply's words say is
``drip.core.wording``'s; where its own words end, ``drip.core.quotes``'; what a bounce
says, ``drip.core.bounces``'. Deciding what a message does is ``drip.replies.handling``'s;
fetching it from a mailbox is ``drip.replies.mailboxes``'.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from enum import StrEnum

from drip.core import quotes, wording
from drip.core.bounces import Bounce, read_bounce
from drip.core.errors import DripError
from drip.core.quotes import Cut
from drip.core.tokens import TOKEN_LENGTH
from drip.core.wording import Reading, Verdict

#: a token in a subject, as a "reply done" link writes it when the address would grow too long
TOKEN_IN_SUBJECT = re.compile(rf"\[([a-z2-7]{{{TOKEN_LENGTH}}})\]", re.IGNORECASE)
#: a token as the plus part of an address: comms+TOKEN@...
PLUS_TOKEN = re.compile(rf"^[^@+]+\+([a-z2-7]{{{TOKEN_LENGTH}}})@", re.IGNORECASE)
_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")


#: MIME parts declared in one message at the most; more is a message built to exhaust a reader
MAX_PARTS = 200


class UnreadableMessage(DripError):
    """A message drip will not read: malformed beyond what the parser takes, or nested too deep."""


class Kind(StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


@dataclass(frozen=True)
class Incoming:
    """What a message in the reply mailbox is, and what it says."""

    #: its Message-ID, or a digest of its bytes when it has none: never processed twice
    key: str
    kind: Kind
    #: the From address, and the Sender's when someone sent it on the author's behalf
    sender: str
    subject: str
    #: tokens from a plus-addressed recipient ("comms+TOKEN@...") or the subject ("[TOKEN]")
    tokens: tuple[str, ...]
    #: Message-IDs it answers (In-Reply-To, then References, newest first)
    answers: tuple[str, ...]
    #: its new text: quoted text and signatures cut
    new_text: str
    #: how sure the cut is (UNSURE: only drip's own links showed where the quote began)
    cut: Cut = Cut.CLEAN
    on_behalf: str = ""
    #: Outlook's conversation header, which may stand in for In-Reply-To
    thread_index: str = ""
    #: Authentication-Results values, topmost (the receiving server's) first
    authentication: tuple[str, ...] = ()
    #: for a bounce: who failed, and the email that did
    bounce: Bounce | None = None
    #: why it was taken for an auto-reply
    auto_reason: str | None = None

    def reading(self, done_words: Sequence[str] | None = None) -> Reading:
        """Say what the sender's own words tell; never "done" when they could not be told from the quote."""
        found = wording.read(self.new_text, done_words)
        if self.cut is Cut.UNSURE and found.verdict in (Verdict.DONE, Verdict.OTHER, Verdict.EMPTY):
            return Reading(Verdict.DOUBT, "quote: the reply's own words could not be told from drip's email")
        return found


def read(data: bytes, ours: Sequence[str] = ()) -> Incoming:
    """Describe one message; ``ours`` are strings only drip's own emails hold (its link prefixes)."""
    if data.count(b"boundary=") > MAX_PARTS or data.count(b"BOUNDARY=") > MAX_PARTS:
        raise UnreadableMessage(f"it declares more than {MAX_PARTS} MIME parts")
    try:
        return _read(data, ours)
    except RecursionError:
        raise UnreadableMessage("its MIME parts are nested too deep to read") from None


def _read(data: bytes, ours: Sequence[str]) -> Incoming:
    # compat32 parses headers only when asked and as plain text: several times faster than
    # policy.default's header registry, which reparses Content-Type at every look.
    message = message_from_bytes(data, policy=policy.compat32)
    headers = _Headers(message)
    key = headers.first("Message-ID").strip() or "sha256:" + hashlib.sha256(data).hexdigest()
    sender = _first_address(headers, "From")
    subject = " ".join(_decoded(headers.first("Subject")).split())
    tokens = _tokens(headers, subject)
    answers = tuple(dict.fromkeys(_ids(headers, "In-Reply-To") + _ids(headers, "References")[::-1]))
    on_behalf = _first_address(headers, "Sender")
    thread_index = headers.first("Thread-Index").strip()
    authentication = tuple(headers.all("Authentication-Results"))
    return_path = headers.all("Return-Path")
    empty_return_path = bool(return_path) and return_path[0].strip() in ("<>", "")
    bounce = read_bounce(message, f"{headers.first('From')} {sender}", subject, empty_return_path)
    auto = None if bounce is not None else _auto_reply(headers, subject, empty_return_path)
    own = quotes.new_text(message, ours) if bounce is None else quotes.Own("")
    kind = Kind.BOUNCE if bounce is not None else Kind.AUTO_REPLY if auto else Kind.REPLY
    return Incoming(
        key, kind, sender, subject, tokens, answers, own.text, own.cut, on_behalf, thread_index,
        authentication, bounce, auto,
    )  # fmt: skip


# --- what kind of message ------------------------------------------------------------


class _Headers:
    """A message's headers by lower-case name, read once (``Message.get`` scans them all at each call)."""

    def __init__(self, message: Message) -> None:
        self._by_name: dict[str, list[str]] = {}
        for name, value in message.items():
            self._by_name.setdefault(name.lower(), []).append(_header_text(value))

    def all(self, name: str) -> list[str]:
        return self._by_name.get(name.lower(), [])

    def first(self, name: str) -> str:
        found = self._by_name.get(name.lower())
        return found[0] if found else ""


def _header_text(value: object) -> str:
    """A header's text; raw 8-bit text (as SMTPUTF8 mail sends it, kept by the parser as bytes) read
    as UTF-8."""
    if isinstance(value, str):
        return value
    try:
        return "".join(
            chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
            for chunk, _ in decode_header(value)  # type: ignore[arg-type]
        )
    except (ValueError, LookupError, UnicodeError):
        return str(value)


def _auto_reply(headers: _Headers, subject: str, empty_return_path: bool) -> str | None:
    """Say why a message is automatic (RFC 3834 and the conventions before it), or None."""
    auto = headers.first("Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        value = headers.first(name).strip()
        if value and (name != "X-Auto-Response-Suppress" or "oof" in value.lower() or value.lower() == "all"):
            return f"{name}: {value}"
    precedence = headers.first("Precedence").strip().lower()
    if precedence in ("bulk", "auto_reply", "junk", "list"):
        return f"Precedence: {precedence}"
    if empty_return_path:
        return "empty Return-Path"
    # Some out-of-office notices carry no header that says so; their subject does.
    away = wording.rules().away(subject)
    return None if away is None else f"Subject: {away}"


# --- whom and what it answers ---------------------------------------------------------


def _tokens(headers: _Headers, subject: str) -> tuple[str, ...]:
    found: list[str] = []
    names = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
    values = [value for name in names for value in headers.all(name)]
    plus_addressed = any("+" in value for value in values)
    for _, address in getaddresses(values) if plus_addressed else ():
        match = PLUS_TOKEN.match(address.strip())
        if match:
            found.append(match.group(1).lower())
    found += [token.lower() for token in TOKEN_IN_SUBJECT.findall(subject)]
    return tuple(dict.fromkeys(found))


def _ids(headers: _Headers, name: str) -> list[str]:
    return _MESSAGE_IDS.findall(" ".join(headers.all(name)))


def _first_address(headers: _Headers, name: str) -> str:
    values = headers.all(name)
    addresses = getaddresses(values) if values else []
    return addresses[0][1].strip().lower() if addresses else ""


def _decoded(value: str) -> str:
    """Decode RFC 2047 encoded words in a header's text."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value
