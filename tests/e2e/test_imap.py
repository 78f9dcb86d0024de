"""Replies read from a real Dovecot IMAP server on loopback: over TLS and STARTTLS, flagged, never twice."""

import datetime as dt
import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

import token_server
from conftest import EMAILS, CohortFactory, _free_port, wait_for_pages
from drip.cli import main
from drip.config import load_settings
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.replies.mailboxes import IMAPSource, MailboxError
from drip.storage import keyring
from drip.storage.store import Store, delivery_table, goal_table, participant_table
from token_server import TokenServer

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
REPLIES = Path(__file__).parent.parent / "data" / "replies"
UTC = dt.UTC


@dataclass
class Dovecot:
    imap_port: int
    imaps_port: int
    cert: Path
    user: str = "drip"
    password: str = "s3cret/with@odd+chars"

    def url(self, *, tls: bool = True, password: str | None = None) -> str:
        from urllib.parse import quote

        secret = quote(password or self.password, safe="")
        if tls:
            return f"imaps://{self.user}:{secret}@127.0.0.1:{self.imaps_port}/INBOX"
        return f"imap://{self.user}:{secret}@127.0.0.1:{self.imap_port}/INBOX?starttls=true"

    def client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
        imap.login(self.user, self.password)
        imap.select("INBOX")
        return imap

    def append(self, *messages: bytes) -> None:
        imap = self.client()
        for data in messages:
            imap.append("INBOX", None, None, data)
        imap.logout()

    def flags(self) -> list[str]:
        imap = self.client()
        _, data = imap.fetch("1:*", "(FLAGS)")
        imap.logout()
        return [item.decode() for item in data if item]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@contextmanager
def running_dovecot(user: str = "drip", introspection_url: str | None = None) -> Iterator[Dovecot]:
    """Run Dovecot on loopback; with ``introspection_url``, it also takes OAuth2 logins (XOAUTH2,
    OAUTHBEARER), asking that endpoint whether each token is good (its oauth2 passdb)."""
    if DOVECOT is None or os.geteuid() != 0:
        if os.environ.get("DRIP_TEST_REQUIRE_DOVECOT"):
            pytest.fail(
                "Dovecot is required here (DRIP_TEST_REQUIRE_DOVECOT) but is not installed or not runnable"
            )
        pytest.skip("Dovecot (Debian's dovecot-imapd) is not installed, or the tests do not run as root")
    # Dovecot's own users must reach the files: not under pytest's private (0700) temporary folder.
    root = Path(tempfile.mkdtemp(prefix="drip-dovecot-"))
    root.chmod(0o755)
    for folder in ("run", "state", "mail", "home"):
        (root / folder).mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    shutil.chown(root / "home", "nobody", "nogroup")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = Dovecot(_free_port(), _free_port(), cert, user)
    (root / "users").write_text(f"{server.user}:{{PLAIN}}{server.password}\n")
    mechanisms, oauth_passdb = "plain", ""
    if introspection_url:
        mechanisms = "plain xoauth2 oauthbearer"
        (root / "oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = {introspection_url}\nforce_introspection = yes\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        )
        oauth_passdb = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {root}/oauth2.conf.ext\n}}"
    (root / "dovecot.conf").write_text(
        f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = drip-test-{server.imap_port}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
{oauth_passdb}
passdb {{
  driver = passwd-file
  mechanisms = plain
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {server.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {server.imaps_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
    )
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", server.imaps_port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail(f"Dovecot did not start: {(root / 'dovecot.log').read_text(errors='replace')}")
    try:
        yield server
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def trusted(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    """Trust the server's certificate as an operator trusts their organisation's own CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))
    return dovecot


@pytest.fixture
def empty_inbox(dovecot: Dovecot) -> Dovecot:
    imap = dovecot.client()
    _, count = imap.select("INBOX")
    if count[0] != b"0":
        imap.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
        imap.expunge()
    imap.logout()
    return dovecot


@pytest.fixture
def database(tmp_path: Path, make_cohort: CohortFactory) -> str:
    url = f"sqlite:///{tmp_path / 'drip.db'}"
    with Store(url) as db, db.transaction() as conn:
        enrol.sync_cohort(conn, load_cohort(make_cohort(), [EMAILS]), dt.datetime(2027, 1, 4, 12, tzinfo=UTC))
        keyring.prepare(load_settings(environ={}), conn)
        conn.execute(
            update(delivery_table)
            .where(
                delivery_table.c.step == "short-kickoff",
                delivery_table.c.participant_id.in_(
                    select(participant_table.c.id).where(participant_table.c.email == "ana@example.com")
                ),
            )
            .values(
                status="sent",
                sent_at=dt.datetime(2027, 1, 12, 14, tzinfo=UTC),
                message_id="<kickoff.ana@drip.test>",
            )
        )
    return url


def reply(name: str) -> bytes:
    """A sample reply as Ana's, in the thread of her kickoff (drip checks that the sender is hers)."""
    data = (REPLIES / name).read_bytes().replace(b"<PLACEHOLDER@drip.test>", b"<kickoff.ana@drip.test>")
    return data.replace(b"ben@example.com", b"ana@example.com").replace(
        b"cleo@example.com", b"ana@example.com"
    )


def ana_short(url: str) -> str:
    with Store(url, migrate=False) as db, db.reading() as conn:
        return conn.execute(
            select(goal_table.c.status)
            .join(participant_table)
            .where(participant_table.c.email == "ana@example.com", goal_table.c.goal == "short")
        ).scalar_one()


def ingest(database: str, *args: str, env: dict | None = None) -> str:
    result = CliRunner().invoke(
        main, ["--database-url", database, "ingest", *args, "--now", "2027-01-13T16:00Z"], env=env or {}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_replies_over_imaps_are_acted_on_once_and_left_unread(
    trusted: Dovecot, empty_inbox: Dovecot, database: str
) -> None:
    unrelated = b"From: it@example.com\r\nTo: comms@example.com\r\nSubject: Printer\r\nMessage-ID: <p@x>\r\n\r\nFixed.\r\n"
    trusted.append(reply("out_of_office.eml"), reply("outlook_top_posted.eml"), unrelated)
    out = ingest(database, "--imap", trusted.url())
    assert (
        "3 messages:" in out
        and "1 completed a goal" in out
        and "1 auto-replies" in out
        and "1 not drip's" in out
    )
    assert ana_short(database) == "done"
    flags = trusted.flags()
    assert all("$DripProcessed" in line for line in flags) and not any("\\Seen" in line for line in flags)
    assert "no new messages" in ingest(database, "--imap", trusted.url())


def test_a_message_too_large_is_never_fetched_and_set_aside_once(
    trusted: Dovecot, empty_inbox: Dovecot, database: str
) -> None:
    """Sizes first (RFC822.SIZE), then bodies in bounded batches: a 2 MB reply is reported, not read."""
    big = reply("gmail_top_posted.eml") + b"x" * 2_000_000
    trusted.append(big, reply("apple_mail.eml"))
    env = {"DRIP_MAX_MESSAGE_BYTES": "1000000"}
    out = ingest(database, "--imap", trusted.url(), env=env)
    assert "2 messages:" in out and "1 too large to read" in out and "1 completed a goal" in out
    assert all("$DripProcessed" in line for line in trusted.flags())
    assert "no new messages" in ingest(database, "--imap", trusted.url(), env=env)


def test_starttls_and_drip_inbox_url(trusted: Dovecot, empty_inbox: Dovecot, database: str) -> None:
    trusted.append(reply("gmail_top_posted.eml"))
    out = ingest(database, env={"DRIP_INBOX_URL": trusted.url(tls=False)})
    assert "1 message: 1 completed a goal" in out


def test_drip_run_reads_the_inbox_before_sending(
    trusted: Dovecot, empty_inbox: Dovecot, database: str, tmp_path: Path
) -> None:
    trusted.append(reply("apple_mail.eml"))
    env = {"DRIP_INBOX_URL": trusted.url(), "DRIP_SMTP_URL": f"file://{tmp_path / 'outbox'}"}
    result = CliRunner().invoke(
        main, ["--database-url", database, "run", "--once", "--now", "2027-01-13T16:00Z"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Inbox: 1 message: 1 completed a goal." in result.output
    assert ana_short(database) == "done"


def test_a_running_drip_serves_the_pages_and_polls_the_inbox(
    trusted: Dovecot, empty_inbox: Dovecot, database: str, tmp_path: Path
) -> None:
    """`drip run` as deployed: its web pages answer, and a reply that arrives later is read on schedule."""
    import signal
    import sys

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    env.update(
        DRIP_INBOX_URL=trusted.url(),
        DRIP_INBOX_EVERY="10",
        DRIP_SMTP_URL=f"file://{tmp_path / 'outbox'}",
        DRIP_BASE_URL=f"http://127.0.0.1:{port}",
    )
    drip = Path(sys.executable).with_name("drip")
    worker = subprocess.Popen(
        [str(drip), "--database-url", database, "run", "--now", "2027-01-13T16:00Z"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_pages(worker, port, "drip run")  # the pages come up with the worker
        time.sleep(1)  # past the first read of the inbox, made at start
        trusted.append(reply("outlook_top_posted.eml"))
        deadline = time.monotonic() + 30
        while ana_short(database) != "done":
            assert worker.poll() is None and time.monotonic() < deadline, "the reply was never read"
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, said = worker.communicate(timeout=30)
    assert worker.returncode == 0, said
    assert "the inbox every 10 s" in said and f"Web pages on 127.0.0.1:{port}" in said


def test_a_wrong_password_or_an_untrusted_certificate_says_what_to_change(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxError, match="certificate is not trusted .* set SSL_CERT_FILE"):
        IMAPSource(dovecot.url())
    os.environ["SSL_CERT_FILE"] = str(dovecot.cert)
    try:
        with pytest.raises(MailboxError, match="refused the login of drip") as caught:
            IMAPSource(dovecot.url(password="wrong"))
        assert "wrong" not in str(caught.value)
        with pytest.raises(MailboxError, match="no folder 'Nowhere'"):
            IMAPSource(dovecot.url().replace("/INBOX", "/Nowhere"))
    finally:
        del os.environ["SSL_CERT_FILE"]


# --- OAuth2 (XOAUTH2, OAUTHBEARER) against Dovecot's oauth2 passdb --------------------------------


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenServer]:
    with token_server.running(TokenServer()) as server:
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(tokens: TokenServer) -> Iterator[Dovecot]:
    with running_dovecot("drip@example.com", tokens.introspection_url) as server:
        yield server


def oauth_env(tokens: TokenServer, server: Dovecot) -> dict[str, str]:
    return {
        "DRIP_INBOX_URL": f"imap://drip%40example.com@127.0.0.1:{server.imap_port}/INBOX",
        "DRIP_OAUTH_TOKEN_URL": tokens.url,
        "DRIP_OAUTH_CLIENT_ID": token_server.CLIENT_ID,
        "DRIP_OAUTH_CLIENT_SECRET": token_server.SECRET,
        "DRIP_OAUTH_SCOPE": token_server.SCOPE,
    }


def test_replies_are_read_with_an_oauth2_token(
    oauth_dovecot: Dovecot, tokens: TokenServer, database: str
) -> None:
    oauth_dovecot.append(reply("gmail_top_posted.eml"))
    out = ingest(database, env=oauth_env(tokens, oauth_dovecot))
    assert "1 message: 1 completed a goal" in out
    assert all("$DripProcessed" in line for line in oauth_dovecot.flags())
    # revoked behind drip's back: the next read gets a new token and logs in
    tokens.revoke_all()
    asked = len(tokens.requests)
    assert "no new messages" in ingest(database, env=oauth_env(tokens, oauth_dovecot))
    assert len(tokens.requests) > asked


def test_a_token_dovecot_refuses_says_what_to_check(oauth_dovecot: Dovecot, tokens: TokenServer) -> None:
    from drip.sending.oauth import Client, TokenSource

    class Stale(TokenSource):
        def token(self, user: str) -> str:
            return "tok-never-issued"

    source = Stale(Client(tokens.url, token_server.CLIENT_ID, token_server.SECRET, token_server.SCOPE))
    url = f"imap://drip%40example.com@127.0.0.1:{oauth_dovecot.imap_port}/INBOX"
    with pytest.raises(
        MailboxError, match="refused the OAuth2 token of drip@example.com: .*IMAP.AccessAsApp"
    ):
        IMAPSource(url, oauth=source)
    with pytest.raises(MailboxError, match="would send an access token in clear"):
        IMAPSource(url.replace("127.0.0.1", "imap.example.com"), oauth=source)
