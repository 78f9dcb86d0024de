"""Benchmark `drip start` on a generated cohort, beside a row-by-row ORM insert of the same plan.

    python bench/start.py                      # 10,000 participants, 3 runs each
    python bench/start.py --participants 2000 --runs 5
    python bench/start.py --smoke              # tiny, to check the benchmark still works
    python bench/start.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
                                               # also 100,000 participants on PostgreSQL, and drip status

Each run is a fresh process on a fresh SQLite file, so the figures include
start-up, validation, planning and the insert, and peak memory is the whole
process's. Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import add_postgres_option, describe, drip_environment, postgres_database  # noqa: E402

NOW = "2027-01-04T12:00Z"
ZONES = [
    "America/New_York", "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo", "Europe/London",
    "Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "Asia/Kolkata", "Asia/Singapore", "Australia/Sydney",
]  # fmt: skip
OBJECTIVES = ["sales", "marketing", "customer service", "recruiting", "investor relations"]
COHORT_TOML = """\
name = "Benchmark cohort"
program = "crawl-walk-run"
start = 2027-01-11
timezone = "America/New_York"
send_time = "09:00"
skip_weekends = true
sender = "Comms <comms@example.com>"

[goals.short]
deadline = 2027-02-01
"""


def make_cohort(folder: Path, participants: int, seed: int = 7, name: str = "bench", extra: str = "") -> Path:
    """Write a cohort folder with a realistic, varied roster."""
    rng = random.Random(seed)
    cohort = folder / "cohorts" / name
    cohort.mkdir(parents=True)
    if not (folder / "emails").exists():
        (folder / "emails").symlink_to(ROOT / "emails", target_is_directory=True)
    (cohort / "cohort.toml").write_text(extra + COHORT_TOML)
    lines = ["email,name,timezone,delegate_email,objective,short_deadline"]
    for n in range(participants):
        delegate = f"assistant{n}@example.com" if rng.random() < 0.1 else ""
        own = (
            (dt.date(2027, 2, 1) + dt.timedelta(days=rng.randint(1, 10))).isoformat()
            if rng.random() < 0.05
            else ""
        )
        lines.append(
            f"exec{n}@example.com,Executive {n},{rng.choice(ZONES)},{delegate},{rng.choice(OBJECTIVES)},{own}"
        )
    (cohort / "roster.csv").write_text("\n".join(lines) + "\n")
    return cohort


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run a command; return (seconds, peak resident MB of that process)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=drip_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command} failed: {process.stderr.read() if process.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024


def orm_row_by_row(cohort_dir: str, database: str) -> None:
    """The naive way: every row its own ORM object and INSERT, in one transaction."""
    from sqlalchemy.orm import Session

    from drip.core.plan import goal_dates
    from drip.core.values import parse_instant
    from drip.launch import enrol
    from drip.launch.cohort import load_cohort
    from drip.storage.records import delivery_row
    from drip.storage.store import Store
    from drip.storage.tables import Cohort, Delivery, Goal, Participant

    now = parse_instant(NOW)
    cohort = load_cohort(Path(cohort_dir), [ROOT / "emails"])
    store = Store(f"sqlite:///{database}")
    with Session(store.engine) as session, session.begin():
        row = Cohort(**cohort.stored().to_row(), created_at=now, updated_at=now)
        session.add(row)
        session.flush()
        for person, plan in enrol.plan_cohort(cohort, now):
            participant = Participant(
                cohort_id=row.id, email_key=person.key, status="active", created_at=now, updated_at=now,
                **enrol._participant_values(cohort, person),
            )  # fmt: skip
            session.add(participant)
            session.flush()
            for key, dates in goal_dates(cohort.program, cohort.timing(person)).items():
                session.add(
                    Goal(participant_id=participant.id, goal=key, deadline=dates.deadline,
                         deadline_at=dates.deadline_ends_at, status="open")
                )  # fmt: skip
                session.flush()
            for planned in plan:
                session.add(Delivery(**delivery_row(row.id, participant.id, planned, now)))
                session.flush()
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="50 participants, one run")
    parser.add_argument("--orm-worker", nargs=2, help=argparse.SUPPRESS)
    add_postgres_option(parser, "also start a larger cohort on PostgreSQL and time drip status on it")
    parser.add_argument("--postgres-participants", type=int, default=100_000)
    add_option(parser)
    args = parser.parse_args()
    if args.orm_worker:
        orm_row_by_row(*args.orm_worker)
        return
    if args.smoke:
        args.participants, args.postgres_participants, args.runs = 50, 60, 1

    drip = str(Path(sys.executable).with_name("drip"))
    results: dict[str, list[tuple[float, float]]] = {"drip start": [], "ORM, row by row": []}
    with tempfile.TemporaryDirectory(prefix="drip-bench-") as tmp:
        work = Path(tmp)
        cohort = make_cohort(work, args.participants)
        for run in range(args.runs):
            database = work / f"start-{run}.db"
            results["drip start"].append(
                timed(
                    [drip, "--database-url", f"sqlite:///{database}", "start", str(cohort), "--now", NOW],
                    work,
                )
            )
            database = work / f"orm-{run}.db"
            results["ORM, row by row"].append(
                timed([sys.executable, __file__, "--orm-worker", str(cohort), str(database)], work)
            )
        rows = sqlite3.connect(work / "start-0.db").execute("SELECT count(*) FROM deliveries").fetchone()[0]
        big = on_postgres(args, drip) if args.postgres else None

    fast = statistics.median(t for t, _ in results["drip start"])
    print(
        f"`drip start`, {args.participants:,} participants, {rows:,} deliveries, SQLite; "
        f"median of {args.runs}\n"
    )
    print("| method | seconds (median) | peak memory MB (median) | deliveries/s | vs drip start |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        seconds = statistics.median(t for t, _ in runs)
        memory = statistics.median(m for _, m in runs)
        print(f"| {name} | {seconds:.2f} | {memory:.0f} | {rows / seconds:,.0f} | {seconds / fast:.1f}x |")
    fast_memory = statistics.median(m for _, m in results["drip start"])
    slow = statistics.median(t for t, _ in results["ORM, row by row"])
    figures = [
        Figure(
            f"drip start, {args.participants:,} participants, SQLite",
            f"{fast:.2f} s, {fast_memory:.0f} MB",
            f"ORM row by row: {slow:.2f} s ({slow / fast:.1f}x drip's time)",
            "< 10 s, < 300 MB",
            fast < 10 and fast_memory < 300,
        )
    ]
    if big is not None:
        n, pg_rows, seconds, memory, status, whole_rows, whole_seconds = big
        print(
            f"\nOn PostgreSQL, {n:,} participants: the training ({pg_rows:,} deliveries, median of "
            f"{args.runs}), then the whole program with its monthly check-ins ({whole_rows:,}, one run)\n"
        )
        print("| command | seconds | peak memory MB | deliveries/s |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| drip start, the training | {seconds:.2f} | {memory:.0f} | {pg_rows / seconds:,.0f} |")
        print(f"| drip status (whole process) | {status:.2f} | | |")
        print(
            f"| drip start, with the check-ins | {whole_seconds:.2f} | | {whole_rows / whole_seconds:,.0f} |"
        )
        figures += [
            Figure(
                f"drip start, {n:,} participants ({pg_rows:,} deliveries), PostgreSQL",
                f"{seconds:.2f} s, {memory:.0f} MB",
                f"{pg_rows / seconds:,.0f} deliveries/s against {rows / fast:,.0f} on SQLite above",
                "< 60 s, < 500 MB",
                seconds < 60 and memory < 500,
            ),
            Figure(
                f"drip status, {n:,} participants, PostgreSQL", f"{status:.2f} s", "", "< 1 s", status < 1
            ),
        ]
    print(f"\n{describe()}")
    save(args.json, figures, args.smoke)


#: the PostgreSQL target is set for the training itself (18 emails each, ~1.8 million for 100,000),
#: without the owners' escalation notes the program gained since; the monthly check-ins that follow
#: it are timed too, once, and reported beside it
TRAINING_ONLY = 'skip_steps = ["sustain", "short-escalation", "mid-escalation", "long-escalation"]\n'


def on_postgres(args: argparse.Namespace, drip: str) -> tuple[int, int, float, float, float, int, float]:
    """Time drip start of a larger cohort on PostgreSQL, then drip status on it; medians of the runs.

    Returns the participants, deliveries, seconds, MB and status seconds of the training alone, then
    the deliveries and seconds of one start of the whole program, check-ins included.
    """
    starts, statuses = [], []
    rows = 0
    with tempfile.TemporaryDirectory(prefix="drip-bench-pg-") as tmp:
        work = Path(tmp)
        cohort = make_cohort(work, args.postgres_participants, extra=TRAINING_ONLY)
        for _ in range(args.runs):
            with postgres_database(args.postgres) as url:
                starts.append(timed([drip, "--database-url", url, "start", str(cohort), "--now", NOW], work))
                status = [drip, "--database-url", url, "status", "bench", "--now", NOW]
                statuses.append(statistics.median(timed(status, work)[0] for _ in range(3)))
                rows = _deliveries(url)
        whole = make_cohort(work, args.postgres_participants, name="whole")
        with postgres_database(args.postgres) as url:
            whole_seconds = timed([drip, "--database-url", url, "start", str(whole), "--now", NOW], work)[0]
            whole_rows = _deliveries(url)
    seconds = statistics.median(t for t, _ in starts)
    memory = statistics.median(m for _, m in starts)
    return (
        args.postgres_participants,
        rows,
        seconds,
        memory,
        statistics.median(statuses),
        whole_rows,
        whole_seconds,
    )


def _deliveries(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = int(conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one())
    engine.dispose()
    return rows


if __name__ == "__main__":
    main()
