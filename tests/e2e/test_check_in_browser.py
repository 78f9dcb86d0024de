"""An executive answers a monthly check-in on a phone: the email's two answers are real buttons, a tap
opens the confirmation page, its button records the answer, and a later tap on the other answer
replaces it. Headless chromium against the pages served by waitress, on SQLite and PostgreSQL."""

import dataclasses
import datetime as dt
import re
import shutil
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from test_check_ins import rows

from conftest import EMAILS, CohortFactory, SMTPServer, _free_port
from drip.config import Settings, load_settings
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.sending.dispatcher import Dispatcher
from drip.sending.transport import open_transport
from drip.storage import keyring
from drip.storage.store import Store, delivery_table, participant_table
from drip.web.app import create_app

UTC = dt.UTC
ANA = "ana@example.com"
CHROMIUM = shutil.which("chromium")
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1024, "height": 800}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@dataclasses.dataclass
class Site:
    db: Store
    settings: Settings
    clock: list[dt.datetime]
    email: str


@pytest.fixture
def site(database_url: str, make_cohort: CohortFactory, smtp_server: SMTPServer) -> Iterator[Site]:
    """A started cohort whose first check-in went to Ana, and its pages served on loopback."""
    from waitress.server import create_server

    port = _free_port()
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": f"http://127.0.0.1:{port}"}),
        database_url=database_url,
        smtp_url=smtp_server.url,
    )
    db = Store(database_url)
    with db.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), dt.datetime(2027, 1, 4, 12, tzinfo=UTC))
        keyring.prepare(settings, conn)
        due = conn.execute(
            select(delivery_table.c.due_at)
            .join(participant_table, participant_table.c.id == delivery_table.c.participant_id)
            .where(participant_table.c.email == ANA, delivery_table.c.step == "sustain-1")
        ).scalar_one()
    # Everything due before is too stale to go by then: only the check-ins due at that moment are sent.
    Dispatcher(db, settings, lambda: open_transport(smtp_server.url)).run_until_idle(due)
    [check_in] = [
        m for m in smtp_server.messages if m.recipients[0] == ANA and m.message["X-Drip-Step"] == "sustain-1"
    ]
    html = check_in.message.get_body(("html",)).get_content()
    clock = [due + dt.timedelta(hours=20)]
    app = create_app(settings, clock=lambda: clock[0])
    server = create_server(app, host="127.0.0.1", port=port, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield Site(db, settings, clock, html)
    finally:
        server.close()
        app.extensions["drip"].database.close()
        db.close()


def test_a_check_in_is_answered_with_two_taps_and_changed_with_two_more(site: Site, browser) -> None:
    links = re.findall(r'<a href="(http://127\.0\.0\.1:\d+/answer/[a-z0-9]+)"', site.email)
    assert len(links) == 2, "one link per answer, in the email's HTML"

    # The email itself: two buttons, side by side on a desktop, one above the other on a phone, each
    # big enough for a thumb.
    email = browser.new_page(viewport=DESKTOP)
    email.set_content(site.email)
    shared, not_shared = (
        email.get_by_role("link", name=name) for name in ("Yes, I shared something", "Not this month")
    )
    left, right = shared.bounding_box(), not_shared.bounding_box()
    assert left and right and abs(left["y"] - right["y"]) < 2 and left["x"] < right["x"]
    email.set_viewport_size(PHONE)
    top, below = shared.bounding_box(), not_shared.bounding_box()
    assert (
        top and below and below["y"] >= top["y"] + top["height"] and min(top["height"], below["height"]) >= 44
    )
    assert email.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    email.close()

    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page.goto(links[1])
        assert page.get_by_role("heading").inner_text() == "Ana, is this your answer?"
        assert "“Not this month”" in page.inner_text("main")
        assert rows(site.db) == ([], []), "opening the link records nothing"
        button = page.get_by_role("button", name="Yes, that is my answer")
        box = button.bounding_box()
        assert box is not None and box["height"] >= 44
        with page.expect_navigation():
            button.tap()
        assert page.get_by_role("heading").inner_text() == "Thank you, Ana"
        assert rows(site.db)[0] == [("sustain-1", "not_shared", "link")]

        site.clock[0] += dt.timedelta(days=1)  # the next day she remembers a post after all
        page.goto(links[0])
        assert page.get_by_role("heading").inner_text() == "Ana, change your answer?"
        with page.expect_navigation():
            page.get_by_role("button", name="Yes, change it").tap()
        assert "“Yes, I shared something” is recorded." in page.inner_text("main")
    finally:
        page.close()
    given, events = rows(site.db)
    assert given == [("sustain-1", "shared", "link")]
    assert [(e["answer"], e.get("replaced")) for e in events] == [
        ("not_shared", None),
        ("shared", "not_shared"),
    ]
    assert all("Chrome" in e["user_agent"] for e in events)  # the browser that tapped, kept as evidence
