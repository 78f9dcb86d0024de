"""Signed action tokens: short, opaque, case-insensitive, safe in a URL and in an address.

A token says "do ACTION to OBJECT until EXPIRY" and carries an HMAC-SHA256 of
that, cut to 80 bits. It holds only an opaque database id (a goal's or a
participant's), never an address. It is base32 in lower case so that it
survives as the plus part of an email address (``comms+<token>@...``), where
some servers change case and the whole local part must stay under 64
characters: a token is 34.

Keys rotate: the first key signs, every key verifies.
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

from drip.errors import DripError

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
    DONE = "d"
    SNOOZE = "s"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True)
class Claim:
    """What a genuine token allows."""

    action: Action
    #: a goal row's id for done and snooze, a participant's id for unsubscribe
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
