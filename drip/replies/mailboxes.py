"""Where replies are read from: one file or standard input, an mbox file, a Maildir, or IMAP.

Each source yields messages and is told when one has been dealt with. IMAP
marks it with a keyword (``$DripProcessed``) and never fetches it again; its
``\\Seen`` flag is left alone, so people sharing the mailbox still see what
is unread. Files and folders are left as they are: the ``received`` table is
what keeps a message from being acted on twice.
"""

from __future__ import annotations

import imaplib
import mailbox
import re
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from drip.config import DEFAULT_MAX_MESSAGE_BYTES, LOOPBACK, redact_url
from drip.core.errors import DripError, untrusted_certificate
from drip.sending.oauth import (
    OAuthError,
    TokenSource,
    choose_mechanism,
    error_reply,
    initial_response,
)

#: the IMAP keyword drip sets on a message it has dealt with
KEYWORD = "$DripProcessed"
#: messages fetched per IMAP command, and their bytes at most (a batch is cut at whichever comes first)
FETCH_BATCH = 200
FETCH_BATCH_BYTES = 25_000_000


@dataclass(frozen=True)
class Oversize:
    """A message larger than drip reads (DRIP_MAX_MESSAGE_BYTES): not fetched, only reported."""

    size: int


#: what a source yields for each message: its bytes, or that it is too large to read
Data = bytes | Oversize
DEFAULT_TIMEOUT = 30.0


class MailboxError(DripError):
    """A mailbox could not be opened or read, with what to change."""


class Source(Protocol):
    def messages(self) -> Iterator[tuple[str, Data]]:
        """Yield (reference, message bytes) for each message not yet dealt with."""
        ...

    def done(self, reference: str) -> None:
        """Note that the message ``reference`` has been dealt with."""
        ...

    def close(self) -> None: ...


class FileSource:
    """One message in a file, or on standard input (``-``)."""

    def __init__(self, path: str, limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.path, self.limit = path, limit

    def messages(self) -> Iterator[tuple[str, Data]]:
        if self.path == "-":
            yield "-", _bounded(sys.stdin.buffer, self.limit)
            return
        try:
            with open(self.path, "rb") as handle:
                data = _bounded(handle, self.limit)
        except OSError as exc:
            raise MailboxError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        yield self.path, data

    def done(self, reference: str) -> None:
        pass

    def close(self) -> None:
        pass


class MboxSource:
    """Every message of an mbox file."""

    def __init__(self, path: str, limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if not Path(path).is_file():
            raise MailboxError(f"{path} is not an mbox file")
        self.box = mailbox.mbox(path, create=False)
        self.limit = limit

    def messages(self) -> Iterator[tuple[str, Data]]:
        for key in self.box.iterkeys():
            with self.box.get_file(key, from_=False) as handle:
                yield str(key), _bounded(handle, self.limit)

    def done(self, reference: str) -> None:
        pass

    def close(self) -> None:
        self.box.close()


class MaildirSource:
    """Every message of a Maildir folder (new and cur)."""

    def __init__(self, path: str, limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if not (Path(path) / "cur").is_dir() or not (Path(path) / "new").is_dir():
            raise MailboxError(f"{path} is not a Maildir (it needs cur/ and new/ folders)")
        self.box = mailbox.Maildir(path, factory=None, create=False)
        self.limit = limit

    def messages(self) -> Iterator[tuple[str, Data]]:
        for key in self.box.iterkeys():
            try:
                with self.box.get_file(key) as handle:
                    data = _bounded(handle, self.limit)
            except (KeyError, FileNotFoundError):  # taken away by a mail client meanwhile
                continue
            yield key, data

    def done(self, reference: str) -> None:
        pass

    def close(self) -> None:
        self.box.close()


@dataclass(frozen=True)
class IMAPSettings:
    host: str
    port: int
    tls: bool
    starttls: bool
    username: str
    password: str
    folder: str
    timeout: float


def parse_imap_url(url: str, oauth: bool = False) -> IMAPSettings:
    """Read ``imaps://user:pass@host[:port]/FOLDER`` or ``imap://...?starttls=true`` (with ``oauth``,
    no password: the login is an access token)."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise MailboxError(
            f"{redact_url(url)!r} is not an IMAP address; use imaps://user:password@host/INBOX"
        )
    if not parts.username:
        raise MailboxError(f"{redact_url(url)!r} names no user; use imaps://user:password@host/INBOX")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise MailboxError(
            f"{redact_url(url)!r}: unknown option {sorted(unknown)[0]!r}; known: starttls, timeout"
        )
    tls = parts.scheme == "imaps"
    starttls = query.get("starttls", "false").lower() in ("1", "true", "yes")
    if not tls and not starttls and parts.hostname not in LOOPBACK:
        what = "an access token" if oauth else "the password"
        raise MailboxError(
            f"{redact_url(url)!r} would send {what} in clear; use imaps:// or add ?starttls=true"
        )
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise MailboxError(f"{redact_url(url)!r}: timeout must be a number of seconds") from None
    return IMAPSettings(
        host=parts.hostname,
        port=parts.port or (993 if tls else 143),
        tls=tls,
        starttls=starttls,
        username=unquote(parts.username),
        password=unquote(parts.password or ""),
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
        timeout=timeout,
    )


class IMAPSource:
    """The messages of one IMAP folder that drip has not dealt with yet."""

    def __init__(
        self, url: str, limit: int = DEFAULT_MAX_MESSAGE_BYTES, oauth: TokenSource | None = None
    ) -> None:
        self.limit = limit
        self.settings = parse_imap_url(url, oauth is not None)
        self.oauth = oauth
        self.where = f"{self.settings.host}:{self.settings.port}"
        self.imap = self._connect()
        self.keyword = self._keyword()

    def _connect(self) -> imaplib.IMAP4:
        s = self.settings
        context = ssl.create_default_context()
        try:
            if s.tls:
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    s.host, s.port, ssl_context=context, timeout=s.timeout
                )
            else:
                imap = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
                if s.starttls:
                    imap.starttls(ssl_context=context)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(untrusted_certificate(self.where, exc.verify_message or str(exc))) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot reach the IMAP server {self.where}: {exc}") from None
        try:
            if self.oauth is not None:
                self._oauth_login(imap, self.oauth)
            else:
                imap.login(s.username, s.password)
        except (OSError, imaplib.IMAP4.error, OAuthError) as exc:
            imap.shutdown()
            how = "the OAuth2 token" if self.oauth else "the login"
            hint = (
                "; check that the app may read that mailbox (Microsoft 365: IMAP.AccessAsApp and a service "
                "principal granted the mailbox)"
                if self.oauth and not isinstance(exc, OAuthError)
                else ""
            )
            raise MailboxError(
                f"the IMAP server {self.where} refused {how} of {s.username}: {_said(exc)}{hint}"
            ) from None
        status, _ = imap.select(_quote(s.folder))
        if status != "OK":
            imap.logout()
            raise MailboxError(f"the IMAP server {self.where} has no folder {s.folder!r}")
        return imap

    def _oauth_login(self, imap: imaplib.IMAP4, tokens: TokenSource) -> None:
        """Log in with an access token (OAUTHBEARER or XOAUTH2); fetch a new one once if it is refused."""
        s = self.settings
        offered = {c.removeprefix("AUTH=") for c in imap.capabilities if c.startswith("AUTH=")}
        mechanism = choose_mechanism(offered)
        if mechanism is None:
            raise imaplib.IMAP4.error(
                f"it offers no OAuth2 login (AUTH={', AUTH='.join(sorted(offered)) or 'nothing'}); leave "
                "DRIP_OAUTH_TOKEN_URL unset to log in with the password in DRIP_INBOX_URL"
            )

        def attempt(token: str) -> None:
            response = initial_response(mechanism, s.username, token, s.host, s.port).encode()
            asked: list[bytes] = []

            def answer(challenge: bytes) -> bytes:
                # the first continuation asks for the response; a later one is the server's error report,
                # which this reply ends
                asked.append(challenge)
                return response if len(asked) == 1 else error_reply(mechanism).encode()

            imap.authenticate(mechanism, answer)

        tokens.log_in(s.username, attempt, imaplib.IMAP4.error)

    def _keyword(self) -> str:
        """Use drip's own keyword where the folder allows new keywords, else \\Seen."""
        responses = self.imap.untagged_responses
        said = [*responses.get("PERMANENTFLAGS", []), *responses.get("OK", [])]
        text = " ".join(
            item.decode(errors="replace") if isinstance(item, bytes) else str(item) for item in said
        )
        permanent = re.search(r"\(([^)]*)\)", text)
        if permanent is None or "\\*" in permanent.group(1) or KEYWORD in permanent.group(1):
            return KEYWORD
        return "\\Seen"

    def messages(self) -> Iterator[tuple[str, Data]]:
        """Every message not yet dealt with: sizes first, then bodies in batches bounded by count and
        bytes; a message over the limit is reported, never fetched."""
        criteria = ("UNSEEN",) if self.keyword == "\\Seen" else ("UNKEYWORD", self.keyword)
        status, found = self.imap.uid("SEARCH", *criteria)
        if status != "OK":
            raise MailboxError(f"the IMAP server {self.where} refused a search: {found}")
        uids = found[0].split() if found and found[0] else []
        for start in range(0, len(uids), FETCH_BATCH):
            sizes = self._sizes(b",".join(uids[start : start + FETCH_BATCH]).decode())
            batch: list[str] = []
            held = 0
            for uid, size in sizes:
                if size > self.limit:
                    yield uid, Oversize(size)
                    continue
                if batch and (held + size > FETCH_BATCH_BYTES):
                    yield from self._fetch(batch)
                    batch, held = [], 0
                batch.append(uid)
                held += size
            if batch:
                yield from self._fetch(batch)

    def _sizes(self, uids: str) -> list[tuple[str, int]]:
        status, data = self.imap.uid("FETCH", uids, "(UID RFC822.SIZE)")
        if status != "OK":
            raise MailboxError(f"the IMAP server {self.where} refused to give message sizes: {data}")
        found = []
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if isinstance(line, bytes):
                uid, size = re.search(rb"UID (\d+)", line), re.search(rb"RFC822\.SIZE (\d+)", line)
                if uid and size:
                    found.append((uid.group(1).decode(), int(size.group(1))))
        return found

    def _fetch(self, uids: list[str]) -> Iterator[tuple[str, Data]]:
        status, data = self.imap.uid("FETCH", ",".join(uids), "(UID BODY.PEEK[])")
        if status != "OK":
            raise MailboxError(f"the IMAP server {self.where} refused to fetch messages: {data}")
        for item in data:
            if isinstance(item, tuple):
                uid = re.search(rb"UID (\d+)", item[0])
                if uid:
                    yield uid.group(1).decode(), item[1]

    def done(self, reference: str) -> None:
        status, data = self.imap.uid("STORE", reference, "+FLAGS.SILENT", f"({self.keyword})")
        if status != "OK":
            raise MailboxError(f"the IMAP server {self.where} would not flag message {reference}: {data}")

    def close(self) -> None:
        try:
            self.imap.close()
            self.imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _bounded(handle: Any, limit: int) -> Data:
    """Read a message, but no more than ``limit`` bytes of it."""
    data = handle.read(limit + 1)
    if len(data) <= limit:
        return bytes(data)
    rest = len(data)
    while chunk := handle.read(1 << 20):  # count the rest without keeping it
        rest += len(chunk)
    return Oversize(rest)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(exc: Exception) -> str:
    text = exc.args[0] if exc.args else exc
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def source_for(*, file: str | None = None, mbox: str | None = None, maildir: str | None = None,
               imap: str | None = None, inbox_url: str | None = None, limit: int = DEFAULT_MAX_MESSAGE_BYTES,
               oauth: TokenSource | None = None) -> Source:  # fmt: skip
    """Open the one source given; with none, the one in DRIP_INBOX_URL."""
    given = [(kind, value) for kind, value in
             (("file", file), ("mbox", mbox), ("maildir", maildir), ("imap", imap)) if value]  # fmt: skip
    if len(given) > 1:
        raise MailboxError("read one source at a time: a FILE, --mbox, --maildir or --imap")
    if not given:
        if not inbox_url:
            raise MailboxError("nothing to read: give a FILE (or - for standard input), --mbox, --maildir, "
                               "--imap, or set DRIP_INBOX_URL")  # fmt: skip
        given = [_from_url(inbox_url)]
    kind, value = given[0]
    if kind == "file":
        return FileSource(value, limit)
    if kind == "mbox":
        return MboxSource(value, limit)
    if kind == "maildir":
        return MaildirSource(value, limit)
    return IMAPSource(value, limit, oauth)


def _from_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme in ("imap", "imaps"):
        return "imap", url
    return parts.scheme, unquote(parts.path)


@contextmanager
def opened(source: Source) -> Iterator[Source]:
    try:
        yield source
    finally:
        source.close()
