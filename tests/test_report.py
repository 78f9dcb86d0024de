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
from drip.owners import documents, outcomes, progress, timeline, timeline_svg
from drip.storage.store import Store, find_cohort
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


# --- outcomes: "Sustained use" and "What they said" ----------------------------------------------

#: when the first and second check-ins went (Tuesday 8 June and Thursday 8 July, mornings in New York)
SENT_1 = dt.datetime(2027, 6, 8, 13, tzinfo=dt.UTC)
SENT_2 = dt.datetime(2027, 7, 8, 13, tzinfo=dt.UTC)
LATER = dt.datetime(2027, 8, 1, tzinfo=dt.UTC)
#: an answer as long as the mid goal takes
LONG = ("Ada, Grace, Alan, Barbara and Edsger, every morning. " * 6)[:280]
#: what three participants typed for their mid goal (five voices), in the order they did it
MID_ANSWERS = {
    "ana@example.com": (dt.datetime(2027, 2, 10, 15, tzinfo=dt.UTC), "<script>alert(1)</script>"),
    "ben@example.com": (dt.datetime(2027, 2, 12, 15, tzinfo=dt.UTC), "javascript:alert(1)"),
    "cleo@example.com": (dt.datetime(2027, 2, 14, 15, tzinfo=dt.UTC), LONG),
}
ANA_URL = "https://www.linkedin.com/in/ana-ruiz"


@pytest.fixture
def answered(walked: Walked) -> Walked:
    """The walked cohort months on: three mid goals done with an answer each, as the done page keeps
    them; sustain-1 sent to all four (Ana shared, Ben not), sustain-2 to Ana and Ben (both shared)."""
    from test_check_ins import sent_check_in

    from drip import changes
    from drip.core import answers

    with Store(walked.url) as db:
        with db.transaction() as conn:
            for email, (at, typed) in MID_ANSWERS.items():
                person = changes.find_person(conn, "test-cohort", email)
                kept = answers.clean(typed, person.program.goal("mid").ask)
                changes.complete(conn, person, "mid", at, changes.Evidence("link", answer=kept))
        sent = {
            ("sustain-1", email): SENT_1
            for email in ("ana@example.com", "ben@example.com", "cleo@example.com", "dora@example.com")
        } | {("sustain-2", "ana@example.com"): SENT_2, ("sustain-2", "ben@example.com"): SENT_2}
        given = {
            ("sustain-1", "ana@example.com"): "shared",
            ("sustain-1", "ben@example.com"): "not_shared",
            ("sustain-2", "ana@example.com"): "shared",
            ("sustain-2", "ben@example.com"): "shared",
        }
        for (step, email), at in sent.items():  # as the dispatcher marks an email sent
            delivery = sent_check_in(db, step, email, at)
            if (step, email) in given:  # as the answer page records a tap
                with db.transaction() as conn:
                    who = changes.find_person(conn, "test-cohort", email)
                    tap = at + dt.timedelta(days=1)
                    changes.answer(
                        conn, who, step, given[step, email], delivery, tap, changes.Evidence("link")
                    )
    return walked


def section(html: str, heading_id: str) -> str:
    """Return the report's section headed ``heading_id``."""
    start = html.rindex("<section", 0, html.index(f'<h2 id="{heading_id}">'))
    return html[start : html.index("</section>", start)]


def sustain_svgs(html: str) -> list[ElementTree.Element]:
    return [ElementTree.fromstring(svg) for svg in re.findall(r'<svg class="sustain-plot".*?</svg>', html)]


def test_the_report_shows_sustained_use_and_what_they_said(answered: Walked) -> None:
    found = read(answered, LATER)
    html = documents.report_html(found)
    sustained, said = section(html, "sustained"), section(html, "said")
    assert '<h2 id="sustained">Sustained use</h2>' in sustained and "What they said</h2>" in said
    assert html.index("Sustained use") < html.index("What they said") < html.index(">Participants</h2>")

    # Every figure in words: beside the chart, and as the chart's label.
    one = "sustain-1 (8 Jun): 1 of 4, 25%; 1 “Not this month”, 2 no answer"
    two = "sustain-2 (8 Jul): 2 of 2, 100%; 0 “Not this month”, 0 no answer"
    assert f"<li>{one}</li>" in sustained and f"<li>{two}</li>" in sustained
    (label,) = re.findall(r'class="sustain" role="img" aria-label="([^"]*)"', sustained)
    assert "answered “Yes, I shared something”" in label and one in label and two in label
    assert ">25%</span>" in sustained and ">100%</span>" in sustained, "each row's share beside it"
    for words in ("Yes, I shared something", "Not this month", "no answer yet"):
        assert f"</svg>{words}</li>" in sustained, "the legend names each part"

    # The drawing: a bar per check-in across the page, its parts in percentages that meet at 100.
    (svg,) = sustain_svgs(html)
    assert svg.get("viewBox") is None and svg.get("aria-hidden") == "true"
    bars = svg.findall(f"{SVG}g[@class='sc-bar']")
    assert [bar.find(f"{SVG}title").text for bar in bars] == [one, two]
    parts = [[(r.get("class"), r.get("x"), r.get("width")) for r in bar.iter(f"{SVG}rect")] for bar in bars]
    assert parts == [
        [("sc-first", "0.0%", "25.0%"), ("sc-other", "25.0%", "25.0%"), ("sc-none", "50.0%", "50.0%")],
        [("sc-first", "0.0%", "100.0%")],
    ]
    patterns = {p.get("id") for p in svg.iter(f"{SVG}pattern")}
    hatched = bars[0].find(f"{SVG}rect[@class='sc-other']")
    assert hatched.get("fill") == "url(#sustain-1-hatch-0)" and "sustain-1-hatch-0" in patterns
    tops = [float(bar.find(f"{SVG}rect").get("y").rstrip("%")) for bar in bars]
    assert tops == sorted(tops) and tops[0] > 0 and tops[-1] < 100, "one row under the other, inside the box"

    # What they said: per goal, newest first, with name and date; every answer as plain text.
    assert '<h3 id="said-short">Crawl: your LinkedIn profile and 10 connections</h3>' in said
    assert '<h3 id="said-mid">Walk: five voices worth reading daily</h3>' in said
    assert "said-long" not in said, "a goal nobody answered has no list"
    mid = said[said.index('id="said-mid"') :]
    order = [mid.index(name) for name in ("Cleo Hart", "Ben Ito", "Ana Ruiz")]
    assert order == sorted(order), "newest first"
    assert "Cleo Hart<small>14 Feb 2027</small><small>cleo@example.com</small>" in mid
    assert "3 answers</summary>" in mid and "1 answer</summary>" in said
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in said and "<script" not in html
    assert ">javascript:alert(1)</td>" in said and 'href="javascript' not in html.lower()
    assert len(LONG) == 280 and f">{LONG}</td>" in said, "a long answer whole, wrapped by the page"
    assert f">{ANA_URL}</td>" in said, "a web address is text"
    assert "<a " not in said and f'href="{ANA_URL}"' not in html, "without the cohort's opt-in, no link"
    assert "more are not shown" not in said


def test_the_dashboard_searches_what_they_said_on_the_server(answered: Walked) -> None:
    """The report runs no script: served from the dashboard, its search is a GET the server answers."""
    import base64
    import dataclasses

    from drip.config import load_settings
    from drip.web.app import create_app

    settings = dataclasses.replace(
        load_settings(environ={}), database_url=answered.url, admin_password="correct horse battery staple"
    )
    app = create_app(settings, clock=lambda: LATER)
    login = {"Authorization": "Basic " + base64.b64encode(b"owner:correct horse battery staple").decode()}
    try:
        client = app.test_client()
        whole = section(
            client.get("/admin/cohorts/test-cohort", headers=login).get_data(as_text=True), "said"
        )
        assert '<form method="get" action="#said" role="search"' in whole and "Show all" not in whole
        assert all(name in whole for name in ("Ana Ruiz", "Ben Ito", "Cleo Hart"))
        found = client.get("/admin/cohorts/test-cohort?said=GRACE", headers=login).get_data(as_text=True)
        said = section(found, "said")
        assert "Cleo Hart" in said and "Ben Ito" not in said and "Ana Ruiz" not in said, "the words, any case"
        assert 'value="GRACE"' in said and "Show all" in said and "1 answer</summary>" in said
        by_name = section(
            client.get("/admin/cohorts/test-cohort?said=ben@", headers=login).get_data(as_text=True), "said"
        )
        assert "Ben Ito" in by_name and "Cleo Hart" not in by_name
        hostile = client.get('/admin/cohorts/test-cohort?said="><script>x</script>', headers=login)
        text = section(hostile.get_data(as_text=True), "said")
        assert (
            "<script>x" not in text
            and "No answer mentions “&#34;&gt;&lt;script&gt;x&lt;/script&gt;”." in text
        )
    finally:
        app.extensions["drip"].database.close()
    assert 'role="search"' not in documents.report_html(read(answered, LATER)), "a file has no server to ask"


def test_web_address_answers_are_links_only_when_the_cohort_says_so(answered: Walked) -> None:
    import dataclasses

    found = read(answered, LATER)
    with Store(answered.url) as db, db.reading() as conn:
        cohort = find_cohort(conn, "test-cohort")
    assert cohort is not None and cohort.settings.link_answers is False
    assert outcomes.linked_goals(cohort) == frozenset()
    opted = dataclasses.replace(cohort, settings=dataclasses.replace(cohort.settings, link_answers=True))
    assert outcomes.linked_goals(opted) == {"short"}, "the goals whose question takes a web address"
    said = section(documents.report_html(found, linked=outcomes.linked_goals(opted)), "said")
    link = f'<a href="{ANA_URL}" rel="noopener noreferrer nofollow" target="_blank">{ANA_URL}</a>'
    assert said.count("<a ") == 1 and link in said
    # Even were every goal linked, what is not an http(s) address stays text.
    said = section(documents.report_html(found, linked={"short", "mid", "long"}), "said")
    assert said.count("<a ") == 1 and ">javascript:alert(1)</td>" in said


def test_answers_beyond_the_grid_s_limit_point_to_the_export(answered: Walked, monkeypatch) -> None:
    monkeypatch.setattr(documents, "GRID_LIMIT", 1)
    said = section(documents.report_html(read(answered, LATER)), "said")
    mid = said[said.index('id="said-mid"') :]
    assert "Cleo Hart" in mid and "Ben Ito" not in mid and "Ana Ruiz" not in mid, "the newest only"
    assert (
        "The newest 1 of 3 answers: 2 more are not shown. "
        "<code>drip export test-cohort --format csv</code> has them all." in mid
    )
    assert said.count("more are not shown") == 1, "the short goal's one answer is all there is"


@pytest.mark.parametrize(
    ("answer", "link"),
    [
        ("https://www.linkedin.com/in/ana-ruiz", True),
        ("http://intranet.example.com/people/ana?tab=posts#top", True),
        ("HTTPS://www.linkedin.com/in/ana", False),  # kept as a checked answer never is
        ("javascript:alert(1)", False),
        ("JavaScript:alert(document.cookie)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("ftp://files.example.com/x", False),
        ("https://ana:secret@www.linkedin.com/in/ana", False),
        ("https://www.linkedin.com/in/ana ruiz", False),
        (" https://www.linkedin.com/in/ana", False),
        ("www.linkedin.com/in/ana", False),  # not an address until https:// is put in front
        ("https://", False),
        ("https://exa mple.com", False),
        ("", False),
    ],
)
def test_an_answer_is_checked_again_before_it_becomes_a_link(answer: str, link: bool) -> None:
    assert documents.web_link(answer) == (answer if link else None)


OFTEN = (("often", "Every week"), ("sometimes", "Now and then"), ("never", "Not at all"))
SHARED = (("shared", "Yes, I shared something"), ("not_shared", "Not this month"))


def made(check_ins: tuple = (), people: tuple = (), goals: tuple = ()) -> progress.Progress:
    """A cohort's progress as given, without a database."""
    from drip.owners.outcomes import CheckIns

    start = dt.date(2027, 1, 11)
    return progress.Progress(
        slug="c", name="C", program="p", status=CohortStatus.ACTIVE, start=start, end=None,
        timezone="America/New_York", owners=(), now=dt.datetime(2028, 3, 1, tzinfo=dt.UTC),
        within=progress.DEFAULT_WITHIN, goals=goals or (progress.GoalInfo("g", "G", start),), people=people,
        deliveries={}, steps=(), failures=(), bounces=(), replies=(), check_ins=CheckIns(check_ins, ()),
    )  # fmt: skip


def occurrence(step: str, number: int, answers: tuple, counts: list[int], sent: dt.datetime):
    from drip.owners.outcomes import NO_ANSWER, Occurrence

    keys = [key for key, _ in answers] + [NO_ANSWER]
    return Occurrence(f"{step}-{number}", step, number, answers, dict(zip(keys, counts, strict=True)), sent)


def test_each_step_with_answers_is_a_group_of_bars_in_the_order_they_came() -> None:
    from drip.owners.sustain_chart import HATCHES, sustain_chart

    december = dt.datetime(2027, 12, 8, 14, tzinfo=dt.UTC)
    january = dt.datetime(2028, 1, 7, 14, tzinfo=dt.UTC)
    found = (
        occurrence("sustain", 2, SHARED, [3, 1, 0], january),
        occurrence("pulse", 1, OFTEN, [1, 2, 3, 4], december + dt.timedelta(days=1)),
        occurrence("sustain", 1, SHARED, [6, 2, 2], december),
    )
    chart = sustain_chart(found, "America/New_York")
    assert [(g.id, g.step, g.first) for g in chart.groups] == [
        ("sustain-1", "sustain", "Yes, I shared something"),
        ("sustain-2", "pulse", "Every week"),
    ]
    sustain, pulse = chart.groups
    assert [bar.day for bar in sustain.bars] == ["8 Dec 2027", "7 Jan 2028"], "the year, once it changes"
    assert [bar.day for bar in pulse.bars] == ["9 Dec"]
    assert [bar.share for bar in sustain.bars] == ["60%", "75%"]
    assert sustain.bars[0].words == "sustain-1 (8 Dec 2027): 6 of 10, 60%; 2 “Not this month”, 2 no answer"
    assert (
        pulse.bars[0].words == "pulse-1 (9 Dec): 1 of 10, 10%; 2 “Now and then”, 3 “Not at all”, 4 no answer"
    )
    assert pulse.description.startswith(
        "Share of those each pulse check-in went to who answered “Every week”."
    )
    assert [(k.kind, k.label, k.hatch) for k in pulse.legend] == [
        ("first", "Every week", 0), ("other", "Now and then", 0), ("other", "Not at all", 1),
        ("none", "no answer yet", 0),
    ]  # fmt: skip
    for group in chart.groups:
        for bar in group.bars:
            ends = [(part.x, round(part.x + part.width, 2)) for part in bar.parts]
            assert ends[0][0] == 0 and ends[-1][1] == 100, "a bar runs from 0 to 100%"
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ends)), "its parts meet"
    svg = ElementTree.fromstring(str(pulse.svg()))
    assert svg.get("viewBox") is None, "percentages of its box: hatching and strokes keep their size"
    ids = {p.get("id") for p in svg.iter(f"{SVG}pattern")}
    assert ids == {f"sustain-2-hatch-{n}" for n in range(len(HATCHES))}
    fills = [r.get("fill") for r in svg.iter(f"{SVG}rect") if r.get("class") == "sc-other"]
    assert fills == ["url(#sustain-2-hatch-0)", "url(#sustain-2-hatch-1)"], "each other answer its own"
    assert [line.get("x1") for line in svg.iter(f"{SVG}line")] == ["0%", "25%", "50%", "75%", "100%"]
    assert [(at, label, align) for at, label, align in chart.scale][::2] == [
        (0, "0%", "start"), (50, "50%", "middle"), (100, "100%", "end"),
    ]  # fmt: skip

    html = documents.report_html(made(found))
    assert html.count('<figure class="sustain-figure"') == 2 and html.count('class="sustain" role="img"') == 2
    assert '<h3 id="sustain-1">sustain: “Yes, I shared something”</h3>' in html
    assert '<h3 id="sustain-2">pulse: “Every week”</h3>' in html
    assert "<script" not in html


def test_without_check_ins_or_answers_the_report_says_so() -> None:
    html = documents.report_html(made())
    assert 'id="sustained"' not in html and '<svg class="sustain-plot"' not in html
    assert "What they said" in html and '<p class="none">No answers yet.</p>' in html


def test_answers_stored_some_other_way_are_never_markup_nor_a_link() -> None:
    start = dt.date(2027, 1, 11)
    hostile = {
        1: "javascript:alert(1)",
        2: '"><img src=x onerror=alert(1)>',
        3: 'https://www.linkedin.com/in/x"onmouseover="alert(1)',
        4: "https://www.linkedin.com/in/zoe",
    }
    people = tuple(
        progress.Person(
            n,
            f"p{n}@example.com",
            f"<i>P{n}</i>",
            "UTC",
            "active",
            {
                "short": progress.GoalState(
                    "done", start, dt.datetime(2027, 1, 20 + n, tzinfo=dt.UTC), "link", False, answer=text
                )
            },
        )  # fmt: skip
        for n, text in hostile.items()
    )
    html = documents.report_html(
        made(people=people, goals=(progress.GoalInfo("short", "S", start),)), linked={"short"}
    )
    said = section(html, "said")
    assert said.count("<a ") == 2 and 'href="https://www.linkedin.com/in/zoe"' in said
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in said
    assert 'href="https://www.linkedin.com/in/x&#34;onmouseover=&#34;alert(1)"' in said
    assert 'onmouseover="' not in html, "a quote in an address stays inside its attribute"
    assert "&lt;i&gt;P1&lt;/i&gt;" in said and "<i>P1</i>" not in html
    assert [said.index(f"p{n}@example.com") for n in (4, 3, 2, 1)] == sorted(
        said.index(f"p{n}@example.com") for n in (4, 3, 2, 1)
    ), "newest first"
