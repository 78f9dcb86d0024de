"""drip doctor against a real DNS server on loopback (dnslib) with good, missing and wrong records."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import SMTPServer, _free_port
from drip.cli import main
from drip.config import load_settings
from drip.core.errors import DripError
from drip.sending.dkim import Signer
from drip.sending.doctor import Verdict, check_domain, check_relay, resolver_lookup

KEY = rsa.generate_private_key(65537, 2048)
OTHER_KEY = rsa.generate_private_key(65537, 2048)
RECORD = Signer(KEY, "drip").record()


def txt(name: str, value: str) -> str:
    """A zone line, the value split into strings of at most 255 characters as DNS requires."""
    strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return f"{name}. 300 IN TXT {strings}\n"


GOOD = (
    txt("example.com", "v=spf1 include:spf.protection.outlook.com -all")
    + txt("example.com", "MS=ms12345678")  # a verification record beside it is not SPF
    + txt("drip._domainkey.example.com", RECORD)
    + txt("_dmarc.example.com", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com")
)


@contextmanager
def dns_server(zone: str) -> Iterator[str]:
    from dnslib.server import DNSLogger, DNSServer
    from dnslib.zoneresolver import ZoneResolver

    port = _free_port()
    server = DNSServer(
        ZoneResolver(zone or txt("unrelated.example", "x")), port=port, address="127.0.0.1",
        logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False),
    )  # fmt: skip
    server.start_thread()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
        server.server.server_close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def settings_for(key_file: Path | None, **more: str):
    environ = {"DRIP_SMTP_URL": "smtp://comms%40example.com@smtp.office365.com:587?starttls=true", **more}
    if key_file is not None:
        environ |= {"DRIP_DKIM_SELECTOR": "drip", "DRIP_DKIM_KEY_FILE": str(key_file)}
    return load_settings(environ=environ)


def verdicts(zone: str, settings, domain: str = "example.com") -> list[tuple[str, Verdict, str]]:
    with dns_server(zone) as nameserver:
        return [
            (f.check, f.verdict, f.said) for f in check_domain(domain, settings, resolver_lookup(nameserver))
        ]


def test_good_records_pass(key_file: Path) -> None:
    found = verdicts(GOOD, settings_for(key_file))
    assert [(check, verdict) for check, verdict, _ in found] == [
        ("SPF", Verdict.OK), ("DKIM", Verdict.OK), ("DMARC", Verdict.OK),
    ]  # fmt: skip
    assert "names smtp.office365.com" in found[0][2] and "publishes drip's key (rsa-sha256)" in found[1][2]


def test_missing_records_say_exactly_what_to_publish(key_file: Path) -> None:
    found = {check: (verdict, said) for check, verdict, said in verdicts("", settings_for(key_file))}
    assert found["SPF"] == (
        Verdict.FIX,
        'example.com has no SPF record: publish TXT "v=spf1 include:spf.protection.outlook.com -all" at example.com',
    )
    assert found["DKIM"] == (
        Verdict.FIX, f'no DKIM key at drip._domainkey.example.com: publish TXT "{RECORD}" there'
    )  # fmt: skip
    assert found["DMARC"][0] is Verdict.FIX
    assert (
        'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.com" at _dmarc.example.com'
        in found["DMARC"][1]
    )


@pytest.mark.parametrize(
    ("zone", "check", "verdict", "words"),
    [
        (GOOD + txt("example.com", "v=spf1 include:_spf.google.com ~all"), "SPF", Verdict.FIX,
         "has 2 SPF records"),
        (GOOD.replace("include:spf.protection.outlook.com", "ip4:192.0.2.10"), "SPF", Verdict.FIX,
         "does not name your relay smtp.office365.com directly: add include:spf.protection.outlook.com"),
        (GOOD.replace("include:spf.protection.outlook.com", "include:_spf.example.net"), "SPF", Verdict.WARN,
         "check that one of its includes covers include:spf.protection.outlook.com"),
        (GOOD.replace("-all", "+all"), "SPF", Verdict.FIX, "lets anyone send"),
        (GOOD.replace("-all", "?all"), "SPF", Verdict.WARN, "does not end in -all or ~all"),
        (GOOD.replace(txt("drip._domainkey.example.com", RECORD), txt("drip._domainkey.example.com",
                      Signer(OTHER_KEY, "drip").record())),
         "DKIM", Verdict.FIX, "is not the one in DRIP_DKIM_KEY_FILE; every signature would fail"),
        (GOOD.replace(txt("drip._domainkey.example.com", RECORD), txt("drip._domainkey.example.com",
                      "v=DKIM1; k=rsa; p=")),
         "DKIM", Verdict.FIX, "is revoked (empty p=)"),
        (GOOD.replace("p=quarantine", "p=none"), "DMARC", Verdict.WARN, "p=none monitors only"),
        (GOOD.replace("p=quarantine", "p=yes-please"), "DMARC", Verdict.FIX, "has no valid p="),
    ],
)  # fmt: skip
def test_wrong_records_are_named_with_the_fix(
    key_file: Path, zone: str, check: str, verdict: Verdict, words: str
) -> None:
    found = [(v, said) for c, v, said in verdicts(zone, settings_for(key_file)) if c == check]
    assert any(v is verdict and words in said for v, said in found), found


def test_a_subdomain_takes_its_organisations_dmarc_and_an_unaligned_signer_is_refused(key_file: Path) -> None:
    zone = GOOD + txt("mail.example.com", "v=spf1 include:spf.protection.outlook.com -all")
    zone += txt("drip._domainkey.other.example", RECORD)
    found = verdicts(zone, settings_for(key_file, DRIP_DKIM_DOMAIN="other.example"), "mail.example.com")
    assert ("DMARC", Verdict.OK) in [(c, v) for c, v, _ in found]
    assert any(
        c == "DKIM" and v is Verdict.FIX and "not mail.example.com nor its parent" in s for c, v, s in found
    )


def test_without_drip_signing_the_relay_must_sign() -> None:
    found = verdicts(GOOD, settings_for(None))
    assert ("DKIM", Verdict.WARN) in [(c, v) for c, v, _ in found]


def test_an_unreachable_dns_server_is_said_plainly_and_the_other_checks_still_run(key_file: Path) -> None:
    found = check_domain("example.com", settings_for(key_file), resolver_lookup(f"127.0.0.1:{_free_port()}"))
    assert [(f.check, f.verdict) for f in found] == [
        ("SPF", Verdict.WARN), ("DKIM", Verdict.WARN), ("DMARC", Verdict.WARN),
    ]  # fmt: skip
    assert found[0].said.startswith("not checked: cannot ask DNS about example.com")
    with pytest.raises(DripError, match=r"give HOST, HOST:PORT or \[IPv6\]:PORT"):
        resolver_lookup("127.0.0.1:port")


def test_odd_domains_and_an_ed25519_key(tmp_path: Path) -> None:
    assert [verdict for _, verdict, _ in verdicts("", settings_for(None), "localhost")] == [
        Verdict.FIX, Verdict.WARN, Verdict.FIX,
    ]  # fmt: skip
    deep = verdicts(GOOD, settings_for(None), "mail.eu.example.com")
    assert ("DMARC", Verdict.OK) in [(c, v) for c, v, _ in deep]  # the organisation's record covers it
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    zone = GOOD.replace(txt("drip._domainkey.example.com", RECORD), txt("drip._domainkey.example.com",
                        Signer(key, "drip").record()))  # fmt: skip
    found = verdicts(zone, settings_for(path))
    assert any(
        c == "DKIM" and v is Verdict.WARN and "not every receiver checks Ed25519" in s for c, v, s in found
    )


def test_a_relay_without_tls_is_refused_before_any_password_goes() -> None:
    finding = check_relay(load_settings(environ={"DRIP_SMTP_URL": "smtp://drip:secret@192.0.2.1:25"}))
    assert finding.verdict is Verdict.FIX and "without TLS" in finding.said and "secret" not in finding.said


def test_the_relay_check_logs_in_as_sending_would(
    smtp_server: SMTPServer, auth_smtp_server: SMTPServer
) -> None:
    plain = check_relay(load_settings(environ={"DRIP_SMTP_URL": smtp_server.url}))
    assert plain.verdict is Verdict.OK and "no TLS (this machine), no login" in plain.said
    wrong = f"smtp://drip:wrong@{auth_smtp_server.host}:{auth_smtp_server.port}"
    refused = check_relay(load_settings(environ={"DRIP_SMTP_URL": wrong}))
    assert (
        refused.verdict is Verdict.FIX
        and "refused the login: 535" in refused.said
        and "wrong" not in refused.said
    )
    right = f"smtp://drip:right@{auth_smtp_server.host}:{auth_smtp_server.port}"
    assert check_relay(load_settings(environ={"DRIP_SMTP_URL": right})).said.endswith(
        "offers AUTH LOGIN PLAIN"
    )
    assert smtp_server.messages == [] and auth_smtp_server.messages == []  # nothing is sent


def test_drip_doctor_end_to_end(runner: CliRunner, key_file: Path, smtp_server: SMTPServer) -> None:
    env = {
        "DRIP_SMTP_URL": smtp_server.url,
        "DRIP_DKIM_SELECTOR": "drip",
        "DRIP_DKIM_KEY_FILE": str(key_file),
    }
    zone = GOOD.replace("include:spf.protection.outlook.com ", "ip4:127.0.0.1 ")
    with dns_server(zone) as nameserver:
        good = runner.invoke(main, ["doctor", "--domain", "example.com", "--nameserver", nameserver], env=env)
    assert good.exit_code == 0, good.output
    assert good.output.count("  ok  ") == 4 and good.output.rstrip().endswith("Nothing to fix.")
    with dns_server("") as nameserver:
        bad = runner.invoke(main, ["doctor", "--domain", "example.com", "--nameserver", nameserver], env=env)
    assert bad.exit_code == 1
    assert len(re.findall(r"^ fix  ", bad.output, re.MULTILINE)) == 3
    assert "fix the lines marked fix, then run drip doctor again" in bad.output
    none = runner.invoke(main, ["doctor"], env=env)
    assert none.exit_code == 2 and "give --domain example.com" in none.output
