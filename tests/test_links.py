"""The pages behind the links in the emails, in process, on SQLite and PostgreSQL: confirm on GET,
act on POST, refuse forged or stale tokens kindly, and never change anything for a scanner."""

import dataclasses
import datetime as dt
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from conftest import EMAILS, CohortFactory, SMTPServer
from drip.config import load_settings
from drip.core.tokens import Action, answer_object, make_token
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.sending.dispatcher import Dispatcher
from drip.sending.transport import open_transport
from drip.storage import keyring
from drip.storage.keyring import signing_keys
from drip.storage.store import (
    Store,
    check_in_table,
    delivery_table,
    event_table,
    goal_table,
    meta_table,
    participant_table,
)
from drip.web.app import create_app

UTC = dt.UTC
ENROLLED = dt.datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
CLICKED = dt.datetime(2027, 1, 13, 15, 0, tzinfo=UTC)  # Wednesday morning in New York
LINK_END = dt.date(2027, 6, 1)
STRONG = "Xq9-vB2pL7sWz4Rt8Yb1Nm6Hc3Jd5Fg0Ae"
IPHONE = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"}


@pytest.fixture
def started(store: Store, make_cohort: CohortFactory) -> Store:
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), ENROLLED)
        keyring.prepare(load_settings(environ={}), conn)  # as drip start does
    return store


@pytest.fixture
def client(started: Store, database_url: str) -> Iterator[FlaskClient]:
    app = create_app(settings(database_url), clock=lambda: CLICKED)
    yield app.test_client()
    app.extensions["drip"].database.close()


def settings(database_url: str, **more):
    base = load_settings(environ={}, options={"base_url": "https://drip.example.com"})
    return dataclasses.replace(base, database_url=database_url, smtp_url="smtp://unused.example.com", **more)


def ids(db: Store, email: str = "ana@example.com") -> tuple[int, dict[str, int]]:
    with db.reading() as conn:
        person = conn.execute(
            select(participant_table.c.id).where(participant_table.c.email == email)
        ).scalar_one()
        goals = conn.execute(
            select(goal_table.c.goal, goal_table.c.id).where(goal_table.c.participant_id == person)
        )
        return person, dict(goals.all())


def token(db: Store, action: Action, object_id: int, expires: dt.date | None = LINK_END) -> str:
    with db.reading() as conn:
        keys = signing_keys(load_settings(environ={}), conn)
    return make_token(keys, action, object_id, expires)


def snapshot(db: Store) -> dict[str, list]:
    """Every row that a click could change."""
    tables = (participant_table, goal_table, delivery_table, event_table, meta_table, check_in_table)
    with db.reading() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(select(table)).all()), key=repr) for table in tables
        }


def text_of(response) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def test_done_asks_on_get_and_acts_on_post(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    url = f"/done/{token(started, Action.DONE, goals['short'])}"
    before = snapshot(started)
    page = client.get(url, headers=IPHONE)
    assert page.status_code == 200
    words = text_of(page)
    assert "Ana, is this one done?" in words and "Crawl: your LinkedIn profile and 10 connections" in words
    assert '<form method="post">' in page.get_data(as_text=True) and "Yes, mark it done" in words
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert client.head(url).status_code == 200
    assert snapshot(started) == before  # a GET or HEAD changes nothing

    thanks = client.post(url, headers=IPHONE, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert thanks.status_code == 200
    words = text_of(thanks)
    assert "Thank you, Ana" in words and "is recorded as done" in words
    assert (
        "Next: “Walk: five voices worth reading daily”. It opens Monday 1 February, due Monday 1 March."
        in words
    )
    with started.reading() as conn:
        status, via = conn.execute(
            select(goal_table.c.status, goal_table.c.via).where(goal_table.c.id == goals["short"])
        ).one()
        [event] = conn.execute(select(event_table).where(event_table.c.kind == "completed")).all()
    assert (status, via) == ("done", "link")
    assert event.data["ip"] == "198.51.100.7" and event.data["user_agent"] == IPHONE["User-Agent"]
    assert event.data["via"] == "link" and "label" not in event.data

    again = client.post(url)
    assert again.status_code == 200 and "Already recorded" in text_of(again)
    assert "Already recorded" in text_of(client.get(url))


def test_link_servers_behind_a_load_balancer_act_as_one(started: Store, database_url: str) -> None:
    """Each server keeps nothing of its own: a click on one is known to the others at once."""
    apps = [create_app(settings(database_url), clock=lambda: CLICKED) for _ in range(3)]
    try:
        first, second, third = (app.test_client() for app in apps)
        _, goals = ids(started)
        done = f"/done/{token(started, Action.DONE, goals['short'])}"
        assert "is this one done?" in text_of(second.get(done))
        assert "Thank you, Ana" in text_of(first.post(done, headers=IPHONE))
        assert "Already recorded" in text_of(second.get(done))
        assert "Already recorded" in text_of(third.post(done))
        person, _ = ids(started)
        unsubscribe = f"/unsubscribe/{token(started, Action.UNSUBSCRIBE, person, None)}"
        assert third.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert "You are unsubscribed" in text_of(first.get(unsubscribe))
        with started.reading() as conn:
            kinds = conn.execute(
                select(event_table.c.kind).where(event_table.c.participant_id == person)
            ).scalars()
            counted = [kind for kind in kinds if kind in ("completed", "unsubscribed")]
        assert sorted(counted) == ["completed", "unsubscribed"]  # each once, whichever server was asked
    finally:
        for app in apps:
            app.extensions["drip"].database.close()


def test_a_scanner_that_posts_is_labelled_not_trusted_blindly(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    url = f"/done/{token(started, Action.DONE, goals['mid'])}"
    client.post(url, headers={"User-Agent": "Mozilla/5.0 (compatible; Mimecast-URL-Protect)"})
    with started.reading() as conn:
        [event] = conn.execute(select(event_table).where(event_table.c.kind == "completed")).all()
    assert event.data["label"] == "possible link scanner (user agent)"


def test_the_last_goal_says_so(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    for key in ("short", "mid", "long"):
        page = client.post(f"/done/{token(started, Action.DONE, goals[key])}")
    assert "That was the last goal of the program: well done." in text_of(page)


@pytest.mark.parametrize("body", ["urlencoded", "multipart"])
def test_one_click_unsubscribe(started: Store, client: FlaskClient, body: str) -> None:
    person, _ = ids(started)
    url = f"/unsubscribe/{token(started, Action.UNSUBSCRIBE, person, None)}"
    page = client.get(url)
    assert page.status_code == 200 and "Stop these emails?" in text_of(page)
    assert 'name="List-Unsubscribe" value="One-Click"' in page.get_data(as_text=True)
    # RFC 8058: what a mail client sends; no cookie, no login, no redirect.
    if body == "urlencoded":
        done = client.post(
            url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
    else:
        done = client.post(url, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data")
    assert done.status_code == 200 and "Location" not in done.headers and "Set-Cookie" not in done.headers
    assert "You are unsubscribed" in text_of(done) and "write to owner@example.com" in text_of(done)
    with started.reading() as conn:
        status = conn.execute(
            select(participant_table.c.status).where(participant_table.c.id == person)
        ).scalar_one()
        pending = conn.execute(
            select(delivery_table.c.id).where(
                delivery_table.c.participant_id == person,
                delivery_table.c.status.in_(["scheduled", "waiting"]),
            )
        ).all()
    assert status == "unsubscribed" and pending == []
    assert client.post(url, data="List-Unsubscribe=One-Click").status_code == 200  # again: still fine


def test_a_done_recorded_from_a_reply_can_be_reopened(started: Store, client: FlaskClient) -> None:
    from drip import changes

    _, goals = ids(started)
    with started.transaction() as conn:
        ana = changes.find_person(conn, "test-cohort", "ana@example.com")
        evidence = changes.Evidence(
            "reply", sender="ana@example.com", matched="<kickoff@x>", rule="done: 'done'"
        )
        changes.complete(conn, ana, "short", CLICKED - dt.timedelta(hours=2), evidence)
    url = f"/reopen/{token(started, Action.REOPEN, goals['short'])}"
    before = snapshot(started)
    page = client.get(url, headers=IPHONE)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    words = text_of(page)
    assert (
        "Ana, not done after all?" in words
        and "was marked done on Wednesday 13 January from your reply" in words
    )
    assert "Yes, reopen it" in words and client.head(url).status_code == 200
    assert snapshot(started) == before  # a scanner opening it changes nothing
    done = client.post(url, headers=IPHONE)
    assert done.status_code == 200 and "is open again, due Monday 1 February" in text_of(done)
    with started.reading() as conn:
        status = conn.execute(select(goal_table.c.status).where(goal_table.c.id == goals["short"])).scalar()
        [completed] = conn.execute(select(event_table).where(event_table.c.kind == "completed")).all()
        [reopened] = conn.execute(select(event_table).where(event_table.c.kind == "reopened")).all()
        reminder = conn.execute(
            select(delivery_table.c.status).where(
                delivery_table.c.participant_id == ana.id, delivery_table.c.step == "short-reminder"
            )
        ).scalar()  # fmt: skip
    assert status == "open" and reminder == "scheduled"
    assert reopened.data["undid"] == completed.id and reopened.data["via"] == "link"
    assert "Already open" in text_of(client.post(url))
    # A done token is not a reopen token, nor the other way round.
    assert client.get(f"/reopen/{token(started, Action.DONE, goals['short'])}").status_code == 400


def test_snooze_once(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    url = f"/snooze/{token(started, Action.SNOOZE, goals['short'])}"
    page = client.get(url)
    assert "Push it back to Monday 8 February? You can do this once." in text_of(page)
    done = client.post(url)
    assert "is now due Monday 8 February" in text_of(done)
    assert "Already snoozed once" in text_of(client.post(url))
    assert "Already snoozed once" in text_of(client.get(url))


def test_every_action_keeps_its_evidence(started: Store, client: FlaskClient) -> None:
    person, goals = ids(started)
    with started.transaction() as conn:  # the kickoff about the short goal went out five seconds ago
        conn.execute(
            delivery_table.update()
            .where(delivery_table.c.participant_id == person, delivery_table.c.goal == "short")
            .values(status="sent", sent_at=CLICKED - dt.timedelta(seconds=5))
        )
    where = {"headers": IPHONE, "environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    client.post(f"/snooze/{token(started, Action.SNOOZE, goals['short'])}", **where)
    client.post(f"/unsubscribe/{token(started, Action.UNSUBSCRIBE, person, None)}", **where)
    with started.reading() as conn:
        events = dict(conn.execute(select(event_table.c.kind, event_table.c.data)).all())
    for kind in ("snoozed", "unsubscribed"):
        data = events[kind]
        assert (data["via"], data["ip"], data["user_agent"]) == ("link", "203.0.113.9", IPHONE["User-Agent"])
        assert data["seconds_since_sent"] == 5.0
        assert data["label"] == "possible link scanner (seconds after sending)"  # labelled, still acted on


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda url: url[:-1] + ("a" if url[-1] != "a" else "b"), 400, "not one drip sent"),
        (lambda url: url[:-5], 400, "this link is incomplete"),
        (lambda url: url.replace("/done/", "/snooze/"), 400, "this link is for something else"),
        (lambda url: url + "'\"><script>", 400, "this link is incomplete"),
    ],
    ids=["tampered", "truncated", "wrong action", "injected"],
)
def test_bad_tokens_get_a_kind_page_and_change_nothing(
    started: Store, client: FlaskClient, make, status: int, words: str
) -> None:
    _, goals = ids(started)
    url = make(f"/done/{token(started, Action.DONE, goals['short'])}")
    before = snapshot(started)
    for method in (client.get, client.post):
        page = method(url)
        assert page.status_code == status and words in text_of(page)
        assert "<script>" not in page.get_data(as_text=True) and "Traceback" not in page.get_data(
            as_text=True
        )
    assert snapshot(started) == before


def test_expired_and_unknown_tokens_are_gone(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    expired = client.post(f"/done/{token(started, Action.DONE, goals['short'], dt.date(2027, 1, 1))}")
    assert expired.status_code == 410 and "this link expired on 01 January 2027" in text_of(expired)
    assert "reply to the email" in text_of(expired)
    unknown = client.get(f"/done/{token(started, Action.DONE, 99_999)}")
    assert unknown.status_code == 410 and "no longer running" in text_of(unknown)
    forged = make_token(("k" * 40,), Action.DONE, goals["short"], LINK_END)
    assert client.post(f"/done/{forged}").status_code == 400


def test_rotated_keys_still_verify_old_links(started: Store, database_url: str) -> None:
    _, goals = ids(started)
    old = "o" * 40
    app = create_app(settings(database_url, secret_key=f"{'n' * 40},{old}"), clock=lambda: CLICKED)
    try:
        client = app.test_client()
        assert (
            client.get(f"/done/{make_token((old,), Action.DONE, goals['short'], LINK_END)}").status_code
            == 200
        )
        retired = make_token(("r" * 40,), Action.DONE, goals["short"], LINK_END)
        assert client.get(f"/done/{retired}").status_code == 400
    finally:
        app.extensions["drip"].database.close()


def test_links_signed_before_a_secret_key_was_set_keep_working(started: Store, database_url: str) -> None:
    """An operator who sets DRIP_SECRET_KEY mid-cohort must not break the links already emailed."""
    _, goals = ids(started)
    sent_earlier = token(started, Action.DONE, goals["short"])  # signed with the generated key
    app = create_app(settings(database_url, secret_key=STRONG), clock=lambda: CLICKED)
    try:
        client = app.test_client()
        assert client.post(f"/done/{sent_earlier}").status_code == 200
        assert goal_status(started, goals["short"]) == "done"
        with started.reading() as conn:  # new links are signed with the key that was set
            keys = signing_keys(load_settings(environ={"DRIP_SECRET_KEY": STRONG}), conn)
        assert keys[0] == STRONG and len(keys) == 2
    finally:
        app.extensions["drip"].database.close()


def goal_status(db: Store, goal_id: int) -> str:
    with db.reading() as conn:
        return conn.execute(select(goal_table.c.status).where(goal_table.c.id == goal_id)).scalar_one()


def test_oversized_bodies_and_unknown_pages(started: Store, client: FlaskClient) -> None:
    person, _ = ids(started)
    url = f"/unsubscribe/{token(started, Action.UNSUBSCRIBE, person, None)}"
    before = snapshot(started)
    big = client.post(url, data="x" * (200 * 1024), content_type="application/x-www-form-urlencoded")
    assert big.status_code == 413 and "Request Entity Too Large" in text_of(big)
    assert snapshot(started) == before
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "Not Found" in text_of(missing)
    assert client.get("/healthz").data == b"ok\n"
    assert client.put(url).status_code == 405


def test_a_scanner_opening_every_link_of_a_campaign_changes_nothing(
    started: Store, client: FlaskClient, smtp_server: SMTPServer
) -> None:
    """GET and HEAD every link of every email of a whole campaign, as Safe Links and Mimecast do."""
    run = dataclasses.replace(
        settings(started.engine.url.render_as_string(hide_password=False)), smtp_url=smtp_server.url
    )
    dispatcher = Dispatcher(started, run, lambda: open_transport(smtp_server.url))
    from drip import changes

    with started.transaction() as conn:  # so that a congratulations email carries a "Reopen" link
        ben = changes.find_person(conn, "test-cohort", "ben@example.com")
        changes.complete(conn, ben, "short", dt.datetime(2027, 1, 20, tzinfo=UTC), changes.Evidence("reply"))
    moment = dt.datetime(2027, 1, 11, 12, 0, tzinfo=UTC)
    while moment < dt.datetime(2027, 5, 1, tzinfo=UTC):
        dispatcher.run_until_idle(moment)
        moment += dt.timedelta(hours=12)
    links: set[str] = set()
    for received in smtp_server.messages:
        message = received.message
        texts = [str(message["List-Unsubscribe"])]
        texts += [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
        for text in texts:
            links |= set(
                re.findall(r"https://drip\.example\.com(/[a-z]+/[a-z0-9]+)", text.replace("\r\n ", ""))
            )
    kinds = {link.split("/")[1] for link in links}
    assert kinds == {"done", "snooze", "unsubscribe", "reopen"} and len(links) >= 10
    before = snapshot(started)
    for link in sorted(links):
        assert client.get(link).status_code == 200, link
        assert client.head(link).status_code == 200, link
    assert snapshot(started) == before


def test_a_stopped_database_gives_a_kind_error() -> None:
    app = create_app(settings("postgresql+psycopg://postgres@127.0.0.1:1/drip"), clock=lambda: CLICKED)
    page = app.test_client().get(f"/done/{'a' * 34}")
    assert page.status_code == 500 and "Something went wrong" in text_of(page)
    assert "Traceback" not in page.get_data(as_text=True)


# --- a database held by someone else ---------------------------------------------------------


@contextmanager
def held(db: Store, goal_id: int) -> Iterator[None]:
    """Hold the database as an operator's session would: SQLite's write lock, or the goal's row."""
    if db.dialect == "sqlite":
        other = sqlite3.connect(db.engine.url.database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        other = psycopg.connect(
            db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        other.execute("SELECT id FROM goals WHERE id = %s FOR UPDATE", (goal_id,))
    try:
        yield
    finally:
        other.rollback()
        other.close()


def test_a_click_while_the_database_is_held_is_kept_and_recorded_later(
    started: Store, database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drip.web import spool

    monkeypatch.chdir(tmp_path)  # PostgreSQL keeps clicks in ./drip-spool
    app = create_app(settings(database_url), clock=lambda: CLICKED)
    client = app.test_client()
    _, goals = ids(started)
    url = f"/done/{token(started, Action.DONE, goals['short'])}"
    kept = app.extensions["drip"].spool
    try:
        with held(started, goals["short"]):
            began = time.monotonic()
            answer = client.post(url, data={"answer": "https://www.linkedin.com/in/ana"}, headers=IPHONE)
            assert time.monotonic() - began < 5 and answer.status_code == 503
            assert answer.headers["Retry-After"] == "30" and "it will be recorded within a minute" in text_of(
                answer
            )
            began = time.monotonic()
            assert client.get("/healthz").status_code == 200 and time.monotonic() - began < 1
            assert client.get("/readyz").status_code == 503
            began = time.monotonic()
            assert client.post(url).status_code == 503 and time.monotonic() - began < 2, (
                "the next ones wait less"
            )
            assert len(spool.waiting(kept)) == 2
            assert all("token" not in path.read_text() for path in spool.waiting(kept)), (
                "no credential on disk"
            )
        with started.reading() as conn:
            assert (
                conn.execute(select(goal_table.c.status).where(goal_table.c.id == goals["short"])).scalar()
                == "open"
            )
        # Free again: the next click goes through and takes the kept ones with it.
        other = f"/done/{token(started, Action.DONE, goals['mid'])}"
        assert client.post(other).status_code == 200 and spool.waiting(kept) == []
        assert client.get("/readyz").status_code == 200
    finally:
        app.extensions["drip"].database.close()
    with started.reading() as conn:
        status, done_at = conn.execute(
            select(goal_table.c.status, goal_table.c.completed_at).where(goal_table.c.id == goals["short"])
        ).one()
        events = (
            conn.execute(select(event_table.c.data).where(event_table.c.kind == "completed")).scalars().all()
        )
    assert status == "done" and done_at == CLICKED, "recorded as of the click"
    assert goal_row(started, goals["short"])[1] == "https://www.linkedin.com/in/ana", "with its answer"
    assert sum(1 for data in events if data.get("label") == "kept while busy") == 1
    assert any(data.get("user_agent") == IPHONE["User-Agent"] for data in events)


def test_drip_run_under_a_held_lock_says_so_in_one_line(
    started: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from drip.cli import main
    from drip.storage import store as store_module

    if started.dialect != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock")
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 300)
    _, goals = ids(started)
    with held(started, goals["short"]):
        result = CliRunner().invoke(
            main, ["--database-url", database_url, "run", "--once", "--now", "2027-01-11T15:00Z", "--no-web"]
        )
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "database is locked: another process holds it" in errors[0]


# --- drip keys: rotate to a new key, retire an old one ------------------------------------------


def test_keys_rotate_and_retire_the_generated_key(started: Store, database_url: str) -> None:
    from click.testing import CliRunner

    from drip.cli import main
    from drip.storage.keyring import key_id

    runner = CliRunner()

    def drip(*args: str) -> str:
        result = runner.invoke(main, ["--database-url", database_url, "keys", *args])
        assert result.exit_code == 0, result.output
        return result.output

    _, goals = ids(started)
    old_link = f"/done/{token(started, Action.DONE, goals['short'])}"
    with started.reading() as conn:
        [first] = signing_keys(load_settings(environ={}), conn)
    listed = drip("list")
    assert key_id(first) in listed and "signs" in listed and first not in listed, "never the key itself"
    said = drip("rotate")
    new_id = said.split()[1]
    assert new_id != key_id(first)
    with started.reading() as conn:
        now_signing = signing_keys(load_settings(environ={}), conn)
    assert key_id(now_signing[0]) == new_id and now_signing[1] == first, "the new one signs, the old verifies"
    app = create_app(settings(database_url), clock=lambda: CLICKED)
    try:
        assert app.test_client().get(old_link).status_code == 200, "links already sent keep working"
        assert "is retired" in drip("retire", key_id(first)[:5])
        app.extensions["drip"].database._keys = None  # as a running server does within a minute
        assert app.test_client().get(old_link).status_code == 400, "a retired key verifies nothing"
    finally:
        app.extensions["drip"].database.close()
    assert f"{key_id(first)}" in drip("list") and "retired" in drip("list")
    only = runner.invoke(main, ["--database-url", database_url, "keys", "retire", new_id])
    assert only.exit_code == 1 and "the only one that signs; run `drip keys rotate` first" in only.output
    unknown = runner.invoke(main, ["--database-url", database_url, "keys", "retire", "zzzz"])
    assert unknown.exit_code == 1 and "no single kept key with id 'zzzz'" in unknown.output


def test_keys_rotate_asks_for_drip_secret_key_when_it_is_set(started: Store, database_url: str) -> None:
    from click.testing import CliRunner

    from drip.cli import main

    result = CliRunner().invoke(
        main, ["--database-url", database_url, "keys", "rotate"], env={"DRIP_SECRET_KEY": STRONG}
    )
    assert result.exit_code == 1 and "putting a new key first in it" in " ".join(result.output.split())


# --- every action's link is served from its one address ----------------------------------------


@pytest.mark.parametrize("action", list(Action))
def test_every_link_an_email_carries_opens_its_page_and_only_the_button_acts(
    action: Action, started: Store, client: FlaskClient
) -> None:
    from drip.core.message import Links

    person, goals = ids(started)
    with started.reading() as conn:
        keys = signing_keys(load_settings(environ={}), conn)
    links = Links("https://drip.example.com", tuple(keys), "comms@example.com", LINK_END)
    target = goals["short"] if action.on_goal else person
    if action is Action.ANSWER:  # a check-in's first answer, once its email went out
        with started.transaction() as conn:
            check_in = conn.execute(
                select(delivery_table.c.id).where(
                    delivery_table.c.participant_id == person, delivery_table.c.step == "sustain-1"
                )
            ).scalar_one()
            conn.execute(
                update(delivery_table)
                .where(delivery_table.c.id == check_in)
                .values(
                    status="sent", sent_at=CLICKED - dt.timedelta(days=1), message_id="<drip.1.t@example.com>"
                )
            )
        target = answer_object(check_in, 0)
    url = links.url(action, target)
    assert url.startswith(f"https://drip.example.com/{action.path}/")
    path = url.removeprefix("https://drip.example.com")
    if action is Action.REOPEN:  # only a goal that is done can be reopened
        assert client.post(f"/{Action.DONE.path}/{token(started, Action.DONE, target)}").status_code == 200
    before = snapshot(started)
    asked = client.get(path, headers=IPHONE)
    assert asked.status_code == 200 and asked.headers["Cache-Control"] == "no-store"
    assert b'method="post"' in asked.data.lower()
    assert snapshot(started) == before, "a GET changes nothing"
    answered = client.post(path, headers=IPHONE)
    assert answered.status_code == 200
    assert snapshot(started) != before, "the button acts"
    assert client.get(f"/{action.path}/not-a-token").status_code == 400


# --- the goal's question, asked when it is marked done ------------------------------------------


def goal_row(db: Store, goal_id: int) -> tuple:
    with db.reading() as conn:
        return conn.execute(
            select(goal_table.c.status, goal_table.c.answer).where(goal_table.c.id == goal_id)
        ).one()


def completed_events(db: Store) -> list[dict]:
    with db.reading() as conn:
        return list(
            conn.execute(select(event_table.c.data).where(event_table.c.kind == "completed")).scalars()
        )


def test_the_done_page_asks_the_goals_question_and_keeps_the_answer(
    started: Store, client: FlaskClient
) -> None:
    _, goals = ids(started)
    url = f"/done/{token(started, Action.DONE, goals['short'])}"
    page = client.get(url, headers=IPHONE).get_data(as_text=True)
    assert "Your LinkedIn profile&#39;s address" in page and "(optional)" in page
    assert 'name="answer"' in page and 'inputmode="url"' in page and 'maxlength="280"' in page
    assert page.index('name="answer"') < page.index("Yes, mark it done"), "the question comes first"

    done = client.post(url, data={"answer": "linkedin.com/in/ana-ruiz"}, headers=IPHONE)
    assert done.status_code == 200 and "Thank you, Ana" in text_of(done)
    assert goal_row(started, goals["short"]) == ("done", "https://linkedin.com/in/ana-ruiz")
    assert completed_events(started)[0]["answer"] == "https://linkedin.com/in/ana-ruiz"


def test_the_question_is_optional(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    for key, data in (("short", {}), ("mid", {"answer": "   "})):
        url = f"/done/{token(started, Action.DONE, goals[key])}"
        assert client.post(url, data=data).status_code == 200
        assert goal_row(started, goals[key]) == ("done", None)
    assert all("answer" not in data for data in completed_events(started))


@pytest.mark.parametrize(
    ("goal", "typed", "says"),
    [
        ("short", "javascript:alert(document.cookie)", "starts with https://"),
        ("short", "https://ana:hunter2@evil.example/", "name or password"),
        ("mid", "x" * 10_000, "This is 10000 characters; the answer takes at most 280."),
    ],
)
def test_an_answer_drip_cannot_keep_is_asked_again_and_nothing_is_recorded(
    started: Store, client: FlaskClient, goal: str, typed: str, says: str
) -> None:
    _, goals = ids(started)
    url = f"/done/{token(started, Action.DONE, goals[goal])}"
    before = snapshot(started)
    again = client.post(url, data={"answer": typed}, headers=IPHONE)
    assert again.status_code == 422 and says in text_of(again)
    html = again.get_data(as_text=True)
    assert 'aria-invalid="true"' in html and 'role="alert"' in html and "Yes, mark it done" in html
    assert "<script" not in html.split("<body>", 1)[1]
    assert snapshot(started) == before


def test_a_hostile_text_answer_is_kept_as_inert_text(started: Store, client: FlaskClient) -> None:
    _, goals = ids(started)
    url = f"/done/{token(started, Action.DONE, goals['mid'])}"
    typed = '<img src=x onerror="alert(1)">\u202egnp.exe\x00\x1b[2J Kara Swisher'
    assert client.post(url, data={"answer": typed}).status_code == 200
    assert goal_row(started, goals["mid"]) == (
        "done",
        '<img src=x onerror="alert(1)">gnp.exe[2J Kara Swisher',
    )


def test_a_goal_asks_in_its_readers_language(started: Store, database_url: str) -> None:
    with started.transaction() as conn:
        conn.execute(
            participant_table.update()
            .where(participant_table.c.email == "ana@example.com")
            .values(language="de")
        )
    app = create_app(settings(database_url), clock=lambda: CLICKED)
    try:
        _, goals = ids(started)
        client = app.test_client()
        url = f"/done/{token(started, Action.DONE, goals['short'])}"
        assert "Die Adresse Ihres LinkedIn-Profils (optional)" in text_of(client.get(url))
        again = client.post(url, data={"answer": "ftp://example.com/ana"})
        assert again.status_code == 422 and "die mit https:// (oder http://) beginnt" in text_of(again)
    finally:
        app.extensions["drip"].database.close()
