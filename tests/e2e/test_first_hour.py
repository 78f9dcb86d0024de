"""A newcomer's first hour in a real browser: after `drip demo`, the inbox and the report tell the story.

The README's screenshots are the ones these tests take (docs/screenshots/, with
DRIP_TEST_SCREENSHOTS pointing there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import _free_port
from drip.config import load_settings
from drip.web.app import create_app

CHROMIUM = shutil.which("chromium")
#: where the demo's story ends
END = dt.datetime(2027, 6, 15, tzinfo=dt.UTC)
DESKTOP = {"width": 1280, "height": 860}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The folder `drip demo` played in, and its pages served as `drip demo` serves them."""
    from waitress.server import create_server

    folder = tmp_path_factory.mktemp("first-hour")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_") or k.startswith("DRIP_TEST_")}
    env["DRIP_CATCHER_PORT"] = str(_free_port())
    for command in (["init", "."], ["demo", "--no-serve"]):
        done = subprocess.run(
            [sys.executable, "-m", "drip", *command], cwd=folder, env=env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    port = _free_port()
    settings = dataclasses.replace(
        load_settings(environ={}, options={"base_url": f"http://127.0.0.1:{port}"}),
        database_url=f"sqlite:///{folder / 'drip.db'}",
        mail_dir=str(folder / "drip-mail"),
    )
    app = create_app(settings, clock=lambda: END)
    server = create_server(app, host="127.0.0.1", port=port, threads=1)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        server.close()
        app.extensions["drip"].database.close()


def test_the_demos_inbox_shows_the_mail_the_digests_and_the_replies(demo, browser, shots: Path) -> None:
    site, _ = demo
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.goto(f"{site}/inbox")
    rows = page.locator("tbody tr")
    assert rows.count() > 200, (
        "every email of the training and two check-ins, the digests and the escalations"
    )
    assert page.get_by_role("link", name="Week to 7 June: Northwind leadership, winter 2027").is_visible()
    assert page.get_by_role("link", name="Replies drip read (11)").is_visible()
    page.screenshot(path=shots / "demo-inbox.png")

    page.get_by_role("searchbox").fill("step:short-done")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    congratulated = page.locator("tbody tr td.to").all_inner_texts()
    assert len(congratulated) == 6 and any("Margaret Okafor" in name for name in congratulated)

    page.get_by_role("link", name="Replies drip read (11)").click()
    page.wait_for_load_state()
    said = page.locator("main").inner_text()
    for words in ("Not yet, I'm afraid", "1月25日まで", "bounce", "David Chen", "answered sustain-1: shared"):
        assert words in said, words
    page.screenshot(path=shots / "demo-replies.png")


def test_the_demos_report_shows_progress_by_link_and_by_reply(demo, browser, shots: Path) -> None:
    _, folder = demo
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.goto((folder / "example-report.html").as_uri())
    assert page.get_by_role("heading", name="Northwind leadership, winter 2027", level=1).is_visible()
    chart = page.locator("figure svg").first
    assert chart.is_visible() and "6 of 12" in page.locator("figure").first.inner_text()
    replies = page.get_by_role("heading", name="Replies").locator("xpath=..").inner_text()
    assert "travelling all week" in replies and "hecho" in replies
    page.screenshot(path=shots / "demo-report.png")


def test_the_demos_report_shows_sustained_use_and_what_they_said(demo, browser, shots: Path) -> None:
    _, folder = demo
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.goto((folder / "example-report.html").as_uri())
    sustained = page.locator("section", has=page.get_by_role("heading", name="Sustained use"))
    words = sustained.inner_text()
    assert (
        "sustain-1" in words and "5 of 11, 45%" in words and "sustain-2" in words and "4 of 11, 36%" in words
    )
    assert sustained.locator("svg").first.is_visible()
    said = page.locator("section", has=page.get_by_role("heading", name="What they said")).inner_text()
    for answer in ("https://linkedin.com/in/margaret-okafor", "Feedly: 38 sources", "Inoreader now collects"):
        assert answer in said, answer
    sustained.screenshot(path=shots / "demo-sustained.png")
