"""``drip doctor``: check the sender domain's DNS (SPF, DKIM, DMARC) and the relay, in plain words.

Each check gives a verdict (ok, warn, fix) and, for anything short of ok, what to change: the
record to publish, the setting to correct. Nothing here sends an email.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.resolver

from drip.config import LOOPBACK, Settings, redact_url
from drip.core.errors import DripError
from drip.sending import dkim, oauth
from drip.sending.transport import SMTPTransport, open_transport

#: the SPF includes of the hosted relays drip's users have, by the relay's host name
KNOWN_RELAYS = {
    "smtp.office365.com": "include:spf.protection.outlook.com",
    "smtp-mail.outlook.com": "include:spf.protection.outlook.com",
    "smtp.gmail.com": "include:_spf.google.com",
    "smtp-relay.gmail.com": "include:_spf.google.com",
}
_TIMEOUT = 5.0
#: "[IPv6]:PORT", "HOST[:PORT]", or a bare IPv6 address
_NAMESERVER = re.compile(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?|([0-9a-fA-F:]+)")


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FIX = "fix"


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    said: str


Lookup = Callable[[str], list[str] | None]


def resolver_lookup(nameserver: str | None = None) -> Lookup:
    """Return a TXT lookup: the strings of each record at a name, or None where there is none.

    ``nameserver`` is "HOST", "HOST:PORT" or "[IPv6]:PORT" to ask that server instead of the system's.
    """
    resolver = dns.resolver.Resolver(configure=nameserver is None)
    if nameserver is not None:
        host, port = _server(nameserver)
        resolver.nameservers, resolver.port = [host], port
    resolver.lifetime = _TIMEOUT

    def lookup(name: str) -> list[str] | None:
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.DNSException, OSError) as exc:
            raise DripError(f"cannot ask DNS about {name}: {exc}") from None
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]

    return lookup


def _server(text: str) -> tuple[str, int]:
    """Return the address and port in "HOST[:PORT]" or "[IPv6]:PORT"; a name is looked up."""
    match = re.fullmatch(
        r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?|([0-9a-fA-F:]+)", text.strip()
    )
    if not match:
        raise DripError(f"--nameserver {text!r}: give HOST, HOST:PORT or [IPv6]:PORT")
    host = match.group(1) or match.group(3) or match.group(5)
    port = int(match.group(2) or match.group(4) or 53)
    try:
        address = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0]
    except OSError as exc:
        raise DripError(f"--nameserver {text!r}: cannot find {host}: {exc}") from None
    return str(address), port


def check_domain(domain: str, settings: Settings, lookup: Lookup) -> list[Finding]:
    """Check SPF, DKIM and DMARC for the sender domain ``domain``; a question DNS would not answer
    is said as such, and the other checks still run."""
    findings: list[Finding] = []
    for check, run in (("SPF", _spf), ("DKIM", _dkim), ("DMARC", _dmarc)):
        try:
            found = run(domain, settings, lookup)
        except DripError as exc:
            found = Finding(check, Verdict.WARN, f"not checked: {exc}")
        findings += found if isinstance(found, list) else [found]
    return findings


def _spf(domain: str, settings: Settings, lookup: Lookup) -> Finding:
    records = [r for r in lookup(domain) or [] if r.lower().startswith("v=spf1")]
    host = _relay_host(settings)
    include = KNOWN_RELAYS.get(host or "")
    example = f"v=spf1 {include or 'ip4:<your relay address>'} -all"
    if not records:
        return Finding("SPF", Verdict.FIX, f'{domain} has no SPF record: publish TXT "{example}" at {domain}')
    if len(records) > 1:
        return Finding(
            "SPF", Verdict.FIX,
            f"{domain} has {len(records)} SPF records, and receivers then treat SPF as failed: "
            f'merge them into one ("{example}" with the other senders\' mechanisms)',
        )  # fmt: skip
    record = records[0]
    terms = record.lower().split()
    if include and include not in terms:
        nested = any(term.startswith(("include:", "redirect=")) for term in terms)
        return Finding(
            "SPF", Verdict.WARN if nested else Verdict.FIX,
            f'{domain}\'s SPF record "{record}" does not name your relay {host} directly: '
            + (f"check that one of its includes covers {include}" if nested else f"add {include} before all"),
        )  # fmt: skip
    if terms[-1] in ("+all", "all"):
        return Finding(
            "SPF", Verdict.FIX, f'{domain}\'s SPF record "{record}" lets anyone send: end it "-all"'
        )
    if terms[-1] not in ("-all", "~all"):
        return Finding("SPF", Verdict.WARN, f'{domain}\'s SPF record "{record}" does not end in -all or ~all')
    named = f"; it names {host}" if include else "; check that it covers your relay"
    return Finding("SPF", Verdict.OK, f'"{record}"{named if host else ""}')


def _dkim(domain: str, settings: Settings, lookup: Lookup) -> list[Finding]:
    spec = dkim.key_spec(settings)
    if spec is None:
        return [
            Finding(
                "DKIM", Verdict.WARN,
                "drip does not sign (no DRIP_DKIM_SELECTOR): your relay must sign for "
                f"{domain}, or receivers see no aligned DKIM (see DNS for your sender domain in the README)",
            )
        ]  # fmt: skip
    try:
        signer = dkim.signer_for(spec)
    except DripError as exc:
        return [Finding("DKIM", Verdict.FIX, str(exc))]
    signing_domain = signer.domain or domain
    name = f"{signer.selector}._domainkey.{signing_domain}"
    wanted = signer.record()
    records = [r for r in lookup(name) or [] if "p=" in r]
    findings = []
    if not records:
        findings.append(Finding("DKIM", Verdict.FIX, f'no DKIM key at {name}: publish TXT "{wanted}" there'))
    else:
        published = _tags(records[0])
        if not published.get("p"):
            findings.append(
                Finding("DKIM", Verdict.FIX, f'the key at {name} is revoked (empty p=): publish "{wanted}"')
            )
        elif published.get("p", "").replace(" ", "") != _tags(wanted)["p"]:
            findings.append(
                Finding(
                    "DKIM", Verdict.FIX,
                    f"the key published at {name} is not the one in DRIP_DKIM_KEY_FILE; every signature "
                    f'would fail. Publish "{wanted}", or point DRIP_DKIM_KEY_FILE at the matching key',
                )
            )  # fmt: skip
        elif signer.algorithm == "ed25519-sha256":
            findings.append(
                Finding(
                    "DKIM", Verdict.WARN,
                    f"{name} publishes drip's Ed25519 key, but not every receiver checks Ed25519 yet: "
                    "sign with an RSA key (2048 bits), or have the relay add an RSA signature",
                )
            )  # fmt: skip
        else:
            findings.append(Finding("DKIM", Verdict.OK, f"{name} publishes drip's key ({signer.algorithm})"))
    if not _aligned(signing_domain, domain):
        findings.append(
            Finding(
                "DKIM", Verdict.FIX,
                f"drip signs for {signing_domain}, which is not {domain} nor its parent: DMARC needs them "
                "aligned; unset DRIP_DKIM_DOMAIN or set it to the sender's domain",
            )
        )  # fmt: skip
    return findings


def _dmarc(domain: str, settings: Settings, lookup: Lookup) -> Finding:
    example = f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}"
    # a subdomain without a record of its own falls under its organisation's (walked up to two labels,
    # near enough without the public suffix list)
    labels = domain.split(".")
    name, records = f"_dmarc.{domain}", []
    for start in range(max(1, len(labels) - 1)):
        candidate = "_dmarc." + ".".join(labels[start:])
        records = [r for r in lookup(candidate) or [] if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if records:
            name = candidate
            break
    if not records:
        return Finding(
            "DMARC", Verdict.FIX,
            f"{domain} has no DMARC record, which Gmail, Yahoo and Microsoft ask of bulk senders: "
            f'publish TXT "{example}" at _dmarc.{domain}, and tighten p= once reports show your mail aligned',
        )  # fmt: skip
    if len(records) > 1:
        return Finding(
            "DMARC", Verdict.FIX, f"{name} has {len(records)} DMARC records; receivers ignore them all"
        )
    tags = _tags(records[0])
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Finding(
            "DMARC", Verdict.FIX, f'{name}: "{records[0]}" has no valid p= (none, quarantine or reject)'
        )
    if policy == "none":
        return Finding(
            "DMARC", Verdict.WARN, f'"{records[0]}": p=none monitors only; tighten it when reports allow'
        )
    return Finding("DMARC", Verdict.OK, f'"{records[0]}"')


def check_relay(settings: Settings) -> Finding:
    """Connect to the relay, with TLS and login as set up, and say what it offers."""
    if not settings.smtp_url:
        return Finding(
            "relay", Verdict.WARN, "no DRIP_SMTP_URL: email goes to the built-in mail catcher only"
        )
    try:
        transport = open_transport(settings.smtp_url, oauth.source_for(settings))
        if not isinstance(transport, SMTPTransport):
            return Finding(
                "relay", Verdict.OK, f"{redact_url(settings.smtp_url)} is a folder; nothing is sent"
            )
        s = transport.settings
        if not (s.tls or s.starttls) and s.host not in LOOPBACK:  # said before any password goes
            return Finding(
                "relay", Verdict.FIX,
                f"{s.host}:{s.port} would take mail and logins without TLS: add ?starttls=true (port 587) "
                "or use smtps:// (465)",
            )  # fmt: skip
        offered = transport.probe()
    except DripError as exc:
        return Finding("relay", Verdict.FIX, str(exc))
    login = "logged in with an OAuth2 token" if s.oauth else ("logged in" if s.username else "no login")
    how = "TLS" if s.tls else ("STARTTLS" if s.starttls else "no TLS (this machine)")
    offers = f"; offers AUTH {' '.join(offered)}" if offered else ""
    return Finding("relay", Verdict.OK, f"{s.host}:{s.port}: {how}, {login}{offers}")


def _relay_host(settings: Settings) -> str | None:
    if not settings.smtp_url or settings.smtp_url.startswith("file:"):
        return None
    match = re.match(r"^[a-z]+://(?:[^@/]*@)?([^:/?]+)", settings.smtp_url)
    return match.group(1).lower() if match else None


def _tags(record: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in record.split(";") if "=" in part)
    return {key.strip().lower(): value.strip() for key, value in pairs}


def _aligned(signing: str, sender: str) -> bool:
    """Relaxed alignment, near enough without the public suffix list: the same domain, or one a parent
    of the other below the top level."""
    a, b = signing.lower().rstrip("."), sender.lower().rstrip(".")
    return a == b or (b.endswith("." + a) and "." in a) or (a.endswith("." + b) and "." in b)


def report(findings: Sequence[Finding]) -> tuple[str, bool]:
    """Return the findings as lines to print, and whether anything needs fixing."""
    width = max(len(f.check) for f in findings)
    lines = [f"{f.verdict.value:>4}  {f.check:<{width}}  {f.said}" for f in findings]
    return "\n".join(lines), any(f.verdict is Verdict.FIX for f in findings)
