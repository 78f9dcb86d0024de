"""A reply's own words: the text its sender wrote, without the email it quotes.

Pure. Mail clients quote in their own ways, and in the language of their
interface:

- ``>`` before each quoted line (Gmail, Apple Mail, Thunderbird, mutt), after an
  attribution line: "On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :",
  "2027年1月11日(月) 9:00 ... :", "... 写道：", and in any language, a line that
  ends with a colon and holds an address and a date;
- a header block with no ``>`` at all (Outlook on every platform): "From: /
  Sent: / To: / Subject:" in any language, found by its shape (three or more
  "Label: value" lines, one with an address) rather than by its words;
- separator lines ("-----Original Message-----", a row of underscores);
- in HTML, the quote's container (``gmail_quote``, ``divRplyFwdMsg``,
  ``moz-cite-prefix``, a ``blockquote``, Outlook's border-top division).

A top-posted reply is cut at the first of these. In a bottom-posted or inline
reply, ``>`` lines are dropped and the rest kept. Signatures ("-- "), "Sent
from my iPhone" and "Get Outlook for iOS" lines in any of the languages drip
reads, and legal disclaimer paragraphs are cut too.

The last guard knows drip's own emails: a line holding one of drip's own links
(``ours``) is quoted text however the client quoted it. When that is the only
sign of a quote, the cut is ``Cut.UNSURE``: what stays above it may be quoted
too, so nothing it says should complete a goal.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from html.parser import HTMLParser


class Cut(StrEnum):
    """Where the sender's own words were found to end."""

    #: no quote, or a quote found by its markers
    CLEAN = "clean"
    #: only drip's own links showed where the quote began
    UNSURE = "unsure"


@dataclass(frozen=True)
class Own:
    text: str
    cut: Cut = Cut.CLEAN


# --- plain text ----------------------------------------------------------------------

_ATTRIBUTIONS = re.compile(
    r"^(On\b.*\bwrote\s*:"  # English: Gmail, Apple Mail, Thunderbird, mutt
    r"|\*\s.+\[[^\]]+\]\s*:"  # neomutt: "* Name <addr> [2027-01-11 09:00]:"
    r"|Am\b.*\bschrieb\b.*:"  # German
    r"|Le\b.*\ba\s+écrit\s*:"  # French
    r"|El\b.*\bescribió\s*:"  # Spanish
    r"|Il\b.*\bha\s+scritto\s*:"  # Italian
    r"|Em\b.*\bescreveu\s*:"  # Portuguese
    r"|Op\b.*\b(schreef|geschreven)\b.*:"  # Dutch
    r"|\d{4}\s*年.*[:：]|\d{4}/\d{1,2}/\d{1,2}.*のメール\s*[:：]|.*(?:写道|寫道)\s*[:：]"  # Japanese, Chinese
    r")\s*$",
    re.IGNORECASE,
)
#: an attribution in a language drip does not know: ends in a colon, holds an address and a number
_ANY_ATTRIBUTION = re.compile(r"^.{0,300}@.{0,300}[:：]\s*$")
_SEPARATOR = re.compile(r"^\s*(?:-{2,}\s*\S[^-]{1,50}\S\s*-{2,}|_{8,}|-{8,}|={8,}|\*{8,})\s*$")
#: a "Label: value" line of a quote's header block, in any language: From:, Von:, 差出人:, Od: ...
_HEADER_LINE = re.compile(r"^\s*\*?\s*[^\W\d_][^:：\n<>@]{0,30}?\s*\*?\s*[:：]\s*\*?\s*\S")
_DIGIT = re.compile(r"\d")
_SIGNATURE = re.compile(r"^(--|-- |__)\s*$")
_SENT_FROM = re.compile(
    r"^\s*(?:sent from|sent with|get outlook|envoyé de|envoyé depuis|obtenir outlook|von meinem|gesendet von|"
    r"outlook für|enviado desde|enviado do|enviado de|obtener outlook|inviato da|scarica outlook|"
    r"verstuurd vanaf|verzonden vanaf|outlook voor|download outlook|wysłane z|skickat från|sendt fra|"
    r"lähetetty|[^\n]{0,30}(?:から送信|を入手)|发自|發自|从我的|從我的|来自我的|獲取|获取).{0,80}$",
    re.IGNORECASE,
)
_DISCLAIMER = re.compile(
    r"intended recipient|confidential|privileged|disclaimer|vertraulich|confidentiel|confidencial|"
    r"riservat|vertrouwelijk|sigilos|destinatario|destinataire|empfänger|機密|秘密|保密|免责",
    re.IGNORECASE,
)
_FLOWED_QUOTE = re.compile(r"^(>+)")


def own_text(text: str, ours: Sequence[str] = ()) -> Own:
    """Return the lines of a plain-text reply that its sender wrote."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith(">"):
            index += 1  # quoted, wherever it is
            continue
        if any(mark in line for mark in ours if mark):
            return Own(_tidy(kept), Cut.UNSURE if _written(kept) else Cut.CLEAN)
        quote = _quote_starts(lines, index)
        if quote:
            if _written(kept) or not _quoted_next(lines, index + quote):
                break  # top-posted: everything from here on is the quoted email
            index += quote  # bottom-posted or inline: the quote is marked, the answer follows
            continue
        if _SIGNATURE.match(line) or (_SENT_FROM.match(line) and len(line) < 120):
            break
        kept.append(line)
        index += 1
    return Own(_tidy(kept))


def _quote_starts(lines: Sequence[str], index: int) -> int:
    """Return how many lines a quote's opening takes at ``index`` (0: none starts here)."""
    line = lines[index].strip()
    if not line:
        return 0
    if _SEPARATOR.match(line) or _header_block(lines, index):
        return 1
    if _ATTRIBUTIONS.match(line) or _foreign_attribution(line):
        return 1
    if line.endswith((":", "：")) and _quoted_next(lines, index + 1):
        return 1  # an attribution in any language: a line ending in a colon, then the quote
    # Gmail wraps a long attribution over two lines.
    if index + 1 < len(lines):
        joined = f"{line} {lines[index + 1].strip()}"
        if len(line) > 20 and (_ATTRIBUTIONS.match(joined) or _foreign_attribution(joined)):
            return 2
    return 0


def _foreign_attribution(line: str) -> bool:
    """An attribution in a language drip does not know: "... 09:00 Name <address> napisał(a):"."""
    return bool(_ANY_ATTRIBUTION.match(line) and _DIGIT.search(line) and "<" in line)


def _header_block(lines: Sequence[str], index: int) -> bool:
    """Say whether a quote's header block starts at ``index``: "From: / Sent: / To: / Subject:" in any
    language, three label lines in a row, one holding an address (or four in a row)."""
    if not _HEADER_LINE.match(lines[index]) or lines[index].lstrip().startswith(">"):
        return False
    following = [line for line in lines[index : index + 12] if line.strip()][:4]
    labels = list(itertools.takewhile(lambda line: bool(_HEADER_LINE.match(line)), following))
    return len(labels) >= 4 or (len(labels) >= 3 and any("@" in line for line in labels))


def _quoted_next(lines: Sequence[str], index: int) -> bool:
    """Say whether the next non-blank line is quoted with ``>`` (so the reply may continue below it)."""
    for line in lines[index:]:
        if line.strip():
            return line.lstrip().startswith(">")
    return False


def _written(kept: Sequence[str]) -> bool:
    return any(line.strip() for line in kept)


def _tidy(kept: Sequence[str]) -> str:
    """Join the kept lines, leaving out disclaimer paragraphs."""
    paragraphs = re.split(r"\n\s*\n", "\n".join(kept))
    return "\n\n".join(p.strip() for p in paragraphs if p.strip() and not _DISCLAIMER.search(p)).strip()


def unflow(text: str, delsp: bool) -> str:
    """Join the soft line breaks of a format=flowed body (RFC 3676), keeping quote depth."""
    out: list[str] = []
    carry: tuple[str, str] | None = None  # (quote marks, text so far) of a line that flows on
    for raw in text.replace("\r\n", "\n").split("\n"):
        marks = _FLOWED_QUOTE.match(raw)
        depth = marks.group(1) if marks else ""
        body = raw[len(depth) :]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing
        if carry is not None and carry[0] == depth:
            body = carry[1] + body
        elif carry is not None:
            out.append(_line(*carry))
        carry = None
        if body.endswith(" ") and body != "-- ":
            carry = (depth, body[:-1] if delsp else body)
            continue
        out.append(_line(depth, body))
    if carry is not None:
        out.append(_line(*carry))
    return "\n".join(out)


def _line(depth: str, body: str) -> str:
    return f"{depth} {body}" if depth else body


# --- HTML ----------------------------------------------------------------------------


class _HTMLText(HTMLParser):
    """The visible text of an HTML reply up to the quoted email; each link's address after its text."""

    #: where a mail client starts the quoted email: everything from there on is quote
    _QUOTES = (
        "gmail_quote", "gmail_attr", "yahoo_quoted", "moz-cite-prefix", "divrplyfwdmsg", "appendonsend",
        "stopspelling", "olk_src_body_section", "outlookmessageheader", "mail-quote", "protonmail_quote",
        "zmail_extra", "ms-outlook-mobile-reference-message", "applemailquote",
    )  # fmt: skip
    _BLOCKS = frozenset("p div br tr li h1 h2 h3 h4 h5 h6 table blockquote hr".split())
    _VOID = frozenset("br hr img meta link input area base col embed source track wbr".split())
    #: Outlook for Windows starts its quote with a division whose top border is the line above it
    _OUTLOOK_BORDER = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0  # depth inside a quote, a style or a script
        self.done = False
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag in self._VOID:
            if tag in ("br", "hr") and not self.skipping:
                self.parts.append("\n")
            return
        found = dict(attrs)
        marks = " ".join(found.get(name) or "" for name in ("class", "id", "name")).lower()
        style = found.get("style") or ""
        if any(quote in marks for quote in self._QUOTES) or (
            tag == "div" and self._OUTLOOK_BORDER.search(style) and "padding" in style.lower()
        ):
            self.done = True
        elif self.skipping or tag in ("blockquote", "style", "script", "head", "title"):
            self.skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "a" and not self.skipping:
            self.links.append(found.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._VOID or self.done:
            return
        if self.skipping:
            self.skipping -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and href.lower().startswith(("http", "mailto:")):
                self.parts.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if not self.skipping and not self.done:
            self.parts.append(data)


def html_text(html: str) -> str:
    """Return the visible text of an HTML reply, without its quoted email's containers."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


# --- a whole message -----------------------------------------------------------------


def new_text(message: Message, ours: Sequence[str] = ()) -> Own:
    """Return what the sender wrote: the plain part (or the HTML's text), quotes and signature cut."""
    plain = _body(message, "plain")
    if plain is not None:
        text = _content(plain)
        if str(plain.get_param("format", "")).lower() == "flowed":
            text = unflow(text, str(plain.get_param("delsp", "")).lower() == "yes")
        return own_text(text, ours)
    html = _body(message, "html")
    return own_text(html_text(_content(html)), ours) if html is not None else Own("")


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
