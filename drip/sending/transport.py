"""Where messages go: an SMTP relay, or a folder of .eml files for dry runs.

``DRIP_SMTP_URL``:

- ``smtp://[user:password@]host[:port][?starttls=true&timeout=30]``: plain SMTP
  (port 25 by default), upgraded with STARTTLS when asked (port 587);
- ``smtps://[user:password@]host[:port]``: TLS from the first byte (port 465);
- ``file:///path/to/folder``: one .eml file per message, written atomically.

User name and password are URL-decoded (write ``@`` as ``%40``).
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from drip.config import redact_url
from drip.core.errors import ConfigError, DripError, untrusted_certificate
from drip.sending.dkim import is_signed
from drip.sending.oauth import (
    OAuthError,
    TokenSource,
    check_plaintext,
    choose_mechanism,
    error_reply,
    initial_response,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


class SendError(DripError):
    """A message could not be handed over (to its first recipient, the participant).

    ``accepted`` lists the other recipients the relay took all the same; ``recipient`` is the address
    the server refused at RCPT, when it was an address it refused rather than the message.
    """

    def __init__(self, message: str, accepted: Sequence[str] = (), recipient: str | None = None) -> None:
        super().__init__(message)
        self.accepted = tuple(accepted)
        self.recipient = recipient


class TransientSendError(SendError):
    """Worth trying again later: the server or the network had a moment."""


class PermanentSendError(SendError):
    """The server refused this message or recipient for good."""


class RelayError(SendError):
    """The relay cannot be used at all (unreachable, TLS, login, sender refused): sending pauses.

    Nothing is wrong with the message, so no delivery is marked failed.
    """


class RelayBusy(RelayError):
    """The relay is busy or going away (421, or a 4xx to MAIL FROM): its state, not the message's.

    Sending pauses and backs off; no message is charged an attempt.
    """


# Replies that are about us, not about the message: wrong or missing login, or relaying refused.
_ACCOUNT_CODES = {530, 534, 535, 538}
_ACCOUNT_ENHANCED = re.compile(r"^5\.7\.(0|8|9|11|12|14|54|57|60|64)\b")
# 5.7.1 is also a per-recipient policy refusal; it is about drip only when it says relaying is denied.
_RELAY_DENIED = re.compile(r"^5\.7\.1\b.*\brelay", re.IGNORECASE | re.DOTALL)


class Transport(Protocol):
    def send(
        self, sender: str, recipients: Sequence[str], data: bytes, message_id: str
    ) -> dict[str, str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int
    tls: bool
    starttls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    #: log in with OAuth2 tokens from here instead of the password
    oauth: TokenSource | None = field(default=None, repr=False, compare=False)


def parse_smtp_url(url: str) -> SMTPSettings:
    """Return the connection settings in an smtp:// or smtps:// URL."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise ConfigError(
            f"DRIP_SMTP_URL {redact_url(url)!r}: unknown option(s) {', '.join(sorted(unknown))}"
        )
    starttls = query.get("starttls", "false").lower() in ("1", "true", "yes")
    tls = parts.scheme == "smtps"
    default_port = 465 if tls else (587 if starttls else 25)
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise ConfigError(
            f"DRIP_SMTP_URL: timeout must be a number of seconds, not {query['timeout']!r}"
        ) from None
    return SMTPSettings(
        host=parts.hostname or "",
        port=parts.port or default_port,
        tls=tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )


class SMTPTransport:
    """One SMTP connection, opened on first use and reused for the next messages."""

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        """Connect, log in, and say what went wrong in terms of the relay; never leave a socket open."""
        s = self.settings
        connection: smtplib.SMTP | None = None
        try:
            if s.tls:
                connection = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
                if s.starttls:
                    connection.starttls(context=ssl.create_default_context())
            if s.username and s.oauth:
                self._oauth_login(connection, s.username, s.oauth)
            elif s.username:
                connection.login(s.username, s.password or "")
            return connection
        except smtplib.SMTPAuthenticationError as exc:
            if s.oauth:
                error = RelayError(
                    f"the SMTP server {s.host} refused the OAuth2 token for {s.username}: {exc.smtp_code} "
                    f"{_reply(exc)}; check that the app may send as that mailbox (Microsoft 365: "
                    "SMTP.SendAsApp, and SMTP AUTH allowed for the mailbox)"
                )
            else:
                error = RelayError(
                    f"the SMTP server {s.host} refused the login: {exc.smtp_code} {_reply(exc)}"
                )
        except OAuthError as exc:
            error = RelayError(str(exc))
        except RelayError as exc:  # said in drip's terms already
            error = exc
        except ssl.SSLCertVerificationError as exc:
            error = RelayError(untrusted_certificate(f"{s.host}:{s.port}", exc.verify_message or str(exc)))
        except ssl.SSLError as exc:
            hint = (
                "; does it speak TLS from the start (smtps://) or after STARTTLS (smtp://...?starttls=true)?"
            )
            error = RelayError(f"TLS with {s.host}:{s.port} failed: {exc.reason or exc}{hint}")
        except smtplib.SMTPNotSupportedError as exc:
            if "STARTTLS" in str(exc).upper():
                missing = (
                    "STARTTLS; use its TLS port with smtps://, or drop ?starttls=true on a trusted network"
                )
            else:  # most servers offer a login only once the connection is encrypted
                missing = "a login (AUTH) on this connection; add ?starttls=true, or leave out the user name"
            error = RelayError(f"the SMTP server {s.host}:{s.port} does not offer {missing}")
        except (OSError, smtplib.SMTPException) as exc:
            error = RelayError(f"cannot reach the SMTP server {s.host}:{s.port}: {exc}")
        except BaseException:  # anything else goes up as it is, but never with a socket left open
            if connection is not None:
                connection.close()
            raise
        if connection is not None:
            connection.close()
        raise error

    def probe(self) -> tuple[str, ...]:
        """Connect and log in as sending would, then leave; return the login mechanisms offered."""
        connection = self._connect()
        try:
            return tuple(connection.esmtp_features.get("auth", "").upper().split())
        finally:
            try:
                connection.quit()
            except (OSError, smtplib.SMTPException):
                connection.close()

    def _oauth_login(self, connection: smtplib.SMTP, user: str, tokens: TokenSource) -> None:
        """Log in with an access token (OAUTHBEARER or XOAUTH2); fetch a new one once if it is refused."""
        s = self.settings
        connection.ehlo_or_helo_if_needed()
        offered = set(connection.esmtp_features.get("auth", "").upper().split())
        mechanism = choose_mechanism(offered)
        if mechanism is None:
            raise RelayError(
                f"the SMTP server {s.host}:{s.port} offers no OAuth2 login (it offers "
                f"{', '.join(sorted(offered)) or 'no login at all'}); leave DRIP_OAUTH_TOKEN_URL unset "
                "to log in with the password in DRIP_SMTP_URL"
            )

        def attempt(token: str) -> None:
            response = initial_response(mechanism, user, token, s.host, s.port)

            def answer(challenge: bytes | None = None) -> str:
                # a challenge after the response is the server's error report, which this reply ends
                return response if challenge is None else error_reply(mechanism)

            connection.auth(mechanism, answer)

        tokens.log_in(user, attempt, smtplib.SMTPAuthenticationError)

    def send(self, sender: str, recipients: Sequence[str], data: bytes, message_id: str) -> dict[str, str]:
        """Hand one message over; return the recipients refused when others were accepted.

        Raises TransientSendError (try again later), PermanentSendError (this
        message or its first recipient, for good) or RelayError (the relay, for
        everyone).
        """
        if self._connection is None:
            self._connection = self._connect()
        try:
            refused = _sendmail(self._connection, sender, list(recipients), data)
        except smtplib.SMTPRecipientsRefused as exc:
            refused_first = recipients[0] in exc.recipients
            code, reply = exc.recipients.get(recipients[0], next(iter(exc.recipients.values())))
            if code == 421:
                self.close()
                raise RelayBusy(
                    f"the server {self.settings.host} is closing connections: 421 {_text(reply)}"
                ) from None
            self._reset()
            error = _classify(code, reply.decode(errors="replace"), f"refused {recipients[0]}")
            if refused_first and not isinstance(error, RelayError):
                error = type(error)(str(error), recipient=recipients[0])
            raise error from None
        except smtplib.SMTPSenderRefused as exc:
            # A refusal of MAIL FROM is about the relay and drip, never about this message.
            error = _classify(exc.smtp_code, _reply(exc), f"refused the sender {sender}")
            if exc.smtp_code == 421 or isinstance(error, TransientSendError):
                self.close()
                raise RelayBusy(str(error)) from None
            self._reset()
            raise (error if isinstance(error, RelayError) else RelayError(str(error))) from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self.close()  # the server is closing the connection: it is busy, not this message
                raise RelayBusy(
                    f"the server {self.settings.host} is closing connections: 421 {_reply(exc)}"
                ) from None
            self._reset()
            raise _classify(exc.smtp_code, _reply(exc), "refused the message") from None
        except (OSError, smtplib.SMTPException) as exc:
            # A drop or a timeout, perhaps after the final dot: the server may have taken it.
            self.close()
            raise TransientSendError(f"the connection to {self.settings.host} broke: {exc}") from None
        if recipients[0] in refused:
            code, reply = refused[recipients[0]]
            error = _classify(code, reply.decode(errors="replace"), f"refused {recipients[0]}")
            accepted = [r for r in recipients if r not in refused]
            raise type(error)(str(error), accepted, None if isinstance(error, RelayError) else recipients[0])
        return {
            address: f"{code} {reply.decode(errors='replace')}" for address, (code, reply) in refused.items()
        }

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (OSError, smtplib.SMTPException):
                self._connection.close()
            self._connection = None


def _sendmail(
    connection: smtplib.SMTP, sender: str, recipients: list[str], data: bytes
) -> dict[str, tuple[int, bytes]]:
    """Like ``SMTP.sendmail``, but pipelined (RFC 2920) when the server offers it.

    MAIL, every RCPT and DATA go in one write and their replies are read in
    order: one round trip where smtplib makes three or more. Errors are raised
    as smtplib raises them, so callers see no difference.
    """
    if not connection.has_extn("pipelining"):
        return connection.sendmail(sender, recipients, data)
    commands = f"MAIL FROM:<{sender}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in recipients) + "DATA\r\n"
    connection.send(commands)
    mail_code, mail_reply = connection.getreply()
    if mail_code == 421:
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, sender)
    refused = {}
    for recipient in recipients:
        code, reply = connection.getreply()
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    data_code, data_reply = connection.getreply()
    if mail_code != 250:
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, sender)
    if len(refused) == len(recipients):
        if data_code == 354:
            connection.send(b".\r\n")  # some servers take DATA anyway: end it empty
            connection.getreply()
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        raise smtplib.SMTPDataError(data_code, data_reply)
    body = data
    if body.startswith(b".") or b"\n." in body:  # dot-stuffing, only where a line starts with "."
        body = re.sub(rb"(?m)^\.", b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    connection.send(body + b".\r\n")
    code, reply = connection.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return refused


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    message = exc.smtp_error
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def _classify(code: int, reply: str, what: str) -> SendError:
    """Decide what a server's reply means for this message, every message, or neither."""
    text = f"the server {what}: {code} {reply}".strip()
    if code in _ACCOUNT_CODES or (
        code >= 500 and (_ACCOUNT_ENHANCED.match(reply) or _RELAY_DENIED.match(reply))
    ):
        return RelayError(text)
    if code >= 500:
        return PermanentSendError(text)
    return TransientSendError(text)


class FileTransport:
    """Write each message as an .eml file in a folder (for dry runs and inspection)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, sender: str, recipients: Sequence[str], data: bytes, message_id: str) -> dict[str, str]:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", message_id.strip("<>")) + ".eml"
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, self.folder / name)
        return {}

    def close(self) -> None:
        pass


class SignedTransport:
    """Sign each message (DKIM) before handing it to the transport underneath."""

    def __init__(self, inner: Transport, sign: Callable[[bytes], bytes]) -> None:
        self.inner, self.sign = inner, sign

    def send(self, sender: str, recipients: Sequence[str], data: bytes, message_id: str) -> dict[str, str]:
        # a large send's messages come signed from the process that composed them
        signed = data if is_signed(data) else self.sign(data)
        return self.inner.send(sender, recipients, signed, message_id)

    def close(self) -> None:
        self.inner.close()


def signed(transport: Transport, sign: Callable[[bytes], bytes] | None) -> Transport:
    """Return ``transport``, signing what it sends when there is a signer."""
    return transport if sign is None else SignedTransport(transport, sign)


def open_transport(smtp_url: str | None, oauth: TokenSource | None = None) -> Transport:
    """Return the transport ``DRIP_SMTP_URL`` names, logging in with OAuth2 tokens when given."""
    if not smtp_url:
        raise ConfigError(
            "no DRIP_SMTP_URL set; point it at your relay (smtp://relay.example.com:587?starttls=true) "
            "or at a folder (file:///tmp/drip-outbox)"
        )
    parts = urlsplit(smtp_url)
    if parts.scheme == "file":
        return FileTransport(Path(unquote(parts.path)))
    settings = parse_smtp_url(smtp_url)
    if oauth is not None:
        if not settings.username:
            raise ConfigError(
                f"DRIP_SMTP_URL {redact_url(smtp_url)!r} names no user; with OAuth2, drip logs in as the "
                "mailbox it sends from: smtp://drip%40example.com@smtp.office365.com:587?starttls=true"
            )
        check_plaintext("smtp", settings.host, settings.tls or settings.starttls, "DRIP_SMTP_URL")
        settings = replace(settings, oauth=oauth)
    return SMTPTransport(settings)


class TokenBucket:
    """Hold a relay to ``rate`` messages a second, with no burst beyond ``capacity``.

    Shared by all sending threads; each ``acquire`` waits until a token is there.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.capacity = rate, capacity
        self.clock, self.sleep = clock, sleep
        self.tokens = capacity
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                self.sleep((1 - self.tokens) / self.rate)
