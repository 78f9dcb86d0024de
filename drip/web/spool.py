"""Clicks the database could not take at once, kept on disk and recorded as soon as it can.

A link page must answer within seconds even while another process holds
SQLite's write lock (a long ``drip start``, a backup, an operator's
``sqlite3`` session). The page then keeps the click here, answers 503 with
Retry-After, and the click is recorded later, dated when it was made: the
web server replays the spool every few seconds, and ``drip run`` at every
tick. Repeating an action is harmless, so a person who clicks again meanwhile
changes nothing twice.

A click is kept as what its verified token allows (the action and the goal's
or participant's id) with its evidence: never the token itself, which is a
credential. Each is one small JSON file, written to a temporary name,
flushed and renamed, so a crash leaves either the whole click or nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Connection

from drip import changes
from drip.core.errors import DripError, StoreBusy
from drip.core.tokens import Action, Claim
from drip.storage.store import Store

logger = logging.getLogger(__name__)

#: how long a replay waits for the database before leaving the rest for next time
REPLAY_WAIT = 1.0


@dataclass(frozen=True)
class Click:
    """A person's action, as its verified token allows it."""

    action: str
    object_id: int
    at: str
    ip: str | None = None
    user_agent: str | None = None
    #: the answer to the goal's question, already checked, for a goal marked done
    answer: str | None = None

    @property
    def moment(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.at)


def folder_for(database_url: str, configured: str | None = None) -> Path:
    """Return where clicks wait: beside a SQLite database, else in ``drip-spool`` here."""
    if configured:
        return Path(configured)
    if database_url.startswith("sqlite:///"):
        return Path(f"{database_url.removeprefix('sqlite:///')}.spool")
    return Path("drip-spool")


def keep(folder: Path, click: Click) -> Path:
    """Write a click to the spool, whole or not at all; return its file."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"  # in the order they were kept
    temporary, final = folder / f".{name}.tmp", folder / f"{name}.json"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(asdict(click), out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, final)
    return final


def waiting(folder: Path) -> list[Path]:
    """Return the clicks waiting, oldest first."""
    try:
        return sorted(folder.glob("*.json"))
    except OSError:
        return []


def replay(db: Store, folder: Path) -> int:
    """Record the clicks waiting, each in its own transaction; return how many were recorded.

    Stops at the first one the database is still too busy for; a click that can no longer be
    recorded (its goal or participant is gone) is set aside in ``failed/`` with a log line.
    """
    done = 0
    for path in waiting(folder):
        click = _read(path)
        if click is None:
            continue
        try:
            with db.transaction(wait=REPLAY_WAIT) as conn:
                apply(conn, click)
        except StoreBusy:
            break
        except DripError as exc:
            logger.warning("a kept click (%s) could not be recorded: %s", path.name, exc)
            _set_aside(path)
            continue
        path.unlink(missing_ok=True)
        done += 1
    return done


def apply(conn: Connection, click: Click) -> None:
    """Do what a click asked, dated when it was made."""
    evidence = changes.Evidence(
        "link", ip=click.ip, user_agent=click.user_agent, label="kept while busy", answer=click.answer
    )
    claim = Claim(Action(click.action), click.object_id, None)
    found = changes.person_of(conn, claim)
    if found is None:
        raise changes.ActionError("the goal or participant is no longer in the database")
    changes.act(conn, claim, *found, click.moment, evidence)


def _read(path: Path) -> Click | None:
    try:
        return Click(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("a kept click (%s) is unreadable and is set aside: %s", path.name, exc)
        _set_aside(path)
        return None


def _set_aside(path: Path) -> None:
    aside = path.parent / "failed"
    aside.mkdir(mode=0o700, exist_ok=True)
    os.replace(path, aside / path.name)
