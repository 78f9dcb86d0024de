"""The reply and bounce corpora through ``drip ingest``, on SQLite and PostgreSQL: no "done" the
participant did not give, no reply for a person dropped, no bounce acted on that drip's mail did not cause."""

import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SMTPServer
from corpus import (
    BOUNCES,
    READ_AT,
    REPLIES,
    ROSTER,
    SETTINGS,
    bounce_effect,
    build_world,
    expected,
    filled,
    score_replies,
)
from drip.cli import main

REPLY_FILES = expected(REPLIES)
BOUNCE_FILES = expected(BOUNCES)
PEOPLE = {line.split(",")[0] for line in ROSTER.splitlines()[1:]}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, smtp_server: SMTPServer) -> SMTPServer:
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRIP_SMTP_URL", smtp_server.url)
    return smtp_server


def ingest(database_url: str, source: list[str]) -> str:
    result = CliRunner().invoke(
        main, ["--database-url", database_url, "ingest", *source, "--now", READ_AT.isoformat()]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_corpora_are_complete() -> None:
    assert sorted(REPLY_FILES) == sorted(path.name for path in REPLIES.glob("*.eml"))
    assert len(REPLY_FILES) >= 40 and len(BOUNCE_FILES) >= 30
    assert {entry["outcome"] for entry in REPLY_FILES.values()} == {
        "completed", "person", "auto_reply", "unsubscribed", "ignored",
    }  # fmt: skip


def test_every_reply_of_the_corpus_read_from_one_mailbox(
    database_url: str, tmp_path: Path, env: SMTPServer
) -> None:
    build_world(tmp_path, database_url)
    data = filled(REPLIES, database_url)
    box = mailbox.mbox(tmp_path / "replies.mbox")
    for name in sorted(REPLY_FILES):
        box.add(data[name])
    box.close()
    said = ingest(database_url, ["--mbox", str(tmp_path / "replies.mbox")])
    score = score_replies(database_url, REPLY_FILES, data)
    assert score.failures() == [], "\n".join(map(str, score.failures()))
    assert score.count("asked") == 0, [v for v in score.verdicts if v.grade == "asked"]
    # Every reply kept for a person reached one, once: the owner, with the original attached.
    kept = sum(1 for v in score.verdicts if v.observed == "replied")
    assert len(env.messages) == kept and f"{kept} forwarded" in said
    assert {m.recipients[0] for m in env.messages} == {"owner@example.com"}
    assert all(
        part.get_content_type() == "message/rfc822"
        for m in env.messages
        for part in m.message.iter_attachments()
    )


@pytest.mark.parametrize("name", sorted(BOUNCE_FILES))
def test_a_bounce_does_what_it_means(name: str, database_url: str, tmp_path: Path, env: SMTPServer) -> None:
    build_world(tmp_path, database_url)
    source = tmp_path / name
    source.write_bytes((BOUNCES / name).read_bytes())
    ingest(database_url, [str(source)])
    entry = BOUNCE_FILES[name]
    named = [address for address in entry["addresses"] if address in PEOPLE]
    effect = bounce_effect(database_url)
    outcome = entry["outcome"]
    if outcome == "hard":
        delegate = ["ana@example.com"] if "pa.ruiz@example.com" in entry["addresses"] else []
        assert effect == {"bounced": named, "delegates": delegate, "soft": []}
    elif outcome == "soft":
        assert effect == {"bounced": [], "delegates": [], "soft": named}
    elif outcome == "delegate":
        assert effect == {"bounced": [], "delegates": ["ana@example.com"], "soft": []}
    else:
        assert effect == {"bounced": [], "delegates": [], "soft": []}
    assert env.messages == []  # a bounce is never forwarded
