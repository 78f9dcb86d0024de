"""What an owner sees in a real browser: the dashboard and a cohort's report, on a laptop and a phone."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import _free_port
from drip.config import load_settings
from drip.web.app import create_app
from walked import AS_OF, Walked

CHROMIUM = shutil.which("chromium")
PASSWORD = "an owner's long password"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture
def site(walked: Walked) -> Iterator[str]:
    from waitress.server import create_server

    port = _free_port()
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": f"http://127.0.0.1:{port}"}),
        database_url=walked.url,
        admin_password=PASSWORD,
    )
    app = create_app(settings, clock=lambda: AS_OF)
    server = create_server(app, host="127.0.0.1", port=port, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        app.extensions["drip"].database.close()


@pytest.mark.parametrize("screen", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_dashboard_and_report_show_their_key_parts(site: str, screen: dict, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport=screen, http_credentials={"username": "owner", "password": PASSWORD}
            )
            page = context.new_page()
            page.goto(f"{site}/admin")
            assert page.get_by_role("heading", name="Cohorts").is_visible()
            assert page.get_by_role("heading", name="Test cohort").is_visible()
            assert page.get_by_role("img", name="2 of 4 done").is_visible()
            page.screenshot(path=tmp_path / "admin.png", full_page=True)
            assert no_sideways_scroll(page, screen)

            with page.expect_navigation():
                page.get_by_role("link", name="Open the report").click()
            assert page.get_by_role("heading", name="Test cohort", level=1).is_visible()
            chart = page.locator("svg[role=img]")
            box = chart.bounding_box()
            assert box is not None and box["width"] >= screen["width"] * 0.8 and box["height"] > 150
            assert (
                "2 of 4 done" in chart.get_attribute("aria-labelledby") or chart.locator("title").count() == 1
            )
            lines = page.locator("svg polyline")
            assert lines.count() == 3 and lines.first.bounding_box()["width"] > box["width"] / 2
            for heading in ("Participants", "Emails and what followed", "Failures and bounces", "Replies"):
                assert page.get_by_role("heading", name=heading).is_visible()
            grid = page.locator("table.grid-table")
            assert grid.get_by_role("rowheader").count() == 4
            assert grid.get_by_text("overdue").count() == 2
            page.get_by_text("Travelling this week").scroll_into_view_if_needed()
            assert page.get_by_text("Travelling this week").is_visible()
            page.screenshot(path=tmp_path / "report.png", full_page=True)
            assert no_sideways_scroll(page, screen), "wide tables scroll inside their box, not the page"
            assert (tmp_path / "report.png").stat().st_size > 20_000
            page.emulate_media(media="print")
            assert page.evaluate("getComputedStyle(document.querySelector('a.back')).display") == "none"
        finally:
            browser.close()


def no_sideways_scroll(page, screen: dict) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= screen["width"]
