"""``drip demo``: a cohort's first five weeks in virtual time, with executives who answer, then the
months after the training, with the first two monthly check-ins and their answers.

drip sends the cohort's emails to the built-in mail catcher as the weeks pass, and at set moments
the people on the roster act on the email in front of them, as they would in life:

- two tap "Mark it done" on a phone: the confirmation page is fetched and its form POSTed, as a
  browser does, through the web app;
- three answer by email, from Gmail, Outlook and iPhone Mail, and one of them in Spanish; one taps
  "Reply done" (a mailto: link), which writes a new message to a signed address;
- one writes "not yet", which drip forwards to a person; one is out of the office;
- one address bounces, as Postfix reports it;
- one takes another week from the overdue nudge;
- after the training, most tap an answer to each monthly check-in ("Yes, I shared something", "Not
  this month"), two reply in words instead, one gives "Not this month" twice in a row (which the
  owners' digest flags), and one changes his answer the next day.

Replies and bounces are written to a Maildir beside the database and read with the code behind
``drip ingest``. Everything happens on this machine: the demo refuses a relay (DRIP_SMTP_URL) and
any database but its own SQLite file, which it starts afresh each time it runs.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from drip import service
from drip.config import Settings
from drip.core.errors import ConfigError
from drip.core.languages import base_language
from drip.core.program import program_at
from drip.demo.clients import Client, address, bounce, out_of_office, reply, reply_done_mailto
from drip.replies.handling import Ingester
from drip.replies.mailboxes import MaildirSource
from drip.sending import catcher
from drip.sending.dispatcher import Tally
from drip.storage.store import Store
from drip.storage.tables import Cohort, Delivery, Participant

#: how long the story runs after the cohort's start, hour by hour
WEEKS = 5
#: the step of the walk between two acts
STEP = dt.timedelta(hours=1)
#: the check-ins the story follows after the training, up to this one's, a few days after it went
LAST_CHECK_IN = "sustain-2"
#: the step of the walk through the months after the training, when a few emails a week go
LATER_STEP = dt.timedelta(hours=3)
#: the mail server that reports the bounce
MTA = "mx1.northwind.example"
#: a phone's browser, as the link pages see it
PHONE = {
    "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
}


class Doing(StrEnum):
    TAP_DONE = "taps “Mark it done”"
    TAP_SNOOZE = "taps the link for another week"
    REPLY = "replies"
    REPLY_DONE = 'taps Reply "done"'
    #: taps one of a check-in's answers; ``says`` is the answer's key
    TAP_ANSWER = "taps an answer"
    AWAY = "is away"
    BOUNCE = "bounces"


@dataclass(frozen=True)
class Act:
    """One person's answer to one email: ``who`` is their roster row (0 for the first)."""

    who: int
    after: str
    delay: dt.timedelta
    does: Doing
    client: Client | None = None
    #: what they write, by key of ``WORDS``
    says: str = ""


def _hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


STORY = (
    Act(11, "welcome", _hours(0.1), Doing.BOUNCE),
    Act(0, "short-kickoff", _hours(3), Doing.TAP_DONE, says="profile"),
    Act(7, "short-kickoff", _hours(1), Doing.AWAY, says="away"),
    Act(1, "short-kickoff", _hours(26), Doing.REPLY, Client.GMAIL, "done"),
    Act(2, "short-kickoff", _hours(29), Doing.REPLY, Client.IPHONE, "done"),
    Act(3, "short-kickoff", _hours(50), Doing.REPLY, Client.OUTLOOK, "not yet"),
    Act(5, "short-reminder", _hours(4), Doing.TAP_DONE),
    Act(6, "short-due", _hours(2), Doing.REPLY_DONE, says="done"),
    Act(4, "short-overdue", _hours(3), Doing.TAP_SNOOZE),
    Act(0, "mid-kickoff", _hours(24), Doing.TAP_DONE, says="voices"),
    Act(1, "mid-kickoff", _hours(50), Doing.REPLY, Client.OUTLOOK, "done mid"),
    # the rest of the training
    Act(3, "short-overdue", _hours(20), Doing.TAP_DONE, says="profile"),
    Act(2, "mid-due", _hours(6), Doing.TAP_DONE, says="voices"),
    Act(0, "long-reminder", _hours(30), Doing.TAP_DONE, says="feed"),
    Act(1, "long-due", _hours(4), Doing.REPLY, Client.GMAIL, "done long"),
    # the months after the training: a check-in a month
    Act(0, "sustain-1", _hours(2), Doing.TAP_ANSWER, says="shared"),
    Act(1, "sustain-1", _hours(20), Doing.REPLY, Client.GMAIL, "posted"),
    Act(2, "sustain-1", _hours(5), Doing.TAP_ANSWER, says="not_shared"),
    Act(3, "sustain-1", _hours(30), Doing.REPLY, Client.OUTLOOK, "not this month"),
    Act(5, "sustain-1", _hours(4), Doing.TAP_ANSWER, says="shared"),
    Act(6, "sustain-1", _hours(6), Doing.TAP_ANSWER, says="shared"),
    Act(7, "sustain-1", _hours(9), Doing.TAP_ANSWER, says="shared"),
    Act(0, "sustain-2", _hours(1), Doing.TAP_ANSWER, says="shared"),
    Act(1, "sustain-2", _hours(26), Doing.REPLY, Client.IPHONE, "question"),
    Act(2, "sustain-2", _hours(3), Doing.TAP_ANSWER, says="not_shared"),
    Act(3, "sustain-2", _hours(8), Doing.TAP_ANSWER, says="shared"),
    Act(5, "sustain-2", _hours(5), Doing.TAP_ANSWER, says="not_shared"),
    Act(5, "sustain-2", _hours(29), Doing.TAP_ANSWER, says="shared"),
    Act(6, "sustain-2", _hours(7), Doing.TAP_ANSWER, says="shared"),
)

#: what people write or type, in their own language (English where the story has none in theirs);
#: {profile} is their own profile's address
WORDS = {
    "done": {
        "en": "Done! My profile is up and I've connected with 14 people on the team: {profile}",
        "es": "¡Hecho! Ya tengo mi perfil y 12 contactos del equipo.",
        "de": "Erledigt! Mein Profil steht, und ich bin mit 11 Kollegen vernetzt.",
        "fr": "C'est fait ! Mon profil est en ligne et j'ai 12 relations dans l'équipe.",
        "ja": "完了しました。プロフィールを作成し、同僚12人とつながりました。",
    },
    "not yet": {"en": "Not yet, I'm afraid: I'm travelling all week. I'll get to it on Monday."},
    "done mid": {
        "en": "Done. I now read these five every morning before my first meeting: Scott Galloway, "
        "Ann Handley, Ben Thompson, Kara Swisher and Seth Godin."
    },
    "feed": {"en": "Feedly: 38 sources in three folders, read with coffee at seven"},
    "done long": {
        "en": "Done: Inoreader now collects the five voices, our competitors' newsrooms and two "
        "analysts' blogs in one place."
    },
    "posted": {
        "en": "Yes, I posted twice this month: a note on our Q2 numbers and a comment on a customer's launch."
    },
    "not this month": {"en": "Not this month, sorry. The quarter close took every evening."},
    "question": {"en": "Does a post on our intranet count? I wrote one for the whole sales team."},
    "profile": {"en": "{profile}"},
    "voices": {"en": "Mary Meeker, Ben Thompson, Azeem Azhar, the FT's Lex column and Benedict Evans"},
    "away": {
        "en": "I am out of the office until 25 January with limited access to email.",
        "ja": "1月25日まで出張のため不在にしております。ご不便をおかけします。",
    },
}


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    email: str
    language: str


@dataclass(frozen=True)
class Moment:
    """An act placed in time: when its email was planned to go, plus the act's delay."""

    at: dt.datetime
    act: Act
    person: Person


@dataclass(frozen=True)
class Place:
    """Where the demo keeps what it writes, all derived from the settings."""

    database: Path
    mail: Path
    replies: Path

    @classmethod
    def of(cls, settings: Settings) -> Place:
        if settings.smtp_url:
            raise ConfigError(
                "drip demo sends only to the built-in mail catcher; unset DRIP_SMTP_URL to run it"
            )
        url = make_url(settings.database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            raise ConfigError(
                "drip demo writes a SQLite database of its own; unset DRIP_DATABASE_URL, or set it to "
                "sqlite:///demo.db"
            )
        database = Path(str(url.database)).expanduser()
        return cls(database, Path(settings.mail_dir), database.with_name(f"{database.name}.demo-replies"))

    def start_afresh(self) -> None:
        """Remove what an earlier demo left; refuse a database the demo did not write."""
        if self.database.exists() and not self.replies.is_dir():
            raise ConfigError(
                f"{self.database} already holds drip's data, and the demo starts from an empty database: "
                "run it in another folder, move the file away, or set DRIP_DATABASE_URL=sqlite:///demo.db"
            )
        if not self.replies.is_dir():
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.database.with_name(self.database.name + suffix).unlink(missing_ok=True)
        shutil.rmtree(self.database.with_name(f"{self.database.name}.spool"), ignore_errors=True)
        shutil.rmtree(self.replies)
        for kept in catcher.messages(self.mail):
            kept.unlink(missing_ok=True)

    def open_replies(self) -> mailbox.Maildir:
        return mailbox.Maildir(self.replies, create=True)


class Story:
    """The cohort ``slug``, started in ``db``, walked through its first weeks with its people acting."""

    def __init__(self, settings: Settings, db: Store, slug: str, say: Callable[[str], None]) -> None:
        from drip.web.app import create_app  # the web layer, for the pages the taps reach

        self.settings, self.db, self.slug, self.say = settings, db, slug, say
        self.place = Place.of(settings)
        self.moment = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.app = create_app(settings, clock=lambda: self.moment)
        self.replies = self.place.open_replies()
        self.caught: dict[tuple[str, str], Path] = {}
        self.step = STEP

    def close(self) -> None:
        self.app.extensions["drip"].database.close()
        self.replies.close()

    def later(self) -> dt.datetime | None:
        """Return the end of the months after the training: a few days after ``LAST_CHECK_IN`` went to
        the last participant it goes to; None for a program without it."""
        with self.db.reading() as conn:
            last = conn.execute(
                select(func.max(Delivery.due_at))
                .join(Cohort, Cohort.id == Delivery.cohort_id)
                .where(Cohort.slug == self.slug, Delivery.step == LAST_CHECK_IN)
            ).scalar_one_or_none()
        if last is None:
            return None
        return dt.datetime.combine(last.date() + dt.timedelta(days=4), dt.time(), dt.UTC)

    def walk(self, begin: dt.datetime, end: dt.datetime, step: dt.timedelta = STEP) -> Tally:
        """Send everything due from ``begin`` to ``end``, ``step`` by step, stopping for each act."""
        self.step = step
        total = Tally()
        moment = begin
        for planned in self.moments():
            if not begin <= planned.at <= end:
                continue
            total.merge(self._send(moment, planned.at))
            moment = self.moment = planned.at
            self.say(f"{moment:%a %d %b %H:%M} UTC  {planned.person.name} {self.perform(planned)}")
        total.merge(self._send(moment, end))
        self.moment = end
        return total

    def epilogue(self) -> list[str]:
        """Return what drip sent by step, and what it stopped and why, in drip's own words."""
        with self.db.reading() as conn:
            rows = conn.execute(
                select(Delivery.status, Delivery.step, Delivery.last_error, func.count())
                .join(Cohort, Cohort.id == Delivery.cohort_id)
                .where(Cohort.slug == self.slug, Delivery.status.in_(["sent", "cancelled"]))
                .group_by(Delivery.status, Delivery.step, Delivery.last_error)
                .order_by(func.min(Delivery.sent_at), Delivery.step)
            ).all()
        sent = [f"{step} {n}" for status, step, _, n in rows if status == "sent"]
        stopped: dict[str, int] = {}
        for status, _, reason, n in rows:
            if status == "cancelled":
                stopped[reason or "no reason given"] = stopped.get(reason or "no reason given", 0) + n
        lines = [f"Sent, by step: {', '.join(sent)}."]
        lines += [f"Stopped: {n} email{'s' if n != 1 else ''} because {why}." for why, n in stopped.items()]
        return lines

    def moments(self) -> list[Moment]:
        """Return the story's acts in time order, placed by when their emails were planned."""
        with self.db.reading() as conn:
            rows = conn.execute(
                select(Participant.id, Participant.name, Participant.email, Participant.language,
                       Participant.roster_row, Delivery.step, Delivery.due_at)
                .join(Cohort, Cohort.id == Participant.cohort_id)
                .join(Delivery, Delivery.participant_id == Participant.id)
                .where(Cohort.slug == self.slug)
                .order_by(Participant.roster_row)
            ).all()  # fmt: skip
            cohort_language = self._cohort_language(conn)
        rows_by_person: dict[int, Person] = {}
        due: dict[tuple[int, str], dt.datetime] = {}
        order: list[int] = []
        for pid, name, email, language, _row, step, due_at in rows:
            if pid not in rows_by_person:
                rows_by_person[pid] = Person(pid, name, email, language or cohort_language)
                order.append(pid)
            if due_at is not None:
                due[(pid, step)] = due_at
        found = []
        for act in STORY:
            if act.who >= len(order):
                continue
            person = rows_by_person[order[act.who]]
            if (person.id, act.after) in due:
                found.append(Moment(due[(person.id, act.after)] + act.delay, act, person))
        return sorted(found, key=lambda m: m.at)

    def perform(self, planned: Moment) -> str:
        """Do one act; return what happened, for the story's log."""
        act, person = planned.act, planned.person
        found = self._email(person.email, act.after)
        if found is None:
            return f"would answer the {act.after} email, but it was not sent (nothing to answer)"
        original, raw = found
        words = _words(act.says, person)
        if act.does is Doing.TAP_ANSWER:
            return self._tap_answer(original, act)
        if act.does in (Doing.TAP_DONE, Doing.TAP_SNOOZE):
            path = "/done/" if act.does is Doing.TAP_DONE else "/snooze/"
            typed = f", typing “{words}”" if words else ""
            return f"{act.does} in the {act.after} email{typed}: {self._tap(original, path, words)}"
        if act.does is Doing.BOUNCE:
            message = bounce(original, raw, planned.at, MTA)
            return f"{act.does}: {MTA} answers 550 5.1.1, user unknown. {self._ingest(message)}"
        sender = address(person.name, person.email)
        if act.does is Doing.REPLY_DONE:
            mailto = _link(original, "mailto:")
            if mailto is None:
                return f'would tap Reply "done", but the {act.after} email has no such link'
            message = reply_done_mailto(mailto, sender, words, planned.at)
            return f"{act.does} in the {act.after} email. {self._ingest(message)}"
        if act.does is Doing.AWAY:
            message = out_of_office(original, sender, words, planned.at)
            return f"is away: an automatic reply. {self._ingest(message)}"
        assert act.client is not None
        message = reply(original, sender, words, act.client, planned.at)
        return f"replies to the {act.after} email from {act.client}: “{words}” {self._ingest(message)}"

    def _send(self, begin: dt.datetime, end: dt.datetime) -> Tally:
        return service.run_once(self.settings, self.db, begin, end, self.step, lambda _said: None)

    def _ingest(self, message: bytes) -> str:
        self.replies.add(message)
        source = MaildirSource(str(self.place.replies), self.settings.max_message_bytes)
        with service.forwarding(self.settings) as send:
            tally = Ingester(self.db, self.settings, send).read(source, self.moment)
        tally.outcomes.pop("seen", None)  # the Maildir keeps what was read before, as a mailbox does
        return f"drip reads it: {tally.summary()}."

    def _tap(self, original: EmailMessage, path: str, typed: str) -> str:
        """Open the email's link to ``path`` (or that very link) on a phone, and tap the page's button."""
        link = path if "://" in path else _link(original, path)
        if link is None:
            return "no such link in it"
        target = urlsplit(link).path
        client = self.app.test_client()
        page = client.get(target, headers=PHONE)
        form = _Form.read(page.get_data(as_text=True))
        if page.status_code != 200 or not form.fields_found:
            return f"the page answers {page.status_code}"
        fields = dict(form.fields) | ({"answer": typed} if typed and form.asks else {})
        answer = client.post(target, data=fields, headers={**PHONE, "Referer": link})
        heading = _Form.read(answer.get_data(as_text=True)).heading
        return f"the page says “{heading}” ({answer.status_code})"

    def _tap_answer(self, original: EmailMessage, act: Act) -> str:
        """Tap the check-in's answer ``act.says``: its link is the one in that answer's place."""
        links = _links(original, "/answer/")
        with self.db.reading() as conn:
            path = conn.execute(select(Cohort.program_path).where(Cohort.slug == self.slug)).scalar_one()
        choices = program_at(path).choices_of(act.after)
        if choices is None or act.says not in choices.keys or len(links) != len(choices.keys):
            return f"would answer the {act.after} email, but it offers no answer “{act.says}”"
        label = choices.label(act.says)
        said = self._tap(original, links[choices.keys.index(act.says)], "")
        return f"taps “{label}” in the {act.after} email: {said}"

    def _email(self, to: str, step: str) -> tuple[EmailMessage, bytes] | None:
        """Return the caught email ``step`` sent to ``to``, and its bytes."""
        if (to.casefold(), step) not in self.caught:
            for path in catcher.messages(self.place.mail):
                if path in self.caught.values():
                    continue
                headers = message_from_bytes(path.read_bytes(), policy=policy.default)
                recipient = parseaddr(str(headers.get("To", "")))[1].casefold()
                self.caught[(recipient, str(headers.get("X-Drip-Step", "")))] = path
        found = self.caught.get((to.casefold(), step))
        if found is None:
            return None
        raw = found.read_bytes()
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message, raw

    def _cohort_language(self, conn: Any) -> str:
        settings = conn.execute(select(Cohort.settings).where(Cohort.slug == self.slug)).scalar_one()
        return str(settings.get("language") or "en")


def _words(key: str, person: Person) -> str:
    said = WORDS.get(key, {})
    words = said.get(base_language(person.language)) or said.get("en", "")
    handle = person.email.partition("@")[0].replace(".", "-")
    return words.format(profile=f"linkedin.com/in/{handle}")


def _link(message: EmailMessage, start: str) -> str | None:
    """Return the first link in the email's HTML whose address, or path, starts with ``start``."""
    return next(iter(_links(message, start)), None)


def _links(message: EmailMessage, start: str) -> list[str]:
    """Return the links in the email's HTML whose address, or path, starts with ``start``, in order."""
    part = message.get_body(("html",))
    if part is None:
        return []
    found = _Form.read(str(part.get_content())).links
    return [href for href in found if href.startswith(start) or urlsplit(href).path.startswith(start)]


class _Form(HTMLParser):
    """What the demo reads of a page: its heading, the hidden fields of its form, and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.fields_found = False
        #: whether the form asks a question (the goal's ``ask``)
        self.asks = False
        self.links: list[str] = []
        self.heading = ""
        self._in_heading = False

    @classmethod
    def read(cls, page: str) -> _Form:
        parser = cls()
        parser.feed(page)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and values.get("method", "").lower() == "post":
            self.fields_found = True
        elif tag == "input" and values.get("type") == "hidden":
            self.fields.append((values.get("name", ""), values.get("value", "")))
        elif tag in ("input", "textarea") and values.get("name") == "answer":
            self.asks = True
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])
        elif tag == "h1":
            self._in_heading = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.heading += data.strip()


@contextmanager
def told(settings: Settings, db: Store, slug: str, say: Callable[[str], None]) -> Iterator[Story]:
    """Yield the story of cohort ``slug``, closed afterwards."""
    story = Story(settings, db, slug, say)
    try:
        yield story
    finally:
        story.close()
