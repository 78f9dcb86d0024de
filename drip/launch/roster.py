"""Read a roster CSV the way spreadsheets actually export it.

Accepts UTF-8 with or without a byte-order mark, UTF-16 (Excel's "Unicode
text"), Windows-1252 as a last resort (with a warning), CRLF line ends,
quoted fields, ``,`` ``;`` or tab separators, blank rows, and stray spaces.
Rows are numbered as the spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import difflib
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from drip.config import DEFAULT_MAX_ROSTER_BYTES, DEFAULT_MAX_VALUE_CHARS
from drip.core.errors import Problem
from drip.core.languages import language_tag
from drip.core.values import (
    InvalidValue,
    clean_cell,
    email_key,
    first_name,
    parse_date_or_offset,
    parse_email,
    parse_name,
    parse_timezone,
    unfit_text,
)

#: columns with a meaning of their own; any other column is kept for templates
KNOWN_COLUMNS = ("email", "name", "timezone", "delegate_email", "language")
REQUIRED_COLUMNS = ("email", "name")
DEADLINE_SUFFIX = "_deadline"
T = TypeVar("T")
_ALIASES = {
    "e_mail": "email",
    "email_address": "email",
    "e_mail_address": "email",
    "full_name": "name",
    "time_zone": "timezone",
    "delegate_e_mail": "delegate_email",
    "language_tag": "language",
}


@dataclass(frozen=True)
class Participant:
    """One roster row, validated."""

    row: int
    email: str
    name: str
    timezone: str
    delegate_email: str | None
    #: each goal's deadline for this person: their own, else the cohort's
    deadlines: Mapping[str, dt.date]
    #: goals whose deadline the roster sets for this person
    own_deadlines: frozenset[str] = frozenset()
    #: every other roster column, by its normalised header
    fields: Mapping[str, str] = field(default_factory=dict)
    #: the language the emails are written in, a BCP 47 tag; None: the cohort's
    language: str | None = None

    @property
    def key(self) -> str:
        """Identify a participant within a cohort: the address, case folded."""
        return email_key(self.email)

    @property
    def first_name(self) -> str:
        return first_name(self.name, self.fields)


@dataclass
class Roster:
    participants: tuple[Participant, ...]
    problems: list[Problem]
    warnings: list[str]


_NEAR_MISSES = {
    "tz": "timezone", "zone": "timezone", "time_zone_name": "timezone", "timezone_name": "timezone",
    "delegate": "delegate_email", "assistant": "delegate_email", "assistant_email": "delegate_email",
    "assistant_e_mail": "delegate_email", "cc": "delegate_email", "delegate_address": "delegate_email",
    "mail": "email", "address": "email", "email_adress": "email",
    "lang": "language", "locale": "language", "languages": "language", "sprache": "language",
}  # fmt: skip
_MEANING = {
    "timezone": "time zones", "delegate_email": "assistants' addresses", "email": "addresses",
    "language": "language tags",
}  # fmt: skip


def _near_miss(name: str, goal_keys: tuple[str, ...]) -> tuple[str, str] | None:
    """Return (the column meant, what it holds) for a header that almost names a known column."""
    if name in KNOWN_COLUMNS or not name:
        return None
    if name.endswith(DEADLINE_SUFFIX) and name[: -len(DEADLINE_SUFFIX)] in goal_keys:
        return None
    if "deadline" in name:
        for goal in goal_keys:
            if goal in name.replace("deadline", ""):
                return f"{goal}{DEADLINE_SUFFIX}", f"{goal} deadlines"
        return f"GOAL{DEADLINE_SUFFIX}", "deadlines"
    target = _NEAR_MISSES.get(name)
    if target is None:
        close = difflib.get_close_matches(name, KNOWN_COLUMNS, n=1, cutoff=0.8)
        target = close[0] if close else None
    return (target, _MEANING.get(target, target)) if target else None


def unclosed_quote(text: str, delimiter: str) -> int | None:
    """Return the row where a quoted value opens and never closes, as Python's csv reads it.

    Follows the csv module's lenient rules: a quote opens a value only at its
    start; inside, ``""`` is a quote; a quote followed by anything else closes
    it. Only the separators, quotes and line ends are visited.
    """
    if '"' not in text:
        return None
    start, plain, quoted, after_quote = range(4)
    state, row, opened, position, last_cr = start, 1, 0, 0, -2
    for match in re.finditer(f'["\r\n{re.escape(delimiter)}]', text):
        index, char = match.start(), match.group()
        if index > position and state in (start, after_quote):
            state = plain  # ordinary characters since the last special one
        position = index + 1
        if state == quoted:
            if char == '"':
                state = after_quote
        elif char == '"':
            if state == start:
                state, opened = quoted, row
            elif state == after_quote:
                state = quoted  # "" inside a quoted value
        elif char == delimiter:
            state = start
        else:
            if not (char == "\n" and last_cr == index - 1):
                row += 1
            last_cr = index if char == "\r" else -2
            state = start
    return opened if state == quoted else None


def normalise_header(text: str) -> str:
    """Return ``"Short Deadline"`` as ``"short_deadline"``; known aliases become their column."""
    name = re.sub(r"[\s\-./]+", "_", clean_cell(text).casefold()).strip("_")
    return _ALIASES.get(name, name)


def decode(raw: bytes) -> tuple[str, str | None]:
    """Return the text of a CSV file and a warning when its encoding had to be guessed."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16"), None
    # UTF-16 without a byte-order mark: in ASCII text every other byte is NUL.
    sample = raw[:64]
    for encoding, nuls in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
        if len(nuls) >= 4 and nuls.count(0) >= 0.8 * len(nuls):
            return raw.decode(encoding, errors="replace"), None
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        if _UTF8_SEQUENCE.search(raw):
            # Real UTF-8 text with a stray byte: reading it all as Windows-1252 would garble every
            # accented name, so point at the lines instead.
            text = raw.decode("utf-8-sig", errors="replace")
            lines = sorted({text.count("\n", 0, i) + 1 for i, char in enumerate(text) if char == "\ufffd"})
            shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
            raise InvalidValue(
                f"is UTF-8 except for line(s) {shown}, which hold bytes that are not (pasted from "
                'another program?); retype those characters, or save the sheet as "CSV UTF-8"'
            ) from None
        warning = (
            f"not UTF-8 (byte {exc.start + 1}); read as Windows-1252. If names look wrong, "
            'save the sheet as "CSV UTF-8"'
        )
        return raw.decode("cp1252", errors="replace"), warning


# A multi-byte UTF-8 character; text in Windows-1252 almost never contains one.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def sniff_delimiter(text: str) -> str:
    """Pick the separator that splits the header line into the most columns."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {sep: unquoted.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


@dataclass(frozen=True)
class Limits:
    """The most a roster may hold: its file's size, and one value's length."""

    max_bytes: int = DEFAULT_MAX_ROSTER_BYTES
    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS


DEFAULT_LIMITS = Limits()


def read_roster(
    path: Path,
    *,
    goal_keys: tuple[str, ...] | None,
    default_timezone: str,
    start: dt.date | None,
    deadlines: Mapping[str, dt.date],
    limits: Limits = DEFAULT_LIMITS,
) -> Roster:
    """Read and validate every row of the roster at ``path``."""
    return _RosterReader(path, goal_keys, default_timezone, start, deadlines, limits).read()


def _read_at_most(path: Path, limit: int) -> bytes:
    """Read a file, refusing it past ``limit`` bytes (reading no more than that: /dev/zero ends too)."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidValue(
            f"is larger than {limit:,} bytes, the most drip reads (DRIP_MAX_ROSTER_BYTES); is it really a "
            "roster? Split the cohort, or raise the setting"
        )
    return data


class _RosterReader:
    def __init__(
        self,
        path: Path,
        goal_keys: tuple[str, ...] | None,
        default_timezone: str,
        start: dt.date | None,
        deadlines: Mapping[str, dt.date],
        limits: Limits,
    ) -> None:
        self.path = path
        self.limits = limits
        self.label = str(path)
        self.goal_keys = goal_keys
        self.default_timezone = default_timezone
        self.start = start
        self.deadlines = deadlines
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.header_width = 0

    def problem(self, row: int | None, column: str | None, message: str) -> None:
        self.problems.append(Problem(self.label, message, row=row, column=column))

    def read(self) -> Roster:
        try:
            text, warning = decode(_read_at_most(self.path, self.limits.max_bytes))
        except FileNotFoundError:
            self.problem(None, None, "file not found; put the participants in a CSV with columns email,name")
            return Roster((), self.problems, self.warnings)
        except OSError as exc:
            self.problem(None, None, f"cannot be read ({exc.strerror}); it should be a CSV file")
            return Roster((), self.problems, self.warnings)
        except InvalidValue as exc:
            self.problem(None, None, str(exc))
            return Roster((), self.problems, self.warnings)
        if warning:
            self.warnings.append(f"{self.label}: {warning}")
        records = self.records(text)
        if records is None:
            return Roster((), self.problems, self.warnings)
        rows = [
            (number, cells) for number, cells in enumerate(records, start=1) if any(c.strip() for c in cells)
        ]
        if not rows:
            self.problem(
                None, None, "the roster is empty; add a header row (email,name) and one row per participant"
            )
            return Roster((), self.problems, self.warnings)
        header_row, header_cells = rows[0]
        columns = self.columns(header_row, header_cells)
        if columns is None:
            return Roster((), self.problems, self.warnings)
        participants: list[Participant] = []
        seen: dict[str, int] = {}
        for number, cells in rows[1:]:
            participant = self.participant(number, cells, columns)
            if participant is None:
                continue
            if participant.key in seen:
                self.problem(
                    number,
                    "email",
                    f"{participant.email} is already on row {seen[participant.key]} (addresses are "
                    "compared ignoring case); keep one of the two rows",
                )
                continue
            seen[participant.key] = number
            participants.append(participant)
        if not participants and not self.problems:
            self.problem(
                None, None, "the roster has a header but no participants; add one row per participant"
            )
        return Roster(tuple(participants), self.problems, self.warnings)

    def records(self, text: str) -> list[list[str]] | None:
        """Split the text into rows of cells, or record why it cannot be.

        Parsing is lenient (``"Ana" Ruiz`` reads as ``Ana Ruiz``), except for a
        quote never closed, which would swallow every row after it into one
        cell: that is reported at the row where it opens.
        """
        delimiter = sniff_delimiter(text)
        opened = unclosed_quote(text, delimiter)
        if opened is not None:
            self.problem(
                opened,
                None,
                'a double quote (") opens a value in this row and is never closed, so every row after '
                "it would be read as part of this one; remove the stray quote or close it",
            )
            return None
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))

    def columns(self, row: int, cells: list[str]) -> list[str] | None:
        """Return the normalised header, or None when rows cannot be read against it."""
        names = [normalise_header(cell) for cell in cells]
        self.header_width = len(names)
        while names and not names[-1]:
            names.pop()
        for index, name in enumerate(names):
            if not name:
                self.problem(row, f"#{index + 1}", "this column has no header; name it or delete it")
            elif names.index(name) != index:
                self.problem(
                    row, cells[index].strip(), f"two columns are both called {name!r}; rename or delete one"
                )
            elif name.endswith(DEADLINE_SUFFIX) and self.goal_keys is not None:
                goal = name[: -len(DEADLINE_SUFFIX)]
                if goal not in self.goal_keys:
                    known = ", ".join(f"{key}{DEADLINE_SUFFIX}" for key in self.goal_keys)
                    self.problem(
                        row, cells[index].strip(), f"unknown goal {goal!r}; deadline columns are {known}"
                    )
        for index, name in enumerate(names):
            hint = _near_miss(name, self.goal_keys or ())
            if hint:
                self.warnings.append(
                    f"{self.label}: column {cells[index].strip()!r} is kept as a template field; "
                    f"if it holds {hint[1]}, name it {hint[0]!r}"
                )
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        if missing:
            found = ", ".join(cell.strip() for cell in cells if cell.strip()) or "nothing"
            for name in missing:
                self.problem(
                    row,
                    name,
                    f"no {name!r} column (the header row has: {found}); "
                    f"add it or rename a column to {name!r}",
                )
        if "email" in missing or any(p.row == row for p in self.problems):
            return None
        return names

    def participant(self, row: int, cells: list[str], columns: list[str]) -> Participant | None:
        count = len(self.problems)
        unnamed = [i for i in range(len(columns), min(len(cells), self.header_width)) if cells[i].strip()]
        if unnamed:
            self.problem(
                row, f"#{unnamed[0] + 1}", "this column has no header; name it in row 1 or delete it"
            )
            return None
        extra = [cell for cell in cells[len(columns) :] if cell.strip()]
        if extra:
            self.problem(
                row,
                None,
                f"{len(columns) + len(extra)} values for {len(columns)} columns; a value holding the "
                "separator must be in double quotes",
            )
            return None
        values = {name: clean_cell(cells[i]) if i < len(cells) else "" for i, name in enumerate(columns)}

        email = self.field(
            row, "email", values.get("email", ""), parse_email, required="every participant needs an address"
        )
        name = self.field(
            row,
            "name",
            values.get("name", ""),
            parse_name,
            required="write the name the emails should greet",
        )
        timezone = (
            self.field(row, "timezone", values.get("timezone", ""), parse_timezone) or self.default_timezone
        )
        delegate = self.field(row, "delegate_email", values.get("delegate_email", ""), parse_email)
        language = self.field(row, "language", values.get("language", ""), language_tag)
        if delegate and email and delegate.casefold() == email.casefold():
            self.problem(
                row,
                "delegate_email",
                f"{delegate} is the participant's own address; leave it empty or name the assistant",
            )
        deadlines = dict(self.deadlines)
        own: set[str] = set()
        for column, value in values.items():
            if column.endswith(DEADLINE_SUFFIX) and value and self.start is not None:
                goal = column[: -len(DEADLINE_SUFFIX)]
                if self.goal_keys is None or goal in self.goal_keys:
                    parsed = self.field(row, column, value, partial(parse_date_or_offset, start=self.start))
                    if parsed is not None:
                        deadlines[goal] = parsed
                        own.add(goal)
        if own and self.goal_keys and self.start is not None:
            self.order_problems(row, deadlines, own)
        fields = {}
        for column, value in values.items():
            if column not in KNOWN_COLUMNS and not column.endswith(DEADLINE_SUFFIX):
                if "\x00" in value:
                    self.problem(row, column, "contains a NUL character; remove it")
                fields[column] = value
        said = {(problem.row, problem.column) for problem in self.problems[count:]}
        for column, value in values.items():
            # Template fields may hold a spreadsheet's line breaks and tabs; nothing may hold other
            # controls or bidirectional overrides, and nothing may be endless.
            lines = column not in KNOWN_COLUMNS and not column.endswith(DEADLINE_SUFFIX)
            unfit = unfit_text(value, self.limits.max_value_chars, allow="\n\t" if lines else "")
            if unfit and (row, column) not in said:
                self.problem(row, column, unfit)
        if len(self.problems) > count:
            return None
        assert email is not None and name is not None
        return Participant(
            row, email, name, timezone, delegate or None, deadlines, frozenset(own), fields, language or None
        )

    def field(
        self, row: int, column: str, value: str, parse: Callable[[str], T], required: str | None = None
    ) -> T | None:
        """Parse one cell, recording a problem instead of raising."""
        if not value:
            if required:
                self.problem(row, column, f"{column} is empty; {required}")
            return None
        try:
            return parse(value)
        except InvalidValue as exc:
            self.problem(row, column, str(exc))
            return None

    def order_problems(self, row: int, deadlines: dict[str, dt.date], own: set[str]) -> None:
        assert self.goal_keys is not None and self.start is not None
        previous: tuple[str, dt.date] | None = None
        for goal in self.goal_keys:
            deadline = deadlines[goal]
            column = f"{goal}{DEADLINE_SUFFIX}"
            if deadline < self.start and goal in own:
                self.problem(
                    row, column, f"{deadline} is before the cohort starts ({self.start}); pick a later date"
                )
            elif previous is not None and deadline < previous[1] and (goal in own or previous[0] in own):
                blame = column if goal in own else f"{previous[0]}{DEADLINE_SUFFIX}"
                self.problem(
                    row,
                    blame,
                    f"the {goal} deadline {deadline} is before the {previous[0]} deadline {previous[1]}; "
                    f"goals are due in order ({' <= '.join(self.goal_keys)})",
                )
            previous = (goal, deadline)
