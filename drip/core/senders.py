"""Who sent a message, and what the receiving server vouches for.

Pure. Anyone can write any From header. drip therefore lets a reply without
a token complete a goal only when (a) it answers an email drip sent (its
Message-ID, which carries a part no one can guess), (b) its From or Sender is
the participant or their delegate, and (c) the server that received it does
not say the sender's domain failed DMARC.

(c) rests on the Authentication-Results header (RFC 8601). A receiving
server adds its own at the top of the message; any such header further down
came with the message and proves nothing. So drip reads only the topmost one,
and only if its authserv-id is one the operator named in
``DRIP_INBOX_AUTHSERV_ID`` (``*`` for a server that writes none, as Exchange
Online does). Without that setting no Authentication-Results header is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import idna

from drip.core.values import InvalidValue, ascii_domain

_COMMENT = re.compile(r"\([^()]*\)")
_PROPERTY = re.compile(r"([A-Za-z0-9_.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")


@lru_cache(maxsize=4096)
def address_key(address: str) -> str:
    """Fold an address for comparison: case, a +tag and an internationalised domain's forms are one."""
    local, _, domain = address.strip().strip("<>").strip().rpartition("@")
    local = local.split("+", 1)[0].casefold()
    with suppress(InvalidValue):  # a name IDNA refuses is compared as written
        domain = ascii_domain(domain)
    return f"{local}@{domain.casefold()}"


def address_forms(address: str) -> set[str]:
    """Return the case-folded forms under which an address may be stored: as written and without a
    +tag, its domain in ASCII (IDNA) and in Unicode."""
    local, at, domain = address.strip().strip("<>").strip().rpartition("@")
    if not at or not local or not domain:
        return set()
    locals_ = {local.casefold(), local.split("+", 1)[0].casefold()}
    domains = {domain.casefold()}
    for convert in (idna.decode, ascii_domain):
        try:
            domains.add(convert(domain).casefold())
        except (idna.IDNAError, UnicodeError, ValueError, InvalidValue):
            continue
    return {f"{name}@{host}" for name in locals_ for host in domains}


def same_address(one: str, other: str | None) -> bool:
    return bool(other) and address_key(one) == address_key(other or "")


def domain_of(address: str) -> str:
    return address_key(address).rpartition("@")[2]


class Vouch(StrEnum):
    """What the receiving server says of the sender's domain."""

    PASS = "pass"
    FAIL = "fail"
    #: no trusted header, or one that settles nothing (no DMARC result, no aligned DKIM signature)
    NONE = "none"


@dataclass(frozen=True)
class Results:
    """The findings of one Authentication-Results header."""

    authserv_id: str
    #: method -> [(result, {property: value})]
    methods: dict[str, list[tuple[str, dict[str, str]]]]

    def vouch(self, domain: str) -> tuple[Vouch, str]:
        """Say what these results vouch for ``domain`` (the From's), and by which method."""
        domain = domain.casefold()
        for result, found in self.methods.get("dmarc", []):
            header_from = found.get("header.from", domain).casefold().strip('"')
            if header_from != domain:
                continue
            if result == "pass":
                return Vouch.PASS, "dmarc=pass"
            if result == "fail":
                return Vouch.FAIL, "dmarc=fail"
        for result, found in self.methods.get("dkim", []):
            signer = found.get("header.d", found.get("header.i", "").rpartition("@")[2]).casefold().strip('"')
            aligned = signer and (domain == signer or domain.endswith("." + signer))
            if result == "pass" and aligned:
                return Vouch.PASS, f"dkim=pass header.d={signer}"
        return Vouch.NONE, "no DMARC result or aligned DKIM signature"


def parse_results(value: str) -> Results:
    """Read one Authentication-Results header value."""
    text = " ".join(_COMMENT.sub(" ", _COMMENT.sub(" ", value)).split())
    items = [item.strip() for item in text.split(";")]
    first = items[0] if items else ""
    if "=" in first.split(" ", 1)[0]:
        authserv_id = ""  # Exchange Online writes none
    else:
        authserv_id = first.split(" ", 1)[0].casefold()
        items = items[1:]
    methods: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for item in items:
        pairs = _PROPERTY.findall(item)
        if not pairs:
            continue
        (method, result), *props = pairs
        methods.setdefault(method.casefold(), []).append(
            (result.casefold(), {key.casefold(): val.strip('"') for key, val in props})
        )
    return Results(authserv_id, methods)


def trusted_results(values: Sequence[str], trusted_ids: Sequence[str]) -> Results | None:
    """Return the topmost Authentication-Results header, if its authserv-id is one the operator trusts."""
    if not values or not trusted_ids:
        return None
    results = parse_results(values[0])
    wanted = {identity.casefold() for identity in trusted_ids}
    if "*" in wanted or results.authserv_id in wanted:
        return results
    return None
