"""Signed action tokens, and the signed parts of Message-IDs and Thread-Index headers.

Action tokens: short, opaque, case-insensitive, safe in a URL and in an address.

A token says "do ACTION to OBJECT until EXPIRY" and carries an HMAC-SHA256 of
that, cut to 80 bits. It holds only an opaque database id (a goal's or a
participant's), never an address. It is base32 in lower case so that it
survives as the plus part of an email address (``comms+<token>@...``), where
some servers change case and the whole local part must stay under 64
characters: a token is 34.

Keys rotate: the first key signs, every key verifies.

A delivery's Message-ID carries an HMAC of its id (``message_tag``), so a
reply's In-Reply-To can name only an email its sender received, never one
guessed from another. Outlook threads by ``Thread-Index`` and may leave
In-Reply-To out; drip's emails carry one whose 16-byte "GUID" is the
delivery's id and an HMAC of it, and Outlook keeps those bytes in every reply.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from drip.core.errors import DripError

_EPOCH = dt.date(2020, 1, 1)
_LAYOUT = struct.Struct(">cQH")  # action, object id, expiry in days after _EPOCH (0: never)
_MAC_BYTES = 10
#: characters in a token: base32 of the payload and the MAC, without padding
TOKEN_LENGTH = -(-(_LAYOUT.size + _MAC_BYTES) * 8 // 5)


class TokenError(DripError):
    """A token is malformed, forged, expired, or for another action."""


class TokenExpired(TokenError):
    """A genuine token whose time is over."""


class Action(StrEnum):
    """What a link does; its value is the one letter signed into the token."""

    DONE = "d"
    SNOOZE = "s"
    UNSUBSCRIBE = "u"
    #: take back a goal recorded done from a reply ("Not right? Reopen")
    REOPEN = "r"
    #: give one of a check-in's answers: the token names the email and the answer (``answer_object``)
    ANSWER = "a"

    @property
    def path(self) -> str:
        """The link page's address under the base URL: ``/done/TOKEN`` and so on."""
        return _PATHS[self]

    @property
    def on_goal(self) -> bool:
        """Whether the token names a goal (else a participant, or for an answer an email)."""
        return self in (Action.DONE, Action.SNOOZE, Action.REOPEN)


_PATHS = {
    Action.DONE: "done",
    Action.SNOOZE: "snooze",
    Action.UNSUBSCRIBE: "unsubscribe",
    Action.REOPEN: "reopen",
    Action.ANSWER: "answer",
}

#: the low bits of an answer token's object id: which of the email's answers (program.MAX_CHOICES fits)
_CHOICE_BITS = 4


def answer_object(delivery_id: int, choice: int) -> int:
    """Return the object id an answer link signs: the email (a delivery's id) and the answer's index."""
    if not 0 <= choice < 1 << _CHOICE_BITS:
        raise ValueError(f"answer index {choice} does not fit in a token")
    return delivery_id << _CHOICE_BITS | choice


def read_answer_object(object_id: int) -> tuple[int, int]:
    """Return the delivery id and the answer's index an answer token's object id names."""
    return object_id >> _CHOICE_BITS, object_id & ((1 << _CHOICE_BITS) - 1)


@dataclass(frozen=True)
class Claim:
    """What a genuine token allows."""

    action: Action
    #: a goal row's id for done, snooze and reopen, a participant's id for unsubscribe, and for an
    #: answer the email and the answer (``read_answer_object``)
    object_id: int
    #: last valid day (UTC), or None for a token that never expires
    expires: dt.date | None


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _keys(keys: Sequence[str]) -> list[bytes]:
    if not keys:
        raise TokenError("no secret key to sign links with")
    return [key.encode() for key in keys]


def make_token(keys: Sequence[str], action: Action, object_id: int, expires: dt.date | None) -> str:
    """Return a token for ``action`` on ``object_id``, signed with the first key."""
    days = 0 if expires is None else max(1, (expires - _EPOCH).days)
    payload = _LAYOUT.pack(action.value.encode(), object_id, days)
    raw = payload + _mac(_keys(keys)[0], payload)
    return base64.b32encode(raw).decode().rstrip("=").lower()


def read_token(keys: Sequence[str], token: str, action: Action, today: dt.date) -> Claim:
    """Return what ``token`` allows, if it is genuine, for ``action``, and still valid ``today``."""
    text = token.strip().upper()
    if len(text) != TOKEN_LENGTH:
        raise TokenError("this link is incomplete; copy the whole link from the email")
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise TokenError("this link is not one drip sent") from None
    if base64.b32encode(raw).decode().rstrip("=") != text:
        raise TokenError("this link is not one drip sent")  # unused trailing bits were changed
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    if not any(hmac.compare_digest(mac, _mac(key, payload)) for key in _keys(keys)):
        raise TokenError("this link is not one drip sent, or it was changed")
    code, object_id, days = _LAYOUT.unpack(payload)
    claimed = Action(code.decode())
    if claimed is not action:
        raise TokenError("this link is for something else")
    expires = None if days == 0 else _EPOCH + dt.timedelta(days=days)
    if expires is not None and today > expires:
        raise TokenExpired(f"this link expired on {expires:%d %B %Y}")
    return Claim(claimed, object_id, expires)


# --- Message-IDs and Thread-Index ---------------------------------------------------------

#: FILETIME's epoch, for Thread-Index
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
_THREAD_HEADER = 22


def _tag(key: str, purpose: str, *parts: object) -> bytes:
    text = "\0".join([purpose, *(str(part) for part in parts)])
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()


def message_tag(keys: Sequence[str], instance: str, delivery_id: str) -> str:
    """Return the part of a delivery's Message-ID that no one without the key can work out (16 characters)."""
    raw = _tag(_keys(keys)[0].decode(), "message-id", instance, delivery_id)[:10]
    return base64.b32encode(raw).decode().lower()


def thread_index(keys: Sequence[str], delivery_id: str, when: dt.datetime) -> str:
    """Return the Thread-Index header of a delivery's email: Outlook's 22-byte conversation header.

    One reserved byte, five bytes of the time (FILETIME without its lowest 16 bits), then a 16-byte
    "GUID": the delivery's id and an HMAC of it. A preview's id, which is not a number, gets id 0.
    """
    ticks = int((when - _FILETIME_EPOCH).total_seconds() * 10_000_000) >> 16
    number = int(delivery_id) if delivery_id.isdigit() else 0
    mac = _tag(_keys(keys)[0].decode(), "thread-index", number)[:8]
    raw = b"\x01" + (ticks & (2**40 - 1)).to_bytes(5, "big") + number.to_bytes(8, "big") + mac
    return base64.b64encode(raw).decode()


def read_thread_index(keys: Sequence[str], value: str) -> int | None:
    """Return the delivery id an Outlook reply's Thread-Index carries, if drip made its header block."""
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except ValueError:
        return None
    if len(raw) < _THREAD_HEADER:
        return None
    number, mac = int.from_bytes(raw[6:14], "big"), raw[14:22]
    if number and any(hmac.compare_digest(mac, _tag(key, "thread-index", number)[:8]) for key in keys):
        return number
    return None
