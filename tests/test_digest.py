"""The owners' weekly digest: when it falls due, what it says, and that each week goes once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import ROOT, CohortFactory, SMTPServer
from drip.cli import main
from drip.config import load_settings
from drip.core.errors import CohortError
from drip.launch.cohort import load_cohort
from drip.owners import digest
from drip.sending.transport import open_transport
from drip.storage.records import DigestTime, StoredCohort
from drip.storage.store import Store, digest_table
from walked import AS_OF, Walked

UTC = dt.UTC
#: Monday 1 February 2027, 08:00 in New York: the walked cohort's digest moment
FEB_1 = dt.datetime(2027, 2, 1, 13, tzinfo=UTC)
#: the next, after the walk's end: its digest has not gone yet
FEB_8 = FEB_1 + dt.timedelta(days=7)


def stored(start: dt.date = dt.date(2027, 1, 11), end: str | None = "2027-03-01", **settings) -> StoredCohort:
    """A cohort as the store returns it (decoded from a row), for the schedule's pure rules."""
    values = {
        "timezone": "America/New_York", "owners": ["owner@example.com"], "end": end, "send_time": "09:00",
        "skip_weekends": False, "sender": ["Comms", "comms@example.com"],
    } | settings  # fmt: skip
    row = SimpleNamespace(
        id=1, slug="c", name="C", program="crawl-walk-run", folder="/nowhere", status="active",
        start_date=start, settings=values, program_path=str(ROOT / "emails" / "crawl-walk-run"),
    )  # fmt: skip
    return StoredCohort.from_row(row)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (dt.datetime(2027, 1, 11, 14, tzinfo=UTC), None),  # the start day itself: nothing to tell yet
        (dt.datetime(2027, 1, 18, 12, 59, tzinfo=UTC), None),  # 07:59 on the first Monday after it
        (dt.datetime(2027, 1, 18, 13, tzinfo=UTC), dt.datetime(2027, 1, 18, 13, tzinfo=UTC)),
        (
            dt.datetime(2027, 1, 24, 23, tzinfo=UTC),
            dt.datetime(2027, 1, 18, 13, tzinfo=UTC),
        ),  # late, same week
        # Daylight saving starts on 14 March in New York: 08:00 is 12:00 UTC from then on.
        (dt.datetime(2027, 3, 15, 11, 59, tzinfo=UTC), dt.datetime(2027, 3, 8, 13, tzinfo=UTC)),
        (dt.datetime(2027, 3, 15, 12, tzinfo=UTC), dt.datetime(2027, 3, 15, 12, tzinfo=UTC)),
        # The end is Wednesday 31 March: the Monday after covers its last days, then no more.
        (dt.datetime(2027, 4, 5, 12, tzinfo=UTC), dt.datetime(2027, 4, 5, 12, tzinfo=UTC)),
        (dt.datetime(2027, 4, 12, 12, tzinfo=UTC), None),
    ],
)
def test_the_digest_falls_due_weekly_in_the_cohort_zone(
    now: dt.datetime, expected: dt.datetime | None
) -> None:
    week = digest.due_week(stored(end="2027-03-31"), now)
    assert (week.until if week else None) == expected
    if week:
        assert week.since == week.until - dt.timedelta(days=7)


def test_an_end_on_the_digest_day_gets_its_digest_that_day() -> None:
    cohort = stored(end="2027-03-01")  # a Monday
    assert digest.due_week(cohort, dt.datetime(2027, 3, 1, 14, tzinfo=UTC)) is not None
    assert digest.due_week(cohort, dt.datetime(2027, 3, 8, 14, tzinfo=UTC)) is None


def test_a_cohort_without_an_end_stops_with_its_program() -> None:
    # crawl-walk-run ends some weeks after the long goal's deadline.
    cohort = stored(end=None, deadlines={"short": "2027-02-01", "mid": "2027-03-01", "long": "2027-04-05"},
                    send_time="09:00", skip_weekends=True)  # fmt: skip
    assert digest.due_week(cohort, dt.datetime(2027, 4, 12, 12, tzinfo=UTC)) is not None
    assert digest.due_week(cohort, dt.datetime(2028, 4, 10, 12, tzinfo=UTC)) is None


def test_other_days_times_none_and_no_owners() -> None:
    friday = stored(digest={"day": "friday", "time": "16:30"})
    assert digest.due_week(friday, dt.datetime(2027, 1, 22, 21, 30, tzinfo=UTC)).until == dt.datetime(
        2027, 1, 22, 21, 30, tzinfo=UTC
    )
    assert digest.due_week(stored(digest=None), dt.datetime(2027, 1, 25, 14, tzinfo=UTC)) is None
    assert digest.due_week(stored(owners=[]), dt.datetime(2027, 1, 25, 14, tzinfo=UTC)) is None


def test_cohort_toml_sets_the_digest(make_cohort: CohortFactory) -> None:
    folder = make_cohort(extra_toml='[digest]\nday = "Friday"\ntime = "16:30"\n')
    assert load_cohort(folder, [ROOT / "emails"]).digest == DigestTime(4, dt.time(16, 30))
    off = make_cohort(extra_toml="digest = false\n", name="off")
    assert load_cohort(off, [ROOT / "emails"]).digest is None
    default = load_cohort(make_cohort(name="plain"), [ROOT / "emails"]).digest
    assert default == DigestTime(0, dt.time(8, 0))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('[digest]\nday = "mondays"\n', "digest day 'mondays' is not a weekday; write one of monday,"),
        ('[digest]\ntime = "8am"\n', "'8am' is not a time of day"),
        ('[digest]\nday = "monday"\nhour = 8\n', "unknown digest field(s) hour"),
        ('digest = "weekly"\n', "write [digest] with day"),
    ],
)
def test_a_bad_digest_setting_is_named(make_cohort: CohortFactory, extra: str, says: str) -> None:
    with pytest.raises(CohortError) as caught:
        load_cohort(make_cohort(extra_toml=extra), [ROOT / "emails"])
    assert "digest" in str(caught.value) and says in str(caught.value)


# --- against the walked campaign -----------------------------------------------------------------


def settings_for(walked: Walked, smtp: SMTPServer | None = None, **more):
    base = load_settings(environ={}, options={"base_url": "https://drip.example.com"})
    return dataclasses.replace(base, database_url=walked.url, smtp_url=smtp.url if smtp else None, **more)


def read_week(walked: Walked, until: dt.datetime, now: dt.datetime = AS_OF) -> digest.Digest:
    with Store(walked.url) as db, db.reading() as conn:
        found = digest.read_digest(conn, "test-cohort", digest.Week(until - digest.WEEK, until, until), now,
                                   settings_for(walked))  # fmt: skip
    assert found is not None
    return found


def test_the_digest_tells_the_week(walked: Walked) -> None:
    opening = read_week(walked, FEB_1 - 2 * digest.WEEK)  # the week to 18 January
    assert [b.email for b in opening.bounces] == ["dora@example.com"]
    assert [(f.email, f.step) for f in opening.failures] == [("dora@example.com", "welcome")]
    assert [(b.name, b.email) for b in opening.delegate_bounces] == [("Ana Ruiz", "pa.ruiz@example.com")]
    text, html = digest.render_digest(opening)
    assert "Ana Ruiz's delegate <pa.ruiz@example.com>: the address bounced (" in text
    assert "Ana Ruiz still gets every email; the delegate is no longer copied." in text
    assert "Ana Ruiz's delegate &lt;pa.ruiz@example.com&gt;" in html

    first = read_week(walked, FEB_1)
    assert [(p.email, key) for p, key, _ in first.completions] == [("ana@example.com", "short")]
    assert first.bounces == [] and first.failures == [] and first.delegate_bounces == []
    rows = {row["key"]: row for row in first.goal_rows()}
    assert rows["short"]["counts"]["done"] == 2 and rows["short"]["share"] == 0.5
    assert [p.email for p in rows["short"]["overdue"]] == ["cleo@example.com", "dora@example.com"]
    assert first.subject == "Week to 1 February: Test cohort"

    second = read_week(walked, FEB_1 + digest.WEEK)
    assert [(p.email, key) for p, key, _ in second.completions] == [("ben@example.com", "short")]
    assert [b.email for b in second.bounces] == ["cleo@example.com"]
    assert all(FEB_1 <= f.at for f in second.failures)

    text, html = digest.render_digest(second)
    assert "Ben Ito: Crawl: your LinkedIn profile and 10 connections" in text
    assert "2 of 4 done (50%), 2 overdue" in text and "Overdue: Cleo Hart, =Dora <b>Diaz</b>" in text
    assert "Cleo Hart <cleo@example.com>: the address bounced (5.1.1 mailbox unavailable)" in text
    assert 'width="50%"' in html and 'bgcolor="#0a66c2"' in html, "bars email clients draw"
    assert "=Dora &lt;b&gt;Diaz&lt;/b&gt;" in html and "<b>Diaz" not in html
    assert "<style" not in html and "<script" not in html


def test_a_reply_kept_for_a_person_needs_a_look_in_its_week(walked: Walked) -> None:
    week = read_week(walked, FEB_1)  # Ben replied on Sunday 31 January, without doing it
    assert [(r.email, r.goal, r.outcome) for r in week.replies] == [("ben@example.com", "short", "reply")]
    text, html = digest.render_digest(week)
    assert (
        "Ben Ito <ben@example.com> wrote about Crawl: your LinkedIn profile and 10 connections on 31 Jan 2027: "
        '"Travelling this week, will get to it on Wednesday." drip left it for a person to answer.'
    ) in text
    assert "Ben Ito &lt;ben@example.com&gt; wrote about" in html and "Needs a look" in html
    assert read_week(walked, FEB_1 + digest.WEEK).replies == [], "each reply is told in its own week only"


def test_the_digest_message(walked: Walked) -> None:
    found = read_week(walked, FEB_1)
    data = digest.compose_digest(found, "owner@example.com", "<d.1@example.com>", FEB_1)
    message = message_from_bytes(data, policy=policy.default)
    assert message["To"] == "owner@example.com" and message["From"] == "Comms <comms@example.com>"
    assert message["Auto-Submitted"] == "auto-generated", "no out-of-office replies to it"
    assert message["Subject"] == "Week to 1 February: Test cohort"
    report = next(message.iter_attachments())
    assert report.get_filename() == "test-cohort-report.html" and "<svg" in report.get_content()
    assert "Ana Ruiz" in message.get_body(("plain",)).get_content()


def test_a_link_to_the_dashboard_only_when_it_is_on(walked: Walked) -> None:
    assert read_week(walked, FEB_1).link is None
    with Store(walked.url) as db, db.reading() as conn:
        week = digest.Week(FEB_1 - digest.WEEK, FEB_1, FEB_1)
        on = settings_for(walked, admin_password="a long enough password")
        found = digest.read_digest(conn, "test-cohort", week, AS_OF, on)
    assert found is not None and found.link == "https://drip.example.com/admin/cohorts/test-cohort"
    assert "https://drip.example.com/admin/cohorts/test-cohort" in digest.render_digest(found)[0]


def send_to(smtp_server: SMTPServer):
    """Return a sender that opens a connection for each message, and closes it."""

    def send(sender, recipients, data, message_id):
        transport = open_transport(smtp_server.url)
        try:
            return transport.send(sender, recipients, data, message_id)
        finally:
            transport.close()

    return send


def count_rows(url: str) -> int:
    with Store(url) as db, db.reading() as conn:
        return conn.execute(select(func.count()).select_from(digest_table)).scalar_one()


def pending(url: str) -> int:
    with Store(url) as db, db.reading() as conn:
        query = select(func.count()).select_from(digest_table).where(digest_table.c.status == "sending")
        return conn.execute(query).scalar_one()


def digests_received(smtp_server: SMTPServer) -> list:
    return [m for m in smtp_server.messages if m.message["X-Drip-Step"] == "digest"]


def test_drip_run_sent_one_digest_a_week_on_the_walk(walked: Walked, smtp_server: SMTPServer) -> None:
    received = digests_received(smtp_server)
    subjects = [m.message["Subject"] for m in received]
    assert subjects == [f"Week to {day}: Test cohort" for day in ("18 January", "25 January", "1 February")]
    assert {m.recipients[0] for m in received} == {"owner@example.com"}
    assert len({m.message["Message-ID"] for m in received}) == 3


def test_each_week_goes_once_even_when_two_workers_race(walked: Walked, smtp_server: SMTPServer) -> None:
    """Without the lead (as when it changes hands), the record alone keeps a week from going twice."""
    before = len(digests_received(smtp_server))
    settings = settings_for(walked, smtp_server)
    start = threading.Barrier(4)
    sent: list[list[str]] = []

    def worker() -> None:
        with Store(walked.url) as db:
            transport = open_transport(smtp_server.url)
            start.wait()
            sent.append(digest.send_due(db, settings, FEB_8 + dt.timedelta(hours=1), transport.send))
            transport.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(s) for s in sent) == [0, 0, 0, 1]
    new = digests_received(smtp_server)[before:]
    assert len(new) == 1 and new[0].recipients == ["owner@example.com"]
    with Store(walked.url) as db:
        later = FEB_8 + dt.timedelta(days=2)
        assert digest.send_due(db, settings, later, send_to(smtp_server)) == []


def test_a_failed_send_is_tried_again_and_a_cut_off_one_keeps_its_message_id(
    walked: Walked, smtp_server: SMTPServer
) -> None:
    settings = settings_for(walked, smtp_server)
    smtp_server.handler.rcpt_replies["owner@example.com"] = ["451 4.3.0 try later"]
    with Store(walked.url) as db:
        assert digest.send_due(db, settings, FEB_8, send_to(smtp_server)) == []
        assert pending(walked.url) == 0, "given back for the next pass"
        assert digest.send_due(db, settings, FEB_8 + dt.timedelta(minutes=1), send_to(smtp_server))

        # A worker killed between its record and the server's answer leaves the row "sending".
        next_week = FEB_8 + digest.WEEK
        cut_off: list[str] = []

        def killed(sender, recipients, data, message_id):
            cut_off.append(message_id)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            digest.send_due(db, settings, next_week, killed)
        assert pending(walked.url) == 1
        # The lease is measured by the real clock: a virtual one far ahead takes nothing over.
        far = next_week + dt.timedelta(days=1)
        assert digest.send_due(db, settings, far, send_to(smtp_server)) == [], "may be in flight"
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.lease_seconds + 1)
        assert digest.send_due(db, settings, next_week, send_to(smtp_server), real_now=later) == [
            "test-cohort: owner@example.com"
        ]
        assert pending(walked.url) == 0
    assert digests_received(smtp_server)[-1].message["Message-ID"] == cut_off[0]


def test_drip_digest_previews_and_sends(walked: Walked, smtp_server: SMTPServer, runner: CliRunner) -> None:
    base = ["--database-url", walked.url, "--smtp-url", smtp_server.url]
    rows, received = count_rows(walked.url), len(digests_received(smtp_server))
    preview = runner.invoke(main, [*base, "digest", "test-cohort", "--preview", "--now", FEB_1.isoformat()])
    assert preview.exit_code == 0 and "Ana Ruiz: Crawl" in preview.stdout
    eml = runner.invoke(
        main, [*base, "digest", "test-cohort", "--preview", "--format", "eml", "--now", FEB_1.isoformat()]
    )
    assert eml.exit_code == 0 and "Auto-Submitted: auto-generated" in eml.stdout
    assert count_rows(walked.url) == rows and len(digests_received(smtp_server)) == received, "a preview only"

    sent = runner.invoke(main, [*base, "digest", "test-cohort", "--now", FEB_8.isoformat()])
    assert sent.exit_code == 0 and "Sent the digest of test-cohort to 1 owner(s)." in sent.stdout
    assert len(digests_received(smtp_server)) == received + 1 and count_rows(walked.url) == rows + 1
    # Asked for by hand, it does not stand in for the week's scheduled one.
    with Store(walked.url) as db:
        assert digest.send_due(db, settings_for(walked, smtp_server), FEB_8, send_to(smtp_server))

    unknown = runner.invoke(main, [*base, "digest", "nope"])
    assert unknown.exit_code == 1 and "no cohort 'nope'" in unknown.output


def test_drip_digest_without_a_relay_goes_to_the_mail_catcher(
    walked: Walked, runner: CliRunner, tmp_path: Path
) -> None:
    mail = tmp_path / "mail"
    result = runner.invoke(
        main, ["--database-url", walked.url, "--mail-dir", str(mail), "digest", "test-cohort"]
    )
    assert result.exit_code == 0 and "kept by the mail catcher" in result.stdout
    kept = list(mail.glob("*.eml"))
    assert len(kept) == 1 and b"X-Drip-Step: digest" in kept[0].read_bytes()


def test_drip_digest_of_a_cohort_without_owners_says_how_to_add_them(
    make_cohort: CohortFactory, runner: CliRunner, tmp_path: Path
) -> None:
    from conftest import COHORT_TOML

    url = f"sqlite:///{tmp_path / 'd.db'}"
    folder = make_cohort(toml=COHORT_TOML.replace('owners = ["owner@example.com"]\n', ""))
    assert (
        runner.invoke(
            main, ["--database-url", url, "start", str(folder), "--now", "2027-01-04T12:00Z"]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        main, ["--database-url", url, "--mail-dir", str(tmp_path / "mail"), "digest", "test-cohort"]
    )
    assert result.exit_code == 1
    assert "cohort 'test-cohort' has no owners; list them in cohort.toml: owners = [...]" in result.output
    assert not (tmp_path / "mail").exists()
