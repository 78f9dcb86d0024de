"""Load and validate a cohort folder: ``cohort.toml`` and its roster.

Nothing here writes or sends. Every problem in both files is collected in one
pass and raised together as a :class:`CohortError`, so a comms person fixes
their spreadsheet once, not once per error.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drip.config import LOOPBACK
from drip.core.errors import CohortError, Problem
from drip.core.languages import base_language, display_name, language_tag
from drip.core.mime import Mailbox
from drip.core.plan import Timing, repeat_warnings, timing_warnings
from drip.core.program import Audience, Program, find_program, load_program
from drip.core.render import Templates, fixed_strings
from drip.core.states import CohortStatus
from drip.core.values import (
    InvalidValue,
    check_header_safe,
    parse_clock,
    parse_date,
    parse_date_or_offset,
    parse_email,
    parse_mailbox,
    parse_timezone,
)
from drip.launch.roster import DEFAULT_LIMITS, Limits, Participant, read_roster
from drip.storage.records import (
    DEFAULT_DIGEST,
    NOT_STORED,
    WEBHOOK_EVENTS,
    WEBHOOK_FORMATS,
    WEEKDAYS,
    CohortSettings,
    DigestTime,
    StoredCohort,
    Webhook,
)

COHORT_FILE = "cohort.toml"
DEFAULT_ROSTER = "roster.csv"
DEFAULT_SEND_TIME = dt.time(9, 0)
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KNOWN_FIELDS = {
    "name", "slug", "program", "start", "end", "timezone", "send_time", "skip_weekends",
    "sender", "reply_to", "owners", "goals", "roster", "skip_steps", "digest", "language", "webhooks",
    "link_answers",
}  # fmt: skip
WEBHOOK_FIELDS = ("url", "events", "secret", "format")
#: how a secret is named: the environment variable that holds it
SECRET_REFERENCE = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]{0,127})$")


@dataclass(frozen=True)
class Cohort:
    slug: str
    name: str
    path: Path
    program: Program
    start: dt.date
    end: dt.date | None
    timezone: str
    send_time: dt.time
    skip_weekends: bool
    sender: tuple[str, str]
    reply_to: tuple[str, str] | None
    owners: tuple[str, ...]
    deadlines: Mapping[str, dt.date]
    participants: tuple[Participant, ...]
    roster_file: Path
    #: things worth saying that do not stop the launch
    warnings: tuple[str, ...] = ()
    #: whether cohort.toml names the slug (else it is the folder's name)
    slug_is_explicit: bool = False
    #: when the owners' weekly digest goes; None: no digest
    digest: DigestTime | None = DEFAULT_DIGEST
    #: the language of participants without one in the roster, and of the owners' notes; None: the program's
    language: str | None = None
    #: where events go (``[[webhooks]]``)
    webhooks: tuple[Webhook, ...] = ()
    #: whether the owners' report shows web-address answers as links (else as text)
    link_answers: bool = False

    def timing(self, participant: Participant) -> Timing:
        """Return what places this participant's steps in time."""
        return Timing(
            start=self.start,
            timezone=participant.timezone,
            send_time=self.send_time,
            skip_weekends=self.skip_weekends,
            deadlines=participant.deadlines,
            end=self.end,
        )

    def stored(self) -> StoredCohort:
        """Return the cohort as the database keeps it once started (its id not yet given)."""
        settings = CohortSettings(
            timezone=self.timezone,
            send_time=self.send_time,
            skip_weekends=self.skip_weekends,
            sender=Mailbox(*self.sender),
            reply_to=Mailbox(*self.reply_to) if self.reply_to else None,
            owners=self.owners,
            digest=self.digest,
            deadlines=self.deadlines,
            end=self.end,
            roster=str(self.roster_file),
            language=self.language,
            webhooks=self.webhooks,
            link_answers=self.link_answers,
        )
        return StoredCohort(
            id=NOT_STORED,
            slug=self.slug,
            name=self.name,
            program=self.program.key,
            program_path=str(self.program.path.resolve()),
            folder=str(self.path.resolve()),
            status=CohortStatus.ACTIVE,
            start_date=self.start,
            settings=settings,
        )


def load_cohort(path: Path, emails_dirs: list[Path], limits: Limits = DEFAULT_LIMITS) -> Cohort:
    """Load the cohort in folder ``path``; look for its program in ``emails_dirs``."""
    return _CohortLoader(path, emails_dirs, limits).load()


def default_emails_dirs(cohort_path: Path, configured: Path) -> list[Path]:
    """Where to look for programs: the configured folder, then the cohort's project."""
    project_emails = cohort_path.resolve().parent.parent / "emails"
    dirs = [configured.resolve()]
    if project_emails not in dirs:
        dirs.append(project_emails)
    return dirs


class _CohortLoader:
    def __init__(self, path: Path, emails_dirs: list[Path], limits: Limits) -> None:
        self.path = path
        self.limits = limits
        self.file = path / COHORT_FILE
        self.label = str(self.file)
        self._text: str | None = None
        self.emails_dirs = emails_dirs
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def problem(self, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.label, message, key=key, line=self.line_of(key)))

    def webhooks(self, raw: object) -> tuple[Webhook, ...]:
        """Read the ``[[webhooks]]`` entries, each problem named with its entry's line and the fix."""
        if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
            self.problem("webhooks", "write each webhook as a [[webhooks]] table with url, events and secret")
            return ()
        lines = [
            n
            for n, line in enumerate(self.text().splitlines(), 1)
            if re.match(r"^\s*\[\[\s*webhooks\s*\]\]", line)
        ]
        hooks = []
        for index, entry in enumerate(raw):
            line = lines[index] if index < len(lines) else None
            where = f"webhooks[{index + 1}]"

            def problem(field: str, message: str, line: int | None = line, where: str = where) -> None:
                self.problems.append(Problem(self.label, message, key=f"{where}.{field}", line=line))

            for field in entry:
                if field not in WEBHOOK_FIELDS:
                    problem(field, f"unknown field {field!r}; {_hint(field, WEBHOOK_FIELDS)}")
            url = entry.get("url")
            try:
                url = _webhook_url(url)
            except InvalidValue as exc:
                problem("url", str(exc))
                url = None
            events = entry.get("events")
            if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
                known = ", ".join(WEBHOOK_EVENTS)
                problem(
                    "events", f'list the events to send, e.g. events = ["goal.completed"]; known: {known}'
                )
                events = []
            for event in events:
                if event not in WEBHOOK_EVENTS:
                    problem("events", f"unknown event {event!r}; {_hint(event, WEBHOOK_EVENTS)}")
            secret = entry.get("secret")
            if not isinstance(secret, str) or not SECRET_REFERENCE.match(secret.strip()):
                problem(
                    "secret",
                    'secrets never live in this file: write secret = "env:NAME" and set the '
                    "environment variable NAME where drip run runs (a long random string)",
                )
                secret = None
            elif not os.environ.get(secret.strip()[4:]):
                self.warnings.append(
                    f"{self.label}, line {line}: {secret.strip()[4:]} is not set here; drip run "
                    "needs it to sign this webhook's posts, and keeps them until it is"
                )
            shape = entry.get("format", "json")
            if shape not in WEBHOOK_FORMATS:
                problem("format", f"format must be one of {', '.join(WEBHOOK_FORMATS)}, not {shape!r}")
                shape = "json"
            if url and secret and events and all(e in WEBHOOK_EVENTS for e in events):
                hooks.append(Webhook(url, tuple(dict.fromkeys(events)), secret.strip(), shape))
        return tuple(hooks)

    def text(self) -> str:
        """Return cohort.toml's text, read once (load reads it first), to point problems at lines."""
        if self._text is None:
            try:
                self._text = self.file.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError):
                self._text = ""
        return self._text

    def line_of(self, key: str | None) -> int | None:
        """Return the line of cohort.toml where top-level ``key`` is set, to point at it."""
        if not key:
            return None
        text = self.text()
        pattern = re.compile(rf"^\s*(?:{re.escape(key)}\s*=|\[\[?\s*{re.escape(key)}\b)")
        return next((n for n, line in enumerate(text.splitlines(), 1) if pattern.match(line)), None)

    def value(
        self, data: Mapping[str, Any], key: str, parse: Any, default: Any = None, required: bool = False
    ) -> Any:
        """Parse ``data[key]``, recording a problem instead of raising."""
        if key not in data:
            if required:
                self.problem(key, f"the field {key!r} is missing")
            return default
        try:
            return parse(data[key])
        except InvalidValue as exc:
            self.problem(key, str(exc))
            return default

    def load(self) -> Cohort:
        if not self.path.is_dir():
            raise CohortError([Problem(str(self.path), "no such cohort folder")])
        try:
            self._text = self.file.read_text(encoding="utf-8-sig")
            data = tomllib.loads(self._text)
        except FileNotFoundError:
            raise CohortError(
                [Problem(self.label, f"file not found; a cohort folder needs {COHORT_FILE}")]
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CohortError([Problem(self.label, f"not valid TOML: {exc}")]) from None
        except OSError as exc:
            raise CohortError([Problem(self.label, f"cannot be read ({exc.strerror})")]) from None

        for key in data:
            if key not in KNOWN_FIELDS:
                self.problem(key, f"unknown field {key!r}; {_hint(key, sorted(KNOWN_FIELDS))}")

        name = self.value(data, "name", _text, "", required=True)
        slug = self.value(data, "slug", _slug, None) or self.path.resolve().name
        if "slug" not in data and not SLUG_PATTERN.match(slug):
            self.problem(
                None,
                f'the folder name {slug!r} cannot be the cohort\'s id; set slug = "..." (a-z, 0-9, - and _)',
            )
        program = self.program(data)
        if program is not None and "skip_steps" in data:
            program = self.without_steps(program, data["skip_steps"])
        start = self.value(data, "start", parse_date, None, required=True)
        end = self.value(data, "end", parse_date, None)
        timezone = self.value(data, "timezone", lambda v: parse_timezone(_text(v)), "UTC", required=True)
        send_time = self.value(data, "send_time", parse_clock, DEFAULT_SEND_TIME)
        skip_weekends = self.value(data, "skip_weekends", _boolean, True)
        sender = self.value(data, "sender", lambda v: parse_mailbox(_text(v)), None, required=True)
        reply_to = self.value(data, "reply_to", lambda v: parse_mailbox(_text(v)), None)
        owners = self.value(data, "owners", _owners, ())
        digest = self.value(data, "digest", _digest, DEFAULT_DIGEST)
        language = self.value(data, "language", lambda v: language_tag(_text(v)), None)
        webhooks = self.webhooks(data.get("webhooks", []))
        link_answers = self.value(data, "link_answers", _link_answers, False)
        if "name" in data:
            self.value(data, "name", lambda v: check_header_safe(_text(v)))
        deadlines = self.deadlines(data.get("goals", {}), program, start)
        if end is not None and start is not None and end < start:
            self.problem("end", f"end {end} is before start {start}; move it after the start")

        roster_name = self.value(data, "roster", _text, DEFAULT_ROSTER) or DEFAULT_ROSTER
        roster = read_roster(
            self.path / roster_name,
            goal_keys=program.goal_keys if program else None,
            default_timezone=timezone,
            start=start,
            deadlines=deadlines,
            limits=self.limits,
        )
        self.problems.extend(roster.problems)
        self.warnings.extend(roster.warnings)
        if end is not None and start is not None and end >= start:
            self.deadlines_after_end(end, deadlines, roster.participants, self.path / roster_name)
        if self.problems:
            raise CohortError(self.problems)
        assert program is not None and start is not None and sender is not None
        cohort = Cohort(
            slug=slug,
            name=name,
            path=self.path,
            program=program,
            start=start,
            end=end,
            timezone=timezone,
            send_time=send_time,
            skip_weekends=skip_weekends,
            sender=sender,
            reply_to=reply_to,
            owners=owners,
            deadlines=deadlines,
            participants=roster.participants,
            roster_file=self.path / roster_name,
            slug_is_explicit="slug" in data,
            digest=digest,
            language=language,
            webhooks=webhooks,
            link_answers=link_answers,
        )
        warnings = (
            *self.warnings,
            *_timing_warnings(cohort),
            *_repeat_warnings(cohort),
            *_language_warnings(cohort),
        )
        return replace(cohort, warnings=warnings)

    def deadlines_after_end(
        self,
        end: dt.date,
        deadlines: Mapping[str, dt.date],
        participants: Sequence[Participant],
        roster: Path,
    ) -> None:
        for goal, day in deadlines.items():
            if day > end:
                self.problem("end", f"end {end} is before the {goal} deadline {day}; move the end later")
        for participant in participants:
            for goal in sorted(participant.own_deadlines):
                day = participant.deadlines[goal]
                if day > end:
                    message = f"{day} is after the cohort's end, {end}; pick an earlier date"
                    self.problems.append(
                        Problem(str(roster), message, row=participant.row, column=f"{goal}_deadline")
                    )

    def program(self, data: Mapping[str, Any]) -> Program | None:
        name = self.value(data, "program", _text, None, required=True)
        if not name:
            return None
        try:
            folder = (self.path / name) if "/" in name else find_program(name, self.emails_dirs)
            return load_program(folder)
        except InvalidValue as exc:
            self.problem("program", str(exc))
        except CohortError as exc:
            self.problems.extend(exc.problems)
        return None

    def without_steps(self, program: Program, raw: object) -> Program:
        """Return ``program`` without the steps this cohort leaves out."""
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            self.problem("skip_steps", 'write the steps to leave out as a list: skip_steps = ["policy"]')
            return program
        known = [step.key for step in program.steps]
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    "skip_steps", f"unknown step {key!r}; {hint}steps of {program.key}: {', '.join(known)}"
                )
        return replace(program, steps=tuple(step for step in program.steps if step.key not in raw))

    def deadlines(self, raw: object, program: Program | None, start: dt.date | None) -> dict[str, dt.date]:
        """Return the cohort's deadline for each goal: its own, else the program's default."""
        if not isinstance(raw, dict):
            self.problem("goals", "write per-goal settings as tables: [goals.short] deadline = 2027-03-15")
            raw = {}
        if program is None or start is None:
            return {}
        deadlines: dict[str, dt.date] = {}
        for key, table in raw.items():
            if key not in program.goal_keys:
                close = difflib.get_close_matches(key, list(program.goal_keys), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    f"goals.{key}",
                    f"unknown goal {key!r}; {hint}goals of {program.key}: {', '.join(program.goal_keys)}",
                )
            elif not isinstance(table, dict) or set(table) - {"deadline"}:
                self.problem(
                    f"goals.{key}", f'write [goals.{key}] with one field: deadline = 2027-03-15 or "+3w"'
                )
            elif "deadline" in table:
                try:
                    deadlines[key] = parse_date_or_offset(table["deadline"], start)
                except InvalidValue as exc:
                    self.problem(f"goals.{key}.deadline", str(exc))
        for goal in program.goals:
            deadlines.setdefault(goal.key, start + dt.timedelta(days=goal.deadline_days))
        for message in deadline_order_problems(deadlines, program.goal_keys, start):
            self.problem("goals", message)
        return deadlines


def _timing_warnings(cohort: Cohort) -> list[str]:
    """Say, once per goal, which participants have too little time for that goal's emails."""
    by_goal: dict[str, list[tuple[int, str]]] = {}
    for participant in cohort.participants:
        for warning in timing_warnings(cohort.program, cohort.timing(participant)):
            by_goal.setdefault(warning.split(" ", 1)[0], []).append((participant.row, warning))
    messages = []
    for goal, found in by_goal.items():
        rows = ", ".join(str(row) for row, _ in found[:8]) + (", ..." if len(found) > 8 else "")
        messages.append(
            f"{cohort.roster_file}: {len(found)} participant(s) (rows {rows}) have too little time for "
            f"{goal}: {found[0][1]}; some of those emails will arrive out of order or be skipped. "
            "Space the deadlines further apart"
        )
    return messages


def _language_warnings(cohort: Cohort) -> list[str]:
    """Say, once per language, which steps its readers get in the program's language instead, and
    which of the layout's fixed strings and goal titles are not translated."""
    program = cohort.program
    readers: dict[str, list[int]] = {}
    for participant in cohort.participants:
        readers.setdefault(participant.language or cohort.language or program.language, []).append(
            participant.row
        )
    if cohort.owners and any(step.to is Audience.OWNERS for step in program.steps):
        readers.setdefault(cohort.language or program.language, [])
    templates = Templates(program.path, program.language)
    wanted = fixed_strings(program.path) | program.reader_texts
    steps = list(dict.fromkeys(step.template for step in program.steps))
    # the readers of one language (fr, fr-CA, fr-BE) are told about together: rows, and the emails they miss
    missing: dict[str, tuple[list[int], list[str], set[str]]] = {}
    written: set[str] = set()
    for language, rows in sorted(readers.items()):
        choices = [templates.choose(name, language) for name in steps]
        fallen = [name for name, choice in zip(steps, choices, strict=True) if choice.fallback]
        written |= {choice.language for choice in choices if not choice.fallback}
        if fallen:
            found = missing.setdefault(base_language(language), ([], [], set()))
            found[0].extend(rows)
            found[1].extend(name for name in fallen if name not in found[1])
            found[2].add(language)
    messages = []
    for base, (rows, fallen, tags) in sorted(missing.items()):
        listed = ", ".join(map(str, sorted(rows)[:8])) + (", ..." if len(rows) > 8 else "")
        name = display_name(base)
        who = (
            f"{len(rows)} participant(s) (rows {listed}) reading {name} ({', '.join(sorted(tags))})"
            if rows
            else f"the owners, reading {name},"
        )
        shown = ", ".join(fallen[:6]) + (", ..." if len(fallen) > 6 else "")
        messages.append(
            f"{cohort.roster_file}: {who} get {len(fallen)} of {len(steps)} emails in "
            f"{display_name(program.language)} ({shown}): {program.path} has no {name} version of them. "
            f"Add {fallen[0]}.{base}.html and the others beside the program's templates"
        )
    for tag in sorted(written):
        if base_language(tag) == base_language(program.language):
            continue
        strings = templates.strings(tag)
        untranslated = sorted(text for text in wanted if not strings.has(text))
        if untranslated:
            shown = "; ".join(repr(text) for text in untranslated[:3]) + (
                "; ..." if len(untranslated) > 3 else ""
            )
            messages.append(
                f"{program.path / f'strings.{base_language(tag)}.toml'}: {len(untranslated)} fixed string(s) "
                f"stay in {display_name(program.language)} in {display_name(tag)} emails ({shown}); "
                "add their translations"
            )
    return list(dict.fromkeys(messages))


def _repeat_warnings(cohort: Cohort) -> list[str]:
    """Say, once per repeating step, which participants' timelines reach past its most occurrences."""
    found: dict[str, list[tuple[int, str]]] = {}
    seen: dict[tuple[object, ...], list[str]] = {}
    for participant in cohort.participants:
        timing = cohort.timing(participant)
        if timing.key() not in seen:
            seen[timing.key()] = repeat_warnings(cohort.program, timing)
        for warning in seen[timing.key()]:
            found.setdefault(warning.split(" ", 1)[0], []).append((participant.row, warning))
    messages = []
    for rows_and_warnings in found.values():
        rows = ", ".join(str(row) for row, _ in rows_and_warnings[:8])
        more = ", ..." if len(rows_and_warnings) > 8 else ""
        messages.append(
            f"{cohort.roster_file}: {len(rows_and_warnings)} participant(s) (rows {rows}{more}): "
            f"{rows_and_warnings[0][1]}. Set an earlier end, or an until for the step"
        )
    return messages


def deadline_order_problems(
    deadlines: Mapping[str, dt.date], order: tuple[str, ...], start: dt.date
) -> list[str]:
    """Say which deadlines fall before the start or before an earlier goal's."""
    messages = []
    previous: tuple[str, dt.date] | None = None
    for key in order:
        if key not in deadlines:
            continue
        deadline = deadlines[key]
        if deadline < start:
            messages.append(
                f"the {key} deadline {deadline} is before the start {start}; move it after the start"
            )
        elif previous is not None and deadline < previous[1]:
            messages.append(
                f"the {key} deadline {deadline} is before the {previous[0]} deadline {previous[1]}; "
                f"goals are due in order ({' <= '.join(order)})"
            )
        previous = (key, deadline)
    return messages


def _digest(value: object) -> DigestTime | None:
    """Read ``digest = false`` or ``[digest]`` with ``day`` and ``time``."""
    if value is False:
        return None
    example = 'write [digest] with day = "monday" and time = "08:00", or digest = false for none'
    if not isinstance(value, dict):
        raise InvalidValue(example)
    unknown = set(value) - {"day", "time"}
    if unknown:
        raise InvalidValue(f"unknown digest field(s) {', '.join(sorted(unknown))}; {example}")
    day = str(value.get("day", WEEKDAYS[DEFAULT_DIGEST.weekday])).strip().lower()
    if day not in WEEKDAYS:
        raise InvalidValue(f"digest day {day!r} is not a weekday; write one of {', '.join(WEEKDAYS)}")
    at = parse_clock(value["time"]) if "time" in value else DEFAULT_DIGEST.at
    return DigestTime(WEEKDAYS.index(day), at)


def _hint(given: str, known: Sequence[str]) -> str:
    """Return "did you mean 'x'?" for the nearest of ``known``, else the list of them."""
    close = difflib.get_close_matches(given, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"


def _webhook_url(value: object) -> str:
    """Return a webhook's URL: https, or http to this machine only (participants' names go in it)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue('write the receiver\'s address in quotes: url = "https://..."')
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidValue(f"{url!r} is not an http(s) address; write the receiver's full https:// URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise InvalidValue(
            f"{url!r}: events name participants, so they go over https only (http only to this machine)"
        )
    check_header_safe(url)
    return url


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{value!r} must be text in quotes")
    return value.strip()


def _slug(value: object) -> str:
    text = _text(value)
    if not SLUG_PATTERN.match(text):
        raise InvalidValue(f"{text!r} is not a usable id; use lower-case letters, digits, - and _")
    return text


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"{value!r} must be true or false (without quotes)")
    return value


def _link_answers(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(
            f"{value!r} must be true or false (without quotes): true shows the web addresses "
            "participants gave as links in the owners' report, false (the default) as text"
        )
    return value


def _owners(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidValue('write owners as a list: owners = ["ana@example.com", "li@example.com"]')
    return tuple(parse_email(_text(item)) for item in items)


__all__ = ["Cohort", "Participant", "load_cohort"]


#: a file drip keeps in a started cohort's folder: which database holds it
STARTED_FILE = ".drip-started"


def started_elsewhere(folder: Path, instance: str | None) -> str | None:
    """Return the database a cohort folder was last started in, if it is not the one with ``instance``."""
    try:
        marker = json.loads((folder / STARTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("instance") == instance:
        return None
    return str(marker.get("database", "another database"))


def mark_started(folder: Path, database: str, instance: str) -> None:
    """Note in the folder which database holds the cohort (the URL with any password hidden)."""
    try:
        (folder / STARTED_FILE).write_text(
            json.dumps({"database": database, "instance": instance}) + "\n", encoding="utf-8"
        )
    except OSError:  # a read-only folder: the warning it feeds is a kindness, not a rule
        pass
