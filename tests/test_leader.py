"""One worker at a time runs the jobs that must run once (reading the inbox)."""

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from drip.storage.store import Store


def test_one_worker_leads_until_it_stops(database_url: str) -> None:
    with Store(database_url) as first, Store(database_url) as second:
        with first.lead("inbox") as mine, second.lead("inbox") as theirs:
            assert mine.held()
            assert not theirs.held()
            assert mine.held(), "the lead is sticky: asking again keeps it"
            mine.close()
            assert theirs.held()
            with first.lead("inbox") as again:
                assert not again.held()


def test_each_job_has_its_own_lead(database_url: str) -> None:
    with Store(database_url) as first, Store(database_url) as second:
        with first.lead("inbox") as inbox, second.lead("digest") as digest:
            assert inbox.held() and digest.held()


@pytest.mark.postgres
def test_a_worker_whose_session_dies_loses_the_lead_to_another(postgres_server_url: str) -> None:
    with Store(postgres_server_url) as first, Store(postgres_server_url) as second:
        with first.lead("inbox") as mine, second.lead("inbox") as theirs:
            assert mine.held()
            backend = mine._connection.dbapi_connection.info.backend_pid
            with second.transaction() as conn:  # as a server restart or a network cut would
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            # The server signals the session and returns; the lock goes when the backend has exited.
            deadline = time.monotonic() + 5
            while not theirs.held():
                assert time.monotonic() < deadline, "the dead session's lead was not given up"
                time.sleep(0.05)
            assert not mine.held()


def test_a_sqlite_worker_killed_with_minus_9_gives_up_the_lead(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'drip.db'}"
    Store(url).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from drip.storage.store import Store\n"
         "lead = Store(sys.argv[1], migrate=False).lead('inbox')\n"
         "assert lead.held(); print('held', flush=True); time.sleep(60)", url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with Store(url) as store, store.lead("inbox") as lead:
            assert not lead.held()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
            deadline = time.monotonic() + 5
            while not lead.held():
                assert time.monotonic() < deadline, "the lead was not given up"
                time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
