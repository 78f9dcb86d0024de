"""What the benchmarks share: the machine they ran on, for the tables in the README, and
throwaway PostgreSQL databases."""

from __future__ import annotations

import argparse
import os
import platform
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
