"""Replies acted on, on SQLite and PostgreSQL: goals done, bounces, unsubscribes, replies forwarded, once each."""

import datetime as dt
import mailbox
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from conftest import EMAILS, CohortFactory
from drip import enrol, keys
from drip.cli import main
from drip.cohort import load_cohort
from drip.config import load_settings
from drip.errors import DripError
from drip.ingest import Forward, Ingester
from drip.mailboxes import MaildirSource, MboxSource, opened
from drip.store import Store, delivery_table, event_table, goal_table, participant_table, received_table
from drip.tokens import Action, make_token

UTC = dt.UTC
ENROLLED = dt.datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
READ = dt.datetime(2027, 1, 13, 16, 0, tzinfo=UTC)
REPLIES = Path(__file__).parent / "data" / "replies"
KICKOFF_ID = "<kickoff.ana@drip.test>"
WELCOME_ID = "<welcome.ana@drip.test>"


@pytest.fixture
def started(store: Store, make_cohort: CohortFactory) -> Store:
    """A cohort whose welcome and Crawl kickoff went out to everyone."""
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), ENROLLED)
        keys.prepare(load_settings(environ={}), conn)
        rows = conn.execute(
            select(delivery_table.c.id, delivery_table.c.step, participant_table.c.email)
            .join(participant_table)
            .where(delivery_table.c.step.in_(["welcome", "short-kickoff"]))
        ).all()
        for row in rows:
            name = "kickoff" if row.step == "short-kickoff" else "welcome"
            conn.execute(
                update(delivery_table)
                .where(delivery_table.c.id == row.id)
                .values(
                    status="sent",
                    sent_at=ENROLLED,
                    message_id=f"<{name}.{row.email.split('@')[0]}@drip.test>",
                )
            )
    return store


class Outbox(list):
    """Forwards handed over, or a relay that is down."""

    down = False

    def __call__(self, forward: Forward) -> None:
        if self.down:
            raise DripError("cannot reach the SMTP server relay.example.com:25")
        self.append(forward)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def ingester(started: Store, outbox: Outbox) -> Ingester:
    return Ingester(started, load_settings(environ={}), outbox)


def reply(name: str, answers: str = KICKOFF_ID, **replace: str) -> bytes:
    data = (REPLIES / name).read_bytes().replace(b"<PLACEHOLDER@drip.test>", answers.encode())
    for old, new in replace.items():
        data = data.replace(old.encode(), new.encode())
    return data


def goal_status(db: Store, email: str = "ana@example.com", goal: str = "short") -> tuple:
    with db.reading() as conn:
        return conn.execute(
            select(goal_table.c.status, goal_table.c.via)
            .join(participant_table)
            .where(participant_table.c.email == email, goal_table.c.goal == goal)
        ).one()


def events(db: Store, kind: str) -> list:
    with db.reading() as conn:
        return conn.execute(select(event_table).where(event_table.c.kind == kind)).all()


@pytest.mark.parametrize(
    "name",
    ["outlook_top_posted.eml", "gmail_top_posted.eml", "apple_mail.eml", "bottom_posted.eml", "html_only.eml",
     "french_fait.eml"],
)  # fmt: skip
def test_a_reply_saying_done_completes_the_goal_it_answers(
    started: Store, ingester: Ingester, name: str
) -> None:
    assert ingester.ingest(reply(name), READ)
    assert goal_status(started) == ("done", "reply")
    [event] = events(started, "completed")
    assert event.data["via"] == "reply" and event.data["message_id"].startswith("<")
    with started.reading() as conn:
        reminder = conn.execute(
            select(delivery_table.c.status).join(participant_table).where(
                participant_table.c.email == "ana@example.com", delivery_table.c.step == "short-reminder"
            )
        ).scalar_one()  # fmt: skip
    assert reminder == "cancelled"


def test_a_message_is_acted_on_once(started: Store, ingester: Ingester) -> None:
    data = reply("gmail_top_posted.eml")
    ingester.ingest(data, READ)
    ingester.ingest(data, READ + dt.timedelta(hours=1))
    assert len(events(started, "completed")) == 1
    with started.reading() as conn:
        assert [row.outcome for row in conn.execute(select(received_table))] == ["completed"]


@pytest.mark.parametrize("name", ["quoted_done_only.eml", "not_done_yet.eml"])
def test_other_replies_are_kept_and_forwarded(
    started: Store, ingester: Ingester, outbox: Outbox, name: str
) -> None:
    assert ingester.ingest(reply(name), READ)
    assert goal_status(started)[0] == "open"
    [event] = events(started, "replied")
    assert event.data["step"] == "short-kickoff" and event.data["excerpt"]
    [forward] = outbox
    assert forward.to == "owner@example.com" and forward.sender == "comms@example.com"
    message = message_from_bytes(forward.data, policy=policy.default)
    assert str(message["Subject"]).startswith("Reply from ")
    assert str(message["Auto-Submitted"]) == "auto-forwarded"
    assert message["Reply-To"].addresses[0].addr_spec in ("ana@example.com", "ben@example.com")
    attached = [part for part in message.iter_attachments() if part.get_content_type() == "message/rfc822"]
    assert len(attached) == 1


def test_no_forward_when_replies_already_reach_people(started: Store, outbox: Outbox) -> None:
    """With replies going to the cohort's own address, the reply already sits where people read."""
    from drip.store import cohort_table

    with started.transaction() as conn:
        settings = conn.execute(select(cohort_table.c.settings)).scalar_one()
        conn.execute(update(cohort_table).values(settings={**settings, "owners": []}))
    Ingester(started, load_settings(environ={}), outbox).ingest(reply("not_done_yet.eml"), READ)
    assert outbox == [] and len(events(started, "replied")) == 1


def test_a_forward_that_fails_is_tried_again(started: Store, ingester: Ingester, outbox: Outbox) -> None:
    data = reply("not_done_yet.eml")
    outbox.down = True
    assert not ingester.ingest(data, READ)  # left in the mailbox
    outbox.down = False
    assert ingester.ingest(data, READ)
    assert len(outbox) == 1 and len(events(started, "replied")) == 1  # forwarded once, kept once


def test_an_out_of_office_never_completes(started: Store, ingester: Ingester, outbox: Outbox) -> None:
    assert ingester.ingest(reply("out_of_office.eml"), READ)
    assert goal_status(started)[0] == "open" and outbox == []
    [event] = events(started, "replied")
    assert event.data["auto"] == "Auto-Submitted: auto-replied"


def test_a_bounce_marks_the_participant_bounced(started: Store, ingester: Ingester) -> None:
    ingester.ingest(reply("dsn_bounce.eml", WELCOME_ID), READ)
    with started.reading() as conn:
        status = conn.execute(
            select(participant_table.c.status).where(participant_table.c.email == "ana@example.com")
        ).scalar_one()
        pending = conn.execute(
            select(delivery_table.c.id)
            .join(participant_table)
            .where(participant_table.c.email == "ana@example.com", delivery_table.c.status == "scheduled")
        ).all()
    assert status == "bounced" and pending == []
    [event] = events(started, "bounced")
    assert event.data["label"].startswith("5.1.1")


def test_a_bounce_without_the_original_is_matched_by_address(started: Store, ingester: Ingester) -> None:
    assert ingester.ingest(reply("dsn_bounce.eml", "<unknown@elsewhere.example>"), READ)
    assert len(events(started, "bounced")) == 1


def test_a_bounce_of_the_delegate_leaves_the_participant_alone(started: Store, ingester: Ingester) -> None:
    data = reply("dsn_bounce.eml", WELCOME_ID, **{"rfc822; ana@example.com": "rfc822; pa@example.com"})
    ingester.ingest(data, READ)
    assert events(started, "bounced") == []


def done_token(db: Store, goal: str) -> tuple[int, str]:
    """Ana's goal row id and the token of its reply-done address."""
    with db.reading() as conn:
        goal_id = conn.execute(
            select(goal_table.c.id)
            .join(participant_table)
            .where(participant_table.c.email == "ana@example.com", goal_table.c.goal == goal)
        ).scalar_one()
        secret = keys.signing_keys(load_settings(environ={}), conn)
    return goal_id, make_token(secret, Action.DONE, goal_id, dt.date(2027, 6, 1))


def test_the_reply_done_link(started: Store, ingester: Ingester, outbox: Outbox) -> None:
    goal_id, token = done_token(started, "mid")
    assert ingester.ingest(reply("mailto_done.eml", TOKEN=token), READ)
    assert goal_status(started, goal="mid") == ("done", "reply") and outbox == []
    forged = make_token(("f" * 40,), Action.DONE, goal_id, dt.date(2027, 6, 1))
    other = reply("mailto_done.eml", TOKEN=forged, **{"5E0B1D2C": "5E0B1D2D"})
    ingester.ingest(other, READ)
    with started.reading() as conn:
        assert conn.execute(
            select(received_table.c.outcome).order_by(received_table.c.id)
        ).scalars().all() == [
            "completed",
            "unmatched",
        ]


def test_the_unsubscribe_address(started: Store, ingester: Ingester) -> None:
    with started.reading() as conn:
        person = conn.execute(
            select(participant_table.c.id).where(participant_table.c.email == "ben@example.com")
        ).scalar_one()
        secret = keys.signing_keys(load_settings(environ={}), conn)
    token = make_token(secret, Action.UNSUBSCRIBE, person, None)
    ingester.ingest(reply("mailto_done.eml", TOKEN=token, **{"Subject: Done:": "Subject: unsubscribe"}), READ)
    assert len(events(started, "unsubscribed")) == 1


def test_done_in_reply_to_a_mail_about_no_goal_is_forwarded(
    started: Store, ingester: Ingester, outbox: Outbox
) -> None:
    ingester.ingest(reply("gmail_top_posted.eml", "<welcome.ben@drip.test>"), READ)
    assert goal_status(started, "ben@example.com")[0] == "open" and len(outbox) == 1


def test_mail_that_is_not_drips_is_left_alone(started: Store, ingester: Ingester, outbox: Outbox) -> None:
    data = b"From: vendor@example.net\r\nTo: comms@example.com\r\nSubject: Invoice\r\nMessage-ID: <x@y>\r\n\r\ndone\r\n"
    assert ingester.ingest(data, READ)
    assert outbox == [] and events(started, "replied") == [] and events(started, "completed") == []


def test_mbox_and_maildir_sources(started: Store, ingester: Ingester, tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "replies.mbox")
    box.add(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"))
    box.add(reply("apple_mail.eml", "<kickoff.cleo@drip.test>"))
    box.add(reply("out_of_office.eml"))
    box.close()
    with opened(MboxSource(str(tmp_path / "replies.mbox"))) as source:
        tally = ingester.read(source, READ)
    assert tally.outcomes == {"completed": 2, "auto_reply": 1}
    assert "3 messages: 2 completed a goal, 1 auto-replies" in tally.summary()
    folder = mailbox.Maildir(tmp_path / "Maildir")
    folder.add(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"))
    folder.add(reply("bottom_posted.eml"))
    with opened(MaildirSource(str(tmp_path / "Maildir"))) as source:
        again = ingester.read(source, READ)
    assert again.outcomes == {"seen": 1, "completed": 1}
    assert goal_status(started)[0] == "done"


def test_drip_ingest_command(started: Store, database_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    source = tmp_path / "reply.eml"
    source.write_bytes(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"))
    base = ["--database-url", database_url]
    result = runner.invoke(main, [*base, "ingest", str(source), "--now", "2027-01-13T16:00Z"])
    assert result.exit_code == 0, result.output
    assert "1 message: 1 completed a goal." in result.output
    piped = runner.invoke(main, [*base, "ingest", "-"], input=source.read_bytes())
    assert piped.exit_code == 0 and "1 message: 1 seen before." in piped.output
    nothing = runner.invoke(main, [*base, "ingest"])
    assert nothing.exit_code == 1 and "nothing to read" in nothing.output
    both = runner.invoke(main, [*base, "ingest", str(source), "--mbox", str(source)])
    assert both.exit_code == 1 and "one source at a time" in both.output
    missing = runner.invoke(main, [*base, "ingest", "--maildir", str(tmp_path)])
    assert missing.exit_code == 1 and "is not a Maildir" in missing.output


def test_a_message_that_fails_leaves_the_rest_of_its_batch_done(
    started: Store, ingester: Ingester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drip import actions

    real = actions.complete

    def fails_for_ben(conn, person, key, now, evidence):
        if person.email == "ben@example.com":
            raise RuntimeError("a bug that only Ben's reply finds")
        return real(conn, person, key, now, evidence)

    monkeypatch.setattr(actions, "complete", fails_for_ben)
    box = mailbox.mbox(tmp_path / "replies.mbox")
    box.add(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"))
    box.add(reply("apple_mail.eml", "<kickoff.cleo@drip.test>"))
    box.close()
    marked: list[str] = []
    with opened(MboxSource(str(tmp_path / "replies.mbox"))) as source:
        monkeypatch.setattr(source, "done", marked.append)
        tally = ingester.read(source, READ)
    assert tally.outcomes == {"unreadable": 1, "completed": 1} and marked == ["1"]
    assert goal_status(started, "cleo@example.com")[0] == "done"
    assert goal_status(started, "ben@example.com")[0] == "open"
    with started.reading() as conn:
        assert conn.execute(select(received_table.c.outcome)).scalars().all() == ["completed"]


def test_the_same_reply_twice_in_one_read_is_acted_on_and_forwarded_once(
    started: Store, ingester: Ingester, outbox: Outbox, tmp_path: Path
) -> None:
    box = mailbox.mbox(tmp_path / "replies.mbox")
    for _ in range(2):  # e.g. the same export appended twice
        box.add(reply("not_done_yet.eml"))
        box.add(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"))
    box.close()
    with opened(MboxSource(str(tmp_path / "replies.mbox"))) as source:
        tally = ingester.read(source, READ)
    assert tally.outcomes == {"replied": 1, "completed": 1, "seen": 2}
    assert (
        len(outbox) == 1 and len(events(started, "replied")) == 1 and len(events(started, "completed")) == 1
    )


def test_not_yet_to_the_reply_done_address_completes_nothing_and_reaches_a_person(
    started: Store, ingester: Ingester, outbox: Outbox
) -> None:
    _, token = done_token(started, "short")
    message = reply(
        "mailto_done.eml", TOKEN=token, **{"Sent from my iPhone": "Not yet, I need another week."}
    )
    assert ingester.ingest(message, READ)
    assert goal_status(started)[0] == "open"
    [event] = events(started, "replied")
    assert event.data["step"] == "short-kickoff" and event.data["excerpt"].startswith("Not yet")
    assert len(outbox) == 1  # the owner reads it
    empty = reply(
        "mailto_done.eml", TOKEN=token, **{"5E0B1D2C": "5E0B1D2D"}
    )  # just sent, as the link makes it
    assert ingester.ingest(empty, READ) and goal_status(started)[0] == "done"
