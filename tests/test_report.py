"""What owners see: status, the HTML report and the exports, checked against a campaign walked in virtual time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from drip.cli import main
from drip.core.states import CohortStatus
from drip.owners import documents, progress, timeline, timeline_svg
from drip.storage.store import Store
from walked import ANA_DONE, AS_OF, BEN_DONE, Walked

SVG = "{http://www.w3.org/2000/svg}"


def marks(line: ElementTree.Element) -> Counter[str]:
    """Count a participant's marks by what they show (their class)."""
    return Counter(g.get("class", "").removeprefix("tl-") for g in line.iter(f"{SVG}g") if g.get("transform"))


def read(walked: Walked, now: dt.datetime = AS_OF) -> progress.Progress:
    with Store(walked.url) as db, db.reading() as conn:
        found = progress.read_progress(conn, "test-cohort", now)
    assert found is not None
    return found


def cli(runner: CliRunner, walked: Walked, *args: str) -> str:
    result = runner.invoke(main, ["--database-url", walked.url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_progress_matches_what_happened(walked: Walked) -> None:
    found = read(walked)
    assert [g.key for g in found.goals] == ["short", "mid", "long"]
    assert found.goals[0].title.startswith("Crawl")
    assert found.counts("short") == {"open": 2, "done": 2, "waived": 0, "overdue": 2, "total": 4}
    assert found.counts("mid") == {"open": 4, "done": 0, "waived": 0, "overdue": 0, "total": 4}
    assert sorted(p.email for p in found.overdue("short")) == ["cleo@example.com", "dora@example.com"]
    by_email = {p.email: p for p in found.people}
    assert by_email["ana@example.com"].goals["short"].completed_at == ANA_DONE
    assert by_email["ana@example.com"].goals["short"].via == "link"
    assert by_email["cleo@example.com"].status == "bounced"
    assert by_email["dora@example.com"].status == "bounced"  # refused at RCPT as no such user

    # Completion over time, by day in the cohort's zone: Ana on Saturday 30, Ben on Wednesday 3.
    days, series = found.days(), found.series("short")
    assert days[0] == dt.date(2027, 1, 11) and days[-1] == dt.date(2027, 2, 4)
    at = {day: count for day, count in zip(days, series, strict=True)}
    assert at[dt.date(2027, 1, 29)] == 0 and at[dt.date(2027, 1, 30)] == 1
    assert at[dt.date(2027, 2, 2)] == 1 and at[dt.date(2027, 2, 3)] == 2
    assert found.completions(BEN_DONE - dt.timedelta(days=1), AS_OF)[0][0].email == "ben@example.com"

    steps = {s.step: s for s in found.steps}
    # Dora got nothing; Ana's short goal stopped her short-due; both Ana and Ben did it within 7 days.
    assert (steps["short-reminder"].sent, steps["short-reminder"].completed) == (3, 2)
    assert (steps["short-due"].sent, steps["short-due"].completed) == (1, 1)  # Ben's; Cleo had bounced
    assert steps["welcome"].completed is None and steps["welcome"].sent == 3
    assert list(steps)[:2] == ["welcome", "short-kickoff"], "in the order the cohort met them"

    # Dora's first email was refused ("no such user"): it failed, she bounced, nothing more was tried.
    assert [(f.email, f.step) for f in found.failures] == [("dora@example.com", "welcome")]
    assert all("550" in f.reason for f in found.failures)
    assert [(b.email, b.reason[:30]) for b in found.bounces] == [
        ("cleo@example.com", "5.1.1 mailbox unavailable"),
        ("dora@example.com", "the server refused dora@exampl"),
    ]
    assert [(b.name, b.email) for b in found.delegate_bounces] == [("Ana Ruiz", "pa.ruiz@example.com")]
    assert [(r.email, r.outcome) for r in found.replies] == [("ben@example.com", "reply")]
    assert "Travelling this week" in found.replies[0].text


def test_a_shorter_window_counts_fewer_completions(walked: Walked) -> None:
    with Store(walked.url) as db, db.reading() as conn:
        found = progress.read_progress(conn, "test-cohort", AS_OF, dt.timedelta(days=2))
    assert found is not None
    assert {s.step: s.completed for s in found.steps}["short-reminder"] == 1  # Ana's, not Ben's


def test_status_names_the_overdue_and_what_failed_or_bounced(walked: Walked, runner: CliRunner) -> None:
    out = cli(runner, walked, "status", "test-cohort", "--now", AS_OF.isoformat())
    assert "short         ██████████░░░░░░░░░░ 2/4 done (2 by link), 2 overdue" in out
    assert "overdue: Cleo Hart, =Dora <b>Diaz</b>" in out
    assert re.search(
        r"failed:\n    =Dora <b>Diaz</b> <dora@example.com>, welcome: the server refused dora@example.com: 550",
        out,
    )
    assert "bounced:\n    Cleo Hart <cleo@example.com>: 5.1.1 mailbox unavailable" in out

    payload = json.loads(
        cli(runner, walked, "status", "test-cohort", "--format", "json", "--now", AS_OF.isoformat())
    )
    assert [p["email"] for p in payload["overdue"]["short"]] == ["cleo@example.com", "dora@example.com"]
    assert payload["overdue"]["mid"] == []
    assert len(payload["failures"]) == payload["deliveries"]["failed"] == 1
    assert payload["bounces"][0]["email"] == "cleo@example.com"

    rows = list(
        csv.DictReader(
            io.StringIO(cli(runner, walked, "status", "--format", "csv", "--now", AS_OF.isoformat()))
        )
    )
    assert rows[0] == {
        "cohort": "test-cohort", "goal": "short", "participants": "4", "done": "2", "waived": "0",
        "open": "2", "overdue": "2", "percent_done": "50.0",
    }  # fmt: skip
    assert [row["goal"] for row in rows] == ["short", "mid", "long"]


def test_status_lists_the_latest_failures_and_json_every_one(walked: Walked, runner: CliRunner) -> None:
    from sqlalchemy import update

    from drip.storage.store import delivery_table, participant_table

    with Store(walked.url) as db, db.transaction() as conn:
        ana = select_id(conn, participant_table, "ana@example.com")
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.participant_id == ana, delivery_table.c.status == "scheduled")
            .values(status="failed", last_error="554 5.6.0 message refused")
        )
    out = cli(runner, walked, "status", "test-cohort", "--now", AS_OF.isoformat())
    payload = json.loads(
        cli(runner, walked, "status", "test-cohort", "--format", "json", "--now", AS_OF.isoformat())
    )
    failed = payload["deliveries"]["failed"]
    assert failed > 6 and f"failed, the 5 latest of {failed}:" in out
    assert len(payload["failures"]) == failed, "json lists every one"


def select_id(conn, table, email: str) -> int:
    from sqlalchemy import select

    return conn.execute(select(table.c.id).where(table.c.email == email)).scalar_one()


def test_export_csv_has_a_row_per_participant_and_no_formulas(walked: Walked, runner: CliRunner) -> None:
    rows = list(
        csv.DictReader(io.StringIO(cli(runner, walked, "export", "test-cohort", "--now", AS_OF.isoformat())))
    )
    assert [row["email"] for row in rows] == [
        "ana@example.com", "ben@example.com", "cleo@example.com", "dora@example.com",
    ]  # fmt: skip
    ana, ben, cleo, dora = rows
    assert ana["short_status"] == "done" and ana["short_completed_at"] == "2027-01-30T15:00:00Z"
    assert ana["short_via"] == "link" and ana["short_overdue"] == "no" and ana["mid_deadline"] == "2027-03-01"
    assert ben["short_completed_at"] == "2027-02-03T10:00:00Z"
    assert ana["short_answer"] == "https://www.linkedin.com/in/ana-ruiz" and ben["short_answer"] == ""
    assert cleo["status"] == "bounced" and cleo["short_overdue"] == "yes"
    assert dora["name"] == "'=Dora <b>Diaz</b>", "a spreadsheet must not take a name for a formula"


def test_export_jsonl_is_the_event_log(walked: Walked, runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    cli(runner, walked, "export", "test-cohort", "--format", "jsonl", "--out", str(out))
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    kinds = [e["kind"] for e in events]
    assert {"enrolled", "cohort_started", "sent", "failed", "completed", "replied", "bounced"} <= set(kinds)
    done = [e for e in events if e["kind"] == "completed"]
    assert [(e["email"], e["goal"], e["at"]) for e in done] == [
        ("ana@example.com", "short", "2027-01-30T15:00:00Z"),
        ("ben@example.com", "short", "2027-02-03T10:00:00Z"),
    ]
    assert next(e for e in events if e["kind"] == "replied")["step"] == "short-reminder"
    assert not list(tmp_path.glob(".*partial")), "written whole"


def test_report_is_one_self_contained_file(walked: Walked, runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    said = cli(runner, walked, "report", "test-cohort", "--out", str(out), "--now", AS_OF.isoformat())
    assert f"Wrote {out} (4 participants)" in said
    html = out.read_text(encoding="utf-8")
    assert "<svg" in html and html.count("<polyline") == 3
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "nothing loaded from elsewhere"
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert "=Dora &lt;b&gt;Diaz&lt;/b&gt;" in html and "<b>Diaz</b>" not in html
    assert "Travelling this week, will get to it on Wednesday." in html
    assert "550 5.1.1" in html and "5.1.1 mailbox unavailable" in html
    assert "@media print" in html
    assert "2 / 4" in html  # the short goal's card


def test_report_refuses_an_unknown_cohort_and_writes_nothing(
    walked: Walked, runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        main, ["--database-url", walked.url, "report", "nope", "--out", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 1 and "no cohort 'nope'" in result.output
    assert not (tmp_path / "r.html").exists()


def test_chart_lines_rise_with_completions(walked: Walked) -> None:
    chart = documents.completion_chart(read(walked))
    short = chart.lines[0]
    xs, ys = zip(*(map(float, point.split(",")) for point in short.points.split()), strict=True)
    assert (xs[0], xs[-1]) == (0, 100), "the plot is stretched to the page; its points are percentages"
    assert ys[0] == 100 and min(ys) == 50, "from none to half of them"
    assert list(ys) == sorted(ys, reverse=True), "a cumulative line never falls"
    assert [(tick.label, tick.align) for tick in chart.deadlines] == [("short due", "end")]
    assert [(tick.at, tick.label) for tick in chart.levels][::4] == [(100, "0%"), (0, "100%")]
    assert [(tick.label, tick.align) for tick in chart.dates] == [
        ("11 Jan", "start"), ("17 Jan", "middle"), ("23 Jan", "middle"), ("29 Jan", "middle"), ("4 Feb", "end"),
    ]  # fmt: skip
    assert "Crawl: your LinkedIn profile and 10 connections: 2 of 4 done" in chart.description


def test_report_timeline_shows_what_became_of_each_participant_s_email(walked: Walked) -> None:
    found = read(walked)
    drawn = timeline_svg.draw(timeline.report_timeline(found))
    svg = ElementTree.fromstring(str(drawn))
    rows = svg.findall(f"{SVG}g[@role='img']")
    said = {row.get("aria-label").split(" (")[0]: row for row in rows}
    assert list(said) == ["Ana Ruiz", "Ben Ito", "Cleo Hart", "=Dora <b>Diaz</b>"]
    for person, row in zip(found.people, rows, strict=True):
        emails = Counter(e.status for e in found.emails[person.id] if e.at)
        shown = marks(row)
        assert shown["sent"] == emails["sent"] and shown["failed"] == emails["failed"]
        assert shown["to-come"] == emails["scheduled"] and shown["cancelled"] == emails["cancelled"]
    ana, ben, cleo, dora = (marks(row) for row in rows)
    assert (ana["done"], ben["done"], cleo["done"], dora["done"]) == (1, 1, 0, 0)
    assert (cleo["bounced"], dora["bounced"], dora["failed"]) == (1, 1, 1)
    titles = [t.text for t in rows[0].iter(f"{SVG}title")]
    assert "short done Sat 30 Jan 2027 10:00 EST via link" in titles
    assert rows[2].get("aria-label").startswith("Cleo Hart (cleo@example.com, bounced): ")
    assert "address bounced Tue 2 Feb 2027 12:00 GMT: 5.1.1 mailbox unavailable" in rows[2].get("aria-label")
    # Cleo and Dora have left their short goal open past its deadline: a bar from it to now.
    overdue = [len(list(row.iter(f"{SVG}rect"))) for row in rows]
    assert overdue == [0, 0, 1 + 1, 1 + 1], "the overdue bar, and the bounce's square"
    assert "short overdue, due 1 Feb 2027" in rows[3].get("aria-label")


def test_report_has_the_timeline_with_its_legend(walked: Walked) -> None:
    html = documents.report_html(read(walked))
    assert html.count('<svg class="timeline" xmlns') == 1
    assert "Each participant&#39;s emails" in html or "Each participant's emails" in html
    for words in (
        "sent",
        "to come",
        "failed",
        "goal done",
        "address bounced",
        "overdue: deadline passed, goal open",
    ):
        assert f"{words}</li>" in html
    assert "goal waived" not in html, "the legend names only the marks drawn"
    assert "=Dora &lt;b&gt;Diaz&lt;/b&gt;" in html and "<b>Diaz</b>" not in html


def test_a_large_cohort_s_timeline_is_cut_like_its_grid(walked: Walked, monkeypatch) -> None:
    monkeypatch.setattr(progress, "TIMELINE_LIMIT", 2)
    found = read(walked)
    assert sorted(found.emails) == sorted(p.id for p in found.people[:2]), "only their emails are read"
    html = documents.report_html(found)
    assert html.count('<g role="img"') == 2
    assert "The first 2 of 4 participants" in html and "--format svg</code> draws anyone" in html


def test_a_large_cohort_s_grid_is_cut_with_a_pointer_to_the_export(walked: Walked, monkeypatch) -> None:
    monkeypatch.setattr(documents, "GRID_LIMIT", 3)
    html = documents.report_html(read(walked))
    assert html.count('<th scope="row">') == 3
    assert "The first 3 of 4 participants" in html and "drip export test-cohort" in html


@pytest.mark.parametrize("days", [1, 2, 3, 5, 25, 90, 400])
def test_the_chart_names_at_most_five_dates_a_quarter_apart(days: int) -> None:
    start = dt.date(2027, 1, 11)
    found = progress.Progress(
        slug="c", name="C", program="p", status=CohortStatus.ACTIVE, start=start, end=None, timezone="UTC",
        owners=(), now=dt.datetime.combine(start + dt.timedelta(days=days - 1), dt.time(12), dt.UTC),
        within=progress.DEFAULT_WITHIN, goals=(progress.GoalInfo("g", "G", start + dt.timedelta(days=days // 2)),),
        people=(), deliveries={}, steps=(), failures=(), bounces=(), replies=(),
    )  # fmt: skip
    chart = documents.completion_chart(found)
    ats = [tick.at for tick in chart.dates]
    assert ats[0] == 0 and chart.dates[0].align == "start", "the first date starts at the left edge"
    if days > 1:
        assert ats[-1] == 100 and chart.dates[-1].align == "end", "the last one ends at the right edge"
    assert len(ats) <= 5 and all(b - a >= documents.DATES_APART for a, b in itertools.pairwise(ats)), ats
    (deadline,) = chart.deadlines
    assert deadline.align == ("start" if deadline.at <= 50 else "end"), "it reads towards the middle"
