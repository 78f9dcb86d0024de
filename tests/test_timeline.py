"""The timeline drawing: `drip plan --format svg`, a line per participant, checked by parsing the SVG."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter

from click.testing import CliRunner

from conftest import CohortFactory
from drip.cli import main
from drip.owners import timeline, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
NOW = ["--now", "2027-01-04T12:00Z"]
HOSTILE = """\
email,name,timezone
ana@example.com,<script>alert('x')</script>,America/New_York
ben@example.com,"Ben ""&"" <Ito>",Asia/Tokyo
cleo@example.com,Cleo Hart,Europe/London
"""


def run(runner: CliRunner, *args: str, db: str | None = None) -> str:
    options = ["--database-url", db] if db else []
    result = runner.invoke(main, [*options, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def lines(svg: ElementTree.Element) -> list[ElementTree.Element]:
    """Return the participants' lines: the groups that say in words what each line shows."""
    return svg.findall(f"{SVG}g[@role='img']")


def marks(line: ElementTree.Element) -> Counter[str]:
    """Count a line's marks by what they show (their class)."""
    return Counter(g.get("class", "").removeprefix("tl-") for g in line.iter(f"{SVG}g") if g.get("transform"))


def test_plan_as_svg_is_one_well_formed_document_with_a_line_per_participant(
    runner: CliRunner, make_cohort: CohortFactory
) -> None:
    folder = str(make_cohort())
    out = run(runner, "plan", folder, "--format", "svg", *NOW)
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg')
    svg = ElementTree.fromstring(out.split("\n", 1)[1])
    assert svg.tag == f"{SVG}svg" and svg.get("viewBox") == f"0 0 {svg.get('width')} {svg.get('height')}"
    assert svg.findtext(f"{SVG}title") == "Test cohort: the plan"

    planned = json.loads(run(runner, "plan", folder, "--format", "json", *NOW))
    rows = lines(svg)
    assert [row.get("aria-label").split(" (")[0] for row in rows] == ["Ana Ruiz", "Ben Ito", "Cleo Hart"]
    zones = {"ana@example.com": "EST", "ben@example.com": "JST", "cleo@example.com": "GMT"}
    for row, (email, zone) in zip(rows, zones.items(), strict=True):
        theirs = [entry for entry in planned if entry["email"] == email]
        dated = [entry for entry in theirs if entry["utc"]]
        assert marks(row) == {"to-come": len(dated), "waiting": 1}, "a mark per dated email, one for the rest"
        waiting = [entry["step"] for entry in theirs if entry["status"] == "waiting"]
        assert row.get("aria-label").endswith(f"{len(dated)} to come, {len(waiting)} waiting for a goal")
        said = [title.text for title in row.iter(f"{SVG}title")]
        assert f"welcome: due Mon 11 Jan 2027 09:00 {zone}" in said, "each in their own zone"
        assert f"waiting for a goal: {', '.join(waiting)}" in said
    texts = [text.text for text in svg.iter(f"{SVG}text")]
    assert {"short due 1 Feb 2027", "mid due 1 Mar 2027", "Participant", "waiting"} <= set(texts)
    legend = [text for text in texts if text in timeline.LEGEND.values()]
    assert legend == ["to come", "waits for its goal to be done"], "the legend names the marks used"


def test_roster_names_stay_text(runner: CliRunner, make_cohort: CohortFactory) -> None:
    out = run(runner, "plan", str(make_cohort(roster=HOSTILE)), "--format", "svg", *NOW)
    assert "<script" not in out and "<Ito>" not in out
    svg = ElementTree.fromstring(out.split("\n", 1)[1])
    assert not list(svg.iter(f"{SVG}script"))
    labels = [row.get("aria-label") for row in lines(svg)]
    assert labels[0].startswith("<script>alert('x')</script> (ana@example.com)")
    assert labels[1].startswith('Ben "&" <Ito> (ben@example.com)')
    names = [text for text in svg.iter(f"{SVG}text") if text.get("class") == "tl-name"]
    # A long name is cut to its column, with the whole of it as the text's title.
    assert names[0].text.startswith("<script>") and names[0].text.endswith("…")
    assert names[0].findtext(f"{SVG}title") == "<script>alert('x')</script>"
    assert names[1].text == 'Ben "&" <Ito>'


def test_a_started_cohort_s_svg_shows_what_became_of_each_email(
    runner: CliRunner, make_cohort: CohortFactory, database_url: str
) -> None:
    folder = str(make_cohort())
    run(runner, "start", folder, *NOW, db=database_url)
    ana = ["test-cohort", "ana@example.com", *NOW, "--backdate"]
    run(runner, "participant", "done", *ana, "--goal", "short", db=database_url)
    run(runner, "participant", "waive", *ana, "--goal", "mid", db=database_url)
    stored = json.loads(run(runner, "plan", folder, "--format", "json", *NOW, db=database_url))
    theirs = Counter(
        entry["status"] for entry in stored if entry["email"] == "ana@example.com" and entry["utc"]
    )
    assert theirs["cancelled"] == 10  # short's 5, and mid's 5 that had a date

    svg = ElementTree.fromstring(
        run(runner, "plan", folder, "--format", "svg", *NOW, db=database_url).split("\n", 1)[1]
    )
    row = lines(svg)[0]
    assert marks(row) == {"cancelled": theirs["cancelled"], "to-come": theirs["scheduled"], "waiting": 1}
    cancelled = [t.text for t in row.iter(f"{SVG}title") if t.text and ": cancelled " in t.text]
    assert all(
        text.endswith("(the goal short is done)") or text.endswith("(the goal mid is waived)")
        for text in cancelled
    )
    assert "cancelled: its goal was done, or they stopped" in [t.text for t in svg.iter(f"{SVG}text")]


def test_marks_on_one_lane_keep_clear_of_each_other(runner: CliRunner, make_cohort: CohortFactory) -> None:
    svg = ElementTree.fromstring(
        run(runner, "plan", str(make_cohort()), "--format", "svg", *NOW).split("\n", 1)[1]
    )
    width = float(svg.get("width"))
    for row in lines(svg):
        lanes: dict[float, list[float]] = {}
        for g in row.iter(f"{SVG}g"):
            if g.get("transform"):
                x, y = map(
                    float, re.fullmatch(r"translate\(([\d.]+) ([\d.]+)\)", g.get("transform")).groups()
                )
                lanes.setdefault(y, []).append(x)
                assert timeline_svg.NAME_WIDTH < x < width
        assert 1 < len(lanes) <= timeline_svg.MAX_LANES
        for xs in lanes.values():
            assert all(b - a >= timeline_svg.MARK_SPACE for a, b in itertools.pairwise(sorted(xs))), xs


def short_timeline(days: int, now: dt.datetime | None = None) -> timeline.Timeline:
    start = dt.datetime(2027, 1, 11, 14, tzinfo=dt.UTC)
    sent = tuple(
        timeline.Mark(start + dt.timedelta(days=n), timeline.Kind.SENT, f"step-{n}: sent")
        for n in range(days)
    )
    row = timeline.Row("Ana Ruiz", "ana@example.com", sent)
    return timeline.Timeline("A test", "America/New_York", (row,), {"short": dt.date(2027, 1, 20)}, now)


def test_a_short_span_names_its_mondays_and_a_long_one_its_months() -> None:
    short = ElementTree.fromstring(str(timeline_svg.draw(short_timeline(20))))
    texts = [text.text for text in short.iter(f"{SVG}text")]
    assert ["11 Jan", "18 Jan", "25 Jan"] == [t for t in texts if re.fullmatch(r"\d+ Jan", t or "")]
    long = ElementTree.fromstring(str(timeline_svg.draw(short_timeline(200))))
    months = [t.text for t in long.iter(f"{SVG}text") if re.fullmatch(r"[A-Z][a-z]{2}( 2027)?", t.text or "")]
    assert months[0] == "Feb 2027" and months[1:3] == ["Mar", "Apr"], "the year once, then each January"
    for svg in (short, long):
        width = float(svg.get("width"))
        for text in svg.iter(f"{SVG}text"):
            assert float(text.get("x")) + timeline_svg._width(text.text or "", 13) <= width + 1, text.text


def test_now_and_each_deadline_have_a_line_of_the_header_each() -> None:
    now = dt.datetime(2027, 1, 20, 15, tzinfo=dt.UTC)  # the deadline's day: close enough to collide
    svg = ElementTree.fromstring(str(timeline_svg.draw(short_timeline(20, now))))
    labels = {
        t.text: float(t.get("y"))
        for t in svg.iter(f"{SVG}text")
        if t.text in ("now", "short due 20 Jan 2027")
    }
    assert len(labels) == 2 and len(set(labels.values())) == 2, "one below the other, never over each other"


def test_nothing_planned_still_draws_the_participants() -> None:
    empty = timeline.Timeline("Nothing yet", "UTC", (timeline.Row("Ana", "ana@example.com", ()),), {}, None)
    svg = ElementTree.fromstring(str(timeline_svg.draw(empty, standalone=True)))
    assert [row.get("aria-label") for row in lines(svg)] == ["Ana (ana@example.com): no emails"]
