"""Parse and check single values typed by people: dates, offsets, zones, addresses.

Every function raises :class:`InvalidValue` whose message says what is wrong and
how to write it instead; callers add the file, row and column.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import idna

from drip.core.errors import DripError


class InvalidValue(DripError, ValueError):
    """A single value cannot be used; the message carries the fix."""


def shown(text: str, limit: int = 60) -> str:
    """Return ``text`` quoted for a message, shortened when long."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- offsets -----------------------------------------------------------------

_OFFSET = re.compile(r"^\s*([+-]?)\s*(\d{1,4})\s*([dw])\s*$", re.IGNORECASE)


def parse_offset(text: str) -> int:
    """Return the number of days in an offset such as ``+2w``, ``-3d`` or ``10d``."""
    match = _OFFSET.match(text)
    if match is None:
        raise InvalidValue(
            f'{text!r} is not an offset; write a number of days or weeks such as "+3d", "-2d" or "+2w"'
        )
    sign, amount, unit = match.groups()
    days = int(amount) * (7 if unit.lower() == "w" else 1)
    return -days if sign == "-" else days


# --- dates and times -------------------------------------------------------

_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]00:00(?::00(?:\.0+)?)?)?$")
_DAY_FIRST_DOTS = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


#: dates outside these years are typing mistakes or "no date" placeholders such as 9999-12-31
EARLIEST_YEAR, LATEST_YEAR = 1970, 2199


def _make_date(text: str, year: int, month: int, day: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise InvalidValue(f"{text!r} is not a real date ({exc}); write it as YYYY-MM-DD") from None


def _in_range(day: dt.date, text: str) -> dt.date:
    if not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise InvalidValue(
            f"{text!r} is not a usable date (years {EARLIEST_YEAR} to {LATEST_YEAR}); for a person "
            "without a deadline of their own, leave the cell empty"
        )
    return day


def parse_date(value: object) -> dt.date:
    """Return the calendar date in ``value`` as written in TOML or exported by a spreadsheet.

    Accepts TOML dates, ``2027-03-15`` (also with ``/`` or ``.``, and with a
    zero time as Excel writes it), ``15.03.2027`` and slashed dates when the
    order of day and month is unambiguous.
    """
    text = value.isoformat() if isinstance(value, dt.date) else str(value).strip()
    return _in_range(_read_date(value, text), text)


def _read_date(value: object, text: str) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0) or value.tzinfo is not None:
            raise InvalidValue(f"{text!r} has a time; a deadline is a date, YYYY-MM-DD")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if match := _ISO_DATE.match(text):
        year, month, day = map(int, match.groups())
        return _make_date(text, year, month, day)
    if match := _DAY_FIRST_DOTS.match(text):
        day, month, year = map(int, match.groups())
        return _make_date(text, year, month, day)
    if match := _SLASHED.match(text):
        first, second, year = map(int, match.groups())
        if first > 12 and second > 12:
            raise InvalidValue(f"{text!r} is not a real date; write it as YYYY-MM-DD")
        if first > 12 >= second:
            return _make_date(text, year, second, first)
        if second > 12 >= first or first == second:
            return _make_date(text, year, first, second)
        as_us = f"{year:04d}-{first:02d}-{second:02d}"
        as_eu = f"{year:04d}-{second:02d}-{first:02d}"
        raise InvalidValue(
            f"{text!r} could be month/day or day/month; write it as YYYY-MM-DD: {as_us} or {as_eu}"
        )
    raise InvalidValue(f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2027-03-15")


def parse_date_or_offset(value: object, start: dt.date) -> dt.date:
    """Return a date written either as a date or as an offset (``"+2w"``) from ``start``."""
    if isinstance(value, str) and value.strip()[:1] in "+-":
        return _in_range(start + dt.timedelta(days=parse_offset(value)), value)
    return parse_date(value)


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_clock(value: object) -> dt.time:
    """Return the local time of day in ``"09:00"`` (24-hour clock)."""
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0)
    text = str(value).strip()
    match = _CLOCK.match(text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise InvalidValue(f'{text!r} is not a time of day; write it as HH:MM, e.g. "09:00"')
    return dt.time(int(match[1]), int(match[2]))


def parse_instant(text: str) -> dt.datetime:
    """Return an aware UTC instant from ISO 8601; a time without an offset is read as UTC."""
    raw = text.strip()
    try:
        value = dt.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise InvalidValue(
            f"{text!r} is not a date and time; write ISO 8601, e.g. 2027-01-11T09:00Z "
            "or 2027-01-11T09:00-05:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# --- time zones --------------------------------------------------------------

# Abbreviations and colloquial names people write in rosters. tzdata knows some
# of them (EST, MST, GMT) as fixed offsets without daylight saving, which is
# never what an executive in New York or London means.
_ZONE_HINTS = {
    "America/New_York": "est edt et eastern us-eastern",
    "America/Chicago": "cst cdt ct central",
    "America/Denver": "mst mdt mt mountain",
    "America/Los_Angeles": "pst pdt pt pacific",
    "America/Anchorage": "akst akdt alaska",
    "Pacific/Honolulu": "hst hawaii",
    "Europe/London": "gmt bst uk",
    "Europe/Paris": "cet cest met",
    "Europe/Athens": "eet eest",
    "Europe/Lisbon": "wet west",
    "Europe/Moscow": "msk",
    "Asia/Kolkata": "ist",
    "Asia/Tokyo": "jst",
    "Asia/Seoul": "kst",
    "Asia/Shanghai": "china",
    "Asia/Hong_Kong": "hkt",
    "Asia/Singapore": "sgt",
    "Asia/Dubai": "gst",
    "Australia/Sydney": "aest aedt",
    "Australia/Perth": "awst",
    "Pacific/Auckland": "nzst nzdt",
    "America/Sao_Paulo": "brt",
    "Africa/Johannesburg": "sast",
}
_ABBREVIATIONS = {word: zone for zone, words in _ZONE_HINTS.items() for word in words.split()}

# Windows names, as Outlook and Active Directory exports write them.
_WINDOWS_ZONES = {
    "eastern standard time": "America/New_York",
    "central standard time": "America/Chicago",
    "mountain standard time": "America/Denver",
    "pacific standard time": "America/Los_Angeles",
    "gmt standard time": "Europe/London",
    "w. europe standard time": "Europe/Berlin",
    "romance standard time": "Europe/Paris",
    "central europe standard time": "Europe/Budapest",
    "tokyo standard time": "Asia/Tokyo",
    "india standard time": "Asia/Kolkata",
    "china standard time": "Asia/Shanghai",
    "singapore standard time": "Asia/Singapore",
    "aus eastern standard time": "Australia/Sydney",
}

_ALWAYS_UTC = {"utc", "etc/utc", "z", "zulu", "universal"}
_UNUSABLE = {"factory", "localtime"}


@cache
def _zones() -> dict[str, str]:
    """Map each usable zone name, folded to lower case, to its spelling."""
    return {
        name.lower(): name
        for name in zoneinfo.available_timezones()
        if name.lower() not in _UNUSABLE and name.lower() not in _ABBREVIATIONS
    }


@cache
def _cities() -> dict[str, str]:
    """Map each city ("new york") to its zone ("America/New_York")."""
    cities: dict[str, str] = {}
    for name in sorted(_zones().values()):
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/")):
            cities.setdefault(name.rsplit("/", 1)[1].replace("_", " ").lower(), name)
    return cities


@cache
def parse_timezone(text: str) -> str:
    """Return the IANA name of the zone in ``text``, or fail naming the likely zone."""
    raw = text.strip()
    folded = raw.lower()
    if folded in _ALWAYS_UTC:
        return "UTC"
    if folded in _ABBREVIATIONS:
        zone = _ABBREVIATIONS[folded]
        raise InvalidValue(
            f"{raw!r} is an abbreviation, not an IANA time zone, and would ignore daylight "
            f'saving; use the city\'s zone, e.g. "{zone}"'
        )
    if folded in _WINDOWS_ZONES:
        zone = _WINDOWS_ZONES[folded]
        raise InvalidValue(f'{raw!r} is a Windows zone name; use the IANA name "{zone}"')
    if re.match(r"^(etc/)?(utc|gmt)?\s*[+-]\s*0*[1-9]", folded):
        raise InvalidValue(
            f"{raw!r} is a fixed offset, which ignores daylight saving; use the city's "
            'IANA zone, e.g. "Europe/Berlin" or "America/New_York"'
        )
    if folded in _zones():
        return _zones()[folded]
    city = folded.rsplit("/", 1)[-1].replace("_", " ").strip()
    if city in _cities():
        zone = _cities()[city]
        raise InvalidValue(f'{raw!r} is not an IANA time zone; did you mean "{zone}"?')
    keys = list(_zones()) + list(_cities())
    close = difflib.get_close_matches(folded.replace(" ", "_"), keys, n=1, cutoff=0.75)
    close = close or difflib.get_close_matches(city, list(_cities()), n=1, cutoff=0.75)
    if close:
        zone = _zones().get(close[0]) or _cities()[close[0]]
        raise InvalidValue(f'{raw!r} is not an IANA time zone; did you mean "{zone}"?')
    raise InvalidValue(
        f'{raw!r} is not an IANA time zone; write Area/City, e.g. "America/New_York", '
        '"Europe/London" or "Asia/Tokyo"'
    )


# --- addresses and header values ------------------------------------------

_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]|=\?")


def check_header_safe(text: str) -> str:
    """Return ``text`` if it may go into an email header, else fail naming the character.

    CR, LF and NUL could inject headers, and "=?" could smuggle an encoded-word
    holding them past Python's own folding (CVE-2024-6923); other control
    characters have no place in a name or subject either.
    """
    match = _HEADER_UNSAFE.search(text)
    if match is None:
        return text
    found = match.group()
    what = {
        "\r": "a carriage return (CR)",
        "\n": "a line break (LF)",
        "\x00": "a NUL character",
        "=?": 'the sequence "=?"',
    }.get(found, f"the control character U+{ord(found[0]):04X}")
    raise InvalidValue(
        f"{text!r} contains {what}, which is not allowed in a value that goes into an email header; remove it"
    )


#: longer than any real name, short enough for every mail header
MAX_NAME = 200


def parse_name(text: str) -> str:
    """Return a person's name fit for a header: safe, with each run of spaces made one space."""
    name = " ".join(check_header_safe(text).split())
    if len(name) > MAX_NAME:
        raise InvalidValue(f"{shown(name)} is {len(name)} characters; a name is at most {MAX_NAME}")
    return name


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
#: characters no roster value may hold: C0 and C1 controls (line breaks and tabs too), DEL, the
#: line and paragraph separators, and the bidirectional embeddings, overrides and isolates, which
#: can make a name read backwards in a header, a page or a terminal
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def unfit_text(value: str, max_chars: int, allow: str = "") -> str | None:
    """Say why a roster value cannot be kept (None: it can): a control character (but those in
    ``allow``), or its length."""
    found = next((m for m in _CONTROLS.finditer(value) if m.group() not in allow), None)
    if found is not None:
        return (
            f"holds the invisible control character U+{ord(found.group()):04X} at position "
            f"{found.start() + 1}; retype the value"
        )
    if len(value) > max_chars:
        return (
            f"is {len(value):,} characters long; a value holds at most {max_chars:,} "
            "(DRIP_MAX_VALUE_CHARS); shorten it"
        )
    return None


def terminal_safe(text: str) -> str:
    """Show control and bidirectional characters as escapes, so printed text cannot drive a terminal."""
    return _CONTROLS_SHOWN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


#: what a terminal must not be sent raw: as ``_CONTROLS``, but tabs and line ends (CRLF) are output's own
_CONTROLS_SHOWN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean_cell(text: str) -> str:
    """Return ``text`` without the surrounding and invisible spaces that copy-paste leaves."""
    return unicodedata.normalize("NFC", text.translate(_INVISIBLE)).strip()


def email_key(address: str) -> str:
    """Return the form of an address that tells participants apart: case folded. A +tag makes
    another participant here; only a reply's sender is matched more loosely (``senders.address_key``)."""
    return address.casefold()


@lru_cache(maxsize=1024)
def ascii_domain(domain: str) -> str:
    """Return ``domain`` as DNS and headers carry it: IDNA 2008 with UTS 46 mapping (what mail
    servers and browsers use), so ``straße.de`` is ``xn--strae-oqa.de``, not ``strasse.de``, a
    different domain that the older IDNA 2003 codec in Python's standard library would give.
    InvalidValue for a name IDNA refuses."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as error:
        raise InvalidValue(f"{domain!r} is not a valid internationalised domain name ({error})") from None


@dataclass(frozen=True)
class Address:
    """An email address as people write it (its domain may be internationalised), and as every
    header and SMTP command carries it: the domain in IDNA, the part before the @ in ASCII."""

    text: str

    @property
    def local(self) -> str:
        return self.text.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.text.rpartition("@")[2]

    @property
    def ascii_domain(self) -> str:
        return ascii_domain(self.domain)

    @property
    def ascii(self) -> str:
        """The address fit for a header; InvalidValue for one that cannot be (a non-ASCII local part)."""
        check_header_safe(self.text)
        local = self.local
        if not local or not self.domain or not _ASCII_LOCAL.match(local):
            raise InvalidValue(f"cannot put {self.text!r} in a header: the part before @ must be ASCII")
        return f"{local}@{self.ascii_domain}"

    def tagged(self, tag: str) -> Address:
        """The same mailbox plus-addressed: ``local+tag@domain`` (any +tag it had replaced)."""
        return Address(f"{self.local.split('+')[0]}+{tag}@{self.domain}")


_ASCII_LOCAL = re.compile(r"^[!-~]+$")


def parse_email(text: str) -> str:
    """Return the normalised address in ``text``, or fail saying why it is not one."""
    raw = clean_cell(text)
    if "<" in raw and raw.endswith(">"):
        raise InvalidValue(
            f"{raw!r} holds a name and an address; put only the address here "
            "(the name goes in the name column)"
        )
    check_header_safe(raw)
    # Imported here: only reading a roster or a setting needs it, and sending need not load it.
    from email_validator import EmailNotValidError, validate_email

    try:
        # No SMTPUTF8: an address needs an ASCII part before the @ to get through most relays.
        return validate_email(raw, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        raise InvalidValue(f"{shown(raw)} is not a valid email address: {exc}") from None


def parse_mailbox(text: str) -> tuple[str, str]:
    """Return (display name, address) from ``"Name <address>"`` or a bare address."""
    raw = clean_cell(text)
    check_header_safe(raw)
    match = re.match(r'^\s*(?:"?([^"<]*?)"?\s*)?<([^<>]+)>\s*$', raw)
    if match:
        name, address = parse_name(match[1] or ""), match[2]
    else:
        name, address = "", raw
    return name, parse_email(address)


_HONORIFICS = {
    "dr",
    "dr.",
    "prof",
    "prof.",
    "mr",
    "mr.",
    "mrs",
    "mrs.",
    "ms",
    "ms.",
    "mx",
    "mx.",
    "sir",
    "dame",
}


def first_name(name: str, fields: Mapping[str, str]) -> str:
    """Return the name to greet: the roster's first_name column, else the first word that is not a title."""
    given = (fields.get("first_name") or "").strip()
    if given:
        return given
    words = name.split()
    while len(words) > 1 and words[0].casefold() in _HONORIFICS:
        words = words[1:]
    return words[0] if words else name
