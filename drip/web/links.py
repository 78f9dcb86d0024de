"""The pages behind the links in the emails: done, snooze, reopen, unsubscribe.

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
from dataclasses import dataclass
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, request
from sqlalchemy import Connection

from drip import changes
from drip.changes import Person
from drip.core.errors import StoreBusy
from drip.core.plan import goal_dates, local_day
from drip.core.render import long_date
from drip.core.states import GoalStatus, ParticipantStatus
from drip.core.tokens import Action, Claim, TokenError, TokenExpired, read_token
from drip.storage.records import StoredGoal
from drip.web import spool
from drip.web.context import Page, render, site

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
        _, person, key = _claimed(conn, token, action)
    return render(PAGES[action].ask(person, key, here.now()))


def _act(action: Action, token: str) -> Any:
    here = site()
    agent = request.headers.get("User-Agent", "")[:MAX_AGENT]
    evidence = changes.Evidence("link", ip=request.remote_addr, user_agent=agent)

    def change(conn: Connection) -> Page:
        claim, person, key = _claimed(conn, token, action)
        before = person.goals[key] if key is not None else None
        outcome = changes.act(conn, claim, person, key, here.now(), evidence)
        return PAGES[action].answer(person, key, before, outcome.changed, here.now())

    moment = here.now()
    try:
        with here.database.store().transaction(wait=here.busy.wait()) as conn:
            page = change(conn)
    except StoreBusy:
        # Held too long by another process: keep the click and say so (503).
        here.busy.trip()
        with here.database.store().reading() as conn:
            claim = read_token(here.database.keys(conn), token, action, moment.date())
        kept = spool.Click(action.value, claim.object_id, moment.isoformat(), request.remote_addr, agent)
        spool.keep(here.spool, kept)
        logger.warning("the database is busy: a click (%s) is kept and will be recorded shortly", action.name)
        page = Page(
            "Got it: one moment",
            ["We could not save this just now, so we kept it: it will be recorded within a minute.",
             "There is nothing more to do; you can close this page."],
            status=503,
        )  # fmt: skip
        html, status = render(page)
        return html, status, {"Retry-After": str(RETRY_AFTER)}
    here.busy.clear()
    if spool.waiting(here.spool):
        spool.replay(here.database.store(), here.spool)  # clicks kept while it was busy go first chance
    return render(page)


def _bad_token(error: TokenError) -> tuple[str, int]:
    if isinstance(error, TokenExpired):
        return render(
            Page(
                "This link has expired",
                [f"Sorry: {error}.", "If you meant to tell us a goal is done, reply to the email instead."],
                status=410,
            )
        )
    return render(
        Page(
            "This link does not work",
            [f"Sorry: {error}.", "Open the link from the email itself, or reply to the email instead."],
            status=400,
        )
    )


# --- what each page says ----------------------------------------------------------------


def _ask_done(person: Person, key: str | None, now: dt.datetime) -> Page:
    assert key is not None
    goal = person.goals[key]
    if goal.status is GoalStatus.DONE:
        return _already_done(person, key)
    return Page(
        f"{person.first_name}, is this one done?",
        [f"“{person.title(key)}”", f"Due {long_date(goal.deadline)}."],
        button="Yes, mark it done",
        note="Not yet? Close this page: nothing has been recorded.",
        program=person.cohort.name,
    )


def _already_done(person: Person, key: str) -> Page:
    goal = person.goals[key]
    when = f" on {long_date(goal.completed_at.date())}" if goal.completed_at else ""
    return Page(
        "Already recorded",
        [f"“{person.title(key)}” was marked done{when}. Nothing more to do here."],
        program=person.cohort.name,
    )


def _done(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    assert key is not None
    if not changed:
        return _already_done(person, key)
    paragraphs = [f"“{person.title(key)}” is recorded as done. Its reminders stop here."]
    upcoming = person.next_goal(key)
    if upcoming is None:
        paragraphs.append("That was the last goal of the program: well done.")
    else:
        opens = goal_dates(person.program, person.timing())[upcoming.goal].opens
        today = local_day(now, ZoneInfo(person.timezone))
        start = "It is open now" if opens <= today else f"It opens {long_date(opens)}"
        paragraphs.append(
            f"Next: “{person.title(upcoming.goal)}”. {start}, due {long_date(upcoming.deadline)}."
        )
    return Page(f"Thank you, {person.first_name}", paragraphs, program=person.cohort.name)


def _ask_snooze(person: Person, key: str | None, now: dt.datetime) -> Page:
    assert key is not None
    goal = person.goals[key]
    title = person.title(key)
    if goal.status is not GoalStatus.OPEN:
        return Page("Nothing to snooze", [f"“{title}” is already {goal.status}."], program=person.cohort.name)
    if goal.snoozed_at is not None:
        return Page(
            "Already snoozed once",
            [f"“{title}” is due {long_date(goal.deadline)}. A goal can be pushed back only once."],
            program=person.cohort.name,
        )
    today = local_day(now, ZoneInfo(person.timezone))
    new = max(goal.deadline, today) + changes.SNOOZE
    return Page(
        f"{person.first_name}, need another week?",
        [
            f"“{title}” is due {long_date(goal.deadline)}.",
            f"Push it back to {long_date(new)}? You can do this once.",
        ],
        button="Yes, give me a week",
        program=person.cohort.name,
    )


def _snoozed(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    assert key is not None and before is not None
    if not changed:
        return Page(
            "Already snoozed once",
            [f"“{person.title(key)}” is due {long_date(before.deadline)}."],
            program=person.cohort.name,
        )
    goal = person.goals[key]
    return Page(
        "Done: one more week",
        [f"“{person.title(key)}” is now due {long_date(goal.deadline)}. Reminders will follow the new date."],
        program=person.cohort.name,
    )


def _ask_reopen(person: Person, key: str | None, now: dt.datetime) -> Page:
    assert key is not None
    goal = person.goals[key]
    title = person.title(key)
    if goal.status is not GoalStatus.DONE:
        return Page("Nothing to reopen", [f"“{title}” is {goal.status}."], program=person.cohort.name)
    when = f" on {long_date(goal.completed_at.date())}" if goal.completed_at else ""
    return Page(
        f"{person.first_name}, not done after all?",
        [f"“{title}” was marked done{when} from your reply.", "Reopen it, and its reminders pick up again."],
        button="Yes, reopen it",
        note="Done after all? Close this page: nothing changes.",
        program=person.cohort.name,
    )


def _reopened(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    assert key is not None
    goal = person.goals[key]
    title = person.title(key)
    if not changed:
        return Page(
            "Already open",
            [f"“{title}” is open, due {long_date(goal.deadline)}."],
            program=person.cohort.name,
        )
    return Page(
        "Reopened",
        [f"“{title}” is open again, due {long_date(goal.deadline)}.", "Mark it done when it is."],
        program=person.cohort.name,
    )


def _ask_unsubscribe(person: Person, key: str | None, now: dt.datetime) -> Page:
    if person.status is ParticipantStatus.UNSUBSCRIBED:
        return _unsubscribed(person, key, None, False, now)
    return Page(
        "Stop these emails?",
        [f"You will get no more emails from {person.cohort.name}."],
        button="Unsubscribe",
        fields=[("List-Unsubscribe", "One-Click")],  # RFC 8058 one-click: the same POST a mail client sends
        program=person.cohort.name,
    )


def _unsubscribed(
    person: Person, key: str | None, before: StoredGoal | None, changed: bool, now: dt.datetime
) -> Page:
    owners = person.cohort.settings.owners
    contact = f" If that was a mistake, write to {owners[0]}." if owners else ""
    return Page(
        "You are unsubscribed",
        [f"You will get no more emails from {person.cohort.name}.{contact}"],
        program=person.cohort.name,
    )


#: every action's pages; an action without them fails here, at import
PAGES: dict[Action, LinkPages] = {
    Action.DONE: LinkPages(_ask_done, _done),
    Action.SNOOZE: LinkPages(_ask_snooze, _snoozed),
    Action.REOPEN: LinkPages(_ask_reopen, _reopened),
    Action.UNSUBSCRIBE: LinkPages(_ask_unsubscribe, _unsubscribed),
}
if set(PAGES) != set(Action):
    raise RuntimeError(f"no pages for {sorted(set(Action) - set(PAGES))}: every action needs its pages")
