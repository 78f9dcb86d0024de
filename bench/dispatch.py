"""Benchmark end-to-end dispatch (claim -> render -> send -> record) to Postfix's smtp-sink.

    python bench/dispatch.py                  # 6,000 emails, 3 runs of each
    python bench/dispatch.py --smoke          # a tiny run against aiosmtpd, to check the script

Each drip run is ``drip run --once`` in a fresh process on a freshly started
cohort (SQLite), where every participant's welcome is due, with drip's default
settings; one more run of one process composes in the sending process
(``DRIP_COMPOSE_PROCESSES=0``), to show what composing aside costs and gains. Beside it, in the
same run, the raw ceiling: smtplib sending the same number of pre-built
messages of the same size to the same sink over the same number of
connections. "One process" is one drip process with one connection; "whole
machine" is two drip processes at once, one connection each, against two
raw senders at once. With ``--postgres``, two drip workers share one
database, beside the minimal loop: two processes that claim with SKIP LOCKED,
send prebuilt bytes and record each email with one UPDATE, on drip's own
tables. PostgreSQL's CPU per email is that of all its processes during the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import (  # noqa: E402
    add_postgres_option,
    children_cpu,
    describe,
    drip_environment,
    postgres_database,
    server_cpu,
)

DRIP = str(Path(sys.executable).with_name("drip"))
DUE = "2027-01-11T15:00Z"
COHORT_TOML = """\
name = "Dispatch benchmark"
program = "crawl-walk-run"
start = 2027-01-11
timezone = "America/New_York"
sender = "Comms <comms@example.com>"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_sink(port: int) -> subprocess.Popen | None:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        return None
    process = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "1024"], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


@contextmanager
def sink_on(port: int, smoke: bool) -> Iterator[str]:
    """Run Postfix's smtp-sink on ``port`` while the block runs, or, for a smoke run on a machine
    without it, aiosmtpd's sink; yield which."""
    sink = start_sink(port)
    if sink is not None:
        try:
            yield "Postfix smtp-sink"
        finally:
            sink.terminate()
            sink.wait()
        return
    if not smoke:
        raise SystemExit("Postfix's smtp-sink is needed: apt-get install postfix")
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "aiosmtpd (smoke run)"
    finally:
        controller.stop()


def prepare(folder: Path, people: int, name: str, url: str | None = None) -> str:
    """Start a cohort of ``people`` whose welcomes are all due (in a new SQLite file unless ``url`` is
    given); return its database URL."""
    from drip.launch import enrol
    from drip.launch.cohort import load_cohort
    from drip.storage.store import Store

    cohort = folder / "cohorts" / name
    cohort.mkdir(parents=True)
    if not (folder / "emails").exists():
        (folder / "emails").symlink_to(ROOT / "emails", target_is_directory=True)
    (cohort / "cohort.toml").write_text(COHORT_TOML)
    # Everyone a first name of their own, so that no email reuses another's subject or greeting.
    rows = "".join(f"p{n}@example.com,Ana{n} Ruiz\n" for n in range(people))
    (cohort / "roster.csv").write_text("email,name\n" + rows)
    url = url or f"sqlite:///{folder / (name + '.db')}"
    enrolled = dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
    with Store(url) as db:
        with db.transaction() as conn:
            enrol.sync_cohort(conn, load_cohort(cohort, [folder / "emails"]), enrolled)
        if db.engine.dialect.name == "postgresql":
            # Vacuum the freshly loaded tables now: otherwise autovacuum's first visit, a cost of the
            # launch, lands in the sending run's PostgreSQL CPU, more or less of it from run to run.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
    return url


class Measured:
    """One step's emails a second, and the CPU spent on each email, in µs."""

    def __init__(self, rate: float, cpu_us: float, server_us: float | None = None) -> None:
        self.rate, self.cpu_us, self.server_us = rate, cpu_us, server_us


def drip_runs(urls: list[str], smtp_url: str, folder: Path, **settings: str) -> Measured:
    """Run one ``drip run --once`` per database at once (with ``settings``, DRIP_ names, beside the
    defaults); return the total messages per second and the CPU of the drip processes (user + system,
    every thread, the composing process's included) per email."""
    env = drip_environment()
    env.update(DRIP_SMTP_URL=smtp_url, DRIP_BASE_URL="https://drip.example.com", DRIP_LEASE_SECONDS="600")
    env.update(settings)
    cpu_before = children_cpu()
    processes = [
        subprocess.Popen(
            [DRIP, "--database-url", url, "run", "--once", "--now", DUE],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for url in urls
    ]
    sent, slowest = 0, 0.0
    for process in processes:
        out, err = process.communicate(timeout=600)
        match = re.search(r"Done in ([\d.]+) s: (?:(\d+) sent|nothing due)", out)
        if process.returncode or not match:
            raise SystemExit(f"drip run failed: {out}\n{err}")
        slowest = max(slowest, float(match.group(1)))
        sent += int(match.group(2) or 0)  # a worker sharing a database may find the others took it all
    return Measured(sent / slowest, (children_cpu() - cpu_before) / sent * 1e6)


def sample_message(folder: Path, url: str) -> bytes:
    """One real message of the program, to size the raw ceiling's messages like drip's."""
    out = subprocess.run(
        [DRIP, "--database-url", url, "preview", str(folder / "cohorts" / "c0"), "--step", "welcome",
         "--format", "eml", "--now", "2027-01-04T00:00Z"],
        cwd=folder, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


RAW_SENDER = """
import smtplib, sys, time
host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = open(path, "rb").read()
connection = smtplib.SMTP(host, port)
start = time.perf_counter()
for n in range(count):
    connection.sendmail("comms@example.com", [f"p{n}@example.com"], data)
print(time.perf_counter() - start)
connection.quit()
"""


MINIMAL_LOOP = """
import os, smtplib, sys, time
import psycopg
dsn, host, port, path, due = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
data = open(path, "rb").read()
db = psycopg.connect(dsn, autocommit=True)
connection = smtplib.SMTP(host, port)
owner = f"minimal:{os.getpid()}"
start, sent = time.perf_counter(), 0
while True:
    claimed = db.execute(
        "UPDATE deliveries SET status = 'sending', lease_owner = %s, attempts = attempts + 1 "
        "WHERE id IN (SELECT id FROM deliveries WHERE status = 'scheduled' AND due_at <= %s "
        "ORDER BY due_at, id LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING id, participant_id",
        (owner, due),
    ).fetchall()
    if not claimed:
        break
    for delivery, person in claimed:
        message_id = f"<minimal.{delivery}@example.com>"
        connection.sendmail("comms@example.com", [f"p{person}@example.com"], data)
        db.execute(
            "UPDATE deliveries SET status = 'sent', sent_at = now(), message_id = %s, lease_owner = NULL "
            "WHERE id = %s AND lease_owner = %s",
            (message_id, delivery, owner),
        )
        sent += 1
print(sent, time.perf_counter() - start)
connection.quit()
"""


def minimal_runs(url: str, port: int, message: Path) -> Measured:
    """Two minimal senders on one PostgreSQL database: the least a sender with drip's guarantee does per
    email (claim a hundred with SKIP LOCKED, send each, one autocommitted UPDATE per sent email), on
    drip's own tables, so the same indexes and the same trigger-written "sent" event. No rendering."""
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    cpu_before, server_before = children_cpu(), server_cpu()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MINIMAL_LOOP, dsn, "127.0.0.1", str(port), str(message), DUE],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    done = [process.communicate()[0].split() for process in processes]
    server_after = server_cpu()
    sent = sum(int(count) for count, _ in done)
    measured = Measured(
        sent / max(float(seconds) for _, seconds in done), (children_cpu() - cpu_before) / sent * 1e6
    )
    if server_before is not None and server_after is not None:
        measured.server_us = (server_after - server_before) / sent * 1e6
    return measured


def raw_runs(port: int, counts: list[int], message: Path) -> Measured:
    """Send pre-built messages with plain smtplib, one process per connection; return messages per
    second and the senders' CPU per email (interpreter start-up included, as it is in drip's)."""
    cpu_before = children_cpu()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RAW_SENDER, "127.0.0.1", str(port), str(count), str(message)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for count in counts
    ]
    seconds = [float(process.communicate()[0]) for process in processes]
    return Measured(sum(counts) / max(seconds), (children_cpu() - cpu_before) / sum(counts) * 1e6)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--emails", type=int, default=6000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--smoke", action="store_true", help="60 emails, one run; aiosmtpd if there is no sink"
    )
    add_postgres_option(parser, "also run two workers on one PostgreSQL database")
    add_option(parser)
    args = parser.parse_args()
    if args.smoke:
        args.emails, args.runs = 60, 1

    port = free_port()
    smtp_url = f"smtp://127.0.0.1:{port}"
    results: dict[str, list[Measured]] = {
        key: []
        for key in (
            "one process",
            "one process, composing in place",
            "one ceiling",
            "machine",
            "machine ceiling",
            "postgres",
            "minimal loop",
        )  # fmt: skip
    }
    with sink_on(port, args.smoke) as target, tempfile.TemporaryDirectory(prefix="drip-dispatch-") as tmp:
        folder = Path(tmp)
        probe = prepare(folder, 1, "c0")
        message = folder / "message.eml"
        message.write_bytes(sample_message(folder, probe))
        half = args.emails // 2
        for run in range(args.runs):
            one = prepare(folder, args.emails, f"one{run}")
            results["one process"].append(drip_runs([one], smtp_url, folder))
            in_place = prepare(folder, args.emails, f"inplace{run}")
            results["one process, composing in place"].append(
                drip_runs([in_place], smtp_url, folder, DRIP_COMPOSE_PROCESSES="0")
            )
            results["one ceiling"].append(raw_runs(port, [args.emails], message))
            pair = [prepare(folder, half, f"pair{run}a"), prepare(folder, half, f"pair{run}b")]
            results["machine"].append(drip_runs(pair, smtp_url, folder))
            results["machine ceiling"].append(raw_runs(port, [half, half], message))
            if args.postgres:
                with postgres_database(args.postgres) as shared:
                    prepare(folder, args.emails, f"pg{run}", shared)
                    server_before = server_cpu()
                    measured = drip_runs([shared, shared], smtp_url, folder)
                    server_after = server_cpu()
                    if server_before is not None and server_after is not None:
                        measured.server_us = (server_after - server_before) / args.emails * 1e6
                    results["postgres"].append(measured)
                with postgres_database(args.postgres) as shared:
                    prepare(folder, args.emails, f"minimal{run}", shared)
                    results["minimal loop"].append(minimal_runs(shared, port, message))
        size = message.stat().st_size

    def median(key: str, what: str) -> float | None:
        values = [getattr(m, what) for m in results[key] if getattr(m, what) is not None]
        return statistics.median(values) if values else None

    print(f"Dispatch of {args.emails:,} emails ({size:,} bytes each) to {target} on loopback; ", end="")
    print(f"median of {args.runs}. CPU is user + system of the processes, every thread, per email.\n")
    # (result, ceiling, label in the table, label in the summary, target a second, most CPU / raw,
    #  most PostgreSQL CPU µs/email)
    setups = [
        ("one process", "one ceiling", "one process, one connection", "one process, one connection, SQLite",
         2000, 2.0, None),
        ("machine", "machine ceiling", "whole machine: two processes, one connection each",
         "two processes, SQLite", 3000, None, None),
        ("postgres", "machine ceiling", "two workers sharing one PostgreSQL database",
         "two workers, one PostgreSQL database", 2500, None, 200),
    ]  # fmt: skip
    ran = [setup for setup in setups if results[setup[0]]]
    print("| setup | drip emails/s | drip CPU µs/email | raw smtplib/s | raw CPU µs/email | rate / raw "
          "| CPU / raw | PostgreSQL CPU µs/email |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    figures = []
    for key, ceiling_key, label, summary, goal, most_ratio, most_server in ran:
        rate, cpu = median(key, "rate") or 0.0, median(key, "cpu_us") or 0.0
        raw_rate, raw_cpu = median(ceiling_key, "rate") or 1.0, median(ceiling_key, "cpu_us") or 1.0
        server = median(key, "server_us")
        server_cell = f"{server:,.0f}" if server is not None else ""
        print(f"| {label} | {rate:,.0f} | {cpu:,.0f} | {raw_rate:,.0f} | {raw_cpu:,.0f} "
              f"| {rate / raw_rate:.0%} | {cpu / raw_cpu:.1f}x | {server_cell} |")  # fmt: skip
        server_note = f", PostgreSQL {server:,.0f} µs" if server is not None else ""
        least = ""
        if key == "postgres" and results["minimal loop"]:
            loop_rate, loop_server = (
                median("minimal loop", "rate") or 0.0,
                median("minimal loop", "server_us"),
            )
            loop_note = f", PostgreSQL {loop_server:,.0f} µs/email" if loop_server is not None else ""
            least = f"; minimal loop: {loop_rate:,.0f}/s{loop_note}"
        figures.append(
            Figure(
                f"dispatch to {target}: {summary}",
                f"{rate:,.0f} emails/s, CPU {cpu:,.0f} µs/email{server_note}",
                f"raw smtplib: {raw_rate:,.0f}/s ({rate / raw_rate:.0%}), CPU {raw_cpu:,.0f} µs/email "
                f"(drip {cpu / raw_cpu:.1f}x){least}",
                ", ".join(
                    [f">= {goal:,}/s"]
                    + ([f"CPU <= {most_ratio:.1f}x raw"] if most_ratio else [])
                    + ([f"PostgreSQL <= {most_server} µs/email"] if most_server else [])
                ),
                rate >= goal
                and (most_ratio is None or cpu / raw_cpu <= most_ratio)
                and (most_server is None or (server is not None and server <= most_server)),
            )
        )
    if results["one process, composing in place"]:
        rate = median("one process, composing in place", "rate") or 0.0
        cpu = median("one process, composing in place", "cpu_us") or 0.0
        raw_rate, raw_cpu = median("one ceiling", "rate") or 1.0, median("one ceiling", "cpu_us") or 1.0
        label = "one process, composing in place (DRIP_COMPOSE_PROCESSES=0)"
        print(f"| {label} | {rate:,.0f} | {cpu:,.0f} | {raw_rate:,.0f} | {raw_cpu:,.0f} "
              f"| {rate / raw_rate:.0%} | {cpu / raw_cpu:.1f}x | |")  # fmt: skip
    if results["minimal loop"]:
        rate, cpu = median("minimal loop", "rate") or 0.0, median("minimal loop", "cpu_us") or 0.0
        server = median("minimal loop", "server_us")
        server_cell = f"{server:,.0f}" if server is not None else ""
        print(f"| minimal loop on PostgreSQL, two processes (claim, send prebuilt bytes, one UPDATE) "
              f"| {rate:,.0f} | {cpu:,.0f} | | | | | {server_cell} |")  # fmt: skip
    print(f"\n{describe()}")
    save(args.json, figures, args.smoke)


if __name__ == "__main__":
    main()
