"""Reading what arrives in the reply mailbox: replies, auto-replies and bounces.

Pure: bytes in, a description out. Deciding what a reply does is
``drip.ingest``'s; fetching it from a mailbox is ``drip.mailboxes``'.

A reply counts as "done" only from its *new* text: quoted text (``>`` lines,
"On ... wrote:" and the Outlook header block, Gmail's and Outlook's quote
elements in HTML) and signatures are cut first, so "done" in the quoted email
below never counts, and neither does "not done yet".
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from enum import StrEnum
from html.parser import HTMLParser

#: words that, in a reply's new text, mean the goal is done; DRIP_DONE_WORDS replaces them
DEFAULT_DONE_WORDS = (
    "done", "completed", "complete", "finished", "✅", "✔", "✔️", "☑",  # English, and the ticks
    "fait", "terminé", "fini",  # French
    "erledigt", "fertig", "geschafft",  # German
    "hecho", "terminado", "listo", "completado",  # Spanish
    "fatto", "finito", "completato",  # Italian
    "gedaan", "klaar", "voltooid",  # Dutch
    "feito", "concluído", "pronto",  # Portuguese
)  # fmt: skip
#: words that, just before a done word, take it back: "not done", "almost finished"
_NEGATIONS = frozenset(
    "not no never almost nearly isn't isnt wasn't haven't hasn't havent hasnt yet "  # English
    "pas jamais presque nicht noch kein fast todavía aún casi non ancora quasi "  # fr, de, es, it
    "niet nog bijna não ainda quase".split()  # Dutch, Portuguese
)
_TOKEN_IN_SUBJECT = re.compile(r"\[([a-z2-7]{34})\]", re.IGNORECASE)
_PLUS_TOKEN = re.compile(r"^[^@+]+\+([a-z2-7]{34})@", re.IGNORECASE)
_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")
_WORD = re.compile(r"[\w'’]+|[✅✔☑]", re.UNICODE)

# Where the quoted part of a plain-text reply begins.
_ATTRIBUTION = re.compile(
    r"^\s*(On\b.*\bwrote:|Le\b.*\ba écrit\s*:|Am\b.*\bschrieb\b.*:|El\b.*\bescribió:|Il\b.*\bha scritto:|"
    r"Op\b.*\bschreef\b.*:|Em\b.*\bescreveu:)\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Ursprüngliche Nachricht\s*-{2,}|_{10,}|"
    r"-{2,}\s*Forwarded message\s*-{2,})\s*$",
    re.IGNORECASE,
)
_HEADER_BLOCK = re.compile(r"^\s*\*?(From|Von|De|Da|Van)\s*:\*?\s", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(Sent|Date|Gesendet|Envoyé|Enviado|Inviato|Verzonden|To|An|À|Para|A)\s*:", re.IGNORECASE
)
_SIGNOFF = re.compile(
    r"^\s*(--\s*|Sent from my \w+.*|Get Outlook for \w+.*|Envoyé de mon \w+.*|Von meinem \w+ gesendet.*)$",
    re.IGNORECASE,
)


class Kind(StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


@dataclass(frozen=True)
class Bounce:
    """One failed recipient of a delivery status notification."""

    address: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Incoming:
    """What a message in the reply mailbox is, and what it says."""

    #: its Message-ID, or a digest of its bytes when it has none: never processed twice
    key: str
    kind: Kind
    sender: str
    subject: str
    #: tokens from a plus-addressed recipient ("comms+TOKEN@...") or the subject ("[TOKEN]")
    tokens: tuple[str, ...]
    #: Message-IDs it answers (In-Reply-To, then References, newest first)
    answers: tuple[str, ...]
    #: its new text: quoted text and signatures cut
    new_text: str
    #: for a bounce: the recipients that failed for good, and the Message-ID of what bounced
    bounces: tuple[Bounce, ...] = ()
    bounced_message_id: str | None = None
    #: why it was taken for an auto-reply
    auto_reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def says_done(self, words: Iterable[str] = DEFAULT_DONE_WORDS) -> bool:
        return says_done(self.new_text, words)


def read(data: bytes) -> Incoming:
    """Describe one message."""
    # compat32 parses headers only when asked and as plain text: several times faster than
    # policy.default's header registry, which reparses Content-Type at every look.
    message = message_from_bytes(data, policy=policy.compat32)
    key = _header(message, "Message-ID").strip() or "sha256:" + hashlib.sha256(data).hexdigest()
    sender = _first_address(message, "From")
    subject = " ".join(_decoded(_header(message, "Subject")).split())
    tokens = _tokens(message, subject)
    answers = tuple(dict.fromkeys(_ids(message, "In-Reply-To") + _ids(message, "References")[::-1]))
    bounce = _bounce(message)
    if bounce is not None:
        failed, bounced_id = bounce
        return Incoming(key, Kind.BOUNCE, sender, subject, tokens, answers, "", failed, bounced_id)
    auto = _auto_reply(message)
    text = new_text(message)
    kind = Kind.AUTO_REPLY if auto else Kind.REPLY
    return Incoming(key, kind, sender, subject, tokens, answers, text, auto_reason=auto)


def says_done(text: str, words: Iterable[str] = DEFAULT_DONE_WORDS) -> bool:
    """Say whether ``text`` reports a goal done: a done word, not taken back, not asked about."""
    wanted = {_fold(word) for word in words}
    for sentence, tokens in _sentences(text):
        if sentence.strip().endswith("?"):
            continue  # "is it done?" asks, it does not tell
        if any(token in wanted and not _negated(tokens, index) for index, token in enumerate(tokens)):
            return True
    return False


def _sentences(text: str) -> Iterator[tuple[str, list[str]]]:
    """Each sentence of ``text`` with its words, folded for comparison."""
    for sentence in re.split(r"(?<=[.!?\n])", text):
        yield sentence, [_fold(token) for token in _WORD.findall(sentence)]


def _negated(tokens: list[str], index: int) -> bool:
    """Say whether one of the three words before ``tokens[index]`` takes it back."""
    return bool(_NEGATIONS.intersection(tokens[max(0, index - 3) : index]))


#: two words that say "not yet", in the languages of the negations above
_NOT_YET = frozenset(
    {("not", "yet"), ("noch", "nicht"), ("pas", "encore"), ("todavía", "no"), ("aún", "no"),
     ("nog", "niet"), ("ainda", "não"), ("non", "ancora")}
)  # fmt: skip


def takes_back(text: str, words: Iterable[str] = DEFAULT_DONE_WORDS) -> bool:
    """Say whether ``text`` says the goal is not done: "not yet", or a done word taken back."""
    wanted = {_fold(word) for word in words}
    for _, tokens in _sentences(text):
        if _NOT_YET.intersection(zip(tokens, tokens[1:], strict=False)):
            return True
        if any(token in wanted and _negated(tokens, index) for index, token in enumerate(tokens)):
            return True
    return False


def new_text(message: Message) -> str:
    """Return what the sender wrote: the plain part (or the HTML's text) with quotes and signature cut."""
    plain = _body(message, "plain")
    if plain is not None:
        return _cut_plain(_content(plain))
    html = _body(message, "html")
    return _cut_plain(_html_text(_content(html))) if html is not None else ""


def _body(message: Message, subtype: str) -> Message | None:
    """The first text/SUBTYPE part that is not an attachment, outside any attached message."""
    stack = [message]
    while stack:
        part = stack.pop(0)
        kind = part.get_content_type()
        if kind == f"text/{subtype}" and "attachment" not in str(part.get("Content-Disposition", "")).lower():
            return part
        if part.is_multipart() and kind != "message/rfc822":
            stack[0:0] = [sub for sub in part.get_payload() if isinstance(sub, Message)]
    return None


# --- what kind of message ------------------------------------------------------------


def _auto_reply(message: Message) -> str | None:
    """Say why a message is automatic (RFC 3834 and the conventions before it), or None."""
    auto = _header(message, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        value = _header(message, name).strip()
        if value and (name != "X-Auto-Response-Suppress" or "oof" in value.lower() or value.lower() == "all"):
            return f"{name}: {value}"
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in ("bulk", "auto_reply", "junk", "list"):
        return f"Precedence: {precedence}"
    if "Return-Path" in message and _header(message, "Return-Path").strip() in ("<>", ""):
        return "empty Return-Path"
    return None


def _bounce(message: Message) -> tuple[tuple[Bounce, ...], str | None] | None:
    """Read a delivery status notification (RFC 3464): the recipients that failed for good."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    failed: list[Bounce] = []
    bounced_id = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            failed += _failed_recipients(part)
        elif kind in ("text/rfc822-headers", "message/rfc822") and bounced_id is None:
            bounced_id = _original_id(part)
    return tuple(failed), bounced_id


def _failed_recipients(part: Message) -> list[Bounce]:
    # The per-recipient fields come as header blocks: in sub-parts, or in one text payload.
    blocks: list[Message] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, Message)]
    else:
        text = payload if isinstance(payload, str) else ""
        blocks = [
            message_from_bytes(chunk.encode(), policy=policy.compat32)
            for chunk in re.split(r"\r?\n\r?\n", text)
        ]
    failed = []
    for block in blocks:
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).strip()
        recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        address = recipient.split(";", 1)[-1].strip().strip("<>")
        if action == "failed" and status.startswith("5") and "@" in address:
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            failed.append(Bounce(address.lower(), status, diagnostic.split(";", 1)[-1].strip()))
    return failed


def _original_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
    else:
        decoded = part.get_payload(decode=True)
        raw = payload.encode() if isinstance(payload, str) else decoded if isinstance(decoded, bytes) else b""
        headers = message_from_bytes(raw, policy=policy.compat32)
    found = _MESSAGE_IDS.search(str(headers.get("Message-ID", "")))
    return found.group(0) if found else None


# --- whom and what it answers ---------------------------------------------------------


def _tokens(message: Message, subject: str) -> tuple[str, ...]:
    found: list[str] = []
    names = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
    values = [str(value) for name in names for value in (message.get_all(name) or [])]
    for _, address in getaddresses(values):
        match = _PLUS_TOKEN.match(address.strip())
        if match:
            found.append(match.group(1).lower())
    found += [token.lower() for token in _TOKEN_IN_SUBJECT.findall(subject)]
    return tuple(dict.fromkeys(found))


def _ids(message: Message, name: str) -> list[str]:
    return _MESSAGE_IDS.findall(" ".join(str(value) for value in message.get_all(name) or []))


def _first_address(message: Message, name: str) -> str:
    addresses = getaddresses([str(value) for value in message.get_all(name) or []])
    return addresses[0][1].strip().lower() if addresses else ""


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (IndexError, ValueError):  # a header too broken for the parser
        return ""
    return "" if value is None else str(value)


# --- the new text of a reply ---------------------------------------------------------


def _content(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # a superset; clients that say ascii often send UTF-8 all the same
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("utf-8", "replace")


def _decoded(value: str) -> str:
    """Decode RFC 2047 encoded words in a header's text."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _cut_plain(text: str) -> str:
    """Keep the lines before the quoted email and the signature; drop ``>`` lines wherever they are."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    skip_next = False
    for index, line in enumerate(lines):
        if skip_next:
            skip_next = False
            continue
        header_block = _HEADER_BLOCK.match(line) and any(
            _HEADER_NEXT.match(following) for following in lines[index + 1 : index + 4]
        )
        wrapped = _wrapped_attribution(lines, index)
        if _ATTRIBUTION.match(line) or _SEPARATOR.match(line) or header_block or wrapped:
            if any(kept_line.strip() for kept_line in kept):
                break  # top-posted: what follows is the quoted email
            skip_next = bool(wrapped)  # bottom-posted: the quote comes first, the new text after it
            continue
        if _SIGNOFF.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _wrapped_attribution(lines: Sequence[str], index: int) -> bool:
    """Gmail wraps a long "On ..., Name <address> wrote:" over two lines."""
    line = lines[index].strip()
    if not line.lower().startswith("on ") or index + 1 >= len(lines):
        return False
    return bool(_ATTRIBUTION.match(f"{line} {lines[index + 1].strip()}"))


class _HTMLText(HTMLParser):
    """The visible text of an HTML reply, without the quoted email."""

    #: where a mail client starts the quoted email: everything from there on is quote
    _QUOTES = (
        "gmail_quote", "gmail_attr", "yahoo_quoted", "moz-cite-prefix", "divrplyfwdmsg", "appendonsend",
        "stopspelling", "olk_src_body_section",
    )  # fmt: skip
    _BLOCKS = frozenset("p div br tr li h1 h2 h3 h4 h5 h6 table blockquote hr".split())
    _VOID = frozenset("br hr img meta link input area base col embed source track wbr".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0  # depth inside a quote, a style or a script
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done or tag in self._VOID:
            if tag in ("br", "hr") and not self.skipping:
                self.parts.append("\n")
            return
        marks = " ".join((value or "") for name, value in attrs if name in ("class", "id")).lower()
        if any(quote in marks for quote in self._QUOTES):
            self.done = True
        elif self.skipping or tag in ("blockquote", "style", "script", "head", "title"):
            self.skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._VOID or self.done:
            return
        if self.skipping:
            self.skipping -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping and not self.done:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


def _fold(word: str) -> str:
    return unicodedata.normalize("NFC", word.casefold()).replace("’", "'").replace("\ufe0f", "")
