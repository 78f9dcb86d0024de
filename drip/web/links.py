"""The pages behind the links in the emails: done, snooze, reopen, unsubscribe, and a check-in's answers.

A GET or HEAD never changes anything: mail security scanners open every link
in every email. Each link shows a page whose one button POSTs to the same
address; only the POST acts, through ``drip.changes.act``. Each action's
address is ``Action.path`` (``drip.core.tokens``), written once for the
emails and these routes alike.

A POST waits at most a few seconds for the database: if another process holds
it longer, the click is kept (``drip.web.spool``) and recorded as soon as the
database is free, and the page answers 503 with Retry-After, so the one web
thread is never stuck behind a lock and nobody's click is lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, request
from sqlalchemy import Connection

from drip import changes
from drip.changes import Person
from drip.core import answers
from drip.core.errors import CohortError, StoreBusy
from drip.core.languages import (
    DEFAULT_LANGUAGE,
    SHIPPED_LANGUAGES,
    Strings,
    base_language,
    long_date,
    own_strings,
    page_language,
)
from drip.core.plan import goal_dates, local_day
from drip.core.program import Choices
from drip.core.render import program_strings
from drip.core.states import GoalStatus, ParticipantStatus
from drip.core.tokens import Action, Claim, TokenError, TokenExpired, read_answer_object, read_token
from drip.storage.records import StoredGoal
from drip.web import spool
from drip.web.context import Page, Question, render, site

logger = logging.getLogger(__name__)

#: user agents are kept as evidence up to this length
MAX_AGENT = 300
#: what a kept click's page asks a browser to wait before trying again, in seconds
RETRY_AFTER = 30


@dataclass(frozen=True)
class LinkPages:
    """What one action's link shows: the question before, and the answer after the button."""

    ask: Callable[[Person, str | None, dt.datetime], Page]
    #: the answer, from the participant after the change, the goal before it, and whether it changed
    answer: Callable[[Person, str | None, StoredGoal | None, bool, dt.datetime], Page]


def make_blueprint() -> Blueprint:
    """Return the link pages: a GET that asks and a POST that acts, at each action's address."""
    blueprint = Blueprint("links", __name__)
    for action in Action:
        rule = f"/{action.path}/<token>"
        blueprint.add_url_rule(rule, f"ask_{action.path}", partial(_ask, action), methods=["GET"])
        blueprint.add_url_rule(rule, action.path, partial(_act, action), methods=["POST"])
    blueprint.after_request(_not_kept)
    blueprint.register_error_handler(TokenError, _bad_token)
    return blueprint


def _not_kept(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"  # a page about one person's goal
    return response


def _claimed(conn: Connection, token: str, action: Action) -> tuple[Claim, Person, str | None]:
    here = site()
    claim = read_token(here.database.keys(conn), token, action, here.now().date())
    found = changes.person_of(conn, claim)
    if found is None:
        raise TokenExpired("this link belongs to a program that is no longer running")
    return claim, *found


def _ask(action: Action, token: str) -> tuple[str, int]:
    here = site()
    with here.database.store().reading() as conn:
        claim, person, key = _claimed(conn, token, action)
        pages = _pages(conn, claim, person, key)
    return render(pages.ask(person, key, here.now()))


def _pages(conn: Connection, claim: Claim, person: Person, key: str | None) -> LinkPages:
    """The pages of a link: an action's own, or for an answer those of the check-in and answer it names."""
    if claim.action is not Action.ANSWER:
        return PAGES[claim.action]
    assert key is not None
    try:
        choices, choice = changes.chosen(person, key, claim)
    except changes.ActionError:
        raise TokenExpired("this question is no longer asked") from None
    if person.status is ParticipantStatus.REMOVED:
        raise TokenExpired("this link belongs to a program that is no longer running")
    sent = changes.sent_at(conn, read_answer_object(claim.object_id)[0])
    return _answer_pages(choices, choice, sent, changes.given(conn, person, key))


def _act(action: Action, token: str) -> Any:
    here = site()
    agent = request.headers.get("User-Agent", "")[:MAX_AGENT]
    answer: str | None = None
    if action is Action.DONE and request.form.get("answer", "").strip():
        given = _answer(token, request.form["answer"])
        if isinstance(given, Page):
            return render(given)  # typed but not kept: asked again, nothing recorded
        answer = given
    evidence = changes.Evidence("link", ip=request.remote_addr, user_agent=agent, answer=answer)

    def change(conn: Connection) -> Page:
        claim, person, key = _claimed(conn, token, action)
        pages = _pages(conn, claim, person, key)
        before = person.goals[key] if action.on_goal and key is not None else None
        outcome = changes.act(conn, claim, person, key, here.now(), evidence)
        return pages.answer(person, key, before, outcome.changed, here.now())

    moment = here.now()
    try:
        with here.database.store().transaction(wait=here.busy.wait()) as conn:
            page = change(conn)
    except StoreBusy:
        # Held too long by another process: keep the click and say so (503).
        here.busy.trip()
        with here.database.store().reading() as conn:
            claim = read_token(here.database.keys(conn), token, action, moment.date())
        kept = spool.Click(
            action.value, claim.object_id, moment.isoformat(), request.remote_addr, agent, answer
        )
        spool.keep(here.spool, kept)
        logger.warning("the database is busy: a click (%s) is kept and will be recorded shortly", action.name)
        language = request.accept_languages.best_match(SHIPPED_LANGUAGES) or DEFAULT_LANGUAGE
        say = own_strings(language).get
        page = Page(
            say("Got it: one moment"),
            [say("We could not save this just now, so we kept it: it will be recorded within a minute."),
             say("There is nothing more to do; you can close this page.")],
            status=503,
            language=language,
        )  # fmt: skip
        html, status = render(page)
        return html, status, {"Retry-After": str(RETRY_AFTER)}
    here.busy.clear()
    if spool.waiting(here.spool):
        spool.replay(here.database.store(), here.spool)  # clicks kept while it was busy go first chance
    return render(page)


def _answer(token: str, typed: str) -> str | Page | None:
    """Return the answer to keep with a goal marked done, or its page asked again with what to fix."""
    here = site()
    with here.database.store().reading() as conn:
        _, person, key = _claimed(conn, token, Action.DONE)
    ask = person.program.goal(key).ask if key is not None else None
    if ask is None or key is None or person.goals[key].status is not GoalStatus.OPEN:
        return None  # no question (or nothing to record): the field is not the goal's
    try:
        return answers.clean(typed, ask)
    except answers.AnswerError as exc:
        say = _Words.of(person)
        again = _question(person, key, typed[: ask.limit * 2], say(exc.template, **exc.values))
        return replace(_ask_done(person, key, here.now()), question=again, status=422)


def _bad_token(error: TokenError) -> tuple[str, int]:
    # Nobody is known from a bad link: the page is in the browser's language, where drip has it.
    language = request.accept_languages.best_match(SHIPPED_LANGUAGES) or DEFAULT_LANGUAGE
    say = own_strings(language).get
    # drip's reasons are in English: an English page gives the reason, the others say it plainly
    sorry = f"Sorry: {error}." if base_language(language) == "en" else None
    if isinstance(error, TokenExpired):
        return render(
            Page(
                say("This link has expired"),
                [sorry or say("Sorry: this link is no longer valid."),
                 say("If you meant to tell us a goal is done, reply to the email instead.")],
                status=410,
                language=language,
            )
        )  # fmt: skip
    return render(
        Page(
            say("This link does not work"),
            [sorry or say("Sorry: this link is not complete, or not one of ours."),
             say("Open the link from the email itself, or reply to the email instead.")],
            status=400,
            language=language,
        )
    )  # fmt: skip


# --- what each page says ----------------------------------------------------------------


@dataclass(frozen=True)
class _Words:
    """A page's words in the participant's language: drip's own sentences, the program's goal titles."""

    person: Person
    language: str

    @classmethod
    def of(cls, person: Person) -> _Words:
        return cls(person, page_language(person.reads))

    def __call__(self, text: str, **values: str) -> str:
        return own_strings(self.language).format(text, **values)

    def date(self, day: dt.date) -> str:
        return long_date(day, self.language)

    def title(self, key: str) -> str:
        return self.program(self.person.title(key))

    def program(self, text: str) -> str:
        """Return the program's own ``text`` (a goal's title or question) in this page's language."""
        return _program_strings(str(self.person.program.path), self.language).get(text)

    def page(self, title: str, paragraphs: list[str], **more: Any) -> Page:
        return Page(title, paragraphs, program=self.person.cohort.name, language=self.language, **more)


def _program_strings(folder: str, language: str) -> Strings:
    """The program's strings in ``language``, as its emails read them."""
    try:
        return program_strings(Path(folder), language)
    except CohortError:  # a strings file edited into a mistake: the page goes on in the program's words
        return Strings(language)


#: what a goal's state says on a page that cannot act on it
_STATE = {
    GoalStatus.OPEN: "“{title}” is open.",
    GoalStatus.DONE: "“{title}” is already done.",
    GoalStatus.WAIVED: "“{title}” was waived: there is nothing to do.",
}


def _ask_done(person: Person, key: str | None, now: dt.datetime) -> Page:
    assert key is not None
    say = _Words.of(person)
    goal = person.goals[key]
    if goal.status is GoalStatus.DONE:
        return _already_done(person, key)
    return say.page(
        say("{name}, is this one done?", name=person.first_name),
        [say("“{title}”", title=say.title(key)), say("Due {date}.", date=say.date(goal.deadline))],
        button=say("Yes, mark it done"),
        note=say("Not yet? Close this page: nothing has been recorded."),
        question=_question(person, key),
    )


def _question(person: Person, key: str, value: str = "", error: str = "") -> Question | None:
    """The goal's question as the done page asks it, optional, in the participant's language."""
    ask = person.program.goal(key).ask
    if ask is None:
        return None
    say = _Words.of(person)
    return Question(say.program(ask.question), ask.kind.value, ask.limit, say("(optional)"), value, error)


def _already_done(person: Person, key: str) -> Page:
    say = _Words.of(person)
    goal = person.goals[key]
    title = say.title(key)
    done = (
        say("“{title}” was marked done on {date}.", title=title, date=say.date(goal.completed_at.date()))
        if goal.completed_at
        else say("“{title}” was marked done.", title=title)
    )
    return say.page(say("Already recorded"), [done, say("Nothing more to do here.")])


def _done(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    assert key is not None
    if not changed:
        return _already_done(person, key)
    say = _Words.of(person)
    paragraphs = [say("“{title}” is recorded as done. Its reminders stop here.", title=say.title(key))]
    upcoming = person.next_goal(key)
    if upcoming is None:
        paragraphs.append(say("That was the last goal of the program: well done."))
    else:
        opens = goal_dates(person.program, person.timing())[upcoming.goal].opens
        today = local_day(now, ZoneInfo(person.timezone))
        title, due = say.title(upcoming.goal), say.date(upcoming.deadline)
        paragraphs.append(
            say("Next: “{title}”. It is open now, due {due}.", title=title, due=due)
            if opens <= today
            else say(
                "Next: “{title}”. It opens {opens}, due {due}.", title=title, opens=say.date(opens), due=due
            )
        )
    return say.page(say("Thank you, {name}", name=person.first_name), paragraphs)


def _ask_snooze(person: Person, key: str | None, now: dt.datetime) -> Page:
    assert key is not None
    say = _Words.of(person)
    goal = person.goals[key]
    title = say.title(key)
    if goal.status is not GoalStatus.OPEN:
        return say.page(say("Nothing to snooze"), [say(_STATE[goal.status], title=title)])
    due = say("“{title}” is due {date}.", title=title, date=say.date(goal.deadline))
    if goal.snoozed_at is not None:
        return say.page(say("Already snoozed once"), [due, say("A goal can be pushed back only once.")])
    today = local_day(now, ZoneInfo(person.timezone))
    new = max(goal.deadline, today) + changes.SNOOZE
    return say.page(
        say("{name}, need another week?", name=person.first_name),
        [due, say("Push it back to {date}? You can do this once.", date=say.date(new))],
        button=say("Yes, give me a week"),
    )


def _snoozed(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    assert key is not None and before is not None
    say = _Words.of(person)
    title = say.title(key)
    if not changed:
        return say.page(
            say("Already snoozed once"),
            [say("“{title}” is due {date}.", title=title, date=say.date(before.deadline))],
        )
    return say.page(
        say("Done: one more week"),
        [
            say("“{title}” is now due {date}.", title=title, date=say.date(person.goals[key].deadline)),
            say("Reminders will follow the new date."),
        ],
    )


def _ask_reopen(person: Person, key: str | None, now: dt.datetime) -> Page:
    assert key is not None
    say = _Words.of(person)
    goal = person.goals[key]
    title = say.title(key)
    if goal.status is not GoalStatus.DONE:
        return say.page(say("Nothing to reopen"), [say(_STATE[goal.status], title=title)])
    done = (
        say(
            "“{title}” was marked done on {date} from your reply.",
            title=title,
            date=say.date(goal.completed_at.date()),
        )
        if goal.completed_at
        else say("“{title}” was marked done from your reply.", title=title)
    )
    return say.page(
        say("{name}, not done after all?", name=person.first_name),
        [done, say("Reopen it, and its reminders pick up again.")],
        button=say("Yes, reopen it"),
        note=say("Done after all? Close this page: nothing changes."),
    )


def _reopened(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    assert key is not None
    say = _Words.of(person)
    goal = person.goals[key]
    title, due = say.title(key), say.date(goal.deadline)
    if not changed:
        return say.page(say("Already open"), [say("“{title}” is open, due {date}.", title=title, date=due)])
    return say.page(
        say("Reopened"),
        [say("“{title}” is open again, due {date}.", title=title, date=due), say("Mark it done when it is.")],
    )


def _ask_unsubscribe(person: Person, key: str | None, now: dt.datetime) -> Page:
    if person.status is ParticipantStatus.UNSUBSCRIBED:
        return _unsubscribed(person, key, None, False, now)
    say = _Words.of(person)
    return say.page(
        say("Stop these emails?"),
        [say("You will get no more emails from {cohort}.", cohort=person.cohort.name)],
        button=say("Unsubscribe"),
        fields=[("List-Unsubscribe", "One-Click")],  # RFC 8058 one-click: the same POST a mail client sends
    )


def _unsubscribed(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    say = _Words.of(person)
    owners = person.cohort.settings.owners
    paragraphs = [say("You will get no more emails from {cohort}.", cohort=person.cohort.name)]
    if owners:
        paragraphs.append(say("If that was a mistake, write to {owner}.", owner=owners[0]))
    return say.page(say("You are unsubscribed"), paragraphs)


def _answer_pages(
    choices: Choices, choice: str, sent: dt.datetime | None, before: changes.Given | None
) -> LinkPages:
    """The pages of one answer to one check-in, given the answer that stands (if any)."""

    def sent_on(say: _Words, person: Person) -> list[str]:
        if sent is None:
            return []
        day = local_day(sent, ZoneInfo(person.timezone))
        return [say("Your answer to the check-in email of {date}.", date=say.date(day))]

    def recorded(say: _Words, person: Person) -> Page:
        assert before is not None
        label = say.program(choices.label(before.answer))
        day = say.date(local_day(before.at, ZoneInfo(person.timezone)))
        said = say("You answered “{answer}” on {date}.", answer=label, date=day)
        return say.page(say("Already recorded"), [said, say("Nothing more to do here.")])

    def ask(person: Person, key: str | None, now: dt.datetime) -> Page:
        say = _Words.of(person)
        label = say.program(choices.label(choice))
        if before is not None and before.answer == choice:
            return recorded(say, person)
        if before is not None:
            earlier = say.program(choices.label(before.answer))
            day = say.date(local_day(before.at, ZoneInfo(person.timezone)))
            return say.page(
                say("{name}, change your answer?", name=person.first_name),
                [say("You answered “{answer}” on {date}.", answer=earlier, date=day),
                 say("Change it to “{answer}”?", answer=label)],
                button=say("Yes, change it"),
                note=say("Not right? Close this page: nothing changes."),
            )  # fmt: skip
        return say.page(
            say("{name}, is this your answer?", name=person.first_name),
            [say("“{title}”", title=label), *sent_on(say, person)],
            button=say("Yes, that is my answer"),
            note=say("Not right? Close this page: nothing has been recorded."),
        )

    def answered(
        person: Person, key: str | None, goal: StoredGoal | None, changed: bool, now: dt.datetime
    ) -> Page:
        say = _Words.of(person)
        if not changed:
            return recorded(say, person)
        label = say.program(choices.label(choice))
        return say.page(
            say("Thank you, {name}", name=person.first_name),
            [
                say("“{answer}” is recorded.", answer=label),
                say("There is nothing more to do; you can close this page."),
            ],
        )

    return LinkPages(ask, answered)


#: every action's pages; an action without them fails here, at import. An answer's pages are made for
#: the check-in and the answer its link names (``_answer_pages``).
PAGES: dict[Action, LinkPages] = {
    Action.DONE: LinkPages(_ask_done, _done),
    Action.SNOOZE: LinkPages(_ask_snooze, _snoozed),
    Action.REOPEN: LinkPages(_ask_reopen, _reopened),
    Action.UNSUBSCRIBE: LinkPages(_ask_unsubscribe, _unsubscribed),
}
if set(PAGES) | {Action.ANSWER} != set(Action):
    raise RuntimeError(f"no pages for {sorted(set(Action) - set(PAGES))}: every action needs its pages")
