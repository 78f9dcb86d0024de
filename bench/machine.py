"""What the benchmarks share: the machine they ran on, for the tables in the README, and
throwaway PostgreSQL databases."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def drip_environment() -> dict[str, str]:
    """The environment for a drip process under measurement: no DRIP_ setting of the caller's, and
    Python free to cache compiled modules, as an installed wheel has them (pip compiles at install),
    so that no run pays for compiling drip's source again."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DRIP_") and key != "PYTHONDONTWRITEBYTECODE"
    }


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process this one has waited for so far.

    Read before and after a step that starts processes and waits for them all: the difference is
    their CPU, whatever threads they ran."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(command: str = "postgres") -> float | None:
    """CPU seconds so far of a server's processes (``command`` as in /proc/PID/comm), counting
    connections that have ended (their time is in the parent's children's time); None where
    /proc cannot tell (another OS, or a server this user may not read)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, seen = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text[text.index("(") + 1 :].rpartition(")")
        if not name.startswith(command):
            continue
        fields = rest.split()
        # after the name: state is field 3 of stat(5), so utime, stime, cutime, cstime (14-17) are 11-14 here
        total += sum(int(value) for value in fields[11:15])
        seen = True
    return total / ticks if seen else None


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``admin_url``, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"drip_bench_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def add_postgres_option(parser: argparse.ArgumentParser, does: str) -> None:
    """--postgres URL: the server on which a benchmark makes (and drops) a database for each run."""
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("DRIP_BENCH_POSTGRES_URL"),
        help=f"{does}, on a database made on this server for each run (default: $DRIP_BENCH_POSTGRES_URL)",
    )
