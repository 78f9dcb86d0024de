"""What users install is the wheel: build it, install it into a fresh virtual environment, and run
drip from it end to end, outside this checkout (start, run, digest, report, and the starter files)."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT, _free_port

pytestmark = pytest.mark.slow


def test_the_wheel_installs_and_runs_a_cohort_end_to_end(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    [wheel] = dist.glob("drip-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "--quiet", str(wheel)], check=True, cwd=tmp_path)
    project = tmp_path / "project"  # nowhere near the checkout: only the installed package helps
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "PYTHON"))}
    env["DRIP_CATCHER_PORT"] = str(_free_port())

    def drip(*args: str) -> str:
        done = subprocess.run(
            [str(bin_dir / "drip"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"drip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    assert "Wrote emails/crawl-walk-run/" in drip("init")
    imported = subprocess.run(
        [str(bin_dir / "python"), "-c", "import drip, sys; print(drip.__file__)"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(env_dir) in imported, "the test must exercise the installed wheel, not the checkout"
    assert "12 enrolled" in drip("start", "cohorts/example", "--now", "2027-01-04T12:00Z")
    said = drip("run", "--once", "--now", "2027-01-10T00:00Z", "--until", "2027-01-26T00:00Z")
    assert " sent" in said and "failed" not in said
    assert "Sent the digest of example" in drip("digest", "example", "--now", "2027-01-25T14:00Z")
    drip("report", "example", "--out", "report.html", "--now", "2027-01-26T00:00Z")
    assert "<svg" in (project / "report.html").read_text(encoding="utf-8")
    caught = list((project / "drip-mail").glob("*.eml"))
    assert any(b"Auto-Submitted: auto-generated" in path.read_bytes() and b"Subject: Week to " in path.read_bytes()
               for path in caught), "the digest, with its text part, reached the mail catcher"  # fmt: skip

    # A new user's first hour: `make demo` is the checkout's; from the wheel it is init, then demo.
    project = tmp_path / "first-hour"
    project.mkdir()
    drip("init")
    told = drip("demo", "--no-serve")
    assert "taps “Mark it done”" in told and "replies to the short-kickoff email from Gmail" in told
    assert "(3 by link, 3 by reply)" in told and "1 bounced" in told
    assert "taps “Yes, I shared something” in the sustain-1 email" in told and "1 answered a check-in" in told
    assert (project / "example-report.html").is_file()
