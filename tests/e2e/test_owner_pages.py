"""What an owner sees in a real browser: the dashboard and a cohort's report, on a laptop and a phone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_report import read

from conftest import _free_port
from drip.config import load_settings
from drip.owners import documents, progress, timeline_svg
from drip.web.app import create_app
from walked import AS_OF, Walked

CHROMIUM = shutil.which("chromium")
PASSWORD = "an owner's long password"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture
def site(walked: Walked) -> Iterator[str]:
    from waitress.server import create_server

    port = _free_port()
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": f"http://127.0.0.1:{port}"}),
        database_url=walked.url,
        admin_password=PASSWORD,
    )
    app = create_app(settings, clock=lambda: AS_OF)
    server = create_server(app, host="127.0.0.1", port=port, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        app.extensions["drip"].database.close()


@pytest.mark.parametrize("screen", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_dashboard_and_report_show_their_key_parts(site: str, screen: dict, browser, tmp_path: Path) -> None:
    context = browser.new_context(
        viewport=screen, http_credentials={"username": "owner", "password": PASSWORD}
    )
    page = context.new_page()
    page.goto(f"{site}/admin")
    assert page.get_by_role("heading", name="Cohorts").is_visible()
    assert page.get_by_role("heading", name="Test cohort").is_visible()
    assert page.get_by_role("img", name="2 of 4 done").is_visible()
    page.screenshot(path=tmp_path / "admin.png", full_page=True)
    assert no_sideways_scroll(page, screen)

    with page.expect_navigation():
        page.get_by_role("link", name="Open the report").click()
    assert page.get_by_role("heading", name="Test cohort", level=1).is_visible()
    chart = page.get_by_role("img", name=re.compile(r"Share of participants who have done each goal"))
    box = chart.bounding_box()
    assert box is not None and box["width"] >= screen["width"] * 0.8 and box["height"] > 150
    assert "2 of 4 done" in chart.get_attribute("aria-label")
    lines = chart.locator("svg polyline")
    assert lines.count() == 3 and lines.first.bounding_box()["width"] > box["width"] / 2
    for heading in ("Participants", "Emails and what followed", "Failures and bounces", "Replies"):
        assert page.get_by_role("heading", name=heading).is_visible()
    grid = page.locator("table.grid-table")
    assert grid.get_by_role("rowheader").count() == 4
    assert grid.get_by_text("overdue").count() == 2
    page.get_by_text("Travelling this week").scroll_into_view_if_needed()
    assert page.get_by_text("Travelling this week").is_visible()
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert no_sideways_scroll(page, screen), "wide tables scroll inside their box, not the page"
    assert (tmp_path / "report.png").stat().st_size > 20_000
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('a.back')).display") == "none"


def no_sideways_scroll(page, screen: dict) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= screen["width"]


#: the report's widths checked: a phone, a tablet, a laptop
WIDTHS = (375, 800, 1280)
#: what the browser laid out: text sizes in CSS px as drawn (an SVG's text times its scale), boxes
LAYOUT = """() => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const px = (e) => parseFloat(getComputedStyle(e).fontSize) * (e.getScreenCTM ? e.getScreenCTM().a : 1);
  const chart = document.querySelector('.chart');
  const timeline = document.querySelector('svg.timeline');
  const names = [...timeline.querySelectorAll('text.tl-name')];
  return {
    body: parseFloat(getComputedStyle(document.body).fontSize),
    small: parseFloat(getComputedStyle(document.querySelector('th')).fontSize),
    labels: [...chart.querySelectorAll('.label')].map((e) => ({text: e.textContent, px: px(e), box: box(e)})),
    figure: box(chart.closest('figure')),
    plot: box(chart.querySelector('.plot')),
    timelineText: [...new Set([...timeline.querySelectorAll('text')].map((e) => Math.round(px(e) * 10) / 10))],
    names: names.map((e) => e.textContent),
    nameRight: Math.max(...names.map((e) => e.getBoundingClientRect().right - timeline.getBoundingClientRect().left)),
    rows: timeline.querySelectorAll('g[role=img]').length,
    timelineBox: box(timeline),
    scrollBox: [timeline.parentElement.scrollWidth, timeline.parentElement.clientWidth],
    pageWidth: document.documentElement.scrollWidth,
    nameFill: getComputedStyle(names[0]).fill,
  };
}"""


def test_the_report_s_text_is_the_same_size_at_every_width_and_on_paper(
    walked: Walked, browser, shots: Path
) -> None:
    found = read(walked)
    html = documents.report_html(found, link_back="/admin")
    seen: dict[str, dict] = {}
    for width in WIDTHS:
        for media in ("screen", "print"):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.emulate_media(media=media)
            page.set_content(html)
            page.screenshot(path=shots / f"report-{width}-{media}.png", full_page=True)
            for part, figure in (
                ("chart", page.locator("figure").first),
                ("timeline", page.locator("figure").nth(1)),
            ):
                figure.screenshot(path=shots / f"report-{width}-{media}-{part}.png")
            seen[f"{width} {media}"] = laid = page.evaluate(LAYOUT)
            assert_chart_reads(laid, width)
            if media == "screen":
                assert laid["pageWidth"] <= width, "no sideways scrolling"
            assert laid["rows"] == 4, "a line per participant"
            assert laid["names"] == ["Ana Ruiz", "Ben Ito", "Cleo Hart", "=Dora <b>Diaz</b>"]
            assert laid["nameRight"] <= timeline_svg.NAME_WIDTH, "names keep to their column"
            back = page.evaluate("getComputedStyle(document.querySelector('a.back')).display")
            assert (back == "none") is (media == "print")
            page.close()
    dark = browser.new_page(viewport={"width": 800, "height": 900}, color_scheme="dark")
    dark.set_content(html)
    dark.screenshot(path=shots / "report-800-dark.png", full_page=True)
    assert dark.evaluate(LAYOUT)["nameFill"] != seen["800 screen"]["nameFill"], "the page's dark colours"

    screens = [seen[f"{width} screen"] for width in WIDTHS]
    sizes = {label["px"] for laid in screens for label in laid["labels"]}
    assert len(sizes) == 1, f"chart labels are one size at every width: {sizes}"
    (size,) = sizes
    assert size == screens[0]["small"] and 0.7 <= size / screens[0]["body"] <= 0.85, "the page's small text"
    drawn = {tuple(sorted(laid["timelineText"])) for laid in screens}
    assert drawn == {(12.0, 13.0)}, f"the timeline's text is one size at every width: {drawn}"
    assert all(0.7 <= px / screens[0]["body"] <= 0.85 for px in (12.0, 13.0)), "and the page's small text"
    phone, laptop = screens[0], screens[-1]
    assert phone["scrollBox"][0] > phone["scrollBox"][1], "on a phone the timeline scrolls in its own box"
    assert laptop["scrollBox"][0] <= laptop["scrollBox"][1], "on a laptop it fits"
    for width in WIDTHS:
        paper = seen[f"{width} print"]
        assert paper["timelineBox"][2] <= paper["figure"][2] + 1, "printed, the timeline fits the page"


def assert_chart_reads(laid: dict, width: int) -> None:
    """No chart label overlaps another or leaves the chart's figure."""
    labels = laid["labels"]
    assert {"100%", "0%", "short due"} <= {label["text"] for label in labels}
    left, top, right, bottom = laid["figure"]
    for label in labels:
        x1, y1, x2, y2 = label["box"]
        assert left <= x1 and x2 <= right and top <= y1 and y2 <= bottom, f"{label['text']} is cut at {width}"
    for n, one in enumerate(labels):
        for other in labels[n + 1 :]:
            a, b = one["box"], other["box"]
            apart = a[2] <= b[0] + 0.5 or b[2] <= a[0] + 0.5 or a[3] <= b[1] + 0.5 or b[3] <= a[1] + 0.5
            assert apart, f"{one['text']!r} overlaps {other['text']!r} at {width} px"


# --- Sustained use and What they said ------------------------------------------------------------

SHARED = (("shared", "Yes, I shared something"), ("not_shared", "Not this month"))
OFTEN = (("often", "Every week"), ("sometimes", "Now and then"), ("never", "Not at all"))
#: what the browser laid out of the outcomes: each chart's labels, rows and bars; the answers' rows
OUTCOMES = """() => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const charts = [...document.querySelectorAll('.sustain')].map((chart) => ({
    labels: [...chart.querySelectorAll('.label')].map((e) => ({
      text: e.textContent, px: parseFloat(getComputedStyle(e).fontSize), box: box(e),
      colour: getComputedStyle(e).color,
    })),
    days: [...chart.querySelectorAll('.day')].map(box),
    bars: [...chart.querySelectorAll('g.sc-bar')].map((g) => [...g.querySelectorAll('rect')].map((r) => ({
      kind: r.getAttribute('class'), box: box(r), fill: getComputedStyle(r).fill,
      stroke: getComputedStyle(r).stroke, strokeWidth: getComputedStyle(r).strokeWidth,
    }))),
    plot: box(chart.querySelector('.plot')),
    figure: box(chart.closest('figure')),
    card: getComputedStyle(chart.closest('figure')).backgroundColor,
  }));
  return {
    charts,
    small: parseFloat(getComputedStyle(document.querySelector('th')).fontSize),
    pageWidth: document.documentElement.scrollWidth,
    answers: [...document.querySelectorAll('section.answers tbody tr')].filter((r) => r.offsetParent).length,
  };
}"""


def with_outcomes(found: progress.Progress) -> progress.Progress:
    """The walked cohort as it may stand in the autumn: six monthly check-ins of one step, two of a
    second, and each participant's answer to the mid goal."""
    from drip.owners.outcomes import NO_ANSWER, CheckIns, Occurrence

    def occurrence(step: str, number: int, answers: tuple, counts: list[int], month: int) -> Occurrence:
        keys = [key for key, _ in answers] + [NO_ANSWER]
        sent = dt.datetime(2027, month, 8, 13, tzinfo=dt.UTC)
        return Occurrence(
            f"{step}-{number}", step, number, answers, dict(zip(keys, counts, strict=True)), sent
        )

    check_ins = tuple(
        occurrence("sustain", n, SHARED, [6 - n % 3, n % 3 + 1, 3 - n % 2], 5 + n) for n in range(1, 7)
    ) + (occurrence("pulse", 1, OFTEN, [2, 3, 4, 1], 7), occurrence("pulse", 2, OFTEN, [10, 0, 0, 0], 9))
    typed = ["Ada Lovelace, Grace Hopper, Alan Kay, Barbara Liskov, Edsger Dijkstra. " * 3, "Five", "x" * 280]
    people = tuple(
        dataclasses.replace(
            person,
            goals={
                **person.goals,
                "mid": dataclasses.replace(
                    person.goals["mid"],
                    status="done",
                    answer=text,
                    completed_at=dt.datetime(2027, 3, 1 + n, tzinfo=dt.UTC),
                ),
            },
        )
        for n, (person, text) in enumerate(
            zip(found.people, [*typed, "https://example.com/feed"], strict=True)
        )
    )
    return dataclasses.replace(found, check_ins=CheckIns(check_ins, ()), people=people)


def contrast(one: str, two: str) -> float:
    """The WCAG contrast ratio of two CSS rgb() colours."""

    def luminance(colour: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_sustained_use_reads_the_same_at_every_width_on_paper_and_in_the_dark(
    walked: Walked, browser, shots: Path
) -> None:
    found = read(walked)
    html = documents.report_html(with_outcomes(found))
    seen: dict[str, dict] = {}
    for width in WIDTHS:
        for media in ("screen", "print"):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.emulate_media(media=media)
            page.set_content(html)
            page.locator("section[aria-labelledby=sustained]").screenshot(
                path=shots / f"report-{width}-{media}-sustained.png"
            )
            seen[f"{width} {media}"] = laid = page.evaluate(OUTCOMES)
            assert [len(chart["bars"]) for chart in laid["charts"]] == [6, 2], "a bar per check-in, per step"
            for chart in laid["charts"]:
                assert_sustain_reads(chart, width, media)
            if media == "screen":
                assert laid["pageWidth"] <= width, "no sideways scrolling"
            assert laid["answers"] == 5, "every answer shown: Ana's profile, and four mid goals"
            plot, first = laid["charts"][0]["plot"], laid["charts"][0]["bars"][0][0]["box"]
            share = (first[2] - first[0]) / (plot[2] - plot[0])
            assert abs(share - 5 / 9) < 0.01, "sustain-1's first part is its 5 of 9 of the plot"
            page.close()

    sizes = {label["px"] for laid in seen.values() for chart in laid["charts"] for label in chart["labels"]}
    assert sizes == {seen["375 screen"]["small"]}, (
        f"the page's small text at every width and on paper: {sizes}"
    )
    widths = {
        rect["strokeWidth"]
        for laid in seen.values()
        for chart in laid["charts"]
        for bar in chart["bars"]
        for rect in bar
        if rect["kind"] == "sc-none"
    }
    assert widths == {"1.5px"}, "strokes keep their width however wide the bar"

    dark = browser.new_page(viewport={"width": 800, "height": 900}, color_scheme="dark")
    dark.set_content(html)
    dark.locator("section[aria-labelledby=sustained]").screenshot(
        path=shots / "report-800-dark-sustained.png"
    )
    night, day = dark.evaluate(OUTCOMES)["charts"][0], seen["800 screen"]["charts"][0]
    dark.close()
    for chart in (night, day):
        card = chart["card"]
        first = next(r for bar in chart["bars"] for r in bar if r["kind"] == "sc-first")
        other = next(r for bar in chart["bars"] for r in bar if r["kind"] == "sc-other")
        none = next(r for bar in chart["bars"] for r in bar if r["kind"] == "sc-none")
        assert contrast(first["fill"], card) >= 3, "the first answer stands out from the card"
        assert contrast(other["stroke"], card) >= 3 and contrast(none["stroke"], card) >= 3
        assert all(contrast(label["colour"], card) >= 4.5 for label in chart["labels"]), "labels are readable"
    assert night["card"] != day["card"] and night["bars"][0][0]["fill"] != day["bars"][0][0]["fill"]


def assert_sustain_reads(chart: dict, width: int, media: str) -> None:
    """Labels keep to the figure and off each other; each row's date stands beside its bar; the bars'
    parts are as long as their shares of the plot."""
    left, top, right, bottom = chart["figure"]
    labels = chart["labels"]
    for label in labels:
        x1, y1, x2, y2 = label["box"]
        assert left <= x1 and x2 <= right and top <= y1 and y2 <= bottom, (
            f"{label['text']} cut at {width} {media}"
        )
    for n, one in enumerate(labels):
        for other in labels[n + 1 :]:
            a, b = one["box"], other["box"]
            apart = a[2] <= b[0] + 0.5 or b[2] <= a[0] + 0.5 or a[3] <= b[1] + 0.5 or b[3] <= a[1] + 0.5
            assert apart, f"{one['text']!r} overlaps {other['text']!r} at {width} {media}"
    plot_left, _, plot_right, _ = chart["plot"]
    for day, bar in zip(chart["days"], chart["bars"], strict=True):
        middle = (bar[0]["box"][1] + bar[0]["box"][3]) / 2
        assert abs((day[1] + day[3]) / 2 - middle) < 2, f"a date beside its bar at {width} {media}"
        assert abs(bar[0]["box"][0] - plot_left) < 1 and abs(bar[-1]["box"][2] - plot_right) < 1
    assert plot_right - plot_left > (right - left) / 2, "the bars keep most of the width"


def test_each_goal_s_answers_fold_away_and_show_whole_without_script(walked: Walked, browser) -> None:
    found = read(walked)
    html = documents.report_html(with_outcomes(found))
    assert "<script" not in html, "the report runs no script"
    context = browser.new_context(viewport={"width": 375, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    page.set_content(html)
    answers = page.locator("section.answers")
    rows = answers.locator("tbody tr")
    assert rows.count() == 5 and all(rows.nth(n).is_visible() for n in range(5)), "all shown at first"
    assert answers.get_by_role("heading", name="Walk: five voices worth reading daily").is_visible()
    answers.get_by_text("4 answers").click()
    assert [rows.nth(n).is_visible() for n in range(5)] == [True, False, False, False, False]
    answers.get_by_text("4 answers").click()
    assert rows.nth(4).is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "long answers wrap"
    context.close()
