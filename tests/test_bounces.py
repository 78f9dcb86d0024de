"""Bounces as mailers write them (tests/data/bounces, each with what it must mean), and RFC 3463 classes."""

import tomllib
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from drip.core import reading
from drip.core.bounces import Severity, severity, status_of
from drip.core.reading import Kind

BOUNCES = Path(__file__).parent / "data" / "bounces"
EXPECTED = tomllib.loads((BOUNCES / "expected.toml").read_text(encoding="utf-8"))


def test_the_corpus_lists_every_file() -> None:
    assert sorted(EXPECTED) == sorted(path.name for path in BOUNCES.glob("*.eml"))
    assert len(EXPECTED) >= 32


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_bounce_reads_as_its_mailer_means_it(name: str) -> None:
    expected = EXPECTED[name]
    incoming = reading.read((BOUNCES / name).read_bytes())
    outcome = expected["outcome"]
    if outcome in ("hard", "soft", "delegate"):
        assert incoming.kind is Kind.BOUNCE and incoming.bounce is not None
        failed = {f.address: f for f in incoming.bounce.failures}
        wanted = Severity.SOFT if outcome == "soft" else Severity.HARD
        for address in expected["addresses"]:
            assert address in failed, f"{name}: {address} not read among {sorted(failed)}"
            assert failed[address].severity is wanted, f"{name}: {failed[address]}"
        assert expected["status"] in {f.status for f in incoming.bounce.failures}
        assert expected["message_id"] in incoming.bounce.message_ids
    elif outcome == "delayed":
        assert incoming.kind is Kind.BOUNCE and incoming.bounce is not None
        assert incoming.bounce.failures == () and incoming.bounce.only_delays
    else:
        # Ignored: read as mail from a mailer, never as a reply; whether it returns an email drip sent to
        # the failed address is for drip ingest to find out (tests/test_corpus.py).
        assert incoming.kind is Kind.BOUNCE


@pytest.mark.parametrize(
    ("status", "diagnostic", "expected"),
    [
        ("5.1.1", "550 5.1.1 User unknown", Severity.HARD),
        ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", Severity.HARD),
        ("5.1.2", "bad destination domain", Severity.HARD),
        ("5.7.1", "550 5.7.1 Message rejected as spam for this recipient", Severity.HARD),
        ("5.2.2", "552 5.2.2 Mailbox full", Severity.SOFT),
        ("4.4.7", "Message expired", Severity.SOFT),
        ("4.2.2", "452 4.2.2 Over quota", Severity.SOFT),
        ("5.3.4", "552 5.3.4 Message too big", Severity.SOFT),
        ("5.7.133", "550 5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup", Severity.SOFT),
        ("5.4.1", "550 5.4.1 Recipient address rejected: Access denied", Severity.HARD),
        ("5.4.1", "No answer from host", Severity.SOFT),
        ("5.0.0", "550 5.1.1 <b@example.com>: Recipient address rejected", Severity.HARD),
        ("5.0.0", "User b not listed in Domino Directory", Severity.HARD),
        ("5.0.0", "message refused", Severity.SOFT),
        ("", "550 No such user here", Severity.HARD),
        ("", "552 Mailbox full, user unknown quota", Severity.SOFT),
        ("", "554 message refused", Severity.SOFT),
        ("", "450 try again later", Severity.SOFT),
    ],
)
def test_rfc_3463_classes(status: str, diagnostic: str, expected: Severity) -> None:
    assert severity(status, diagnostic) is expected


def test_the_precise_status_wins_over_a_generic_one() -> None:
    assert status_of("5.0.0", "550 5.1.1 User unknown") == "5.1.1"
    assert status_of("", "550 sorry") == "550"
    assert status_of("nothing here") == ""


def test_a_person_writing_about_a_bounce_is_not_a_bounce() -> None:
    """Prose that looks like a bounce counts only from a mailer (a daemon's address, an empty Return-Path)."""
    data = (
        b"From: Ana Ruiz <ana@example.com>\r\nTo: comms@example.com\r\nSubject: Undeliverable: my reply?\r\n"
        b"Message-ID: <x@example.com>\r\n\r\nMy mail to ben@example.com said 550 5.1.1 user unknown.\r\n"
    )
    assert reading.read(data).kind is Kind.REPLY


def test_every_corpus_file_is_mail_a_parser_reads() -> None:
    for path in BOUNCES.glob("*.eml"):
        assert message_from_bytes(path.read_bytes(), policy=policy.default)["From"], path.name
