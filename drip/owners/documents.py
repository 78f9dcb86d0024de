"""The owners' documents: the cohort report (one self-contained HTML file) and the dashboard's pages.

The templates live in drip/templates and are rendered in a sandboxed,
autoescaping Jinja environment: names, replies and answers come from
participants, so nothing they wrote is ever markup. The chart is inline SVG
drawn from coordinates computed here, the check-ins' by ``sustain_chart`` and
the timeline by ``timeline_svg``, so the report loads nothing from anywhere and
reads, prints and zooms the same offline. It runs no script: it is also a file
attached to the owners' digest, and the dashboard's policy allows none.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import PackageLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from drip.core.answers import AnswerError, web_address
from drip.owners import timeline, timeline_svg
from drip.owners.progress import Progress
from drip.owners.sustain_chart import sustain_chart

logger = logging.getLogger(__name__)

#: line colours of the goals, in order; each has a 3:1 contrast or better on white and on the dark theme
GOAL_COLOURS = ("#0a66c2", "#c2410c", "#15803d", "#7c3aed", "#be185d", "#0f766e")

#: participants shown in the report's grid, and answers per goal; a larger cohort's are ``drip export``'s job
GRID_LIMIT = 2000
#: what a web-address answer may start with to be shown as a link, when the cohort allows links
LINK_SCHEMES = ("http", "https")
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Line:
    key: str
    title: str
    colour: str
    #: "x,y x,y ..." for the SVG polyline, both 0 to 100 across and down the plot
    points: str
    done: int
    total: int


@dataclass(frozen=True)
class Tick:
    #: where across the plot (or down it, for a level), 0 to 100
    at: float
    label: str
    #: which end of the label stands at ``at``: start, middle or end
    align: str = "middle"


@dataclass(frozen=True)
class Chart:
    """Completion over time: one line per goal, the share of participants who have done it.

    The plot stretches to the page's width, so its text is no part of it: the labels are placed
    around it in percentages, and keep the page's own size at any width.
    """

    lines: tuple[Line, ...]
    #: horizontal grid lines, 0 at the top (100%)
    levels: tuple[Tick, ...]
    #: goal deadlines as vertical markers
    deadlines: tuple[Tick, ...]
    #: dates along the bottom
    dates: tuple[Tick, ...]
    description: str


#: the most intervals between the dates named along the chart's foot
DATE_INTERVALS = 4
#: how far apart those dates stay, in % of the plot: on a phone's plot, labels such as "30 Sep"
#: this far apart cannot meet, even the first (which starts at the left edge) and the second
DATES_APART = 24


def completion_chart(progress: Progress) -> Chart:
    """Return the chart of ``progress``: per goal, the share done at the end of each day."""
    days = progress.days()
    span = max(len(days) - 1, 1)

    def x(index: float) -> float:
        return round(100 * index / span, 2)

    def y(share: float) -> float:
        return round(100 - 100 * share, 2)

    lines = []
    for n, goal in enumerate(progress.goals):
        counts = progress.counts(goal.key)
        total = counts["total"]
        series = progress.series(goal.key)
        points = " ".join(f"{x(i)},{y(done / total if total else 0)}" for i, done in enumerate(series))
        if len(series) == 1:  # one day only: a flat stroke still shows where the line stands
            points += f" {x(1)},{y(series[0] / total if total else 0)}"
        lines.append(
            Line(goal.key, goal.title, GOAL_COLOURS[n % len(GOAL_COLOURS)], points, counts["done"], total)
        )
    deadlines = []
    for goal in progress.goals:
        if goal.deadline and days[0] <= goal.deadline <= days[-1]:
            at = x((goal.deadline - days[0]).days)
            deadlines.append(Tick(at, f"{goal.key} due", "start" if at <= 50 else "end"))
    last = len(days) - 1
    intervals = min(DATE_INTERVALS, last)
    named: list[int] = []
    for index in sorted({round(n * last / intervals) for n in range(intervals + 1)} if intervals else {0}):
        if named and x(index) - x(named[-1]) < DATES_APART:  # whole days put it too close
            if index != last:
                continue
            named.pop()  # the last day is always named
        named.append(index)
    ends = {0: "start", len(named) - 1: "end"} if len(named) > 1 else {0: "start"}
    dates = [
        Tick(x(index), f"{days[index].day} {days[index]:%b}", ends.get(n, "middle"))
        for n, index in enumerate(named)
    ]
    said = "; ".join(f"{line.title}: {line.done} of {line.total} done" for line in lines)
    return Chart(
        tuple(lines),
        tuple(Tick(y(level / 4), f"{25 * level}%") for level in range(5)),
        tuple(deadlines),
        tuple(dates),
        f"Share of participants who have done each goal, {days[0]:%d %b %Y} to {days[-1]:%d %b %Y}. {said}.",
    )


@dataclass(frozen=True)
class Said:
    """One participant's answer to a goal's question, as "What they said" lists it."""

    name: str
    email: str
    at: dt.datetime | None
    #: plain text, shown escaped
    text: str
    #: where a link goes: the answer itself, when it is a web address and the cohort shows them as links
    href: str | None = None


@dataclass(frozen=True)
class GoalAnswers:
    key: str
    title: str
    #: how many gave an answer; the newest ``GRID_LIMIT`` of them are ``shown``
    total: int
    shown: tuple[Said, ...]


def goal_answers(progress: Progress, linked: Collection[str] = (), query: str = "") -> list[GoalAnswers]:
    """Return each goal's answers, newest first: the goals of ``linked`` show web addresses as links.

    ``query``: only the answers whose words, participant's name or address hold it (any case).
    """
    found = []
    wanted = query.strip().casefold()
    for goal in progress.goals:
        given = [
            (person, state)
            for person in progress.people
            if (state := person.goals.get(goal.key)) is not None
            and state.answer
            and (not wanted or wanted in f"{state.answer}\n{person.name}\n{person.email}".casefold())
        ]
        given.sort(key=lambda item: item[1].completed_at or _EARLIEST, reverse=True)  # ties: roster order
        shown = tuple(
            Said(
                person.name,
                person.email,
                state.completed_at,
                str(state.answer),
                web_link(str(state.answer)) if goal.key in linked else None,
            )
            for person, state in given[:GRID_LIMIT]
        )
        if given:
            found.append(GoalAnswers(goal.key, goal.title, len(given), shown))
    return found


def web_link(text: str) -> str | None:
    """Return ``text`` if it is an http or https address fit to link to, else None.

    Answers were checked when they were given; an answer is checked again here, where it would
    become a link, so that nothing stored some other way (an older drip, a hand-edited row) does.
    """
    try:
        checked = web_address(text, max(len(text), 1))
    except AnswerError:
        return None
    return text if checked == text and urlsplit(text).scheme in LINK_SCHEMES else None


@functools.cache
def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=PackageLoader("drip", "templates"),
        # HTML is escaped; the digest's plain-text part is text, where escaping would only garble names.
        autoescape=select_autoescape(disabled_extensions=("txt",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(day=_day, local=_local, percent=_percent)
    return env


def render_page(template: str, **context: Any) -> str:
    """Render one of drip/templates' pages in the sandbox (the CLI's report and the dashboard alike)."""
    return _environment().get_template(template).render(**context)


def report_html(
    progress: Progress,
    *,
    link_back: str | None = None,
    linked: Collection[str] | None = None,
    query: str | None = None,
) -> str:
    """Return the cohort's report as one HTML document that needs nothing else.

    ``linked``: the goals whose web-address answers are links; by default the cohort's own choice
    (``Progress.linked``, from ``outcomes.linked_goals``). Other answers are text. ``query``: the
    report is served (the dashboard), and "What they said" gets a search form showing the answers
    that hold it ("" for all); None for a file, which has no server to ask.
    """
    drawn = timeline.report_timeline(progress)
    occurrences = progress.check_ins.occurrences
    return render_page(
        "report.html",
        p=progress,
        chart=completion_chart(progress),
        sustain=sustain_chart(occurrences, progress.timezone) if occurrences else None,
        said=goal_answers(progress, progress.linked if linked is None else linked, query or ""),
        query=query,
        zone=ZoneInfo(progress.timezone),
        within_days=progress.within.days,
        link_back=link_back,
        grid_limit=GRID_LIMIT,
        timeline=timeline_svg.draw(drawn),
        timeline_legend=[(timeline_svg.symbol(kind), words) for kind, words in timeline_svg.legend(drawn)],
        timeline_rows=len(drawn.rows),
    )


def _day(value: dt.date | dt.datetime | None, zone: ZoneInfo | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.astimezone(zone).date() if zone else value.date()
    return f"{value.day} {value:%b %Y}"


def _local(value: dt.datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return f"{local.day} {local:%b %Y %H:%M} {local.tzname()}"


def _percent(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "–"
