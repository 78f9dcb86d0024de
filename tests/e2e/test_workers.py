"""Whole drip run processes against a real SMTP server: crashes, stops, and two workers at once."""

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import EMAILS, CohortFactory, SMTPServer
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage.store import Store, delivery_table

PEOPLE = 150
DUE = "2027-01-11T15:00Z"  # every welcome (09:00 in New York) is due
DRIP = str(Path(sys.executable).with_name("drip"))


@pytest.fixture
def cohort_db(tmp_path: Path, make_cohort: CohortFactory) -> str:
    roster = "email,name,timezone\n" + "".join(
        f"p{n}@example.com,Person {n},America/New_York\n" for n in range(PEOPLE)
    )
    url = f"sqlite:///{tmp_path / 'drip.db'}"
    with Store(url) as db, db.transaction() as conn:
        enrol.sync_cohort(
            conn, load_cohort(make_cohort(roster), [EMAILS]), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
        )
    return url


class Worker:
    """A ``drip run`` process whose output goes to a file."""

    def __init__(
        self,
        url: str,
        smtp: SMTPServer,
        cwd: Path,
        *args: str,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
        environ.update(
            DRIP_DATABASE_URL=url, DRIP_SMTP_URL=smtp.url, DRIP_BASE_URL="https://drip.example.com"
        )
        environ.update(env or {})
        self.log = cwd / f"worker-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*wrap, DRIP, "run", *args], cwd=cwd, env=environ, stdout=out, stderr=out
            )

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def output(self) -> str:
        return self.log.read_text()


def spawn(url: str, smtp: SMTPServer, cwd: Path, *args: str) -> Worker:
    return Worker(url, smtp, cwd, *args)


def wait_for(condition, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def welcome_ids(url: str) -> set[str]:
    with Store(url, migrate=False) as db, db.reading() as conn:
        query = select(delivery_table.c.message_id).where(
            delivery_table.c.step == "welcome", delivery_table.c.status == "sent"
        )
        return set(conn.execute(query).scalars())


def in_flight(url: str) -> int:
    with Store(url, migrate=False) as db, db.reading() as conn:
        query = select(func.count()).where(delivery_table.c.status.in_(["claimed", "sending"]))
        return conn.execute(query).scalar_one()


def test_kill_9_mid_batch_then_restart_loses_nothing(
    cohort_db: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    smtp_server.handler.delay = 0.01
    first = spawn(cohort_db, smtp_server, tmp_path, "--once", "--now", DUE)
    wait_for(lambda: len(smtp_server.messages) >= 40)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert in_flight(cohort_db) > 0  # it died holding claims
    second = spawn(cohort_db, smtp_server, tmp_path, "--once", "--now", DUE)
    assert second.wait(60) == 0, second.output()
    received = [str(m.message["Message-ID"]) for m in smtp_server.messages]
    assert set(received) == welcome_ids(cohort_db) and len(set(received)) == PEOPLE
    assert len(received) - len(set(received)) <= 1  # only the message in flight may go twice
    assert in_flight(cohort_db) == 0


def test_two_workers_on_one_sqlite_file_send_everything_once(
    cohort_db: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    smtp_server.handler.delay = 0.002
    workers = [spawn(cohort_db, smtp_server, tmp_path, "--once", "--now", DUE) for _ in range(2)]
    for worker in workers:
        assert worker.wait(60) == 0, worker.output()
    received = [str(m.message["Message-ID"]) for m in smtp_server.messages]
    assert len(received) == len(set(received)) == PEOPLE
    assert set(received) == welcome_ids(cohort_db)


@pytest.mark.parametrize("mode", ["--no-web", "--once"], ids=["scheduled", "once"])
def test_sigterm_finishes_the_message_in_flight_and_gives_back_the_rest(
    cohort_db: str, smtp_server: SMTPServer, tmp_path: Path, mode: str
) -> None:
    smtp_server.handler.delay = 0.02
    worker = spawn(cohort_db, smtp_server, tmp_path, mode, "--now", DUE)
    wait_for(lambda: len(smtp_server.messages) >= 10)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.output()
    assert "finishing the message in flight" in worker.output()
    assert in_flight(cohort_db) == 0
    assert len(welcome_ids(cohort_db)) == len(smtp_server.messages) < PEOPLE  # each one sent is recorded
    rest = spawn(cohort_db, smtp_server, tmp_path, "--once", "--now", DUE)
    assert rest.wait(60) == 0
    received = [str(m.message["Message-ID"]) for m in smtp_server.messages]
    assert len(received) == len(set(received)) == PEOPLE


# --- many workers on one PostgreSQL database ------------------------------------------------

MANY = 10_000


@pytest.fixture
def postgres_cohort(make_cohort: CohortFactory) -> Iterator[str]:
    """A database of its own holding a cohort of 10,000 whose welcomes are all due at DUE."""
    from conftest import throwaway_postgres_database

    roster = "email,name,timezone\n" + "".join(
        f"p{n}@example.com,Person {n},America/New_York\n" for n in range(MANY)
    )
    with throwaway_postgres_database() as url:
        with Store(url) as db, db.transaction() as conn:
            enrol.sync_cohort(
                conn, load_cohort(make_cohort(roster), [EMAILS]), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
            )
        yield url


def sent_welcomes(url: str) -> int:
    with Store(url, migrate=False) as db, db.reading() as conn:
        query = select(func.count()).where(
            delivery_table.c.step == "welcome", delivery_table.c.status == "sent"
        )
        return conn.execute(query).scalar_one()


def held_by(url: str, host: str) -> int:
    with Store(url, migrate=False) as db, db.reading() as conn:
        query = select(func.count()).where(
            delivery_table.c.status.in_(["claimed", "sending"]),
            delivery_table.c.lease_owner.like(f"{host}:%"),
        )
        return conn.execute(query).scalar_one()


@pytest.mark.postgres
def test_four_workers_send_ten_thousand_emails_each_exactly_once(
    postgres_cohort: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    workers = [spawn(postgres_cohort, smtp_server, tmp_path, "--once", "--now", DUE) for _ in range(4)]
    for worker in workers:
        assert worker.wait(240) == 0, worker.output()
    received = [str(m.message["Message-ID"]) for m in smtp_server.messages]
    assert len(received) == len(set(received)) == MANY
    assert set(received) == welcome_ids(postgres_cohort)
    shares = [int(re.search(r"(\d+) sent", worker.output()).group(1)) for worker in workers]  # type: ignore[union-attr]
    assert sum(shares) == MANY and min(shares) > 0, f"every worker took a share: {shares}"


def _can_pose_as_another_host() -> bool:
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.postgres
@pytest.mark.skipif(
    not _can_pose_as_another_host(), reason="needs `unshare --uts` (root) to pose as another host"
)
def test_a_worker_on_another_machine_killed_mid_batch_loses_nothing(
    postgres_cohort: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    """kill -9 on a worker of another host: no pid to check, so only its lease running out frees its
    claims. It also held the lead for the inbox, which another worker takes over."""
    inbox = tmp_path / "inbox"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    env = {"DRIP_LEASE_SECONDS": "10", "DRIP_INBOX_URL": f"maildir://{inbox}", "DRIP_INBOX_EVERY": "10"}
    smtp_server.handler.delay = 0.001
    elsewhere = Worker(
        postgres_cohort, smtp_server, tmp_path, "--no-web", "--now", DUE, env=env,
        wrap=["unshare", "--uts", "sh", "-c", 'hostname elsewhere && exec "$@"', "sh"],
    )  # fmt: skip
    wait_for(lambda: "reads the inbox" in elsewhere.output(), timeout=60)
    here = [
        Worker(postgres_cohort, smtp_server, tmp_path, "--no-web", "--now", DUE, env=env) for _ in range(3)
    ]
    wait_for(lambda: len(smtp_server.messages) >= 2_000 and held_by(postgres_cohort, "elsewhere") > 0, 120)
    elsewhere.send_signal(signal.SIGKILL)
    elsewhere.wait(10)
    assert held_by(postgres_cohort, "elsewhere") > 0, "it died holding claims"
    wait_for(lambda: sent_welcomes(postgres_cohort) == MANY, timeout=180)
    wait_for(lambda: any("reads the inbox" in worker.output() for worker in here), timeout=60)
    for worker in here:
        worker.send_signal(signal.SIGTERM)
    for worker in here:
        assert worker.wait(30) == 0, worker.output()
    assert sum("reads the inbox" in worker.output() for worker in here) == 1
    received = [str(m.message["Message-ID"]) for m in smtp_server.messages]
    assert set(received) == welcome_ids(postgres_cohort) and len(set(received)) == MANY
    assert len(received) - len(set(received)) <= 1  # only the message in flight may go twice
    assert held_by(postgres_cohort, "") == 0


def test_two_workers_send_each_weekly_digest_once(
    database_url: str, smtp_server: SMTPServer, make_cohort: CohortFactory, tmp_path: Path
) -> None:
    """Both walk seven weeks of virtual time at once; each week's digest reaches each owner once."""
    from conftest import COHORT_TOML

    toml = COHORT_TOML.replace(
        'owners = ["owner@example.com"]', 'owners = ["owner@example.com", "sponsor@example.com"]'
    )
    with Store(database_url) as db, db.transaction() as conn:
        enrol.sync_cohort(
            conn, load_cohort(make_cohort(toml=toml), [EMAILS]), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
        )
    walk = ("--once", "--now", "2027-01-10T00:00Z", "--until", "2027-03-01T00:00Z")
    workers = [spawn(database_url, smtp_server, tmp_path, *walk) for _ in range(2)]
    for worker in workers:
        assert worker.wait(120) == 0, worker.output()
    digests = [m for m in smtp_server.messages if m.message["X-Drip-Step"] == "digest"]
    weeks = [f"{day} {month}" for day, month in
             [("18", "January"), ("25", "January"), ("1", "February"), ("8", "February"), ("15", "February"),
              ("22", "February")]]  # fmt: skip
    got = sorted((m.recipients[0], str(m.message["Subject"])) for m in digests)
    assert got == sorted(
        (owner, f"Week to {week}: Test cohort")
        for owner in ("owner@example.com", "sponsor@example.com")
        for week in weeks
    )
    assert len({m.message["Message-ID"] for m in digests}) == len(digests) == 12
    assert sum("weekly digest" in worker.output() for worker in workers) == 1, "one worker sends them"


def test_a_scheduled_worker_sends_the_digest_that_is_due(
    cohort_db: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    # Monday 18 January, 08:00:30 in New York: the first digest is due, with a week of mail behind it.
    worker = spawn(cohort_db, smtp_server, tmp_path, "--no-web", "--now", "2027-01-18T13:00:30Z")
    try:
        wait_for(lambda: any(m.message["X-Drip-Step"] == "digest" for m in smtp_server.messages), timeout=60)
        time.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.output()
    digests = [m for m in smtp_server.messages if m.message["X-Drip-Step"] == "digest"]
    assert [m.recipients for m in digests] == [["owner@example.com"]]
    assert str(digests[0].message["Subject"]) == "Week to 18 January: Test cohort"
    assert "Sent 1 weekly digest(s) to cohort owners." in worker.output()
