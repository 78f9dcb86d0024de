"""Reading replies as Outlook, Gmail, Apple Mail and mail servers write them: what counts as "done"."""

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drip import inbound
from drip.inbound import Kind

REPLIES = Path(__file__).parent / "data" / "replies"


def sample(name: str) -> inbound.Incoming:
    return inbound.read((REPLIES / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "kind", "done", "new_text"),
    [
        (
            "outlook_top_posted.eml",
            Kind.REPLY,
            True,
            "Done – profile is live and I'm at 14 connections already.",
        ),
        (
            "gmail_top_posted.eml",
            Kind.REPLY,
            True,
            "Finished! Thanks for the nudge, that was easier than I thought.",
        ),
        ("apple_mail.eml", Kind.REPLY, True, "All done 👍"),
        ("bottom_posted.eml", Kind.REPLY, True, "Yes, done, thanks. Twelve connections so far."),
        ("html_only.eml", Kind.REPLY, True, "Completed ✅"),
        ("french_fait.eml", Kind.REPLY, True, "C'est fait ! Mon profil est en ligne."),
        (
            "quoted_done_only.eml",
            Kind.REPLY,
            False,
            "Thanks, I'll get to it next week once the board meeting is over.",
        ),
        ("not_done_yet.eml", Kind.REPLY, False, "Not done yet, I'm travelling this week."),
        ("out_of_office.eml", Kind.AUTO_REPLY, True, "I am out of the office until 18 January"),
        ("mailto_done.eml", Kind.REPLY, False, ""),
    ],
)
def test_replies_as_mail_clients_write_them(name: str, kind: Kind, done: bool, new_text: str) -> None:
    incoming = sample(name)
    assert incoming.kind is kind
    assert incoming.says_done() is done
    assert incoming.new_text.startswith(new_text)
    assert "wrote" not in incoming.new_text and "a écrit" not in incoming.new_text  # the quote is cut
    if name != "mailto_done.eml":
        assert incoming.answers == ("<PLACEHOLDER@drip.test>",)


def test_a_delivery_status_notification() -> None:
    incoming = sample("dsn_bounce.eml")
    assert incoming.kind is Kind.BOUNCE
    [bounce] = incoming.bounces
    assert (bounce.address, bounce.status) == ("ana@example.com", "5.1.1")
    assert "User unknown" in bounce.diagnostic
    assert incoming.bounced_message_id == "<PLACEHOLDER@drip.test>"


def test_a_delay_notice_is_not_a_bounce() -> None:
    data = (REPLIES / "dsn_bounce.eml").read_bytes()
    delayed = data.replace(b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.7")
    incoming = inbound.read(delayed)
    assert incoming.kind is Kind.BOUNCE and incoming.bounces == ()


def test_tokens_from_a_plus_address_or_the_subject() -> None:
    token = "a" * 17 + "b" * 17
    data = (REPLIES / "mailto_done.eml").read_bytes().replace(b"TOKEN", token.upper().encode())
    assert inbound.read(data).tokens == (token,)  # servers may change its case
    in_subject = data.replace(f"comms+{token.upper()}".encode(), b"comms").replace(
        b"Subject: Done:", f"Subject: [{token}] Done:".encode()
    )
    assert inbound.read(in_subject).tokens == (token,)
    assert inbound.read(data.replace(b"comms+", b"comms+x")).tokens == ()  # not a token: 35 characters


@pytest.mark.parametrize(
    ("header", "auto"),
    [
        ("Auto-Submitted: auto-generated", True),
        ("Auto-Submitted: no", False),
        ("X-Autoreply: yes", True),
        ("Precedence: bulk", True),
        ("Precedence: junk", True),
        ("Return-Path: <>", True),
        ("X-Auto-Response-Suppress: OOF", True),
        ("X-Mailer: Outlook", False),
    ],
)
def test_auto_replies_by_their_headers(header: str, auto: bool) -> None:
    data = f"From: a@example.com\r\nTo: comms@example.com\r\n{header}\r\nSubject: x\r\n\r\ndone\r\n".encode()
    assert (inbound.read(data).kind is Kind.AUTO_REPLY) is auto


@pytest.mark.parametrize(
    ("text", "done"),
    [
        ("Done!", True),
        ("done.", True),
        ("I've finished it, thanks", True),
        ("✅", True),
        ("✔️ all set", True),
        ("Erledigt, danke", True),
        ("¡Listo!", True),
        ("Fatto, grazie", True),
        ("Klaar!", True),
        ("Not done yet", False),
        ("Almost finished", False),
        ("I haven't finished", False),
        ("Is it done when I have 9 connections?", False),
        ("Noch nicht erledigt", False),
        ("Pas encore fini", False),
        ("Thanks, will do it tomorrow", False),
        ("", False),
    ],
)
def test_what_counts_as_done(text: str, done: bool) -> None:
    assert inbound.says_done(text) is done


def test_done_words_can_be_changed() -> None:
    assert inbound.says_done("Yes, sorted", words=["sorted"])
    assert not inbound.says_done("Done", words=["sorted"])


def test_a_message_without_a_message_id_gets_a_stable_key() -> None:
    data = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    assert inbound.read(data).key == inbound.read(data).key != inbound.read(data + b"!").key
    assert inbound.read(data).key.startswith("sha256:")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_are_read_without_an_error(data: bytes) -> None:
    incoming = inbound.read(data)
    assert incoming.key


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["plain", "html"]))
def test_any_body_is_read_without_an_error(body: str, subtype: str) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "a@example.com"
    message["Subject"] = "Re: x"
    message.set_content(body, subtype=subtype)
    incoming = inbound.read(message.as_bytes(policy=policy.SMTP))
    assert isinstance(incoming.new_text, str) and isinstance(incoming.says_done(), bool)
    assert message_from_bytes(message.as_bytes(), policy=policy.default)["From"] == "a@example.com"


@pytest.mark.parametrize(
    ("text", "taken_back"),
    [
        ("", False),
        ("Done!", False),
        ("Done! Not bad at all.", False),
        ("Not yet, I need another week.", True),
        ("I have not finished it.", True),
        ("Almost done.", True),
        ("Noch nicht, sorry.", True),
        ("Pas encore.", True),
    ],
)
def test_what_takes_a_reply_done_message_back(text: str, taken_back: bool) -> None:
    from drip.inbound import takes_back

    assert takes_back(text) is taken_back
