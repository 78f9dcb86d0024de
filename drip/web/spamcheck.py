"""A kept message's SpamAssassin score, from its local rules only (``spamassassin -L -t``).

Checked when someone asks, once per message: a kept file never changes.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: how long one check may take, in seconds
TIMEOUT = 60.0
_STATUS = re.compile(rb"X-Spam-Status: (\w+), score=(-?[\d.]+) required=(-?[\d.]+)")
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


@dataclass(frozen=True)
class Rule:
    points: float
    name: str
    description: str


@dataclass(frozen=True)
class Score:
    score: float
    required: float
    rules: tuple[Rule, ...]

    @property
    def is_spam(self) -> bool:
        return self.score >= self.required


class SpamCheck:
    """SpamAssassin, run on loopback only, with each message's answer kept."""

    def __init__(self, program: str = "spamassassin") -> None:
        self.program = program
        self._scores: dict[str, Score] = {}
        self._lock = threading.Lock()

    @property
    def installed(self) -> bool:
        return shutil.which(self.program) is not None

    def cached(self, name: str) -> Score | None:
        with self._lock:
            return self._scores.get(name)

    def score(self, name: str, data: bytes) -> Score:
        """Return the score of message ``name``; raise OSError or ValueError when it cannot be had."""
        found = self.cached(name)
        if found is not None:
            return found
        program = shutil.which(self.program)
        if program is None:
            raise FileNotFoundError(f"{self.program} is not installed")
        try:
            done = subprocess.run(
                [program, "-L", "-t"], input=data, capture_output=True, timeout=TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"SpamAssassin took more than {TIMEOUT:.0f} seconds") from None
        found = read_report(done.stdout)
        with self._lock:
            self._scores[name] = found
        return found


def read_report(output: bytes) -> Score:
    """Return the score and the rules that fired, from what ``spamassassin -t`` wrote."""
    status = _STATUS.search(output)
    if status is None:
        raise ValueError("SpamAssassin gave no score")
    rules = []
    text = output.decode("utf-8", "replace")
    table = text.partition("Content analysis details:")[2]
    for line in table.splitlines():
        match = _RULE.match(line)
        if match:
            rules.append(Rule(float(match.group(1)), match.group(2), " ".join(match.group(3).split())))
        elif rules and line.startswith(" " * 8) and line.strip():  # a description carried on
            last = rules[-1]
            rules[-1] = Rule(last.points, last.name, f"{last.description} {line.strip()}")
    return Score(float(status.group(2)), float(status.group(3)), tuple(rules))
