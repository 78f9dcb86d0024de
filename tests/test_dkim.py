"""DKIM signing: every message drip sends verifies with dkimpy, an independent verifier, and tampering fails."""

import datetime as dt
import re
from pathlib import Path

import dkim as dkimpy
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conftest import CohortFactory
from drip.cli import main
from drip.config import load_settings
from drip.core.errors import ConfigError
from drip.core.mime import Forward, Mailbox, Message, compose, compose_forward
from drip.sending.dkim import Signer, load_signer, relaxed_body

REPLIES = Path(__file__).parent / "data" / "replies"
_RSA = rsa.generate_private_key(65537, 2048)
_ED25519 = ed25519.Ed25519PrivateKey.generate()
KEYS = {"rsa": _RSA, "ed25519": _ED25519}


def pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def verify(data: bytes, signer: Signer, domain: str = "example.com") -> bool:
    """Verify with dkimpy, answering its DNS query only for the record at selector._domainkey.domain."""
    wanted = f"{signer.selector}._domainkey.{domain}.".encode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return signer.record().encode() if name == wanted else None

    return dkimpy.verify(data, dnsfunc=dns)


def message(**changes) -> Message:
    fields = dict(
        sender=Mailbox("Comms Team", "comms@example.com"),
        to=Mailbox("Ana Ruiz", "ana@corp.example"),
        subject="Crawl: your LinkedIn profile and 10 connections",
        date=dt.datetime(2027, 1, 11, 14, 0, tzinfo=dt.UTC),
        message_id="<drip.1.abc@example.com>",
        text="Hi Ana,\n\nThis week is about your profile.\n",
        html="<p>Hi Ana,</p>\n<p>This week is about your profile.</p>\n",
        boundary_seed="1",
        reply_to=Mailbox("Comms Team", "comms+r@example.com"),
        headers=(
            ("List-Unsubscribe", "<https://drip.example.com/u/" + "t" * 120 + ">, <mailto:u@example.com>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ),
    )
    fields.update(changes)
    return Message(**fields)


@pytest.fixture(params=sorted(KEYS))
def signer(request: pytest.FixtureRequest) -> Signer:
    return Signer(KEYS[request.param], "drip2027")


def test_a_signed_message_verifies_and_signs_the_headers_a_receiver_relies_on(signer: Signer) -> None:
    signed = signer.sign(compose(message(cc=(Mailbox("", "pa@corp.example"),))))
    assert verify(signed, signer)
    header = signed.split(b"\r\n\r\n")[0].decode().split("\r\nFrom:")[0]
    tags = dict(
        part.strip().split("=", 1) for part in re.sub(r"\s+", "", header.partition(":")[2]).split(";")
    )
    assert tags["c"] == "relaxed/relaxed" and tags["d"] == "example.com" and tags["s"] == "drip2027"
    assert tags["a"] == (
        "ed25519-sha256" if isinstance(signer.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
    )
    assert "t" not in tags, "no timestamp: a message sent again after a crash is the same bytes"
    signed_names = tags["h"].split(":")
    for name in ("from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type",
                 "list-unsubscribe", "list-unsubscribe-post"):  # fmt: skip
        assert name in signed_names
    assert signed_names.count("from") == 2 and signed_names.count("subject") == 2, "once more than present"
    assert signed_names.count("cc") == 2 and "list-unsubscribe-post" in signed_names
    assert max(len(line) for line in header.split("\r\n")) <= 998


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("the body", lambda data: data.replace(b"This week", b"This month", 1)),
        ("the subject", lambda data: data.replace(b"Subject: Crawl", b"Subject: Crawl!", 1)),
        ("the recipient", lambda data: data.replace(b"To: Ana Ruiz <ana@corp", b"To: Ana Ruiz <eve@corp", 1)),
        ("the unsubscribe link", lambda data: data.replace(b"drip.example.com/u/", b"evil.example/u/", 1)),
        ("a second From", lambda data: data.replace(b"\r\nTo:", b"\r\nFrom: ceo@example.com\r\nTo:", 1)),
        ("a Cc added", lambda data: data.replace(b"\r\nTo:", b"\r\nCc: eve@evil.example\r\nTo:", 1)),
        ("a second Subject", lambda data: data.replace(b"\r\nDate:", b"\r\nSubject: Urgent\r\nDate:", 1)),
        ("a line added at the end", lambda data: data + b"Wire the money today.\r\n"),
    ],
)
def test_a_tampered_message_fails(signer: Signer, what: str, change) -> None:
    signed = signer.sign(compose(message()))
    assert verify(signed, signer)
    assert not verify(change(signed), signer), what


def test_another_key_or_domain_fails(signer: Signer) -> None:
    signed = signer.sign(compose(message()))
    assert not verify(signed, Signer(rsa.generate_private_key(65537, 2048), signer.selector))
    assert not verify(signed, signer, domain="example.org")


def test_what_relays_do_on_the_way_keeps_the_signature(signer: Signer) -> None:
    """Relaxed canonicalisation: trace headers on top, headers refolded, blanks at line ends and at the end."""
    signed = signer.sign(compose(message(subject="Crawl: your LinkedIn profile " * 4)))
    head, _, body = signed.partition(b"\r\n\r\n")
    relayed = (
        b"Received: from drip.example.com (drip.example.com [192.0.2.1])\r\n\tby mx.corp.example; "
        b"Mon, 11 Jan 2027 14:00:01 +0000\r\n"
        b"Authentication-Results: mx.corp.example; dkim=pass\r\n"
        + re.sub(rb"\r\n[ \t]+", b" ", head).replace(b"Subject: ", b"Subject:\t  ")
        + b"\r\n\r\n"
        + body.replace(b"\r\n", b"  \r\n").replace(b"Hi Ana,", b"Hi \t Ana,")
        + b"\r\n\r\n"
    )
    assert verify(relayed, signer)


def test_signing_is_deterministic_so_a_resend_is_the_same_message(signer: Signer) -> None:
    data = compose(message())
    assert signer.sign(data) == signer.sign(data)


def test_the_domain_setting_overrides_the_from_domain() -> None:
    signer = Signer(_RSA, "drip", domain="mail.example.com")
    signed = signer.sign(compose(message()))
    assert b"d=mail.example.com;" in signed and verify(signed, signer, domain="mail.example.com")


printable = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(" \t\n"), max_size=200
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40),
    subject=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=150),
    text=printable,
    html=printable,
)
def test_any_message_drip_composes_verifies(
    signer: Signer, name: str, subject: str, text: str, html: str
) -> None:
    try:
        data = compose(message(to=Mailbox(name, "ana@corp.example"), subject=subject, text=text, html=html))
    except ValueError:  # a value compose refuses for a header never reaches signing
        return
    assert verify(signer.sign(data), signer)


def test_a_forward_of_a_message_with_messy_whitespace_verifies(signer: Signer) -> None:
    original = (REPLIES / "gmail_top_posted.eml").read_bytes().replace(b"Thanks", b"Thanks \t ")
    forward = Forward(
        sender=Mailbox("Comms", "comms@example.com"),
        to="owner@example.com",
        reply_to=Mailbox("Ben Ito", "ben@example.com"),
        subject="Fwd: Re: Crawl",
        date=dt.datetime(2027, 1, 14, tzinfo=dt.UTC),
        message_id="<fwd.1@example.com>",
        note="Ben wrote back; it needs a person.   \n\n\n",
        original=original.replace(b"\r\n", b"\n"),
    )
    assert verify(signer.sign(compose_forward(forward)), signer)


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n\r\n", b""),
        (b"a  b \t\r\n\r\n\r\n", b"a b\r\n"),
        (b"a\r\n \r\nb", b"a\r\n\r\nb\r\n"),
        (b"end with blanks  ", b"end with blanks\r\n"),
    ],
)
def test_relaxed_body_canonicalisation(body: bytes, canonical: bytes) -> None:
    """RFC 6376, 3.4.4 and its examples in 3.4.5."""
    assert relaxed_body(body) == canonical


# --- settings and key files ----------------------------------------------------------------------


def test_a_small_rsa_key_an_unsupported_key_and_a_passphrase_are_refused_with_the_fix(tmp_path: Path) -> None:
    small = tmp_path / "small.pem"
    small.write_bytes(pem(rsa.generate_private_key(65537, 1024)))
    with pytest.raises(ConfigError, match=r"RSA of 1024 bits; receivers need 2048 or more .*openssl genpkey"):
        load_signer("drip", str(small), None, "setting dkim_key_file")
    curve = tmp_path / "ec.pem"
    curve.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ConfigError, match=r"DKIM signs with RSA \(2048 bits or more\) or Ed25519"):
        load_signer("drip", str(curve), None, "setting dkim_key_file")
    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        _RSA.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret passphrase"),
        )
    )
    with pytest.raises(ConfigError, match=r"protected by a passphrase; drip reads an unencrypted key"):
        load_signer("drip", str(locked), None, "setting dkim_key_file")
    public = tmp_path / "public.pem"
    public.write_bytes(
        _RSA.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(ConfigError, match=r"public.pem holds no PEM private key"):
        load_signer("drip", str(public), None, "setting dkim_key_file")
    with pytest.raises(ConfigError, match=r"cannot read the DKIM key .*missing.pem"):
        load_signer("drip", str(tmp_path / "missing.pem"), None, "setting dkim_key_file")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DRIP_DKIM_SELECTOR": "drip"}, "DKIM signing also needs DRIP_DKIM_KEY_FILE"),
        ({"DRIP_DKIM_KEY_FILE": "k.pem"}, "DKIM signing also needs DRIP_DKIM_SELECTOR"),
        ({"DRIP_DKIM_DOMAIN": "example.com"}, "also needs DRIP_DKIM_SELECTOR and DRIP_DKIM_KEY_FILE"),
        ({"DRIP_DKIM_SELECTOR": "drip._domainkey", "DRIP_DKIM_KEY_FILE": "k.pem"}, "is not a DKIM selector"),
        ({"DRIP_DKIM_SELECTOR": "a b", "DRIP_DKIM_KEY_FILE": "k.pem"}, "is not a DKIM selector"),
        (
            {"DRIP_DKIM_SELECTOR": "drip", "DRIP_DKIM_KEY_FILE": "k.pem", "DRIP_DKIM_DOMAIN": "example"},
            "is not a domain name",
        ),
    ],
)
def test_half_a_dkim_set_up_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(environ=environ)


# --- every kind of email, end to end ----------------------------------------------------------------


@pytest.fixture
def dkim_env(tmp_path: Path) -> tuple[dict[str, str], Signer]:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem(_RSA))
    key_file.chmod(0o600)
    return {"DRIP_DKIM_SELECTOR": "drip2027", "DRIP_DKIM_KEY_FILE": str(key_file)}, Signer(_RSA, "drip2027")


def test_deliveries_digests_and_forwards_are_all_signed_through_a_relay(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path, relay, dkim_env
) -> None:
    env, signer = dkim_env
    env = {**env, "DRIP_SMTP_URL": relay.url}
    db = ["--database-url", f"sqlite:///{tmp_path / 'drip.db'}"]
    assert (
        runner.invoke(main, [*db, "start", str(make_cohort()), "--now", "2027-01-04T12:00Z"]).exit_code == 0
    )
    sent = runner.invoke(main, [*db, "run", "--once", "--now", "2027-01-11T15:00Z", "--no-web"], env=env)
    assert sent.exit_code == 0, sent.output
    welcome = next(r for r in relay.messages if r.recipients == ["ana@example.com"])
    digest = runner.invoke(main, [*db, "digest", "test-cohort", "--now", "2027-01-18T13:00Z"], env=env)
    assert digest.exit_code == 0, digest.output
    question = (
        f"From: Ana Ruiz <ana@example.com>\r\nTo: {welcome.message['Reply-To']}\r\n"
        f"Subject: Re: {welcome.message['Subject']}\r\nIn-Reply-To: {welcome.message['Message-ID']}\r\n"
        "Message-ID: <q.1@example.com>\r\nDate: Tue, 12 Jan 2027 09:00:00 -0500\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nCan my assistant set up the profile for me?  \r\n"
    )
    reply_file = tmp_path / "question.eml"
    reply_file.write_text(question, newline="")
    ingested = runner.invoke(main, [*db, "ingest", str(reply_file), "--now", "2027-01-12T15:00Z"], env=env)
    assert ingested.exit_code == 0, ingested.output

    kinds = []
    for received in relay.messages:
        assert verify(received.data, signer), received.message["Subject"]
        kinds.append(received.message["X-Drip-Step"] or received.message["Auto-Submitted"])
    assert sorted(kinds) == ["auto-forwarded", "digest", "welcome", "welcome", "welcome"]


def test_the_mail_catcher_keeps_signed_mail_too(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path, dkim_env
) -> None:
    env, signer = dkim_env
    env = {**env, "DRIP_MAIL_DIR": str(tmp_path / "mail")}
    db = ["--database-url", f"sqlite:///{tmp_path / 'drip.db'}"]
    assert (
        runner.invoke(main, [*db, "start", str(make_cohort()), "--now", "2027-01-04T12:00Z"]).exit_code == 0
    )
    digest = runner.invoke(main, [*db, "digest", "test-cohort", "--now", "2027-01-18T13:00Z"], env=env)
    assert digest.exit_code == 0, digest.output
    kept = list((tmp_path / "mail").rglob("*.eml"))
    assert kept and all(verify(path.read_bytes(), signer) for path in kept)


def test_a_bad_key_stops_sending_before_anything_goes(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path, smtp_server
) -> None:
    key_file = tmp_path / "small.pem"
    key_file.write_bytes(pem(rsa.generate_private_key(65537, 1024)))
    env = {
        "DRIP_DKIM_SELECTOR": "drip",
        "DRIP_DKIM_KEY_FILE": str(key_file),
        "DRIP_SMTP_URL": smtp_server.url,
    }
    db = ["--database-url", f"sqlite:///{tmp_path / 'drip.db'}"]
    assert (
        runner.invoke(main, [*db, "start", str(make_cohort()), "--now", "2027-01-04T12:00Z"]).exit_code == 0
    )
    result = runner.invoke(main, [*db, "run", "--once", "--now", "2027-01-11T15:00Z", "--no-web"], env=env)
    assert result.exit_code != 0 and "RSA of 1024 bits" in result.output
    assert smtp_server.messages == []
