"""Check, before anything is written, that every email of a cohort renders.

Every step is rendered in full for one participant of each *shape* (which
roster columns are filled, whether there is a delegate), and its subject for
every participant; a repeating step, once for each of the participant's
occurrences. Template mistakes (an undefined name, a bad filter, a
syntax error) depend on the shape, not on the values, so one render per
shape finds them all; the one thing values change is what reaches a header,
and subjects are rendered for everyone. Rendering all of 10,000 participants'
24 emails in full would take longer than the whole launch is allowed to.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import replace

from drip.config import Settings
from drip.core.errors import CohortError, Problem, TemplateError
from drip.core.message import (
    Recipient,
    base_context,
    build,
    check_subject,
    cohort_view,
    links_for,
    recipient_of,
    step_context,
    unreachable,
)
from drip.core.mime import Mailbox
from drip.core.plan import Timing, expand_steps, plan_participant, program_end
from drip.core.program import Program, Step
from drip.core.render import Choice, Templates
from drip.core.values import InvalidValue, check_header_safe
from drip.launch.cohort import COHORT_FILE, Cohort
from drip.launch.roster import Participant
from drip.storage.keyring import reply_address

#: how many problems of one kind are listed before the rest are counted
SHOWN_PER_KIND = 5


def check_cohort(cohort: Cohort, settings: Settings) -> None:
    """Render the cohort's emails as :func:`check_rendering` does, with a throwaway link key."""
    sender = Mailbox(*cohort.sender)
    reply_to = Mailbox(*cohort.reply_to) if cohort.reply_to else None
    check_rendering(
        cohort,
        Templates(cohort.program.path, cohort.program.language),
        (secrets.token_urlsafe(32),),
        settings.base_url,
        reply_address(settings, sender, reply_to),
    )


def check_rendering(
    cohort: Cohort, templates: Templates, keys: Sequence[str], base_url: str, reply: str
) -> None:
    """Raise CohortError naming template file, line, step and participant for anything that fails."""
    problems: list[Problem] = []
    view = cohort_view(cohort)
    start = dt.datetime.combine(cohort.start, cohort.send_time, dt.UTC)
    seen_shapes: set[tuple[object, ...]] = set()
    failed_templates: set[tuple[str, str]] = set()
    subjects = _Subjects(templates)
    steps_of: dict[tuple[object, ...], list[Step]] = {}
    for participant in cohort.participants:
        fit = _fit_for_headers(participant)
        timing = cohort.timing(participant)
        recipient = recipient_of(participant, cohort.program, timing)
        links = links_for(base_url, keys, reply, program_end(cohort.program, timing))
        # one participant of each shape, in each language, is rendered in full
        shape = (*_shape(participant), participant.language or cohort.language)
        full = shape not in seen_shapes
        seen_shapes.add(shape)
        moments = _moments(cohort, participant) if full else {}
        bases: dict[str, dict[str, object]] = {}
        if timing.key() not in steps_of:
            steps_of[timing.key()] = _steps(cohort.program, timing)
        for step in steps_of[timing.key()]:
            reader = view.language_for(step, recipient)
            if (step.template, reader) in failed_templates or unreachable(step, view, recipient):
                continue  # a step with nobody to go to is skipped when due, never built
            try:
                if not full:
                    choice = templates.choose(step.template, reader)
                    if choice.language not in bases:
                        strings = templates.strings(choice.language)
                        bases[choice.language] = base_context(view, recipient, start, links, strings)
                    subjects.check(step, choice, bases[choice.language], recipient, fit)
                    continue
                # In full: at the step's own moment (days_left as it will be), with the goals
                # still open and once more all done, down to the MIME bytes.
                for variant in (recipient, _all_done(recipient)):
                    built = build(
                        templates, view, variant, step, when=moments.get(step.key, start),
                        delivery_id="0", instance="check", links=links,
                    )  # fmt: skip
                    built.as_bytes()
            except TemplateError as exc:
                failed_templates.add((step.template, reader))
                message = f"step {step.key!r} fails for {participant.email}: {exc}"
                problems.append(Problem(str(cohort.roster_file), message, row=participant.row))
            except InvalidValue as exc:
                problems.append(_header_problem(cohort, participant, step.key, exc))
    if problems:
        raise CohortError(_summarise(problems))


class _Subjects:
    """Checks subjects participant by participant, each once per distinct set of values it reads.

    A subject reads a few values (a first name, a deadline): once it rendered and passed
    from given values, the same values pass again. A participant with a roster value unfit
    for a header has every subject checked, since any may carry it.
    """

    def __init__(self, templates: Templates) -> None:
        self.templates = templates
        self.passed: set[tuple[str, str, tuple[object, ...]]] = set()

    def check(
        self, step: Step, choice: Choice, base: dict[str, object], recipient: Recipient, fit: bool
    ) -> None:
        compiled = self.templates.step(choice.name, choice.language)
        context = None if compiled.subject_inputs == () else step_context(base, step)
        inputs = () if context is None else compiled.subject_key(context)
        key = (choice.name, choice.language, inputs) if fit and inputs is not None else None
        if key is not None and key in self.passed:
            return
        values = context if context is not None else step_context(base, step)
        _check_subject(self.templates, choice, values, recipient)
        if key is not None:
            self.passed.add(key)


def _steps(program: Program, timing: Timing) -> list[Step]:
    """Return the steps to render for one participant: every occurrence of a repeating step.

    A repeating step with no occurrence for this participant is rendered as a
    lone first one, so that its template is checked all the same.
    """
    steps = expand_steps(program, timing)
    keys = {step.key for step in steps}
    for step in program.steps:
        if step.repeat is not None and step.nth(1, 1).key not in keys:
            steps.append(step.nth(1, 1))
    return steps


def _moments(cohort: Cohort, participant: Participant) -> dict[str, dt.datetime]:
    """Return when each step would go: planned moments, and for steps that wait, the goal's deadline."""
    timing = cohort.timing(participant)
    long_ago = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    moments = {}
    for planned in plan_participant(cohort.program, timing, long_ago):
        if planned.due_at is not None:
            moments[planned.step.key] = planned.due_at
        elif planned.step.goal:
            deadline = participant.deadlines[planned.step.goal]
            moments[planned.step.key] = dt.datetime.combine(deadline, cohort.send_time, dt.UTC)
    return moments


def _fit_for_headers(participant: Participant) -> bool:
    try:
        for value in participant.fields.values():
            check_header_safe(value)
    except InvalidValue:
        return False
    return True


def _all_done(recipient: Recipient) -> Recipient:
    """Every goal done, as from a reply: the congratulations then carry their "Reopen" link too."""
    done = tuple(replace(goal, status="done", via="reply") for goal in recipient.goals)
    return replace(recipient, goals=done)


def _shape(participant: Participant) -> tuple[object, ...]:
    filled = tuple(sorted((name, bool(value)) for name, value in participant.fields.items()))
    return filled, bool(participant.delegate_email)


def _check_subject(
    templates: Templates, choice: Choice, values: dict[str, object], recipient: Recipient
) -> None:
    step = templates.step(choice.name, choice.language)
    try:
        subject = " ".join(step.subject.render(values).split())
    except Exception as exc:  # noqa: BLE001 - reported with its place, as a full render would
        path, line = (
            step.subject_origins[0] if step.subject_origins else (templates.folder / f"{choice.name}.html", 1)
        )
        raise TemplateError(f"{path}, line {line}: {exc}") from None
    check_subject(subject, recipient)


def _header_problem(cohort: Cohort, participant: Participant, step: str, error: ValueError) -> Problem:
    """Point at the roster column whose value made a header unsafe."""
    for column, value in participant.fields.items():
        try:
            check_header_safe(value)
        except InvalidValue as exc:
            return Problem(
                str(cohort.roster_file),
                f"{exc} (step {step!r} puts this column in its subject)",
                row=participant.row,
                column=column,
            )
    # No roster value is at fault: a cohort-wide value is (the sender, the reply address).
    return Problem(
        str(cohort.path / COHORT_FILE),
        f"step {step!r}: {error}; check sender and reply_to here, and DRIP_REPLY_ADDRESS",
    )


def _summarise(problems: list[Problem]) -> list[Problem]:
    """Keep a few problems of each kind: one bad column on 10,000 rows is one mistake."""
    kept: list[Problem] = []
    counts: dict[tuple[str | None, str], int] = {}
    for problem in problems:
        kind = (problem.column, problem.message.split(" fails for ")[0] if problem.column is None else "")
        counts[kind] = counts.get(kind, 0) + 1
        if counts[kind] <= SHOWN_PER_KIND:
            kept.append(problem)
    for kind, count in counts.items():
        if count > SHOWN_PER_KIND:
            column = f"column {kind[0]!r}" if kind[0] else kind[1]
            kept.append(
                Problem(str(problems[0].file), f"... and {count - SHOWN_PER_KIND} more like this ({column})")
            )
    return kept
