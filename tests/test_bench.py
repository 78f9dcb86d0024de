"""Every benchmark still runs (tiny sizes), through the one command that runs them all; their
figures are measured by hand on a quiet machine, not here."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import POSTGRES_ENV, ROOT

ROWS = [
    "| drip start, 50 participants, SQLite |",
    "| compose 18 emails (render + MIME), one core |",
    ": one process, one connection, SQLite |",  # to smtp-sink, or aiosmtpd where there is none
    ": two processes, SQLite |",
    "| DKIM signing (RSA-2048) while composing, one core |",
    "| POST /done under load, SQLite |",
    "| drip ingest --mbox, 200 replies, SQLite |",
    "| reply corpus, ",
    "| make demo's story (drip demo), first run on a new folder |",
    "| drip status with answered check-ins, 200 participants, SQLite |",
]
POSTGRES_ROWS = [
    "| drip start, 60 participants (1,080 deliveries), PostgreSQL |",
    "| drip status, 60 participants, PostgreSQL |",
    ": two workers, one PostgreSQL database |",
    "| drip status with answered check-ins, 200 participants, PostgreSQL |",
]


def test_every_benchmark_runs_and_lands_in_one_report(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)]
    postgres = os.environ.get(POSTGRES_ENV)
    if postgres:
        command += ["--postgres", postgres]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    for row in ROWS + (POSTGRES_ROWS if postgres else []):
        assert row in report, f"{row} missing from:\n{report}"
    assert "not judged (smoke sizes)" in report and "**not met**" not in report
    dispatch = [line for line in report.splitlines() if ": one process, one connection, SQLite |" in line]
    assert dispatch and "µs/email" in dispatch[0] and "drip " in dispatch[0]  # CPU per email beside the rate
    for script in ("start", "compose", "dispatch", "signing", "completion", "ingest", "replies"):
        assert f"## bench/{script}.py" in report


def test_a_benchmark_runs_against_another_commit_beside_this_one(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only", "compose", "--out", str(out),
               "--against", "HEAD"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    assert "Against HEAD (" in report
    [row] = [
        line
        for line in report.splitlines()
        if line.startswith("| compose 18 emails") and line.count("|") == 5
    ]
    assert "not measured" not in row and "x (" in row  # both figures, and their ratio
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True)
    assert "drip-bench-against-" not in worktrees.stdout  # the other commit's checkout is gone again


def test_an_unknown_commit_to_compare_against_is_refused(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only", "compose",
               "--out", str(tmp_path / "r.md"), "--against", "no-such-ref-anywhere"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert (
        result.returncode != 0 and "--against no-such-ref-anywhere: git knows no such commit" in result.stderr
    )


def test_a_failing_benchmark_keeps_the_figures_of_the_others(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    unreachable = (
        "postgresql+psycopg://postgres@127.0.0.1:1/postgres"  # start.py fails on it; compose takes none
    )
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only", "start,compose",
               "--postgres", unreachable, "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0 and "failed: start.py" in result.stderr
    report = out.read_text()
    assert "**Failed**: start.py" in report
    assert "| compose 18 emails (render + MIME), one core |" in report
