"""The mail catcher's inbox: what a comms person sees on their laptop, in a real browser too."""

import dataclasses
import re
import shutil
import subprocess
import tempfile
import threading
from html import unescape
from pathlib import Path

import pytest

from conftest import ROOT, _free_port
from drip.config import load_settings
from drip.sending import catcher
from drip.web.app import create_app

EXAMPLE = ROOT / "cohorts" / "example"


@pytest.fixture
def mail_dir(tmp_path: Path, runner) -> Path:
    """A catcher folder filled by a real run: start, then drip run --once into the built-in catcher."""
    from drip.cli import main

    folder = tmp_path / "mail"
    env = {
        "DRIP_MAIL_DIR": str(folder),
        "DRIP_CATCHER_PORT": str(_free_port()),
        "DRIP_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
    }
    assert runner.invoke(main, ["start", str(EXAMPLE), "--now", "2027-01-04T12:00Z"], env=env).exit_code == 0
    result = runner.invoke(main, ["run", "--once", "--now", "2027-01-11T20:00Z"], env=env)
    assert result.exit_code == 0, result.output
    assert "nothing leaves this machine" in result.output and "12 sent" in result.output
    return folder


def app_for(mail_dir: Path, **overrides):
    settings = dataclasses.replace(load_settings(environ={}), mail_dir=str(mail_dir), **overrides)
    return create_app(settings)


def test_inbox_lists_and_shows_what_was_caught(mail_dir: Path) -> None:
    client = app_for(mail_dir).test_client()
    page = client.get("/inbox")
    assert page.status_code == 200 and b"12 messages" in page.data
    assert b"three small steps start now" in page.data
    name = catcher.messages(mail_dir)[0].name
    shown = client.get(f"/inbox/{name}")
    assert shown.status_code == 200 and b"<iframe" in shown.data and b"Plain text" in shown.data
    html = client.get(f"/inbox/{name}/html")
    assert html.status_code == 200 and b'<base target="_blank">' in html.data
    assert "sandbox" in html.headers["Content-Security-Policy"]
    raw = client.get(f"/inbox/{name}/raw")
    assert raw.data.startswith(b"From: ") and raw.mimetype == "message/rfc822"


@pytest.mark.parametrize("name", ["../d.db", "..%2Fd.db", "1795788960933-f4c7a1db.eml.bak", "nope"])
def test_inbox_refuses_anything_but_its_own_files(mail_dir: Path, name: str) -> None:
    assert app_for(mail_dir).test_client().get(f"/inbox/{name}").status_code == 404


def test_no_inbox_when_mail_goes_to_a_relay(mail_dir: Path) -> None:
    client = app_for(mail_dir, smtp_url="smtp://relay.example.com").test_client()
    assert client.get("/inbox").status_code == 404
    assert client.get("/healthz").data == b"ok\n"


def test_get_never_changes_anything(mail_dir: Path) -> None:
    before = sorted(p.name for p in mail_dir.iterdir())
    client = app_for(mail_dir).test_client()
    for path in ("/inbox", f"/inbox/{before[0]}", f"/inbox/{before[0]}/html", "/healthz"):
        client.get(path)
        client.head(path)
    assert sorted(p.name for p in mail_dir.iterdir()) == before
    assert client.post("/inbox").status_code == 405


def test_the_inbox_shows_mail_that_is_not_drips_own(tmp_path: Path) -> None:
    """Anything on the machine may send to the catcher: a bad date or an unknown charset still shows."""
    folder = tmp_path / "mail"
    folder.mkdir()
    odd = (
        b"From: monitor@localhost\r\nTo: ops@localhost\r\nSubject: disk check\r\n"
        b"Date: sometime last week\r\nContent-Type: text/plain; charset=x-made-up\r\n\r\nDisk 93% full\r\n"
    )
    name = catcher.keep(folder, odd).name
    client = app_for(folder).test_client()
    listing = client.get("/inbox")
    assert listing.status_code == 200 and b"disk check" in listing.data
    shown = client.get(f"/inbox/{name}")
    assert shown.status_code == 200
    assert b"Disk 93% full" in shown.data and b"sometime last week" in shown.data
    assert client.get(f"/inbox/{name}/html").status_code == 404


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_inbox_in_a_real_browser(mail_dir: Path) -> None:
    from waitress.server import create_server

    server = create_server(app_for(mail_dir), host="127.0.0.1", port=_free_port())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        port = server.effective_port
        with tempfile.TemporaryDirectory() as profile:
            flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--dump-dom"]  # fmt: skip
            dom = subprocess.run(
                ["chromium", *flags, f"http://127.0.0.1:{port}/inbox"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        assert "Mail catcher" in dom and "three small steps start now" in dom and dom.count("<tr>") == 13
    finally:
        server.close()


# --- the inbox is this machine's, unless it has a password -----------------------------------

INBOX_PASSWORD = "a long inbox pass-phrase"


def test_the_inbox_answers_only_this_machine_without_a_password(mail_dir: Path) -> None:
    client = app_for(mail_dir).test_client()
    assert client.get("/inbox").status_code == 200
    away = client.get("/inbox", environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert away.status_code == 403 and b"DRIP_INBOX_PASSWORD" in away.data
    name = catcher.messages(mail_dir)[0].name
    assert client.get(f"/inbox/{name}/raw", environ_base={"REMOTE_ADDR": "192.0.2.44"}).status_code == 403
    assert client.get("/inbox", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_a_password_opens_the_inbox_to_others(mail_dir: Path) -> None:
    import base64

    client = app_for(mail_dir, inbox_password=INBOX_PASSWORD).test_client()
    away = {"REMOTE_ADDR": "192.0.2.44"}
    asked = client.get("/inbox", environ_base=away)
    assert asked.status_code == 401 and "drip inbox" in asked.headers["WWW-Authenticate"]
    token = base64.b64encode(f"comms:{INBOX_PASSWORD}".encode()).decode()
    page = client.get("/inbox", environ_base=away, headers={"Authorization": f"Basic {token}"})
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("host", "more", "refused"),
    [
        ("0.0.0.0", {}, True),
        ("192.0.2.10", {}, True),
        ("127.0.0.1", {}, False),
        ("::1", {}, False),
        ("0.0.0.0", {"inbox_password": INBOX_PASSWORD}, False),
        ("0.0.0.0", {"smtp_url": "smtp://relay.example.com"}, False),
    ],
)
def test_serving_the_inbox_to_the_network_is_refused(host: str, more: dict, refused: bool) -> None:
    from drip.core.errors import ConfigError
    from drip.web.app import check_exposure

    settings = dataclasses.replace(load_settings(environ={}), **more)
    if refused:
        with pytest.raises(ConfigError, match="refusing to listen on .*DRIP_INBOX_PASSWORD"):
            check_exposure(settings, host)
    else:
        check_exposure(settings, host)


def test_drip_serve_on_every_address_without_a_password_says_why_in_one_line(runner, tmp_path: Path) -> None:
    from drip.cli import main

    env = {"DRIP_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", "DRIP_MAIL_DIR": str(tmp_path / "mail")}
    result = runner.invoke(main, ["serve", "--host", "0.0.0.0", "--port", str(_free_port())], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and "refusing to listen on 0.0.0.0" in result.output


def test_the_pages_say_nothing_of_the_server_software(tmp_path: Path) -> None:
    import urllib.request

    from drip import service

    port = _free_port()
    settings = dataclasses.replace(
        load_settings(environ={}), database_url=f"sqlite:///{tmp_path / 'd.db'}", listen=("127.0.0.1", port),
        mail_dir=str(tmp_path / "mail"),
    )  # fmt: skip
    with service.serving(settings, lambda said: None):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200 and answer.headers.get("Server") is None


def test_the_inbox_shows_the_example_cohort_in_its_readers_languages(mail_dir: Path) -> None:
    """make demo's inbox: the example cohort's executives read English, Spanish, German, French and
    Japanese, and each welcome is listed under its reader's subject."""
    page = app_for(mail_dir).test_client().get("/inbox").get_data(as_text=True)
    listed = " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())
    for reader, subject in [
        ("Margaret Okafor", "Margaret, three small steps start now"),
        ("Sofia Márquez", "Sofia, hoy empiezan tres pasos sencillos"),
        ("Thomas Becker", "Thomas, jetzt geht es los: drei kleine Schritte"),
        ("Amélie Laurent", "Amélie, vos trois étapes commencent maintenant"),
        ("田中 健二", "田中 健二様、本日から3つの小さなステップが始まります"),
    ]:
        assert f"{reader} <" in listed and subject in listed, subject
