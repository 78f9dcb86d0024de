"""An executive on a phone: open the done link of a real email in headless chromium, tap the button,
and the goal's reminders stop."""

import dataclasses
import datetime as dt
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import EMAILS, CohortFactory, SMTPServer, _free_port
from drip.config import load_settings
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.sending.dispatcher import Dispatcher
from drip.sending.transport import open_transport
from drip.storage import keyring
from drip.storage.store import Store
from drip.web.app import create_app

UTC = dt.UTC
ANA = "ana@example.com"
CHROMIUM = shutil.which("chromium")
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture
def site(tmp_path: Path, make_cohort: CohortFactory, smtp_server: SMTPServer) -> Iterator[tuple]:
    """A started cohort whose first two emails went out, and its web pages served on loopback."""
    from waitress.server import create_server

    port = _free_port()
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": f"http://127.0.0.1:{port}"}),
        database_url=f"sqlite:///{tmp_path / 'drip.db'}",
        smtp_url=smtp_server.url,
    )
    db = Store(settings.database_url)
    with db.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), dt.datetime(2027, 1, 4, 12, tzinfo=UTC))
        keyring.prepare(settings, conn)
    dispatcher = Dispatcher(db, settings, lambda: open_transport(smtp_server.url))
    walk(dispatcher, dt.datetime(2027, 1, 11, tzinfo=UTC), dt.datetime(2027, 1, 12, 18, tzinfo=UTC))
    clicked = dt.datetime(2027, 1, 13, 15, tzinfo=UTC)
    app = create_app(settings, clock=lambda: clicked)
    server = create_server(app, host="127.0.0.1", port=port, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield dispatcher, smtp_server
    finally:
        server.close()
        app.extensions["drip"].database.close()
        db.close()


def walk(dispatcher: Dispatcher, start: dt.datetime, end: dt.datetime) -> None:
    """Run dispatch every six hours of virtual time, as ``drip run --once --until`` does."""
    moment = start
    while moment <= end:
        dispatcher.run_until_idle(moment)
        moment += dt.timedelta(hours=6)


def steps_received(smtp_server: SMTPServer, address: str) -> list[str]:
    return [str(m.message["X-Drip-Step"]) for m in smtp_server.messages if m.recipients[0] == address]


def test_done_from_a_phone_stops_the_reminders(site: tuple) -> None:
    from playwright.sync_api import sync_playwright

    dispatcher, smtp_server = site
    kickoff = next(
        m.message
        for m in smtp_server.messages
        if m.recipients[0] == ANA and m.message["X-Drip-Step"] == "short-kickoff"
    )
    html = kickoff.get_body(("html",)).get_content()
    done_link = re.search(r'href="(http://127\.0\.0\.1:\d+/done/[a-z0-9]+)"', html).group(1)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
            page.goto(done_link)
            assert page.get_by_role("heading").inner_text() == "Ana, is this one done?"
            button = page.get_by_role("button", name="Yes, mark it done")
            box = button.bounding_box()
            assert box is not None and box["width"] >= 300 and box["height"] >= 44  # easy to tap
            assert (
                page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            )  # no sideways scroll
            with page.expect_navigation():
                button.tap()
            assert page.get_by_role("heading").inner_text() == "Thank you, Ana"
            assert "Next: “Walk: five voices worth reading daily”" in page.inner_text("main")
        finally:
            browser.close()

    walk(dispatcher, dt.datetime(2027, 1, 13, 15, tzinfo=UTC), dt.datetime(2027, 2, 10, tzinfo=UTC))
    received = steps_received(smtp_server, ANA)
    assert "short-done" in received
    assert not {"short-reminder", "short-due", "short-overdue"} & set(received)
    assert {"short-reminder", "short-due"} <= set(steps_received(smtp_server, "ben@example.com"))


def test_the_goals_question_on_a_phone_is_optional_asked_again_when_wrong_and_kept(
    site: tuple, browser
) -> None:
    _, smtp_server = site
    kickoff = next(
        m.message
        for m in smtp_server.messages
        if m.recipients[0] == "ben@example.com" and m.message["X-Drip-Step"] == "short-kickoff"
    )
    done_link = re.search(
        r'href="(http://127\.0\.0\.1:\d+/done/[a-z0-9]+)"', kickoff.get_body(("html",)).get_content()
    )
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    page.goto(done_link.group(1))
    field = page.get_by_label("Your LinkedIn profile's address (optional)")
    box = field.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 300, "easy to tap and type in"
    assert field.get_attribute("inputmode") == "url"

    field.fill("javascript:alert(document.cookie)")
    with page.expect_navigation():
        page.get_by_role("button", name="Yes, mark it done").tap()
    assert "starts with https://" in page.get_by_role("alert").inner_text()
    field = page.get_by_label("Your LinkedIn profile's address (optional)")
    assert field.input_value() == "javascript:alert(document.cookie)", "what was typed is kept to fix"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    field.fill("linkedin.com/in/ben-ito")
    with page.expect_navigation():
        page.get_by_role("button", name="Yes, mark it done").tap()
    assert page.get_by_role("heading").inner_text() == "Thank you, Ben"
    page.close()
    with site[0].db.reading() as conn:
        kept = conn.execute(
            text("SELECT g.answer FROM goals g JOIN participants p ON p.id = g.participant_id "
                 "WHERE p.email = 'ben@example.com' AND g.goal = 'short'")
        ).scalar_one()  # fmt: skip
    assert kept == "https://linkedin.com/in/ben-ito"
