"""How well drip reads replies and bounces: the corpora of tests/data, through `drip ingest`.

    python bench/replies.py            # every reply and bounce of the corpora, on SQLite
    python bench/replies.py --smoke    # the same (the corpora are small); figures not judged

The replies of tests/data/replies/corpus (written as Gmail, Outlook on every
platform, Apple Mail, iPhone, Thunderbird, mutt and others write them, in the
nine languages drip reads and two it does not) are read from one mbox by
``drip ingest --mbox`` in a fresh process, as a reply mailbox would be. Each
bounce of tests/data/bounces is read on its own into a fresh database. What
drip did is compared with each file's entry in expected.toml:

- wrong: a goal recorded done that the participant did not plainly give, or
  a bounce acted on that drip's own email did not cause;
- dropped: a reply meant for a person that nobody will see;
- asked: a reply that drip handed to a person although it could have
  recorded it (the cost of erring toward people).

The figures are counts, not timings: the same on any machine.
"""

from __future__ import annotations

import argparse
import mailbox
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # the corpora's harness: the world they were written for

from figures import Figure, add_option, save  # noqa: E402
from machine import describe, drip_environment  # noqa: E402

from corpus import (  # noqa: E402
    BOUNCES,
    READ_AT,
    REPLIES,
    ROSTER,
    SETTINGS,
    bounce_effect,
    build_world,
    expected,
    filled,
    score_replies,
)


def ingest(folder: Path, database_url: str, *source: str) -> str:
    env = drip_environment() | SETTINGS
    env["DRIP_SMTP_URL"] = f"file://{folder / 'forwarded'}"
    done = subprocess.run(
        [sys.executable, "-m", "drip", "--database-url", database_url, "ingest", *source,
         "--now", READ_AT.isoformat()],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"drip ingest failed: {done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def replies(folder: Path) -> tuple[Counter[str], Counter[tuple[str, str]], int, list[str]]:
    url = f"sqlite:///{folder / 'replies.db'}"
    build_world(folder, url)
    files, data = expected(REPLIES), filled(REPLIES, url)
    box = mailbox.mbox(folder / "replies.mbox")
    for name in sorted(files):
        box.add(data[name])
    box.close()
    ingest(folder, url, "--mbox", str(folder / "replies.mbox"))
    score = score_replies(url, files, data)
    grades = Counter(verdict.grade for verdict in score.verdicts)
    kept = sum(1 for verdict in score.verdicts if verdict.observed == "replied")
    notes = [
        f"{v.grade}: {v.name} (expected {v.expected}, got {v.observed}) {v.detail}"
        for v in score.verdicts
        if v.grade != "ok"
    ]
    return grades, score.by_language(files), kept, notes


def bounces(folder: Path, limit: int | None) -> Counter[str]:
    people = {line.split(",")[0] for line in ROSTER.splitlines()[1:]}
    grades: Counter[str] = Counter()
    for name, entry in sorted(expected(BOUNCES).items())[:limit]:
        world = folder / "bounces" / name
        world.mkdir(parents=True)
        url = f"sqlite:///{world / 'drip.db'}"
        build_world(world, url)
        ingest(world, url, str(BOUNCES / name))
        effect = bounce_effect(url)
        named = [a for a in entry["addresses"] if a in people]  # type: ignore[union-attr]
        wanted = {
            "hard": {"bounced": named, "soft": []},
            "soft": {"bounced": [], "soft": named},
        }.get(str(entry["outcome"]), {"bounced": [], "soft": []})
        delegate = ["ana@example.com"] if entry["outcome"] == "delegate" or (
            entry["outcome"] == "hard" and "pa.ruiz@example.com" in entry["addresses"]  # type: ignore[operator]
        ) else []  # fmt: skip
        grades["ok" if effect == {**wanted, "delegates": delegate} else "wrong"] += 1
    return grades


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="every reply, five bounces; figures not judged")
    add_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drip-replies-") as tmp:
        folder = Path(tmp)
        grades, languages, kept, notes = replies(folder)
        bounced = bounces(folder, 5 if args.smoke else None)
    total = sum(grades.values())
    print(f"Reply corpus: {total} replies read from one mbox by drip ingest, SQLite\n")
    print("| language | replies | ok | asked a person instead | wrong | dropped |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for language in sorted({lang for lang, _ in languages}):
        row = [languages[(language, grade)] for grade in ("ok", "asked", "wrong", "dropped")]
        print(f"| {language} | {sum(row)} | " + " | ".join(str(n) for n in row) + " |")
    print(f"| all | {total} | {grades['ok']} | {grades['asked']} | {grades['wrong']} | {grades['dropped']} |")
    rate = kept / total
    print(
        f"\nHanded to a person: {kept} of {total} replies ({rate:.0%}); {grades['asked']} of those drip could"
    )
    print("have recorded itself. The rest were meant for a person: not yet, later, if, questions,")
    print("complaints, strangers, languages drip does not read, mail without a thread or a token.")
    bounce_total = sum(bounced.values())
    print(f"\nBounce corpus: {bounce_total} bounces, each into a fresh database: {bounced['ok']} did what")
    print(f"they mean, {bounced['wrong']} did not.")
    for note in notes:
        print(f"- {note}")
    print(f"\n{describe()}")
    wrong = grades["wrong"] + bounced["wrong"]
    figures = [
        Figure(
            f"reply corpus, {total} replies in {len({lang for lang, _ in languages})} languages, and "
            f"{bounce_total} bounces",
            f"{grades['wrong']} wrong completions, {grades['dropped']} dropped, {bounced['wrong']} wrong "
            "bounces",
            f"{kept} of {total} ({rate:.0%}) handed to a person; {grades['asked']} of them drip could have "
            "recorded",
            "0 wrong, 0 dropped",
            wrong == 0 and grades["dropped"] == 0,
        )
    ]
    save(args.json, figures, args.smoke)


if __name__ == "__main__":
    main()
