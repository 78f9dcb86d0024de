"""Run every benchmark of the project and write one markdown report.

    python bench/run.py                        # every benchmark at full size (about 25 minutes)
    python bench/run.py --smoke                # tiny sizes, to check they all still run (CI)
    python bench/run.py --postgres URL         # also the PostgreSQL benchmarks, on databases made there
    python bench/run.py --only start,ingest    # some of them

Each script runs in its own process, one after another, so they do not slow
each other down. The report (``bench/results.md`` unless ``--out`` says
otherwise) starts with one table of headline figures, each beside the
ceiling or baseline measured in the same run and the figure it should reach,
then gives each script's own tables. PostgreSQL comes from ``--postgres`` or
``$DRIP_BENCH_POSTGRES_URL``; without it those rows are left out and the
report says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from machine import add_postgres_option, describe  # noqa: E402

#: script, what it measures, and whether it takes --postgres
SCRIPTS = [
    ("start.py", "launching a cohort (drip start), and drip status", True),
    ("compose.py", "composing emails", False),
    ("dispatch.py", "sending: one process, the whole machine, two workers on PostgreSQL", True),
    ("completion.py", "the done button under load", False),
    ("ingest.py", "reading replies", False),
    ("replies.py", "reading replies right: the reply and bounce corpora", False),
]


def run(script: str, smoke: bool, postgres: str | None) -> tuple[list[dict[str, object]], str, float]:
    """Run one script; return its figures, its own output and how long it took."""
    with tempfile.TemporaryDirectory(prefix="drip-bench-run-") as tmp:
        figures = Path(tmp) / "figures.json"
        command = [sys.executable, str(BENCH / script), "--json", str(figures)]
        if smoke:
            command.append("--smoke")
        env = {key: value for key, value in os.environ.items() if key != "DRIP_BENCH_POSTGRES_URL"}
        if postgres:
            command += ["--postgres", postgres]
        began = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        took = time.monotonic() - began
        if done.returncode != 0:
            raise SystemExit(f"bench/{script} failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(figures.read_text()), done.stdout.strip(), took


def verdict(met: object) -> str:
    return {True: "met", False: "**not met**"}.get(met, "not judged (smoke sizes)")  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that every benchmark runs")
    add_postgres_option(parser, "also the PostgreSQL benchmarks")
    parser.add_argument("--only", metavar="NAMES", help="a comma-separated subset, e.g. start,ingest")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    args = parser.parse_args()
    chosen = SCRIPTS
    if args.only:
        wanted = {name.strip().removesuffix(".py") for name in args.only.split(",")}
        unknown = wanted - {script.removesuffix(".py") for script, _, _ in SCRIPTS}
        if unknown:
            known = ", ".join(script.removesuffix(".py") for script, _, _ in SCRIPTS)
            raise SystemExit(f"no benchmark {', '.join(sorted(unknown))}; they are {known}")
        chosen = [entry for entry in SCRIPTS if entry[0].removesuffix(".py") in wanted]

    rows: list[dict[str, object]] = []
    sections: list[str] = []
    for script, about, takes_postgres in chosen:
        print(f"bench/{script}: {about} ...", file=sys.stderr, flush=True)
        figures, output, took = run(script, args.smoke, args.postgres if takes_postgres else None)
        rows += figures
        sections.append(f"## bench/{script}: {about}\n\n({took:.0f} s)\n\n{output}\n")

    size = (
        "smoke sizes: these figures only show that every benchmark still runs" if args.smoke else "full size"
    )
    lines = [
        "# drip benchmarks",
        "",
        f"{dt.date.today().isoformat()}, {size}. {describe()}.",
        "",
        "| benchmark | measured | against, in the same run | target | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [row["benchmark"], row["measured"], row["against"], row["target"], verdict(row["met"])]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    if not args.postgres:
        lines += ["", "PostgreSQL was not given (`--postgres URL`): its benchmarks were left out."]
    report = "\n".join(lines) + "\n\n" + "\n".join(sections)
    args.out.write_text(report)
    print("\n".join(lines))
    print(f"\nThe whole report: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
