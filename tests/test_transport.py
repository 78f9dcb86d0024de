"""Transports: SMTP settings from a URL, replies mapped to what to do next, files written whole."""

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import SMTPServer, running_smtp_server
from drip.core.errors import ConfigError
from drip.sending.transport import (
    FileTransport,
    PermanentSendError,
    RelayError,
    SMTPTransport,
    TransientSendError,
    open_transport,
    parse_smtp_url,
)

DATA = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://relay.example.com", ("relay.example.com", 25, False, False, None, None)),
        ("smtp://relay.example.com?starttls=true", ("relay.example.com", 587, False, True, None, None)),
        (
            "smtps://u%40corp:p%3Ass@mail.example.com",
            ("mail.example.com", 465, True, False, "u@corp", "p:ss"),
        ),
        ("smtp://relay:2525?timeout=5", ("relay", 2525, False, False, None, None)),
    ],
)
def test_smtp_urls(url: str, expected: tuple) -> None:
    settings = parse_smtp_url(url)
    assert (
        settings.host,
        settings.port,
        settings.tls,
        settings.starttls,
        settings.username,
        settings.password,
    ) == expected
    assert "p:ss" not in repr(settings)


def test_bad_smtp_options() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        parse_smtp_url("smtp://relay?tls=yes")
    with pytest.raises(ConfigError, match="number of seconds"):
        parse_smtp_url("smtp://relay?timeout=soon")


def test_sends_and_reuses_one_connection(relay: SMTPServer) -> None:
    smtp_server = relay
    transport = open_transport(smtp_server.url)
    for n in range(3):
        transport.send("a@example.com", ["b@example.com"], DATA, f"<{n}@x>")
    transport.close()
    assert [m.recipients for m in smtp_server.messages] == [["b@example.com"]] * 3


@pytest.mark.parametrize(
    ("reply", "error"),
    [("550 5.1.1 No such user", PermanentSendError), ("451 4.3.0 Try again later", TransientSendError)],
)
def test_server_replies_decide_permanent_or_transient(
    smtp_server: SMTPServer, reply: str, error: type
) -> None:
    smtp_server.handler.refuse_with = reply
    transport = SMTPTransport(parse_smtp_url(smtp_server.url))
    with pytest.raises(error, match=reply.split()[0]):
        transport.send("a@example.com", ["b@example.com"], DATA, "<1@x>")
    smtp_server.handler.refuse_with = None
    transport.send("a@example.com", ["b@example.com"], DATA, "<2@x>")  # the connection is still usable
    transport.close()
    assert len(smtp_server.messages) == 1


def test_an_unreachable_server_pauses_sending() -> None:
    transport = SMTPTransport(parse_smtp_url("smtp://127.0.0.1:1?timeout=2"))
    with pytest.raises(RelayError, match="cannot reach"):
        transport.send("a@example.com", ["b@example.com"], DATA, "<1@x>")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("smtp://relay.invalid", "cannot reach the SMTP server relay.invalid:25"),
        ("smtps://{server}", "TLS with 127.0.0.1:.* failed: .*does it speak TLS from the start"),
        ("smtp://{server}?starttls=true", "does not offer STARTTLS"),
        (
            "smtp://drip:secret@{server}",
            r"does not offer a login \(AUTH\) on this connection; add \?starttls=true",
        ),
    ],
    ids=["no such host", "not TLS", "no STARTTLS", "no login without TLS"],
)
def test_a_relay_set_up_wrong_pauses_sending_and_says_what_to_change(
    smtp_server: SMTPServer, url: str, message: str
) -> None:
    transport = SMTPTransport(parse_smtp_url(url.format(server=f"{smtp_server.host}:{smtp_server.port}")))
    with pytest.raises(RelayError, match=message) as caught:
        transport.send("a@example.com", ["b@example.com"], DATA, "<1@x>")
    assert "secret" not in str(caught.value)
    assert smtp_server.messages == []


@pytest.fixture(scope="module")
def own_ca_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as an organisation's own CA would issue."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "relay.pem", folder / "relay.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_a_relay_with_a_private_ca_works_once_trusted(
    own_ca_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = own_ca_certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with running_smtp_server(ssl_context=context) as server:
        url = f"smtps://{server.host}:{server.port}"
        with pytest.raises(RelayError, match="certificate is not trusted.*set SSL_CERT_FILE"):
            SMTPTransport(parse_smtp_url(url)).send("a@example.com", ["b@example.com"], DATA, "<1@x>")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        transport = SMTPTransport(parse_smtp_url(url))
        transport.send("a@example.com", ["b@example.com"], DATA, "<2@x>")
        transport.close()
        assert [m.recipients for m in server.messages] == [["b@example.com"]]


def test_file_transport_writes_whole_files(tmp_path) -> None:
    transport = FileTransport(tmp_path / "out")
    transport.send("a@example.com", ["b@example.com"], DATA, "<drip.1.ab@example.com>")
    assert (tmp_path / "out" / "drip.1.ab_example.com.eml").read_bytes() == DATA
    assert [p.name for p in (tmp_path / "out").iterdir()] == [
        "drip.1.ab_example.com.eml"
    ]  # no temporary left


def test_pipelining_is_used_when_offered_and_handles_partial_refusals(relay: SMTPServer) -> None:
    relay.handler.rcpt_replies["cc@example.com"] = ["550 5.1.1 No such user"]
    transport = SMTPTransport(parse_smtp_url(relay.url))
    refused = transport.send(
        "a@example.com", ["b@example.com", "cc@example.com"], DATA + b".starts with a dot\r\n", "<1@x>"
    )
    assert list(refused) == ["cc@example.com"] and "550" in refused["cc@example.com"]
    (received,) = relay.messages
    assert received.recipients == ["b@example.com"]
    assert received.data.endswith(
        b".starts with a dot\r\n"
    )  # dot-stuffed on the wire, unstuffed by the server
    assert (
        transport._connection is not None
        and transport._connection.has_extn("pipelining") == relay.handler.pipelining
    )
    transport.close()


def test_a_catcher_port_in_use_is_a_clear_error_that_leaves_nothing_open(tmp_path: Path) -> None:
    """Another program on the catcher's port: drip says which setting to change, and the server it
    could not start holds no event loop or socket afterwards."""
    import gc
    import socket
    import warnings

    from drip.sending import catcher

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*DRIP_CATCHER_PORT"):
                with catcher.running(tmp_path / "mail", port):
                    pass
            gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
