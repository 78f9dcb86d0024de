"""drip preview and drip send-test, through a real SMTP server on loopback."""

import json
from email import message_from_bytes, policy
from html import unescape
from pathlib import Path

from click.testing import CliRunner

from conftest import ROOT, SMTPServer
from drip.cli import main

EXAMPLE = str(ROOT / "cohorts" / "example")
NOW = ["--now", "2027-01-04T12:00Z"]


def invoke(runner: CliRunner, *args: str, db: str | None = None, env: dict | None = None):
    options = ["--database-url", db] if db else []
    return runner.invoke(main, [*options, *args], env=env, catch_exceptions=False)


def test_preview_formats(runner: CliRunner, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'drip.db'}"
    html = invoke(
        runner,
        "preview",
        EXAMPLE,
        "--step",
        "mid-kickoff",
        "--participant",
        "yuki.sato@northwind.example",
        *NOW,
        db=db,
    )
    assert html.exit_code == 0, html.output
    # Yuki reads Japanese (the roster's language column): her own deadline, written as Japanese writes it
    shown = unescape(html.stdout)  # the template's own non-ASCII is written as character references
    assert "<!DOCTYPE html>" in shown and "佐藤 由紀様" in shown and "3月8日月曜日" in shown
    assert '<html lang="ja"' in html.stdout
    assert "for looking at only" in html.output  # not started yet: the links are not live
    text = invoke(runner, "preview", EXAMPLE, "--step", "mid-kickoff", "--format", "text", *NOW, db=db)
    assert text.stdout.startswith("Subject: Walk: five voices worth reading, by 1 March\n\n")
    out = tmp_path / "kickoff.eml"
    eml = invoke(
        runner, "preview", EXAMPLE, "--step", "mid-kickoff", "--format", "eml", "--out", str(out), *NOW, db=db
    )
    assert eml.exit_code == 0 and f"Wrote {out}" in eml.stdout
    message = message_from_bytes(out.read_bytes(), policy=policy.default)
    assert message["X-Drip-Step"] == "mid-kickoff" and message.get_body(("plain",)) is not None
    assert not (tmp_path / "drip.db").exists()  # a preview writes nothing


def test_preview_of_a_started_cohort_uses_its_ids_and_moments(runner: CliRunner, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'drip.db'}"
    assert invoke(runner, "start", EXAMPLE, *NOW, db=db).exit_code == 0
    out = tmp_path / "x.eml"
    result = invoke(
        runner,
        "preview",
        EXAMPLE,
        "--step",
        "short-reminder",
        "--format",
        "eml",
        "--out",
        str(out),
        *NOW,
        db=db,
    )
    assert "for looking at only" not in result.output
    message = message_from_bytes(out.read_bytes(), policy=policy.default)
    assert message["Message-ID"].startswith("<drip.") and "preview" not in message["Message-ID"]
    assert message["Date"].datetime.isoformat() == "2027-01-29T14:00:00+00:00"  # 09:00 in New York


def test_preview_of_a_monthly_check_in(runner: CliRunner, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'drip.db'}"
    first = invoke(runner, "preview", EXAMPLE, "--step", "sustain", "--format", "text", *NOW, db=db)
    assert first.stdout.startswith("Subject: What did you share this month?\n")
    assert "monthly check-in 1 of 6" in first.stdout and "once a month" in first.stdout
    last = invoke(runner, "preview", EXAMPLE, "--step", "sustain-6", "--format", "eml", *NOW, db=db)
    message = message_from_bytes(last.stdout.encode(), policy=policy.default)
    assert str(message["Subject"]) == "Last check-in: what did you share this month?"
    assert message["X-Drip-Step"] == "sustain-6"
    assert message["Date"].datetime.isoformat() == "2027-10-04T13:00:00+00:00"  # Monday, 09:00 in New York
    assert "This is the last check-in." in message.get_body(("plain",)).get_content()
    beyond = runner.invoke(main, ["preview", EXAMPLE, "--step", "sustain-7", *NOW])
    assert beyond.exit_code == 1
    assert "margaret.okafor@northwind.example gets 6 occurrence(s) of sustain, not sustain-7" in beyond.output


def test_preview_mistakes(runner: CliRunner) -> None:
    result = runner.invoke(main, ["preview", EXAMPLE, "--step", "short-remnder", *NOW])
    assert result.exit_code == 1 and "did you mean 'short-reminder'" in result.output
    result = runner.invoke(
        main, ["preview", EXAMPLE, "--step", "welcome", "--participant", "nobody@example.com", *NOW]
    )
    assert result.exit_code == 1 and "nobody@example.com is not in" in result.output


def test_send_test_goes_to_the_tester_only_and_records_nothing(
    runner: CliRunner, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'drip.db'}"
    invoke(runner, "start", EXAMPLE, *NOW, db=db)
    before = invoke(runner, "status", "example", "--format", "json", *NOW, db=db).stdout
    result = invoke(
        runner, "send-test", EXAMPLE, "--to", "tester@example.com", "--all",
        "--participant", "james.whitaker@northwind.example", *NOW, db=db, env={"DRIP_SMTP_URL": smtp_server.url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(smtp_server.messages) == 22  # a repeating step: its first occurrence
    for received in smtp_server.messages:
        assert received.recipients == ["tester@example.com"]  # not James, not his delegate
        message = received.message
        assert str(message["Subject"]).startswith("[TEST] ")
        assert message["Cc"] is None and message["To"].addresses[0].addr_spec == "tester@example.com"
    ids = {r.message["Message-ID"] for r in smtp_server.messages}
    assert len(ids) == 22
    from drip.core.tokens import TOKEN_LENGTH

    for received in smtp_server.messages:
        message = received.message
        assert message["Date"].datetime.date().isoformat() == "2027-01-04"  # dated when sent, not when due
        if str(message["X-Drip-Step"]).endswith("-escalation"):  # to the owners: no unsubscribe link
            assert message["List-Unsubscribe"] is None
            continue
        unsubscribe = str(message["List-Unsubscribe"]).split("/unsubscribe/")[1][:TOKEN_LENGTH]
        # A proof's links carry no participant's id: pressing them can change nothing.
        assert unsubscribe.startswith("ouaaaaaaaaaaaaaaa")
    assert json.loads(
        invoke(runner, "status", "example", "--format", "json", *NOW, db=db).stdout
    ) == json.loads(before)


def test_send_test_one_step_to_a_folder(runner: CliRunner, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    result = invoke(
        runner,
        "send-test",
        EXAMPLE,
        "--to",
        "t@example.com",
        "--step",
        "policy",
        *NOW,
        env={"DRIP_SMTP_URL": f"file://{outbox}"},
    )
    assert result.exit_code == 0 and "Sent to t@example.com: [TEST] Before you post" in result.stdout
    (eml,) = outbox.glob("*.eml")
    assert message_from_bytes(eml.read_bytes(), policy=policy.default)["X-Drip-Step"] == "policy"


def test_send_test_needs_a_transport_and_one_choice(runner: CliRunner) -> None:
    result = runner.invoke(main, ["send-test", EXAMPLE, "--to", "t@example.com", "--all", *NOW])
    assert result.exit_code == 1 and "no DRIP_SMTP_URL set" in result.output
    result = runner.invoke(main, ["send-test", EXAMPLE, "--to", "t@example.com", *NOW])
    assert result.exit_code == 2 and "either --step STEP or --all" in result.output


def test_preview_to_a_folder_that_does_not_exist(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main, ["preview", EXAMPLE, "--step", "welcome", "--out", str(tmp_path / "no" / "x.html"), *NOW]
    )
    assert result.exit_code == 1 and "cannot write" in result.output and "Traceback" not in result.output


def test_send_test_refuses_an_address_relays_cannot_deliver(runner: CliRunner) -> None:
    result = runner.invoke(main, ["send-test", EXAMPLE, "--to", "jörg@example.com", "--all", *NOW])
    assert result.exit_code == 2 and "not a valid email" in result.output
