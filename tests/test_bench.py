"""The benchmarks still run (tiny sizes); their figures are measured by hand, not here."""

import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("start.py", ["50 participants, 900 deliveries", "| drip start |", "| ORM, row by row |"]),
        (
            "compose.py",
            ["| drip (CSS inlined at load, direct MIME) |", "| premailer per message + EmailMessage |"],
        ),
        (
            "dispatch.py",
            ["| one process, one connection |", "| whole machine: two processes, one connection each |"],
        ),
        ("completion.py", ["| POST /done/<token>: completes a goal |", "| GET /healthz: the ceiling |"]),
        (
            "ingest.py",
            ["| drip ingest (read, parse, act, record, forward) |", "| ceiling: read and parse as drip"],
        ),
    ],
)
def test_benchmark_smoke(script: str, rows: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for row in rows:
        assert row in result.stdout
