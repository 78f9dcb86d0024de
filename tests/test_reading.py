"""Reading replies as Outlook, Gmail, Apple Mail and mail servers write them: what counts as "done"."""

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drip.core import reading
from drip.core.bounces import Severity
from drip.core.reading import Kind
from drip.core.wording import Verdict

REPLIES = Path(__file__).parent / "data" / "replies"


def sample(name: str) -> reading.Incoming:
    return reading.read((REPLIES / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "kind", "verdict", "new_text"),
    [
        ("outlook_top_posted.eml", Kind.REPLY, Verdict.DONE, "Done – profile is live and I'm at 14 connections already."),
        ("gmail_top_posted.eml", Kind.REPLY, Verdict.DONE, "Finished! Thanks for the nudge, that was easier than I thought."),
        ("apple_mail.eml", Kind.REPLY, Verdict.DONE, "All done 👍"),
        ("bottom_posted.eml", Kind.REPLY, Verdict.DONE, "Yes, done, thanks. Twelve connections so far."),
        ("html_only.eml", Kind.REPLY, Verdict.DONE, "Completed ✅"),
        ("french_fait.eml", Kind.REPLY, Verdict.DONE, "C'est fait ! Mon profil est en ligne."),
        ("quoted_done_only.eml", Kind.REPLY, Verdict.DOUBT, "Thanks, I'll get to it next week once the board meeting is over."),
        ("not_done_yet.eml", Kind.REPLY, Verdict.NOT_DONE, "Not done yet, I'm travelling this week."),
        ("out_of_office.eml", Kind.AUTO_REPLY, Verdict.DOUBT, "I am out of the office until 18 January"),
        ("mailto_done.eml", Kind.REPLY, Verdict.EMPTY, ""),
    ],
)  # fmt: skip
def test_replies_as_mail_clients_write_them(name: str, kind: Kind, verdict: Verdict, new_text: str) -> None:
    incoming = sample(name)
    assert incoming.kind is kind
    assert incoming.reading().verdict is verdict
    assert incoming.new_text.startswith(new_text)
    assert "wrote" not in incoming.new_text and "a écrit" not in incoming.new_text  # the quote is cut
    if name != "mailto_done.eml":
        assert incoming.answers == ("<PLACEHOLDER@drip.test>",)


def test_a_delivery_status_notification() -> None:
    incoming = sample("dsn_bounce.eml")
    assert incoming.kind is Kind.BOUNCE and incoming.bounce is not None
    [failure] = incoming.bounce.failures
    assert (failure.address, failure.status, failure.severity) == ("ana@example.com", "5.1.1", Severity.HARD)
    assert "User unknown" in failure.diagnostic
    assert incoming.bounce.message_ids == ("<PLACEHOLDER@drip.test>",)


def test_a_delay_notice_is_a_bounce_with_nothing_failed() -> None:
    data = (REPLIES / "dsn_bounce.eml").read_bytes()
    delayed = data.replace(b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.7")
    incoming = reading.read(delayed)
    assert incoming.kind is Kind.BOUNCE and incoming.bounce is not None
    assert incoming.bounce.failures == () and incoming.bounce.only_delays


def test_tokens_from_a_plus_address_or_the_subject() -> None:
    token = "a" * 17 + "b" * 17
    data = (REPLIES / "mailto_done.eml").read_bytes().replace(b"TOKEN", token.upper().encode())
    assert reading.read(data).tokens == (token,)  # servers may change its case
    in_subject = data.replace(f"comms+{token.upper()}".encode(), b"comms").replace(
        b"Subject: Done:", f"Subject: [{token}] Done:".encode()
    )
    assert reading.read(in_subject).tokens == (token,)
    assert reading.read(data.replace(b"comms+", b"comms+x")).tokens == ()  # not a token: 35 characters


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
    assert (reading.read(data).kind is Kind.AUTO_REPLY) is auto


def test_a_message_without_a_message_id_gets_a_stable_key() -> None:
    data = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    assert reading.read(data).key == reading.read(data).key != reading.read(data + b"!").key
    assert reading.read(data).key.startswith("sha256:")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_are_read_without_an_error(data: bytes) -> None:
    incoming = reading.read(data)
    assert incoming.key


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["plain", "html"]))
def test_any_body_is_read_without_an_error(body: str, subtype: str) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "a@example.com"
    message["Subject"] = "Re: x"
    message.set_content(body, subtype=subtype)
    incoming = reading.read(message.as_bytes(policy=policy.SMTP))
    assert isinstance(incoming.new_text, str) and isinstance(incoming.reading().verdict, Verdict)
    assert message_from_bytes(message.as_bytes(), policy=policy.default)["From"] == "a@example.com"


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Out of Office", "I have finished for the year and will be back on 4 January."),
        ("Out of Office: Crawl: your LinkedIn profile", "Done for 2026! Back on Monday."),
        ("Automatic reply: Crawl", "Thank you for your email."),
        ("Abwesenheitsnotiz: Crawl", "Ich bin bis 8. Januar nicht im Büro. Alles erledigt."),
        ("Réponse automatique : Crawl", "Je suis absente jusqu'au 8 janvier."),
        ("Respuesta automática: Crawl", "Estoy fuera de la oficina."),
        ("Risposta automatica: Crawl", "Sono fuori ufficio."),
        ("Automatisch antwoord: Crawl", "Ik ben afwezig."),
        ("Resposta automática: Crawl", "Estou fora do escritório."),
        ("自動返信: Crawl", "不在にしております。"),
        ("自动回复: Crawl", "我在休假。"),
    ],
)
def test_an_out_of_office_without_auto_headers_is_still_automatic(subject: str, body: str) -> None:
    data = f"From: ana@example.com\r\nSubject: {subject}\r\nIn-Reply-To: <x@y>\r\n\r\n{body}\r\n"
    incoming = reading.read(data.encode())
    assert incoming.kind is Kind.AUTO_REPLY and incoming.auto_reason.startswith("Subject: away: ")


@pytest.mark.parametrize(
    "body",
    ["I have finished for the year, back on 4 January.", "Done. I'm out of the office until Monday.",
     "Erledigt. Ich bin ab morgen im Urlaub.", "不在にしておりますが、完了しました。"],
)  # fmt: skip
def test_out_of_office_words_in_a_reply_put_its_done_in_doubt(body: str) -> None:
    data = f"From: ana@example.com\r\nSubject: Re: Crawl\r\nIn-Reply-To: <x@y>\r\n\r\n{body}\r\n"
    incoming = reading.read(data.encode("utf-8"))
    assert incoming.kind is Kind.REPLY and incoming.reading().verdict is Verdict.DOUBT
