"""How the demo's executives and their mail servers write back: replies as real mail clients write
them, an automatic out-of-office, and a bounce as Postfix returns it.

Each message answers one email drip sent (the caught copy, ``email.message.EmailMessage``), the way
its client would: Gmail quotes below an "On ... wrote:" line in both parts, Outlook puts the
original's headers under a rule and adds its own Thread-Index, iPhone Mail quotes with ">" under
its signature. drip reads them with the same code as any other reply (``drip.replies``).
"""

from __future__ import annotations

import datetime as dt
import html
import textwrap
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from enum import StrEnum
from urllib.parse import parse_qs, unquote, urlsplit


class Client(StrEnum):
    """The mail programs the demo's executives use."""

    GMAIL = "Gmail"
    OUTLOOK = "Outlook"
    IPHONE = "iPhone Mail"


def reply(original: EmailMessage, person: str, words: str, client: Client, at: dt.datetime) -> bytes:
    """Return ``person``'s reply to ``original``, saying ``words``, as ``client`` writes it."""
    sender, recipient = _header(original, "From"), _header(original, "Reply-To") or _header(original, "From")
    message = _new(person, recipient, f"Re: {_header(original, 'Subject')}", at, _domain(person, client))
    thread = _header(original, "Message-ID")
    message["In-Reply-To"] = thread
    message["References"] = " ".join(filter(None, [_header(original, "References"), thread]))
    sent = format_datetime(_parsed_date(original) or at)
    quoted = _text_of(original)
    if client is Client.OUTLOOK:
        message["Thread-Topic"] = _header(original, "Subject")
        if original.get("Thread-Index"):
            message["Thread-Index"] = _header(original, "Thread-Index")
        message["X-MS-Has-Attach"] = ""
        header_block = "\n".join([
            f"From: {sender}", f"Sent: {sent}", f"To: {_header(original, 'To')}",
            f"Subject: {_header(original, 'Subject')}",
        ])  # fmt: skip
        message.set_content(f"{words}\n\n{'_' * 32}\n{header_block}\n\n{quoted}\n")
        message.add_alternative(
            f'<html><body><div style="font-family:Calibri,sans-serif">{_paragraphs(words)}</div>'
            f'<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg">'
            f"{_paragraphs(header_block)}</div>{_html_of(original)}</body></html>",
            subtype="html",
        )
    elif client is Client.IPHONE:
        message["X-Mailer"] = "iPhone Mail (21D61)"
        lead = f"On {sent}, {sender} wrote:"
        message.set_content(f"{words}\n\nSent from my iPhone\n\n> {lead}\n>\n{_quote_lines(quoted)}\n")
    else:
        lead = f"On {sent}, {sender} wrote:"
        message.set_content(f"{words}\n\n{lead}\n\n{_quote_lines(quoted)}\n")
        message.add_alternative(
            f'<div dir="ltr">{_paragraphs(words)}</div><br><div class="gmail_quote"><div dir="ltr" '
            f'class="gmail_attr">{html.escape(lead)}<br></div><blockquote class="gmail_quote" '
            f'style="margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex">{_html_of(original)}'
            "</blockquote></div>",
            subtype="html",
        )
    return message.as_bytes(policy=policy.SMTP)


def reply_done_mailto(mailto: str, person: str, words: str, at: dt.datetime) -> bytes:
    """Return the message a phone's mail app sends from a "reply done" mailto: link."""
    parts = urlsplit(mailto)
    asked = parse_qs(parts.query)
    message = _new(person, unquote(parts.path), asked.get("subject", ["done"])[0], at, _domain(person, None))
    body = asked.get("body", [""])[0]
    message.set_content(f"{words}\n\n{body}".rstrip() + "\n\nSent from my iPhone\n")
    return message.as_bytes(policy=policy.SMTP)


def out_of_office(original: EmailMessage, person: str, words: str, at: dt.datetime) -> bytes:
    """Return an Exchange-style automatic reply to ``original``."""
    recipient = _header(original, "Reply-To") or _header(original, "From")
    message = _new(person, recipient, f"Automatic reply: {_header(original, 'Subject')}", at, "outlook.com")
    message["In-Reply-To"] = _header(original, "Message-ID")
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(words + "\n")
    return message.as_bytes(policy=policy.SMTP)


def bounce(original: EmailMessage, raw: bytes, at: dt.datetime, mta: str) -> bytes:
    """Return the delivery status notification ``mta`` sends when the original's address is gone.

    ``raw`` is the original as it was sent: its header section is copied into the report as is.
    """
    failed = parseaddr(_header(original, "To"))[1]
    envelope = parseaddr(_header(original, "Return-Path") or _header(original, "From"))[1]
    reason = f"550 5.1.1 <{failed}>: Recipient address rejected: User unknown in local recipient table"
    boundary = f"{make_msgid(domain=mta)[1:-1].replace('@', '.')}/{mta}"
    copied = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii", "replace")
    copied = copied.replace("\r\n", "\n") + "\n"
    text = (
        textwrap.dedent(f"""\
        From: Mail Delivery System <MAILER-DAEMON@{mta}>
        To: {envelope}
        Subject: Undelivered Mail Returned to Sender
        Date: {format_datetime(at)}
        Message-ID: {make_msgid(domain=mta)}
        Auto-Submitted: auto-replied
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

        This is a MIME-encapsulated message.

        --{boundary}
        Content-Description: Notification
        Content-Type: text/plain; charset=us-ascii

        This is the mail system at host {mta}.

        I'm sorry to have to inform you that your message could not
        be delivered to one or more recipients. It's attached below.

        <{failed}>: host {mta}[192.0.2.25] said: {reason} (in reply to RCPT TO command)

        --{boundary}
        Content-Description: Delivery report
        Content-Type: message/delivery-status

        Reporting-MTA: dns; {mta}
        Arrival-Date: {format_datetime(at)}

        Final-Recipient: rfc822; {failed}
        Original-Recipient: rfc822;{failed}
        Action: failed
        Status: 5.1.1
        Remote-MTA: dns; {mta}
        Diagnostic-Code: smtp; {reason}

        --{boundary}
        Content-Description: Undelivered Message Headers
        Content-Type: text/rfc822-headers

        """)
        + copied
        + f"\n--{boundary}--\n"
    )
    return text.replace("\n", "\r\n").encode("utf-8")


def _new(sender: str, to: str, subject: str, at: dt.datetime, domain: str) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(at)
    message["Message-ID"] = make_msgid(domain=domain)
    message["MIME-Version"] = "1.0"
    return message


def _domain(person: str, client: Client | None) -> str:
    if client is Client.GMAIL:
        return "mail.gmail.com"
    return parseaddr(person)[1].rpartition("@")[2] or "localhost"


def _header(message: EmailMessage, name: str) -> str:
    value = message.get(name)
    return str(value) if value is not None else ""


def _parsed_date(message: EmailMessage) -> dt.datetime | None:
    date = message.get("Date")
    return getattr(date, "datetime", None)


def _text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return str(part.get_content()).strip() if part is not None else ""


def _html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    if part is None:
        return _paragraphs(_text_of(message))
    content = str(part.get_content())
    start, end = content.find("<body"), content.rfind("</body>")
    if start < 0 or end < 0:
        return content
    return content[content.index(">", start) + 1 : end]


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line.strip())


def _quote_lines(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def address(name: str, email: str) -> str:
    """Return a From: value for ``name`` at ``email``, quoted as a mail client quotes it."""
    local, _, domain = email.rpartition("@")
    return str(Address(name, local, domain))
