"""Dispatch against a real SMTP server on loopback: every outcome a relay can give."""

import dataclasses
import datetime as dt
import re

import pytest
from sqlalchemy import event, select, update

from conftest import EMAILS, CohortFactory, SMTPServer
from drip import changes
from drip.config import load_settings
from drip.core.states import CohortStatus
from drip.core.tokens import message_tag
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.sending import claims
from drip.sending.dispatcher import Dispatcher, RelayPaused
from drip.sending.transport import TokenBucket, open_transport
from drip.storage.leases import Lease
from drip.storage.store import Store, delivery_table, event_table, goal_table, participant_table

UTC = dt.UTC
WELCOMES_DUE = dt.datetime(2027, 1, 11, 15, 0, tzinfo=UTC)  # after 09:00 in New York, London and Tokyo
BEN = "ben@example.com"


@pytest.fixture
def started(store: Store, make_cohort: CohortFactory, now: dt.datetime) -> Store:
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), now)
    return store


def dispatcher(db: Store, url: str, **settings) -> Dispatcher:
    base = load_settings(environ={}, options={"base_url": "https://drip.example.com"})
    return Dispatcher(db, dataclasses.replace(base, smtp_url=url, **settings), lambda: open_transport(url))


def statuses(db: Store, step: str = "welcome") -> dict[str, tuple]:
    query = (
        select(
            participant_table.c.email,
            delivery_table.c.status,
            delivery_table.c.last_error,
            delivery_table.c.attempts,
        )
        .join(participant_table)
        .where(delivery_table.c.step == step)
    )
    with db.reading() as conn:
        return {row.email: tuple(row)[1:] for row in conn.execute(query)}


def test_success(started: Store, relay: SMTPServer) -> None:
    worker = dispatcher(started, relay.url)
    tally = worker.run_until_idle(WELCOMES_DUE)
    assert (tally.sent, tally.failed, tally.deferred) == (3, 0, 0)
    assert sorted(m.recipients[0] for m in relay.messages) == [
        "ana@example.com",
        BEN,
        "cleo@example.com",
    ]
    assert {s[0] for s in statuses(started).values()} == {"sent"}
    ids = {str(m.message["Message-ID"]) for m in relay.messages}
    tags = [re.fullmatch(r"<drip\.(\d+)\.([a-z2-7]{16})@example\.com>", i) for i in ids]
    assert len(ids) == 3 and all(t and t[2] == message_tag(worker.keys, worker.instance, t[1]) for t in tags)
    with started.reading() as conn:
        stored = set(
            conn.execute(
                select(delivery_table.c.message_id).where(delivery_table.c.status == "sent")
            ).scalars()
        )
        events = conn.execute(
            select(event_table.c.data, event_table.c.at).where(event_table.c.kind == "sent")
        ).all()
    assert stored == ids
    assert {e.data["message_id"] for e in events} == ids  # one "sent" event each, written with the row
    assert all(e.at == WELCOMES_DUE for e in events)
    assert worker.run_until_idle(WELCOMES_DUE).sent == 0  # nothing twice


def test_a_451_is_retried_later_and_then_sent(started: Store, relay: SMTPServer) -> None:
    relay.handler.rcpt_replies[BEN] = ["451 4.7.1 Greylisted, try again later"]
    worker = dispatcher(started, relay.url)
    tally = worker.run_until_idle(WELCOMES_DUE)
    assert (tally.sent, tally.deferred) == (2, 1)
    status, error, attempts = statuses(started)[BEN]
    assert status == "scheduled" and "451 4.7.1 Greylisted" in error and attempts == 1
    assert worker.run_until_idle(WELCOMES_DUE).sent == 0  # not before its retry time
    assert worker.run_until_idle(WELCOMES_DUE + dt.timedelta(hours=3)).sent == 1
    assert statuses(started)[BEN][0] == "sent"
    sent = [m for m in relay.messages if m.recipients == [BEN]]
    assert len(sent) == 1


def participant_state(db: Store, email: str) -> tuple:
    with db.reading() as conn:
        person = conn.execute(select(participant_table).where(participant_table.c.email == email)).one()
        kinds = conn.execute(
            select(event_table.c.kind).where(event_table.c.participant_id == person.id)
        ).scalars().all()  # fmt: skip
        pending = conn.execute(
            select(delivery_table.c.id).where(
                delivery_table.c.participant_id == person.id, delivery_table.c.status == "scheduled"
            )
        ).all()  # fmt: skip
    return person.status, person.delegate_bounced, kinds, len(pending)


def test_a_550_5_1_1_at_rcpt_fails_that_email_and_bounces_the_address_at_once(
    started: Store, relay: SMTPServer
) -> None:
    relay.handler.rcpt_replies[BEN] = ["550 5.1.1 No such user here"]
    tally = dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE)
    assert (tally.sent, tally.failed) == (2, 1)
    status, error, _ = statuses(started)[BEN]
    assert status == "failed" and "550 5.1.1 No such user here" in error
    state, _, kinds, pending = participant_state(started, BEN)
    assert state == "bounced" and "bounced" in kinds and pending == 0  # nothing more is tried
    with started.reading() as conn:
        [bounced] = conn.execute(select(event_table.c.data).where(event_table.c.kind == "bounced")).scalars()
    assert bounced["via"] == "send" and bounced["rule"] == "refused at RCPT, hard (5.1.1)"
    assert bounced["matched"].startswith("<drip.")


@pytest.mark.parametrize(
    "reply", ["552 5.2.2 Mailbox full", "550 5.7.133 sender not authenticated for group"]
)
def test_a_soft_refusal_at_rcpt_fails_that_email_and_is_counted(
    started: Store, relay: SMTPServer, reply: str
) -> None:
    relay.handler.rcpt_replies[BEN] = [reply]
    assert dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE).failed == 1
    state, _, kinds, pending = participant_state(started, BEN)
    assert state == "active" and kinds.count("soft_bounced") == 1 and pending > 0


def test_a_refused_message_is_not_a_bounce(started: Store, relay: SMTPServer) -> None:
    """A 550 after DATA is about the message (content, size), not the address."""
    relay.handler.data_replies = ["550 5.7.1 Message rejected as spam"]
    worker = dispatcher(started, relay.url, smtp_connections=1)
    assert worker.run_until_idle(WELCOMES_DUE).failed == 1
    assert {participant_state(started, who)[0] for who in ("ana@example.com", BEN, "cleo@example.com")} == {
        "active"
    }


def test_a_delegate_refused_at_rcpt_is_dropped_from_cc(
    store: Store, make_cohort: CohortFactory, now: dt.datetime, relay: SMTPServer
) -> None:
    roster = "email,name,timezone,delegate_email\nana@example.com,Ana Ruiz,America/New_York,pa@example.com\n"
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(roster), [EMAILS]), now)
    relay.handler.rcpt_replies["pa@example.com"] = ["550 5.1.1 <pa@example.com>: User unknown"]
    worker = dispatcher(store, relay.url)
    assert worker.run_until_idle(WELCOMES_DUE).sent == 1
    state, delegate_bounced, kinds, _ = participant_state(store, "ana@example.com")
    assert (state, delegate_bounced, kinds.count("delegate_bounced")) == ("active", "pa@example.com", 1)
    worker.run_until_idle(dt.datetime(2027, 1, 12, 15, 0, tzinfo=UTC))  # the Crawl kickoff
    later = [m for m in relay.messages if m.message["X-Drip-Step"] == "short-kickoff"]
    assert [m.recipients for m in later] == [["ana@example.com"]] and later[0].message["Cc"] is None
    # A new delegate in the roster is copied again.
    with store.transaction() as conn:
        new = roster.replace("pa@example.com", "office@example.com")
        enrol.sync_cohort(conn, load_cohort(make_cohort(new), [EMAILS]), now)
    assert participant_state(store, "ana@example.com")[1] == "pa@example.com"
    worker.run_until_idle(dt.datetime(2027, 1, 25, 15, 0, tzinfo=UTC))  # the policy email
    assert relay.messages[-1].recipients == ["ana@example.com", "office@example.com"]


@pytest.mark.parametrize("where", ["data", "mail"])
def test_a_421_pauses_the_sender_and_charges_no_message(
    started: Store, relay: SMTPServer, where: str
) -> None:
    """421 (or a 4xx to MAIL FROM) is the relay's state: a busy relay must not burn every message's tries."""
    busy = "421 4.3.2 Service shutting down, closing connection"
    if where == "data":
        relay.handler.data_replies = [busy]
    else:
        relay.handler.mail_replies = ["451 4.3.0 Try again later", busy]
    worker = dispatcher(started, relay.url, smtp_connections=1)
    with pytest.raises(RelayPaused, match="4.3"):
        worker.run_until_idle(WELCOMES_DUE)
    assert {(status, attempts) for status, _, attempts in statuses(started).values()} <= {
        ("scheduled", 0), ("sent", 0), ("sent", 1),
    }  # fmt: skip
    assert "failed" not in {s[0] for s in statuses(started).values()}
    relay.handler.mail_replies = []
    assert worker.run_until_idle(WELCOMES_DUE).failed == 0
    assert {s[0] for s in statuses(started).values()} == {"sent"}
    assert len({m.recipients[0] for m in relay.messages}) == 3


def test_the_pause_after_a_relay_refusal_doubles_up_to_half_an_hour() -> None:
    from drip.service import relay_pause

    assert [relay_pause(n).total_seconds() // 60 for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_connection_dropped_after_data_is_retried_under_the_same_message_id(
    started: Store, relay: SMTPServer
) -> None:
    relay.handler.drop_after_data = 1  # the server keeps it, the client never hears so
    worker = dispatcher(started, relay.url)
    tally = worker.run_until_idle(WELCOMES_DUE)
    assert tally.deferred == 1
    worker.run_until_idle(WELCOMES_DUE + dt.timedelta(hours=3))
    ids = [str(m.message["Message-ID"]) for m in relay.messages]
    assert len(ids) == 4 and len(set(ids)) == 3  # the one in doubt went twice, as the same message
    assert {s[0] for s in statuses(started).values()} == {"sent"}


def test_a_refused_login_pauses_and_fails_nobody(started: Store, auth_smtp_server: SMTPServer) -> None:
    url = f"smtp://drip:wrong@{auth_smtp_server.host}:{auth_smtp_server.port}"
    with pytest.raises(RelayPaused, match="refused the login: 535"):
        dispatcher(started, url).run_until_idle(WELCOMES_DUE)
    assert {s[0] for s in statuses(started).values()} == {"scheduled"}
    assert {s[2] for s in statuses(started).values()} == {0}  # no attempt counted
    right = f"smtp://drip:right@{auth_smtp_server.host}:{auth_smtp_server.port}"
    assert dispatcher(started, right).run_until_idle(WELCOMES_DUE).sent == 3


def test_stale_email_is_skipped_with_the_reason(started: Store, relay: SMTPServer) -> None:
    late = dt.datetime(2027, 1, 12, 23, 0, tzinfo=UTC)  # every welcome is more than 24 hours old
    tally = dispatcher(started, relay.url).run_until_idle(late)
    assert (tally.skipped, tally.sent) == (3, 3)  # the kickoffs of 12 January are fresh
    status, reason, _ = statuses(started)["ana@example.com"]
    assert status == "skipped" and "hours late" in reason and "too stale" in reason


FIRST_CHECK_IN_DUE = dt.datetime(2027, 5, 5, 14, 0, tzinfo=UTC)  # after 09:00 on 5 May in all three zones


def test_a_monthly_check_in_goes_out_as_its_own_occurrence(started: Store, relay: SMTPServer) -> None:
    dispatcher(started, relay.url).run_until_idle(FIRST_CHECK_IN_DUE)  # what came before is stale by now
    assert {row[:2] for row in statuses(started, "sustain-1").values()} == {("sent", None)}
    sent = [r.message for r in relay.messages if str(r.message["X-Drip-Step"]) == "sustain-1"]
    assert len(sent) == 3
    for message in sent:
        assert str(message["Subject"]) == "What did you share this month?" and message["X-Drip-Goal"] is None
        assert "monthly check-in 1 of 6" in message.get_body(("plain",)).get_content()


def test_a_check_in_the_participant_no_longer_reaches_is_cancelled_when_due(
    started: Store, relay: SMTPServer
) -> None:
    from drip.storage.store import cohort_table

    # The cohort's end moved before the first check-in, and no drip start has re-planned it yet.
    with started.transaction() as conn:
        settings = conn.execute(select(cohort_table.c.settings)).scalar_one()
        conn.execute(update(cohort_table).values(settings={**settings, "end": "2027-05-01"}))
    dispatcher(started, relay.url).run_until_idle(FIRST_CHECK_IN_DUE)
    assert set(statuses(started, "sustain-1").values()) == {
        ("cancelled", "the step is no longer in the program", 0)
    }
    assert not [r for r in relay.messages if str(r.message["X-Drip-Step"]) == "sustain-1"]


def test_reminders_of_a_done_goal_are_cancelled(started: Store, relay: SMTPServer) -> None:
    with started.transaction() as conn:
        conn.execute(update(goal_table).where(goal_table.c.goal == "short").values(status="done", via="link"))
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.due_at < dt.datetime(2027, 1, 29, tzinfo=UTC))
            .values(status="sent", sent_at=delivery_table.c.due_at)
        )
    reminder_time = dt.datetime(2027, 1, 29, 15, 0, tzinfo=UTC)
    tally = dispatcher(started, relay.url).run_until_idle(reminder_time)
    assert tally.cancelled == 3 and tally.sent == 0
    status, reason, _ = statuses(started, "short-reminder")["ana@example.com"]
    assert status == "cancelled" and reason == "the goal short is done"


def test_an_unsubscribe_between_claim_and_send_is_honoured(
    started: Store, relay: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The click lands after a worker claimed Ben's welcome and before it went: nothing goes to Ben."""
    prepare = Dispatcher._prepare

    def unsubscribe_then_prepare(self, rows, now, tally, composer=None):
        with started.transaction() as conn:  # as the link page's transaction would, after the claim
            conn.execute(
                update(participant_table)
                .where(participant_table.c.email == BEN)
                .values(status="unsubscribed")
            )
        return prepare(self, rows, now, tally, composer)

    monkeypatch.setattr(Dispatcher, "_prepare", unsubscribe_then_prepare)
    tally = dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE)
    assert BEN not in {m.recipients[0] for m in relay.messages} and tally.sent == len(relay.messages) >= 1
    status, reason, _ = statuses(started)[BEN]
    assert (status, reason) == ("cancelled", "the participant is unsubscribed")


def test_paused_participants_and_cohorts_wait(started: Store, relay: SMTPServer) -> None:

    with started.transaction() as conn:
        conn.execute(
            update(participant_table).where(participant_table.c.email == BEN).values(status="paused")
        )
        changes.set_cohort_status(conn, "test-cohort", CohortStatus.ACTIVE, WELCOMES_DUE)
    assert dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE).sent == 2
    assert statuses(started)[BEN][0] == "scheduled"
    with started.transaction() as conn:
        changes.set_cohort_status(conn, "test-cohort", CohortStatus.PAUSED, WELCOMES_DUE)
        conn.execute(update(participant_table).values(status="active"))
    assert dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE).sent == 0


def test_the_rate_limit_holds(started: Store, relay: SMTPServer) -> None:
    import time

    worker = dispatcher(started, relay.url, smtp_rate=2.0)  # two a second
    began = time.monotonic()
    assert worker.run_until_idle(WELCOMES_DUE).sent == 3
    assert time.monotonic() - began >= 0.95  # the first at once, then one every half second


def test_token_bucket_never_bursts() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(rate=0.5, clock=lambda: clock[0], sleep=sleep)  # 30 a minute
    times = []
    for _ in range(31):
        bucket.acquire()
        times.append(clock[0])
    assert times[0] == 0.0
    for start in range(len(times)):
        in_window = [t for t in times if times[start] <= t < times[start] + 60]
        assert len(in_window) <= 30
    assert times[-1] == pytest.approx(60.0)


def test_a_database_failure_in_a_sending_thread_stops_cleanly(
    started: Store, relay: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drip.sending import claims
    from drip.sending.dispatcher import DispatchError

    def broken(self, row, message_id, at, note=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(claims.SentRecorder, "record", broken)
    with pytest.raises(DispatchError, match="disk full"):
        dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE)
    states = {s[0] for s in statuses(started).values()}
    assert states <= {"sending", "scheduled"} and "sending" in states  # never lost, never marked failed


def test_a_slow_relay_keeps_its_claims_alive(started: Store, relay: SMTPServer) -> None:
    """Leases are renewed while a worker sends: a second worker never takes over a live one's email."""
    import threading

    relay.handler.delay = 0.8  # three emails take longer than a lease
    slow = dispatcher(started, relay.url, lease_seconds=1)
    first = threading.Thread(target=slow.run_until_idle, args=(WELCOMES_DUE,))
    first.start()
    import time

    time.sleep(1.6)  # the lease taken at the start would have run out by now
    assert dispatcher(started, relay.url, lease_seconds=1).run_until_idle(WELCOMES_DUE).sent == 0
    first.join(20)
    ids = [str(m.message["Message-ID"]) for m in relay.messages]
    assert len(ids) == len(set(ids)) == 3
    assert {s[0] for s in statuses(started).values()} == {"sent"}


def test_a_retry_goes_only_to_whom_did_not_get_it(
    store: Store, make_cohort: CohortFactory, now: dt.datetime, relay: SMTPServer
) -> None:
    roster = "email,name,timezone,delegate_email\nana@example.com,Ana Ruiz,America/New_York,pa@example.com\n"
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(roster), [EMAILS]), now)
    relay.handler.rcpt_replies["ana@example.com"] = ["451 4.3.0 Mailbox busy"]
    worker = dispatcher(store, relay.url)
    assert worker.run_until_idle(WELCOMES_DUE).deferred == 1
    assert worker.run_until_idle(WELCOMES_DUE + dt.timedelta(hours=3)).sent == 1
    got = [m.recipients for m in relay.messages]
    assert got == [["pa@example.com"], ["ana@example.com"]]  # the delegate once, the executive on retry
    assert len({str(m.message["Message-ID"]) for m in relay.messages}) == 1


def test_a_broken_program_holds_its_own_cohort_only(
    started: Store, make_cohort: CohortFactory, now: dt.datetime, relay: SMTPServer, tmp_path
) -> None:
    from drip.storage.store import cohort_table

    with started.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(name="second"), [EMAILS]), now)
    broken = tmp_path / "broken-program"
    broken.mkdir()
    (broken / "program.toml").write_text("name = [unfinished", encoding="utf-8")
    with started.transaction() as conn:
        conn.execute(
            update(cohort_table).where(cohort_table.c.slug == "second").values(program_path=str(broken))
        )
    tally = dispatcher(started, relay.url).run_until_idle(WELCOMES_DUE)
    assert tally.sent == 3 and any("cohort 'second' held" in p for p in tally.problems)
    query = (
        select(delivery_table.c.status, delivery_table.c.lease_owner)
        .join(cohort_table)
        .where(cohort_table.c.slug == "second", delivery_table.c.step == "welcome")
    )
    with started.reading() as conn:
        assert set(conn.execute(query).all()) == {("scheduled", None)}  # released, not failed, not lost


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("554 5.7.1 <ben@example.com>: Relay access denied", "paused"),
        ("550 5.7.1 Recipient address rejected: not authorized", "failed"),
        ("550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain", "paused"),
    ],
)
def test_relaying_refused_pauses_but_a_policy_refusal_fails_one(
    started: Store, relay: SMTPServer, reply: str, outcome: str
) -> None:
    relay.handler.rcpt_replies[BEN] = [reply]
    worker = dispatcher(started, relay.url, smtp_connections=1)
    if outcome == "paused":
        with pytest.raises(RelayPaused, match="5.7"):
            worker.run_until_idle(WELCOMES_DUE)
        assert "failed" not in {s[0] for s in statuses(started).values()}
        assert statuses(started)[BEN][0] == "scheduled"
    else:
        assert worker.run_until_idle(WELCOMES_DUE).failed == 1
        assert statuses(started)[BEN][0] == "failed"


def test_a_mistake_in_drip_crashes_instead_of_failing_the_email(
    started: Store, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only what an email's own content causes (a template error, a value unfit for a header) fails
    # that email; a bug must surface, and the claims go back unsent once their lease ends.
    from drip.sending import composer as module

    def buggy(*args, **kwargs):
        return {}["no such key"]

    monkeypatch.setattr(module, "build", buggy)
    with pytest.raises(KeyError):
        dispatcher(started, smtp_server.url).run_until_idle(WELCOMES_DUE)
    assert {s[0] for s in statuses(started).values()} == {"sending"}, "none marked failed"
    assert smtp_server.messages == []


def test_a_claim_takes_abandoned_email_first_then_the_queue_in_order(started: Store) -> None:
    """Email whose worker vanished goes first, with its Message-ID; then the oldest scheduled email.
    On SQLite the scheduled claim walks the index and stops at the batch size: no sort of the queue."""
    lease = Lease.of_seconds(600)
    with started.reading() as conn:
        welcomes = conn.execute(
            select(delivery_table.c.id, delivery_table.c.due_at)
            .where(delivery_table.c.step == "welcome")
            .order_by(delivery_table.c.due_at, delivery_table.c.id)
        ).all()
    last = welcomes[-1].id
    with started.transaction() as conn:
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.id == last)
            .values(status="sending", lease_owner="elsewhere:1:ab", message_id="<kept@example.com>",
                    attempts=1, message_key="0ld0ld00", lease_expires_at=WELCOMES_DUE - dt.timedelta(minutes=1))
        )  # fmt: skip
    statements: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append((statement, parameters))

    event.listen(started.engine, "before_cursor_execute", seen)
    try:
        with started.transaction() as conn:
            first = claims.claim_due(conn, WELCOMES_DUE, WELCOMES_DUE, "here:2:cd", 1, lease, "n3wn3w00")
            after = claims.claim_due(conn, WELCOMES_DUE, WELCOMES_DUE, "here:2:cd", 2, lease, "n3wn3w00")
    finally:
        event.remove(started.engine, "before_cursor_execute", seen)
    # Taken over, the attempt goes on under its own id and key; a new claim is an attempt of its own.
    assert [(row.id, row.message_id, row.message_key, row.attempts) for row in first] == [
        (last, "<kept@example.com>", "0ld0ld00", 1)
    ]
    assert [(row.id, row.message_key, row.attempts) for row in after] == [
        (welcomes[0].id, "n3wn3w00", 1),
        (welcomes[1].id, "n3wn3w00", 1),
    ]
    with started.reading() as conn:
        sending = conn.execute(select(delivery_table.c.id).where(delivery_table.c.status == "sending"))
        assert set(sending.scalars()) == {last, welcomes[0].id, welcomes[1].id}
    if started.engine.dialect.name == "sqlite":
        raw = started.engine.raw_connection()
        try:
            plans = [
                " ".join(str(step[3]) for step in raw.cursor().execute(f"EXPLAIN QUERY PLAN {sql}", params))
                for sql, params in statements
                if sql.startswith("UPDATE deliveries")
            ]
        finally:
            raw.close()
        assert plans and all("ix_deliveries_status_due_at" in plan for plan in plans)
        assert "TEMP B-TREE" not in plans[-1]  # the scheduled claim: no sort of everything due
    else:
        # Three rows make a sequential scan cheapest; with it ruled out, the plan shows whether the
        # index gives the claim's whole order (due_at, id), or PostgreSQL must sort what is due.
        sql, params = [item for item in statements if item[0].startswith("UPDATE deliveries")][-1]
        raw = started.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            raw.rollback()
        finally:
            raw.close()
        assert "ix_deliveries_status_due_at_id" in plan and "Sort" not in plan, plan


def test_email_taken_over_after_the_keys_rotated_goes_again_under_the_same_message_id(
    started: Store, relay: SMTPServer
) -> None:
    """A worker claims the welcomes and dies before recording anything; the keys are rotated; the
    worker that takes over sends each under the Message-ID the first one would have used."""
    from drip.storage import keyring

    first = dispatcher(started, relay.url)
    with started.transaction() as conn:
        claimed = claims.claim_due(
            conn, WELCOMES_DUE, WELCOMES_DUE, "elsewhere:1:ab", 10, Lease.of_seconds(1),
            keyring.key_id(first.keys[0]),
        )  # fmt: skip
        keyring.rotate(conn, WELCOMES_DUE)
    would_have = {str(row.id): message_tag(first.keys, first.instance, str(row.id)) for row in claimed}
    assert len(would_have) == 3

    later = WELCOMES_DUE + dt.timedelta(minutes=5)  # the dead worker's lease has run out
    settings = dataclasses.replace(first.settings, smtp_url=relay.url)
    second = Dispatcher(started, settings, lambda: open_transport(relay.url), real_clock=lambda: later)
    assert second.keys[0] != first.keys[0] and first.keys[0] in second.keys
    assert second.run_until_idle(WELCOMES_DUE).sent == 3
    sent = {}
    for message in relay.messages:
        found = re.fullmatch(
            r"<drip\.(\d+)\.([a-z2-7]{16})@example\.com>", str(message.message["Message-ID"])
        )
        assert found
        sent[found[1]] = found[2]
    assert sent == would_have
    # each attempt was counted once: the claim that died, taken over, is the same attempt
    assert {s[0] for s in statuses(started).values()} == {"sent"}
    assert {s[2] for s in statuses(started).values()} == {1}


def test_claims_of_a_process_of_this_machine_that_died_are_taken_over_at_once(
    started: Store, relay: SMTPServer
) -> None:
    """No waiting out the lease: the next worker ends it and takes the email over as abandoned, under
    the Message-ID the dead one would have used, its attempt counted once."""
    import socket
    import subprocess
    import sys

    from drip.storage import keyring

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now
    first = dispatcher(started, relay.url)
    with started.transaction() as conn:
        claimed = claims.claim_due(
            conn, WELCOMES_DUE, WELCOMES_DUE, f"{socket.gethostname()}:{gone.pid}:ab", 10,
            Lease.of_seconds(3600), keyring.key_id(first.keys[0]),
        )  # fmt: skip
    assert len(claimed) == 3
    settings = dataclasses.replace(first.settings, smtp_url=relay.url)
    still = Dispatcher(started, settings, lambda: open_transport(relay.url), real_clock=lambda: WELCOMES_DUE)
    assert still.run_until_idle(WELCOMES_DUE).sent == 3
    ids = {str(m.message["Message-ID"]) for m in relay.messages}
    assert ids == {
        f"<drip.{row.id}.{message_tag(first.keys, first.instance, str(row.id))}@example.com>"
        for row in claimed
    }
    assert [(s[0], s[2]) for s in statuses(started).values()] == [("sent", 1)] * 3
