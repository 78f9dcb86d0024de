"""Benchmark composing messages: render + complete MIME bytes, on one core.

    python bench/compose.py            # 288 messages (12 participants x 24: 18 steps, 6 check-ins), 5 rounds
    python bench/compose.py --smoke    # one round of 18

drip renders templates whose CSS was inlined when they were loaded and writes
the MIME bytes itself. The baseline, measured in the same run, is what a
straightforward implementation does for every message: render the template,
run premailer on the result, build an ``email.message.EmailMessage``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from premailer import Premailer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import describe  # noqa: E402

from drip.core.message import build, cohort_view, context, links_for, recipient_of  # noqa: E402
from drip.core.plan import expand_steps, program_end  # noqa: E402
from drip.core.render import Templates  # noqa: E402
from drip.launch.cohort import load_cohort  # noqa: E402

WHEN = dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC)


def workload(limit: int | None):
    cohort = load_cohort(ROOT / "cohorts" / "example", [ROOT / "emails"])
    view, templates = cohort_view(cohort), Templates(cohort.program.path)
    items = []
    for person in cohort.participants:
        timing = cohort.timing(person)
        recipient = recipient_of(person, cohort.program, timing, {"short": 1, "mid": 2, "long": 3})
        links = links_for(
            "https://drip.example.com", ["k" * 32], "comms@example.com", program_end(cohort.program, timing)
        )
        items += [(recipient, links, step) for step in expand_steps(cohort.program, timing)]
    return view, templates, items[:limit]


def drip_compose(view, templates, items) -> int:
    size = 0
    for n, (recipient, links, step) in enumerate(items):
        built = build(
            templates, view, recipient, step, when=WHEN, delivery_id=str(n), instance="ab12", links=links
        )
        size += len(built.as_bytes())
    return size


def naive_compose(view, templates, items) -> int:
    size = 0
    for n, (recipient, links, step) in enumerate(items):
        compiled = templates.step(step.template)
        values = context(view, recipient, step, WHEN, links)
        html = Premailer(
            compiled.reference.render(values),
            strip_important=False,
            allow_network=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
        message = EmailMessage()
        message["From"] = f"{view.sender.name} <{view.sender.address}>"
        message["To"] = f"{recipient.name} <{recipient.email}>"
        message["Subject"] = " ".join(compiled.subject.render(values).split())
        message["Date"] = WHEN
        message["Message-ID"] = f"<drip.{n}.ab12@example.com>"
        message.set_content(compiled.text.render(values))
        message.add_alternative(html, subtype="html")
        size += len(message.as_bytes(policy=SMTP))
    return size


def rate(function, args, rounds: int) -> tuple[float, int]:
    """Return the median messages per second over ``rounds``, and the bytes of one round."""
    function(*args)  # warm up: templates compiled, caches filled
    rates, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        size = function(*args)
        rates.append(len(args[2]) / (time.perf_counter() - started))
    return statistics.median(rates), size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one round of 18 messages")
    add_option(parser)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    limit, rounds = (18, 1) if args.smoke else (None, args.rounds)
    view, templates, items = workload(limit)
    fast, fast_bytes = rate(drip_compose, (view, templates, items), rounds)
    naive_rounds = 1 if args.smoke else max(1, rounds // 2)
    slow, slow_bytes = rate(naive_compose, (view, templates, items[: min(len(items), 54)]), naive_rounds)
    print(f"Composing {len(items)} messages (render + MIME bytes), one core; median of {rounds} rounds\n")
    print("| method | messages/s | bytes/message | vs baseline |")
    print("| --- | ---: | ---: | ---: |")
    per_message = fast_bytes // len(items)
    print(f"| drip (CSS inlined at load, direct MIME) | {fast:,.0f} | {per_message:,} | {fast / slow:.0f}x |")
    naive_count = min(len(items), 54)
    print(f"| premailer per message + EmailMessage | {slow:,.0f} | {slow_bytes // naive_count:,} | 1x |")
    print("\nThe baseline leaves out the calendar part, which favours it.")
    print(describe())
    figure = Figure(
        f"compose {len(items)} emails (render + MIME), one core",
        f"{fast:,.0f} messages/s",
        f"premailer per message + EmailMessage: {slow:,.0f}/s ({fast / slow:.0f}x)",
        ">= 5,000/s",
        fast >= 5000,
    )
    save(args.json, [figure], args.smoke)


if __name__ == "__main__":
    main()
