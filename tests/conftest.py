"""Shared fixtures: clean environment, a fixed now, a database on each backend, cohort folders."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from drip.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent
EMAILS = ROOT / "emails"
PROGRAM = EMAILS / "crawl-walk-run"
POSTGRES_ENV = "DRIP_TEST_POSTGRES_URL"

#: fixtures kept in modules of their own
pytest_plugins = ["walked"]

COHORT_TOML = """\
name = "Test cohort"
program = "crawl-walk-run"
start = 2027-01-11
timezone = "America/New_York"
send_time = "09:00"
skip_weekends = true
sender = "Comms <comms@example.com>"
owners = ["owner@example.com"]
"""

ROSTER = """\
email,name,timezone,objective
ana@example.com,Ana Ruiz,America/New_York,sales
ben@example.com,Ben Ito,Asia/Tokyo,marketing
cleo@example.com,Cleo Hart,Europe/London,customer service
"""


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, _session_cache: Path) -> None:
    """Keep the developer's own DRIP_* settings, and drip's cache folder, out of every test.

    The tests share one cache folder: what it holds (inlined CSS, compiled templates) is keyed by
    its whole input, and starting the example cohort compiles five languages' templates.
    """
    for name in list(os.environ):
        if name.startswith("DRIP_") and not name.startswith("DRIP_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))


@pytest.fixture
def now() -> dt.datetime:
    """A week before the test cohort starts."""
    return dt.datetime(2027, 1, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


CohortFactory = Callable[..., Path]


@pytest.fixture
def make_cohort(tmp_path: Path) -> CohortFactory:
    """Write a cohort folder; ``toml`` replaces or extends cohort.toml, ``roster`` the CSV."""

    def make(
        roster: str | bytes = ROSTER,
        toml: str = COHORT_TOML,
        extra_toml: str = "",
        name: str = "test-cohort",
    ) -> Path:
        folder = tmp_path / "cohorts" / name
        folder.mkdir(parents=True, exist_ok=True)
        if not (tmp_path / "emails").exists():
            # A project of its own: cohorts/ beside emails/, as drip expects.
            (tmp_path / "emails").symlink_to(EMAILS, target_is_directory=True)
        (folder / "cohort.toml").write_text(toml + extra_toml, encoding="utf-8")
        data = roster.encode("utf-8") if isinstance(roster, str) else roster
        (folder / "roster.csv").write_bytes(data)
        return folder

    return make


# --- a real SMTP server on loopback ----------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


class _Collector:
    """An aiosmtpd handler that keeps every message, or answers as a test tells it to."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.refuse_with: str | None = None
        #: per recipient: replies to give at RCPT before accepting it
        self.rcpt_replies: dict[str, list[str]] = {}
        #: replies to give at the end of DATA, one per message, before accepting again
        self.data_replies: list[str] = []
        #: replies to give to MAIL FROM, one per message, before accepting again
        self.mail_replies: list[str] = []
        #: keep the next N messages, then drop the connection instead of answering
        self.drop_after_data = 0
        #: seconds to take over each message
        self.delay = 0.0
        #: offer ESMTP PIPELINING (RFC 2920), as Postfix and Exchange do
        self.pipelining = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 - aiosmtpd's name
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802 - aiosmtpd's name
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        replies = self.rcpt_replies.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse_with:
            return self.refuse_with
        if self.data_replies:
            return self.data_replies.pop(0)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        if self.drop_after_data:
            self.drop_after_data -= 1
            server.transport.close()
            return "250 accepted, but the client never hears it"
        return "250 Message accepted"


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: _Collector

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_pages(process, port: int, what: str, seconds: float = 20) -> None:
    """Wait until ``process`` answers /healthz on ``port``; fail if it exits or takes too long."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                assert answer.status == 200
                return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, f"{what} served no pages"
            time.sleep(0.1)


@contextmanager
def running_smtp_server(**options) -> Iterator[SMTPServer]:
    from aiosmtpd.controller import Controller

    handler = _Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), **options)
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """aiosmtpd on a free loopback port, collecting what it is sent."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture(params=["plain", "pipelining"])
def relay(request: pytest.FixtureRequest) -> Iterator[SMTPServer]:
    """The same server, once as is and once offering PIPELINING, so both ways of sending are tested."""
    with running_smtp_server() as server:
        server.handler.pipelining = request.param == "pipelining"
        yield server


@pytest.fixture
def auth_smtp_server() -> Iterator[SMTPServer]:
    """aiosmtpd that wants a login: user "drip", password "right"."""
    from aiosmtpd.smtp import AuthResult

    def authenticate(server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd itself answers 235 or 535
        return AuthResult(
            success=auth_data.login == b"drip" and auth_data.password == b"right", handled=False
        )

    with running_smtp_server(
        authenticator=authenticate, auth_required=True, auth_require_tls=False
    ) as server:
        yield server


# --- databases ----------------------------------------------------------------


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """Create an empty database on the server named by DRIP_TEST_POSTGRES_URL; drop it afterwards."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        if os.environ.get("DRIP_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"{POSTGRES_ENV} is not set but DRIP_TEST_REQUIRE_POSTGRES is")
        pytest.skip(f"{POSTGRES_ENV} is not set; PostgreSQL tests need a server")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"drip_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """One database for the session's PostgreSQL tests; emptied after each test."""
    with throwaway_postgres_database() as url:
        yield url


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but holds nothing: a new SQLite file's place, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with throwaway_postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'drip.db'}"
        return
    url = request.getfixturevalue("postgres_server_url")
    yield url
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ).scalars()
        names = ", ".join(f'"{name}"' for name in tables)
        if names:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as opened:
        yield opened


def example_html(done: dict[str, str] | None = None, reader: int = 1) -> dict[str, str]:
    """Every step's HTML for one of the example cohort's participants (by default the second, the one
    with a delegate; 5 reads German, 7 Japanese), as of 29 January 2027; ``done`` marks goals done by
    reply."""
    from drip.core.message import build, cohort_view, links_for, recipient_of
    from drip.core.plan import expand_steps, program_end
    from drip.core.render import Templates
    from drip.launch.cohort import load_cohort

    cohort = load_cohort(ROOT / "cohorts" / "example", [EMAILS])
    person = cohort.participants[reader]
    timing = cohort.timing(person)
    links = links_for("https://drip.example.com", ["k" * 32], "comms@northwind.example",
                      program_end(cohort.program, timing))  # fmt: skip
    templates, view = Templates(cohort.program.path, cohort.program.language), cohort_view(cohort)
    recipient = recipient_of(person, cohort.program, timing, {"short": 1, "mid": 2, "long": 3}, done or {},
                             vias={key: "reply" for key in done or {}})  # fmt: skip
    when = dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC)
    out: dict[str, str] = {}
    for step in expand_steps(cohort.program, timing):
        built = build(
            templates, view, recipient, step, when=when, delivery_id="7", instance="ab12", links=links
        )
        out.setdefault(step.key, built.message.html)
    return out
