"""Benchmark `drip ingest --mbox` on a generated mailbox of realistic replies.

    python bench/ingest.py               # 10,000 messages, 3 runs
    python bench/ingest.py --smoke       # tiny, to check the benchmark still works

The mbox mixes what a reply mailbox receives: replies that say done (as
Outlook, Gmail and Apple Mail write them), replies that do not (forwarded to
the cohort's owner, here into the mail catcher's folder), out-of-office
notices, bounces, and mail that is not drip's. Each run is ``drip ingest``
in a fresh process on a fresh copy of the database. Beside it, in the same
run, the ceiling: the same process reading and parsing every message of the
same mbox the way drip does, without acting on any; and, for scale, parsing
alone with the email package's modern policy (what a first version used).
"""

from __future__ import annotations

import argparse
import datetime as dt
import mailbox
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from figures import Figure, add_option, save  # noqa: E402
from machine import describe, drip_environment  # noqa: E402

REPLIES = ROOT / "tests" / "data" / "replies"
DONE = [
    "outlook_top_posted.eml", "gmail_top_posted.eml", "apple_mail.eml", "bottom_posted.eml", "html_only.eml",
    "french_fait.eml",
]  # fmt: skip
NOT_DONE = ["quoted_done_only.eml", "not_done_yet.eml"]
COHORT_TOML = """\
name = "Ingest benchmark"
program = "crawl-walk-run"
start = 2027-01-11
timezone = "America/New_York"
sender = "Comms <comms@example.com>"
owners = ["owner@example.com"]
"""
CEILING = """
import mailbox, sys, time
from email import message_from_bytes, policy
from drip.core import reading
box = mailbox.mbox(sys.argv[1], create=False)
began = time.perf_counter()
count = 0
for key in box.iterkeys():
    data = box.get_bytes(key, from_=False)
    if sys.argv[2] == "drip":
        reading.read(data)
    else:
        message = message_from_bytes(data, policy=policy.default)
        body = message.get_body(("plain", "html"))
        if body is not None:
            body.get_content()
    count += 1
print(count / (time.perf_counter() - began))
"""


def prepare(folder: Path, people: int) -> str:
    """Start a cohort whose welcome and kickoff went out; return the database URL."""
    from sqlalchemy import Text, literal, update

    from drip.config import load_settings
    from drip.launch import enrol
    from drip.launch.cohort import load_cohort
    from drip.storage import keyring
    from drip.storage.store import Store, delivery_table

    cohort = folder / "cohorts" / "bench"
    cohort.mkdir(parents=True)
    (folder / "emails").symlink_to(ROOT / "emails", target_is_directory=True)
    (cohort / "cohort.toml").write_text(COHORT_TOML)
    (cohort / "roster.csv").write_text(
        "email,name\n" + "".join(f"p{n}@example.com,Person {n}\n" for n in range(people))
    )
    url = f"sqlite:///{folder / 'base.db'}"
    with Store(url) as db, db.transaction() as conn:
        enrol.sync_cohort(
            conn, load_cohort(cohort, [folder / "emails"]), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
        )
        keyring.prepare(load_settings(environ={}), conn)
        for step in ("welcome", "short-kickoff"):
            conn.execute(
                update(delivery_table)
                .where(delivery_table.c.step == step)
                .values(
                    status="sent",
                    sent_at=dt.datetime(2027, 1, 12, 14, tzinfo=dt.UTC),
                    message_id=literal(f"<{step}.")
                    + delivery_table.c.participant_id.cast(Text)
                    + "@drip.test>",
                )
            )
    return url


def make_mbox(path: Path, messages: int, people: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    samples = {
        name: (REPLIES / name).read_bytes()
        for name in [*DONE, *NOT_DONE, "out_of_office.eml", "dsn_bounce.eml"]
    }
    box = mailbox.mbox(path)
    box.lock()
    for n in range(messages):
        person = rng.randrange(1, people + 1)
        roll = rng.random()
        if roll < 0.6:
            name = rng.choice(DONE)
        elif roll < 0.75:
            name = rng.choice(NOT_DONE)
        elif roll < 0.85:
            name = "out_of_office.eml"
        elif roll < 0.9:
            name = "dsn_bounce.eml"
        else:
            name = ""
        if name:
            data = samples[name].replace(
                b"<PLACEHOLDER@drip.test>", f"<short-kickoff.{person}@drip.test>".encode()
            )
            for sender in (b"ana@example.com", b"ben@example.com", b"cleo@example.com"):
                data = data.replace(sender, f"p{person - 1}@example.com".encode())
        else:
            data = b"From: vendor@example.net\nTo: comms@example.com\nSubject: Invoice\n\nAttached.\n"
        data = re.sub(
            rb"(?im)^Message-I[Dd]: <[^>]+>", f"Message-ID: <bench.{n}@example.net>".encode(), data, count=1
        )
        if not re.search(rb"(?im)^Message-ID:", data):
            data = f"Message-ID: <bench.{n}@example.net>\n".encode() + data
        box.add(data)
    box.flush()
    box.unlock()
    box.close()


def ingest_run(folder: Path, base: Path, mbox: Path) -> tuple[float, str]:
    database = folder / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(base, database)
    shutil.rmtree(folder / "drip-mail", ignore_errors=True)
    env = drip_environment()
    env["DRIP_MAIL_DIR"] = str(folder / "drip-mail")
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "drip", "--database-url", f"sqlite:///{database}", "ingest",
         "--mbox", str(mbox), "--now", "2027-01-13T16:00Z"],
        cwd=folder, env=env, capture_output=True, text=True,
    )  # fmt: skip
    took = time.perf_counter() - began
    if out.returncode:
        raise SystemExit(f"drip ingest failed: {out.stdout}\n{out.stderr}")
    return took, out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="200 messages, one run")
    add_option(parser)
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.people, args.runs = 200, 50, 1
    with tempfile.TemporaryDirectory(prefix="drip-ingest-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.people)
        mbox = folder / "replies.mbox"
        make_mbox(mbox, args.messages, args.people)
        drip_rates, ceilings, naive, said = [], [], [], ""
        for _ in range(args.runs):
            took, said = ingest_run(folder, folder / "base.db", mbox)
            drip_rates.append(args.messages / took)
            for kind, rates in (("drip", ceilings), ("naive", naive)):
                out = subprocess.run(
                    [sys.executable, "-c", CEILING, str(mbox), kind], capture_output=True, text=True
                )
                rates.append(float(out.stdout))
    drip, ceiling, plain = (statistics.median(rates) for rates in (drip_rates, ceilings, naive))
    print(f"drip ingest --mbox of {args.messages:,} replies ({args.people:,} people); median of {args.runs}")
    print(f"(whole process, start-up included; last run said: {said})\n")
    print("| what | messages/s | vs ceiling |")
    print("| --- | ---: | ---: |")
    print(f"| drip ingest (read, parse, act, record, forward) | {drip:,.0f} | {drip / ceiling:.0%} |")
    print(f"| ceiling: read and parse as drip does, no database | {ceiling:,.0f} | 100% |")
    scale = "for scale: parsing alone with the email package's default policy"
    print(f"| {scale} | {plain:,.0f} | {plain / ceiling:.0%} |")
    print(f"\n{describe()}")
    figure = Figure(
        f"drip ingest --mbox, {args.messages:,} replies, SQLite",
        f"{drip:,.0f} messages/s",
        f"read and parse only: {ceiling:,.0f}/s ({drip / ceiling:.0%})",
        ">= 1,000/s",
        drip >= 1000,
    )
    save(args.json, [figure], args.smoke)


if __name__ == "__main__":
    main()
