"""Load a program: its goals, its steps and where each step sits in time.

A program lives in ``emails/NAME/program.toml`` beside its templates. Each step
is placed by an *anchor expression*::

    start | end | GOAL.opens | GOAL.deadline | GOAL.completed   [+N(d|w) | -N(d|w)]

e.g. ``"short.deadline-3d"``: three days before the participant's short-term
deadline. A goal opens at ``start`` unless it says otherwise (``opens =
"short.deadline"``). Steps anchored on ``GOAL.completed`` wait until the goal
is done; all others are planned at enrolment.

A step with ``every = "30d"`` repeats: its first occurrence is at ``at``, the
next ones every so many days (or weeks) after, up to and including the day of
``until`` (an anchor; default ``end``), never after the program's end and at
most ``MAX_OCCURRENCES`` times. Each occurrence is a delivery of its own, keyed
``KEY-1``, ``KEY-2``, ...; all render the step's one template. A repeating step
belongs to no goal unless ``goal = "..."`` says so: it outlives the deadline it
is anchored on, whatever became of that goal. ``goal = false`` makes any step
belong to no goal.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from drip.core.errors import CohortError, Problem
from drip.core.languages import DEFAULT_LANGUAGE, language_tag
from drip.core.values import InvalidValue, check_header_safe, parse_offset

PROGRAM_FILE = "program.toml"
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GOAL_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
#: the most occurrences one repeating step may have for one participant
MAX_OCCURRENCES = 60
#: a delivery's step key holds 64 characters; an occurrence adds "-" and its number
REPEATING_KEY_LENGTH = 64 - len(f"-{MAX_OCCURRENCES}")


class AnchorKind(StrEnum):
    START = "start"
    END = "end"
    OPENS = "opens"
    DEADLINE = "deadline"
    COMPLETED = "completed"


class Audience(StrEnum):
    """Whom a step's email goes to."""

    PARTICIPANT = "participant"
    #: the participant's delegate (their assistant, say), alone; skipped for a participant without one
    DELEGATE = "delegate"
    #: the cohort's owners, about the participant (an escalation); skipped for a cohort without owners
    OWNERS = "owners"


class LatePolicy(StrEnum):
    """What to do with a step whose moment passed before the participant was enrolled."""

    SKIP = "skip"
    SEND = "send"


_ANCHOR = re.compile(
    r"^\s*(?:(start|end)|([a-z][a-z0-9_]*)\.(opens|deadline|completed))"
    r"\s*(?:([+-]\s*\d+\s*[dwDW]))?\s*$"
)


@dataclass(frozen=True)
class Anchor:
    """A moment in a participant's timeline, plus or minus whole days."""

    kind: AnchorKind
    goal: str | None = None
    offset_days: int = 0

    def __str__(self) -> str:
        base = f"{self.goal}.{self.kind}" if self.goal else str(self.kind)
        return base if not self.offset_days else f"{base}{self.offset_days:+d}d"

    def falls_on(
        self,
        start: dt.date,
        end: Callable[[], dt.date | None],
        opens: Callable[[str], dt.date | None],
        deadline: Callable[[str], dt.date | None],
    ) -> dt.date | None:
        """Return the day this anchor falls on, given where the moments it may name fall.

        None for a completion, which has no day until it happens, and for a moment that has none.
        This is the one place that says which moment each kind of anchor names.
        """
        base: dt.date | None
        if self.kind is AnchorKind.START:
            base = start
        elif self.kind is AnchorKind.END:
            base = end()
        elif self.kind is AnchorKind.OPENS:
            base = opens(self.goal)  # type: ignore[arg-type]
        elif self.kind is AnchorKind.DEADLINE:
            base = deadline(self.goal)  # type: ignore[arg-type]
        else:
            return None
        return None if base is None else base + dt.timedelta(days=self.offset_days)


def parse_anchor(text: str) -> Anchor:
    """Return the anchor written as ``"short.deadline-3d"``."""
    match = _ANCHOR.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidValue(
            f"{text!r} is not an anchor; write start, end, GOAL.opens, GOAL.deadline or "
            'GOAL.completed, optionally with an offset, e.g. "short.deadline-3d"'
        )
    plain, goal, goal_kind, offset = match.groups()
    days = parse_offset(offset.replace(" ", "")) if offset else 0
    if plain:
        return Anchor(AnchorKind(plain), None, days)
    return Anchor(AnchorKind(goal_kind), goal, days)


class AnswerKind(StrEnum):
    """What a goal's question takes: a few words, or a web address."""

    TEXT = "text"
    URL = "url"


#: the longest answer a goal takes unless its answer_limit says otherwise, in characters
DEFAULT_ANSWER_LIMIT = 280
#: the longest answer_limit a program may set
MAX_ANSWER_LIMIT = 2000


@dataclass(frozen=True)
class Ask:
    """The one optional question a goal asks when it is marked done (program.toml ``ask``)."""

    question: str
    kind: AnswerKind = AnswerKind.TEXT
    limit: int = DEFAULT_ANSWER_LIMIT


#: the most answers one step may offer: each is a link of its own, and a choice fits in a token's 4 bits
MAX_CHOICES = 6
CHOICE_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,23}$")


@dataclass(frozen=True)
class Choices:
    """The answers a step's email offers, each a one-tap signed link (program.toml ``answers``).

    ``labels`` are what readers see, translated like goal titles. A reply saying plainly "yes" is
    read as the first answer and one saying "no" as the second, when there are two.
    """

    keys: tuple[str, ...]
    labels: tuple[str, ...]
    #: owners hear in the digest of a participant who gives this answer twice in a row
    attention: str | None = None

    def label(self, key: str) -> str:
        return self.labels[self.keys.index(key)]

    @property
    def yes_no(self) -> tuple[str, str] | None:
        """The answers a plain "yes" and a plain "no" stand for, or None when there are more than two."""
        return (self.keys[0], self.keys[1]) if len(self.keys) == 2 else None


def humane(key: str) -> str:
    """Return a key as words, for an answer without a label: "not_shared" -> "Not shared"."""
    return key.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Goal:
    key: str
    title: str
    description: str
    #: default deadline, in days after the cohort's start
    deadline_days: int
    opens: Anchor
    ask: Ask | None = None


@dataclass(frozen=True)
class Repeat:
    """How a repeating step recurs."""

    every_days: int
    #: the last day an occurrence may fall on (inclusive); None: the program's end
    until: Anchor | None = None


@dataclass(frozen=True)
class Step:
    key: str
    goal: str | None
    at: Anchor
    template: str
    late: LatePolicy
    #: position in program.toml; breaks ties between steps on the same day
    order: int
    #: set on a repeating step as program.toml declares it; its occurrences are steps of their own
    repeat: Repeat | None = None
    #: set on one occurrence of a repeating step: its number, from 1
    occurrence: int | None = None
    #: set on one occurrence: how many occurrences the participant gets in all
    occurrences: int | None = None
    #: whom the email goes to
    to: Audience = Audience.PARTICIPANT
    #: the answers its email offers as links (a check-in), or None
    choices: Choices | None = None

    @property
    def waits_for_completion(self) -> bool:
        return self.at.kind is AnchorKind.COMPLETED

    def nth(self, number: int, of: int) -> Step:
        """Return occurrence ``number`` (of ``of``) of this repeating step."""
        return _occurrence(self, number, of)


@lru_cache(maxsize=4096)
def _occurrence(step: Step, number: int, of: int) -> Step:
    # Cached: every re-plan of a participant expands the same few repeating steps again.
    assert step.repeat is not None, f"{step.key} does not repeat"
    offset = step.at.offset_days + (number - 1) * step.repeat.every_days
    return replace(
        step,
        key=occurrence_key(step.key, number),
        at=replace(step.at, offset_days=offset),
        repeat=None,
        occurrence=number,
        occurrences=of,
    )


def occurrence_key(key: str, number: int) -> str:
    """Return the step key of occurrence ``number`` of repeating step ``key``."""
    return f"{key}-{number}"


_OCCURRENCE_KEY = re.compile(r"^(.+)-([1-9][0-9]*)$")


@dataclass(frozen=True)
class Program:
    key: str
    path: Path
    name: str
    description: str
    goals: tuple[Goal, ...]
    steps: tuple[Step, ...]
    ends: Anchor
    #: the language the program's own templates (STEP.html) are written in, a BCP 47 tag
    language: str = DEFAULT_LANGUAGE

    def goal(self, key: str) -> Goal:
        return next(goal for goal in self.goals if goal.key == key)

    @property
    def reader_texts(self) -> set[str]:
        """Return the program's own words a reader sees (goals' titles, descriptions and questions,
        answers' labels): what strings files translate besides the templates' own."""
        goals = {
            text
            for goal in self.goals
            for text in (goal.title, goal.description, goal.ask.question if goal.ask else "")
            if text
        }
        return goals | {label for step in self.steps if step.choices for label in step.choices.labels}

    def step(self, key: str) -> Step | None:
        """Return the step declared as ``key`` (a repeating one as declared), or None."""
        return self._steps_by_key.get(key)

    def occurrence_of(self, key: str) -> tuple[Step, int] | None:
        """Return the repeating step and occurrence number that step key ``key`` names, or None."""
        match = _OCCURRENCE_KEY.match(key)
        if match is None:
            return None
        step = self._steps_by_key.get(match[1])
        number = int(match[2])
        if step is None or step.repeat is None or number > MAX_OCCURRENCES:
            return None
        return step, number

    def choices_of(self, key: str) -> Choices | None:
        """Return the answers the step, or repeating step's occurrence, keyed ``key`` offers, or None."""
        found = self.occurrence_of(key)
        step = found[0] if found is not None else self.step(key)
        return step.choices if step is not None else None

    @cached_property
    def _steps_by_key(self) -> dict[str, Step]:
        return {step.key: step for step in self.steps}

    @property
    def goal_keys(self) -> tuple[str, ...]:
        return tuple(goal.key for goal in self.goals)

    @cached_property
    def timing_signature(self) -> str:
        """Return a digest of everything in the program that moves a step in time."""
        timing = [
            [[g.key, g.deadline_days, str(g.opens)] for g in self.goals],
            [[s.key, s.goal, str(s.at), s.late, s.order, *_repeat_timing(s)] for s in self.steps],
            str(self.ends),
        ]
        return hashlib.sha256(json.dumps(timing).encode()).hexdigest()[:16]


def _repeat_timing(step: Step) -> list[object]:
    # Nothing for a step that does not repeat, so that the digests stored before
    # repeating steps existed still match.
    if step.repeat is None:
        return []
    return [step.repeat.every_days, str(step.repeat.until) if step.repeat.until else None]


def available_programs(emails_dir: Path) -> list[str]:
    """List the program names found in ``emails_dir``."""
    if not emails_dir.is_dir():
        return []
    return sorted(p.parent.name for p in emails_dir.glob(f"*/{PROGRAM_FILE}"))


def find_program(name: str, search: list[Path]) -> Path:
    """Return the folder of program ``name``, looking in each folder of ``search``."""
    for folder in search:
        if (folder / name / PROGRAM_FILE).is_file():
            return folder / name
    known = sorted({p for folder in search for p in available_programs(folder)})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    places = ", ".join(str(f) for f in search)
    listing = f"programs there: {', '.join(known)}" if known else "no programs there"
    raise InvalidValue(f"unknown program {name!r}; {hint}looked in {places} ({listing})")


def load_program(path: Path) -> Program:
    """Load and validate the program in folder ``path``; report every problem at once."""
    return _ProgramLoader(path).load()


#: how often, at most, a running drip looks at a program's file for edits, in seconds
CHECK_PROGRAM_EVERY = 1.0
#: program folder -> (program.toml's modification time, when it was looked at, the program)
_loaded: dict[str, tuple[int, float, Program]] = {}


def program_at(path: str | Path) -> Program:
    """Return the program in folder ``path``: loaded once, and again only when program.toml changes.

    This is how everything that runs for long (sending, the link pages, replies, reports) reads a
    started cohort's program, so an edit reaches all of them within ``CHECK_PROGRAM_EVERY`` seconds.
    A program that no longer loads raises :class:`CohortError`, as :func:`load_program` does.
    """
    key = str(path)
    cached = _loaded.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[1] < CHECK_PROGRAM_EVERY:
        return cached[2]
    try:
        stamp = (Path(path) / PROGRAM_FILE).stat().st_mtime_ns
    except OSError:
        stamp = -1  # gone: load_program says so
    program = cached[2] if cached is not None and cached[0] == stamp else load_program(Path(path))
    _loaded[key] = (stamp, now, program)
    return program


class _ProgramLoader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path / PROGRAM_FILE
        self.label = str(self.file)
        self.problems: list[Problem] = []
        self.text = ""
        #: each step's location in program.toml, for problems found after its entry was read
        self.places: dict[str, tuple[str, int | None]] = {}

    def problem(self, message: str, key: str | None = None, line: int | None = None) -> None:
        self.problems.append(Problem(self.label, message, key=key, line=line))

    def table_lines(self, name: str) -> Iterator[int]:
        """Yield the line of each ``[[name]]`` header, to point at array entries."""
        for number, line in enumerate(self.text.splitlines(), start=1):
            if re.match(rf"^\s*\[\[\s*{name}\s*\]\]", line):
                yield number

    def load(self) -> Program:
        try:
            self.text = self.file.read_text(encoding="utf-8-sig")
            data = tomllib.loads(self.text)
        except FileNotFoundError:
            raise CohortError([Problem(self.label, "file not found")]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CohortError([Problem(self.label, f"not valid TOML: {exc}")]) from None
        except OSError as exc:
            raise CohortError([Problem(self.label, f"cannot be read ({exc.strerror})")]) from None

        self.check_keys(data, {"name", "description", "goals", "steps", "ends", "language"}, "")
        language = DEFAULT_LANGUAGE
        if "language" in data:
            try:
                language = language_tag(data["language"]) if isinstance(data["language"], str) else ""
            except InvalidValue as exc:
                self.problem(str(exc), "language")
            if not language:
                self.problem('\'language\' must be a language tag in quotes, like "en" or "de"', "language")
        name = self.string(data, "name", "", required=True)
        goals = self.goals(data.get("goals"))
        goal_keys = [g.key for g in goals]
        steps = self.steps(data.get("steps"), goal_keys)
        ends = Anchor(AnchorKind.DEADLINE, goal_keys[-1]) if goal_keys else Anchor(AnchorKind.START)
        if "ends" in data:
            ends = self.anchor(data["ends"], "ends", goal_keys, None, allowed=_FIXED_KINDS) or ends
        self.check_repeats(steps, {goal.key: goal for goal in goals}, ends)
        if self.problems:
            raise CohortError(self.problems)
        return Program(
            key=self.path.name,
            path=self.path,
            name=name,
            description=self.string(data, "description", ""),
            goals=tuple(goals),
            steps=tuple(steps),
            ends=ends,
            language=language or DEFAULT_LANGUAGE,
        )

    def check_keys(self, table: dict[str, Any], known: set[str], where: str, line: int | None = None) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
                self.problem(f"unknown field {key!r}; {hint}", f"{where}{key}", line)

    def string(
        self, table: dict[str, Any], key: str, where: str, *, required: bool = False, line: int | None = None
    ) -> str:
        value = table.get(key)
        if value is None:
            if required:
                self.problem(f"the field {key!r} is missing", f"{where}{key}", line)
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(f"{key!r} must be a non-empty string in quotes", f"{where}{key}", line)
            return ""
        return value.strip()

    def anchor(
        self,
        value: object,
        where: str,
        goal_keys: list[str],
        line: int | None,
        allowed: frozenset[AnchorKind] = frozenset(AnchorKind),
    ) -> Anchor | None:
        try:
            anchor = parse_anchor(value)  # type: ignore[arg-type]
        except InvalidValue as exc:
            self.problem(str(exc), where, line)
            return None
        if anchor.kind not in allowed:
            kinds = ", ".join(sorted(allowed))
            self.problem(f"{value!r}: {anchor.kind} cannot be used here (use {kinds})", where, line)
            return None
        if anchor.goal is not None and anchor.goal not in goal_keys:
            self.problem(
                f"{value!r} names unknown goal {anchor.goal!r}; {_choices(anchor.goal, goal_keys)}",
                where,
                line,
            )
            return None
        return anchor

    def entries(
        self, raw: object, kind: str, fields: set[str], pattern: re.Pattern[str]
    ) -> Iterator[tuple[dict[str, Any], str, int | None, str]]:
        """Yield (table, location, line, key) for each ``[[goals]]`` or ``[[steps]]`` entry.

        Checks what every entry shares: that it is a table, its field names,
        and its key's spelling and uniqueness.
        """
        array = f"{kind}s"
        if not isinstance(raw, list) or not raw:
            self.problem(f"a program needs at least one [[{array}]] table", array)
            return
        lines = list(self.table_lines(array))
        keys = [item.get("key") for item in raw if isinstance(item, dict)]
        allowed = (
            "lower-case letters, digits, - and _"
            if "-" in pattern.pattern
            else "lower-case letters, digits and _"
        )
        for index, item in enumerate(raw):
            line = lines[index] if index < len(lines) else None
            where = f"{array}[{index}]."
            if not isinstance(item, dict):
                self.problem(f"each {kind} must be a [[{array}]] table", f"{array}[{index}]", line)
                continue
            self.check_keys(item, fields, where, line)
            key = self.string(item, "key", where, required=True, line=line)
            if key and not pattern.match(key):
                self.problem(f"{kind} key {key!r} must be {allowed}", f"{where}key", line)
            if key and keys.count(key) > 1 and keys.index(key) != index:
                self.problem(f"{kind} key {key!r} is used twice", f"{where}key", line)
            yield item, where, line, key

    def goals(self, raw: object) -> list[Goal]:
        goals: list[Goal] = []
        pending_opens: list[tuple[str, object, str, int | None]] = []
        fields = {"key", "title", "description", "deadline", "opens", "ask", "answer", "answer_limit"}
        for item, where, line, key in self.entries(raw, "goal", fields, GOAL_KEY_PATTERN):
            title = self.string(item, "title", where, required=True, line=line)
            try:
                check_header_safe(title)
            except InvalidValue as exc:
                self.problem(str(exc), f"{where}title", line)
            deadline_days = 0
            raw_deadline = item.get("deadline")
            try:
                if not isinstance(raw_deadline, str):
                    raise InvalidValue('write the default deadline as an offset from the start, e.g. "+3w"')
                deadline_days = parse_offset(raw_deadline)
                if deadline_days <= 0:
                    raise InvalidValue(f'{raw_deadline!r} must be after the start, e.g. "+3w"')
            except InvalidValue as exc:
                self.problem(str(exc), f"{where}deadline", line)
            pending_opens.append((key, item.get("opens", "start"), f"{where}opens", line))
            goals.append(
                Goal(
                    key,
                    title,
                    self.string(item, "description", where),
                    deadline_days,
                    Anchor(AnchorKind.START),
                    self.ask(item, where, line),
                )
            )

        valid_keys = [g.key for g in goals]
        opens: dict[str, Anchor] = {}
        for key, value, where, line in pending_opens:
            others = [k for k in valid_keys if k != key]
            anchor = self.anchor(
                value,
                where,
                others,
                line,
                allowed=frozenset({AnchorKind.START, AnchorKind.OPENS, AnchorKind.DEADLINE}),
            )
            if anchor is not None:
                opens[key] = anchor
        if self._has_cycle(opens):
            self.problem("the goals' 'opens' fields refer to each other in a circle", "goals")
        return [replace(g, opens=opens.get(g.key, g.opens)) for g in goals]

    def ask(self, item: dict[str, Any], where: str, line: int | None) -> Ask | None:
        """Return a goal's question (``ask``, ``answer``, ``answer_limit``), or None when it asks none."""
        question = self.string(item, "ask", where, line=line).strip()
        if not question:
            for key in ("answer", "answer_limit"):
                if key in item:
                    said = f'{key} goes with a question: add ask = "...", or remove {key}'
                    self.problem(said, where + key, line)
            return None
        kind = item.get("answer", AnswerKind.TEXT.value)
        if kind not in {k.value for k in AnswerKind}:
            self.problem(f'answer must be "text" or "url", not {kind!r}', f"{where}answer", line)
            kind = AnswerKind.TEXT.value
        limit = item.get("answer_limit", DEFAULT_ANSWER_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ANSWER_LIMIT:
            self.problem(
                f"answer_limit must be a whole number of characters, 1 to {MAX_ANSWER_LIMIT}, not {limit!r}",
                f"{where}answer_limit",
                line,
            )
            limit = DEFAULT_ANSWER_LIMIT
        return Ask(question, AnswerKind(kind), limit)

    @staticmethod
    def _has_cycle(opens: dict[str, Anchor]) -> bool:
        for start in opens:
            seen, current = set(), start
            while current in opens and opens[current].goal is not None:
                if current in seen:
                    return True
                seen.add(current)
                current = opens[current].goal  # type: ignore[assignment]
        return False

    def steps(self, raw: object, goal_keys: list[str]) -> list[Step]:
        steps: list[Step] = []
        fields = {"key", "goal", "at", "template", "late", "every", "until", "to"} | _CHOICE_FIELDS
        for index, (item, where, line, key) in enumerate(self.entries(raw, "step", fields, KEY_PATTERN)):
            self.places.setdefault(key, (where, line))
            anchor = self.anchor(item.get("at"), f"{where}at", goal_keys, line)
            repeat = self.repeat(item, where, line, key, anchor, goal_keys)
            # A repeating step outlives the deadline it is anchored on: no goal unless it names one.
            default_goal = anchor.goal if anchor and "every" not in item else None
            goal = item.get("goal", default_goal)
            if goal is False:
                goal = None  # about no goal, whatever its anchor: it goes whether the goal is done or not
            elif goal is not None and goal not in goal_keys:
                choices = _choices(str(goal), goal_keys)
                self.problem(f"unknown goal {goal!r}; {choices}, or false for none", f"{where}goal", line)
            late_value = item.get("late", LatePolicy.SKIP.value)
            if late_value not in set(LatePolicy):
                self.problem(f'late must be "skip" or "send", not {late_value!r}', f"{where}late", line)
                late_value = LatePolicy.SKIP.value
            if "every" in item and late_value == LatePolicy.SEND.value:
                self.problem(
                    "a repeating step cannot be sent late: each occurrence whose moment passed before "
                    "enrolment is skipped, so a late start never brings a burst of them; "
                    'remove late = "send"',
                    f"{where}late",
                    line,
                )
            audience = item.get("to", Audience.PARTICIPANT.value)
            if audience not in set(Audience):
                self.problem(
                    f'to must be "participant", "delegate" or "owners", not {audience!r}', f"{where}to", line
                )
                audience = Audience.PARTICIPANT.value
            template = self.string(item, "template", where) or key
            if template and not (self.path / f"{template}.html").is_file():
                self.problem(f"template {template}.html not found in {self.path}", f"{where}template", line)
            if key and anchor:
                steps.append(
                    Step(
                        key,
                        goal,
                        anchor,
                        template,
                        LatePolicy(late_value),
                        index,
                        repeat,
                        to=Audience(audience),
                        choices=self.choices(item, where, line, Audience(audience)),
                    )
                )
        self.check_occurrence_keys(steps)
        return steps

    def repeat(
        self,
        item: dict[str, Any],
        where: str,
        line: int | None,
        key: str,
        anchor: Anchor | None,
        goal_keys: list[str],
    ) -> Repeat | None:
        """Return how a step repeats (``every``, ``until``); None for a step sent once."""
        if "every" not in item:
            if "until" in item:
                self.problem(
                    'until only applies to a repeating step; add every = "30d", or remove until',
                    f"{where}until",
                    line,
                )
            return None
        value = item["every"]
        every: int | None = None
        try:
            if not isinstance(value, str):
                raise InvalidValue(
                    f'write every as a number of days or weeks in quotes, e.g. "30d", not {value!r}'
                )
            every = parse_offset(value)
        except InvalidValue as exc:
            self.problem(str(exc), f"{where}every", line)
        if every is not None and every <= 0:
            self.problem(
                f'every = {value!r} must be a positive interval, e.g. "30d" or "4w"', f"{where}every", line
            )
            every = None
        if anchor is not None and anchor.kind is AnchorKind.COMPLETED:
            self.problem(
                f"a step anchored on {anchor.goal}.completed goes once, when the goal is done, and cannot "
                f'repeat; anchor it on a day such as "{anchor.goal}.deadline+30d", or remove every',
                f"{where}every",
                line,
            )
            every = None
        if len(key) > REPEATING_KEY_LENGTH:
            self.problem(
                f"a repeating step's key may have at most {REPEATING_KEY_LENGTH} characters, so that its "
                f"occurrences' keys ({key[:8]}...-{MAX_OCCURRENCES}) fit; shorten it",
                f"{where}key",
                line,
            )
        until = None
        if "until" in item:
            allowed = _FIXED_KINDS | {AnchorKind.END}
            until = self.anchor(item["until"], f"{where}until", goal_keys, line, allowed=allowed)
            if until is None:
                return None
        return Repeat(every, until) if every is not None else None

    def choices(self, item: dict[str, Any], where: str, line: int | None, to: Audience) -> Choices | None:
        """Return the answers a step offers (``answers``, ``answer_labels``, ``attention``), or None."""
        if "answers" not in item:
            for key in sorted(_CHOICE_FIELDS & set(item)):
                self.problem(
                    f'{key} goes with answers: add answers = ["yes", "no"], or remove {key}',
                    where + key,
                    line,
                )
            return None
        keys = item["answers"]
        fix = f'write answers as 2 to {MAX_CHOICES} keys in quotes, e.g. ["shared", "not_shared"]'
        if not isinstance(keys, list) or not 2 <= len(keys) <= MAX_CHOICES:
            self.problem(f"{fix}, not {keys!r}", f"{where}answers", line)
            return None
        bad = [key for key in keys if not isinstance(key, str) or not CHOICE_KEY_PATTERN.match(key)]
        if bad or len(set(keys)) < len(keys):
            why = (
                f"{bad[0]!r} is not a key of lower-case letters, digits and _" if bad else "a key is repeated"
            )
            self.problem(f"{why}; {fix}", f"{where}answers", line)
            return None
        if to is not Audience.PARTICIPANT:
            self.problem(
                f"answers are the participant's to give; this step goes to the {to}: remove answers",
                f"{where}answers",
                line,
            )
        labels = item.get("answer_labels", {})
        if not isinstance(labels, dict):
            self.problem(
                'write answer_labels as a table, e.g. { shared = "Yes, I shared something" }',
                f"{where}answer_labels",
                line,
            )
            labels = {}
        for key, label in labels.items():
            if key not in keys:
                self.problem(
                    f"answer_labels names {key!r}, which is not one of answers ({', '.join(keys)})",
                    f"{where}answer_labels.{key}",
                    line,
                )
            elif not isinstance(label, str) or not label.strip() or len(label) > 80:
                self.problem(
                    f"the label of {key!r} must be a string of 1 to 80 characters",
                    f"{where}answer_labels.{key}",
                    line,
                )
        attention = item.get("attention")
        if attention is not None and attention not in keys:
            self.problem(
                f"attention must be one of answers ({', '.join(keys)}), not {attention!r}",
                f"{where}attention",
                line,
            )
            attention = None
        said = [
            labels[key].strip() if isinstance(labels.get(key), str) and labels[key].strip() else humane(key)
            for key in keys
        ]
        return Choices(tuple(keys), tuple(label[:80] for label in said), attention)

    def check_occurrence_keys(self, steps: list[Step]) -> None:
        """Refuse a step key that an occurrence of a repeating step would also have."""
        for repeating in (step for step in steps if step.repeat is not None):
            pattern = re.compile(rf"{re.escape(repeating.key)}-[0-9]+")
            for step in steps:
                if pattern.fullmatch(step.key):
                    where, line = self.places[step.key]
                    first, second = occurrence_key(repeating.key, 1), occurrence_key(repeating.key, 2)
                    self.problem(
                        f"step key {step.key!r} has the form of an occurrence of the repeating step "
                        f"{repeating.key!r} ({first}, {second}, ...); rename one of the two",
                        f"{where}key",
                        line,
                    )

    def check_repeats(self, steps: list[Step], goals: dict[str, Goal], ends: Anchor) -> None:
        """Check each repeating step on the default deadlines: it starts, stops, and is not endless."""
        for step in steps:
            if step.repeat is None:
                continue
            where, line = self.places[step.key]
            first, end = _default_day(step.at, goals, ends), _default_day(ends, goals, ends)
            until = end if step.repeat.until is None else _default_day(step.repeat.until, goals, ends)
            if first is None or end is None or until is None:
                continue  # goals that open in a circle, reported already
            defaults = "counted from the start with the program's default deadlines"
            if first > end:
                self.problem(
                    f'the first occurrence, "{step.at}", falls after the program ends at "{ends}" (day '
                    f'{first} against day {end}, {defaults}); start it earlier, or set "ends" later',
                    f"{where}at",
                    line,
                )
            elif until < first:
                self.problem(
                    f'until "{step.repeat.until}" falls before the first occurrence, "{step.at}" (day '
                    f"{until} against day {first}, {defaults}); move until later, or leave it out to "
                    "repeat until the program ends",
                    f"{where}until",
                    line,
                )
            elif (count := (min(until, end) - first) // step.repeat.every_days + 1) > MAX_OCCURRENCES:
                stop = f'"{step.repeat.until}"' if step.repeat.until else "the program's end"
                self.problem(
                    f'every {step.repeat.every_days} days from "{step.at}" to {stop} makes {count} '
                    f"occurrences ({defaults}); at most {MAX_OCCURRENCES} are allowed: repeat less often, "
                    "or stop sooner with until",
                    f"{where}every",
                    line,
                )


_FIXED_KINDS = frozenset({AnchorKind.START, AnchorKind.OPENS, AnchorKind.DEADLINE})
_CHOICE_FIELDS = {"answers", "answer_labels", "attention"}


#: any day: the program's defaults are counted in days from a start, and this stands for it
_SOME_START = dt.date(2001, 1, 1)


def _default_day(anchor: Anchor, goals: dict[str, Goal], ends: Anchor, depth: int = 0) -> int | None:
    """Return the day after the start ``anchor`` falls on with the program's default deadlines.

    None for a completion, which has no day, and for goals that open in a circle.
    """
    if depth > len(goals) + 1:
        return None

    def day(other: Anchor) -> dt.date | None:
        found = _default_day(other, goals, ends, depth + 1)
        return None if found is None else _SOME_START + dt.timedelta(days=found)

    falls = anchor.falls_on(
        _SOME_START,
        end=lambda: day(ends) if ends.kind is not AnchorKind.END else None,
        opens=lambda goal: day(goals[goal].opens) if goal in goals else None,
        deadline=lambda goal: (
            _SOME_START + dt.timedelta(days=goals[goal].deadline_days) if goal in goals else None
        ),
    )
    return None if falls is None else (falls - _SOME_START).days


def _choices(value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    listing = ", ".join(known)
    return f"did you mean {close[0]!r}? (goals: {listing})" if close else f"goals: {listing}"
