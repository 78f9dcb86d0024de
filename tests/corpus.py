"""The reply and bounce corpora: the world they were written for, fed through ``drip ingest``, and scored.

tests/data/replies/corpus/ holds replies written the way real mail clients
write them, tests/data/bounces/ bounces the way mailers write them; each has
an expected.toml saying what a careful program owner wants done with every
file. This module builds the cohort those files answer (its participants,
and the emails drip sent them under known Message-IDs), fills in the tokens
and Thread-Index values the files leave as placeholders, and compares what
drip did with what was expected. test_corpus.py asserts on the comparison;
bench/replies.py prints it.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select, update

from drip.config import load_settings
from drip.core import reading
from drip.core.message import LINK_GRACE_DAYS
from drip.core.plan import program_end
from drip.core.tokens import Action, make_token, thread_index
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage import keyring
from drip.storage.store import (
    Store,
    delivery_table,
    event_table,
    goal_table,
    participant_table,
    received_table,
)

ROOT = Path(__file__).resolve().parent.parent
REPLIES = ROOT / "tests" / "data" / "replies" / "corpus"
BOUNCES = ROOT / "tests" / "data" / "bounces"
ENROLLED = dt.datetime(2027, 1, 4, 12, 0, tzinfo=dt.UTC)
#: when the corpus is read: after every email it answers went out
READ_AT = dt.datetime(2027, 3, 10, 12, 0, tzinfo=dt.UTC)
#: the emails drip sent everyone, and when; each under <STEP.LOCAL@drip.test>
SENT = {
    "welcome": dt.datetime(2027, 1, 11, 14, 0, tzinfo=dt.UTC),
    "short-kickoff": dt.datetime(2027, 1, 12, 14, 0, tzinfo=dt.UTC),
    "short-reminder": dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC),
    "mid-kickoff": dt.datetime(2027, 2, 1, 14, 0, tzinfo=dt.UTC),
    "long-kickoff": dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC),
}
#: what drip ingest needs to read the corpus as its receiving server would be set up
SETTINGS = {"DRIP_BASE_URL": "https://drip.example.com", "DRIP_INBOX_AUTHSERV_ID": "mx.example.com"}

COHORT_TOML = """\
name = "Test cohort"
program = "crawl-walk-run"
start = 2027-01-11
timezone = "America/New_York"
send_time = "09:00"
sender = "Comms <comms@example.com>"
owners = ["owner@example.com"]
"""
ROSTER = """\
email,name,timezone,delegate_email
ana@example.com,Ana Ruiz,America/New_York,pa.ruiz@example.com
ben@example.com,Ben Ito,Asia/Tokyo,
cleo@example.com,Cleo Hart,Europe/London,
dora@example.de,Dora Schmidt,Europe/Berlin,
eloise@example.fr,Éloïse Martin,Europe/Paris,
felipe@example.es,Felipe García,Europe/Madrid,
giulia@example.it,Giulia Rossi,Europe/Rome,
hana@example.jp,佐藤 花,Asia/Tokyo,
joao@example.com.br,João Silva,America/Sao_Paulo,
kees@example.nl,Kees de Vries,Europe/Amsterdam,
lei@example.cn,王磊,Asia/Shanghai,
piotr@example.pl,Piotr Nowak,Europe/Warsaw,
sven@example.se,Sven Lund,Europe/Stockholm,
"""
_PLACEHOLDER = re.compile(rb"\{\{(done|unsubscribe|thread-index):([^}]+)\}\}")


def expected(folder: Path) -> dict[str, dict[str, object]]:
    return tomllib.loads((folder / "expected.toml").read_text(encoding="utf-8"))


def build_world(folder: Path, database_url: str) -> None:
    """Start the corpus's cohort in ``folder`` and record the emails it answers as sent."""
    cohort = folder / "cohorts" / "corpus"
    cohort.mkdir(parents=True, exist_ok=True)
    if not (folder / "emails").exists():
        (folder / "emails").symlink_to(ROOT / "emails", target_is_directory=True)
    (cohort / "cohort.toml").write_text(COHORT_TOML, encoding="utf-8")
    (cohort / "roster.csv").write_text(ROSTER, encoding="utf-8")
    with Store(database_url) as db, db.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(cohort, [folder / "emails"]), ENROLLED)
        keyring.prepare(load_settings(environ=SETTINGS), conn)
        people = conn.execute(select(participant_table.c.id, participant_table.c.email)).all()
        for person in people:
            for step, at in SENT.items():
                conn.execute(
                    update(delivery_table)
                    .where(delivery_table.c.participant_id == person.id, delivery_table.c.step == step)
                    .values(
                        status="sent",
                        sent_at=at,
                        message_id=f"<{step}.{person.email.split('@')[0]}@drip.test>",
                    )
                )


def fill(data: bytes, conn: Connection) -> bytes:
    """Put the real tokens and Thread-Index values where a corpus file has placeholders."""
    secret = keyring.signing_keys(load_settings(environ=SETTINGS), conn)

    def value(match: re.Match[bytes]) -> bytes:
        kind, args = match.group(1).decode(), match.group(2).decode().split(":")
        if kind == "unsubscribe":
            return make_token(secret, Action.UNSUBSCRIBE, _person(conn, args[0]), None).encode()
        if kind == "done":
            goal, local = args
            goal_id = conn.execute(
                select(goal_table.c.id).where(
                    goal_table.c.participant_id == _person(conn, local), goal_table.c.goal == goal
                )
            ).scalar_one()
            return make_token(secret, Action.DONE, goal_id, _expiry(conn, local)).encode()
        step, local = args
        delivery = conn.execute(
            select(delivery_table.c.id).where(
                delivery_table.c.participant_id == _person(conn, local), delivery_table.c.step == step
            )
        ).scalar_one()
        # Outlook keeps the 22 bytes of the email's Thread-Index and adds five of its own.
        ours = base64.b64decode(thread_index(secret, str(delivery), SENT[step]))
        return base64.b64encode(ours + b"\x00\x1d\x6f\x2a\x91").decode().encode()

    return _PLACEHOLDER.sub(value, data)


def _person(conn: Connection, local: str) -> int:
    return conn.execute(
        select(participant_table.c.id).where(participant_table.c.email.like(f"{local}@%"))
    ).scalar_one()


def _expiry(conn: Connection, local: str) -> dt.date:
    from drip import changes

    person = changes.person_by_id(conn, _person(conn, local))
    assert person is not None
    return program_end(person.program, person.timing()) + dt.timedelta(days=LINK_GRACE_DAYS)


def filled(folder: Path, database_url: str) -> dict[str, bytes]:
    """Every corpus file of ``folder``, placeholders filled in, by file name."""
    with Store(database_url) as db, db.reading() as conn:
        return {path.name: fill(path.read_bytes(), conn) for path in sorted(folder.glob("*.eml"))}


# --- scoring ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    name: str
    expected: str
    observed: str
    #: ok; wrong (a done that was not given, or any other change that should not be); dropped (a
    #: message for a person that nobody will see); asked (drip asked a person where it could have acted)
    grade: str
    detail: str = ""


@dataclass
class Score:
    verdicts: list[Verdict] = field(default_factory=list)

    def count(self, grade: str) -> int:
        return sum(1 for v in self.verdicts if v.grade == grade)

    def by_language(self, files: dict[str, dict[str, object]]) -> Counter[tuple[str, str]]:
        return Counter((str(files[v.name].get("language", "?")), v.grade) for v in self.verdicts)

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.grade in ("wrong", "dropped")]


def score_replies(database_url: str, files: dict[str, dict[str, object]], data: dict[str, bytes]) -> Score:
    """Compare what drip did with each reply to what its expected.toml entry says."""
    score = Score()
    with Store(database_url) as db, db.reading() as conn:
        outcome = {row.message_id: row.outcome for row in conn.execute(select(received_table))}
        people = {row.id: row.email for row in conn.execute(select(participant_table))}
        events = conn.execute(select(event_table).where(event_table.c.kind.in_(["completed", "replied"])))
        done_by: dict[str, list[tuple[str, str | None]]] = {}
        kept_for: dict[str, list[str]] = {}
        for event in events:
            key = (event.data or {}).get("message_id")
            if event.kind == "completed" and key:
                done_by.setdefault(key, []).append((people[event.participant_id], event.goal))
            elif key:
                kept_for.setdefault(key, []).append(people[event.participant_id])
        done_now = {
            (people[row.participant_id], row.goal)
            for row in conn.execute(select(goal_table).where(goal_table.c.status == "done"))
        }
    for name, entry in files.items():
        key = reading.read(data[name]).key
        score.verdicts.append(_grade(name, entry, outcome.get(key, "(not read)"), done_by.get(key, []),
                                     kept_for.get(key, []), done_now))  # fmt: skip
    wanted = {(str(e["participant"]), str(e["goal"])) for e in files.values() if e["outcome"] == "completed"}
    for participant, goal in sorted(done_now - wanted):
        score.verdicts.append(
            Verdict("(all)", "open", "done", "wrong", f"{participant} {goal} was recorded done")
        )
    return score


def _grade(
    name: str,
    entry: dict[str, object],
    observed: str,
    done: list[tuple[str, str | None]],
    kept: list[str],
    done_now: set[tuple[str, str]],
) -> Verdict:
    want = str(entry["outcome"])
    person, goal = entry.get("participant"), entry.get("goal")
    if want == "completed":
        if observed == "completed" and done == [(person, goal)]:
            return Verdict(name, want, observed, "ok")
        if observed == "already" and (person, goal) in done_now:
            return Verdict(name, want, observed, "ok", "the goal was done by an earlier message")
        if observed == "replied" and person in kept:
            return Verdict(name, want, observed, "asked")
        return Verdict(name, want, observed, "wrong", f"done: {done}, kept for: {kept}")
    if observed in ("completed", "already") or done:
        return Verdict(name, want, observed, "wrong", f"recorded done: {done or observed}")
    if want == "person":
        if observed == "replied" and person in kept:
            return Verdict(name, want, observed, "ok")
        return Verdict(name, want, observed, "dropped", f"kept for: {kept}")
    if want == "auto_reply":
        return Verdict(name, want, observed, "ok" if observed == "auto_reply" else "wrong")
    if want == "unsubscribed":
        return Verdict(name, want, observed, "ok" if observed == "unsubscribed" else "wrong")
    # ignored: nothing for anyone; a person being shown it too is noise, not harm
    if observed == "unmatched":
        return Verdict(name, want, observed, "ok")
    return Verdict(name, want, observed, "asked" if observed == "replied" else "wrong")


def bounce_effect(database_url: str) -> dict[str, object]:
    """Return what a bounce changed in a fresh world: who is bounced, whose delegate, soft bounces counted."""
    with Store(database_url) as db, db.reading() as conn:
        people = conn.execute(select(participant_table)).all()
        soft = conn.execute(select(event_table.c.participant_id).where(event_table.c.kind == "soft_bounced"))
        by_id = {person.id: person.email for person in people}
        return {
            "bounced": sorted(p.email for p in people if p.status == "bounced"),
            "delegates": sorted(p.email for p in people if p.delegate_bounced),
            "soft": sorted(by_id[row.participant_id] for row in soft),
        }
