"""The mail catcher's inbox: what a comms person sees on their laptop, in a real browser too."""

import dataclasses
import datetime as dt
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


# --- the catcher worth keeping open: search, views, links, calendar, spam, replies ---------------

REPLIES = "replies@northwind.example"


@pytest.fixture(scope="module")
def walked_mail(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A week of the example cohort kept by the catcher (welcome, kickoff with its calendar entry, the
    owners' digest), then three replies read by drip ingest: "done" to the reply-done address, "not
    yet" in the thread (forwarded to comms@, so the forward is kept here too) and an out-of-office."""
    from click.testing import CliRunner

    from drip.cli import main
    from drip.web.caught import Shelf, parse
    from drip.web.linkcheck import find_links

    folder = tmp_path_factory.mktemp("walked")
    url = f"sqlite:///{folder / 'd.db'}"
    env = {"DRIP_MAIL_DIR": str(folder / "mail"), "DRIP_CATCHER_PORT": str(_free_port()),
           "DRIP_DATABASE_URL": url, "DRIP_REPLY_ADDRESS": REPLIES, "XDG_CACHE_HOME": str(folder / "cache")}  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(main, ["start", str(EXAMPLE), "--now", "2027-01-04T12:00Z"], env=env).exit_code == 0
    ran = runner.invoke(
        main, ["run", "--once", "--now", "2027-01-11T20:00Z", "--until", "2027-01-19T20:00Z"], env=env
    )
    assert ran.exit_code == 0 and "24 sent" in ran.output, ran.output
    shelf = Shelf(folder / "mail")
    kickoffs = {s.to: s for s in shelf.summaries(shelf.names()) if s.step == "short-kickoff"}
    margaret = next(s for to, s in kickoffs.items() if "margaret.okafor" in to)
    david = next(s for to, s in kickoffs.items() if "david.chen" in to)
    arjun = next(s for to, s in kickoffs.items() if "arjun.mehta" in to)
    done = next(
        link
        for link in find_links(parse((shelf.folder / margaret.name).read_bytes()))
        if link.kind == "reply"
    )
    address = done.url.removeprefix("mailto:").split("?")[0]

    def thread(summary) -> str:
        return str(parse((shelf.folder / summary.name).read_bytes())["Message-ID"])

    replies = {
        "done.eml": f"From: Margaret Okafor <margaret.okafor@northwind.example>\r\nTo: {address}\r\n"
        "Subject: Done: set up your profile\r\nMessage-ID: <done-1@mail.example>\r\n"
        "Date: Wed, 13 Jan 2027 15:00:00 +0000\r\n\r\nDone!\r\n",
        "later.eml": f"From: David Chen <david.chen@northwind.example>\r\nTo: {REPLIES}\r\n"
        f"Subject: Re: your first step\r\nMessage-ID: <later-1@mail.example>\r\nIn-Reply-To: {thread(david)}\r\n"
        "Date: Wed, 13 Jan 2027 16:00:00 +0000\r\n\r\nNot yet <b>sorry</b> & I'll get to it next week.\r\n",
        "away.eml": f"From: Arjun Mehta <arjun.mehta@northwind.example>\r\nTo: {REPLIES}\r\n"
        f"Subject: Automatic reply: away\r\nMessage-ID: <away-1@mail.example>\r\nIn-Reply-To: {thread(arjun)}\r\n"
        "Auto-Submitted: auto-replied\r\nDate: Wed, 13 Jan 2027 17:00:00 +0000\r\n\r\nI am out of the office.\r\n",
    }
    for name, text in replies.items():
        (folder / name).write_bytes(text.encode())
        read = runner.invoke(main, ["ingest", str(folder / name), "--now", "2027-01-13T18:00Z"], env=env)
        assert read.exit_code == 0, read.output
    return folder / "mail", url


def walked_app(walked_mail: tuple[Path, str], **overrides):
    folder, url = walked_mail
    return app_for(folder, database_url=url, reply_address=REPLIES, **overrides)


def first(folder: Path, **fields: str) -> str:
    from drip.web.caught import Shelf

    shelf = Shelf(folder)
    found = [s for s in shelf.summaries(shelf.names()) if all(v in getattr(s, k) for k, v in fields.items())]
    assert found, fields
    return found[-1].name


def shown(page) -> str:
    """A page's words, as read: tags out, entities decoded, spaces folded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page.get_data(as_text=True))).split())


@pytest.mark.parametrize(
    ("query", "count", "expect"),
    [
        ("", 26, "26 messages"),
        ("to:margaret", 2, "Margaret, three small steps"),
        ("MARGARET kickoff", 1, "Margaret"),
        ("step:welcome", 12, "Sofia, hoy empiezan"),
        ("cohort:example", 24, "example"),
        ("subject:jetzt", 1, "Thomas, jetzt geht es los"),
        ('"three small steps" to:olivia', 1, "Olivia, three small steps start now"),
        ("田中", 2, "田中 健二様"),
        ("nobody-at-all", 0, "No message matches"),
    ],
)
def test_the_search_finds_by_recipient_subject_step_and_cohort(
    walked_mail: tuple[Path, str], query: str, count: int, expect: str
) -> None:
    page = walked_app(walked_mail).test_client().get("/inbox", query_string={"q": query})
    assert page.status_code == 200
    assert page.get_data(as_text=True).count("<tr>") == (count + 1 if count else 0)
    assert expect in shown(page)
    if query:
        assert f"{count} of 26 messages match" in shown(page)


def test_the_list_marks_forwards_and_digests(walked_mail: tuple[Path, str]) -> None:
    words = shown(walked_app(walked_mail).test_client().get("/inbox"))
    assert words.count("forwarded reply") == 1 and "Reply from David Chen" in words
    assert words.count(" digest ") == 1


def test_each_view_of_a_message(walked_mail: tuple[Path, str]) -> None:
    folder, _ = walked_mail
    client = walked_app(walked_mail).test_client()
    name = first(folder, step="short-kickoff", to="margaret")
    preview = client.get(f"/inbox/{name}")
    assert preview.status_code == 200
    frame = re.search(r"<iframe[^>]*>", preview.get_data(as_text=True)).group(0)
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in frame
    assert "allow-scripts" not in frame and "email desktop light" in frame
    phone = client.get(f"/inbox/{name}?view=phone&scheme=dark").get_data(as_text=True)
    assert 'class="email phone dark"' in phone and f"/inbox/{name}/html?scheme=dark" in phone

    text = shown(client.get(f"/inbox/{name}/text"))
    assert "Margaret" in text and "/done/" in text

    headers = client.get(f"/inbox/{name}/headers").get_data(as_text=True)
    names = re.findall(r'<th scope="row">([^<]+)</th>', headers)
    raw = (folder / name).read_bytes().decode()
    assert names == re.findall(r"^([!-9;-~]+):", raw.split("\r\n\r\n", 1)[0], re.MULTILINE)
    assert {"X-Drip-Step", "X-Drip-Cohort", "List-Unsubscribe", "Thread-Index"} <= set(names)

    source = client.get(f"/inbox/{name}/source")
    assert (
        unescape(re.search(r'<pre class="source">(.*?)</pre>', source.get_data(as_text=True), re.S).group(1))
        == raw
    )


def test_headers_are_decoded_and_kept_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    name = catcher.keep(
        folder,
        b"Received: by one\r\nSubject: =?utf-8?q?Caf=C3=A9_=E2=80=94_deadline?=\r\nReceived: by two\r\n"
        b"From: =?utf-8?b?w4lsb8Ovc2U=?= <e@example.com>\r\nX-Folded: one\r\n  two\r\n\r\nhi\r\n",
    ).name
    page = app_for(folder).test_client().get(f"/inbox/{name}/headers").get_data(as_text=True)
    rows = [
        (unescape(n), unescape(v))
        for n, v in re.findall(r'<th scope="row">([^<]*)</th><td>([^<]*)</td>', page)
    ]
    assert rows == [("Received", "by one"), ("Subject", "Café — deadline"), ("Received", "by two"),
                    ("From", "Éloïse <e@example.com>"), ("X-Folded", "one two")]  # fmt: skip


def test_the_calendar_entry_reads_as_in_a_calendar_and_downloads(walked_mail: tuple[Path, str]) -> None:
    from icalendar import Calendar

    folder, _ = walked_mail
    client = walked_app(walked_mail).test_client()
    name = first(folder, step="short-kickoff", to="margaret")
    page = client.get(f"/inbox/{name}/attachments")
    words = shown(page)
    assert "deadline.ics" in words and "text/calendar" in words
    assert "Starts Monday 1 February 2027, all day" in words and "Ends" not in words
    assert "Organizer Northwind Communications <comms@northwind.example>" in words
    assert "Description" in words
    download = client.get(f"/inbox/{name}/attachments/1")
    assert download.status_code == 200 and download.mimetype == "text/calendar"
    assert download.headers["Content-Disposition"] == 'attachment; filename="deadline.ics"'
    event = next(iter(Calendar.from_ical(download.data).walk("VEVENT")))
    assert str(event["SUMMARY"]) in words
    assert client.get(f"/inbox/{name}/attachments/2").status_code == 404


def test_an_attachment_is_always_a_download(walked_mail: tuple[Path, str]) -> None:
    folder, _ = walked_mail
    client = walked_app(walked_mail).test_client()
    digest = first(folder, kind="digest")
    assert "example-report.html" in shown(client.get(f"/inbox/{digest}/attachments"))
    report = client.get(f"/inbox/{digest}/attachments/1")
    assert report.mimetype == "application/octet-stream"
    assert report.headers["Content-Disposition"].startswith("attachment;") and b"<html" in report.data


def test_the_link_check_reads_drips_own_links_without_acting(walked_mail: tuple[Path, str]) -> None:
    import sqlite3

    folder, url = walked_mail
    name = first(folder, step="short-kickoff", to="olivia")
    counts = "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM goals WHERE status = 'done')"
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        before = db.execute(counts).fetchone()
    page = walked_app(walked_mail).test_client().get(f"/inbox/{name}/links")
    assert page.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", page.get_data(as_text=True), re.S)[1:]
    checked = {re.search(r'class="tag">([^<]+)<', row).group(1): shown_row(row) for row in rows}
    assert set(checked) == {"done", "unsubscribe", "reply-done", "unsubscribe-by-mail"}
    for kind in ("done", "unsubscribe", "reply-done", "unsubscribe-by-mail"):
        assert "valid" in checked[kind] and "Olivia Brennan" in checked[kind], checked[kind]
    assert "goal short" in checked["done"] and "in HTML, text" in checked["done"]
    assert "in List-Unsubscribe" in checked["unsubscribe-by-mail"]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        assert db.execute(counts).fetchone() == before


def shown_row(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        ("tamper", "bad"),
        ("expire", "expired"),
        ("gone", "not-found"),
        ("nodb", "unchecked"),
    ],
)
def test_the_link_check_tells_a_bad_link_from_a_good_one(
    walked_mail: tuple[Path, str], tmp_path: Path, change: str, verdict: str
) -> None:
    from drip.core.tokens import Action, make_token

    _, url = walked_mail
    keys = _keys(url)
    token = make_token(keys, Action.DONE, 1, None)
    if change == "tamper":
        token = token[:-1] + ("a" if token[-1] != "a" else "b")
    elif change == "expire":
        token = make_token(keys, Action.DONE, 1, dt.date(2021, 1, 1))
    elif change == "gone":
        token = make_token(keys, Action.DONE, 987654, None)
    folder = tmp_path / "mail"
    name = catcher.keep(
        folder,
        f"From: a@example.com\r\nTo: b@example.com\r\nSubject: links\r\nContent-Type: text/html\r\n\r\n"
        f'<a href="https://drip.example/done/{token}">done</a> <a href="javascript:alert(1)">x</a>\r\n'.encode(),
    ).name
    database = f"sqlite:///{tmp_path / 'none.db'}" if change == "nodb" else url
    page = app_for(folder, database_url=database).test_client().get(f"/inbox/{name}/links")
    assert f'class="verdict {verdict}"' in page.get_data(as_text=True)
    assert 'href="javascript:' not in page.get_data(as_text=True)
    assert not (tmp_path / "none.db").exists()


def _keys(url: str) -> tuple[str, ...]:
    from drip.storage.keyring import signing_keys
    from drip.storage.store import Store

    with Store(url) as store, store.reading() as conn:
        return tuple(signing_keys(load_settings(environ={}), conn))


def test_the_replies_drip_read_beside_the_mail(walked_mail: tuple[Path, str]) -> None:
    client = walked_app(walked_mail).test_client()
    page = client.get("/inbox/replies")
    assert page.status_code == 200
    rows = [shown_row(row) for row in re.findall(r"<tr>(.*?)</tr>", page.get_data(as_text=True), re.S)[1:]]
    assert len(rows) == 3
    away, later, done = rows  # newest first
    assert "arjun.mehta@northwind.example" in away and "ignored an automatic reply" in away
    assert "david.chen@northwind.example" in later and "forwarded to comms@northwind.example" in later
    assert "Not yet <b>sorry</b> & I'll get to it next week." in later and "Open the forward" in later
    assert "<b>sorry</b>" not in page.get_data(as_text=True)  # escaped, never markup
    assert "margaret.okafor@northwind.example" in done and "completed goal short" in done
    forward = re.search(r'href="/inbox/([^"]+)">Open the forward', page.get_data(as_text=True)).group(1)
    assert "Reply from David Chen" in shown(client.get(f"/inbox/{forward}"))
    assert client.get("/inbox/updates.json").json["replies"] == 3


def test_the_replies_without_a_database(tmp_path: Path) -> None:
    page = (
        app_for(tmp_path / "mail", database_url=f"sqlite:///{tmp_path / 'none.db'}")
        .test_client()
        .get("/inbox/replies")
    )
    assert page.status_code == 200 and "No database here yet" in shown(page)
    assert not (tmp_path / "none.db").exists()


def test_updates_say_when_mail_arrives(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    client = app_for(folder, database_url=f"sqlite:///{tmp_path / 'none.db'}").test_client()
    assert client.get("/inbox/updates.json").json == {"messages": 0, "newest": "", "replies": 0}
    name = catcher.keep(folder, b"From: a@example.com\r\nSubject: one\r\n\r\nhi\r\n").name
    assert client.get("/inbox/updates.json").json == {"messages": 1, "newest": name, "replies": 0}


def test_hostile_names_and_subjects_are_shown_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    name = catcher.keep(
        folder,
        (f"From: \"{hostile}\" <evil@example.com>\r\nTo: \"{hostile}\" <x@example.com>\r\n"
         f"Subject: {hostile}\r\nX-Drip-Step: {hostile}\r\nX-Drip-Cohort: {hostile}\r\n"
         f"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{hostile}\r\n"
         f"--b\r\nContent-Type: text/calendar\r\nContent-Disposition: attachment; filename=\"{hostile}.ics\"\r\n\r\n"
         f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:{hostile}\r\nDTSTART:20270201T090000Z\r\n"
         f"DESCRIPTION:{hostile}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n--b--\r\n").encode(),
    ).name  # fmt: skip
    client = app_for(folder, database_url=f"sqlite:///{tmp_path / 'none.db'}").test_client()
    for path in ("", f"/{name}", f"/{name}/text", f"/{name}/headers", f"/{name}/source",
                 f"/{name}/attachments", f"/{name}/links", f"/{name}/spam"):  # fmt: skip
        page = client.get(f"/inbox{path}", query_string={"q": hostile} if not path else {})
        html = page.get_data(as_text=True)
        assert page.status_code == 200, path
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;" in html, path
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    calendar = shown(client.get(f"/inbox/{name}/attachments"))
    assert f"Event {hostile}" in calendar and "Monday 1 February 2027, 09:00 UTC" in calendar
    download = client.get(f"/inbox/{name}/attachments/1")
    assert re.fullmatch(r'attachment; filename="[\w. -]+"', download.headers["Content-Disposition"])


@pytest.mark.parametrize(
    "path",
    ["/inbox/nope/text", "/inbox/1795788960933-f4c7a1db.eml/headers", "/inbox/..%2Fd.db/source",
     "/inbox/x.eml/links", "/inbox/1795788960933-f4c7a1dz.eml/spam", "/inbox/1795788960933-f4c7a1db.eml/attachments/1",
     "/inbox/1795788960933-f4c7a1db.eml/html"],
)  # fmt: skip
def test_views_refuse_anything_but_kept_files(tmp_path: Path, path: str) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (tmp_path / "d.db").write_bytes(b"secret")
    assert app_for(folder).test_client().get(path).status_code == 404


def test_the_dark_preview_makes_the_emails_dark_rules_apply(walked_mail: tuple[Path, str]) -> None:
    folder, _ = walked_mail
    client = walked_app(walked_mail).test_client()
    name = first(folder, step="short-kickoff", to="margaret")
    light = client.get(f"/inbox/{name}/html").get_data(as_text=True)
    dark = client.get(f"/inbox/{name}/html?scheme=dark")
    assert "prefers-color-scheme: dark" in light and "prefers-color-scheme" not in dark.get_data(as_text=True)
    assert '<meta name="color-scheme" content="dark">' in dark.get_data(as_text=True)
    policy = dark.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox allow-same-origin allow-popups") and "allow-scripts" not in policy
    assert "script-src" not in policy and "default-src 'none'" in policy


def test_the_spam_score_is_worked_out_when_asked(walked_mail: tuple[Path, str], monkeypatch) -> None:
    folder, _ = walked_mail
    name = first(folder, step="welcome", to="margaret")
    client = walked_app(walked_mail).test_client()
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv("PATH", "/nonexistent")
        assert "SpamAssassin is not installed" in shown(client.get(f"/inbox/{name}/spam?check=1"))
    if shutil.which("spamassassin") is None:
        pytest.skip("SpamAssassin is not installed (Debian package spamassassin)")
    asked = shown(client.get(f"/inbox/{name}/spam"))
    assert "Check with SpamAssassin" in asked and "points" not in asked
    scored = shown(client.get(f"/inbox/{name}/spam?check=1"))
    points = float(re.search(r"(-?[\d.]+) points; 5.0 would be spam", scored).group(1))
    assert points < 2.0 and "lets this through" in scored
    assert "NO_RELAYS" in scored  # the rules that fired, with what they mean
    assert f"{points:.1f} points" in shown(client.get(f"/inbox/{name}/spam"))  # kept: not run again


def test_thousands_of_messages_are_read_once(tmp_path: Path, monkeypatch) -> None:
    """A kept file never changes: each is parsed for the list once, however often the list is shown."""
    from drip.web import caught

    folder = tmp_path / "mail"
    for number in range(3000):
        catcher.keep(
            folder,
            f"From: a@example.com\r\nTo: p{number}@example.com\r\nSubject: n{number}\r\n\r\nx\r\n".encode(),
        )
    read = []
    monkeypatch.setattr(caught, "_head", lambda path, real=caught._head: read.append(path) or real(path))
    client = app_for(folder, database_url=f"sqlite:///{tmp_path / 'none.db'}").test_client()
    assert "3000 messages" in shown(client.get("/inbox"))
    assert len(read) == 3000
    found = client.get("/inbox", query_string={"q": "to:p2999@"})
    assert found.get_data(as_text=True).count("<tr>") == 2 and len(read) == 3000
    name = catcher.keep(
        folder, b"From: a@example.com\r\nTo: late@example.com\r\nSubject: late\r\n\r\nx\r\n"
    ).name
    client.get(f"/inbox/{name}")
    assert "3001 messages" in shown(client.get("/inbox")) and len(read) == 3001


def test_a_calendar_entry_that_cannot_be_read_is_shown_as_written(tmp_path: Path) -> None:
    """A calendar file from another sender that icalendar refuses is still shown, as text."""
    broken = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:not-a-date\r\nSUMMARY:Board <b>day</b>\r\n"
    message = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: invite\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
        b'--b\r\nContent-Type: text/calendar; method=REQUEST\r\nContent-Disposition: attachment; filename="x.ics"'
        b"\r\n\r\n" + broken + b"\r\n--b--\r\n"
    )
    name = catcher.keep(tmp_path, message).name
    page = app_for(tmp_path).test_client().get(f"/inbox/{name}/attachments").get_data(as_text=True)
    assert "DTSTART:not-a-date" in page and "Board &lt;b&gt;day&lt;/b&gt;" in page
