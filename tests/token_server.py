"""A real OAuth2 token endpoint on loopback, for the SMTP and IMAP login tests.

It issues tokens by the client-credentials grant (with a secret, or a certificate's signed client
assertion) and by the JWT-bearer grant (a Google service account acting for a user), expires and
revokes them, and answers token introspection (RFC 7662), which Dovecot's oauth2 passdb asks.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

CLIENT_ID = "6f1c2d3e-drip-app"
SECRET = "app-secret-7Q~x"
SCOPE = "https://outlook.office365.com/.default"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Issued:
    user: str | None  # None: an app token, good for any mailbox the app may use
    expires: float


@dataclass
class TokenServer:
    """What the endpoint knows, and what it was asked."""

    port: int = 0
    lifetime: int = 3600
    #: a certificate's public key, and its DER, for client assertions
    certificate: tuple[object, bytes] | None = None
    #: a service account: its e-mail and public key
    service_account: tuple[str, object] | None = None
    issued: dict[str, Issued] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    refuse: bool = False
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/introspect"

    def valid(self, token: str, user: str) -> bool:
        issued = self.issued.get(token)
        return bool(issued and issued.expires > time.time() and issued.user in (None, user))

    def revoke_all(self) -> None:
        self.issued.clear()

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        self.requests.append(form)
        if self.refuse:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret.",
            }
        user: str | None = None
        if form.get("grant_type") == "client_credentials":
            if form.get("client_id") != CLIENT_ID or form.get("scope") != SCOPE:
                return 400, {"error": "invalid_request", "error_description": "unknown client or scope"}
            if "client_assertion" in form:
                if not self._assertion_good(form["client_assertion"]):
                    return 401, {"error": "invalid_client", "error_description": "bad client assertion"}
            elif form.get("client_secret") != SECRET:
                return 401, {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret.",
                }
        elif form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            user = self._bearer_user(form.get("assertion", ""))
            if user is None:
                return 400, {"error": "invalid_grant", "error_description": "bad assertion"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        token = f"tok-{next(self._numbers)}-{hashlib.sha256(str(time.time()).encode()).hexdigest()[:8]}"
        self.issued[token] = Issued(user, time.time() + self.lifetime)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def _verified_claims(self, jwt: str, key: object, header_check) -> dict | None:
        try:
            head, body, signature = jwt.split(".")
            header, claims = json.loads(_unb64(head)), json.loads(_unb64(body))
            key.verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:  # noqa: BLE001 - anything wrong is a refusal
            return None
        if header.get("alg") != "RS256" or not header_check(header):
            return None
        if claims.get("aud") != self.url or not claims.get("nbf", 0) - 5 <= time.time() < claims.get(
            "exp", 0
        ):
            return None
        return claims

    def _assertion_good(self, jwt: str) -> bool:
        assert self.certificate is not None
        key, der = self.certificate
        thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
        claims = self._verified_claims(jwt, key, lambda header: header.get("x5t") == thumbprint)
        return bool(claims and claims.get("iss") == claims.get("sub") == CLIENT_ID and claims.get("jti"))

    def _bearer_user(self, jwt: str) -> str | None:
        assert self.service_account is not None
        email, key = self.service_account
        claims = self._verified_claims(jwt, key, lambda header: True)
        if not claims or claims.get("iss") != email or claims.get("scope") != "https://mail.google.com/":
            return None
        return claims.get("sub")


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        state: TokenServer = self.server.state  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", 0))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if self.path == "/token":
            code, body = state.grant(form)
        elif self.path == "/introspect":
            issued = state.issued.get(form.get("token", ""))
            active = bool(issued and issued.expires > time.time())
            code, body = (
                200,
                {"active": active, "username": (issued.user if issued else None) or "drip@example.com"},
            )
        else:
            code, body = 404, {"error": "not_found"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class running:
    """Run a TokenServer on a free loopback port for a ``with`` block."""

    def __init__(self, state: TokenServer) -> None:
        self.state = state
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.http.state = state  # type: ignore[attr-defined]
        state.port = self.http.server_address[1]

    def __enter__(self) -> TokenServer:
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
