"""Every email of the program passes SpamAssassin's local rules with a low score."""

import datetime as dt
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from drip.core.message import build, cohort_view, links_for, recipient_of
from drip.core.plan import program_end
from drip.core.render import Templates
from drip.launch.cohort import load_cohort

LIMIT = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="SpamAssassin is not installed (Debian package spamassassin)"
)


def test_every_step_scores_below_the_limit() -> None:
    cohort = load_cohort(ROOT / "cohorts" / "example", [ROOT / "emails"])
    person = cohort.participants[1]  # the one with a delegate, so Cc is exercised too
    timing = cohort.timing(person)
    recipient = recipient_of(person, cohort.program, timing, {"short": 1, "mid": 2, "long": 3})
    links = links_for(
        "https://drip.northwind.example",
        ["k" * 32],
        "comms@northwind.example",
        program_end(cohort.program, timing),
    )
    templates, view = Templates(cohort.program.path), cohort_view(cohort)
    scores = {}
    for step in cohort.program.steps:
        when = dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC)
        data = build(
            templates, view, recipient, step, when=when, delivery_id="7", instance="ab12", links=links
        ).as_bytes()
        report = subprocess.run(
            ["spamassassin", "-L", "-t"], input=data, capture_output=True, timeout=120, check=True
        )
        match = re.search(rb"X-Spam-Status: \w+, score=(-?[\d.]+)", report.stdout)
        assert match, report.stdout[-2000:]
        scores[step.key] = float(match.group(1))
    assert max(scores.values()) < LIMIT, scores
