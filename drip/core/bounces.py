"""What a failed delivery means: reading bounces, and classifying a server's refusal.

Pure. A bounce names the addresses that failed and, to be acted on, the
email that failed: ``drip.replies.handling`` acts only when that email is one drip sent
to that address, so a bounce cannot be forged by someone who never saw one.

Read from:

- delivery status notifications (RFC 3464 ``multipart/report``, and RFC 6533's
  ``message/global-delivery-status`` for internationalised addresses): one
  block per recipient, with its Action and Status;
- plain-text bounces from mailers that write no report (qmail, older Exim,
  Sendmail, Exchange 2003 and others): the addresses and replies in the
  notice, the Message-ID in the copy of the email below it.

A failure is *hard* (the address does not work: stop writing to it), *soft*
(it may work later: count it) or nothing at all (a delay warning, a success
report). RFC 3463 status codes decide: 5.1.x (bad mailbox, domain or
address) and 5.7.1 (refused for this recipient) are hard; 5.2.2 (mailbox
full), every 4.x.x, and 5.x.x codes that are about the message rather than the
address are soft. A reply without a status code is read by its words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from enum import StrEnum

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_CODE = re.compile(r"(?<!\d)([45]\d\d)(?![\d.])")
_ADDRESS = re.compile(
    r"<?([^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+\.[^\s<>()\[\]\"',;:]+?)>?(?=[\s,;:)>\]\"']|$)"
)
_MESSAGE_ID = re.compile(r"^\s*Message-ID\s*:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")
#: words of a reply without a status code that say the address does not exist
_NO_SUCH = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)|does not exist|doesn't exist|"
    r"not exist|invalid (?:recipient|mailbox|address)|recipient (?:address )?rejected|address rejected|"
    r"mailbox (?:unavailable|not found)|recipient not found|user not found|no mailbox|unrouteable|"
    r"not a valid|account (?:has been )?disabled|account is disabled|no longer (?:with|available|valid)|"
    r"resolver\.adr\.recipientnotfound|recipientnotfound|unknown or illegal alias|bad destination|"
    r"not listed in",
    re.IGNORECASE,
)
_FULL = re.compile(r"mailbox (?:is )?full|over ?quota|quota exceeded|insufficient storage|storage full", re.I)
#: the line where a plain-text bounce starts the copy of the failed email
_COPY_BELOW = re.compile(
    r"^.*(?:below this line is a copy|copy of the message|original message follows|unsent message below|"
    r"returned message|message headers follow|headers of the original|original message headers|"
    r"undelivered message headers).*$",
    re.IGNORECASE | re.MULTILINE,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail-daemon|mailerdaemon|mail delivery|daemon@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery status notification|failure notice|mail delivery failed|"
    r"delivery failure|non.?deliver|not delivered|could not be delivered|unzustellbar|non remis|"
    r"no se puede entregar|não é possível entregar|impossibile recapitare|onbestelbaar|delivery has failed",
    re.IGNORECASE,
)
_DELAYED_SUBJECT = re.compile(r"\bdelay|warning: message|still being retried|verzögert|retardé", re.I)


class Severity(StrEnum):
    #: the address does not work: the participant (or delegate) gets no more email
    HARD = "hard"
    #: it may work later: counted, and hard after several
    SOFT = "soft"


@dataclass(frozen=True)
class Failure:
    """One recipient a bounce says failed."""

    address: str
    #: the RFC 3463 status (5.1.1), else the SMTP reply code (550), else ""
    status: str
    diagnostic: str
    severity: Severity

    @property
    def reason(self) -> str:
        return " ".join(part for part in (self.status, self.diagnostic) if part)[:300]


@dataclass(frozen=True)
class Bounce:
    """What a bounce says: who failed, and which email it was (its Message-IDs, the returned copy's first)."""

    failures: tuple[Failure, ...]
    message_ids: tuple[str, ...]
    #: how it was read: "report" (RFC 3464) or "text"
    form: str
    #: a warning that delivery is still being tried, or a report of success: nothing to do
    only_delays: bool = False


def severity(status: str, diagnostic: str = "") -> Severity:
    """Say how bad a failure is, from its RFC 3463 status (or SMTP reply code) and its words.

    A generic X.0.0 status (Exim writes 5.0.0 on every bounce) gives way to a precise one in the
    diagnostic, else to the diagnostic's words.
    """
    found = _precise(status, diagnostic)
    if found is not None:
        klass, subject, detail = found.groups()
        if klass == "4":
            return Severity.SOFT
        if subject == "1" or (subject, detail) == ("7", "1"):
            return Severity.HARD
        # Exchange Online answers 5.4.1 for a recipient its directory does not know.
        if (subject, detail) == ("4", "1") and _NO_SUCH.search(diagnostic):
            return Severity.HARD
        return Severity.SOFT
    generic = _STATUS.search(status) or _STATUS.search(diagnostic)
    if generic is not None and generic.group(1) == "5" and _NO_SUCH.search(diagnostic):
        return Severity.HARD  # 5.0.0 "not listed in the directory", "user unknown"
    if generic is not None:
        return Severity.SOFT
    code = _CODE.search(status) or _CODE.search(diagnostic)
    if (
        code is not None
        and code.group(1).startswith("5")
        and _NO_SUCH.search(diagnostic)
        and not (_FULL.search(diagnostic))
    ):
        return Severity.HARD
    return Severity.SOFT


def _precise(*texts: str) -> re.Match[str] | None:
    """Return the first RFC 3463 status in ``texts`` that says more than X.0.0."""
    for text in texts:
        for found in _STATUS.finditer(text):
            if found.group(2, 3) != ("0", "0"):
                return found
    return None


def status_of(*texts: str) -> str:
    """Return the most precise RFC 3463 status in ``texts`` (a server reply), else its reply code, or ""."""
    found = _precise(*texts) or next(filter(None, (_STATUS.search(text) for text in texts)), None)
    if found is not None:
        return found.group(0)
    text = " ".join(texts)
    code = _CODE.search(text)
    return code.group(1) if code is not None else ""


def read_bounce(message: Message, sender: str, subject: str, empty_return_path: bool) -> Bounce | None:
    """Return what a bounce says, or None when the message is not one."""
    kind = message.get_content_type()
    report = str(message.get_param("report-type", "")).lower()
    if kind == "multipart/report" and report in ("delivery-status", "global-delivery-status"):
        return _report(message)
    from_daemon = bool(_DAEMON.search(sender)) or empty_return_path
    if not from_daemon or not (_BOUNCE_SUBJECT.search(subject) or _DELAYED_SUBJECT.search(subject)):
        return None
    return _plain(message, subject)


# --- RFC 3464 reports ------------------------------------------------------------------


def _report(message: Message) -> Bounce:
    failures: list[Failure] = []
    ids: list[str] = []
    other_actions = False
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            for block in _blocks(part):
                action = str(block.get("Action", "")).strip().lower()
                failure = _failure(block) if action == "failed" else None
                if failure is not None:
                    failures.append(failure)
                elif action:
                    other_actions = True
        elif kind in ("text/rfc822-headers", "message/rfc822", "message/global", "message/global-headers"):
            ids += _returned_ids(part)
    return Bounce(tuple(failures), tuple(dict.fromkeys(ids)), "report", not failures and other_actions)


def _blocks(part: Message) -> list[Message]:
    """The per-message and per-recipient field blocks of a delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list) and part.get_content_type() == "message/delivery-status":
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, list):  # message/global-delivery-status, parsed as if it held one message
        text = "".join(block.as_string() for block in payload if isinstance(block, Message))
        return _split_blocks(text)
    raw = part.get_payload(decode=True)
    return _split_blocks(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or ""))


def _split_blocks(text: str) -> list[Message]:
    return [
        message_from_bytes(chunk.strip().encode(), policy=policy.compat32)
        for chunk in re.split(r"\r?\n[ \t]*\r?\n", text)
        if chunk.strip()
    ]


def _failure(block: Message) -> Failure | None:
    # Original-Recipient is the address as drip gave it; Final-Recipient may be an alias's target.
    recipient = str(block.get("Original-Recipient") or block.get("Final-Recipient") or "")
    address = _address_type(recipient)
    if "@" not in address:
        return None
    status = str(block.get("Status", "")).strip()
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    diagnostic = diagnostic.split(";", 1)[-1].strip() if ";" in diagnostic[:12] else diagnostic
    return Failure(address, status_of(status, diagnostic) or status, diagnostic, severity(status, diagnostic))


def _address_type(value: str) -> str:
    """Return the address of an "rfc822; a@b" or "utf-8; a@b" field, xtext decoded, folded to lower case."""
    address = value.split(";", 1)[-1].strip().strip("<>").strip()
    address = re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: chr(int(m.group(1), 16)), address)  # RFC 6533
    address = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), address)  # xtext
    return address.lower()


def _returned_ids(part: Message) -> list[str]:
    """The Message-ID of the returned email (or its headers)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
        return _MESSAGE_IDS.findall(str(headers.get("Message-ID", "")))
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or "")
    return [found.group(1) for found in _MESSAGE_ID.finditer(text)][:1]


# --- plain-text bounces ----------------------------------------------------------------


def _plain(message: Message, subject: str) -> Bounce:
    """Read a bounce written as prose: the notice, then a copy of the email (or an attachment of it)."""
    text = _all_text(message)
    copy = _COPY_BELOW.search(text)
    notice, returned = (text[: copy.start()], text[copy.end() :]) if copy else (text, "")
    ids = [found.group(1) for found in _MESSAGE_ID.finditer(returned)][:1]
    for part in message.walk():
        if part is not message and part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            ids += _returned_ids(part)
    if not ids:  # a copy with no marker line before it
        ids = [found.group(1) for found in _MESSAGE_ID.finditer(text)][:1]
    returned_to = {address.lower() for address in _addresses(_header_lines(returned, ("From", "Reply-To")))}
    failures = [f for f in _failures_in(notice) if f.address not in returned_to]
    delayed = bool(_DELAYED_SUBJECT.search(subject)) and not _BOUNCE_SUBJECT.search(subject)
    if delayed:
        failures = []
    return Bounce(tuple(failures), tuple(dict.fromkeys(ids)), "text", delayed)


def _all_text(message: Message) -> str:
    texts = []
    for part in message.walk():
        if (
            part.get_content_type() == "text/plain"
            and "attachment" not in str(part.get("Content-Disposition", "")).lower()
        ):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                texts.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts).replace("\r\n", "\n")


def _failures_in(notice: str) -> Iterator[Failure]:
    """Each address of a notice, with the reply written after it (up to the next other address)."""
    found = [(match, match.group(1).strip(".").lower()) for match in _ADDRESS.finditer(notice)]
    seen: set[str] = set()
    for index, (match, address) in enumerate(found):
        if address in seen or _DAEMON.search(address):
            continue
        seen.add(address)
        end = next((m.start() for m, other in found[index + 1 :] if other != address), len(notice))
        following = " ".join(notice[match.end() : min(end, match.end() + 600)].split())
        # The reply is after the address (qmail, Exim, Sendmail); some mailers write it before.
        words = following or " ".join(notice[max(0, match.start() - 300) : match.start()].split())
        status = status_of(words)
        if not status and not _NO_SUCH.search(words) and not _FULL.search(words):
            continue  # an address mentioned in passing (the postmaster, the sender)
        yield Failure(address, status, words[:300], severity(status, words))


def _header_lines(text: str, names: Iterable[str]) -> str:
    wanted = tuple(f"{name.lower()}:" for name in names)
    return "\n".join(line for line in text.split("\n") if line.lower().startswith(wanted))


def _addresses(text: str) -> list[str]:
    return [match.group(1) for match in _ADDRESS.finditer(text)]
