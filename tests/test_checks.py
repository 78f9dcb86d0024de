"""drip start and drip plan render every email before anything is written."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import COHORT_TOML, EMAILS, CohortFactory
from drip.cli import main

NOW = ["--now", "2027-01-04T12:00Z"]


@pytest.fixture
def program(tmp_path: Path) -> Path:
    folder = tmp_path / "programs" / "cwr"
    shutil.copytree(EMAILS / "crawl-walk-run", folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("command", ["start", "plan"])
def test_a_template_mistake_stops_the_launch_and_names_file_line_step_participant(
    runner: CliRunner, make_cohort: CohortFactory, program: Path, tmp_path: Path, command: str
) -> None:
    edit(program / "short-due.html", "Hi {{ participant.first_name }},", "Hi {{ participant.frist_name }},")
    folder = make_cohort(toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    db = tmp_path / "drip.db"
    result = runner.invoke(main, ["--database-url", f"sqlite:///{db}", command, str(folder), *NOW])
    assert result.exit_code == 1
    assert "step 'short-due' fails for ana@example.com" in result.output
    assert f"{program / 'short-due.html'}, line 7" in result.output and "frist_name" in result.output
    assert "row 2" in result.output
    assert not db.exists()


def test_a_mistake_only_some_participants_reach_is_found(
    runner: CliRunner, make_cohort: CohortFactory, program: Path
) -> None:
    # Only participants with a title reach the bad line: the check covers every shape of roster row.
    edit(
        program / "welcome.html",
        "<p>Hi {{ participant.first_name }},</p>",
        "<p>Hi {{ participant.first_name }},{% if participant.title %} {{ participant.titel }}{% endif %}</p>",
    )
    roster = "email,name,title\nana@example.com,Ana,\nben@example.com,Ben,\ncy@example.com,Cy,CEO\n"
    folder = make_cohort(roster, toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    result = runner.invoke(main, ["plan", str(folder), *NOW])
    assert result.exit_code == 1 and "fails for cy@example.com" in result.output and "titel" in result.output


def test_a_mistake_only_the_last_check_in_reaches_is_found(
    runner: CliRunner, make_cohort: CohortFactory, program: Path, tmp_path: Path
) -> None:
    edit(
        program / "sustain.html",
        "<p>This is the last check-in.",
        "<p>{{ participant.frist_name }}, this is the last check-in.",
    )
    folder = make_cohort(toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    result = runner.invoke(main, ["start", str(folder), "--dry-run", *NOW])
    assert result.exit_code == 1
    assert "step 'sustain-6' fails for ana@example.com" in result.output and "frist_name" in result.output
    assert "sustain-1" not in result.output  # the earlier check-ins render


def test_a_check_in_template_is_checked_even_when_no_one_gets_a_check_in(
    runner: CliRunner, make_cohort: CohortFactory, program: Path
) -> None:
    edit(
        program / "sustain.html",
        "<p>Hi {{ participant.first_name }},</p>",
        "<p>Hi {{ participant.frist_name }},</p>",
    )
    # The cohort ends before the first check-in is due: the template is checked all the same.
    folder = make_cohort(
        toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'), extra_toml="end = 2027-04-20\n"
    )
    result = runner.invoke(main, ["plan", str(folder), *NOW])
    assert result.exit_code == 1 and "step 'sustain-1' fails for ana@example.com" in result.output


def test_a_roster_value_that_would_break_a_subject_is_named(
    runner: CliRunner, make_cohort: CohortFactory, program: Path
) -> None:
    edit(program / "welcome.html", "{% block subject %}", "{% block subject %}{{ participant.title }}: ")
    roster = 'email,name,title\nana@example.com,Ana,"CEO\nBcc: everyone@example.com"\nben@example.com,Ben,=?utf-8?q?x?=\n'
    folder = make_cohort(roster, toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    result = runner.invoke(main, ["start", str(folder), "--dry-run", *NOW])
    assert result.exit_code == 1
    assert "row 2, column 'title'" in result.output and "line break" in result.output
    assert "row 3, column 'title'" in result.output and '"=?"' in result.output
    assert "step 'welcome' puts this column in its subject" in result.output


def test_the_shipped_program_passes(runner: CliRunner, make_cohort: CohortFactory) -> None:
    result = runner.invoke(main, ["plan", str(make_cohort()), *NOW])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("template", "old", "new"),
    [
        # only when few days are left, i.e. only at the reminder's own moment
        (
            "short-reminder.html",
            "<p>Hi {{ participant.first_name }},</p>",
            "<p>Hi {{ participant.first_name }},{% if goal.days_left <= 3 %}{{ goal.deadlin }}{% endif %}</p>",
        ),
        # only once every goal is done
        (
            "long-done.html",
            "<p>Hi {{ participant.first_name }},</p>",
            "<p>Hi {{ participant.first_name }},{% if not other_goals_open %}{{ goal.titel }}{% endif %}</p>",
        ),
    ],
)
def test_branches_taken_only_later_are_checked(
    runner: CliRunner, make_cohort: CohortFactory, program: Path, template: str, old: str, new: str
) -> None:
    edit(program / template, old, new)
    folder = make_cohort(toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    result = runner.invoke(main, ["plan", str(folder), *NOW])
    assert result.exit_code == 1 and template in result.output


def test_a_subject_is_checked_for_each_distinct_value_it_reads(
    runner: CliRunner, make_cohort: CohortFactory, program: Path
) -> None:
    """Subjects are checked once per distinct set of values they read, so a value only one
    participant has is still rendered; here it divides by zero."""
    edit(
        program / "welcome.html",
        "{% block subject %}",
        "{% block subject %}{{ 100 // (participant.seats|int) }}: ",
    )
    roster = "email,name,seats\nana@example.com,Ana,4\nben@example.com,Ana,4\ncy@example.com,Ana,0\n"
    folder = make_cohort(roster, toml=COHORT_TOML.replace('"crawl-walk-run"', f'"{program}"'))
    result = runner.invoke(main, ["plan", str(folder), *NOW])
    assert result.exit_code == 1
    assert "fails for cy@example.com" in result.output and "division" in result.output
    assert "ana@example.com" not in result.output and "ben@example.com" not in result.output


@pytest.mark.parametrize(
    ("source", "inputs"),
    [
        ("Plain words", ()),
        ("{{ participant.first_name }}, {{ goal['deadline']|shortdate }}",
         (("goal", "deadline"), ("participant", "first_name"))),
        ("{% if other_goals_open %}{{ participant.name }}{% endif %}",
         (("other_goals_open", None), ("participant", "name"))),
        ("{{ participant[field] }}", (("field", None), ("participant", None))),
        ("{% for g in goals %}{{ g.title }}{% endfor %}", None),
        ("{% set n = participant.name %}{{ n }}", None),
    ],
)  # fmt: skip
def test_what_a_subject_reads(source: str, inputs: object) -> None:
    from drip.core.render import template_inputs

    assert template_inputs(source) == inputs


def test_subjects_key_on_plain_values_only() -> None:
    from drip.core.render import inputs_key

    reads = (("goal", "deadline"), ("participant", "first_name"))
    ana = {"participant": {"first_name": "Ana"}, "goal": {"deadline": dt.date(2027, 2, 1)}}
    also_ana = {
        "participant": {"first_name": "Ana", "email": "x@example.com"},
        "goal": {"deadline": dt.date(2027, 2, 1)},
    }
    ben = {"participant": {"first_name": "Ben"}, "goal": {"deadline": dt.date(2027, 2, 1)}}
    assert inputs_key(reads, ana) == inputs_key(reads, also_ana) != inputs_key(reads, ben)
    assert inputs_key(reads, {"participant": {}, "goal": {}}) is None  # missing: render and see
    assert inputs_key((("done_url", None),), {"done_url": lambda goal: goal}) is None
