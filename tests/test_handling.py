"""Replies acted on, on SQLite and PostgreSQL: goals done, bounces, unsubscribes, replies forwarded, once each."""

import base64
import datetime as dt
import mailbox
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.strategies import emails
from sqlalchemy import select, update

from conftest import EMAILS, CohortFactory
from drip.cli import main
from drip.config import load_settings
from drip.core.errors import DripError
from drip.core.tokens import Action, make_token, thread_index
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.replies.handling import Forward, Ingester
from drip.replies.mailboxes import MaildirSource, MboxSource, opened
from drip.storage import keyring
from drip.storage.store import (
    Store,
    delivery_table,
    event_table,
    goal_table,
    participant_table,
    received_table,
)

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
        keyring.prepare(load_settings(environ={}), conn)
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
    writer = message_from_bytes(reply(name), policy=policy.default)["From"].addresses[0].addr_spec
    kickoff = f"<kickoff.{writer.split('@')[0]}@drip.test>"
    assert ingester.ingest(reply(name, kickoff), READ)
    assert goal_status(started, writer) == ("done", "reply")
    [event] = events(started, "completed")
    assert event.data["via"] == "reply" and event.data["message_id"].startswith("<")
    assert event.data["sender"] == writer and event.data["matched"] == kickoff
    assert event.data["rule"].startswith("a reply from the participant; done: ")
    with started.reading() as conn:
        reminder = conn.execute(
            select(delivery_table.c.status).join(participant_table).where(
                participant_table.c.email == writer, delivery_table.c.step == "short-reminder"
            )
        ).scalar_one()  # fmt: skip
    assert reminder == "cancelled"


def test_a_message_is_acted_on_once(started: Store, ingester: Ingester) -> None:
    data = reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>")
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
    from drip.storage.store import cohort_table

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


def test_a_bounce_of_an_email_drip_never_sent_changes_nothing(started: Store, ingester: Ingester) -> None:
    """Anyone can write a bounce naming an address; only one returning drip's own email counts."""
    assert ingester.ingest(reply("dsn_bounce.eml", "<unknown@elsewhere.example>"), READ)
    assert events(started, "bounced") == []
    with started.reading() as conn:
        assert conn.execute(select(received_table.c.outcome)).scalars().all() == ["unmatched"]


def done_token(db: Store, goal: str) -> tuple[int, str]:
    """Ana's goal row id and the token of its reply-done address."""
    with db.reading() as conn:
        goal_id = conn.execute(
            select(goal_table.c.id)
            .join(participant_table)
            .where(participant_table.c.email == "ana@example.com", goal_table.c.goal == goal)
        ).scalar_one()
        secret = keyring.signing_keys(load_settings(environ={}), conn)
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
            "replied",  # a forged token is no token: Ana's message names no email, so a person reads it
        ]


def test_the_unsubscribe_address(started: Store, ingester: Ingester) -> None:
    with started.reading() as conn:
        person = conn.execute(
            select(participant_table.c.id).where(participant_table.c.email == "ben@example.com")
        ).scalar_one()
        secret = keyring.signing_keys(load_settings(environ={}), conn)
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
    from drip import changes

    real = changes.complete

    def fails_for_ben(conn, person, key, now, evidence):
        if person.email == "ben@example.com":
            raise RuntimeError("a bug that only Ben's reply finds")
        return real(conn, person, key, now, evidence)

    monkeypatch.setattr(changes, "complete", fails_for_ben)
    box = mailbox.mbox(tmp_path / "replies.mbox")
    box.add(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"))
    box.add(reply("apple_mail.eml", "<kickoff.cleo@drip.test>"))
    box.close()
    marked: list[str] = []
    with opened(MboxSource(str(tmp_path / "replies.mbox"))) as source:
        monkeypatch.setattr(source, "done", marked.append)
        tally = ingester.read(source, READ)
    assert tally.outcomes == {"to_retry": 1, "completed": 1} and marked == ["1"]
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


def test_reopening_a_reply_completion_says_which_reply_it_undid(
    started: Store, ingester: Ingester, database_url: str
) -> None:
    assert ingester.ingest(reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>"), READ)
    result = CliRunner().invoke(
        main,
        ["--database-url", database_url, "participant", "reopen", "test-cohort", "ben@example.com", "--goal",
         "short", "--now", "2027-01-14T09:00Z"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "short reopened (undid the completion of 13 Jan 2027 16:00 UTC" in said
    assert "via reply from ben@example.com, a reply from the participant; done: 'finished' (English))" in said


# --- evidence: who may complete a goal by email ------------------------------------------------


def plain_reply(sender: str, answers: str, text: str = "Done!", **headers: str) -> bytes:
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    head = f"From: {sender}\r\nTo: comms@example.com\r\nSubject: Re: Crawl\r\nMessage-ID: <{abs(hash((sender, answers, text, extra)))}@mail.example>\r\n"
    if answers:
        head += f"In-Reply-To: {answers}\r\n"
    return (head + extra + "\r\n" + text + "\r\n").encode()


def received_outcomes(db: Store) -> list[str]:
    with db.reading() as conn:
        return conn.execute(select(received_table.c.outcome).order_by(received_table.c.id)).scalars().all()


def test_a_forged_reply_to_a_real_email_completes_nothing(
    started: Store, ingester: Ingester, outbox: Outbox
) -> None:
    """Someone who saw Ana's email (or its Message-ID) writes "done" as themselves or as her."""
    assert ingester.ingest(plain_reply("Mallory <mallory@evil.example>", KICKOFF_ID), READ)
    assert goal_status(started)[0] == "open" and received_outcomes(started) == ["replied"]
    [kept] = events(started, "replied")
    assert kept.data["why"].startswith(
        "it was sent from mallory@evil.example, which is not the participant's"
    )
    assert kept.data["from"] == "mallory@evil.example" and kept.data["matched"] == KICKOFF_ID
    assert len(outbox) == 1  # a person sees it, and can act if it was Ana's assistant after all
    # A guessed Message-ID of drip's old form, or of its new one, names no email that was sent.
    ingester.ingest(plain_reply("Ana Ruiz <ana@example.com>", "<drip.4.1a2b3c4d@example.com>", "Done"), READ)
    assert goal_status(started)[0] == "open"


def test_a_reply_to_a_message_id_of_the_old_form_still_counts(started: Store, ingester: Ingester) -> None:
    """Emails sent before Message-IDs carried an HMAC are still answered by their participants."""
    with started.transaction() as conn:
        conn.execute(
            update(delivery_table).where(delivery_table.c.message_id == KICKOFF_ID)
            .values(message_id="<drip.7.5e0b1d2c@example.com>")
        )  # fmt: skip
    assert ingester.ingest(plain_reply("ana@example.com", "<drip.7.5e0b1d2c@example.com>"), READ)
    assert goal_status(started) == ("done", "reply")


@pytest.mark.parametrize(
    ("sender", "headers", "done"),
    [
        ("Office of Ana Ruiz <pa.ruiz@example.com>", {}, True),  # her delegate
        ("Ana Ruiz <ana@example.com>", {"Sender": "pa.ruiz@example.com"}, True),
        ("ANA@EXAMPLE.COM", {}, True),
        ("ana+linkedin@example.com", {}, True),
        (
            "ana@example.com",
            {"Authentication_Results": "mx.example.com; dmarc=pass header.from=example.com"},
            True,
        ),
        (
            "ana@example.com",
            {"Authentication_Results": "mx.example.com; dmarc=fail header.from=example.com"},
            False,
        ),
        (
            "ana@example.com",
            {"Authentication_Results": "mx.other.example; dmarc=fail header.from=example.com"},
            True,
        ),
        ("ben@example.com", {}, False),  # another participant, in Ana's thread
    ],
)
def test_who_may_complete_a_goal_by_replying(
    started: Store, outbox: Outbox, sender: str, headers: dict[str, str], done: bool
) -> None:
    with started.transaction() as conn:
        conn.execute(update(participant_table).where(participant_table.c.email == "ana@example.com")
                     .values(delegate_email="pa.ruiz@example.com", delegate_key="pa.ruiz@example.com"))  # fmt: skip
    settings = load_settings(environ={"DRIP_INBOX_AUTHSERV_ID": "mx.example.com"})
    Ingester(started, settings, outbox).ingest(plain_reply(sender, KICKOFF_ID, **headers), READ)
    assert (goal_status(started)[0] == "done") is done
    if done:
        [event] = events(started, "completed")
        assert event.data["sender"] == sender.split("<")[-1].strip(">").lower()
        assert event.data["rule"].startswith(("a reply from the participant", "a reply from their delegate"))


def test_an_outlook_reply_tied_only_by_thread_index_counts(started: Store, ingester: Ingester) -> None:
    with started.reading() as conn:
        delivery = conn.execute(
            select(delivery_table.c.id).where(delivery_table.c.message_id == KICKOFF_ID)
        ).scalar()
        secret = keyring.signing_keys(load_settings(environ={}), conn)
    index = base64.b64encode(
        base64.b64decode(thread_index(secret, str(delivery), ENROLLED)) + b"\x00\x01\x02\x03\x04"
    )
    data = plain_reply(
        "Ana Ruiz <ana@example.com>", "", "Done.", Thread_Index=index.decode(), Thread_Topic="Crawl"
    )
    assert ingester.ingest(data, READ) and goal_status(started) == ("done", "reply")
    [event] = events(started, "completed")
    assert event.data["matched"] == f"Thread-Index of {KICKOFF_ID}"
    # An Outlook Thread-Index that drip did not make ties nothing; Ana's words still reach a person.
    forged = base64.b64encode(bytes(27)).decode()
    data = plain_reply("Ben Ito <ben@example.com>", "", "Done.", Thread_Index=forged)
    assert ingester.ingest(data, READ) and goal_status(started, "ben@example.com")[0] == "open"
    assert received_outcomes(started)[-1] == "replied"


def test_a_participant_writing_without_a_thread_reaches_a_person(
    started: Store, ingester: Ingester, outbox: Outbox
) -> None:
    assert ingester.ingest(plain_reply("Cleo Hart <CLEO@example.com>", "", "Done with LinkedIn!"), READ)
    assert goal_status(started, "cleo@example.com")[0] == "open" and received_outcomes(started) == ["replied"]
    [kept] = events(started, "replied")
    assert kept.data["matched"] == "sender" and "names no email of drip's" in kept.data["why"]
    assert len(outbox) == 1 and b"drip recorded nothing from it: it names no email" in outbox[0].data


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sender=emails())
def test_a_random_sender_never_completes_anything(started: Store, ingester: Ingester, sender: str) -> None:
    if sender.split("@")[0].split("+")[0].lower() in ("ana", "ben", "cleo") and sender.lower().endswith(
        "@example.com"
    ):
        return  # that is a participant
    ingester.ingest(plain_reply(f"Someone <{sender}>", KICKOFF_ID, "Done! All finished ✅"), READ)
    assert goal_status(started)[0] == "open" and events(started, "completed") == []


# --- bounces that mean what they say ------------------------------------------------------


def test_a_forged_bounce_changes_nothing(started: Store, ingester: Ingester) -> None:
    """A DSN naming a participant is only believed if it returns an email drip sent to that address."""
    invoice = reply("dsn_bounce.eml", "<invoice-443@vendor.example>")
    bens_email = reply("dsn_bounce.eml", "<kickoff.ben@drip.test>")  # names Ana, returns Ben's email
    no_headers = re.sub(rb"Content-Description: Undelivered Message Headers.*?(?=--3F2A11C0042\.1799676005/relay\.example\.com--)",
                        b"", reply("dsn_bounce.eml"), flags=re.S)  # fmt: skip
    for data in (invoice, bens_email, no_headers):
        assert ingester.ingest(data.replace(b"20270111140005", str(len(data)).encode()), READ)
    assert events(started, "bounced") == [] and received_outcomes(started) == ["unmatched"] * 3
    with started.reading() as conn:
        assert set(conn.execute(select(participant_table.c.status)).scalars()) == {"active"}


def test_soft_bounces_stop_the_mail_after_several_on_more_than_one_day(
    started: Store, outbox: Outbox
) -> None:
    settings = load_settings(environ={"DRIP_SOFT_BOUNCE_LIMIT": "3", "DRIP_SOFT_BOUNCE_DAYS": "14"})
    ingester = Ingester(started, settings, outbox)
    full = (
        reply("dsn_bounce.eml", WELCOME_ID)
        .replace(b"5.1.1", b"5.2.2")
        .replace(b"User unknown", b"Mailbox full")
    )

    def bounce_at(when: dt.datetime, n: int) -> str:
        ingester.ingest(full.replace(b"20270111140005", f"soft{n}".encode()), when)
        with started.reading() as conn:
            return conn.execute(
                select(participant_table.c.status).where(participant_table.c.email == "ana@example.com")
            ).scalar_one()

    day = dt.datetime(2027, 1, 14, 9, tzinfo=UTC)
    assert [bounce_at(day + dt.timedelta(minutes=n), n) for n in range(3)] == ["active"] * 3  # one bad hour
    assert bounce_at(day + dt.timedelta(days=20), 3) == "active"  # the first three are out of the window
    assert bounce_at(day + dt.timedelta(days=21), 4) == "active"
    assert bounce_at(day + dt.timedelta(days=22), 5) == "bounced"  # three within 14 days, on three days
    [event] = events(started, "bounced")
    assert event.data["label"].startswith("3 soft bounces in 14 days, the last: 5.2.2")


def test_a_delegates_bounce_stops_copying_them_only(started: Store, ingester: Ingester) -> None:
    with started.transaction() as conn:
        conn.execute(update(participant_table).where(participant_table.c.email == "ana@example.com")
                     .values(delegate_email="pa@example.com", delegate_key="pa@example.com"))  # fmt: skip
    data = reply("dsn_bounce.eml", WELCOME_ID, **{"rfc822; ana@example.com": "rfc822; pa@example.com",
                                                  "rfc822;ana@example.com": "rfc822;pa@example.com"})  # fmt: skip
    assert ingester.ingest(data, READ) and received_outcomes(started) == ["delegate_bounced"]
    with started.reading() as conn:
        ana = conn.execute(
            select(participant_table).where(participant_table.c.email == "ana@example.com")
        ).one()
    assert (ana.status, ana.delegate_bounced) == ("active", "pa@example.com")
    [event] = events(started, "delegate_bounced")
    assert event.data["delegate"] == "pa@example.com" and event.data["matched"] == WELCOME_ID


def test_messages_drip_will_not_read_are_set_aside_once(
    started: Store, outbox: Outbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A message too large, or nested to exhaust the parser, is recorded once and never read again."""
    settings = load_settings(environ={"DRIP_MAX_MESSAGE_BYTES": "300000"})
    ingester = Ingester(started, settings, outbox)
    nested = b"".join(
        f"Content-Type: multipart/mixed; boundary=b{n}\r\n\r\n--b{n}\r\n".encode() for n in range(3000)
    )
    huge = reply("gmail_top_posted.eml", "<kickoff.ben@drip.test>") + b"x" * 400_000
    box = mailbox.mbox(tmp_path / "odd.mbox")
    for data in (b"From: a@example.com\r\nMessage-ID: <deep@x>\r\n" + nested, huge):
        box.add(data)
    box.add(reply("apple_mail.eml", "<kickoff.cleo@drip.test>"))
    box.close()
    for attempt in range(2):
        with opened(MboxSource(str(tmp_path / "odd.mbox"), limit=settings.max_message_bytes)) as source:
            marked: list[str] = []
            source.done = marked.append  # type: ignore[method-assign]
            tally = ingester.read(source, READ)
        assert marked == ["0", "1", "2"], "dealt with: never read again from an IMAP folder"
        if attempt == 0:
            assert tally.outcomes == {"unreadable": 1, "too_large": 1, "completed": 1}
    assert caplog.text.count("set aside, never to be read again") == 2  # said once each
    with started.reading() as conn:
        kept = conn.execute(select(received_table.c.outcome)).scalars().all()
    assert sorted(kept) == ["completed", "too_large", "unreadable"]


def answer_of(db: Store, email: str = "ana@example.com", goal: str = "short") -> str | None:
    with db.reading() as conn:
        return conn.execute(
            select(goal_table.c.answer)
            .join(participant_table)
            .where(participant_table.c.email == email, goal_table.c.goal == goal)
        ).scalar_one()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Done, here it is: https://www.linkedin.com/in/ana-ruiz/\r\n\r\n-- \r\nAna Ruiz\r\nVP Sales",
         "https://www.linkedin.com/in/ana-ruiz/"),
        ("Done! linkedin.com/in/ana-ruiz", "https://linkedin.com/in/ana-ruiz"),
        ("Done!\r\n\r\n> On Monday, Comms wrote:\r\n> https://drip.example.com/done/x", None),
        ("Done. javascript:alert(1)", None),
    ],
)  # fmt: skip
def test_a_reply_that_completes_a_goal_answers_its_question(
    started: Store, ingester: Ingester, text: str, kept: str | None
) -> None:
    """Crawl asks for the profile's address: the reply's own first good address is kept, never the
    quoted email's, never a script."""
    assert ingester.ingest(plain_reply("ana@example.com", KICKOFF_ID, text), READ)
    assert goal_status(started) == ("done", "reply")
    assert answer_of(started) == kept
    [event] = events(started, "completed")
    assert event.data.get("answer") == kept


def test_a_reply_done_message_answers_with_its_words(started: Store, ingester: Ingester) -> None:
    """Walk asks which five voices: a reply-done message's own words answer it, its quote does not."""
    _, token = done_token(started, "mid")
    words = "Done: Kara Swisher, Ben Thompson, Axios Pro Rata, FT Alphaville and <b>Stratechery</b>."
    head, body = reply("mailto_done.eml", TOKEN=token).split(b"\n\n", 1)
    message = head + f"\n\n{words}\n\n".encode() + body
    assert ingester.ingest(message, READ)
    assert goal_status(started, goal="mid") == ("done", "reply")
    assert answer_of(started, goal="mid") == words  # kept as text: escaped wherever it is shown
