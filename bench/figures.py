"""The headline figures of one benchmark script, kept as JSON for the table of bench/run.py."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    #: what was measured, e.g. "drip start, 10,000 participants, SQLite"
    benchmark: str
    #: the figure, formatted, e.g. "6.33 s, 102 MB"
    measured: str
    #: the ceiling or baseline of the same run, e.g. "ORM row by row: 29.41 s (drip 4.6x quicker)"
    against: str
    #: the figure to reach, e.g. "< 10 s, < 300 MB"
    target: str
    #: whether it was reached; None for a smoke run, whose sizes say nothing
    met: bool | None


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the headline figures to FILE")


def save(path: str | None, figures: list[Figure], smoke: bool) -> None:
    if path is None:
        return
    rows = [asdict(figure) | ({"met": None} if smoke else {}) for figure in figures]
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")
