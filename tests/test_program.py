import shutil
from pathlib import Path

import pytest

from conftest import EMAILS, PROGRAM
from drip.errors import CohortError
from drip.program import Anchor, AnchorKind, find_program, load_program, parse_anchor
from drip.values import InvalidValue


def test_shipped_program() -> None:
    program = load_program(PROGRAM)
    assert program.goal_keys == ("short", "mid", "long")
    assert len(program.steps) == 18
    per_goal = {goal: [s.key for s in program.steps if s.goal == goal] for goal in program.goal_keys}
    for goal, keys in per_goal.items():
        assert keys == [f"{goal}-{kind}" for kind in ("kickoff", "reminder", "due", "overdue", "done")]
    ungoaled = [s.key for s in program.steps if s.goal is None]
    assert ungoaled == ["welcome", "policy", "closing"]
    assert program.goal("mid").opens == Anchor(AnchorKind.DEADLINE, "short")


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
    edit(program_copy, old, new)
    with pytest.raises(CohortError) as caught:
        load_program(program_copy)
    problems = [p for p in caught.value.problems if p.key == location]
    assert problems, caught.value
    assert message in problems[0].message
    assert problems[0].line is not None
    assert str(problems[0]).startswith(f"{program_copy / 'program.toml'}, line ")


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
