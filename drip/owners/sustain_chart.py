"""The report's "Sustained use": each check-in's answers as a stacked bar, a group of bars per step.

A bar stands for one check-in (sustain-1, sustain-2, ...) and runs from 0 to 100% of those it went
to: first those who gave its first answer ("Yes, I shared something"), then each other answer, then
those who have not answered. Bars lie across, one under the other, so that a phone shows as many
check-ins as a laptop and no label ever meets another: each row's date and share are HTML beside
the drawing, the scale's percentages HTML under it, all of them the page's small text at any width
(the completion chart's rule, in docs/ARCHITECTURE.md).

The drawing itself has no viewBox: every x and y is a percentage of its box, so the bars stretch
with the page while strokes and the hatching of the other answers keep their size in pixels. Each
part differs by more than colour: the first answer is solid, each other answer hatched its own way,
no answer an empty dashed outline; the legend and a sentence per check-in say the same in words.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import accumulate
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from drip.owners.outcomes import NO_ANSWER, Occurrence

#: what the hatching of the other answers looks like, each drawn on a 6 px tile: /, \, -, |, +
HATCHES = (
    '<path d="M-1 7 7-1M-1 1 1-1M5 7 7 5"/>',
    '<path d="M-1-1 7 7M5-1 7 1M-1 5 1 7"/>',
    '<path d="M0 3H6"/>',
    '<path d="M3 0V6"/>',
    '<path d="M0 3H6M3 0V6"/>',
)
#: how much of its row a bar fills, the rest left above and below it
BAR = 0.6
#: the percentages named along the scale, with which end of each label stands at its mark
SCALE = ((0, "start"), (25, "middle"), (50, "middle"), (75, "middle"), (100, "end"))


@dataclass(frozen=True)
class Part:
    """One part of a bar: the first answer, another answer, or no answer."""

    #: "first", "other" or "none"
    kind: str
    label: str
    count: int
    #: where it starts across the bar and how wide it is, 0 to 100
    x: float
    width: float
    #: which hatching (for another answer)
    hatch: int = 0


@dataclass(frozen=True)
class Bar:
    """One check-in: its row's label and share, and its parts."""

    key: str
    #: the day its email first went, in the cohort's zone ("8 Jun")
    day: str
    #: the share who gave the first answer ("60%")
    share: str
    parts: tuple[Part, ...]
    #: every figure of the bar in words
    words: str


@dataclass(frozen=True)
class Key:
    """One line of a group's legend."""

    kind: str
    label: str
    hatch: int = 0


@dataclass(frozen=True)
class Group:
    """A step's check-ins: what its bars show and the drawing of them."""

    #: unique in the page: the drawing's patterns are named after it
    id: str
    step: str
    #: the label of the answer the bars measure
    first: str
    bars: tuple[Bar, ...]
    legend: tuple[Key, ...]
    description: str

    def svg(self) -> Markup:
        """Return the group's bars as inline SVG, its coordinates percentages of its box."""
        return draw(self)

    def swatch(self, key: Key) -> Markup:
        """Return ``key``'s mark alone, 14 px square, for the legend written in HTML beside the drawing."""
        shape = _shape(key.kind, key.hatch, self.id, "1", "1", "12", "12")
        return Markup(
            '<svg class="sustain-key" width="14" height="14" aria-hidden="true" focusable="false">'
            f"{shape}</svg>"
        )


@dataclass(frozen=True)
class SustainChart:
    groups: tuple[Group, ...]
    #: the percentages along the scale: where (0 to 100), the label, and which end of it stands there
    scale: tuple[tuple[int, str, str], ...]


def sustain_chart(occurrences: tuple[Occurrence, ...], timezone: str) -> SustainChart:
    """Return the chart of a cohort's check-ins so far: a group per step, in the order they came."""
    zone = ZoneInfo(timezone)
    steps: dict[str, list[Occurrence]] = {}
    for occurrence in sorted(occurrences, key=lambda item: (_first_sent(item), item.step, item.number)):
        steps.setdefault(occurrence.step, []).append(occurrence)
    groups = []
    for number, (step, found) in enumerate(steps.items(), 1):
        found.sort(key=lambda item: item.number)
        years = {item.first_sent.astimezone(zone).year for item in found if item.first_sent}
        bars = tuple(_bar(item, zone, with_year=len(years) > 1) for item in found)
        keys = tuple(Key(kind, label, hatch) for kind, label, _, hatch in _parts(found[-1]))
        first = keys[0].label if keys[0].kind == "first" else ""
        said = ". ".join(bar.words for bar in bars)
        description = f"Share of those each {step} check-in went to who answered “{first}”. {said}."
        groups.append(Group(f"sustain-{number}", step, first, bars, keys, description))
    scale = tuple((at, f"{at}%", align) for at, align in SCALE)
    return SustainChart(tuple(groups), scale)


def _parts(occurrence: Occurrence) -> list[tuple[str, str, int, int]]:
    """Return the parts of a check-in's bar in order: (kind, label, count, hatching)."""
    counts = occurrence.counts
    found = [
        ("first" if n == 0 else "other", label, counts.get(key, 0), max(n - 1, 0) % len(HATCHES))
        for n, (key, label) in enumerate(occurrence.answers)
    ]
    return [*found, ("none", "no answer yet", counts.get(NO_ANSWER, 0), 0)]


def _bar(occurrence: Occurrence, zone: ZoneInfo, *, with_year: bool) -> Bar:
    sent = occurrence.sent
    named = _parts(occurrence)
    # Each part's ends are rounded from the running count, so that the parts meet and end at 100.
    ends = [_percent(done, sent) for done in accumulate(count for _, _, count, _ in named)]
    starts = [0.0, *ends[:-1]]
    parts = tuple(
        Part(kind, label, count, start, round(end - start, 2), hatch)
        for (kind, label, count, hatch), start, end in zip(named, starts, ends, strict=True)
        if count
    )
    day = _day(occurrence.first_sent, zone, with_year)
    first = named[0][2] if named[0][0] == "first" else 0
    share = f"{round(100 * first / sent)}%" if sent else "–"
    rest = [f"{count} “{label}”" for kind, label, count, _ in named if kind == "other"]
    rest.append(f"{named[-1][2]} no answer")
    words = f"{occurrence.key}{f' ({day})' if day else ''}: {first} of {sent}, {share}; {', '.join(rest)}"
    return Bar(occurrence.key, day or occurrence.key, share, parts, words)


def draw(group: Group) -> Markup:
    """Return ``group``'s bars as SVG: a row each, every coordinate a percentage of the drawing's box."""
    rows = len(group.bars)
    out = [
        '<svg class="sustain-plot" xmlns="http://www.w3.org/2000/svg" width="100%" height="100%" '
        'aria-hidden="true" focusable="false">',
        "<defs>",
        *(
            f'<pattern id="{group.id}-hatch-{n}" class="sc-hatch" patternUnits="userSpaceOnUse" '
            f'width="6" height="6"><rect width="6" height="6"/>{hatch}</pattern>'
            for n, hatch in enumerate(HATCHES)
        ),
        "</defs>",
        *(f'<line class="sc-level" x1="{at}%" x2="{at}%" y1="0" y2="100%"/>' for at, _ in SCALE),
    ]
    for n, bar in enumerate(group.bars):
        top = round(100 * (n + (1 - BAR) / 2) / rows, 3)
        height = round(100 * BAR / rows, 3)
        out.append(f'<g class="sc-bar"><title>{escape(bar.words)}</title>')
        for part in bar.parts:
            at, wide = f"{part.x}%", f"{part.width}%"
            out.append(_shape(part.kind, part.hatch, group.id, at, f"{top}%", wide, f"{height}%"))
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


def _shape(kind: str, hatch: int, group: str, x: str, y: str, width: str, height: str) -> str:
    fill = f' fill="url(#{group}-hatch-{hatch})"' if kind == "other" else ""
    return f'<rect class="sc-{kind}" x="{x}" y="{y}" width="{width}" height="{height}"{fill}/>'


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _first_sent(occurrence: Occurrence) -> dt.datetime:
    return occurrence.first_sent or dt.datetime.max.replace(tzinfo=dt.UTC)


def _day(at: dt.datetime | None, zone: ZoneInfo, with_year: bool) -> str:
    if at is None:
        return ""
    local = at.astimezone(zone)
    return f"{local.day} {local:%b %Y}" if with_year else f"{local.day} {local:%b}"
