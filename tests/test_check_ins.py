"""Check-ins that count: a check-in email offers its answers as signed links; GET asks, POST records,
one answer per participant and occurrence, replaced by a later one with both kept in the event log.
On SQLite and PostgreSQL."""

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from test_links import IPHONE, settings, text_of

from conftest import EMAILS, CohortFactory, SMTPServer
from drip import changes
from drip.config import load_settings
from drip.core.tokens import Action, answer_object, make_token
from drip.demo.clients import Client, reply
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.owners import digest, progress, texts
from drip.replies.handling import Ingester
from drip.sending.dispatcher import Dispatcher
from drip.sending.transport import open_transport
from drip.storage import keyring
from drip.storage import store as store_module
from drip.storage.keyring import signing_keys
from drip.storage.store import Store, check_in_table, delivery_table, event_table, participant_table
from drip.web.app import create_app

UTC = dt.UTC
ENROLLED = dt.datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
#: when the first check-in went to Ana (a Tuesday morning in New York), and a day later
SENT = dt.datetime(2027, 6, 8, 13, 0, tzinfo=UTC)
CLICKED = SENT + dt.timedelta(days=1)
LINK_END = dt.date(2027, 12, 31)
SCANNER = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)"}


@pytest.fixture
def started(store: Store, make_cohort: CohortFactory) -> Store:
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), ENROLLED)
        keyring.prepare(load_settings(environ={}), conn)
    return store


@pytest.fixture
def client(started: Store, database_url: str) -> Iterator[FlaskClient]:
    clock = [CLICKED]
    app = create_app(settings(database_url), clock=lambda: clock[0])
    test_client = app.test_client()
    test_client.clock = clock  # type: ignore[attr-defined]
    yield test_client
    app.extensions["drip"].database.close()


def sent_check_in(
    db: Store, step: str = "sustain-1", email: str = "ana@example.com", at: dt.datetime = SENT
) -> int:
    """Mark one participant's check-in email sent at ``at``, as the dispatcher would; return its id."""
    with db.transaction() as conn:
        person = conn.execute(
            select(participant_table.c.id).where(participant_table.c.email == email)
        ).scalar_one()
        delivery = conn.execute(
            select(delivery_table.c.id).where(
                delivery_table.c.participant_id == person, delivery_table.c.step == step
            )
        ).scalar_one()
        conn.execute(
            update(delivery_table)
            .where(delivery_table.c.id == delivery)
            .values(status="sent", sent_at=at, message_id=f"<drip.{delivery}.test@example.com>")
        )
    return delivery


def answer_link(db: Store, delivery: int, choice: int) -> str:
    with db.reading() as conn:
        keys = signing_keys(load_settings(environ={}), conn)
    return f"/answer/{make_token(keys, Action.ANSWER, answer_object(delivery, choice), LINK_END)}"


def rows(db: Store) -> tuple[list, list]:
    with db.reading() as conn:
        answers = conn.execute(
            select(check_in_table.c.step, check_in_table.c.answer, check_in_table.c.via)
        ).all()
        events = conn.execute(
            select(event_table.c.data).where(event_table.c.kind == "answered").order_by(event_table.c.id)
        ).scalars()
        return [tuple(row) for row in answers], list(events)


def test_an_answer_is_asked_on_get_recorded_on_post_and_replaced_later(
    started: Store, client: FlaskClient
) -> None:
    delivery = sent_check_in(started)
    shared, not_shared = answer_link(started, delivery, 0), answer_link(started, delivery, 1)

    page = client.get(shared, headers=IPHONE)
    words = text_of(page)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Ana, is this your answer?" in words and "“Yes, I shared something”" in words
    assert "Your answer to the check-in email of Tuesday 8 June." in words
    assert '<form method="post">' in page.get_data(as_text=True) and "Yes, that is my answer" in words
    assert client.head(shared).status_code == 200
    assert rows(started) == ([], [])  # a GET or HEAD records nothing

    thanks = client.post(shared, headers=IPHONE, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert thanks.status_code == 200
    assert "Thank you, Ana" in text_of(thanks) and "“Yes, I shared something” is recorded." in text_of(thanks)
    assert rows(started)[0] == [("sustain-1", "shared", "link")]

    again = client.post(shared)
    assert "Already recorded" in text_of(again) and "You answered “Yes, I shared something”" in text_of(again)
    assert len(rows(started)[1]) == 1  # the same answer twice is one answer

    client.clock[0] = CLICKED + dt.timedelta(days=2)  # type: ignore[attr-defined]
    change = text_of(client.get(not_shared))
    assert "Ana, change your answer?" in change and "Change it to “Not this month”?" in change
    assert "You answered “Yes, I shared something” on Wednesday 9 June." in change
    assert "“Not this month” is recorded." in text_of(client.post(not_shared, headers=IPHONE))

    answers, events = rows(started)
    assert answers == [("sustain-1", "not_shared", "link")]  # one answer per occurrence: the latest
    assert [(e["answer"], e.get("replaced")) for e in events] == [("shared", None), ("not_shared", "shared")]
    assert events[0]["ip"] == "198.51.100.7" and events[0]["user_agent"] == IPHONE["User-Agent"]


def test_a_scanner_opening_every_link_records_nothing(started: Store, client: FlaskClient) -> None:
    delivery = sent_check_in(started)
    for choice in (0, 1):
        link = answer_link(started, delivery, choice)
        assert client.get(link, headers=SCANNER).status_code == 200
        assert client.head(link, headers=SCANNER).status_code == 200
    assert rows(started) == ([], [])


def test_answers_are_kept_per_occurrence_and_per_person(started: Store, client: FlaskClient) -> None:
    first, second = sent_check_in(started, "sustain-1"), sent_check_in(started, "sustain-2")
    bens = sent_check_in(started, "sustain-1", "ben@example.com")
    client.post(answer_link(started, first, 1))
    client.post(answer_link(started, second, 0))
    client.post(answer_link(started, bens, 1))
    assert sorted(rows(started)[0]) == [
        ("sustain-1", "not_shared", "link"),
        ("sustain-1", "not_shared", "link"),
        ("sustain-2", "shared", "link"),
    ]


@pytest.mark.parametrize(
    ("how", "status", "says"),
    [
        ("unsent", 410, "no longer running"),  # a preview's or proof's link: no email of drip's went out
        ("no-such-answer", 410, "no longer asked"),
        ("done-token", 400, "for something else"),
        ("tampered", 400, "not one drip sent"),
    ],
)
def test_links_that_cannot_answer_say_why_and_record_nothing(
    started: Store, client: FlaskClient, how: str, status: int, says: str
) -> None:
    delivery = sent_check_in(started)
    link = {
        "unsent": answer_link(started, 0, 0),
        "no-such-answer": answer_link(started, delivery, 5),
        "tampered": answer_link(started, delivery, 0)[:-3] + "aaa",
    }.get(how)
    if how == "done-token":
        with started.reading() as conn:
            keys = signing_keys(load_settings(environ={}), conn)
        link = f"/answer/{make_token(keys, Action.DONE, answer_object(delivery, 0), LINK_END)}"
    assert link is not None
    for response in (client.get(link), client.post(link)):
        assert response.status_code == status and says in text_of(response)
    assert rows(started) == ([], [])


def test_the_page_speaks_the_participants_language(
    store: Store, make_cohort: CohortFactory, database_url: str
) -> None:
    roster = "email,name,timezone,language\nkai@example.com,Kai Bauer,Europe/Berlin,de\n"
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(roster=roster), [EMAILS]), ENROLLED)
        keyring.prepare(load_settings(environ={}), conn)
    delivery = sent_check_in(store, email="kai@example.com")
    app = create_app(settings(database_url), clock=lambda: CLICKED)
    try:
        page = app.test_client().get(answer_link(store, delivery, 1))
    finally:
        app.extensions["drip"].database.close()
    words = text_of(page)
    assert "Kai, ist das Ihre Antwort?" in words and "Ja, das ist meine Antwort" in words
    assert "Diesen Monat nicht" in words and 'lang="de"' in page.get_data(as_text=True)


def answer_as(db: Store, client: FlaskClient, step: str, email: str, choice: int, at: dt.datetime) -> None:
    """One participant taps one answer of one check-in, at ``at``."""
    delivery = sent_check_in(db, step, email)
    client.clock[0] = at  # type: ignore[attr-defined]
    assert client.post(answer_link(db, delivery, choice)).status_code == 200


def test_status_counts_each_check_in_sent_by_answer(started: Store, client: FlaskClient) -> None:
    answer_as(started, client, "sustain-1", "ana@example.com", 0, CLICKED)
    answer_as(started, client, "sustain-1", "ben@example.com", 1, CLICKED)
    sent_check_in(started, "sustain-1", "cleo@example.com")  # went out, not answered
    answer_as(started, client, "sustain-2", "ana@example.com", 0, CLICKED + dt.timedelta(days=30))

    [figures] = texts.cohort_status(started, "test-cohort", CLICKED + dt.timedelta(days=31))
    assert figures["sustain"] == {
        "sustain-1": {"shared": 1, "not_shared": 1, "no_answer": 1},
        "sustain-2": {"shared": 1, "not_shared": 0, "no_answer": 0},
    }
    table = texts.format_status([figures])
    assert (
        "  sustain-1     " + "█" * 7 + "▓" * 7 + "░" * 6 + " 1/3 shared, 1 not_shared, 1 no answer" in table
    )
    assert "  sustain-2     " + "█" * 20 + " 1/1 shared, 0 not_shared\n" in table


def test_two_not_shared_in_a_row_reach_the_digest_of_that_week(started: Store, client: FlaskClient) -> None:
    second = CLICKED + dt.timedelta(days=30)
    answer_as(started, client, "sustain-1", "ana@example.com", 1, CLICKED)
    answer_as(started, client, "sustain-2", "ana@example.com", 1, second)
    answer_as(started, client, "sustain-1", "ben@example.com", 1, CLICKED)
    answer_as(started, client, "sustain-2", "ben@example.com", 0, second)  # shared again: no flag
    answer_as(started, client, "sustain-3", "cleo@example.com", 1, second)  # one alone: no flag

    def week_to(until: dt.datetime) -> digest.Digest:
        with started.reading() as conn:
            found = digest.read_digest(
                conn,
                "test-cohort",
                digest.Week(until - digest.WEEK, until, until),
                until,
                settings("sqlite://"),
            )
        assert found is not None
        return found

    later = week_to(second + dt.timedelta(days=2))
    assert [(a.email, a.occurrences, a.label) for a in later.attention] == [
        ("ana@example.com", ("sustain-1", "sustain-2"), "Not this month")
    ]
    text, html = digest.render_digest(later)
    assert 'Ana Ruiz <ana@example.com> answered "Not this month" to sustain-1 and sustain-2' in text
    assert "Sustained use" in text and "Sustained use" in html
    assert (
        'sustain-1 (8 Jun 2027): 0 of 2 "Yes, I shared something" (0%), 2 "Not this month", 0 no answer yet'
        in text
    )
    assert (
        'sustain-2 (8 Jun 2027): 1 of 2 "Yes, I shared something" (50%), 1 "Not this month", 0 no answer yet'
        in text
    )
    assert week_to(CLICKED + dt.timedelta(days=2)).attention == []  # the week of the first answer: one only


# --- answers by reply ---------------------------------------------------------------------------


@pytest.fixture
def check_in_sent(
    store: Store, make_cohort: CohortFactory, smtp_server: SMTPServer
) -> tuple[Store, EmailMessage]:
    """The cohort, with Ana's first check-in sent over SMTP: the email her reply quotes."""
    with store.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), ENROLLED)
        keyring.prepare(load_settings(environ={}), conn)
        due = conn.execute(
            select(delivery_table.c.due_at)
            .join(participant_table, participant_table.c.id == delivery_table.c.participant_id)
            .where(participant_table.c.email == "ana@example.com", delivery_table.c.step == "sustain-1")
        ).scalar_one()
    # Everything due before is too stale by then: only the check-ins due at that moment go.
    Dispatcher(store, settings("sqlite://"), lambda: open_transport(smtp_server.url)).run_until_idle(due)
    [sent] = [
        m.message
        for m in smtp_server.messages
        if m.recipients[0] == "ana@example.com" and m.message["X-Drip-Step"] == "sustain-1"
    ]
    return store, sent


ANA = "Ana Ruiz <ana@example.com>"


@pytest.mark.parametrize(
    ("client", "words", "recorded"),
    [
        (Client.GMAIL, "Yes, I posted twice this month: our Q2 numbers and a customer story.", "shared"),
        (Client.IPHONE, "Yep! Shared an article with my team and commented on two posts.", "shared"),
        (Client.OUTLOOK, "Not this month, sorry. The quarter close took every evening.", "not_shared"),
        (Client.GMAIL, "No, I haven't posted anything.", "not_shared"),
        (Client.IPHONE, "Ja, zweimal gepostet.", "shared"),
        (Client.OUTLOOK, "Non, pas ce mois-ci.", "not_shared"),
        (Client.GMAIL, "Does a post on our intranet count?", None),
        (Client.OUTLOOK, "Yes and no: I drafted one but didn't publish it.", None),
        (Client.IPHONE, "I'll post something next week, promise.", None),
        (Client.GMAIL, "", None),  # nothing but the quoted check-in, labels and all
    ],
)
def test_a_reply_to_a_check_in_is_its_answer_when_plain_else_it_reaches_a_person(
    check_in_sent: tuple[Store, EmailMessage], client: Client, words: str, recorded: str | None
) -> None:
    db, sent = check_in_sent
    forwarded: list = []
    ingester = Ingester(db, settings("sqlite://"), forwarded.append)
    message = reply(sent, ANA, words, client, CLICKED)
    assert ingester.ingest(message, CLICKED)
    answers, events = rows(db)
    if recorded is None:
        assert answers == [] and events == []
        [kept] = forwarded
        assert kept.to == "owner@example.com" and b"drip recorded nothing from it" in kept.data
        return
    assert answers == [("sustain-1", recorded, "reply")] and forwarded == []
    [event] = events
    assert event["via"] == "reply" and event["sender"] == "ana@example.com"
    assert event["rule"].startswith("a reply from the participant; ")
    assert event["excerpt"].startswith(words[:20]) and "Not this month" not in event["excerpt"].replace(
        words, ""
    )


def test_a_reply_answers_only_for_its_participant_and_replaces_a_tapped_answer(
    check_in_sent: tuple[Store, EmailMessage],
) -> None:
    db, sent = check_in_sent
    forwarded: list = []
    ingester = Ingester(db, settings("sqlite://"), forwarded.append)
    stranger = reply(sent, "Mallory <mallory@elsewhere.example>", "Yes, posted twice", Client.GMAIL, CLICKED)
    assert ingester.ingest(stranger, CLICKED) and rows(db) == ([], [])
    assert len(forwarded) == 1, "a stranger's yes is for a person to read"

    with db.reading() as conn:
        delivery = conn.execute(
            select(delivery_table.c.id).where(delivery_table.c.message_id == sent["Message-ID"])
        ).scalar_one()
    with db.transaction() as conn:
        person = changes.person_by_id(
            conn,
            conn.execute(
                select(participant_table.c.id).where(participant_table.c.email == "ana@example.com")
            ).scalar_one(),
        )
        assert person is not None
        changes.answer(conn, person, "sustain-1", "shared", delivery, CLICKED, changes.Evidence("link"))
    later = reply(sent, ANA, "No, not this month after all.", Client.OUTLOOK, CLICKED + dt.timedelta(hours=2))
    assert ingester.ingest(later, CLICKED + dt.timedelta(hours=2))
    answers, events = rows(db)
    assert answers == [("sustain-1", "not_shared", "reply")]
    assert [(e["answer"], e.get("replaced"), e["via"]) for e in events] == [
        ("shared", None, "link"),
        ("not_shared", "shared", "reply"),
    ]


def test_the_export_has_a_column_per_check_in_sent(started: Store, client: FlaskClient) -> None:
    answer_as(started, client, "sustain-1", "ana@example.com", 0, CLICKED)
    answer_as(started, client, "sustain-2", "ana@example.com", 1, CLICKED + dt.timedelta(days=30))
    sent_check_in(started, "sustain-1", "ben@example.com")  # went out, not answered
    with started.reading() as conn:
        cohort = store_module.find_cohort(conn, "test-cohort")
        assert cohort is not None
        found = progress.progress_of(conn, cohort, CLICKED + dt.timedelta(days=31))
    columns = texts.export_columns([g.key for g in found.goals], [c.key for c in found.check_ins.occurrences])
    assert columns[-3:] == ["long_answer", "sustain-1", "sustain-2"]
    sent = texts.check_ins_sent(started, "test-cohort", ["sustain-1", "sustain-2"])
    lines = texts.write_csv(texts.export_rows(found, sent), columns).splitlines()
    assert lines[1].startswith("ana@example.com,") and lines[1].endswith(",shared,not_shared")
    assert lines[2].startswith("ben@example.com,") and lines[2].endswith(",no_answer,"), "sent, not sent"
    assert lines[3].startswith("cleo@example.com,") and lines[3].endswith(",,"), "neither went to her"


def test_a_check_in_records_only_the_answer_its_link_signs(started: Store, client: FlaskClient) -> None:
    """Whatever a forged form carries (markup, a script address, 10 KB), the answer is the signed key."""
    delivery = sent_check_in(started)
    hostile = {"answer": "<script>alert(1)</script>", "choice": "javascript:alert(1)", "x": "A" * 10_000}
    assert client.post(answer_link(started, delivery, 1), data=hostile).status_code == 200
    answers, [event] = rows(started)
    assert answers == [("sustain-1", "not_shared", "link")]
    assert "<script" not in repr(event) and "javascript:" not in repr(event) and len(repr(event)) < 2_000


def test_the_catchers_link_check_names_the_check_in_and_the_answer(started: Store) -> None:
    from drip.web.linkcheck import Link, check_links

    delivery = sent_check_in(started)
    token = answer_link(started, delivery, 1).rsplit("/", 1)[1]
    link = Link(f"https://drip.example.com/answer/{token}", token=token, action=Action.ANSWER)
    with started.reading() as conn:
        keys = signing_keys(load_settings(environ={}), conn)
        check_links([link], conn, keys, CLICKED.date())
    assert link.verdict == "valid"
    assert link.detail.startswith("for Ana Ruiz <ana@example.com>, check-in sustain-1, answer not_shared;")


def test_a_removed_participant_leaves_the_counts_and_the_answers(started: Store, client: FlaskClient) -> None:
    answer_as(started, client, "sustain-1", "ana@example.com", 0, CLICKED)
    answer_as(started, client, "sustain-1", "ben@example.com", 1, CLICKED)
    sent_check_in(started, "sustain-1", "cleo@example.com")
    with started.transaction() as conn:
        changes.remove(conn, changes.find_person(conn, "test-cohort", "ben@example.com"), CLICKED)
    [figures] = texts.cohort_status(started, "test-cohort", CLICKED)
    assert figures["sustain"] == {"sustain-1": {"shared": 1, "not_shared": 0, "no_answer": 1}}
    with started.reading() as conn:
        cohort = store_module.find_cohort(conn, "test-cohort")
        assert cohort is not None
        found = progress.progress_of(conn, cohort, CLICKED)
    assert [a.email for a in found.check_ins.answers] == ["ana@example.com"]
