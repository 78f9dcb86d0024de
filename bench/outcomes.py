"""Benchmark what owners read of outcomes: `drip status` and `drip export` once check-ins are answered.

    python bench/outcomes.py                     # 20,000 participants on SQLite, 3 runs each
    python bench/outcomes.py --participants 5000
    python bench/outcomes.py --smoke             # tiny, to check the benchmark still works
    python bench/outcomes.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
                                                 # also on PostgreSQL, 100,000 participants

A cohort of the whole program (six monthly check-ins included) is started with `drip start`. Then
`drip status` and `drip export` are timed twice on it, each a fresh process: before any check-in
went out (the baseline: the same commands, nothing to count), and after three check-ins went to
everyone and four in five answered each (written straight into the tables, as the link pages
would, then ANALYZE as the server's own statistics would keep up with answers arriving over months).
The difference is what counting and listing the answers costs. Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import add_postgres_option, describe, postgres_database  # noqa: E402
from start import NOW, make_cohort, timed  # noqa: E402

#: when the owners look: after the third check-in went out
LATER = "2027-08-01T00:00Z"
CHECK_INS = ("sustain-1", "sustain-2", "sustain-3")
#: the figure to reach: drip status stays under a second, as without check-ins
TARGET = 1.0


def answer_check_ins(url: str) -> int:
    """Mark three check-ins sent to everyone and answer four in five of them; return the answers."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    steps = ", ".join(f"'{step}'" for step in CHECK_INS)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE deliveries SET status = 'sent', sent_at = due_at, message_id = '<b.' || id || '@x>' "
                f"WHERE step IN ({steps})"
            )
        )
        answered = conn.execute(
            text(
                "INSERT INTO check_ins "
                "(cohort_id, participant_id, step, delivery_id, answer, answered_at, via) "
                "SELECT cohort_id, participant_id, step, id, "
                "CASE WHEN id % 3 = 0 THEN 'not_shared' ELSE 'shared' END, sent_at, 'link' "
                f"FROM deliveries WHERE step IN ({steps}) AND id % 5 <> 0"
            )
        ).rowcount
    with engine.begin() as conn:
        # Months of answers arrive a few at a time, and the server's own statistics keep up (as
        # drip start's ANALYZE does for its bulk insert); a bulk write here would otherwise leave
        # the planner guessing, which no installation sees.
        for table in ("deliveries", "check_ins"):
            conn.execute(text(f"ANALYZE {table}"))
    engine.dispose()
    return answered


def commands(drip: str, url: str) -> dict[str, list[str]]:
    base = [drip, "--database-url", url]
    return {
        "drip status": [*base, "status", "bench", "--now", LATER],
        "drip status --format json": [*base, "status", "bench", "--format", "json", "--now", LATER],
        "drip export (csv)": [*base, "export", "bench", "--out", "export.csv", "--now", LATER],
    }


@contextmanager
def sqlite(work: Path) -> Iterator[str]:
    yield f"sqlite:///{work / 'drip.db'}"


def measure(
    drip: str, size: int, runs: int, opened: Any, work: Path
) -> tuple[dict[tuple[str, str], float], int]:
    """Start a cohort of ``size`` in the database ``opened`` yields; time each command before and after
    the check-ins are answered."""
    timings: dict[tuple[str, str], float] = {}
    cohort = make_cohort(work, size)
    with opened as url:
        timed([drip, "--database-url", url, "start", str(cohort), "--now", NOW], work)
        for name, command in commands(drip, url).items():
            timings[name, "before"] = statistics.median(timed(command, work)[0] for _ in range(runs))
        answered = answer_check_ins(url)
        for name, command in commands(drip, url).items():
            timings[name, "after"] = statistics.median(timed(command, work)[0] for _ in range(runs))
    columns = (work / "export.csv").read_text().splitlines()[0].split(",")
    assert columns[-len(CHECK_INS) :] == list(CHECK_INS), columns[-4:]
    return timings, answered


def report(
    backend: str, size: int, runs: int, timings: dict[tuple[str, str], float], answered: int
) -> Figure:
    sent = f"three check-ins sent to all, {answered:,} answers"
    print(f"{size:,} participants on {backend}; {sent}; median of {runs}\n")
    print("| command | before any check-in (s) | after (s) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name in commands("drip", "x"):
        before, after = timings[name, "before"], timings[name, "after"]
        print(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f}x |")
    print()
    status = timings["drip status", "after"]
    return Figure(
        f"drip status with answered check-ins, {size:,} participants, {backend}",
        f"{status:.2f} s",
        f"before any check-in: {timings['drip status', 'before']:.2f} s",
        f"< {TARGET:.0f} s",
        status < TARGET,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=None, help="on SQLite (default 20,000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a tiny cohort, one run")
    add_postgres_option(parser, "also run on PostgreSQL, with 100,000 participants")
    add_option(parser)
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    drip = str(Path(sys.executable).with_name("drip"))
    figures = []
    with tempfile.TemporaryDirectory(prefix="drip-bench-outcomes-") as tmp:
        size = args.participants or (200 if args.smoke else 20_000)
        work = Path(tmp) / "sqlite"
        work.mkdir()
        figures.append(report("SQLite", size, runs, *measure(drip, size, runs, sqlite(work), work)))
        if args.postgres:
            size = 200 if args.smoke else 100_000
            work = Path(tmp) / "postgres"
            work.mkdir()
            opened = postgres_database(args.postgres)
            figures.append(report("PostgreSQL", size, runs, *measure(drip, size, runs, opened, work)))
    print(describe())
    save(args.json, figures, args.smoke)


if __name__ == "__main__":
    main()
