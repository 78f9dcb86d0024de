"""Sign outgoing mail with DKIM (RFC 6376), relaxed/relaxed, RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

``DRIP_DKIM_SELECTOR`` and ``DRIP_DKIM_KEY_FILE`` turn it on; every message
drip hands to a transport is signed (deliveries, digests, forwards, proofs),
for the domain of its From address unless ``DRIP_DKIM_DOMAIN`` names one.

Why a signer of our own over ``cryptography`` rather than dkimpy: drip knows
its messages (CRLF throughout, one instance of each header), so canonicalising
is a few byte operations, and the private-key operation runs in OpenSSL, which
lets go of the interpreter lock while it works, so sending threads sign in
parallel with the thread that composes. dkimpy canonicalises line by line in
Python and does RSA in Python's own integers (bench/signing.py compares them).

No ``t=`` tag: a message re-sent after a crash is signed to the same bytes,
just as it keeps its Message-ID.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from drip.config import check_domain, check_selector
from drip.core.errors import ConfigError
from drip.core.mime import header

if TYPE_CHECKING:
    from drip.config import Settings

#: the headers signed, in this order, each also where absent so that none can be added
SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
#: RFC 8301: verifiers may reject RSA keys below 1024 bits, and signers must use 2048 or more
MIN_RSA_BITS = 2048
_LINE = 78
_WSP_RUN = re.compile(rb"[ \t]+")
_SPACES = re.compile(rb"  +")
_ANGLE_ADDRESS = re.compile(rb"<([^<>]*)>\s*\Z")
_MAKE_KEY = "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem"


@dataclass(frozen=True)
class Signer:
    """A loaded private key, its selector, and the domain it signs for (None: each message's From)."""

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    selector: str
    domain: str | None = None

    @property
    def algorithm(self) -> str:
        return "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"

    def sign(self, data: bytes) -> bytes:
        """Return ``data`` with a DKIM-Signature header in front of it."""
        return self.signature(data) + data

    def signature(self, data: bytes) -> bytes:
        """Return the DKIM-Signature header line (CRLF-ended) for message ``data``."""
        head, separator, body = data.partition(b"\r\n\r\n")
        if not separator:  # headers only; what follows them is the empty body
            head = head.removesuffix(b"\r\n")
        fields = header_fields(head)
        domain = self.domain or from_domain(fields)
        # each name once more than it occurs: a header added on the way (a second From or Subject,
        # a Cc, a List-Unsubscribe) breaks the signature rather than riding on it
        counts = Counter(name for name, _ in fields)
        names = [name for name in SIGNED_HEADERS for _ in range(counts[name] + 1)]
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
        tags = (
            f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={domain}; s={self.selector};"
            f" h={':'.join(names)}; bh={body_hash}; b="
        )
        unsigned = header("DKIM-Signature", tags)
        # what is signed: the headers named, then this one with b= empty and no line end (RFC 6376, 3.7)
        signed_data = b"".join(_relaxed_headers(fields, names))
        signed_data += relaxed_header(b"dkim-signature", unsigned.encode("ascii").partition(b":")[2])[:-2]
        signature = base64.b64encode(self._sign(signed_data)).decode("ascii")
        last_line = len(unsigned) - unsigned.rfind("\n") - 1
        return (unsigned + _fold_value(signature, last_line) + "\r\n").encode("ascii")

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(hashlib.sha256(data).digest())  # RFC 8463: Ed25519 over the SHA-256 hash
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def record(self) -> str:
        """Return the TXT record to publish at ``<selector>._domainkey.<domain>``."""
        public = self.key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


#: what names a signing key: selector, key file, signing domain (None: the From's), and the setting's label
KeySpec = tuple[str, str, str | None, str]


def key_spec(settings: Settings) -> KeySpec | None:
    """Return what names the DKIM key under ``settings``, or None when DKIM is not set up."""
    if not (settings.dkim_selector and settings.dkim_key_file):
        return None
    label = f"setting dkim_key_file (from {settings.origin('dkim_key_file')})"
    return settings.dkim_selector, settings.dkim_key_file, settings.dkim_domain, label


def signing(settings: Settings) -> Callable[[bytes], bytes] | None:
    """Return what signs a message under ``settings``, or None when DKIM is not set up."""
    spec = key_spec(settings)
    return None if spec is None else signer_for(spec).sign


@lru_cache(maxsize=4)  # the key is read and parsed once per process
def signer_for(spec: KeySpec) -> Signer:
    return load_signer(*spec)


def is_signed(data: bytes) -> bool:
    """Say whether ``data`` was signed already: every message drip composes starts with its From."""
    return data.startswith(b"DKIM-Signature:")


def load_signer(selector: str, key_file: str, domain: str | None, label: str) -> Signer:
    """Read the private key in ``key_file``; say what to do when it cannot sign."""
    path = Path(key_file)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot read the DKIM key {path}: {exc.strerror or exc}; "
            f"make one with `{_MAKE_KEY}`, or give the path of yours"
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(
            f"{label}: the DKIM key {path} is protected by a passphrase; drip reads an unencrypted key "
            f"(openssl pkey -in {path.name} -out dkim.pem), kept readable by drip's user only (chmod 600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{label}: {path} holds no PEM private key (a file starting -----BEGIN PRIVATE KEY-----); "
            f"make one with `{_MAKE_KEY}`"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{label}: the DKIM key {path} is RSA of {key.key_size} bits; receivers need "
                f"{MIN_RSA_BITS} or more (RFC 8301). Make a new one with `{_MAKE_KEY}` and publish its record"
            )
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(
            f"{label}: the DKIM key {path} is a {type(key).__name__.removeprefix('_')}; DKIM signs with "
            f"RSA (2048 bits or more) or Ed25519. Make one with `{_MAKE_KEY}`"
        )
    return Signer(key, check_selector(selector, label), check_domain(domain, label) if domain else None)


def header_fields(head: bytes) -> list[tuple[str, bytes]]:
    """Split a header block (CRLF line ends) into (lower-case name, raw value with its folds)."""
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + line)
            continue
        raw_name, colon, value = line.partition(b":")
        if colon:
            fields.append((raw_name.decode("ascii", "replace").strip().lower(), value))
    return fields


def from_domain(fields: list[tuple[str, bytes]]) -> str:
    """Return the domain of the message's From address, which the signature must align with."""
    value = next((value for name, value in fields if name == "from"), None)
    if value is None:
        raise ValueError("a message without a From header cannot be signed")
    value = value.replace(b"\r\n", b"").strip()
    angle = _ANGLE_ADDRESS.search(value)
    address = angle.group(1) if angle else value
    return address.rpartition(b"@")[2].decode("ascii").strip().lower()


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """Return one header field in the relaxed canonical form (RFC 6376, 3.4.2)."""
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    value = value.strip(b" ")
    return name.strip().lower() + b":" + value + b"\r\n"


def _relaxed_headers(fields: list[tuple[str, bytes]], names: list[str]) -> list[bytes]:
    """Return the canonical fields named, each instance taken from the bottom up (RFC 6376, 5.4.2).

    A name listed more often than it occurs signs nothing for the extra entries, so that a header
    added on the way would break the signature.
    """
    remaining: dict[str, list[bytes]] = {}
    for name, value in fields:
        remaining.setdefault(name, []).append(value)
    out = []
    for name in names:
        values = remaining.get(name)
        if values:
            out.append(relaxed_header(name.encode("ascii"), values.pop()))
    return out


def relaxed_body(body: bytes) -> bytes:
    """Return a body in the relaxed canonical form (RFC 6376, 3.4.4).

    Tabs go by ``bytes.replace``, runs of spaces by a pattern that starts with a literal (which
    the regular expression engine finds at C speed): on a 7 KB HTML email, patterns over the
    class ``[ \\t]`` cost about 300 µs, this about 15.
    """
    body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACES.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n").removesuffix(b" ")
    end = len(body)
    while body.endswith(b"\r\n", 0, end):  # no empty lines at the end, then one line end
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _fold_value(value: str, column: int) -> str:
    """Return the base64 ``value`` carried over continuation lines, its first part at ``column``."""
    first = value[: max(0, _LINE - column)]
    rest = value[len(first) :]
    return "\r\n ".join([first, *(rest[i : i + _LINE - 1] for i in range(0, len(rest), _LINE - 1))])
