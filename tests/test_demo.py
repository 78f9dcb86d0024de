"""`drip demo`: the example cohort's story, from the starter files a new user gets with `drip init`."""

from __future__ import annotations

import datetime as dt
import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import _free_port
from drip.cli import main
from drip.sending import catcher
from drip.storage.store import Store
from drip.storage.tables import Delivery, Event, Goal, Participant

#: where the story ends: a few days after the second monthly check-in went to the last participant
END = "2027-06-15T00:00Z"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> Path:
    """A new user's folder: `drip init`'s files, the default settings, a free port for the catcher."""
    assert runner.invoke(main, ["init", str(tmp_path)]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRIP_CATCHER_PORT", str(_free_port()))
    return tmp_path


def status(runner: CliRunner) -> dict:
    result = runner.invoke(main, ["status", "example", "--format", "json", "--now", END])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def caught(project: Path) -> list:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in catcher.messages(project / "drip-mail")
    ]


def test_the_demo_tells_the_story_and_runs_again(project: Path, runner: CliRunner) -> None:
    played = runner.invoke(main, ["demo", "--no-serve"])
    assert played.exit_code == 0, played.output
    assert f"--now {END}" in played.output
    figures = status(runner)

    # Completions by link and by reply, for every goal; a bounce; the rest still open.
    assert figures["done_by"] == {
        "short": {"link": 3, "reply": 3},
        "mid": {"link": 2, "reply": 1},
        "long": {"link": 1, "reply": 1},
    }
    assert figures["participant_status"]["bounced"] == 1
    assert [b["email"] for b in figures["bounces"]] == ["robert.ellison@northwind.example"]
    assert "6/12 done (3 by link, 3 by reply)" in played.output
    # The check-ins: taps, and replies read as yes or no; a question left for a person.
    assert figures["sustain"] == {
        "sustain-1": {"shared": 5, "not_shared": 2, "no_answer": 4},
        "sustain-2": {"shared": 4, "not_shared": 1, "no_answer": 6},
    }
    assert (
        "sustain-1     " + "█" * 9 + "▓" * 4 + "░" * 7 + " 5/11 shared, 2 not_shared, 4 no answer"
        in played.output
    )
    exported = runner.invoke(main, ["export", "example", "--now", END])
    assert exported.exit_code == 0, exported.output
    rows = {line.split(",")[0]: line for line in exported.output.splitlines()}
    assert rows["email"].endswith(",sustain-1,sustain-2")
    assert rows["thomas.becker@northwind.example"].endswith(",shared,shared"), "his later answer"
    assert rows["eleanor.hughes@northwind.example"].endswith(",no_answer,no_answer")
    assert rows["robert.ellison@northwind.example"].endswith(",,"), "bounced: no check-in went to him"
    assert "Wrote example-report.html" in played.output and (project / "example-report.html").is_file()

    with Store("sqlite:///drip.db") as db, db.reading() as conn:
        goals = {
            (email, goal): (status, via, snoozed, answer)
            for email, goal, status, via, snoozed, answer in conn.execute(
                select(
                    Participant.email, Goal.goal, Goal.status, Goal.via, Goal.snoozed_at, Goal.answer
                ).join(Participant, Participant.id == Goal.participant_id)
            )
        }
        sent = {
            (email, step)
            for email, step in conn.execute(
                select(Participant.email, Delivery.step)
                .join(Participant, Participant.id == Delivery.participant_id)
                .where(Delivery.status == "sent")
            )
        }
        stopped = dict(
            conn.execute(
                select(Delivery.step, Delivery.status)
                .join(Participant, Participant.id == Delivery.participant_id)
                .where(Participant.email == "margaret.okafor@northwind.example")
            ).all()
        )
    margaret, james = "margaret.okafor@northwind.example", "james.whitaker@northwind.example"
    assert goals[(margaret, "short")][:2] == ("done", "link") and goals[(james, "mid")][:2] == (
        "done",
        "reply",
    )
    assert goals[("sofia.marquez@northwind.example", "short")][:2] == ("done", "reply"), "¡Hecho! is done"
    assert goals[("amelie.laurent@northwind.example", "short")][:2] == ("done", "reply")
    assert goals[("david.chen@northwind.example", "short")][:2] == ("done", "link"), "later, by the nudge"
    assert goals[("kenji.tanaka@northwind.example", "short")][0] == "open", "an auto-reply does nothing"
    assert goals[("eleanor.hughes@northwind.example", "short")][2] is not None, "she took another week"
    # What they answered: typed on the page, or in their reply's own words.
    assert goals[(margaret, "short")][3] == "https://linkedin.com/in/margaret-okafor"
    assert goals[(margaret, "mid")][3].startswith("Mary Meeker, Ben Thompson")
    assert goals[(james, "short")][3] == "https://linkedin.com/in/james-whitaker", "the address in his reply"
    assert (
        "Scott Galloway" in goals[(james, "mid")][3]
        and goals[("sofia.marquez@northwind.example", "short")][3] is None
    )
    assert goals[(margaret, "long")][3].startswith("Feedly: 38 sources")
    assert goals[(james, "long")][3].startswith("Done: Inoreader now collects"), "his reply's own words"
    # The congratulations went out, and the reminders of a goal done stopped.
    assert {(margaret, "short-done"), (margaret, "mid-done"), (james, "short-done")} <= sent
    assert stopped["short-reminder"] == "cancelled" and stopped["short-due"] == "cancelled"

    with Store("sqlite:///drip.db") as db, db.reading() as conn:
        answered = [
            (data["step"], data["answer"], data.get("replaced"), data["via"])
            for data in conn.execute(
                select(Event.data)
                .join(Participant, Participant.id == Event.participant_id)
                .where(Event.kind == "answered", Participant.email == "thomas.becker@northwind.example")
                .order_by(Event.id)
            ).scalars()
        ]
    assert answered == [
        ("sustain-1", "shared", None, "link"),
        ("sustain-2", "not_shared", None, "link"),
        ("sustain-2", "shared", "not_shared", "link"),
    ], "a later answer replaces the earlier one, and the log keeps both"

    inbox = caught(project)
    digests = [m for m in inbox if m["X-Drip-Step"] == "digest"]
    mondays = (dt.date(2027, 6, 14) - dt.date(2027, 1, 18)).days // 7 + 1
    assert len(digests) == mondays, "one each Monday, from the first after the start"
    week_of_reply = next(m for m in digests if m["Subject"].startswith("Week to 18 January"))
    told = week_of_reply.get_body(("plain",)).get_content()
    assert "Needs a look" in told and "David Chen <david.chen@northwind.example> wrote about Crawl" in told
    assert "Not yet, I'm afraid" in told and "Robert Ellison" in told
    june = next(m for m in digests if m["Subject"].startswith("Week to 7 June"))
    told = june.get_body(("plain",)).get_content()
    assert (
        "Sustained use" in told
        and "sustain-1 (" in told
        and '5 of 11 "Yes, I shared something" (45%)' in told
    )
    assert (
        'Sofia Márquez <sofia.marquez@northwind.example> answered "Not this month" to sustain-1 and sustain-2'
        in told
    )
    report = (project / "example-report.html").read_text()
    assert "travelling all week" in report and "done: &#39;hecho&#39; (Spanish)" in report

    again = runner.invoke(main, ["demo", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert status(runner) == figures, "a second run starts over and tells the same story"
    assert len(caught(project)) == len(inbox)


def test_the_demo_keeps_away_from_a_database_it_did_not_write(project: Path, runner: CliRunner) -> None:
    assert runner.invoke(main, ["start", "cohorts/example", "--now", "2027-01-04T12:00Z"]).exit_code == 0
    refused = runner.invoke(main, ["demo", "--no-serve"])
    assert refused.exit_code == 1
    assert "drip.db already holds drip's data" in refused.output and "DRIP_DATABASE_URL" in refused.output
    assert status(runner)["deliveries"].get("sent", 0) == 0, "the database was left as it was"


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("DRIP_SMTP_URL", "smtp://relay.example:587", "only to the built-in mail catcher"),
        (
            "DRIP_DATABASE_URL",
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
            "SQLite database of its own",
        ),
    ],
)
def test_the_demo_never_sends_real_mail_or_touches_a_server_database(
    project: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, said: str
) -> None:
    monkeypatch.setenv(setting, value)
    refused = runner.invoke(main, ["demo", "--no-serve"])
    assert refused.exit_code == 1 and said in refused.output
    assert not catcher.messages(project / "drip-mail")
