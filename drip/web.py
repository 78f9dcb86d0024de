"""The web app: the mail catcher's inbox (when no relay is set) and a health check.

Pages load nothing from elsewhere. A GET never changes anything.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import MIMEPart
from pathlib import Path

from flask import Flask, Response, abort, render_template

from drip import catcher
from drip.config import Settings

#: the largest request body accepted, in bytes
MAX_BODY = 64 * 1024


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


def create_app(settings: Settings) -> Flask:
    """Return the app. The inbox exists only when drip keeps mail on this machine (no relay set)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    mail_dir = Path(settings.mail_dir)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'"
        )
        return response

    @app.get("/healthz")
    def healthz() -> tuple[str, int, dict[str, str]]:
        return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}

    if settings.smtp_url:
        return app

    def load(name: str) -> bytes:
        if not catcher.NAME.match(name):
            abort(404)
        path = mail_dir / name
        if not path.is_file():
            abort(404)
        return path.read_bytes()

    def summary(name: str, data: bytes) -> Caught:
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

    @app.get("/inbox")
    def inbox() -> str:
        found = [summary(path.name, path.read_bytes()) for path in catcher.messages(mail_dir)]
        return render_template("inbox.html", messages=found)

    @app.get("/inbox/<name>")
    def message(name: str) -> str:
        return render_template("message.html", m=summary(name, load(name)))

    @app.get("/inbox/<name>/html")
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

    @app.get("/inbox/<name>/raw")
    def raw(name: str) -> Response:
        return Response(
            load(name),
            mimetype="message/rfc822",
            headers={"Content-Disposition": f"attachment; filename={name}"},
        )

    return app


# The catcher keeps whatever reaches it, not only drip's own mail: read it leniently.


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
