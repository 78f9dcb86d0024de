"""What participants answered after the training: each check-in's answers, month by month, and who
gave the answer that needs the owners' attention twice in a row.

Reads only, for ``drip status``, the report, the digest and the export alike. A check-in counts the
participants it went to (its email was sent), less those removed since: each gave one of its
answers, or none yet (``no_answer``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from drip.core.errors import DripError
from drip.core.program import MAX_OCCURRENCES, AnswerKind, Program, Step, occurrence_key, program_at
from drip.core.states import ParticipantStatus
from drip.storage.plainsql import Plain
from drip.storage.records import StoredCohort

logger = logging.getLogger(__name__)

#: the count of participants a check-in went to who have not answered it
NO_ANSWER = "no_answer"

_REMOVED = ParticipantStatus.REMOVED.value
# Counted whole, less those of removed participants (few, and usually none), as
# store.delivery_counts does: the sent check-ins come from the deliveries' (cohort_id, status, step,
# sent_at) index alone, and the removed participants' rows by their ids, whatever the planner knows.
_SENT = (
    "SELECT step, COUNT(*), MIN(sent_at) FROM deliveries "
    "WHERE cohort_id = ? AND status = 'sent' AND step IN ({steps}) GROUP BY step"
)
_ANSWERED = "SELECT step, answer, COUNT(*) FROM check_ins WHERE cohort_id = ? GROUP BY step, answer"
_REMOVED_IDS = f"SELECT id FROM participants WHERE cohort_id = ? AND status = '{_REMOVED}'"
_SENT_TO = (
    "SELECT step, COUNT(*) FROM deliveries WHERE participant_id IN ({ids}) AND status = 'sent' "
    "AND step IN ({steps}) GROUP BY step"
)
_ANSWERED_BY = (
    "SELECT step, answer, COUNT(*) FROM check_ins WHERE participant_id IN ({ids}) GROUP BY step, answer"
)
#: removed participants' ids per statement
_IDS_AT_ONCE = 500
_GIVEN = f"""
SELECT c.participant_id, p.email, p.name, c.step, c.answer, c.answered_at, c.via
FROM check_ins c JOIN participants p ON p.id = c.participant_id
WHERE c.cohort_id = ? AND p.status <> '{_REMOVED}'
ORDER BY c.answered_at, c.id"""


@dataclass(frozen=True)
class Occurrence:
    """One check-in (an occurrence of a step with answers) and how its participants answered."""

    #: the occurrence's key (sustain-2) and the step it repeats (sustain), and its number (2)
    key: str
    step: str
    number: int
    #: each answer's key and label, in program.toml's order
    answers: tuple[tuple[str, str], ...]
    #: participants per answer key, and ``NO_ANSWER``
    counts: dict[str, int]
    #: when its email first went out
    first_sent: dt.datetime | None

    @property
    def sent(self) -> int:
        return sum(self.counts.values())

    def share(self, answer: str) -> float:
        """The share of those it went to who gave ``answer``: 0 to 1."""
        return self.counts.get(answer, 0) / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Answer:
    """One participant's answer to one check-in, as it stands."""

    participant_id: int
    email: str
    name: str
    occurrence: str
    step: str
    number: int
    answer: str
    label: str
    at: dt.datetime
    via: str
    #: whether it is its step's ``attention`` answer ("not_shared")
    attention: bool = False


@dataclass(frozen=True)
class Attention:
    """A participant who gave a step's ``attention`` answer to two check-ins in a row."""

    email: str
    name: str
    label: str
    #: the two occurrences, in order
    occurrences: tuple[str, str]
    #: when the second answer was given
    at: dt.datetime


@dataclass(frozen=True)
class CheckIns:
    """A cohort's check-ins so far."""

    occurrences: tuple[Occurrence, ...] = ()
    answers: tuple[Answer, ...] = ()

    def sustain(self) -> dict[str, dict[str, int]]:
        """Each check-in sent so far: its count per answer and of those who gave none."""
        return {item.key: dict(item.counts) for item in self.occurrences}

    def attention(self) -> list[Attention]:
        """Participants who gave a step's ``attention`` answer to two of its check-ins in a row."""
        by_person: dict[tuple[int, str], dict[int, Answer]] = defaultdict(dict)
        for answer in self.answers:
            by_person[answer.participant_id, answer.step][answer.number] = answer
        found = []
        for given in by_person.values():
            for number, later in sorted(given.items()):
                earlier = given.get(number - 1)
                if earlier is not None and earlier.attention and later.attention:
                    pair = (earlier.occurrence, later.occurrence)
                    found.append(
                        Attention(later.email, later.name, later.label, pair, max(earlier.at, later.at))
                    )
        return sorted(found, key=lambda item: item.at)


def check_in_steps(program: Program) -> list[Step]:
    """The steps of ``program`` that ask a check-in question."""
    return [step for step in program.steps if step.choices is not None]


def occurrence_keys(step: Step) -> list[str]:
    """Every key an occurrence of ``step`` may have (the step's own, for one that does not repeat)."""
    if step.repeat is None:
        return [step.key]
    return [occurrence_key(step.key, number) for number in range(1, MAX_OCCURRENCES + 1)]


def read_check_ins(conn: Connection, cohort_id: int, program_path: str, *, answers: bool = True) -> CheckIns:
    """Return a cohort's check-ins so far; none for a program that asks none (or cannot be read).

    ``answers=False`` reads the counts alone, as ``drip status`` does for a cohort of any size.
    """
    try:
        program = program_at(program_path)
    except (OSError, DripError) as exc:
        logger.warning("cannot read the program at %s for its check-ins: %s", program_path, exc)
        return CheckIns()
    steps = check_in_steps(program)
    if not steps:
        return CheckIns()
    named = {key: step for step in steps for key in occurrence_keys(step)}
    sql = Plain(conn)
    given = tuple(_answers(sql, cohort_id, named)) if answers else ()
    return CheckIns(tuple(_occurrences(sql, cohort_id, named)), given)


def _occurrences(sql: Plain, cohort_id: int, named: dict[str, Step]) -> list[Occurrence]:
    """Each check-in sent: to how many, and how many gave each answer."""
    marks = ", ".join("?" * len(named))
    sent: Counter[str] = Counter()
    first: dict[str, dt.datetime | None] = {}
    for key, count, at in sql.rows(_SENT.format(steps=marks), [cohort_id, *named]):
        sent[key] += int(count)
        first[key] = sql.read_instant(at)
    answered: Counter[tuple[str, str]] = Counter()
    for key, answer, count in sql.rows(_ANSWERED, (cohort_id,)):
        answered[key, answer] += int(count)
    removed = [row[0] for row in sql.rows(_REMOVED_IDS, (cohort_id,))]
    for start in range(0, len(removed), _IDS_AT_ONCE):
        ids = removed[start : start + _IDS_AT_ONCE]
        places = ", ".join("?" * len(ids))
        for key, count in sql.rows(_SENT_TO.format(ids=places, steps=marks), [*ids, *named]):
            sent[key] -= int(count)
        for key, answer, count in sql.rows(_ANSWERED_BY.format(ids=places), ids):
            answered[key, answer] -= int(count)
    found = []
    for key, total in sent.items():
        step = named[key]
        if total <= 0 or step.choices is None:
            continue
        pairs = tuple(zip(step.choices.keys, step.choices.labels, strict=True))
        counts = {answer: max(answered[key, answer], 0) for answer, _ in pairs}
        counts[NO_ANSWER] = max(total - sum(counts.values()), 0)  # an answer the program dropped: none
        found.append(Occurrence(key, step.key, _number(key, step), pairs, counts, first.get(key)))
    return sorted(found, key=lambda item: (item.step, item.number))


_SENT_PAIRS = (
    "SELECT participant_id, step FROM deliveries "
    "WHERE cohort_id = ? AND status = 'sent' AND step IN ({steps})"
)


def sent_to(conn: Connection, cohort_id: int, keys: Sequence[str]) -> set[tuple[int, str]]:
    """Return (participant id, check-in) of each of the check-ins ``keys`` that went out: whom each
    was sent to, for the export to tell an unanswered check-in from one never sent."""
    if not keys:
        return set()
    sql = Plain(conn)
    rows = sql.rows(_SENT_PAIRS.format(steps=", ".join("?" * len(keys))), [cohort_id, *keys])
    return {(int(participant), str(step)) for participant, step in rows}


def _answers(sql: Plain, cohort_id: int, named: dict[str, Step]) -> Iterable[Answer]:
    for participant_id, email, name, key, answer, at, via in sql.rows(_GIVEN, (cohort_id,)):
        step = named.get(key)
        if step is None or step.choices is None or answer not in step.choices.keys:
            continue  # a check-in the program no longer asks
        instant = sql.read_instant(at)
        assert instant is not None
        label, flagged = step.choices.label(answer), answer == step.choices.attention
        number = _number(key, step)
        yield Answer(participant_id, email, name, key, step.key, number, answer, label, instant, via, flagged)


def _number(key: str, step: Step) -> int:
    return int(key.rsplit("-", 1)[1]) if step.repeat is not None else 1


def linked_goals(cohort: StoredCohort) -> frozenset[str]:
    """Return the goals whose answers the report shows as links: none unless cohort.toml says
    ``link_answers = true``, and then those whose question asks for a web address."""
    if not cohort.settings.link_answers:
        return frozenset()
    try:
        goals = program_at(cohort.program_path).goals
    except (OSError, DripError) as exc:  # without the program, no answer is known to be an address
        logger.warning("cannot read the program at %s for its questions: %s", cohort.program_path, exc)
        return frozenset()
    return frozenset(goal.key for goal in goals if goal.ask is not None and goal.ask.kind is AnswerKind.URL)
