"""Every email of the program passes SpamAssassin's local rules with a low score."""

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from drip.cli import main
from drip.core.message import build, cohort_view, links_for, recipient_of
from drip.core.plan import program_end
from drip.core.render import Templates
from drip.launch.cohort import load_cohort

LIMIT = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="SpamAssassin is not installed (Debian package spamassassin)"
)


def score(data: bytes) -> float:
    report = subprocess.run(
        ["spamassassin", "-L", "-t"], input=data, capture_output=True, timeout=120, check=True
    )
    match = re.search(rb"X-Spam-Status: \w+, score=(-?[\d.]+)", report.stdout)
    assert match, report.stdout[-2000:]
    return float(match.group(1))


def test_the_owners_digest_scores_below_the_limit(tmp_path: Path) -> None:
    """As sent: to the owner's bare address, the report attached."""
    runner = CliRunner()
    db = ["--database-url", f"sqlite:///{tmp_path / 'drip.db'}"]
    started = runner.invoke(
        main, [*db, "start", str(ROOT / "cohorts" / "example"), "--now", "2027-01-04T12:00Z"]
    )
    assert started.exit_code == 0, started.output
    digest = runner.invoke(
        main, [*db, "digest", "example", "--preview", "--format", "eml", "--now", "2027-01-18T13:00Z"]
    )
    assert digest.exit_code == 0 and digest.output.startswith("From: ")
    # 0.2 today; a subject starting with the company's name, to a bare address, alone added 1.0
    assert score(digest.output.encode("ascii")) < 1.0


@pytest.mark.parametrize("reader", [1, 5, 7], ids=["en-GB", "de", "ja"])
def test_every_step_scores_below_the_limit(reader: int) -> None:
    """In each language shipped that the example cohort reads: English (the participant with a
    delegate, so Cc is exercised too), German and Japanese (the two furthest from it in script and
    length; the other shipped languages share their layout and wording patterns)."""
    cohort = load_cohort(ROOT / "cohorts" / "example", [ROOT / "emails"])
    person = cohort.participants[reader]
    timing = cohort.timing(person)
    recipient = recipient_of(person, cohort.program, timing, {"short": 1, "mid": 2, "long": 3})
    links = links_for(
        "https://drip.northwind.example",
        ["k" * 32],
        "comms@northwind.example",
        program_end(cohort.program, timing),
    )
    templates, view = Templates(cohort.program.path, cohort.program.language), cohort_view(cohort)
    scores = {}
    for step in cohort.program.steps:
        when = dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC)
        data = build(
            templates, view, recipient, step, when=when, delivery_id="7", instance="ab12", links=links
        ).as_bytes()
        scores[step.key] = score(data)
    assert max(scores.values()) < LIMIT, scores
