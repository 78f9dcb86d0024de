"""The mail catcher's inbox at /inbox: every email drip kept on this machine, as a comms person reads it.

It shows every participant's links, so it answers only to this machine, unless
DRIP_INBOX_PASSWORD puts it behind a password (``drip.web.gate``). The catcher
keeps whatever reaches it, not only drip's own mail: it is read leniently.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import MIMEPart
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, render_template, request

from drip.sending import catcher
from drip.web.gate import Gate, is_loopback


@dataclass(frozen=True)
class Caught:
    name: str
    sender: str
    to: str
    cc: str
    subject: str
    date: str
    step: str
    text: str
    has_html: bool


def make_blueprint(mail_dir: Path, password: str | None) -> Blueprint:
    """Return the inbox of the mail kept in ``mail_dir``."""
    blueprint = Blueprint("inbox", __name__, url_prefix="/inbox")
    gate = Gate(password, "drip inbox") if password else None

    @blueprint.before_request
    def _guard() -> Any:
        if gate is not None:
            return gate.check()
        if not is_loopback(request.remote_addr):
            abort(403, "The inbox is served to this machine only; DRIP_INBOX_PASSWORD opens it to others.")
        return None

    @blueprint.after_request
    def _not_kept(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    def load(name: str) -> bytes:
        if not catcher.NAME.match(name):
            abort(404)
        path = mail_dir / name
        if not path.is_file():
            abort(404)
        return path.read_bytes()

    @blueprint.get("")
    def listing() -> str:
        found = [_summary(path.name, path.read_bytes()) for path in catcher.messages(mail_dir)]
        return render_template("inbox.html", messages=found)

    @blueprint.get("/<name>")
    def message(name: str) -> str:
        return render_template("message.html", m=_summary(name, load(name)))

    @blueprint.get("/<name>/html")
    def html_part(name: str) -> Response:
        part = message_from_bytes(load(name), policy=policy.default).get_body(("html",))
        if part is None:
            abort(404)
        html = _content(part).replace("<head>", '<head><base target="_blank">', 1)
        response = Response(html, mimetype="text/html")
        # Shown in a sandboxed frame: the email's own styles, no scripts, links open a new tab.
        response.headers["Content-Security-Policy"] = (
            "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:"
        )
        return response

    @blueprint.get("/<name>/raw")
    def raw(name: str) -> Response:
        return Response(
            load(name),
            mimetype="message/rfc822",
            headers={"Content-Disposition": f"attachment; filename={name}"},
        )

    return blueprint


def _summary(name: str, data: bytes) -> Caught:
    message = message_from_bytes(data, policy=policy.default)
    text_part = message.get_body(("plain",))
    return Caught(
        name=name,
        sender=str(message.get("From", "")),
        to=str(message.get("To", "")),
        cc=str(message.get("Cc", "")),
        subject=str(message.get("Subject", "(no subject)")),
        date=_when(message.get("Date")),
        step=str(message.get("X-Drip-Step", "")),
        text=_content(text_part) if text_part is not None else "",
        has_html=message.get_body(("html",)) is not None,
    )


def _when(date: object) -> str:
    if not date:
        return ""
    try:
        return email.utils.parsedate_to_datetime(str(date)).strftime("%Y-%m-%d %H:%M %Z").strip()
    except (TypeError, ValueError):
        return str(date)


def _content(part: MIMEPart) -> str:
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
