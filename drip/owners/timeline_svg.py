"""A timeline (``drip.owners.timeline``) drawn as SVG: a line per participant.

The report draws its first participants' lines inline; ``drip plan --format svg`` writes the plan's
as a document of its own. Both come from ``draw``. One unit of the drawing is one CSS pixel, so its
text is the page's small text at every screen width: a narrow screen scrolls the drawing sideways in
its own box, and print scales it to the paper. Every mark has a shape of its own as well as a colour,
and every name and step is escaped, since rosters are written by people.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from drip.owners.timeline import LEGEND, Kind, Mark, Row, Timeline, short_day

#: each mark's shape around (0, 0), about 10 px across
SHAPES = {
    Kind.SENT: '<circle r="4.5"/>',
    Kind.TO_COME: '<circle r="4"/>',
    Kind.WAITING: '<circle r="4"/>',
    Kind.SKIPPED: '<circle r="4"/><path d="M-3 3 3-3"/>',
    Kind.CANCELLED: '<path d="M-3.5-3.5 3.5 3.5M-3.5 3.5 3.5-3.5"/>',
    Kind.FAILED: '<path d="M-5-4H5L0 4.5Z"/>',
    Kind.DONE: '<path d="M-4.5 0.5-1.5 3.5 4.5-3.5"/>',
    Kind.WAIVED: '<path d="M0-5 5 0 0 5-5 0Z"/>',
    Kind.DEADLINE: '<path d="M0-6V6"/>',
    Kind.MOVED: '<path d="M-5-4-1 0-5 4M0-4 4 0 0 4"/>',
    Kind.OVERDUE: '<rect x="-6" y="-2" width="12" height="4"/>',
    Kind.BOUNCED: '<rect x="-4" y="-4" width="8" height="8"/>',
    Kind.UNSUBSCRIBED: '<rect x="-3.5" y="-3.5" width="7" height="7"/>',
}

# Colours meet 3:1 against the card in light and dark; the page's own variables where it has them.
STYLE = """
svg.timeline { --tl-red: #b91c1c; --tl-green: #15803d; --tl-purple: #6d28d9; }
@media screen and (prefers-color-scheme: dark) {
  svg.timeline { --tl-red: #f87171; --tl-green: #4ade80; --tl-purple: #c4b5fd; }
}
svg.timeline text { font: 12px system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  fill: var(--muted, #6b7280); }
svg.timeline .tl-name { font-size: 13px; font-weight: 600; fill: var(--fg, #1f2937); }
svg.timeline .tl-title { font-size: 15px; font-weight: 600; fill: var(--fg, #1f2937); }
svg.timeline .tl-rule { stroke: var(--line, #e5e7eb); }
svg.timeline .tl-due { stroke: var(--muted, #6b7280); stroke-dasharray: 4 3; }
svg.timeline .tl-today { stroke: var(--fg, #1f2937); stroke-dasharray: 1 2; }
svg.timeline .tl-sent { fill: var(--accent, #0a66c2); }
svg.timeline .tl-to-come { fill: none; stroke: var(--accent, #0a66c2); stroke-width: 1.5; }
svg.timeline .tl-waiting { fill: none; stroke: var(--muted, #6b7280); stroke-width: 1.5;
  stroke-dasharray: 2 1.5; }
svg.timeline .tl-skipped, svg.timeline .tl-waived { fill: none; stroke: var(--muted, #6b7280);
  stroke-width: 1.5; }
svg.timeline .tl-cancelled { fill: none; stroke: var(--muted, #6b7280); stroke-width: 2; }
svg.timeline .tl-failed, svg.timeline .tl-overdue, svg.timeline .tl-bounced { fill: var(--tl-red); }
svg.timeline .tl-done { fill: none; stroke: var(--tl-green); stroke-width: 2.5; }
svg.timeline .tl-deadline { stroke: var(--fg, #1f2937); stroke-width: 2; }
svg.timeline .tl-moved { fill: none; stroke: var(--tl-purple); stroke-width: 2; }
svg.timeline .tl-unsubscribed { fill: none; stroke: var(--fg, #1f2937); stroke-width: 1.5; }
"""

#: the page's colours, for a drawing that stands alone
PAGE_STYLE = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --card: #fff; --accent: #0a66c2; }
@media screen and (prefers-color-scheme: dark) {
  :root { --fg: #f3f4f6; --muted: #9ca3af; --line: #374151; --card: #1f2937; --accent: #7cb3f0; }
}
.tl-back { fill: var(--card); }
"""

NAME_WIDTH = 160
#: the column at the right counting the emails that wait for a goal
WAITING_WIDTH = 64
GAP = 12
#: the width the days share, unless that makes a day narrower than MIN_DAY or wider than MAX_DAY
PLOT_WIDTH = 720
MIN_DAY, MAX_DAY = 2.5, 28.0
LINE = 16
LANE = 12
#: marks closer than this (px, centre to centre) go on the next lane of the line
MARK_SPACE = 11
MAX_LANES = 4
ROW_HEIGHT = 40
LEGEND_COLUMN = 250

#: where an instant falls across the drawing, in px
Place = Callable[[dt.datetime], float]


def draw(timeline: Timeline, *, standalone: bool = False) -> Markup:
    """Return ``timeline`` as SVG: inline in a page (its colours the page's), or as a document of its own.

    A document of its own has its title drawn, its own colours, light and dark, and the legend.
    """
    zone = ZoneInfo(timeline.zone)
    instants = [mark.at for row in timeline.rows for mark in row.marks]
    instants += [start for row in timeline.rows for start, _, _ in row.overdue]
    ends = {key: _day_start(day + dt.timedelta(days=1), zone) for key, day in timeline.deadlines.items()}
    instants += ends.values()
    if not instants:
        instants = [timeline.now or dt.datetime.now(dt.UTC)]
    first = min(instants).astimezone(zone).date()
    last = max(instants).astimezone(zone).date()
    days = (last - first).days + 1
    per_day = min(max(PLOT_WIDTH / days, MIN_DAY), MAX_DAY)
    origin = _day_start(first, zone)
    left = NAME_WIDTH + 8
    right = left + days * per_day
    width = math.ceil(right + GAP + WAITING_WIDTH)

    def x(instant: dt.datetime) -> float:
        return round(left + (instant - origin).total_seconds() / 86400 * per_day, 1)

    out: list[str] = []
    top = 4.0
    if standalone:
        out.append(_text(4, top + 15, timeline.title, "tl-title"))
        top += 24
    # The header: "Participant", the months (or weeks), the waiting column; then a line per marker.
    out.append(_text(4, top + 12, "Participant"))
    out.append(_text(right + GAP, top + 12, "waiting"))
    ticks = list(_ticks(first, last, per_day))
    for day, label in ticks:
        at = x(_day_start(day, zone))
        if at + 3 + _width(label, 12) <= right:
            out.append(_text(at + 3, top + 12, label))
    top += LINE + 4
    markers = sorted(
        [(x(end), f"{key} due {short_day(timeline.deadlines[key])}", "tl-due") for key, end in ends.items()]
        + ([(x(timeline.now), "now", "tl-today")] if timeline.now else []),
        key=lambda marker: marker[0],
    )
    markers = [marker for marker in markers if left <= marker[0] <= right]
    marker_tops = []
    for at, label, _ in markers:
        marker_tops.append(top)
        out.append(_anchored(at, top + 12, label, width))
        top += LINE
    rows_top = top + 4
    # Rows, then the lines that cross them, then the marks on top.
    placed = [_lanes(row, x) for row in timeline.rows]
    heights = [max(ROW_HEIGHT, 13 + lanes * LANE + 10) for _, lanes in placed]
    bottom = rows_top + sum(heights)
    grid = [
        f'<line class="tl-rule" x1="{x(_day_start(day, zone))}" x2="{x(_day_start(day, zone))}" '
        f'y1="{rows_top}" y2="{bottom}"/>'
        for day, _ in ticks
    ]
    for (at, _, css), start in zip(markers, marker_tops, strict=True):
        grid.append(f'<line class="{css}" x1="{at}" x2="{at}" y1="{start + 2}" y2="{bottom}"/>')
    body: list[str] = []
    y = rows_top
    for row, (marks, _), row_height in zip(timeline.rows, placed, heights, strict=True):
        body.append(_row(row, marks, y, row_height, x, right))
        y += row_height
    out[0:0] = grid
    out += body
    out.append(f'<line class="tl-rule" x1="0" x2="100%" y1="{bottom}" y2="{bottom}"/>')
    end = bottom + 8
    if standalone:
        key, end = _legend(legend(timeline), width, bottom + 12)
        out.append(key)
    said = f"{len(timeline.rows)} participants' emails and goals over time, a line each, described in words"
    tall = math.ceil(end)
    head = (
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{tall}" '
        f'viewBox="0 0 {width} {tall}" role="group" aria-labelledby="timeline-title">'
        f'<title id="timeline-title">{escape(timeline.title)}</title><desc>{escape(said)}</desc>'
        f"<style>{STYLE}{PAGE_STYLE if standalone else ''}</style>"
    )
    back = '<rect class="tl-back" width="100%" height="100%"/>' if standalone else ""
    document = head + back + "".join(out) + "</svg>"
    if standalone:
        document = '<?xml version="1.0" encoding="UTF-8"?>\n' + document + "\n"
    return Markup(document)


def legend(timeline: Timeline) -> list[tuple[Kind, str]]:
    """Return what the marks ``timeline`` uses mean, in the legend's order."""
    used = {mark.kind for row in timeline.rows for mark in row.marks}
    used |= {Kind.WAITING for row in timeline.rows if row.waiting}
    used |= {Kind.OVERDUE for row in timeline.rows if row.overdue}
    return [(kind, words) for kind, words in LEGEND.items() if kind in used]


def symbol(kind: Kind) -> Markup:
    """Return ``kind``'s mark alone, 14 px square, for a legend written in HTML beside the drawing."""
    return Markup(
        f'<svg class="timeline" width="14" height="14" viewBox="-7 -7 14 14" aria-hidden="true">'
        f'<g class="tl-{kind}">{SHAPES[kind]}</g></svg>'
    )


def _row(
    row: Row, marks: list[tuple[float, int, Mark]], top: float, height: float, x: Place, right: float
) -> str:
    counts = Counter(mark.kind for _, _, mark in marks)
    emails = [f"{counts[kind]} {words}" for kind, words in _COUNTED.items() if counts[kind]]
    if row.waiting:
        emails.append(f"{len(row.waiting)} waiting for a goal")
    events = [mark.text for _, _, mark in marks if mark.kind not in _EMAIL_KINDS]
    events += [said for _, _, said in row.overdue]
    summary = f"{row.name} ({row.email}{', ' + row.note if row.note else ''}): " + "; ".join(
        [", ".join(emails) or "no emails"] + events
    )
    parts = [
        f'<g role="img" aria-label="{escape(summary)}">',
        f'<line class="tl-rule" x1="0" x2="100%" y1="{top}" y2="{top}"/>',
        _text(4, top + 16, _fit(row.name, NAME_WIDTH - 8, 13), "tl-name", title=row.name),
        _text(4, top + 31, _fit(row.email + (f" · {row.note}" if row.note else ""), NAME_WIDTH - 8, 12)),
    ]
    for start, until, said in row.overdue:
        begin, end = x(start), min(x(until), right)
        if end > begin:
            parts.append(
                f'<rect class="tl-overdue" x="{begin}" y="{top + height - 9}" '
                f'width="{round(end - begin, 1)}" height="4">'
                f"<title>{escape(said)}</title></rect>"
            )
    for at, lane, mark in marks:
        parts.append(_mark(mark.kind, at, top + 13 + lane * LANE, mark.text))
    if row.waiting:
        said = f"waiting for a goal: {', '.join(row.waiting)}"
        parts.append(_mark(Kind.WAITING, right + GAP + 6, top + 13, said))
        parts.append(_text(right + GAP + 15, top + 17, str(len(row.waiting))))
    parts.append("</g>")
    return "".join(parts)


#: how a line's summary counts its emails
_COUNTED = {Kind.SENT: "sent", Kind.FAILED: "failed", Kind.SKIPPED: "skipped", Kind.CANCELLED: "cancelled",
            Kind.TO_COME: "to come"}  # fmt: skip
_EMAIL_KINDS = {*_COUNTED, Kind.WAITING}


def _lanes(row: Row, x: Place) -> tuple[list[tuple[float, int, Mark]], int]:
    """Place the row's marks: each on the first lane where it keeps clear of the one before."""
    ends: list[float] = []
    placed = []
    for mark in sorted(row.marks, key=lambda mark: mark.at):
        at = x(mark.at)
        lane = next((n for n, end in enumerate(ends) if at - end >= MARK_SPACE), None)
        if lane is None:
            if len(ends) < MAX_LANES:
                ends.append(at)
                lane = len(ends) - 1
            else:  # a crowd: the least crowded lane
                lane = min(range(len(ends)), key=lambda n: ends[n])
        ends[lane] = at
        placed.append((at, lane, mark))
    return placed, max(len(ends), 1)


def _legend(used: list[tuple[Kind, str]], width: int, top: float) -> tuple[str, float]:
    columns = max(1, (width - 8) // LEGEND_COLUMN)
    parts = []
    for n, (kind, words) in enumerate(used):
        left = 8 + (n % columns) * LEGEND_COLUMN
        y = top + (n // columns) * 18
        parts.append(_mark(kind, left + 6, y + 8, None) + _text(left + 18, y + 12, words))
    rows = math.ceil(len(used) / columns)
    return "".join(parts), top + rows * 18 + 8


def _ticks(first: dt.date, last: dt.date, per_day: float) -> Iterator[tuple[dt.date, str]]:
    """Yield the days the axis names: Mondays when a week is wide enough, else the first of each month."""
    if per_day * 7 >= 48:
        day = first + dt.timedelta(days=-first.weekday() % 7)
        while day <= last:
            yield day, f"{day.day} {day:%b}"
            day += dt.timedelta(days=7)
        return
    day = first.replace(day=1)
    named_year = False
    while day <= last:
        if day >= first:
            yield day, f"{day:%b %Y}" if not named_year or day.month == 1 else f"{day:%b}"
            named_year = True
        day = (day + dt.timedelta(days=32)).replace(day=1)


def _mark(kind: Kind, x: float, y: float, text: str | None) -> str:
    title = f"<title>{escape(text)}</title>" if text else ""
    return f'<g class="tl-{kind}" transform="translate({x} {y})">{title}{SHAPES[kind]}</g>'


def _text(x: float, y: float, text: str, css: str = "", *, title: str | None = None) -> str:
    cls = f' class="{css}"' if css else ""
    tip = f"<title>{escape(title)}</title>" if title and title != text else ""
    return f'<text x="{x}" y="{y}"{cls}>{escape(text)}{tip}</text>'


def _anchored(x: float, y: float, text: str, width: int) -> str:
    """Write ``text`` beside a vertical line at ``x``: after it, or before it near the right edge."""
    if x + 4 + _width(text, 12) <= width - 2:
        return _text(x + 4, y, text)
    return f'<text x="{x - 4}" y="{y}" text-anchor="end">{escape(text)}</text>'


def _width(text: str, size: float) -> float:
    """Return about how wide ``text`` is at ``size`` px; generous, so that what fits does."""
    return sum(size * _em(char) for char in text)


def _em(char: str) -> float:
    if unicodedata.east_asian_width(char) in "WF":
        return 1.0
    if char.isupper() or char in "mw@%":
        return 0.75
    if char in "ijlt.,:;'|!() ":
        return 0.35
    return 0.6


def _fit(text: str, width: float, size: float) -> str:
    """Return ``text`` cut with an ellipsis to about ``width`` px at ``size`` px."""
    if _width(text, size) <= width:
        return text
    used = _width("…", size)
    for n, char in enumerate(text):
        used += size * _em(char)
        if used > width:
            return text[:n].rstrip() + "…"
    return text


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), zone)
