"""The mail catcher's inbox in a real browser: search, the views of an email, the previews, live mail.

The pages are served by waitress with one thread, as ``drip serve`` serves them on SQLite, and the
mail is what a real ``drip run`` sent into the built-in catcher. Screenshots (inbox.png,
message.png) land in DRIP_TEST_SCREENSHOTS, or the test's temporary folder, for a person to see.
"""

from __future__ import annotations

import dataclasses
import shutil
import smtplib
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, _free_port
from drip.config import load_settings
from drip.sending import catcher
from drip.web.app import create_app

CHROMIUM = shutil.which("chromium")
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
#: the lowest edge of anything in a document: where the email's content ends
CONTENT_BOTTOM = (
    "Math.max(...[...document.body.querySelectorAll('*')].map(e => e.getBoundingClientRect().bottom))"
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@dataclasses.dataclass
class Catcher:
    url: str
    folder: Path
    smtp_port: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catcher]:
    """A week of the example cohort sent into the catcher by drip run, the catcher still listening."""
    from waitress.server import create_server

    from drip.cli import main

    folder = tmp_path_factory.mktemp("catcher")
    mail, database = folder / "mail", f"sqlite:///{folder / 'd.db'}"
    env = {"DRIP_MAIL_DIR": str(mail), "DRIP_CATCHER_PORT": str(_free_port()), "DRIP_DATABASE_URL": database,
           "XDG_CACHE_HOME": str(folder / "cache")}  # fmt: skip
    runner = CliRunner()
    started = runner.invoke(
        main, ["start", str(ROOT / "cohorts" / "example"), "--now", "2027-01-04T12:00Z"], env=env
    )
    assert started.exit_code == 0, started.output
    ran = runner.invoke(
        main, ["run", "--once", "--now", "2027-01-11T20:00Z", "--until", "2027-01-19T20:00Z"], env=env
    )
    assert ran.exit_code == 0 and "24 sent" in ran.output, ran.output
    catcher.keep(
        mail,
        b"From: drip <comms@northwind.example>\r\nTo: Short Note <short@northwind.example>\r\n"
        b"Subject: A short note\r\nDate: Tue, 19 Jan 2027 21:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><head></head><body><p>Just one line.</p></body></html>\r\n",
    )
    port = _free_port()
    settings = dataclasses.replace(load_settings(environ={}), mail_dir=str(mail), database_url=database)
    app = create_app(settings)
    server = create_server(app, host="127.0.0.1", port=port, threads=1)
    threading.Thread(target=server.run, daemon=True).start()
    smtp_port = _free_port()
    try:
        with catcher.running(mail, smtp_port):
            yield Catcher(f"http://127.0.0.1:{port}", mail, smtp_port)
    finally:
        server.close()
        app.extensions["drip"].database.close()


def no_sideways_scroll(page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_search_then_each_view_of_an_email(site: Catcher, browser, shots: Path) -> None:
    page = browser.new_context(viewport=LAPTOP).new_page()
    page.goto(f"{site.url}/inbox")
    assert page.get_by_role("heading", name="Mail catcher").is_visible()
    assert page.locator("tbody tr").count() == 26
    page.screenshot(path=shots / "inbox.png", full_page=True)

    search = page.get_by_role("searchbox", name="Search by recipient, subject, step or cohort")
    search.fill("to:margaret step:short-kickoff")
    with page.expect_navigation():
        search.press("Enter")
    assert page.locator("tbody tr").count() == 1
    with page.expect_navigation():
        page.locator("tbody tr a").first.click()
    assert "margaret.okafor@northwind.example" in page.locator("dl.meta").inner_text()

    frame = page.locator("iframe.email")
    assert frame.get_attribute("sandbox") == "allow-same-origin allow-popups allow-popups-to-escape-sandbox"
    email = frame.content_frame
    email.get_by_role("link", name="Mark it done").wait_for()
    page.wait_for_function("document.querySelector('iframe.email').style.height !== ''")
    box = frame.bounding_box()
    bottom = email.locator("body").evaluate(f"() => {CONTENT_BOTTOM}")
    assert box is not None and box["height"] > 400 and box["height"] - bottom < 40, (box, bottom)
    page.screenshot(path=shots / "message.png", full_page=True)

    tabs = page.get_by_role("navigation", name="Views of this email")
    for tab, expect in [
        ("Plain text", "Mark it done"),
        ("Headers", "X-Drip-Step"),
        ("Source", "Content-Type: text/calendar"),
        ("Attachments", "Monday 1 February 2027, all day"),
        ("Links", "valid"),
    ]:
        with page.expect_navigation():
            tabs.get_by_role("link", name=tab).click()
        assert page.get_by_role("heading", name=tab, level=2).is_visible()
        assert expect in page.locator("#content").inner_text(), tab
        if tab == "Attachments":
            with page.expect_download() as download:
                page.get_by_role("link", name="Download").click()
            assert download.value.suggested_filename == "deadline.ics"


def test_a_short_email_leaves_no_gap_below_it(site: Catcher, browser) -> None:
    page = browser.new_context(viewport=LAPTOP).new_page()
    page.goto(f"{site.url}/inbox?q=subject:short")
    with page.expect_navigation():
        page.get_by_role("link", name="A short note").click()
    frame = page.locator("iframe.email")
    frame.content_frame.get_by_text("Just one line.").wait_for()
    page.wait_for_function("document.querySelector('iframe.email').style.height !== ''")
    box = frame.bounding_box()
    assert box is not None and box["height"] < 120, box


def test_the_phone_and_dark_previews(site: Catcher, browser) -> None:
    page = browser.new_context(viewport=LAPTOP, color_scheme="light").new_page()
    page.goto(f"{site.url}/inbox?q=to:margaret+step:short-kickoff")
    with page.expect_navigation():
        page.locator("tbody tr a").first.click()
    preview = page.get_by_role("group", name="Preview as")
    light = page.locator("iframe.email").content_frame.locator("body")
    light_background = light.evaluate("b => getComputedStyle(b).backgroundColor")

    with page.expect_navigation():
        preview.get_by_role("link", name="Phone (375 px)").click()
    frame = page.locator("iframe.email")
    frame.content_frame.locator("body").wait_for()
    assert frame.bounding_box()["width"] == 375
    assert frame.content_frame.locator("html").evaluate("h => h.scrollWidth") <= 375, "no sideways scrolling"

    with page.expect_navigation():
        preview.get_by_role("link", name="Dark").click()
    assert preview.get_by_role("link", name="Dark").get_attribute("aria-current") == "true"
    dark = page.locator("iframe.email").content_frame.locator("body")
    dark_background = dark.evaluate("b => getComputedStyle(b).backgroundColor")
    assert light_background != dark_background
    assert dark_background == "rgb(17, 24, 39)", dark_background  # the email's own dark colours
    assert page.locator("iframe.email").bounding_box()["width"] == 375


def test_mail_sent_to_the_catcher_appears_without_reloading(site: Catcher, browser) -> None:
    page = browser.new_context(viewport=LAPTOP).new_page()
    page.goto(f"{site.url}/inbox")
    before = page.locator("tbody tr").count()
    page.evaluate("window.stillThisPage = true")

    message = EmailMessage()
    message["From"], message["To"] = "drip <comms@northwind.example>", "Live One <live@northwind.example>"
    message["Subject"] = "Arrived while the page was open"
    message.set_content("Hello")
    with smtplib.SMTP("127.0.0.1", site.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)

    page.get_by_role("link", name="Arrived while the page was open").wait_for(timeout=10_000)
    assert page.locator("tbody tr").count() == before + 1
    assert page.evaluate("window.stillThisPage") is True
    assert page.get_by_role("status").inner_text() == "1 new message just arrived."


def test_on_a_phone_and_by_keyboard(site: Catcher, browser) -> None:
    page = browser.new_context(viewport=PHONE, color_scheme="dark").new_page()
    page.goto(f"{site.url}/inbox")
    assert no_sideways_scroll(page)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 24, 39)"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    else:
        pytest.fail("the search box cannot be reached by keyboard")
    page.keyboard.type("step:welcome to:thomas")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("tbody tr").count() == 1
    page.keyboard.press("Tab")  # the skip link, then the way to the email
    link = page.locator("tbody tr a")
    link.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert no_sideways_scroll(page)
    page.locator("iframe.email").content_frame.locator("body").wait_for()
    assert page.locator("iframe.email").bounding_box()["width"] <= PHONE["width"]
