"""A participant's answer to a goal's question: cleaned, checked, and never markup.

An answer is what someone typed on the confirmation page, or the words of the reply that
completed the goal. It is kept as plain text: control and direction-override characters go,
lines are kept, and the length is the program's limit. A web address must be http or https, with
a host and no password in it; drip never fetches it. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

from drip.core.program import AnswerKind, Ask
from drip.core.values import InvalidValue
from drip.core.wording import normalize

#: characters an answer never keeps besides controls: bidirectional overrides and isolates, which
#: could make a name or address read differently from what it is
_DIRECTION = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\u00a0]+")
_WEB = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'()\[\]]+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)+/[^\s<>\"'()\[\]]*", re.IGNORECASE
)
_HOST = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]$", re.I)
#: a reply that has fewer letters than this beyond the done word says nothing more (twice as many in
#: Japanese or Chinese, written without spaces)
_SAYS_MORE = 3


class AnswerError(InvalidValue):
    """An answer drip cannot keep, with what to change.

    ``template`` is the English sentence with ``{placeholders}``: the pages look it up in the
    reader's language, where ``str()`` gives it in English.
    """

    def __init__(self, template: str, **values: str) -> None:
        super().__init__(template.format(**values))
        self.template, self.values = template, values


def clean(raw: str, ask: Ask) -> str | None:
    """Return the answer to keep from what was typed; None for nothing. Raise AnswerError if it is
    too long, or (for a web address) not one."""
    text = _plain(raw)
    if not text:
        return None
    if ask.kind is AnswerKind.URL:
        return web_address(text, ask.limit)
    if len(text) > ask.limit:
        raise AnswerError(
            "This is {length} characters; the answer takes at most {limit}.",
            length=str(len(text)), limit=str(ask.limit),
        )  # fmt: skip
    return text


def from_reply(words: str, ask: Ask, done_phrase: str | None = None) -> str | None:
    """Return the answer a reply that completed the goal gives: its first web address for a URL
    question, else its words cut to the limit; None when it says no more than the done word."""
    text = _plain(words)
    if ask.kind is AnswerKind.URL:
        for found in _WEB.findall(text):
            try:
                return web_address(found.rstrip(".,;:!?"), ask.limit)
            except AnswerError:
                continue
        return None
    rest = normalize(text).replace(normalize(done_phrase), " ") if done_phrase else normalize(text)
    letters = [char for char in rest if char.isalnum()]
    # a word of Japanese or Chinese is a few characters, with no space ("しました" ends a done word)
    wide = any(unicodedata.east_asian_width(char) == "W" for char in letters)
    if len(letters) < _SAYS_MORE * (2 if wide else 1):
        return None
    return text if len(text) <= ask.limit else text[: ask.limit - 1].rstrip() + "…"


def web_address(text: str, limit: int) -> str:
    """Return ``text`` as an http(s) address; add https:// to a bare ``linkedin.com/in/...``."""
    text = text.strip()
    if any(char.isspace() for char in text):
        raise AnswerError("A web address has no spaces: paste it from the browser's address bar.")
    if "://" not in text and not text.casefold().startswith(("javascript:", "data:", "vbscript:", "file:")):
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        _ = parts.hostname, parts.port  # each raises ValueError on a malformed address
    except ValueError:
        raise AnswerError("That is not a web address: it needs a name such as www.linkedin.com.") from None
    if parts.scheme.casefold() not in ("http", "https"):
        raise AnswerError("Give a web address that starts with https:// (or http://).")
    if parts.username is not None or parts.password is not None:
        raise AnswerError("A web address with a name or password in it is not kept: leave them out.")
    host = parts.hostname or ""
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        ascii_host = ""
    if not _HOST.match(ascii_host):
        raise AnswerError("That is not a web address: it needs a name such as www.linkedin.com.")
    address = urlunsplit((parts.scheme.casefold(), parts.netloc, parts.path, parts.query, parts.fragment))
    if len(address) > limit:
        raise AnswerError(
            "This is {length} characters; the answer takes at most {limit}.",
            length=str(len(address)), limit=str(limit),
        )  # fmt: skip
    return address


def _plain(raw: str) -> str:
    """Return ``raw`` as plain text: NFC, no controls or direction overrides, tidy spaces and lines."""
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        char
        for char in text.translate(_DIRECTION)
        if char in "\n\t" or unicodedata.category(char) not in ("Cc", "Cs", "Co")
    )
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
