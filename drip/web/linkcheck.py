"""Every link in a kept message, what it does, and whether drip's own would work: checked, never followed.

A drip link carries a signed token (``drip.core.tokens``); the check reads it with the keys in
the database as the link pages do, and finds whom it is about, but acts on nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Connection

from drip import changes
from drip.core.reading import PLUS_TOKEN, TOKEN_IN_SUBJECT
from drip.core.tokens import Action, Claim, TokenError, TokenExpired, read_token
from drip.web.caught import body_text, header

_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\"')\]]+", re.IGNORECASE)
_BY_PATH = {action.path: action for action in Action}
#: what each action's link does, in words
DOES = {
    Action.DONE: "marks a goal done",
    Action.SNOOZE: "snoozes a goal",
    Action.REOPEN: "reopens a goal",
    Action.UNSUBSCRIBE: "unsubscribes",
    Action.ANSWER: "gives a check-in's answer",
}


@dataclass
class Link:
    url: str
    #: where it was found: "HTML", "text", "List-Unsubscribe"
    found_in: list[str] = field(default_factory=list)
    #: done, snooze, reopen, unsubscribe, reply-done, unsubscribe-by-mail, content, other
    kind: str = "other"
    does: str = ""
    #: for drip's links: valid, expired, bad, not-found or unchecked; else ""
    verdict: str = ""
    detail: str = ""
    token: str = field(default="", repr=False)
    action: Action | None = field(default=None, repr=False)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            self.urls += [value.strip() for name, value in attrs if name == "href" and value]


def find_links(message: EmailMessage) -> list[Link]:
    """Return each different link of the message once, with where it was found, classified."""
    links: dict[str, Link] = {}

    def add(url: str, where: str) -> None:
        link = links.setdefault(url, Link(url))
        if where not in link.found_in:
            link.found_in.append(where)

    html = body_text(message, "html")
    if html is not None:
        anchors = _Anchors()
        anchors.feed(html)
        anchors.close()
        for url in anchors.urls:
            add(url, "HTML")
    text = body_text(message, "plain")
    for url in _URL.findall(text or ""):
        add(url.rstrip(".,;:!?"), "text")
    for url in re.findall(r"<([^>]+)>", header(message, "List-Unsubscribe")):
        add(url.strip(), "List-Unsubscribe")
    for link in links.values():
        _classify(link)
    return list(links.values())


def _classify(link: Link) -> None:
    parts = urlsplit(link.url)
    scheme = parts.scheme.casefold()
    if scheme in ("http", "https"):
        segments = [s for s in parts.path.split("/") if s]
        action = _BY_PATH.get(segments[-2]) if len(segments) >= 2 else None
        if action is not None:
            link.kind, link.does = action.path, DOES[action]
            link.action, link.token = action, segments[-1]
        else:
            link.kind, link.does = "content", "opens a page"
        return
    if scheme == "mailto":
        address = unquote(parts.path)
        subject = " ".join(parse_qs(parts.query).get("subject", []))
        found = PLUS_TOKEN.match(address) or TOKEN_IN_SUBJECT.search(subject)
        if found:
            link.kind, link.token = "reply", found.group(1)
            link.does = "writes an email that drip reads"
        else:
            link.kind, link.does = "other", "writes an email"
        return
    link.kind, link.does = "other", "not a web or email link"


def check_links(links: Sequence[Link], conn: Connection | None, keys: Sequence[str], today: dt.date) -> None:
    """Read each drip link's token with ``keys`` as of ``today``: say whether it works, and for whom."""
    for link in links:
        if not link.token:
            continue
        if conn is None or not keys:
            link.verdict, link.detail = "unchecked", "no database with drip's keys here"
            continue
        actions = [link.action] if link.action is not None else [Action.DONE, Action.UNSUBSCRIBE]
        _verify(link, conn, keys, today, actions)


def _verify(link: Link, conn: Connection, keys: Sequence[str], today: dt.date, actions: list[Action]) -> None:
    failure = "this link is not one drip sent"
    for action in actions:
        try:
            claim = read_token(keys, link.token, action, today)
        except TokenExpired as exc:
            link.verdict, link.detail = "expired", str(exc)
            _name_mail_link(link, action)
            return
        except TokenError as exc:
            failure = str(exc)
            continue
        _name_mail_link(link, action)
        found = changes.person_of(conn, claim)
        if found is None:
            link.verdict, link.detail = "not-found", "its goal or participant is no longer in the database"
            return
        person, key = found
        link.verdict = "valid"
        about = f", {_about(person, key, claim)}" if key else ""
        link.detail = f"for {person.name} <{person.email}>{about}"
        if claim.expires is not None:
            link.detail += f"; valid until {claim.expires:%d %B %Y}"
        return
    link.verdict, link.detail = "bad", failure


def _about(person: changes.Person, key: str, claim: Claim) -> str:
    """What a valid link is about: its goal, or the check-in and the answer it gives."""
    if claim.action is not Action.ANSWER:
        return f"goal {key}"
    try:
        _, choice = changes.chosen(person, key, claim)
    except changes.ActionError as exc:
        return str(exc)
    return f"check-in {key}, answer {choice}"


def _name_mail_link(link: Link, action: Action) -> None:
    if link.kind == "reply":
        if action is Action.UNSUBSCRIBE:
            link.kind, link.does = "unsubscribe-by-mail", "unsubscribes by email"
        else:
            link.kind, link.does = "reply-done", "marks a goal done by email"
