"""Composing a large send in a process of its own: the same emails, each sent once, whatever it does."""

import dataclasses
import datetime as dt
import logging
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from conftest import EMAILS, CohortFactory, SMTPServer
from drip.config import load_settings
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.sending.composer import TRIAL_BATCHES, Composed, Composer, IdleMeter
from drip.sending.dispatcher import Dispatcher
from drip.sending.transport import open_transport
from drip.storage.store import Store, delivery_table

WELCOMES_DUE = dt.datetime(2027, 1, 11, 15, 0, tzinfo=dt.UTC)
PEOPLE = 14
#: small batches, so that a few people make a send of several full batches
BATCH = 4
ZONES = ["America/New_York", "Asia/Tokyo", "Europe/London"]


@pytest.fixture
def crowd(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> Store:
    people = "".join(f"p{n}@example.com,Pat{n} Lee,{ZONES[n % 3]}\n" for n in range(PEOPLE))
    with store.transaction() as conn:
        enrol.sync_cohort(
            conn, load_cohort(make_cohort(roster="email,name,timezone\n" + people), [EMAILS]), now
        )
    return store


def worker(db: Store, url: str, composers: int, transport=None) -> Dispatcher:
    base = load_settings(environ={}, options={"base_url": "https://drip.example.com"})
    settings = dataclasses.replace(base, smtp_url=url, compose_processes=composers)
    return Dispatcher(db, settings, transport or (lambda: open_transport(url)), batch_size=BATCH)


def welcome_statuses(db: Store) -> list[str]:
    with db.reading() as conn:
        return list(
            conn.execute(select(delivery_table.c.status).where(delivery_table.c.step == "welcome")).scalars()
        )


def send_again(db: Store, relay: SMTPServer) -> None:
    """Make the welcomes due again, as if never sent, and forget what the relay got."""
    with db.transaction() as conn:
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.step == "welcome")
            .values(status="scheduled", message_id=None, sent_at=None, attempts=0)
        )
    relay.messages.clear()


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch handed to a composing process."""
    sizes: list[int] = []
    submit = Composer.submit

    def counted(self, task):
        sizes.append(len(task.jobs))
        return submit(self, task)

    monkeypatch.setattr(Composer, "submit", counted)
    return sizes


def test_composed_aside_or_here_each_email_goes_once_and_byte_for_byte_the_same(
    crowd: Store, relay: SMTPServer, submitted: list[int]
) -> None:
    tally = worker(crowd, relay.url, 1).run_until_idle(WELCOMES_DUE)
    assert sum(submitted) == PEOPLE, "every batch was composed aside"
    aside = sorted(m.data for m in relay.messages)
    assert tally.sent == PEOPLE
    assert sorted(m.recipients[0] for m in relay.messages) == sorted(
        f"p{n}@example.com" for n in range(PEOPLE)
    )
    assert set(welcome_statuses(crowd)) == {"sent"}

    # The same deliveries once more, composed in the sending process: the very same bytes.
    send_again(crowd, relay)
    submitted.clear()
    assert worker(crowd, relay.url, 0).run_until_idle(WELCOMES_DUE).sent == PEOPLE
    assert submitted == []
    assert sorted(m.data for m in relay.messages) == aside


def test_signed_aside_or_in_the_sending_threads_each_email_is_the_same_signed_bytes(
    crowd: Store, relay: SMTPServer, submitted: list[int], tmp_path: Path
) -> None:
    """The composing process signs what it composes; what is built here is signed by the transport."""
    from test_dkim import _RSA, pem, verify

    from drip.sending.dkim import Signer, signing
    from drip.sending.transport import signed

    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem(_RSA))

    def send(composers: int) -> list[bytes]:
        send_again(crowd, relay)
        base = load_settings(
            environ={"DRIP_DKIM_SELECTOR": "drip", "DRIP_DKIM_KEY_FILE": str(key_file)},
            options={"base_url": "https://drip.example.com"},
        )
        settings = dataclasses.replace(base, smtp_url=relay.url, compose_processes=composers)
        factory = lambda: signed(open_transport(relay.url), signing(settings))  # noqa: E731
        assert (
            Dispatcher(crowd, settings, factory, batch_size=BATCH).run_until_idle(WELCOMES_DUE).sent == PEOPLE
        )
        return sorted(m.data for m in relay.messages)

    aside = send(1)
    assert sum(submitted) == PEOPLE, "every batch was composed (and signed) aside"
    assert all(data.count(b"DKIM-Signature:") == 1 and verify(data, Signer(_RSA, "drip")) for data in aside)
    submitted.clear()
    assert send(0) == aside and submitted == []


def test_a_send_of_less_than_a_full_batch_is_composed_in_the_sending_process(
    crowd: Store, relay: SMTPServer, submitted: list[int]
) -> None:
    base = load_settings(environ={}, options={"base_url": "https://drip.example.com"})
    settings = dataclasses.replace(base, smtp_url=relay.url, compose_processes=1)
    one_batch = Dispatcher(crowd, settings, lambda: open_transport(relay.url), batch_size=PEOPLE + 1)
    assert one_batch.run_until_idle(WELCOMES_DUE).sent == PEOPLE
    assert submitted == []  # starting a process would cost more than it saves


def test_when_the_composing_process_dies_its_batches_are_built_here_and_each_email_goes_once(
    crowd: Store, relay: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    killed: list[int | None] = []

    class KillingTheComposer:
        """Kills the composing process at the first email, while it is composing the next batch."""

        def __init__(self) -> None:
            self.inner = open_transport(relay.url)

        def send(self, *args):
            if not killed:
                for child in multiprocessing.active_children():
                    child.kill()
                    killed.append(child.pid)
            return self.inner.send(*args)

        def close(self) -> None:
            self.inner.close()

    with caplog.at_level(logging.WARNING, logger="drip.sending.composer"):
        tally = worker(crowd, relay.url, 1, KillingTheComposer).run_until_idle(WELCOMES_DUE)
    assert killed, "the composing process was running"
    assert "composing in this process from now on: the composing process" in caplog.text
    assert tally.sent == PEOPLE
    recipients = [m.recipients[0] for m in relay.messages]
    assert sorted(recipients) == sorted(f"p{n}@example.com" for n in range(PEOPLE))  # each once
    assert set(welcome_statuses(crowd)) == {"sent"}


@pytest.mark.parametrize(
    ("chosen", "share", "given_up"),
    [
        (False, 0.5, True),  # two busy processes per core: composing aside only adds the passing
        (False, 0.9, False),  # a core of its own, nearly
        (True, 0.5, False),  # DRIP_COMPOSE_PROCESSES=1 says so
    ],
)
def test_composing_aside_stops_when_it_has_no_core_of_its_own(
    chosen: bool, share: float, given_up: bool
) -> None:
    composer = Composer(chosen=chosen)
    composer.judge(Composed([], 0.01, 1.0))  # the first batch loads the templates: not counted
    for _ in range(TRIAL_BATCHES):
        assert composer.usable
        composer.judge(Composed([], share, 1.0))
    assert composer.usable is not given_up
    assert not composer.failed


ORPHANING = """
import datetime as dt, multiprocessing, time
from drip.sending.composer import Composer, Task
from drip.storage.records import Batch

if __name__ == "__main__":
    composer = Composer(chosen=True)
    composer.submit(Task(dt.datetime.now(dt.UTC), "https://drip.example.com", "i", {}, Batch({}, {}, {}), []))
    composer.result()
    print(multiprocessing.active_children()[0].pid, flush=True)
    time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # ended; a zombie only waits for its new parent to reap it


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_composing_process_ends_when_the_sending_process_is_killed() -> None:
    """kill -9 of a worker must not leave its composing process behind."""
    with subprocess.Popen([sys.executable, "-c", ORPHANING], stdout=subprocess.PIPE, text=True) as sender:
        assert sender.stdout is not None
        pid = int(sender.stdout.readline())
        assert not _gone(pid)
        sender.kill()
        sender.wait()
        deadline = time.monotonic() + 10
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid)


class FakeMachine:
    """A /proc/stat whose first line the test writes, and a clock the test moves."""

    def __init__(self, folder: Path) -> None:
        self.stat, self.now = folder / "stat", 100.0
        self.busy = self.idle = 0
        self.write()

    def write(self) -> None:
        # user nice system idle iowait irq softirq steal guest guest_nice
        self.stat.write_text(f"cpu  {self.busy} 0 0 {self.idle} 0 0 0 0 0 0\ncpu0 ...\n")

    def run(self, seconds: float, idle_share: float, cores: int) -> None:
        jiffies = int(seconds * 100 * cores)
        self.idle += int(jiffies * idle_share)
        self.busy += jiffies - int(jiffies * idle_share)
        self.now += seconds
        self.write()


@pytest.mark.parametrize(("idle_share", "takes"), [(0.5, True), (0.05, False)])
def test_composing_aside_starts_only_where_a_core_sat_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle_share: float, takes: bool
) -> None:
    """One worker on two cores leaves about one idle; two workers leave none."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    machine = FakeMachine(tmp_path)
    composer = Composer(meter=IdleMeter(machine.stat, lambda: machine.now))
    machine.run(0.05, idle_share, cores=2)
    assert not composer.takes(full=True), "not before the machine was watched a while"
    assert composer.usable
    machine.run(0.5, idle_share, cores=2)
    assert not composer.takes(full=False), "a batch that is not full never starts it"
    assert composer.takes(full=True) is takes
    assert composer.usable is takes  # decided once
    assert not composer.started


def test_a_machine_that_does_not_say_how_idle_it_is_composes_in_place(tmp_path: Path) -> None:
    clock = iter([0.0, 1.0, 2.0])
    composer = Composer(meter=IdleMeter(tmp_path / "no-such-stat", lambda: next(clock)))
    assert not composer.takes(full=True)
    assert Composer(chosen=True, meter=IdleMeter(tmp_path / "no-such-stat")).takes(full=True)


def test_stopping_while_a_batch_is_composed_aside_gives_it_back_promptly(
    crowd: Store, relay: SMTPServer
) -> None:
    """SIGTERM lands while the composing process holds a batch: the run ends at once, what was not
    sent goes back to the queue unsent, and nothing is lost."""
    holder: list[Dispatcher] = []

    class StoppingAtTheFirstEmail:
        def __init__(self) -> None:
            self.inner = open_transport(relay.url)

        def send(self, *args):
            holder[0].stop.set()  # as drip run's SIGTERM handler does
            return self.inner.send(*args)

        def close(self) -> None:
            self.inner.close()

    holder.append(worker(crowd, relay.url, 1, StoppingAtTheFirstEmail))
    began = time.monotonic()
    tally = holder[0].run_until_idle(WELCOMES_DUE)
    assert time.monotonic() - began < 4, "no wait for the composing process"
    statuses = welcome_statuses(crowd)
    assert tally.sent == statuses.count("sent") == len(relay.messages) >= 1
    assert statuses.count("scheduled") == PEOPLE - tally.sent  # given back, none left claimed
    assert multiprocessing.active_children() == []
