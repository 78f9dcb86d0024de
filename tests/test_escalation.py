"""Steps that go to someone other than the participant: to = "owners" (an escalation) or "delegate".

They are planned per participant like any step, cancelled when the goal is done first, skipped when
there is nobody to send them to, and never carry the participant's done button, unsubscribe link or
calendar entry. A refusal of an owner's address never bounces the participant.
"""

import datetime as dt
import shutil
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import COHORT_TOML, EMAILS, CohortFactory, SMTPServer
from drip.cli import main
from drip.core.errors import CohortError
from drip.core.message import build, cohort_view, links_for, recipient_of
from drip.core.plan import expand_steps, plan_participant, program_end
from drip.core.program import Audience, load_program
from drip.core.render import Templates
from drip.launch.cohort import load_cohort
from drip.storage.store import Store, delivery_table, participant_table

ESCALATION = """
[[steps]]
key = "short-assistant"
at = "short.deadline+1w"
to = "delegate"
"""
TEMPLATE = """{% extends "layout.html" %}
{% block subject %}{{ participant.name }}: Crawl is two weeks overdue{% endblock %}
{% block heading %}{{ participant.name }} could use a word from you{% endblock %}
{% block body %}<p>{{ participant.name }}'s goal {{ goal.title }} was due {{ goal.deadline|longdate }}.</p>{% endblock %}
"""
TWO_OWNERS = COHORT_TOML.replace(
    'owners = ["owner@example.com"]', 'owners = ["owner@example.com", "li@example.com"]'
)
ROSTER = """email,name,timezone,delegate_email
ana@example.com,Ana Ruiz,America/New_York,pa.ruiz@example.com
ben@example.com,Ben Ito,Asia/Tokyo,
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """The shipped program (with its escalations to the owners), and a note to the delegate added."""
    folder = tmp_path / "emails" / "crawl-walk-run"
    shutil.copytree(EMAILS / "crawl-walk-run", folder)
    (folder / "program.toml").write_text((folder / "program.toml").read_text() + ESCALATION)
    (folder / "short-assistant.html").write_text(TEMPLATE.replace("could use a word from you", "needs you"))
    return folder


def test_to_is_read_and_a_wrong_one_is_named_with_the_fix(program: Path) -> None:
    steps = {step.key: step.to for step in load_program(program).steps}
    assert steps["short-escalation"] is Audience.OWNERS and steps["short-assistant"] is Audience.DELEGATE
    assert steps["welcome"] is Audience.PARTICIPANT
    (program / "program.toml").write_text(
        (program / "program.toml").read_text().replace('to = "delegate"', 'to = "boss"')
    )
    with pytest.raises(CohortError) as caught:
        load_program(program)
    said = str(caught.value)
    assert "program.toml" in said and 'to must be "participant", "delegate" or "owners", not \'boss\'' in said


def test_mail_to_others_takes_no_day_of_the_participants(program: Path, make_cohort: CohortFactory) -> None:
    """An owners' note on the day of the participant's own email moves neither."""
    toml = (program / "program.toml").read_text()
    toml = toml.replace(
        'key = "short-escalation"\nat = "short.deadline+2w"',
        'key = "short-escalation"\nat = "short.deadline+3d"',
    )
    assert 'key = "short-escalation"\nat = "short.deadline+3d"' in toml
    (program / "program.toml").write_text(toml)  # the day of short-overdue
    cohort = load_cohort(make_cohort(ROSTER), [program.parent])
    person = cohort.participants[0]
    plan = {
        p.step.key: p
        for p in plan_participant(
            cohort.program, cohort.timing(person), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
        )
    }
    assert plan["short-escalation"].due_at == plan["short-overdue"].due_at
    assert plan["short-escalation"].due_at.date() == dt.date(2027, 2, 4)


def built(folder: Path, key: str, email: str = "ana@example.com"):
    cohort = load_cohort(folder, [folder.parent.parent / "emails"])
    person = next(p for p in cohort.participants if p.email == email)
    timing = cohort.timing(person)
    step = next(s for s in expand_steps(cohort.program, timing) if s.key == key)
    links = links_for(
        "https://drip.example.com", ["k" * 32], "comms@example.com", program_end(cohort.program, timing)
    )
    recipient = recipient_of(person, cohort.program, timing, {"short": 1, "mid": 2, "long": 3})
    when = dt.datetime(2027, 2, 15, 14, tzinfo=dt.UTC)
    return build(Templates(cohort.program.path, cohort.program.language), cohort_view(cohort), recipient, step, when=when,
                 delivery_id="9", instance="ab12", links=links).as_bytes()  # fmt: skip


def test_an_escalation_goes_to_the_owners_without_the_participants_links(
    program: Path, make_cohort: CohortFactory
) -> None:
    mail = message_from_bytes(
        built(make_cohort(ROSTER, TWO_OWNERS), "short-escalation"), policy=policy.default
    )
    assert [a.addr_spec for a in mail["To"].addresses] == ["owner@example.com"]
    assert [a.addr_spec for a in mail["Cc"].addresses] == ["li@example.com"]  # not the delegate
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None
    assert [part.get_content_type() for part in mail.walk()][-1] == "text/html"  # no calendar entry
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert "Ana Ruiz's goal Crawl" in text and "Ana Ruiz does not get this note" in text
    for body in (html, text):
        assert "/done/" not in body and "/unsubscribe/" not in body and "mailto:comms+" not in body


def test_a_delegate_step_goes_to_the_delegate_alone(program: Path, make_cohort: CohortFactory) -> None:
    mail = message_from_bytes(built(make_cohort(ROSTER), "short-assistant"), policy=policy.default)
    assert [a.addr_spec for a in mail["To"].addresses] == ["pa.ruiz@example.com"] and mail["Cc"] is None
    assert "as Ana Ruiz's delegate" in mail.get_body(("plain",)).get_content()


def run(runner: CliRunner, db: str, *args: str, env: dict | None = None) -> str:
    # the programs beside the cohorts (the test's own), not the working folder's
    env = {
        "DRIP_EMAILS_DIR": str(Path(args[1]).parent.parent / "emails") if args[0] == "start" else "",
        **(env or {}),
    }
    result = runner.invoke(main, ["--database-url", db, *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def statuses(db: str) -> dict[tuple[str, str], str]:
    with Store(db, migrate=False) as store, store.reading() as conn:
        rows = conn.execute(
            select(participant_table.c.email, delivery_table.c.step, delivery_table.c.status)
            .join(participant_table)
            .where(delivery_table.c.step.in_(["short-escalation", "short-assistant"]))
        ).all()
    return {(row.email, row.step): row.status for row in rows}


def test_planned_cancelled_on_completion_skipped_without_anyone_and_sent_to_the_owners(
    program: Path, make_cohort: CohortFactory, database_url: str, relay: SMTPServer, runner: CliRunner
) -> None:
    folder = make_cohort(ROSTER + "cleo@example.com,Cleo Hart,Europe/London,\n", TWO_OWNERS)
    run(runner, database_url, "start", str(folder), "--now", "2027-01-04T12:00Z")
    assert set(statuses(database_url).values()) == {"scheduled"}
    assert len(statuses(database_url)) == 6, "planned per participant, like any step"
    run(runner, database_url, "participant", "done", "test-cohort", "cleo@example.com", "--goal", "short",
        "--now", "2027-01-20T12:00Z")  # fmt: skip
    env = {"DRIP_SMTP_URL": relay.url}
    # the owner's address refused for good: the note fails, Ana is not bounced
    relay.handler.rcpt_replies["li@example.com"] = ["550 5.1.1 no such user"] * 3
    run(runner, database_url, "run", "--once", "--now", "2027-02-07T00:00Z", "--until", "2027-02-17T00:00Z",
        "--no-web", env=env)  # fmt: skip
    assert statuses(database_url) == {
        ("ana@example.com", "short-assistant"): "sent",
        ("ben@example.com", "short-assistant"): "skipped",  # no delegate
        ("cleo@example.com", "short-assistant"): "cancelled",  # done first
        ("ana@example.com", "short-escalation"): "sent",
        ("ben@example.com", "short-escalation"): "sent",
        ("cleo@example.com", "short-escalation"): "cancelled",
    }
    notes = [m for m in relay.messages if m.message["X-Drip-Step"] == "short-escalation"]
    assert sorted(m.recipients[0] for m in notes) == ["owner@example.com", "owner@example.com"]
    assert sorted(str(m.message["Subject"]) for m in notes) == [
        "Ana Ruiz: Crawl is two weeks overdue", "Ben Ito: Crawl is two weeks overdue",
    ]  # fmt: skip
    status = run(runner, database_url, "status", "test-cohort", "--now", "2027-02-17T00:00Z")
    assert "bounced" not in status


def test_a_cohort_without_owners_starts_and_skips_its_escalations(
    program: Path, make_cohort: CohortFactory, tmp_path: Path, runner: CliRunner, smtp_server: SMTPServer
) -> None:
    folder = make_cohort(ROSTER, COHORT_TOML.replace('owners = ["owner@example.com"]\n', ""))
    db = f"sqlite:///{tmp_path / 'drip.db'}"
    run(runner, db, "start", str(folder), "--now", "2027-01-04T12:00Z")
    run(runner, db, "run", "--once", "--now", "2027-02-14T00:00Z", "--until", "2027-02-17T00:00Z", "--no-web",
        env={"DRIP_SMTP_URL": smtp_server.url})  # fmt: skip
    found = statuses(db)
    assert found[("ana@example.com", "short-escalation")] == "skipped"
    with Store(db, migrate=False) as store, store.reading() as conn:
        reason = (
            conn.execute(
                select(delivery_table.c.last_error).where(delivery_table.c.step == "short-escalation")
            )
            .scalars()
            .first()
        )
    assert reason == "the cohort has no owners to send it to"
    preview = runner.invoke(main, ["--database-url", db, "send-test", str(folder), "--to", "me@example.com",
                                   "--step", "short-escalation"],
                            env={"DRIP_SMTP_URL": smtp_server.url, "DRIP_EMAILS_DIR": str(program.parent)})  # fmt: skip
    assert preview.exit_code == 1 and "goes to the cohort's owners, and the cohort has none" in preview.output
