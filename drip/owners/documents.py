"""The owners' documents: the cohort report (one self-contained HTML file) and the dashboard's pages.

The templates live in drip/templates and are rendered in a sandboxed,
autoescaping Jinja environment: names and replies come from participants, so
nothing they wrote is ever markup. The chart is inline SVG drawn from
coordinates computed here, so the report loads nothing from anywhere and
reads, prints and zooms the same offline.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import PackageLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from drip.owners.progress import Progress

#: line colours of the goals, in order; each has a 3:1 contrast or better on white and on the dark theme
GOAL_COLOURS = ("#0a66c2", "#c2410c", "#15803d", "#7c3aed", "#be185d", "#0f766e")

#: participants shown in the report's grid; a larger cohort's full list is ``drip export``'s job
GRID_LIMIT = 2000

#: the chart's drawing area, in SVG user units
WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 24, 14, 28


@dataclass(frozen=True)
class Line:
    key: str
    title: str
    colour: str
    #: "x,y x,y ..." for the SVG polyline
    points: str
    done: int
    total: int


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    """Completion over time: one line per goal, the share of participants who have done it."""

    width: int
    height: int
    left: int
    bottom: float
    top: int
    right: float
    lines: tuple[Line, ...]
    #: horizontal grid lines: (y, label)
    levels: tuple[tuple[float, str], ...]
    #: goal deadlines as vertical markers
    deadlines: tuple[Tick, ...]
    #: dates along the bottom
    dates: tuple[Tick, ...]
    description: str


def completion_chart(progress: Progress) -> Chart:
    """Return the chart of ``progress``: per goal, the share done at the end of each day."""
    days = progress.days()
    span = max(len(days) - 1, 1)
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT

    def x(index: float) -> float:
        return round(LEFT + (right - LEFT) * index / span, 1)

    def y(share: float) -> float:
        return round(bottom - (bottom - TOP) * share, 1)

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
    deadlines = tuple(
        Tick(x((goal.deadline - days[0]).days), goal.key)
        for goal in progress.goals
        if goal.deadline and days[0] <= goal.deadline <= days[-1]
    )
    step = max(1, round(len(days) / 5))
    dates = [Tick(x(i), f"{days[i].day} {days[i]:%b}") for i in range(0, len(days), step)]
    if len(days) > 1 and (len(days) - 1) % step > step // 2:
        dates.append(Tick(x(len(days) - 1), f"{days[-1].day} {days[-1]:%b}"))
    said = "; ".join(f"{line.title}: {line.done} of {line.total} done" for line in lines)
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        bottom,
        TOP,
        right,
        tuple(lines),
        tuple((y(level / 4), f"{25 * level}%") for level in range(5)),
        deadlines,
        tuple(dates),
        f"Share of participants who have done each goal, {days[0]:%d %b %Y} to {days[-1]:%d %b %Y}. {said}.",
    )


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


def report_html(progress: Progress, *, link_back: str | None = None) -> str:
    """Return the cohort's report as one HTML document that needs nothing else."""
    return render_page(
        "report.html",
        p=progress,
        chart=completion_chart(progress),
        zone=ZoneInfo(progress.timezone),
        within_days=progress.within.days,
        link_back=link_back,
        grid_limit=GRID_LIMIT,
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
