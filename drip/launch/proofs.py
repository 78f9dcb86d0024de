"""Show one participant's email as it will be sent, or send proofs to a tester.

For a cohort already started, the email carries the stored ids (its links are
the real ones) and is dated at its planned moment; before a start it is
dated as ``drip plan`` would place it and its links are only for looking at.
Proofs sent with ``drip send-test`` go to the tester alone, with "[TEST]" in
the subject, dated now, with links that do nothing; they are never recorded.
"""

from __future__ import annotations

import datetime as dt
import difflib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy import Connection

from drip.config import Settings
from drip.core.errors import DripError
from drip.core.message import Built, build, cohort_view, links_for, recipient_of, unreachable
from drip.core.mime import Mailbox, addresses, compose
from drip.core.plan import Timing, expand_steps, plan_participant, program_end
from drip.core.plan import find_step as find_planned_step
from drip.core.program import Step
from drip.core.render import Templates
from drip.core.values import email_key
from drip.launch.cohort import Cohort
from drip.launch.roster import Participant
from drip.storage import store
from drip.storage.keyring import instance_id, reply_address, signing_keys


@dataclass(frozen=True)
class Proof:
    step: Step
    built: Built
    #: whether the links are real (the cohort is stored) or only for looking at
    live_links: bool


def find_participant(cohort: Cohort, email: str | None) -> Participant:
    """Return the participant with ``email``, or the first one on the roster."""
    if email is None:
        return cohort.participants[0]
    for participant in cohort.participants:
        if participant.key == email_key(email):
            return participant
    raise DripError(f"{email} is not in {cohort.roster_file}")


def find_step(cohort: Cohort, key: str) -> Step:
    """Return the step ``key`` names: a step of the program, or an occurrence of a repeating one.

    A repeating step's own key stands for its first occurrence.
    """
    step = cohort.program.step(key)
    if step is not None:
        return step.nth(1, 1) if step.repeat is not None else step
    found = cohort.program.occurrence_of(key)
    if found is not None:
        repeating, number = found
        return repeating.nth(number, number)  # how many there are depends on the participant
    keys = [step.key for step in cohort.program.steps]
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DripError(f"unknown step {key!r}; {hint}steps of {cohort.program.key}: {', '.join(keys)}")


def proofs(
    cohort: Cohort,
    settings: Settings,
    conn: Connection | None,
    participant: Participant,
    steps: list[Step],
    now: dt.datetime,
    *,
    test: bool = False,
) -> list[Proof]:
    """Build ``participant``'s emails for ``steps`` as they will be sent (``test``: as proofs)."""
    templates = Templates(cohort.program.path, cohort.program.language)
    view = cohort_view(cohort)
    timing = cohort.timing(participant)
    stored = _stored(conn, cohort, participant)
    person_id, goal_refs, delivery_refs = stored or (0, {}, {})
    statuses = {goal: ref[1] for goal, ref in goal_refs.items()}
    # A proof's links must do nothing: they carry no participant's or goal's id.
    goal_ids = {} if test else {goal: ref[0] for goal, ref in goal_refs.items()}
    recipient = recipient_of(participant, cohort.program, timing, goal_ids, statuses)
    if person_id and not test:
        recipient = replace(recipient, id=person_id)
    reply = reply_address(settings, view.sender, view.reply_to)
    links = links_for(
        settings.base_url, signing_keys(settings, conn), reply, program_end(cohort.program, timing)
    )
    planned = {p.step.key: p.due_at for p in plan_participant(cohort.program, timing, now)}
    instance = instance_id(conn)
    result = []
    for step in (_occurrence(cohort, participant, timing, step) for step in steps):
        nobody = unreachable(step, view, recipient)
        if nobody and len(steps) == 1:
            raise DripError(f"{nobody}: there is no email to show")
        if nobody:
            continue
        delivery = delivery_refs.get(step.key)
        when = (delivery[1] if delivery else planned.get(step.key)) or now
        if test:
            delivery_id = f"test-{secrets.token_hex(6)}"
        else:
            delivery_id = str(delivery[0]) if delivery else f"preview-{step.key}"
        built = build(
            templates, view, recipient, step, when=when, delivery_id=delivery_id, instance=instance,
            links=links, test=test, dated=now if test else None,
        )  # fmt: skip
        result.append(Proof(step, built, live_links=bool(stored) and not test))
    return result


def _occurrence(cohort: Cohort, participant: Participant, timing: Timing, step: Step) -> Step:
    """Return the participant's own occurrence for an occurrence (or a repeating step: its first)."""
    if step.repeat is None and step.occurrence is None:
        return step
    key = step.key if step.occurrence is not None else step.nth(1, 1).key
    own = find_planned_step(cohort.program, key, timing)
    if own is not None:
        return own
    if step.repeat is not None or step.occurrence == 1:
        # None planned for this participant: the first one, to look at its template all the same.
        return step.nth(1, 1) if step.repeat is not None else step
    base = key.rsplit("-", 1)[0]
    planned = expand_steps(cohort.program, timing)
    count = sum(1 for s in planned if s.occurrence and s.key.rsplit("-", 1)[0] == base)
    raise DripError(f"{participant.email} gets {count} occurrence(s) of {base}, not {key}")


def _stored(
    conn: Connection | None, cohort: Cohort, participant: Participant
) -> tuple[int, dict, dict] | None:
    if conn is None:
        return None
    row = store.find_cohort(conn, cohort.slug)
    return None if row is None else store.participant_refs(conn, row.id, participant.key)


class Sends(Protocol):
    """What sending proofs needs of a transport (``drip.sending.transport.Transport``)."""

    def send(self, sender: str, recipients: Sequence[str], data: bytes, message_id: str) -> object: ...


def send_proofs(transport: Sends, items: list[Proof], to: str) -> list[str]:
    """Send each proof to ``to`` alone (never the participant or their delegate); return the subjects."""
    subjects = []
    for proof in items:
        message = replace(proof.built.message, to=Mailbox("", to), cc=())
        sender, recipients = addresses([message.sender]), addresses([message.to])
        transport.send(sender[0], recipients, compose(message), message.message_id)
        subjects.append(message.subject)
    return subjects
