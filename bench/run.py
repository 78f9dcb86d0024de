"""Run every benchmark of the project and write one markdown report.

    python bench/run.py                        # every benchmark at full size (about 25 minutes)
    python bench/run.py --smoke                # tiny sizes, to check they all still run (CI)
    python bench/run.py --postgres URL         # also the PostgreSQL benchmarks, on databases made there
    python bench/run.py --only start,ingest    # some of them
    python bench/run.py --against v0.3         # also each benchmark of another commit, in turn

Each script runs in its own process, one after another, so they do not slow
each other down. The report (``bench/results.md`` unless ``--out`` says
otherwise) starts with one table of headline figures, each beside the
ceiling or baseline measured in the same run and the figure it should reach,
then gives each script's own tables. PostgreSQL comes from ``--postgres`` or
``$DRIP_BENCH_POSTGRES_URL``; without it those rows are left out and the
report says so.

``--against REF`` checks out REF (a commit, tag or branch) in a temporary git
worktree and runs REF's own benchmark scripts on REF's own code right after
each of this checkout's, so both meet the same machine and the same load. The
report then adds a table of both figures side by side with their ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
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
    ("signing.py", "DKIM signing: its cost composing and sending", False),
    ("completion.py", "the done button under load", False),
    ("ingest.py", "reading replies", False),
    ("replies.py", "reading replies right: the reply and bounce corpora", False),
    ("demo.py", "make demo's story, beside the plain walk", False),
    ("outcomes.py", "drip status and export once check-ins are answered", True),
]


class Failed(Exception):
    """A benchmark script failed; the others still run and the report says which failed."""


def run(
    script: str, smoke: bool, postgres: str | None, root: Path = BENCH.parent
) -> tuple[list[dict[str, object]], str, float]:
    """Run one script of the checkout at ``root`` on that checkout's code; return its figures,
    its own output and how long it took."""
    with tempfile.TemporaryDirectory(prefix="drip-bench-run-") as tmp:
        figures = Path(tmp) / "figures.json"
        command = [sys.executable, str(root / "bench" / script), "--json", str(figures)]
        if smoke:
            command.append("--smoke")
        env = {key: value for key, value in os.environ.items() if key != "DRIP_BENCH_POSTGRES_URL"}
        # drip, and the drip command the scripts start, come from that checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
        if postgres:
            command += ["--postgres", postgres]
        began = time.monotonic()
        # from that checkout's folder too: `python -c` and `-m` put the working folder first on sys.path
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
        took = time.monotonic() - began
        if done.returncode != 0:
            raise Failed(f"{done.stdout}\n{done.stderr}".strip())
        return json.loads(figures.read_text()), done.stdout.strip(), took


class Worktree:
    """Another commit of the project checked out beside this one for as long as the run lasts."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        root = BENCH.parent
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", f"{ref}^{{commit}}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if found.returncode != 0:
            raise SystemExit(f"--against {ref}: git knows no such commit ({found.stderr.strip()})")
        self.commit = found.stdout.strip()
        self.path = Path(tempfile.mkdtemp(prefix="drip-bench-against-"))
        add = ["git", "-C", str(root), "worktree", "add", "--quiet", "--detach", str(self.path), self.commit]
        subprocess.run(add, check=True)

    def has(self, script: str) -> bool:
        return (self.path / "bench" / script).exists()

    def remove(self) -> None:
        remove = ["git", "-C", str(BENCH.parent), "worktree", "remove", "--force", str(self.path)]
        subprocess.run(remove, check=False)
        shutil.rmtree(self.path, ignore_errors=True)


#: the leading figure of a "measured" cell: a number and its unit ("6.33 s, 102 MB" -> 6.33, "s")
_LEAD = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?)\s*([^\s,;()]+)")
#: units where a smaller figure is better; for every other (rates, counts per second) a larger one is
_LOWER_IS_BETTER = {"s", "ms", "µs", "us", "MB", "GB", "KB"}


def compare(ours: str, theirs: str) -> str:
    """Say how the leading figure of this checkout compares with the other commit's."""
    mine, other = _LEAD.search(ours), _LEAD.search(theirs)
    if not mine or not other or mine[2] != other[2]:
        return "not comparable"
    a, b = float(mine[1].replace(",", "")), float(other[1].replace(",", ""))
    if a == 0 or b == 0:
        return "not comparable"
    better = b / a if mine[2] in _LOWER_IS_BETTER else a / b
    return f"{better:.2f}x" + (" (better)" if better > 1.05 else " (worse)" if better < 0.95 else " (same)")


def verdict(met: object) -> str:
    if met is None:
        return "not judged (smoke sizes)"
    return "met" if met else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that every benchmark runs")
    add_postgres_option(parser, "also the PostgreSQL benchmarks")
    parser.add_argument("--only", metavar="NAMES", help="a comma-separated subset, e.g. start,ingest")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    parser.add_argument(
        "--against", metavar="REF", help="also REF's benchmarks on REF's code, each after this checkout's"
    )
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
    theirs: dict[str, str] = {}
    failed: list[str] = []
    sections: list[str] = []
    other = Worktree(args.against) if args.against else None
    try:
        for script, about, takes_postgres in chosen:
            postgres = args.postgres if takes_postgres else None
            print(f"bench/{script}: {about} ...", file=sys.stderr, flush=True)
            try:
                figures, output, took = run(script, args.smoke, postgres)
            except Failed as error:
                failed.append(script)
                print(f"bench/{script} failed:\n{error}", file=sys.stderr)
                sections.append(f"## bench/{script}: {about}\n\n**failed**:\n\n```\n{error}\n```\n")
                continue
            rows += figures
            sections.append(f"## bench/{script}: {about}\n\n({took:.0f} s)\n\n{output}\n")
            if other is not None and other.has(script):
                print(f"bench/{script} of {other.commit} ...", file=sys.stderr, flush=True)
                try:
                    old, _, _ = run(script, args.smoke, postgres, root=other.path)
                except Failed as error:
                    failed.append(f"{script} of {other.commit}")
                    print(f"bench/{script} of {other.commit} failed:\n{error}", file=sys.stderr)
                    continue
                theirs.update({str(row["benchmark"]): str(row["measured"]) for row in old})
    finally:
        if other is not None:
            other.remove()

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
    if failed:
        lines += ["", f"**Failed**: {', '.join(failed)}; see their sections below."]
    if not args.postgres:
        lines += ["", "PostgreSQL was not given (`--postgres URL`): its benchmarks were left out."]
    if other is not None:
        lines += [
            "",
            f"Against {args.against} ({other.commit}), each benchmark run right after this checkout's:",
            "",
            f"| benchmark | this checkout | {other.commit} | this checkout is |",
            "| --- | --- | --- | --- |",
        ]
        for row in rows:
            name, ours = str(row["benchmark"]), str(row["measured"])
            before = theirs.get(name)
            ratio = compare(ours, before) if before else ""
            lines.append(f"| {name} | {ours} | {before or 'not measured'} | {ratio} |")
    report = "\n".join(lines) + "\n\n" + "\n".join(sections)
    args.out.write_text(report)
    print("\n".join(lines))
    print(f"\nThe whole report: {args.out}", file=sys.stderr)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (the others' figures are in the report)")


if __name__ == "__main__":
    main()
