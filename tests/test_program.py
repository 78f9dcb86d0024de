import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import EMAILS, PROGRAM
from drip.core.errors import CohortError
from drip.core.program import (
    Anchor,
    AnchorKind,
    AnswerKind,
    Ask,
    Audience,
    Repeat,
    find_program,
    load_program,
    parse_anchor,
)
from drip.core.values import InvalidValue


def test_shipped_program() -> None:
    program = load_program(PROGRAM)
    assert program.goal_keys == ("short", "mid", "long")
    assert len(program.steps) == 22
    per_goal = {goal: [s.key for s in program.steps if s.goal == goal] for goal in program.goal_keys}
    for goal, keys in per_goal.items():
        assert keys == [
            f"{goal}-{kind}" for kind in ("kickoff", "reminder", "due", "overdue", "escalation", "done")
        ]
    assert {s.key for s in program.steps if s.to is Audience.OWNERS} == {
        "short-escalation",
        "mid-escalation",
        "long-escalation",
    }
    # The closing email and the check-ins are anchored on the long deadline but go whatever became of it.
    ungoaled = [s.key for s in program.steps if s.goal is None]
    assert ungoaled == ["welcome", "policy", "closing", "sustain"]
    assert program.goal("mid").opens == Anchor(AnchorKind.DEADLINE, "short")
    assert program.goal("short").ask == Ask("Your LinkedIn profile's address", AnswerKind.URL, 280)
    assert program.goal("mid").ask == Ask("Which five voices did you pick?", AnswerKind.TEXT, 280)
    assert program.goal("long").ask is not None and "Which five voices did you pick?" in program.reader_texts
    assert program.ends == Anchor(AnchorKind.DEADLINE, "long", 26 * 7)
    sustain = program.step("sustain")
    assert sustain is not None and sustain.template == "sustain"
    assert (sustain.at, sustain.repeat) == (
        Anchor(AnchorKind.DEADLINE, "long", 30),
        Repeat(30, Anchor(AnchorKind.END)),
    )


def test_an_occurrence_is_the_repeating_step_moved_by_whole_intervals() -> None:
    sustain = load_program(PROGRAM).step("sustain")
    assert sustain is not None
    third = sustain.nth(3, 6)
    assert (third.key, third.at, third.template, third.goal) == (
        "sustain-3", Anchor(AnchorKind.DEADLINE, "long", 90), "sustain", None,
    )  # fmt: skip
    assert (third.occurrence, third.occurrences, third.repeat, third.order) == (3, 6, None, sustain.order)


@pytest.mark.parametrize(
    ("key", "found"),
    [
        ("sustain-1", 1),
        ("sustain-60", 60),
        ("sustain-61", None),  # more than any participant can have
        ("sustain-0", None),
        ("sustain-01", None),  # one spelling per occurrence
        ("sustain", None),  # the step itself, not an occurrence
        ("closing-1", None),  # closing does not repeat
        ("short-due", None),
    ],
)
def test_occurrence_keys(key: str, found: int | None) -> None:
    result = load_program(PROGRAM).occurrence_of(key)
    if found is None:
        assert result is None
    else:
        assert result is not None and (result[0].key, result[1]) == ("sustain", found)


def test_a_changed_interval_or_until_changes_the_timing_signature(program_copy: Path) -> None:
    before = load_program(program_copy).timing_signature
    edit(program_copy, '\nevery = "30d"', '\nevery = "4w"')
    every = load_program(program_copy).timing_signature
    edit(program_copy, 'until = "end"', 'until = "end-1w"')
    until = load_program(program_copy).timing_signature
    assert len({before, every, until}) == 3


def test_a_program_without_repeating_steps_keeps_the_signature_stored_before_they_existed(
    program_copy: Path,
) -> None:
    """Participants stored before repeating steps existed are not all re-planned by an upgrade."""
    edit(
        program_copy,
        '[[steps]]\nkey = "sustain"\nat = "long.deadline+30d"\nevery = "30d"\nuntil = "end"\n',
        "",
    )
    program = load_program(program_copy)
    assert all(step.repeat is None for step in program.steps)
    timing = [  # the digest as it was computed before
        [[g.key, g.deadline_days, str(g.opens)] for g in program.goals],
        [[s.key, s.goal, str(s.at), s.late, s.order] for s in program.steps],
        str(program.ends),
    ]
    assert program.timing_signature == hashlib.sha256(json.dumps(timing).encode()).hexdigest()[:16]


def test_goal_false_detaches_a_step_from_its_anchors_goal(program_copy: Path) -> None:
    edit(
        program_copy,
        'key = "short-overdue"\nat = "short.deadline+3d"',
        'key = "short-overdue"\nat = "short.deadline+3d"\ngoal = false',
    )
    overdue = load_program(program_copy).step("short-overdue")
    assert overdue is not None and overdue.goal is None and overdue.at.goal == "short"


@pytest.mark.parametrize(
    ("text", "anchor"),
    [
        ("start", Anchor(AnchorKind.START)),
        ("end-1w", Anchor(AnchorKind.END, None, -7)),
        ("short.deadline-3d", Anchor(AnchorKind.DEADLINE, "short", -3)),
        ("mid.opens + 1d", Anchor(AnchorKind.OPENS, "mid", 1)),
        ("long.completed", Anchor(AnchorKind.COMPLETED, "long")),
    ],
)
def test_anchor_expressions(text: str, anchor: Anchor) -> None:
    assert parse_anchor(text) == anchor
    assert parse_anchor(str(anchor)) == anchor


@pytest.mark.parametrize("text", ["begin", "short.due", "short.deadline-3", "short", "deadline-3d"])
def test_bad_anchor(text: str) -> None:
    with pytest.raises(InvalidValue, match="not an anchor"):
        parse_anchor(text)


def test_unknown_program_suggests_the_near_one(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue) as caught:
        find_program("crawl-walk-runn", [EMAILS])
    assert "did you mean 'crawl-walk-run'" in str(caught.value)


@pytest.fixture
def program_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "emails" / "copy"
    shutil.copytree(PROGRAM, folder)
    return folder


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / "program.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "message", "location"),
    [
        (
            'at = "short.deadline-3d"',
            'at = "shrt.deadline-3d"',
            "unknown goal 'shrt'; did you mean 'short'",
            "steps[3].at",
        ),
        ('at = "short.deadline-3d"', 'at = "short.due-3d"', "not an anchor", "steps[3].at"),
        ('key = "policy"', 'key = "welcome"', "step key 'welcome' is used twice", "steps[2].key"),
        (
            'key = "policy"',
            'key = "policy"\ntemplate = "nowhere"',
            "template nowhere.html not found",
            "steps[2].template",
        ),
        (
            'key = "short-due"',
            'key = "short-due"\nlate = "maybe"',
            'late must be "skip" or "send"',
            "steps[4].late",
        ),
        (
            'key = "policy"',
            'key = "policy"\ntemplat = "x"',
            "unknown field 'templat'; did you mean 'template'",
            "steps[2].templat",
        ),
        ('deadline = "+3w"', 'deadline = "-3w"', "must be after the start", "goals[0].deadline"),
        ('answer = "url"', 'answer = "link"', 'answer must be "text" or "url"', "goals[0].answer"),
        (
            'answer = "url"',
            'answer = "url"\nanswer_limit = 0',
            "answer_limit must be a whole number",
            "goals[0].answer_limit",
        ),
        ('answer = "url"', 'answer = "url"\nanswer_limit = "long"', "1 to 2000", "goals[0].answer_limit"),
        (
            'ask = "Your LinkedIn profile\'s address"\n',
            "",
            'answer goes with a question: add ask = "..."',
            "goals[0].answer",
        ),
        (
            'ask = "Which five voices did you pick?"',
            "ask = 5",
            "must be a non-empty string in quotes",
            "goals[1].ask",
        ),
        (
            'ask = "Which five voices did you pick?"',
            'asks = "Which?"',
            "unknown field 'asks'; did you mean 'ask'",
            "goals[1].asks",
        ),
        ('deadline = "+3w"', "deadline = 2027-01-01", "offset from the start", "goals[0].deadline"),
        (
            'opens = "short.deadline"',
            'opens = "short.completed"',
            "completed cannot be used here",
            "goals[1].opens",
        ),
        (
            'title = "Crawl: your LinkedIn profile and 10 connections"',
            'title = "Crawl =?utf-8?q?x?="',
            "email header",
            "goals[0].title",
        ),
    ],
)
def test_program_errors_name_line_field_and_fix(
    program_copy: Path, old: str, new: str, message: str, location: str
) -> None:
    assert_refused(program_copy, old, new, message, location)


def assert_refused(program_copy: Path, old: str, new: str, message: str, location: str) -> None:
    """Edit program.toml; loading it must fail on ``location`` with ``message``, naming file and line."""
    edit(program_copy, old, new)
    with pytest.raises(CohortError) as caught:
        load_program(program_copy)
    problems = [p for p in caught.value.problems if p.key == location]
    assert problems, caught.value
    assert message in problems[0].message
    assert problems[0].line is not None
    assert str(problems[0]).startswith(f"{program_copy / 'program.toml'}, line ")


# The shipped program's repeating step is its 22nd: steps[21].
@pytest.mark.parametrize(
    ("old", "new", "message", "location"),
    [
        ('\nevery = "30d"', '\nevery = "monthly"', "'monthly' is not an offset", "steps[21].every"),
        ('\nevery = "30d"', "\nevery = 30", 'in quotes, e.g. "30d", not 30', "steps[21].every"),
        (
            '\nevery = "30d"',
            '\nevery = "0d"',
            'must be a positive interval, e.g. "30d" or "4w"',
            "steps[21].every",
        ),
        ('\nevery = "30d"', '\nevery = "-2w"', "must be a positive interval", "steps[21].every"),
        (
            '\nevery = "30d"',
            '\nevery = "1d"',
            "makes 153 occurrences (counted from the start with the program's default deadlines); "
            "at most 60 are allowed: repeat less often, or stop sooner with until",
            "steps[21].every",
        ),
        (
            'at = "long.deadline+30d"',
            'at = "long.completed"',
            "goes once, when the goal is done, and cannot repeat; anchor it on a day such as "
            '"long.deadline+30d", or remove every',
            "steps[21].every",
        ),
        (
            'until = "end"',
            'until = "long.deadline+2w"',
            'until "long.deadline+14d" falls before the first occurrence, "long.deadline+30d" (day 98 '
            "against day 114, counted from the start with the program's default deadlines); move until "
            "later, or leave it out to repeat until the program ends",
            "steps[21].until",
        ),
        ('until = "end"', 'until = "long.completed"', "completed cannot be used here", "steps[21].until"),
        (
            'until = "end"',
            'until = "lng.deadline"',
            "unknown goal 'lng'; did you mean 'long'",
            "steps[21].until",
        ),
        (
            'at = "long.deadline+30d"',
            'at = "end+1d"',
            'the first occurrence, "end+1d", falls after the program ends at "long.deadline+182d" (day 267 '
            "against day 266, counted from the start with the program's default deadlines); start it "
            'earlier, or set "ends" later',
            "steps[21].at",
        ),
        (
            'until = "end"',
            'until = "end"\nlate = "send"',
            "a repeating step cannot be sent late",
            "steps[21].late",
        ),
        (
            'at = "long.deadline+2w"',
            'at = "long.deadline+2w"\nuntil = "end"',
            'until only applies to a repeating step; add every = "30d", or remove until',
            "steps[18].until",
        ),
        (
            'key = "closing"',
            'key = "sustain-2"\ntemplate = "closing"',
            "step key 'sustain-2' has the form of an occurrence of the repeating step 'sustain' "
            "(sustain-1, sustain-2, ...); rename one of the two",
            "steps[20].key",
        ),
        (
            'key = "sustain"',
            f'key = "{"s" * 62}"\ntemplate = "sustain"',
            "a repeating step's key may have at most 61 characters",
            "steps[21].key",
        ),
        (
            "\ngoal = false",
            '\ngoal = "nope"',
            "unknown goal 'nope'; goals: short, mid, long, or false for none",
            "steps[20].goal",
        ),
    ],
)
def test_repeating_step_errors_name_the_file_line_step_and_fix(
    program_copy: Path, old: str, new: str, message: str, location: str
) -> None:
    assert_refused(program_copy, old, new, message, location)


def test_the_shipped_check_in_offers_two_answers_with_labels() -> None:
    step = load_program(PROGRAM).step("sustain")
    assert step is not None and step.choices is not None
    assert step.choices.keys == ("shared", "not_shared") and step.choices.attention == "not_shared"
    assert step.choices.labels == ("Yes, I shared something", "Not this month")
    assert step.choices.yes_no == ("shared", "not_shared")
    assert {"Yes, I shared something", "Not this month"} <= load_program(PROGRAM).reader_texts


def test_an_answer_without_a_label_reads_as_its_words(program_copy: Path) -> None:
    edit(
        program_copy,
        'answer_labels = { shared = "Yes, I shared something", not_shared = "Not this month" }\n',
        "",
    )
    step = load_program(program_copy).step("sustain")
    assert step is not None and step.choices is not None
    assert step.choices.labels == ("Shared", "Not shared")


ANSWERS = 'answers = ["shared", "not_shared"]'


@pytest.mark.parametrize(
    ("old", "new", "message", "location"),
    [
        (ANSWERS, 'answers = ["shared"]', "2 to 6 keys in quotes", "steps[21].answers"),
        (ANSWERS, 'answers = "shared"', "2 to 6 keys in quotes", "steps[21].answers"),
        (ANSWERS, 'answers = ["a", "b", "c", "d", "e", "f", "g"]', "2 to 6 keys", "steps[21].answers"),
        (ANSWERS, 'answers = ["Shared!", "not_shared"]', "'Shared!' is not a key", "steps[21].answers"),
        (ANSWERS, 'answers = ["shared", "shared"]', "a key is repeated", "steps[21].answers"),
        (
            'attention = "not_shared"',
            'attention = "nope"',
            "attention must be one of answers (shared, not_shared), not 'nope'",
            "steps[21].attention",
        ),
        (
            'not_shared = "Not this month" }',
            'not_shared = "Not this month", later = "Later" }',
            "answer_labels names 'later', which is not one of answers",
            "steps[21].answer_labels.later",
        ),
        (
            'not_shared = "Not this month" }',
            'not_shared = "" }',
            "the label of 'not_shared' must be a string of 1 to 80 characters",
            "steps[21].answer_labels.not_shared",
        ),
        (ANSWERS + "\n", "", "attention goes with answers", "steps[21].attention"),
        (
            'key = "mid-escalation"',
            'key = "mid-escalation"\nanswers = ["yes", "no"]',
            "answers are the participant's to give; this step goes to the owners",
            "steps[12].answers",
        ),
    ],
)
def test_check_in_answer_errors_name_the_file_line_step_and_fix(
    program_copy: Path, old: str, new: str, message: str, location: str
) -> None:
    assert_refused(program_copy, old, new, message, location)


def test_goals_opening_in_a_circle(program_copy: Path) -> None:
    edit(program_copy, 'deadline = "+3w"', 'deadline = "+3w"\nopens = "long.deadline"')
    with pytest.raises(CohortError, match="in a circle"):
        load_program(program_copy)


def test_every_problem_in_one_pass(program_copy: Path) -> None:
    edit(program_copy, 'at = "short.deadline-3d"', 'at = "shrt.deadline-3d"')
    edit(program_copy, 'key = "short-due"', 'key = "short-due"\nlate = "maybe"')
    (program_copy / "closing.html").unlink()
    with pytest.raises(CohortError) as caught:
        load_program(program_copy)
    assert len(caught.value.problems) == 3
    assert "3 problems found; nothing was written" in str(caught.value)


def test_invalid_toml(program_copy: Path) -> None:
    (program_copy / "program.toml").write_text("name = \n")
    with pytest.raises(CohortError, match="not valid TOML"):
        load_program(program_copy)
