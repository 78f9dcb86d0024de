"""The benchmarks still run (tiny sizes); their figures are measured by hand, not here."""

import subprocess
import sys

from conftest import ROOT


def test_start_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "start.py"), "--smoke"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "50 participants, 900 deliveries" in result.stdout
    assert "| drip start |" in result.stdout and "| ORM, row by row |" in result.stdout
