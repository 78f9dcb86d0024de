"""A whole campaign walked in virtual time: what arrives is exactly what drip plan said."""

import dataclasses
import datetime as dt
import email.utils
from zoneinfo import ZoneInfo

from conftest import ROOT, SMTPServer
from drip import service
from drip.config import load_settings
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.owners import texts
from drip.storage.store import Store

UTC = dt.UTC
STEP = dt.timedelta(hours=6)


def test_campaign_in_virtual_time_matches_the_plan(database_url: str, smtp_server: SMTPServer) -> None:
    cohort = load_cohort(ROOT / "cohorts" / "example", [ROOT / "emails"])
    enrolled = dt.datetime(2027, 1, 4, 12, tzinfo=UTC)
    planned = {
        (entry.email, entry.step): entry.at
        for entry in texts.planned_entries(list(enrol.plan_cohort(cohort, enrolled)))
        if entry.status == "scheduled"
    }
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": "https://drip.example.com"}),
        database_url=database_url,
        smtp_url=smtp_server.url,
    )
    with Store(database_url) as db:
        with db.transaction() as conn:
            enrol.sync_cohort(conn, cohort, enrolled)
        # Up to the program's end: the monthly check-ins run six months after the last deadline.
        start, end = dt.datetime(2027, 1, 10, tzinfo=UTC), dt.datetime(2027, 10, 12, tzinfo=UTC)
        tally = service.run_once(settings, db, start, end, STEP, lambda message: None)
    received = {}
    digests = []
    names = {person.name: person.email for person in cohort.participants}
    for message in (m.message for m in smtp_server.messages):
        if message["X-Drip-Step"] == "digest":  # the owners' weekly summary, not the participants' mail
            digests.append(email.utils.parsedate_to_datetime(str(message["Date"])))
            continue
        step = str(message["X-Drip-Step"])
        about = message["To"].addresses[0].addr_spec
        if step.endswith("-escalation"):  # to the owner, about the participant its subject names
            about = names[str(message["Subject"]).split(":")[0]]
        key = (about, step)
        assert key not in received, f"{key} arrived twice"
        received[key] = email.utils.parsedate_to_datetime(str(message["Date"]))
    assert set(received) == set(planned)
    assert tally.sent == len(planned) and tally.skipped == tally.failed == 0
    for key, due in planned.items():
        assert due <= received[key] <= due + STEP, key  # sent at the first tick after its moment
    # One digest a week to the one owner, Mondays at 08:00 in New York, from the first Monday after the start.
    new_york = ZoneInfo("America/New_York")
    mondays = [dt.date(2027, 1, 18) + dt.timedelta(weeks=n) for n in range(len(digests))]
    assert digests and [d.astimezone(new_york).date() for d in digests] == mondays
    assert all(d.astimezone(new_york).time() >= dt.time(8) for d in digests)
    assert mondays[-1] >= max(received.values()).astimezone(new_york).date(), "the last covers the last email"
