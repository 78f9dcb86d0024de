"""The mail catcher's inbox at /inbox: every email drip kept on this machine, as a comms person reads it.

It shows every participant's links, so it answers only to this machine, unless
DRIP_INBOX_PASSWORD puts it behind a password (``drip.web.gate``). Nothing here
changes anything: the link check reads tokens without acting on them, and the
spam score is worked out when asked and kept in memory.

Its pages run one script, served from here (``web/static/inbox.js``): it asks
``/inbox/updates.json`` every two seconds whether mail or replies arrived, and
sizes each email's frame to the email. Everything works without it but those two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request
from sqlalchemy import Connection, func, select

from drip.storage.keyring import stored_keys
from drip.storage.store import received_table
from drip.web import replylog
from drip.web.caught import Shelf, attachments, body_text, darkened, framed, headers, parse
from drip.web.context import Site, site
from drip.web.gate import Gate, is_loopback
from drip.web.icsview import read_entries
from drip.web.linkcheck import check_links, find_links
from drip.web.spamcheck import SpamCheck

#: the most messages one list shows; a search finds the others
SHOWN = 500
#: the inbox's own pages: its script, from here alone; the email itself is framed from here
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: an email's HTML part: no scripts at all, its own styles, only inline images; framed by the inbox.
#: The frame shares the inbox's origin (so the page can read its height), never its scripts.
EMAIL_POLICY = (
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)
TABS = ("preview", "text", "headers", "source", "attachments", "links", "spam")


def make_blueprint(mail_dir: Path, password: str | None) -> Blueprint:
    """Return the inbox of the mail kept in ``mail_dir``."""
    blueprint = Blueprint("inbox", __name__, url_prefix="/inbox", static_folder="static")
    gate = Gate(password, "drip inbox") if password else None
    shelf = Shelf(mail_dir)
    spam = SpamCheck()

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
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        return response

    def load(name: str) -> bytes:
        path = shelf.path(name)
        if path is None:
            abort(404)
        return path.read_bytes()

    def summary(name: str) -> Any:
        if shelf.path(name) is None:
            abort(404)
        found = shelf.summaries([name])
        if not found:
            abort(404)
        return found[0]

    @blueprint.get("")
    def listing() -> str:
        query = request.args.get("q", "").strip()
        found, total = shelf.search(query)
        return render_template(
            "inbox.html", messages=found[:SHOWN], matched=len(found), total=total, query=query,
            state=_state(shelf), tab="mail",
        )  # fmt: skip

    @blueprint.get("/replies")
    def replies() -> str:
        with replylog.reading(site()) as conn:
            read = replylog.replies(conn) if conn is not None else []
        names = shelf.names()
        forwards = shelf.forwards(shelf.summaries(names, every=True)) if read else {}
        return render_template(
            "inbox_replies.html", replies=read, forwards=forwards, has_database=conn is not None,
            total=len(names), state=_state(shelf), tab="replies",
        )  # fmt: skip

    @blueprint.get("/updates.json")
    def updates() -> Response:
        return jsonify(_state(shelf))

    @blueprint.get("/<name>")
    def message(name: str) -> str:
        view = request.args.get("view") if request.args.get("view") in ("phone", "desktop") else "desktop"
        scheme = "dark" if request.args.get("scheme") == "dark" else "light"
        parsed = parse(load(name))
        return page(
            name, "preview", has_html=parsed.get_body(("html",)) is not None, view=view, scheme=scheme,
            text=body_text(parsed, "plain"),
        )  # fmt: skip

    @blueprint.get("/<name>/text")
    def text(name: str) -> str:
        return page(name, "text", text=body_text(parse(load(name)), "plain"))

    @blueprint.get("/<name>/headers")
    def header_list(name: str) -> str:
        return page(name, "headers", headers=headers(parse(load(name))))

    @blueprint.get("/<name>/source")
    def source(name: str) -> str:
        return page(name, "source", source=load(name).decode("utf-8", "replace"))

    @blueprint.get("/<name>/attachments")
    def attachment_list(name: str) -> str:
        found = attachments(parse(load(name)))
        entries = {a.index: read_entries(a.data) for a in found if a.is_calendar}
        return page(name, "attachments", attachments=found, entries=entries)

    @blueprint.get("/<name>/attachments/<int:index>")
    def attachment(name: str, index: int) -> Response:
        found = [a for a in attachments(parse(load(name))) if a.index == index]
        if not found:
            abort(404)
        kept = found[0]
        filename = "".join(c for c in kept.filename if c.isalnum() or c in "._- ") or f"attachment-{index}"
        # Always a download, never shown here: an attachment is whatever its sender made it.
        mimetype = "text/calendar" if kept.is_calendar else "application/octet-stream"
        disposition = f'attachment; filename="{filename}"'
        return Response(kept.data, mimetype=mimetype, headers={"Content-Disposition": disposition})

    @blueprint.get("/<name>/links")
    def link_check(name: str) -> str:
        links = find_links(parse(load(name)))
        here = site()
        with replylog.reading(here) as conn:
            keys = here.database.keys(conn) if conn is not None and _has_keys(here, conn) else ()
            check_links(links, conn, keys, here.now().date())
        return page(name, "links", links=links)

    @blueprint.get("/<name>/spam")
    def spam_score(name: str) -> str:
        data = load(name)
        score, problem = None, ""
        if request.args.get("check") or spam.cached(name) is not None:
            try:
                score = spam.score(name, data)
            except (OSError, ValueError) as exc:
                problem = str(exc)
        return page(name, "spam", score=score, problem=problem, installed=spam.installed)

    @blueprint.get("/<name>/html")
    def html_part(name: str) -> Response:
        html = body_text(parse(load(name)), "html")
        if html is None:
            abort(404)
        if request.args.get("scheme") == "dark":
            html = darkened(html)
        response = Response(framed(html), mimetype="text/html")
        response.headers["Content-Security-Policy"] = EMAIL_POLICY
        return response

    @blueprint.get("/<name>/raw")
    def raw(name: str) -> Response:
        return Response(
            load(name),
            mimetype="message/rfc822",
            headers={"Content-Disposition": f"attachment; filename={name}"},
        )

    def page(name: str, tab: str, **more: Any) -> str:
        return render_template("message.html", m=summary(name), tab=tab, tabs=TABS, **more)

    return blueprint


def _has_keys(here: Site, conn: Connection) -> bool:
    return bool(here.settings.secret_key or stored_keys(conn))


def _state(shelf: Shelf) -> dict[str, Any]:
    """What the inbox's script compares every two seconds: has mail, or a reply, arrived?"""
    names = shelf.names()
    return {"messages": len(names), "newest": names[0] if names else "", "replies": _replies_read()}


def _replies_read() -> int:
    with replylog.reading(site()) as conn:
        if conn is None:
            return 0
        return int(conn.execute(select(func.count()).select_from(received_table)).scalar_one())
