"""Benchmark the done button: POST /done/<token> under concurrent load, on SQLite.

    python bench/completion.py             # 20 s of load per run, 3 runs (needs wrk: apt-get install wrk)
    python bench/completion.py --smoke     # a few seconds, Python's own load if wrk is missing

The server is ``drip serve`` (waitress, one thread: the default on SQLite) in
its own process; the load comes from a second process on loopback, 8
connections, every request a different goal's done link, so each one
completes a goal: cancels its reminders, plans its congratulations, writes
the event. Beside it, in the same run: the same load on a server with eight
threads (on a copy of the database), and the ceiling, GET /healthz on the
first server, which does no work at all. Latency percentiles are wrk's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import describe, drip_environment  # noqa: E402

CONNECTIONS = 8
NOW = "2027-01-13T15:00:00+00:00"
COHORT_TOML = """\
name = "Completion benchmark"
program = "crawl-walk-run"
start = 2027-01-11
timezone = "America/New_York"
sender = "Comms <comms@example.com>"
"""
LUA = """
local paths = {}
for line in io.lines(os.getenv("DRIP_BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
local method = os.getenv("DRIP_BENCH_METHOD")
local form = {["Content-Type"] = "application/x-www-form-urlencoded"}
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  if method == "POST" then
    return wrk.format(method, paths[i], form, "")  -- as a browser sends the done form: no fields
  end
  return wrk.format(method, paths[i])
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(folder: Path, people: int) -> tuple[str, list[str]]:
    """Start a cohort whose first emails went out; return its database URL and one done link per goal."""
    from sqlalchemy import select, update

    from drip.config import load_settings
    from drip.core.tokens import Action, make_token
    from drip.launch import enrol
    from drip.launch.cohort import load_cohort
    from drip.storage import keyring
    from drip.storage.store import Store, delivery_table, goal_table

    cohort = folder / "cohorts" / "bench"
    cohort.mkdir(parents=True)
    (folder / "emails").symlink_to(ROOT / "emails", target_is_directory=True)
    (cohort / "cohort.toml").write_text(COHORT_TOML)
    rows = "".join(f"p{n}@example.com,Person {n}\n" for n in range(people))
    (cohort / "roster.csv").write_text("email,name\n" + rows)
    url = f"sqlite:///{folder / 'drip.db'}"
    with Store(url) as db, db.transaction() as conn:
        enrol.sync_cohort(
            conn, load_cohort(cohort, [folder / "emails"]), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
        )
        keyring.prepare(load_settings(environ={}), conn)
        sent = dt.datetime(2027, 1, 12, 14, tzinfo=dt.UTC)
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.step.in_(["welcome", "short-kickoff"]))
            .values(status="sent", sent_at=sent)
        )
        secret = keyring.signing_keys(load_settings(environ={}), conn)
        goals = conn.execute(select(goal_table.c.id).order_by(goal_table.c.id)).scalars().all()
    return url, [f"/done/{make_token(secret, Action.DONE, goal, dt.date(2027, 6, 1))}" for goal in goals]


def serve(folder: Path, url: str, port: int, threads: int | None = None) -> subprocess.Popen:
    env = drip_environment()
    env.update(DRIP_BASE_URL=f"http://127.0.0.1:{port}", DRIP_SMTP_URL="smtp://127.0.0.1:1")
    if threads is not None:
        env["DRIP_WEB_THREADS"] = str(threads)
    process = subprocess.Popen(
        [sys.executable, "-m", "drip", "--database-url", url, "serve", "--listen", f"127.0.0.1:{port}",
         "--now", NOW],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("drip serve did not start")


def wrk(port: int, method: str, paths: list[str], seconds: int, folder: Path) -> dict[str, float]:
    (folder / "paths.txt").write_text("\n".join(paths) + "\n")
    (folder / "load.lua").write_text(LUA)
    env = {**os.environ, "DRIP_BENCH_PATHS": str(folder / "paths.txt"), "DRIP_BENCH_METHOD": method}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(folder / "load.lua"),
         f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{errors.group(1)} requests failed:\n{out}")
    figures = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for label in ("50", "90", "99"):
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
        figures[f"p{label}"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return figures


def python_load(port: int, method: str, paths: list[str], seconds: int) -> dict[str, float]:
    """A load of our own, for machines without wrk (the smoke run): 8 threads, keep-alive."""
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds
    cursor = iter(range(10**9))

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        while time.monotonic() < end:
            with lock:
                path = paths[next(cursor) % len(paths)]
            began = time.perf_counter()
            connection.request(method, path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{method} {path}: {response.status}")
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"rate": len(latencies) / took, "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    add_option(parser)
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.runs = 2, 1
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk and not args.smoke:
        raise SystemExit("wrk is needed: apt-get install wrk")
    # Every POST must complete a goal nobody completed before: enough goals for the fastest run.
    people = 1_000 if args.smoke else 12_000
    results: dict[str, list[dict[str, float]]] = {"done": [], "healthz": [], "threads": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="drip-completion-") as tmp:
            folder = Path(tmp)
            _, paths = prepare(folder, people)
            # The default server, then the same on a copy of the database with eight threads.
            for kind, threads in (("done", None), ("threads", 8)):
                database = folder / f"{kind}.db"
                shutil.copy(folder / "drip.db", database)
                url = f"sqlite:///{database}"
                port = free_port()
                server = serve(folder, url, port, threads)
                try:
                    loads = [(kind, "POST", paths)] + (
                        [("healthz", "GET", ["/healthz"])] if threads is None else []
                    )
                    for name, method, targets in loads:
                        if have_wrk:
                            results[name].append(wrk(port, method, targets, args.seconds, folder))
                        else:
                            results[name].append(python_load(port, method, targets, args.seconds))
                    done = _count_done(url)
                finally:
                    server.terminate()
                    server.wait()
                requests = results[kind][-1]["rate"] * args.seconds
                if done < 0.95 * requests:
                    raise SystemExit(f"only {done} goals recorded done for about {requests:.0f} requests")
    median = {
        kind: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for kind, runs in results.items()
    }
    tool = "wrk" if have_wrk else "a Python load (no wrk)"
    print(f"POST /done under load: {CONNECTIONS} connections from {tool}, {args.seconds} s each, ", end="")
    print(f"median of {args.runs}")
    print("(drip serve: waitress; on SQLite one thread by default)\n")
    print("| request | requests/s | p50 ms | p90 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, label in (
        ("done", "POST /done/<token>: completes a goal"),
        ("threads", "the same with DRIP_WEB_THREADS=8"),
        ("healthz", "GET /healthz: the ceiling"),
    ):
        m = median[kind]
        print(f"| {label} | {m['rate']:,.0f} | {m['p50']:.1f} | {m['p90']:.1f} | {m['p99']:.1f} |")
    done, ceiling = median["done"], median["healthz"]
    print(f"\ncompletions / ceiling: {done['rate'] / ceiling['rate']:.0%}")
    print(f"\n{describe()}")
    figure = Figure(
        "POST /done under load, SQLite",
        f"{done['rate']:,.0f} requests/s, p99 {done['p99']:.1f} ms",
        f"GET /healthz: {ceiling['rate']:,.0f}/s ({done['rate'] / ceiling['rate']:.0%})",
        ">= 500/s, p99 < 50 ms",
        done["rate"] >= 500 and done["p99"] < 50,
    )
    save(args.json, [figure], args.smoke)


def _count_done(url: str) -> int:
    from sqlalchemy import func, select

    from drip.storage.store import Store, goal_table

    with Store(url, migrate=False) as db, db.reading() as conn:
        return conn.execute(select(func.count()).where(goal_table.c.status == "done")).scalar_one()


if __name__ == "__main__":
    main()
