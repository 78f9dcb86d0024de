"""OAuth2 logins to SMTP: real tokens from a loopback token endpoint, checked by a real SMTP server."""

import base64
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import token_server
from conftest import CohortFactory, SMTPServer, _Collector, _free_port
from drip.cli import main
from drip.config import load_settings
from drip.core.errors import ConfigError
from drip.sending.oauth import Client, OAuthError, TokenSource, oauthbearer, xoauth2
from drip.sending.transport import RelayError, open_transport
from token_server import CLIENT_ID, SCOPE, SECRET, TokenServer

USER = "drip@example.com"
KEY = rsa.generate_private_key(65537, 2048)


class OAuthCollector(_Collector):
    """aiosmtpd's collector that takes only OAuth2 logins, checking each token with the token server."""

    def __init__(self, tokens: TokenServer) -> None:
        super().__init__()
        self.tokens = tokens
        self.logins: list[tuple[str, str]] = []
        #: what the client answered to each error report
        self.after_error: list[bytes] = []

    async def _initial(self, server, args) -> bytes | None:
        from aiosmtpd.smtp import MISSING

        if len(args) > 1:
            return base64.b64decode(args[1])
        blob = await server.challenge_auth("")
        return None if blob is MISSING else blob

    async def _check(self, server, mechanism: str, user: str, auth: str):
        from aiosmtpd.smtp import AuthResult

        self.logins.append((mechanism, user))
        if auth.startswith("Bearer ") and self.tokens.valid(auth.removeprefix("Bearer "), user):
            return AuthResult(success=True, auth_data=user)
        # the mechanisms' failure: a 334 carrying a JSON status, an empty answer, then 535
        self.after_error.append(
            await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        )
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")

    async def auth_XOAUTH2(self, server, args):  # noqa: N802 - aiosmtpd's naming of mechanisms
        blob = await self._initial(server, args)
        fields = dict(part.split("=", 1) for part in (blob or b"").decode().split("\x01") if "=" in part)
        return await self._check(server, "XOAUTH2", fields.get("user", ""), fields.get("auth", ""))

    async def auth_OAUTHBEARER(self, server, args):  # noqa: N802 - aiosmtpd's naming of mechanisms
        blob = (await self._initial(server, args) or b"").decode()
        gs2, _, rest = blob.partition("\x01")
        user = gs2.split(",")[1].removeprefix("a=").replace("=2C", ",").replace("=3D", "=")
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        return await self._check(server, "OAUTHBEARER", user, fields.get("auth", ""))


@pytest.fixture
def tokens() -> Iterator[TokenServer]:
    with token_server.running(TokenServer()) as server:
        yield server


def oauth_relay(tokens: TokenServer, mechanisms: set[str]):
    """An SMTP server on loopback that wants an OAuth2 login, offering ``mechanisms``."""
    from aiosmtpd.controller import Controller

    handler = OAuthCollector(tokens)
    exclude = {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"} - mechanisms
    controller = Controller(
        handler, hostname="127.0.0.1", port=_free_port(), auth_required=True, auth_require_tls=False,
        auth_exclude_mechanism=exclude,
    )  # fmt: skip
    controller.start()
    return controller, SMTPServer("127.0.0.1", controller.port, handler)


@pytest.fixture(params=[{"XOAUTH2"}, {"XOAUTH2", "OAUTHBEARER"}], ids=["microsoft-365", "google"])
def relay_and_mechanism(
    request: pytest.FixtureRequest, tokens: TokenServer
) -> Iterator[tuple[SMTPServer, str]]:
    controller, server = oauth_relay(tokens, request.param)
    try:
        yield server, "OAUTHBEARER" if "OAUTHBEARER" in request.param else "XOAUTH2"
    finally:
        controller.stop()


def env(tokens: TokenServer, relay: SMTPServer, **more: str) -> dict[str, str]:
    return {
        "DRIP_SMTP_URL": f"smtp://drip%40example.com@127.0.0.1:{relay.port}",
        "DRIP_OAUTH_TOKEN_URL": tokens.url,
        "DRIP_OAUTH_CLIENT_ID": CLIENT_ID,
        "DRIP_OAUTH_CLIENT_SECRET": SECRET,
        "DRIP_OAUTH_SCOPE": SCOPE,
        **more,
    }


def start(runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path) -> list[str]:
    db = ["--database-url", f"sqlite:///{tmp_path / 'drip.db'}"]
    assert (
        runner.invoke(main, [*db, "start", str(make_cohort()), "--now", "2027-01-04T12:00Z"]).exit_code == 0
    )
    return db


def test_drip_run_logs_in_with_a_token_and_sends(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path, tokens: TokenServer, relay_and_mechanism
) -> None:
    relay, mechanism = relay_and_mechanism
    db = start(runner, make_cohort, tmp_path)
    result = runner.invoke(main, [*db, "run", "--once", "--now", "2027-01-11T15:00Z", "--no-web"],
                           env=env(tokens, relay))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(relay.messages) == 3
    assert relay.handler.logins == [(mechanism, USER)]  # one connection, one login
    assert len(tokens.requests) == 1 and tokens.requests[0]["grant_type"] == "client_credentials"
    assert all(token not in result.output for token in tokens.issued), "a token is never shown"


def test_a_refused_token_is_fetched_again_once(tokens: TokenServer, relay_and_mechanism) -> None:
    relay, mechanism = relay_and_mechanism
    source = TokenSource(Client(tokens.url, CLIENT_ID, SECRET, SCOPE))
    first = open_transport(f"smtp://drip%40example.com@127.0.0.1:{relay.port}", source)
    first.send(USER, ["ana@example.com"], b"Subject: one\r\n\r\nhi\r\n", "<1@example.com>")
    first.close()
    tokens.revoke_all()  # revoked (or expired early) while drip still keeps it
    second = open_transport(f"smtp://drip%40example.com@127.0.0.1:{relay.port}", source)
    second.send(USER, ["ana@example.com"], b"Subject: two\r\n\r\nhi\r\n", "<2@example.com>")
    second.close()
    assert len(relay.messages) == 2
    assert relay.handler.logins == [(mechanism, USER)] * 3  # kept, refused, then the new one
    assert len(tokens.requests) == 2
    # RFC 7628: OAUTHBEARER ends a failed login with a lone ^A; XOAUTH2 with an empty line
    assert relay.handler.after_error == [b"\x01" if mechanism == "OAUTHBEARER" else b""]


def test_a_token_is_kept_until_a_minute_before_it_expires(tokens: TokenServer) -> None:
    now = [1_000_000.0]
    tokens.lifetime = 600
    source = TokenSource(Client(tokens.url, CLIENT_ID, SECRET, SCOPE), clock=lambda: now[0])
    first = source.token(USER)
    now[0] += 539
    assert source.token(USER) == first and len(tokens.requests) == 1
    now[0] += 2  # 541 s: within a minute of its end
    assert source.token(USER) != first and len(tokens.requests) == 2


def test_a_refused_client_stops_sending_with_the_endpoints_reason_and_fails_nobody(
    runner: CliRunner, make_cohort: CohortFactory, tmp_path: Path, tokens: TokenServer, relay_and_mechanism
) -> None:
    relay, _ = relay_and_mechanism
    tokens.refuse = True
    db = start(runner, make_cohort, tmp_path)
    result = runner.invoke(main, [*db, "run", "--once", "--now", "2027-01-11T15:00Z", "--no-web"],
                           env=env(tokens, relay, DRIP_OAUTH_CLIENT_SECRET="wrong-secret"))  # fmt: skip
    assert result.exit_code == 1
    assert "refused drip: 401 invalid_client AADSTS7000215: Invalid client secret." in result.output
    assert "wrong-secret" not in result.output
    assert relay.messages == []
    with sqlite3.connect(tmp_path / "drip.db") as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM deliveries WHERE step = 'welcome' GROUP BY 1")
        )
    assert statuses == {"scheduled": 3}, "nothing failed, nothing charged: all wait for a working login"


def test_a_server_without_oauth_says_so(tokens: TokenServer) -> None:
    controller, relay = oauth_relay(tokens, {"PLAIN", "LOGIN"})
    try:
        source = TokenSource(Client(tokens.url, CLIENT_ID, SECRET, SCOPE))
        transport = open_transport(f"smtp://drip%40example.com@127.0.0.1:{relay.port}", source)
        with pytest.raises(RelayError, match=r"offers no OAuth2 login \(it offers LOGIN, PLAIN\)"):
            transport.send(USER, ["ana@example.com"], b"Subject: x\r\n\r\nx\r\n", "<1@example.com>")
    finally:
        controller.stop()


def test_a_token_is_never_sent_in_clear_beyond_this_machine(tokens: TokenServer) -> None:
    source = TokenSource(Client(tokens.url, CLIENT_ID, SECRET, SCOPE))
    with pytest.raises(ConfigError, match=r"use smtps:// or add \?starttls=true"):
        open_transport("smtp://drip%40example.com@smtp.office365.com:587", source)
    with pytest.raises(ConfigError, match="names no user"):
        open_transport("smtp://smtp.office365.com:587?starttls=true", source)
    assert open_transport("smtp://drip%40example.com@smtp.office365.com:587?starttls=true", source)


def self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drip")])
    when = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(when).not_valid_after(when + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def test_a_certificate_instead_of_a_secret(tmp_path: Path, tokens: TokenServer, relay_and_mechanism) -> None:
    relay, _ = relay_and_mechanism
    certificate = self_signed(KEY)
    tokens.certificate = (KEY.public_key(), certificate.public_bytes(serialization.Encoding.DER))
    bundle = tmp_path / "drip-oauth.pem"
    bundle.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    settings = load_settings(environ={**env(tokens, relay, DRIP_OAUTH_CLIENT_CERT_FILE=str(bundle)),
                                      "DRIP_OAUTH_CLIENT_SECRET": ""})  # fmt: skip
    from drip.service import relay as open_relay

    transport = open_relay(settings)
    transport.send(USER, ["ana@example.com"], b"Subject: x\r\n\r\nx\r\n", "<1@example.com>")
    transport.close()
    assert len(relay.messages) == 1
    assert "client_secret" not in tokens.requests[0] and "client_assertion" in tokens.requests[0]
    from drip.sending import oauth

    assert oauth.source_for(settings) is oauth.source_for(settings), "the key is read once, the token shared"
    open_relay(settings).close()
    assert len(tokens.requests) == 1


def test_a_google_service_account_acts_for_the_mailbox(tmp_path: Path, tokens: TokenServer) -> None:
    email = "drip-sender@drip-project.iam.gserviceaccount.com"
    tokens.service_account = (email, KEY.public_key())
    key_file = tmp_path / "service-account.json"
    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file.write_text(json.dumps({"type": "service_account", "client_email": email, "private_key": pem.decode(),
                                    "token_uri": tokens.url}))  # fmt: skip
    controller, relay = oauth_relay(tokens, {"XOAUTH2", "OAUTHBEARER"})
    try:
        settings = load_settings(environ={
            "DRIP_SMTP_URL": f"smtp://drip%40example.com@127.0.0.1:{relay.port}",
            "DRIP_OAUTH_TOKEN_URL": tokens.url, "DRIP_OAUTH_SERVICE_ACCOUNT_FILE": str(key_file),
            "DRIP_OAUTH_SCOPE": "https://mail.google.com/",
        })  # fmt: skip
        from drip.service import relay as open_relay

        transport = open_relay(settings)
        transport.send(USER, ["ana@example.com"], b"Subject: x\r\n\r\nx\r\n", "<1@example.com>")
        transport.close()
    finally:
        controller.stop()
    assert len(relay.messages) == 1
    assert tokens.requests[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert [issued.user for issued in tokens.issued.values()] == [USER]  # a token for that mailbox only


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DRIP_OAUTH_CLIENT_ID": "x"}, "OAuth2 also needs DRIP_OAUTH_TOKEN_URL"),
        ({"DRIP_OAUTH_TOKEN_URL": "https://login.example.com/token", "DRIP_OAUTH_CLIENT_ID": "x"},
         "needs exactly one of DRIP_OAUTH_CLIENT_SECRET"),
        ({"DRIP_OAUTH_TOKEN_URL": "https://login.example.com/token", "DRIP_OAUTH_CLIENT_SECRET": "s",
          "DRIP_OAUTH_SCOPE": SCOPE}, "also needs DRIP_OAUTH_CLIENT_ID"),
        ({"DRIP_OAUTH_TOKEN_URL": "https://login.example.com/token", "DRIP_OAUTH_CLIENT_SECRET": "s",
          "DRIP_OAUTH_CLIENT_ID": "x"}, "OAuth2 also needs DRIP_OAUTH_SCOPE"),
        ({"DRIP_OAUTH_TOKEN_URL": "http://login.example.com/token", "DRIP_OAUTH_CLIENT_ID": "x",
          "DRIP_OAUTH_CLIENT_SECRET": "s"}, "would send drip's credentials in clear; use https://"),
    ],
)  # fmt: skip
def test_an_oauth_set_up_that_cannot_get_a_token_is_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_the_initial_responses_are_as_the_mechanisms_define_them() -> None:
    assert xoauth2("a@b.example", "T") == "user=a@b.example\x01auth=Bearer T\x01\x01"
    assert oauthbearer("a,x=y@b.example", "T", "smtp.example.com", 587) == (
        "n,a=a=2Cx=3Dy@b.example,\x01host=smtp.example.com\x01port=587\x01auth=Bearer T\x01\x01"
    )


def test_an_unreachable_token_endpoint_is_said_plainly() -> None:
    source = TokenSource(Client(f"http://127.0.0.1:{_free_port()}/token", CLIENT_ID, SECRET, SCOPE))
    with pytest.raises(OAuthError, match=r"cannot get a token from http://127\.0\.0\.1:\d+/token"):
        source.token(USER)
