"""Benchmark `make demo`'s story (`drip demo --no-serve`) beside the plain walk it grew from.

    python bench/demo.py              # 3 runs of each, medians
    python bench/demo.py --smoke      # one run of the demo alone, to check the benchmark still works

Each run is a fresh folder made by `drip init`, as a new user's, and a fresh process. The
baseline is what `make demo` did before the story: `drip start` and `drip run --once` over the
same weeks and months, with nobody answering. Both pay for compiling the templates of five languages on
their first run (drip's cache folder is made afresh for each process), as a first `make demo` does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import children_cpu, describe, drip_environment  # noqa: E402

#: the demo's own window: the day before the example cohort starts, then five weeks and a day hour by
#: hour, then three hours at a time to a few days after the second monthly check-in
BEGIN, END, STARTED = "2027-01-10T00:00Z", "2027-02-16T00:00Z", "2027-01-04T00:00Z"
LATER = "2027-06-15T00:00Z"
STORY, PLAIN = "drip demo (the story)", "start + run --once (nobody answers)"
#: the figure to reach, in seconds
TARGET = 60


def timed(commands: list[list[str]], cwd: Path) -> tuple[float, float]:
    """Run ``commands`` one after another in ``cwd``; return their wall and CPU seconds."""
    environment = drip_environment() | {"XDG_CACHE_HOME": str(cwd / "cache")}
    cpu, began = children_cpu(), time.perf_counter()
    for command in commands:
        subprocess.run(command, cwd=cwd, env=environment, check=True, capture_output=True)
    return time.perf_counter() - began, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one run of the demo, no baseline")
    add_option(parser)
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    drip = str(Path(sys.executable).with_name("drip"))
    story = [[drip, "demo", "--no-serve"]]
    plain = [
        [drip, "start", "cohorts/example", "--now", STARTED],
        [drip, "run", "--once", "--now", BEGIN, "--until", END],
        [drip, "run", "--once", "--now", END, "--until", LATER, "--step-minutes", "180"],
    ]
    ways = {STORY: story} | ({} if args.smoke else {PLAIN: plain})
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="drip-bench-demo-") as tmp:
        for run in range(runs):
            for name, commands in ways.items():
                folder = Path(tmp) / f"{run}-{name.split()[0]}"
                subprocess.run([drip, "init", str(folder)], check=True, capture_output=True)
                results[name].append(timed(commands, folder))

    print(f"The example cohort's training and first two check-ins, 12 executives; median of {runs}\n")
    print("| run | wall s (median) | CPU s (median) | vs the story |")
    print("| --- | ---: | ---: | ---: |")
    demo_wall = statistics.median(w for w, _ in results[STORY])
    for name, measured in results.items():
        wall, cpu = statistics.median(w for w, _ in measured), statistics.median(c for _, c in measured)
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {wall / demo_wall:.2f}x |")
    print(f"\n{describe()}")
    demo_cpu = statistics.median(c for _, c in results[STORY])
    baseline = results.get(PLAIN)
    against = (
        f"start + run --once, nobody answering: {statistics.median(w for w, _ in baseline):.1f} s"
        if baseline
        else "no baseline in a smoke run"
    )
    figures = [
        Figure(
            "make demo's story (drip demo), first run on a new folder",
            f"{demo_wall:.1f} s ({demo_cpu:.1f} s CPU)",
            against,
            f"< {TARGET} s",
            demo_wall < TARGET,
        )
    ]
    save(args.json, figures, args.smoke)


if __name__ == "__main__":
    main()
