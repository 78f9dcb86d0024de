"""OAuth2 access tokens for SMTP submission and IMAP (SASL XOAUTH2 and OAUTHBEARER, RFC 7628).

Set ``DRIP_OAUTH_TOKEN_URL`` and one way for drip to prove who it is:

- ``DRIP_OAUTH_CLIENT_ID`` and ``DRIP_OAUTH_CLIENT_SECRET``: the client-credentials grant
  (Microsoft 365 with an app registration's secret);
- ``DRIP_OAUTH_CLIENT_ID`` and ``DRIP_OAUTH_CLIENT_CERT_FILE`` (a PEM file with the private key
  and its certificate): the client-credentials grant with a signed client assertion (RFC 7523,
  Microsoft 365 with a certificate instead of a secret);
- ``DRIP_OAUTH_SERVICE_ACCOUNT_FILE`` (a Google service account's JSON key): the JWT-bearer
  grant for the user named in the server's URL (Google Workspace, domain-wide delegation).

A token is kept until a minute before it expires, and fetched again when a server refuses
it (535 from SMTP, NO from IMAP). Tokens never appear in logs or messages.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drip.config import LOOPBACK
from drip.core.errors import ConfigError, DripError

if TYPE_CHECKING:
    from drip.config import Settings

logger = logging.getLogger(__name__)

#: a token is fetched again this long before the server would stop taking it
EARLY = 60.0
#: the longest drip waits for the token endpoint
TIMEOUT = 30.0
#: how long a signed client assertion or JWT-bearer grant is good for
ASSERTION_SECONDS = 300


class OAuthError(DripError):
    """The token endpoint refused drip or could not be reached."""


@dataclass(frozen=True)
class Client:
    """How drip asks the token endpoint for a token."""

    token_url: str
    client_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    scope: str | None = None
    #: (private key, DER certificate) for a signed client assertion
    certificate: tuple[Any, bytes] | None = field(default=None, repr=False)
    #: a Google service account: (its e-mail address, its private key)
    service_account: tuple[str, Any] | None = field(default=None, repr=False)


class TokenSource:
    """Access tokens for ``client``, kept until shortly before they expire; safe across threads."""

    def __init__(
        self,
        client: Client,
        *,
        clock: Callable[[], float] = time.time,
        opener: Callable[..., Any] = urllib.request.urlopen,
    ) -> None:
        self.client = client
        self.clock = clock
        self.opener = opener
        self._lock = threading.Lock()
        #: per user for a service account (each its own token), else one for the app under ""
        self._tokens: dict[str, tuple[str, float]] = {}

    def token(self, user: str) -> str:
        """Return a token good for ``user`` for at least another minute."""
        key = user if self.client.service_account else ""
        with self._lock:
            kept = self._tokens.get(key)
            if kept and kept[1] - EARLY > self.clock():
                return kept[0]
            token, expires = self._fetch(user)
            self._tokens[key] = (token, expires)
            return token

    def log_in(self, user: str, attempt: Callable[[str], None], refusal: type[Exception]) -> None:
        """Call ``attempt`` with a token for ``user``; when the server refuses it (``refusal`` raised),
        forget it and try once more with a new one (expired or revoked early), then give up."""
        for last in (False, True):
            token = self.token(user)
            try:
                attempt(token)
                return
            except refusal:
                self.refused(user, token)
                if last:
                    raise

    def refused(self, user: str, token: str) -> None:
        """Forget ``token`` after a server refused it, so the next ``token`` call fetches a new one."""
        key = user if self.client.service_account else ""
        with self._lock:
            if self._tokens.get(key, ("",))[0] == token:
                del self._tokens[key]

    def _fetch(self, user: str) -> tuple[str, float]:
        c = self.client
        form: dict[str, str] = {}
        if c.service_account:
            email, key = c.service_account
            claims = {"iss": email, "sub": user, "aud": c.token_url, "scope": c.scope or ""}
            form = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": signed_jwt({"alg": "RS256", "typ": "JWT"}, self._timed(claims), key),
            }
        else:
            form = {"grant_type": "client_credentials", "client_id": c.client_id or ""}
            if c.scope:
                form["scope"] = c.scope
            if c.certificate:
                key, der = c.certificate
                header = {"alg": "RS256", "typ": "JWT", "x5t": _b64url(hashlib.sha1(der).digest())}
                me = c.client_id or ""
                claims = {"iss": me, "sub": me, "aud": c.token_url, "jti": str(uuid.uuid4())}
                form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                form["client_assertion"] = signed_jwt(header, self._timed(claims), key)
            else:
                form["client_secret"] = c.secret or ""
        request = urllib.request.Request(
            c.token_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            method="POST",
        )
        asked = self.clock()
        try:
            with self.opener(request, timeout=TIMEOUT) as answer:
                body = json.loads(answer.read(1_000_000))
        except urllib.error.HTTPError as exc:
            raise OAuthError(f"the token endpoint {c.token_url} refused drip: {_why(exc)}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise OAuthError(f"cannot get a token from {c.token_url}: {exc}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise OAuthError(f"the token endpoint {c.token_url} answered without an access_token")
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        logger.info("got an access token from %s, good for %d s", c.token_url, lifetime)
        return token, asked + lifetime

    def _timed(self, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(self.clock())
        return {**claims, "iat": now, "nbf": now, "exp": now + ASSERTION_SECONDS}


def xoauth2(user: str, token: str) -> str:
    """Return the XOAUTH2 initial response (Google's and Microsoft's SASL mechanism)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def oauthbearer(user: str, token: str, host: str, port: int) -> str:
    """Return the OAUTHBEARER initial response (RFC 7628, 3.1)."""
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"


def initial_response(mechanism: str, user: str, token: str, host: str, port: int) -> str:
    """Return what the client sends first to log in as ``user`` with ``token`` by ``mechanism``."""
    return xoauth2(user, token) if mechanism == "XOAUTH2" else oauthbearer(user, token, host, port)


def error_reply(mechanism: str) -> str:
    """Return what ends a login after the server's error report: a lone ^A for OAUTHBEARER
    (RFC 7628, 3.2.3), nothing for XOAUTH2."""
    return "\x01" if mechanism == "OAUTHBEARER" else ""


def choose_mechanism(offered: set[str]) -> str | None:
    """Return the OAuth2 mechanism to use among those a server offers: OAUTHBEARER, the standard
    one, where offered; else XOAUTH2."""
    for mechanism in ("OAUTHBEARER", "XOAUTH2"):
        if mechanism in offered:
            return mechanism
    return None


def check_plaintext(scheme: str, host: str, encrypted: bool, what: str) -> None:
    """Refuse to send a token unencrypted, except to a server on this machine."""
    if not encrypted and host not in LOOPBACK:
        raise ConfigError(
            f"{what}: OAuth2 sends an access token at login; use {scheme}s:// or add ?starttls=true "
            "(only a server on this machine may be reached without TLS)"
        )


def signed_jwt(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """Return a compact JWS of ``claims`` signed RS256 with ``key``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = _b64url(_json(header)) + "." + _b64url(_json(claims))
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


def source_for(settings: Settings) -> TokenSource | None:
    """Return the token source ``settings`` describe, or None when OAuth2 is not set up.

    One per set-up in a process, so the relay's connections and the inbox share one token, and a
    key file is read once (a loaded key compares by identity, so the cache is keyed on settings).
    """
    if not settings.oauth_token_url:
        return None
    return _source(
        settings.oauth_token_url,
        settings.oauth_client_id,
        settings.oauth_client_secret,
        settings.oauth_client_cert_file,
        settings.oauth_service_account_file,
        settings.oauth_scope,
    )


@functools.lru_cache(maxsize=8)
def _source(
    url: str, client_id: str | None, secret: str | None, cert_file: str | None, account_file: str | None,
    scope: str | None,
) -> TokenSource:  # fmt: skip
    if account_file:
        email, key, _ = read_service_account(account_file, "setting oauth_service_account_file")
        return TokenSource(Client(url, scope=scope, service_account=(email, key)))
    certificate = read_certificate(cert_file, "setting oauth_client_cert_file") if cert_file else None
    return TokenSource(Client(url, client_id, secret, scope, certificate))


def read_certificate(path: str, label: str) -> tuple[Any, bytes]:
    """Return (private key, DER certificate) from one PEM file holding both."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = _read(path, label, "a PEM file with the app's private key and its certificate")
    try:
        key = serialization.load_pem_private_key(data, password=None)
        certificate = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{label}: {path} must hold the app's unencrypted private key and its certificate, both PEM "
            "(cat key.pem cert.pem > drip-oauth.pem)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{label}: {path} holds a key drip cannot sign with; use the certificate's RSA key")
    return key, certificate.public_bytes(serialization.Encoding.DER)


def read_service_account(path: str, label: str) -> tuple[str, Any, str | None]:
    """Return (client e-mail, private key, token URI) from a Google service account's JSON key."""
    from cryptography.hazmat.primitives import serialization

    data = _read(path, label, "the service account's JSON key, downloaded from the Google Cloud console")
    try:
        found = json.loads(data)
        email, pem = found["client_email"], found["private_key"]
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"{label}: {path} is not a service account key (a JSON file with client_email and private_key)"
        ) from None
    return email, key, found.get("token_uri")


def _read(path: str, label: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror or exc}; give {what}") from None


def _why(exc: urllib.error.HTTPError) -> str:
    """Say what the token endpoint said: its OAuth error and description, never the request."""
    try:
        body = json.loads(exc.read(100_000))
        said = " ".join(str(body.get(key, "")) for key in ("error", "error_description")).strip()
    except (OSError, ValueError, AttributeError):
        said = ""
    return f"{exc.code} {said or exc.reason}"


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
