"""Build one participant's email for one step: context, links, render, calendar entry, MIME.

Pure apart from reading templates: everything it needs comes in as values,
so the same code serves ``drip start`` (checking), ``drip preview``,
``drip send-test`` and dispatch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from drip.core import ics
from drip.core.languages import DEFAULT_LANGUAGE, Strings, own_strings
from drip.core.mime import AUTO_RESPONSE_SUPPRESS, Attachment, Mailbox, Message, compose, phrase
from drip.core.plan import GoalDates, Timing, goal_dates
from drip.core.program import AnchorKind, Audience, Program, Step
from drip.core.render import Rendered, Templates
from drip.core.tokens import Action, answer_object, make_token, message_tag, thread_index
from drip.core.values import Address, InvalidValue, check_header_safe, first_name

#: goal links keep working this long after the cohort's last day
LINK_GRACE_DAYS = 30
#: RFC 5321's limit on the part of an address before the @
MAX_LOCAL_PART = 64
TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class GoalView:
    key: str
    title: str
    description: str
    deadline: dt.date
    #: the day the goal opens for this participant
    opens: dt.date
    status: str = "open"
    #: the goal row's id, which links carry; 0 before the cohort is stored
    id: int = 0
    #: how a done goal was recorded: link, reply or admin
    via: str | None = None


@dataclass(frozen=True)
class Recipient:
    """A participant as an email needs them."""

    email: str
    name: str
    timezone: str
    goals: tuple[GoalView, ...]
    delegate_email: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    #: the participant row's id; 0 before the cohort is stored
    id: int = 0
    #: the participant's language, a BCP 47 tag; None: the cohort's
    language: str | None = None

    @property
    def first_name(self) -> str:
        return first_name(self.name, self.fields)


@dataclass(frozen=True)
class CohortView:
    slug: str
    name: str
    program: Program
    sender: Mailbox
    reply_to: Mailbox | None
    owners: tuple[str, ...]
    #: the cohort's language (cohort.toml), for participants without one and the owners; None: the program's
    language: str | None = None

    def language_for(self, step: Step, recipient: Recipient) -> str:
        """Return the language ``step`` is written in for ``recipient``: the owners read the cohort's."""
        own = None if step.to is Audience.OWNERS else recipient.language
        return own or self.language or self.program.language


@dataclass(frozen=True)
class Links:
    """Builds the signed links and reply addresses an email carries."""

    base_url: str
    keys: tuple[str, ...]
    #: where replies go: plus-addressed with a token for "reply done"
    reply_address: str
    expires: dt.date

    def _token(self, action: Action, object_id: int, expires: dt.date | None) -> str:
        return _token(self.keys, action, object_id, expires)

    def url(self, action: Action, object_id: int) -> str:
        """The signed link to ``action``'s page for a goal (or, to unsubscribe, a participant)."""
        expires = None if action is Action.UNSUBSCRIBE else self.expires  # unsubscribing never expires
        return f"{self.base_url}/{action.path}/{self._token(action, object_id, expires)}"

    # What templates call:

    def done_url(self, goal: GoalView) -> str:
        return self.url(Action.DONE, goal.id)

    def snooze_url(self, goal: GoalView) -> str:
        return self.url(Action.SNOOZE, goal.id)

    def reopen_url(self, goal: GoalView) -> str:
        return self.url(Action.REOPEN, goal.id)

    def unsubscribe_url(self, recipient: Recipient) -> str:
        return self.url(Action.UNSUBSCRIBE, recipient.id)

    def answer_url(self, delivery_id: int, choice: int) -> str:
        """The signed link that gives answer number ``choice`` (from 0) to the email ``delivery_id``."""
        return self.url(Action.ANSWER, answer_object(delivery_id, choice))

    def _mailto(self, token: str, subject: str) -> str:
        """Return a mailto: the token plus-addressed, or in the subject if the address would grow too long."""
        reply = Address(self.reply_address)
        tagged = reply.tagged(token)
        if len(tagged.local) <= MAX_LOCAL_PART:
            return f"mailto:{tagged.ascii}?subject={quote(subject)}"
        return f"mailto:{reply.tagged('').ascii.replace('+@', '@')}?subject={quote(f'{subject} [{token}]')}"

    def reply_done_mailto(self, goal: GoalView, subject: str | None = None) -> str:
        """The mailto: of "reply done"; ``subject``: the goal's title with "Done:" in the email's language."""
        return self._mailto(self._token(Action.DONE, goal.id, self.expires), subject or "Done: " + goal.title)

    def unsubscribe_mailto(self, recipient: Recipient) -> str:
        return self._mailto(self._token(Action.UNSUBSCRIBE, recipient.id, None), "unsubscribe")


@lru_cache(maxsize=4096)
def _token(keys: tuple[str, ...], action: Action, object_id: int, expires: dt.date | None) -> str:
    # One email carries the same link several times (button, text part, calendar entry).
    return make_token(keys, action, object_id, expires)


@dataclass(frozen=True)
class Built:
    message: Message
    rendered: Rendered

    def as_bytes(self) -> bytes:
        return compose(self.message)


def context(
    cohort: CohortView,
    recipient: Recipient,
    step: Step,
    when: dt.datetime,
    links: Links,
    strings: Strings | None = None,
    delivery_id: int = 0,
) -> dict[str, Any]:
    """Return what a step's templates may use; see the README for each name."""
    base = base_context(cohort, recipient, when, links, strings)
    return step_context(base, step, choices_context(step, links, delivery_id, strings))


def base_context(
    cohort: CohortView, recipient: Recipient, when: dt.datetime, links: Links, strings: Strings | None = None
) -> dict[str, Any]:
    """Return the part of the context that is the same for every step of one participant written in
    the language of ``strings`` (the program's fixed strings; None: as the program writes them)."""
    today = when.astimezone(ZoneInfo(recipient.timezone)).date()
    said = strings or Strings(cohort.program.language)
    views = {goal.key: translated(goal, said) for goal in recipient.goals}
    ours = own_strings(said.language)

    def reply_done(goal: Any) -> str:
        shown = view(goal)
        return links.reply_done_mailto(shown, ours.format("Done: {title}", title=shown.title))

    def view(goal: Any) -> GoalView:
        return views[goal if isinstance(goal, str) else goal["key"]]

    return {
        "participant": {
            **recipient.fields,
            "name": recipient.name,
            "first_name": recipient.first_name,
            "email": recipient.email,
            "timezone": recipient.timezone,
            "delegate_email": recipient.delegate_email or "",
            "language": recipient.language or "",
        },
        "goals": [_goal_context(goal, today) for goal in views.values()],
        "cohort": {
            "name": cohort.name,
            "owners": list(cohort.owners),
            "sender_name": cohort.sender.name or cohort.sender.address,
        },
        "program": {"name": cohort.program.name},
        "today": today,
        "done_url": lambda goal: links.done_url(view(goal)),
        "snooze_url": lambda goal: links.snooze_url(view(goal)),
        "reply_done_mailto": reply_done,
        "reopen_url": lambda goal: links.reopen_url(view(goal)),
        "unsubscribe_url": links.unsubscribe_url(recipient),
    }


def choices_context(
    step: Step, links: Links, delivery_id: int, strings: Strings | None = None
) -> list[dict[str, str]]:
    """Return the answers ``step``'s email offers: each one's key, label (in the email's language)
    and signed link, in the order program.toml declares them; none for a step that asks nothing."""
    if step.choices is None:
        return []
    said = strings or Strings(DEFAULT_LANGUAGE)
    return [
        {"key": key, "label": said.get(label), "url": links.answer_url(delivery_id, index)}
        for index, (key, label) in enumerate(zip(step.choices.keys, step.choices.labels, strict=True))
    ]


def step_context(
    base: dict[str, Any], step: Step, answers: Sequence[Mapping[str, str]] = ()
) -> dict[str, Any]:
    """Add the step's own goal, the one after it, and its answers, to a participant's base context."""
    by_key = {answer["key"]: answer["url"] for answer in answers}

    def answer_url(key: str) -> str:
        if key not in by_key:
            offered = ", ".join(by_key) or "none: add answers to the step in program.toml"
            raise InvalidValue(
                f"answer_url({key!r}): {step.key} offers no such answer (its answers: {offered})"
            )
        return by_key[key]

    goals = base["goals"]
    index = next((i for i, goal in enumerate(goals) if goal["key"] == step.goal), None)
    current = goals[index] if index is not None else None
    following = goals[index + 1] if index is not None and index + 1 < len(goals) else None
    others_open = [goal for goal in goals if goal["key"] != step.goal and goal["status"] == "open"]
    return {
        **base,
        "goal": current,
        "next_goal": following,
        "other_goals_open": others_open,
        "step": step.key,
        # whom this email goes to: "participant", "delegate" or "owners" (who must not get the
        # participant's done button or unsubscribe link)
        "audience": step.to.value,
        # Which occurrence of a repeating step this is, from 1, and of how many; None otherwise.
        "occurrence": step.occurrence,
        "occurrences": step.occurrences,
        # a check-in's answers, each {key, label, url}; answer_url(key) is one of their links
        "answers": list(answers),
        "answer_url": answer_url,
    }


def translated(goal: GoalView, strings: Strings) -> GoalView:
    """Return ``goal`` with its title and description in the language of ``strings``."""
    if not strings.table:
        return goal
    return replace(goal, title=strings.get(goal.title), description=strings.get(goal.description))


def _goal_context(goal: GoalView, today: dt.date) -> dict[str, Any]:
    return {
        "key": goal.key,
        "title": goal.title,
        "description": goal.description,
        "deadline": goal.deadline,
        "opens": goal.opens,
        "days_left": (goal.deadline - today).days,
        "status": goal.status,
        "via": goal.via,
    }


def build(
    templates: Templates,
    cohort: CohortView,
    recipient: Recipient,
    step: Step,
    *,
    when: dt.datetime,
    delivery_id: str,
    instance: str,
    links: Links,
    test: bool = False,
    dated: dt.datetime | None = None,
) -> Built:
    """Render ``step`` for ``recipient`` as of ``when`` and assemble the message.

    ``dated`` sets the Date header when it is not ``when`` (a proof sent today of
    an email due next month).
    """
    reader = cohort.language_for(step, recipient)
    strings = templates.strings(templates.choose(step.template, reader).language)
    number = int(delivery_id) if delivery_id.isdigit() else 0  # a preview's id is not a delivery's
    values = context(cohort, recipient, step, when, links, strings, number)
    rendered = templates.render(step.template, values, reader)
    check_subject(rendered.subject, recipient)
    subject = TEST_PREFIX + rendered.subject if test else rendered.subject
    domain = Address(cohort.sender.address).ascii_domain  # IDNA, for the Message-ID
    reply_name = (cohort.reply_to or cohort.sender).name
    headers = []
    if step.to is Audience.PARTICIPANT:  # the link unsubscribes the participant: theirs alone
        headers += [
            (
                "List-Unsubscribe",
                f"<{links.unsubscribe_url(recipient)}>, <{links.unsubscribe_mailto(recipient)}>",
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    headers += [
        ("Auto-Submitted", "auto-generated"),
        ("Content-Language", rendered.language),
        *mail_system_headers(cohort.slug, cohort.name, step.key, domain),
        ("X-Drip-Cohort", cohort.slug),
        ("X-Drip-Step", step.key),
        # Outlook may answer with this alone, no In-Reply-To: it still ties the reply to this email.
        ("Thread-Index", thread_index(links.keys, delivery_id, when)),
    ]
    if step.goal:
        headers.append(("X-Drip-Goal", step.goal))
    to, cc = addressees(step.to, cohort, recipient)
    message = Message(
        sender=cohort.sender,
        to=to,
        cc=cc,
        reply_to=Mailbox(reply_name, links.reply_address),
        subject=subject,
        date=dated or when,
        message_id=f"<drip.{delivery_id}.{message_tag(links.keys, instance, delivery_id)}@{domain}>",
        text=rendered.text,
        html=rendered.html,
        boundary_seed=f"{instance}{delivery_id}",
        headers=tuple(headers),
        attachments=_calendar(cohort, recipient, step, when, links, domain, strings),
    )
    return Built(message, rendered)


def unreachable(step: Step, cohort: CohortView, recipient: Recipient) -> str | None:
    """Say why ``step`` has nobody to go to for ``recipient`` (no owners, no delegate), or None."""
    if step.to is Audience.OWNERS and not cohort.owners:
        return f"{step.key} goes to the cohort's owners, and the cohort has none"
    if step.to is Audience.DELEGATE and not recipient.delegate_email:
        return f"{step.key} goes to the participant's delegate, and {recipient.email} has none"
    return None


def addressees(
    audience: Audience, cohort: CohortView, recipient: Recipient
) -> tuple[Mailbox, tuple[Mailbox, ...]]:
    """Return To and Cc for a step that goes to ``audience``: the participant (their delegate copied),
    the delegate alone, or the owners."""
    if audience is Audience.OWNERS and cohort.owners:
        return Mailbox("", cohort.owners[0]), tuple(Mailbox("", owner) for owner in cohort.owners[1:])
    if audience is Audience.DELEGATE and recipient.delegate_email:
        return Mailbox("", recipient.delegate_email), ()
    if audience is not Audience.PARTICIPANT:  # callers ask unreachable() first
        raise InvalidValue(f"nobody to send this to: the {audience} are not known")
    delegate = (Mailbox("", recipient.delegate_email),) if recipient.delegate_email else ()
    return Mailbox(recipient.name, recipient.email), delegate


def mail_system_headers(slug: str, name: str, step: str, domain: str) -> list[tuple[str, str]]:
    """Return the headers that tell mail systems which cohort and step an email belongs to.

    List-Id (RFC 2919) lets clients and filters group a cohort's mail; Feedback-ID lets Gmail's
    postmaster tools report complaints per cohort and step (its last field names the sender);
    X-Auto-Response-Suppress keeps Exchange from answering with out-of-office notes.
    """
    label = f"<{slug}.{domain}>"
    described = phrase(name) if name.strip() else ""
    # a name that needs encoded-words is left out: no header value drip passes on may hold "=?"
    return [
        ("List-Id", f"{described} {label}" if described and "=?" not in described else label),
        ("Feedback-ID", f"{slug}:{step}:{domain}"),
        ("X-Auto-Response-Suppress", AUTO_RESPONSE_SUPPRESS),
    ]


def check_subject(subject: str, recipient: Recipient) -> None:
    """Refuse a subject that holds a roster value unfit for a header, even with its line breaks folded.

    Rendering folds runs of whitespace, so "CEO\\nBcc: x" would arrive as harmless
    text; it is refused all the same, because it is someone's attempt, or
    mistake, that the program owner should see.
    """
    check_header_safe(subject)
    for value in recipient.fields.values():
        try:
            check_header_safe(value)
        except InvalidValue:
            if " ".join(value.split()) in subject:
                raise
            continue


def _calendar(
    cohort: CohortView,
    recipient: Recipient,
    step: Step,
    when: dt.datetime,
    links: Links,
    domain: str,
    strings: Strings,
) -> tuple[Attachment, ...]:
    """Return the deadline as a calendar entry, for the participant's steps about a deadline."""
    if not step.goal or step.at.kind not in (AnchorKind.OPENS, AnchorKind.DEADLINE):
        return ()
    if step.to is not Audience.PARTICIPANT:  # the entry carries the participant's own done link
        return ()
    goal = translated(next(goal for goal in recipient.goals if goal.key == step.goal), strings)
    ours = own_strings(strings.language)
    person = hashlib.sha256(f"{cohort.slug}\0{recipient.email.casefold()}".encode()).hexdigest()[:16]
    data = ics.deadline_event(
        uid=f"drip-{person}-{goal.key}@{domain}",
        summary=ours.format("Due: {title}", title=goal.title),
        description=f"{goal.description}\n\n{ours.format('Mark it done: {url}', url=links.done_url(goal))}",
        day=goal.deadline,
        stamp=when,
        url=links.done_url(goal),
        organizer=(cohort.sender.name, Address(cohort.sender.address).ascii),
    )
    return (Attachment("text/calendar; charset=utf-8; method=PUBLISH", "deadline.ics", data),)


def cohort_view(cohort: Any) -> CohortView:
    """Return the CohortView of a loaded cohort folder."""
    reply_to = Mailbox(*cohort.reply_to) if cohort.reply_to else None
    return CohortView(
        cohort.slug,
        cohort.name,
        cohort.program,
        Mailbox(*cohort.sender),
        reply_to,
        cohort.owners,
        cohort.language,
    )


def links_for(settings_base_url: str, keys: Sequence[str], reply_address: str, last_day: dt.date) -> Links:
    """Return the link builder for a participant whose program ends on ``last_day``."""
    return Links(settings_base_url, tuple(keys), reply_address, last_day + dt.timedelta(days=LINK_GRACE_DAYS))


def recipient_of(
    participant: Any,
    program: Program,
    timing: Timing,
    goal_ids: Mapping[str, int] | None = None,
    statuses: Mapping[str, str] | None = None,
    participant_id: int = 0,
    vias: Mapping[str, str | None] | None = None,
    dates: Mapping[str, GoalDates] | None = None,
) -> Recipient:
    """Return the Recipient for a participant (ids 0 and goals open until stored); ``dates``: the
    goal dates of ``timing``, when the caller has them already."""
    ids, states, how = goal_ids or {}, statuses or {}, vias or {}
    dates = dates if dates is not None else goal_dates(program, timing)
    return Recipient(
        email=participant.email,
        name=participant.name,
        timezone=participant.timezone,
        delegate_email=current_delegate(participant),
        fields=dict(participant.fields),
        id=participant_id,
        language=getattr(participant, "language", None),
        goals=tuple(
            GoalView(
                g.key,
                g.title,
                g.description,
                dates[g.key].deadline,
                dates[g.key].opens,
                states.get(g.key, "open"),
                ids.get(g.key, 0),
                how.get(g.key),
            )
            for g in program.goals
        ),
    )


def current_delegate(participant: Any) -> str | None:
    """Return the delegate to copy, unless that address has bounced (a new one in the roster is used)."""
    delegate: str | None = participant.delegate_email
    bounced: str | None = getattr(participant, "delegate_bounced", None)
    if delegate and bounced and delegate.casefold() == bounced:
        return None
    return delegate


def addresses_of(built: Built) -> Sequence[str]:
    """Return who the message goes to: the participant and any delegate."""
    boxes = [built.message.to, *built.message.cc]
    return [box.address for box in boxes]
