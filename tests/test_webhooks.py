"""Webhooks: cohort.toml's [[webhooks]], the outbox written with the change, signed posts to a real
HTTP server on loopback, retries after 500s and time-outs, Slack and Teams shapes, failures shown
to owners, and no event posted twice by two workers (SQLite and PostgreSQL)."""

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from webhook_server import Receiver, running_receiver

from conftest import COHORT_TOML, EMAILS, CohortFactory
from drip.changes import ADMIN, Evidence, answer, bounce, complete, person_by_id, unsubscribe
from drip.cli import main
from drip.core.errors import CohortError
from drip.core.states import EventKind
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.sending import webhooks
from drip.storage import outbox
from drip.storage.outbox import outbox_table
from drip.storage.records import OutboxRow
from drip.storage.store import Store, delivery_table, event_table, participant_table

SECRET = "s3cret-for-the-tests-only-0123456789"
NOW = dt.datetime(2027, 1, 4, 12, 0, tzinfo=dt.UTC)


def hooks_toml(
    url: str, events: str = '["goal.completed", "goal.overdue", "cohort.finished"]', more: str = ""
) -> str:
    return f"""
[[webhooks]]
url = "{url}"
events = {events}
secret = "env:DRIP_TEST_HOOK_SECRET"
{more}"""


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIP_TEST_HOOK_SECRET", SECRET)


@pytest.fixture
def receiver():
    with running_receiver() as running:
        yield running


def _started(store: Store, make_cohort: CohortFactory, extra: str) -> None:
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(extra_toml=extra), [EMAILS]), NOW)


def _ana(store: Store) -> int:
    with store.reading() as conn:
        return conn.execute(
            select(participant_table.c.id).where(participant_table.c.email == "ana@example.com")
        ).scalar_one()


def _outbox(store: Store) -> list[OutboxRow]:
    with store.reading() as conn:
        return [
            OutboxRow.from_row(row) for row in conn.execute(select(outbox_table).order_by(outbox_table.c.id))
        ]


def _verified(request, secret: str = SECRET, event: bool = True) -> dict:
    """Check a post's signature (and, for the JSON format, that its timestamp and id are signed)."""
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-drip-signature"], expected)
    body = request.json
    if event:
        assert request.headers["x-drip-timestamp"] == str(body["sent_at"]), "the timestamp is signed too"
        assert request.headers["x-drip-event"] == body["id"]
    return body


# --- cohort.toml ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('url = "https://x.example/h"\nevents = ["goal.complete"]\nsecret = "env:X"',
         "webhooks[1].events: unknown event 'goal.complete'; did you mean 'goal.completed'?"),
        ('url = "https://x.example/h"\nevents = ["goal.completed"]\nsecret = "hunter2"',
         'webhooks[1].secret: secrets never live in this file: write secret = "env:NAME"'),
        ('url = "http://hooks.example/h"\nevents = ["goal.completed"]\nsecret = "env:X"',
         "webhooks[1].url: 'http://hooks.example/h': events name participants, so they go over https only"),
        ('url = "https://x.example/h"\nevents = ["goal.completed"]\nsecret = "env:X"\nformat = "discord"',
         "webhooks[1].format: format must be one of json, slack, teams, not 'discord'"),
        ('url = "https://x.example/h"\nevent = ["goal.completed"]\nsecret = "env:X"',
         "webhooks[1].event: unknown field 'event'; did you mean 'events'?"),
        ('url = "https://x.example/h\\nX-Evil: 1"\nevents = ["goal.completed"]\nsecret = "env:X"', "webhooks[1].url"),
    ],
)  # fmt: skip
def test_a_webhook_with_a_mistake_is_refused_with_its_line_and_the_fix(
    make_cohort: CohortFactory, entry: str, message: str
) -> None:
    folder = make_cohort(extra_toml=f'\n[[webhooks]]\nurl = "https://ok.example/h"\nevents = ["cohort.finished"]\n'
                                    f'secret = "env:X"\n\n[[webhooks]]\n{entry}\n')  # fmt: skip
    with pytest.raises(CohortError) as caught:
        load_cohort(folder, [EMAILS])
    text = str(caught.value).replace("webhooks[2]", "webhooks[1]")
    assert message in text
    assert f"cohort.toml, line {COHORT_TOML.count(chr(10)) + 7}" in str(caught.value)


def test_a_secret_not_set_where_drip_start_runs_is_a_warning(
    make_cohort: CohortFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRIP_TEST_HOOK_SECRET")
    cohort = load_cohort(make_cohort(extra_toml=hooks_toml("https://hooks.example/x")), [EMAILS])
    assert any("DRIP_TEST_HOOK_SECRET is not set here" in warning for warning in cohort.warnings)
    assert cohort.webhooks[0].secret == "env:DRIP_TEST_HOOK_SECRET"


# --- the outbox ----------------------------------------------------------------------------------


def test_an_event_reaches_the_outbox_with_its_change_or_not_at_all(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _started(store, make_cohort, hooks_toml(receiver.url()))
    ana = _ana(store)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        complete(conn, person_by_id(conn, ana), "short", NOW, ADMIN)
        assert len(_rows_in(conn)) == 1, "written in the change's own transaction"
        raise RuntimeError("the change fails after the event was written")
    assert _outbox(store) == []
    with store.transaction() as conn:
        complete(conn, person_by_id(conn, ana), "short", NOW, ADMIN)
    (row,) = _outbox(store)
    assert (row.type, row.payload["participant"]["email"], row.payload["goal"]["key"]) == (
        "goal.completed", "ana@example.com", "short",
    )  # fmt: skip
    assert row.secret == "env:DRIP_TEST_HOOK_SECRET" and SECRET not in json.dumps(row.payload)
    assert "answer" not in row.payload, "no answer given, none told"


def test_an_answer_given_with_a_goal_done_goes_with_its_event(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _started(store, make_cohort, hooks_toml(receiver.url()))
    answered = dataclasses.replace(ADMIN, via="link", answer="https://www.linkedin.com/in/ana-ruiz")
    with store.transaction() as conn:
        complete(conn, person_by_id(conn, _ana(store)), "short", NOW, answered)
    assert webhooks.deliver_due(store, NOW, "worker-1") == webhooks.Posted(delivered=1)
    event = _verified(receiver.requests[0])
    assert (event["via"], event["answer"]) == ("link", "https://www.linkedin.com/in/ana-ruiz")


def test_a_check_in_answered_and_changed_is_an_event_each_time(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    from test_check_ins import sent_check_in

    _started(store, make_cohort, hooks_toml(receiver.url(), '["check_in.answered"]', 'format = "slack"'))
    delivery = sent_check_in(store)
    with store.transaction() as conn:
        ana = person_by_id(conn, _ana(store))
        answer(conn, ana, "sustain-1", "not_shared", delivery, NOW, Evidence("link"))
        answer(conn, ana, "sustain-1", "shared", delivery, NOW + dt.timedelta(hours=2), Evidence("reply"))
    [first, second] = sorted(_outbox(store), key=lambda row: row.occurred_at)
    assert first.payload == {
        "cohort": {"slug": "test-cohort", "name": "Test cohort"},
        "participant": {"email": "ana@example.com", "name": "Ana Ruiz"},
        "step": "sustain-1", "answer": "not_shared", "via": "link", "label": "Not this month",
    }  # fmt: skip
    assert second.payload["replaced"] == "not_shared" and second.payload["replaced_label"] == "Not this month"
    assert second.payload["via"] == "reply"
    assert webhooks.summary(second) == (
        "Check-in answered",
        "Ana Ruiz answered “Yes, I shared something” to sustain-1 (it was “Not this month”).",
    )
    assert webhooks.deliver_due(store, NOW + dt.timedelta(hours=3), "worker-1") == webhooks.Posted(
        delivered=2
    )
    texts = [_verified(request, event=False)["text"] for request in receiver.requests]
    assert "Check-in answered: Ana Ruiz answered “Not this month” to sustain-1." in texts


def _ana_done(store: Store, make_cohort: CohortFactory, receiver: Receiver) -> None:
    """Start the cohort with a webhook to ``receiver``, and record Ana's first goal done."""
    _started(store, make_cohort, hooks_toml(receiver.url()))
    with store.transaction() as conn:
        complete(conn, person_by_id(conn, _ana(store)), "short", NOW, ADMIN)


def _rows_in(conn) -> list:
    return conn.execute(select(outbox_table.c.id)).all()


def test_posts_are_signed_and_carry_a_stable_id(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _ana_done(store, make_cohort, receiver)
    posted = webhooks.deliver_due(store, NOW, "worker-1")
    assert posted == webhooks.Posted(delivered=1)
    (request,) = receiver.requests
    event = _verified(request)
    assert event["type"] == "goal.completed" and event["participant"]["name"] == "Ana Ruiz"
    assert event["goal"]["title"].startswith("Crawl:") and event["via"] == "admin"
    assert event["id"] == _outbox(store)[0].event_id
    assert webhooks.deliver_due(store, NOW + dt.timedelta(hours=1), "worker-1") == webhooks.Posted()


def test_a_receiver_answering_500_gets_the_same_event_again_later(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _ana_done(store, make_cohort, receiver)
    receiver.answers = [500, 503]
    assert webhooks.deliver_due(store, NOW, "w") == webhooks.Posted(retrying=1)
    assert webhooks.deliver_due(store, NOW + dt.timedelta(seconds=29), "w") == webhooks.Posted(), "not yet"
    assert webhooks.deliver_due(store, NOW + dt.timedelta(seconds=30), "w") == webhooks.Posted(retrying=1)
    assert webhooks.deliver_due(store, NOW + dt.timedelta(seconds=149), "w") == webhooks.Posted()
    assert webhooks.deliver_due(store, NOW + dt.timedelta(seconds=150), "w") == webhooks.Posted(delivered=1)
    ids = {_verified(request)["id"] for request in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1, "every attempt carries the same id"
    assert (_outbox(store)[0].attempts, len(receiver.taken())) == (3, 1)


def test_a_receiver_that_never_takes_it_is_given_up_and_owners_are_told(
    store: Store, make_cohort: CohortFactory, receiver: Receiver, database_url: str, runner: CliRunner
) -> None:
    _ana_done(store, make_cohort, receiver)
    receiver.answers = [500] * webhooks.MAX_ATTEMPTS
    moment = NOW
    for _ in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver_due(store, moment, "w")
        moment += dt.timedelta(days=1)
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
    assert webhooks.deliver_due(store, moment + dt.timedelta(days=30), "w") == webhooks.Posted(), "given up"
    status = runner.invoke(
        main, ["--database-url", database_url, "status", "test-cohort", "--now", moment.isoformat()]
    )
    assert f"webhook http://127.0.0.1:{receiver.port}/hook: 1 given up; last: HTTP 500" in status.output
    as_json = runner.invoke(
        main,
        [
            "--database-url",
            database_url,
            "status",
            "test-cohort",
            "--format",
            "json",
            "--now",
            moment.isoformat(),
        ],
    )
    (hook,) = json.loads(as_json.output)["webhooks"]
    assert (hook["failed"], hook["retrying"]) == (1, 0) and hook["reason"].startswith("HTTP 500")
    digest = runner.invoke(
        main, ["--database-url", database_url, "digest", "test-cohort", "--preview", "--format", "text",
               "--now", moment.isoformat()],
    )  # fmt: skip
    assert f"The webhook to http://127.0.0.1:{receiver.port}/hook: 1 event(s) given up on" in digest.output


def test_a_receiver_that_does_not_answer_costs_one_time_out_a_round(
    store: Store, make_cohort: CohortFactory, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "BATCH", 2)  # more rows than a batch: the round still ends
    _started(store, make_cohort, hooks_toml(receiver.url()))
    with store.transaction() as conn:
        for email in ("ana@example.com", "ben@example.com", "cleo@example.com"):
            person = conn.execute(
                select(participant_table.c.id).where(participant_table.c.email == email)
            ).scalar()
            complete(conn, person_by_id(conn, person), "short", NOW, ADMIN)
    receiver.delay = 1.5
    with httpx.Client(timeout=httpx.Timeout(0.5)) as client:
        posted = webhooks.deliver_due(store, NOW, "w", client)
    assert posted == webhooks.Posted(retrying=1), "one tried and timed out; the other two wait untried"
    rows = _outbox(store)
    assert [row.attempts for row in rows] == [1, 0, 0]
    with store.reading() as conn:
        reasons = conn.execute(select(outbox_table.c.last_error).order_by(outbox_table.c.id)).scalars().all()
    assert reasons[0] == "no answer within 0.5 s" and reasons[1:] == [None, None]
    receiver.delay = 0
    assert webhooks.deliver_due(store, NOW, "w") == webhooks.Posted(delivered=2), "the others go next round"


def test_two_workers_never_post_the_same_event(store: Store, make_cohort: CohortFactory, receiver: Receiver,
                                               database_url: str) -> None:  # fmt: skip
    _started(store, make_cohort, hooks_toml(receiver.url(), '["goal.completed", "goal.overdue"]'))
    with store.transaction() as conn:
        people = conn.execute(select(participant_table.c.id)).scalars().all()
        for pid in people:
            for goal in ("short", "mid", "long"):
                complete(conn, person_by_id(conn, pid), goal, NOW, ADMIN)
    receiver.delay = 0.02
    stores = [Store(database_url, migrate=False) for _ in range(2)]
    results: list[webhooks.Posted] = []
    workers = [
        threading.Thread(target=lambda s=s, n=n: results.append(webhooks.deliver_due(s, NOW, f"worker-{n}")))
        for n, s in enumerate(stores)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    for opened in stores:
        opened.close()
    ids = [request.json["id"] for request in receiver.requests]
    assert len(ids) == len(set(ids)) == len(people) * 3
    assert sum(result.delivered for result in results) == len(ids)


def test_overdue_and_finished_are_noted_once_each(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _started(store, make_cohort, hooks_toml(receiver.url()))
    day_after = dt.datetime(2027, 2, 2, 12, tzinfo=dt.UTC)  # the short deadline was Monday 1 February
    with store.transaction() as conn:
        assert webhooks.note(conn, day_after) == 3
        assert webhooks.note(conn, day_after + dt.timedelta(hours=1)) == 0
        counted = conn.execute(
            select(func.count()).where(event_table.c.kind == EventKind.OVERDUE.value)
        ).scalar()
    assert counted == 3
    rows = _outbox(store)
    assert {row.type for row in rows} == {"goal.overdue"} and rows[0].payload["deadline"] == "2027-02-01"


# --- what a post looks like --------------------------------------------------------------------------


def _row(kind: str, payload: dict, shape: str) -> OutboxRow:
    return OutboxRow(1, "6b1f0e2a-0000-4000-8000-000000000001", 1, 1, kind, "https://hooks.example/x", shape,
                     "env:X", payload, NOW, 0)  # fmt: skip


HOSTILE = {"participant": {"name": "<!channel> *Ana* [x](javascript:alert(1))", "email": "ana@example.com"},
           "goal": {"key": "short", "title": "Crawl: a <b>profile</b>"}, "cohort": {"name": "Q1 & co"},
           "via": "link"}  # fmt: skip


def test_slack_gets_a_readable_message_no_name_can_ping_a_channel() -> None:
    message = json.loads(webhooks.body(_row("goal.completed", HOSTILE, "slack"), 1))
    assert message["text"].startswith("Goal completed: &lt;!channel&gt; *Ana*")
    assert "<!channel>" not in json.dumps(message) and "Q1 &amp; co" in json.dumps(message)
    assert message["blocks"][0]["type"] == "section"


def test_teams_gets_an_adaptive_card_with_markdown_made_inert() -> None:
    message = json.loads(webhooks.body(_row("goal.completed", HOSTILE, "teams"), 1))
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    said = card["body"][1]["text"]
    assert "\\*Ana\\*" in said and "\\[x\\]\\(javascript:alert\\(1\\)\\)" in said


@pytest.mark.parametrize(
    ("url", "shown"),
    [("https://hooks.slack.com/services/T00/B00/XXXXSECRET", "https://hooks.slack.com/services/…"),
     ("https://example.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456", "https://example.webhook.office.com/webhookb2/…"),
     ("https://receiver.example/hook?token=abc", "https://receiver.example/hook/…"),
     ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook")],
)  # fmt: skip
def test_an_endpoint_is_shown_without_the_secret_its_address_may_hold(url: str, shown: str) -> None:
    assert outbox.shown_url(url) == shown


# --- drip run ------------------------------------------------------------------------------------------


def test_drip_run_posts_while_it_sends_and_a_hanging_receiver_holds_up_no_email(
    make_cohort: CohortFactory, database_url: str, receiver: Receiver, runner: CliRunner, smtp_server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    folder = make_cohort(extra_toml=hooks_toml(receiver.url(), more='format = "slack"'))
    env = {"DRIP_EMAILS_DIR": str(folder.parent.parent / "emails"), "DRIP_SMTP_URL": smtp_server.url}
    assert runner.invoke(main, ["--database-url", database_url, "start", str(folder), "--now", NOW.isoformat()],
                         env=env).exit_code == 0  # fmt: skip
    done = runner.invoke(main, ["--database-url", database_url, "participant", "done", "test-cohort",
                                "ana@example.com", "--goal", "short", "--now", "2027-01-12T12:00Z"])  # fmt: skip
    assert done.exit_code == 0, done.output
    monkeypatch.setattr(webhooks, "TOTAL_TIMEOUT", 1.0)
    receiver.delay = 3.0  # longer than the time-out: it never answers in time
    ran = runner.invoke(main, ["--database-url", database_url, "run", "--once", "--now", "2027-01-10T00:00Z",
                               "--until", "2027-01-13T00:00Z", "--no-web"], env=env)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert len(smtp_server.messages) >= 6, "the emails went, whatever the receiver does"
    with Store(database_url, migrate=False) as store:
        (row,) = _outbox(store)
        with store.reading() as conn:
            status, error = conn.execute(select(outbox_table.c.status, outbox_table.c.last_error)).one()
    assert (status, error) == ("pending", "no answer within 1 s") and row.attempts >= 1
    receiver.delay = 0
    again = runner.invoke(main, ["--database-url", database_url, "run", "--once", "--now", "2027-01-13T01:00Z",
                                 "--no-web"], env=env)  # fmt: skip
    assert again.exit_code == 0, again.output
    first, *_, second = receiver.requests
    assert first.headers["x-drip-event"] == second.headers["x-drip-event"], "the same event, tried again"
    message = _verified(second, event=False)
    assert message["text"] == (
        "Goal completed: Ana Ruiz completed “Crawl: your LinkedIn profile and 10 connections” recorded by an owner."
    )


ALL_EVENTS = '["goal.completed", "goal.overdue", "participant.bounced", "participant.unsubscribed", ' \
    '"reply.needs_person", "cohort.finished"]'  # fmt: skip


def test_a_bounce_and_an_unsubscribe_each_become_their_event(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _started(store, make_cohort, hooks_toml(receiver.url(), ALL_EVENTS, 'format = "teams"'))
    with store.transaction() as conn:
        ana = _ana(store)
        bounce(conn, person_by_id(conn, ana), NOW, ADMIN, "550 5.1.1 no such user")
        ben = conn.execute(
            select(participant_table.c.id).where(participant_table.c.email == "ben@example.com")
        )
        unsubscribe(conn, person_by_id(conn, ben.scalar_one()), NOW, Evidence("link"))
    assert [(row.type, row.payload["participant"]["email"]) for row in _outbox(store)] == [
        ("participant.bounced", "ana@example.com"), ("participant.unsubscribed", "ben@example.com"),
    ]  # fmt: skip
    assert _outbox(store)[0].payload["reason"] == "550 5.1.1 no such user"
    assert webhooks.deliver_due(store, NOW, "w") == webhooks.Posted(delivered=2)
    cards = [_verified(request, event=False) for request in receiver.requests]
    texts = [card["attachments"][0]["content"]["body"][1]["text"] for card in cards]
    assert texts == ["Email to ana@example.com bounced: 550 5.1.1 no such user",
                     "Ben Ito unsubscribed from Test cohort."]  # fmt: skip


def test_a_reply_left_to_a_person_is_an_event_and_an_out_of_office_is_not(
    make_cohort: CohortFactory, database_url: str, receiver: Receiver, runner: CliRunner, smtp_server, tmp_path: Path
) -> None:  # fmt: skip
    folder = make_cohort(extra_toml=hooks_toml(receiver.url(), '["reply.needs_person"]'))
    db = ["--database-url", database_url]
    env = {"DRIP_EMAILS_DIR": str(folder.parent.parent / "emails"), "DRIP_SMTP_URL": smtp_server.url}
    assert runner.invoke(main, [*db, "start", str(folder), "--now", NOW.isoformat()], env=env).exit_code == 0
    sent = runner.invoke(main, [*db, "run", "--once", "--now", "2027-01-11T15:00Z", "--no-web"], env=env)
    assert sent.exit_code == 0, sent.output
    welcome = next(r for r in smtp_server.messages if r.recipients == ["ana@example.com"]).message
    head = (f"From: Ana Ruiz <ana@example.com>\r\nTo: {welcome['Reply-To']}\r\nSubject: Re: {welcome['Subject']}\r\n"
            f"In-Reply-To: {welcome['Message-ID']}\r\nDate: Tue, 12 Jan 2027 09:00:00 -0500\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n")  # fmt: skip
    question = head + "Message-ID: <q.1@example.com>\r\n\r\nCan my assistant set up the profile for me?\r\n"
    away = (
        head + "Message-ID: <q.2@example.com>\r\nAuto-Submitted: auto-replied\r\n\r\nI am out of office.\r\n"
    )
    for name, text in (("question.eml", question), ("away.eml", away)):
        (tmp_path / name).write_text(text, newline="")
        ingested = runner.invoke(
            main, [*db, "ingest", str(tmp_path / name), "--now", "2027-01-12T15:00Z"], env=env
        )
        assert ingested.exit_code == 0, ingested.output
    with Store(database_url, migrate=False) as store:
        (row,) = _outbox(store)
    assert row.type == "reply.needs_person" and row.payload["participant"]["email"] == "ana@example.com"
    assert row.payload["subject"].startswith("Re: ")


def test_a_cohort_whose_email_has_all_gone_is_finished_once(
    store: Store, make_cohort: CohortFactory, receiver: Receiver
) -> None:
    _started(store, make_cohort, hooks_toml(receiver.url(), '["cohort.finished"]'))
    with store.transaction() as conn:
        ana = _ana(store)
        for goal in ("short", "mid", "long"):
            complete(conn, person_by_id(conn, ana), goal, NOW, ADMIN)
        assert webhooks.note(conn, NOW) == 0, "email is still to go"
        conn.execute(
            delivery_table.update()
            .where(delivery_table.c.status.in_(["scheduled", "claimed", "sending"]))
            .values(status="sent", sent_at=NOW)
        )
        later = NOW + dt.timedelta(days=400)
        assert webhooks.note(conn, later) == 1 + 6, "finished, and Ben's and Cleo's goals overdue"
        assert webhooks.note(conn, later + dt.timedelta(days=1)) == 0
    (row,) = [row for row in _outbox(store) if row.type == "cohort.finished"]
    assert (row.payload["participants"], row.payload["completed_all"]) == (3, 1)
    assert row.payload["goals"]["short"] == 1
