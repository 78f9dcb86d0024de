"""A campaign walked in virtual time with known outcomes, for the tests of what owners see."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from conftest import ROOT, CohortFactory, SMTPServer
from drip import changes, service
from drip.config import load_settings
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.replies.handling import Ingester
from drip.replies.mailboxes import source_for
from drip.storage.store import Store

UTC = dt.UTC
ROSTER = """\
email,name,timezone,delegate_email
ana@example.com,Ana Ruiz,America/New_York,pa.ruiz@example.com
ben@example.com,Ben Ito,Asia/Tokyo,
cleo@example.com,Cleo Hart,Europe/London,
dora@example.com,=Dora <b>Diaz</b>,America/New_York,
"""
ENROLLED = dt.datetime(2027, 1, 4, 12, tzinfo=UTC)
#: the end of Thursday 4 February in New York, the cohort's zone
AS_OF = dt.datetime(2027, 2, 5, tzinfo=UTC)
ANA_DONE = dt.datetime(2027, 1, 30, 15, tzinfo=UTC)  # Saturday 10:00 in New York
BEN_DONE = dt.datetime(2027, 2, 3, 10, tzinfo=UTC)  # Wednesday 05:00 in New York, overdue by then
CLEO_BOUNCED = dt.datetime(2027, 2, 2, 12, tzinfo=UTC)
BEN_REPLIED = dt.datetime(2027, 1, 31, 8, tzinfo=UTC)


@dataclasses.dataclass
class Walked:
    url: str
    folder: Path


@pytest.fixture
def walked(database_url: str, smtp_server: SMTPServer, make_cohort: CohortFactory) -> Walked:
    """Four executives to the end of Thursday 4 February.

    The short goal is due Monday 1 February. Ana does it on 30 January, a day after its reminder;
    Ben replies to his reminder without doing it, then does it on 3 February; Cleo's address
    bounces on 2 February; the relay refuses Dora's address ("no such user"), which bounces her at
    once, and Ana's delegate's, who is no longer copied after the first.
    """
    folder = make_cohort(roster=ROSTER)
    smtp_server.handler.rcpt_replies["dora@example.com"] = ["550 5.1.1 <dora@example.com>: no such user"] * 40
    smtp_server.handler.rcpt_replies["pa.ruiz@example.com"] = [
        "550 5.1.1 <pa.ruiz@example.com>: no such user"
    ]
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": "https://drip.example.com"}),
        database_url=database_url,
        smtp_url=smtp_server.url,
    )
    cohort = load_cohort(folder, [ROOT / "emails"])
    say = lambda message: None  # noqa: E731
    step = dt.timedelta(hours=6)
    with Store(database_url) as db:
        with db.transaction() as conn:
            enrol.sync_cohort(conn, cohort, ENROLLED)
        service.run_once(settings, db, dt.datetime(2027, 1, 10, tzinfo=UTC), ANA_DONE, step, say)
        with db.transaction() as conn:
            ana = changes.find_person(conn, "test-cohort", "ana@example.com")
            evidence = changes.Evidence("link", answer="https://www.linkedin.com/in/ana-ruiz")
            changes.complete(conn, ana, "short", ANA_DONE, evidence)
        reminder = next(
            m.message
            for m in smtp_server.messages
            if m.message["To"].addresses[0].addr_spec == "ben@example.com"
            and m.message["X-Drip-Step"] == "short-reminder"
        )
        reply = (
            "From: Ben Ito <ben@example.com>\r\nTo: comms@example.com\r\n"
            f"Subject: Re: {reminder['Subject']}\r\nIn-Reply-To: {reminder['Message-ID']}\r\n"
            "Message-ID: <ben-1@example.com>\r\nDate: Sun, 31 Jan 2027 08:00:00 +0000\r\n\r\n"
            "Travelling this week, will get to it on Wednesday.\r\n"
        ).encode()
        source = tmp_reply(folder, reply)
        Ingester(db, settings).read(source_for(file=str(source)), BEN_REPLIED)
        with db.transaction() as conn:
            cleo = changes.find_person(conn, "test-cohort", "cleo@example.com")
            changes.bounce(conn, cleo, CLEO_BOUNCED, changes.Evidence("reply"), "5.1.1 mailbox unavailable")
        service.run_once(settings, db, ANA_DONE, BEN_DONE, step, say)
        with db.transaction() as conn:
            ben = changes.find_person(conn, "test-cohort", "ben@example.com")
            changes.complete(conn, ben, "short", BEN_DONE, changes.Evidence("link"))
        service.run_once(settings, db, BEN_DONE, AS_OF, step, say)
    return Walked(database_url, folder)


def tmp_reply(folder: Path, data: bytes) -> Path:
    path = folder / "reply.eml"
    path.write_bytes(data)
    return path
