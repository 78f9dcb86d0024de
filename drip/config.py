"""Settings: read once, validated once, frozen, passed in.

Precedence, highest first: command-line option, environment (``DRIP_*``),
the config file (``--config FILE`` or ``drip.toml`` in the working
directory), defaults.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from drip.core.errors import ConfigError
from drip.core.values import InvalidValue, parse_email

DEFAULT_DATABASE_URL = "sqlite:///drip.db"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_CONFIG_FILE = "drip.toml"
DEFAULT_EMAILS_DIR = "emails"
DEFAULT_STALE_AFTER_HOURS = 24.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_LEASE_SECONDS = 300
DEFAULT_CATCHER_PORT = 2525
DEFAULT_MAIL_DIR = "drip-mail"
DEFAULT_LISTEN = ("127.0.0.1", 8000)
DEFAULT_INBOX_EVERY = 60
#: soft bounces (a full mailbox, 4.x.x given up on) within DEFAULT_SOFT_BOUNCE_DAYS that stop the mail
DEFAULT_SOFT_BOUNCE_LIMIT = 3
DEFAULT_SOFT_BOUNCE_DAYS = 14
#: the dashboard and the inbox are on the open web: a password shorter than this is refused
MIN_ADMIN_PASSWORD = 12
#: ... or with fewer different characters than this
MIN_PASSWORD_DISTINCT = 8
#: a link-signing key: at least this long, with at least this many different characters
MIN_SECRET_KEY = 32
MIN_SECRET_KEY_DISTINCT = 16
#: the largest roster file read, in bytes
DEFAULT_MAX_ROSTER_BYTES = 20_000_000
#: the longest value a roster cell may hold, in characters
DEFAULT_MAX_VALUE_CHARS = 1_000
#: the largest message read from the reply mailbox, in bytes
DEFAULT_MAX_MESSAGE_BYTES = 10_000_000
ENV_PREFIX = "DRIP_"
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Everything an operator can set; see the README for each one."""

    database_url: str = DEFAULT_DATABASE_URL
    smtp_url: str | None = None
    base_url: str = DEFAULT_BASE_URL
    secret_key: str | None = field(default=None, repr=False)
    #: the password of the read-only dashboard at /admin; None: the dashboard is off
    admin_password: str | None = field(default=None, repr=False)
    #: the password of the mail catcher's inbox page; None: it is served to this machine only
    inbox_password: str | None = field(default=None, repr=False)
    #: proxies in front of drip whose X-Forwarded-For is believed; 0: none, the header is ignored
    trusted_proxies: int = 0
    inbox_url: str | None = None
    reply_address: str | None = None
    emails_dir: str = DEFAULT_EMAILS_DIR
    #: SMTP connections kept open at once, each with its own sending thread
    smtp_connections: int = 1
    #: 1: compose a large send's messages in a process of their own, 0: in the sending process;
    #: None: 1 where the machine has more than one core
    compose_processes: int | None = None
    #: messages per second the relay accepts, from "30/minute", "5/second", "2000/hour"; None: no limit
    smtp_rate: float | None = None
    #: DKIM signing of every message sent: the selector, the PEM private key, and the signing domain
    #: (None: the domain of each message's From address)
    dkim_selector: str | None = None
    dkim_key_file: str | None = None
    dkim_domain: str | None = None
    #: OAuth2 for SMTP and IMAP logins: the token endpoint, and one way to prove who drip is (a client
    #: id with a secret or a certificate file, or a Google service account's JSON key)
    oauth_token_url: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    oauth_client_cert_file: str | None = None
    oauth_service_account_file: str | None = None
    oauth_scope: str | None = None
    #: email later than this after its moment is skipped, never sent in a burst
    stale_after_hours: float = DEFAULT_STALE_AFTER_HOURS
    #: tries of one email before a passing failure counts as a failure
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: how long a worker's claim on a delivery lasts before another may take it over
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    #: the built-in mail catcher's SMTP port on 127.0.0.1 (used when no SMTP URL is set)
    catcher_port: int = DEFAULT_CATCHER_PORT
    #: where the mail catcher keeps what it receives
    mail_dir: str = DEFAULT_MAIL_DIR
    #: where the web pages listen, "HOST:PORT"; None: the base URL's when local, else 127.0.0.1:8000
    listen: tuple[str, int] | None = None
    #: threads answering the web pages; None: 1 on SQLite, 8 on PostgreSQL (see web_thread_count)
    web_threads: int | None = None
    #: words that, in a reply's new text, mark the goal done; None: drip's own list, in several languages
    done_words: tuple[str, ...] | None = None
    #: how often ``drip run`` reads DRIP_INBOX_URL, in seconds
    inbox_every: int = DEFAULT_INBOX_EVERY
    #: authserv-ids of the server that receives replies, whose topmost Authentication-Results header
    #: drip trusts ("*": whatever its id, for servers that write none); None: no such header is read
    inbox_authserv_id: tuple[str, ...] | None = None
    #: a participant is bounced after this many soft bounces within soft_bounce_days (on more than one day)
    soft_bounce_limit: int = DEFAULT_SOFT_BOUNCE_LIMIT
    soft_bounce_days: int = DEFAULT_SOFT_BOUNCE_DAYS
    #: the most read of a roster file, of one roster value, and of one message from the reply mailbox
    max_roster_bytes: int = DEFAULT_MAX_ROSTER_BYTES
    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: where each value came from ("default", "drip.toml", "environment", "option")
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def listen_address(self) -> tuple[str, int]:
        """Return where the web pages listen: the setting, or the base URL's host and port when local."""
        if self.listen is not None:
            return self.listen
        parts = urlsplit(self.base_url)
        if parts.hostname in LOOPBACK:
            return parts.hostname or "127.0.0.1", parts.port or 80
        return DEFAULT_LISTEN

    def web_thread_count(self) -> int:
        """Return how many threads answer the web pages.

        On SQLite one thread does the most: writes take turns anyway, waitress reads and writes
        every connection in its own loop so no thread waits on a slow phone, and more threads
        only fight over the interpreter (a click costs about a third more CPU with eight).
        On PostgreSQL each thread spends its time waiting on the server, so eight overlap.
        """
        if self.web_threads is not None:
            return self.web_threads
        return 1 if self.database_url.startswith("sqlite") else 8

    def origin(self, name: str) -> str:
        """Say where setting ``name`` was taken from, for error messages."""
        return self.origins.get(name, "default")


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name != "origins")
#: settings read from the environment or drip.toml only, never from a command line
SECRET_SETTINGS = frozenset({"secret_key", "admin_password", "inbox_password", "oauth_client_secret"})
_NUMERIC = {
    "smtp_connections",
    "compose_processes",
    "stale_after_hours",
    "max_attempts",
    "lease_seconds",
    "catcher_port",
    "inbox_every",
    "web_threads",
    "soft_bounce_limit",
    "soft_bounce_days",
    "trusted_proxies",
    "max_roster_bytes",
    "max_value_chars",
    "max_message_bytes",
}


def env_name(name: str) -> str:
    """Return the environment variable that holds setting ``name``."""
    return ENV_PREFIX + name.upper()


def load_settings(
    options: Mapping[str, str | None] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge every source of settings and validate the result."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    values: dict[str, str] = {}
    origins: dict[str, str] = {}

    file_path, required = (Path(config_file), True) if config_file else (cwd / DEFAULT_CONFIG_FILE, False)
    for name, value in _read_config_file(file_path, required).items():
        values[name], origins[name] = value, str(file_path)
    for name in SETTING_NAMES:
        from_env = environ.get(env_name(name))
        if from_env:
            values[name], origins[name] = from_env, f"environment variable {env_name(name)}"
    for name, option in (options or {}).items():
        if option is not None:
            values[name], origins[name] = option, f"option --{name.replace('_', '-')}"

    parsed: dict[str, Any] = {
        name: _VALIDATORS.get(name, _as_is)(value, _label(name, origins[name]))
        for name, value in values.items()
    }
    _check_dkim(parsed, origins)
    _check_oauth(parsed, origins)
    return Settings(**parsed, origins=origins)


def _check_dkim(parsed: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """Refuse half a DKIM set-up: a selector without a key, or either without the other."""
    given = [name for name in ("dkim_selector", "dkim_key_file", "dkim_domain") if parsed.get(name)]
    if given and not {"dkim_selector", "dkim_key_file"} <= set(given):
        missing = " and ".join(
            env_name(name) for name in ("dkim_selector", "dkim_key_file") if name not in given
        )
        raise ConfigError(
            f"{_label(given[0], origins[given[0]])}: DKIM signing also needs {missing}: the selector is "
            "the name before ._domainkey in your DNS record, the key file its PEM private key"
        )


def _label(name: str, origin: str) -> str:
    return f"setting {name} (from {origin})"


def _read_config_file(path: Path, required: bool) -> dict[str, str]:
    if not path.is_file():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    problems = []
    for key, value in data.items():
        if key in _NUMERIC and isinstance(value, int | float) and not isinstance(value, bool):
            data[key] = str(value)
            continue
        if key not in SETTING_NAMES:
            close = difflib.get_close_matches(key, SETTING_NAMES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(SETTING_NAMES)}"
            problems.append(f"{path}: unknown setting {key!r}; {hint}")
        elif not isinstance(value, str):
            problems.append(f"{path}: setting {key!r} must be a string in quotes")
    if problems:
        raise ConfigError("\n".join(problems))
    return data


def _as_is(value: str, label: str) -> str:
    return value


def _database_url(value: str, label: str) -> str:
    text = value.strip()
    # Accept the spellings hosting providers hand out and use the driver we ship.
    for prefix in ("postgres://", "postgresql://"):
        if text.startswith(prefix):
            text = "postgresql+psycopg://" + text[len(prefix) :]
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(
            f"{label}: {redact_url(value)!r} is not a database URL; use sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{label}: {url.get_backend_name()!r} databases are not supported; use "
            "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        raise ConfigError(
            f"{label}: use the psycopg driver, postgresql+psycopg://USER@HOST/DB (not {url.drivername})"
        )
    if url.get_backend_name() == "sqlite":
        _sqlite_path(url.database, label)
    return text


def _sqlite_path(database: str | None, label: str) -> None:
    """Refuse a SQLite database that keeps nothing (in memory), or whose folder does not exist."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise ConfigError(
            f"{label}: this SQLite database lives in memory and keeps nothing; give a file, "
            "e.g. sqlite:///drip.db (three slashes, then a path relative to here; four for an absolute one)"
        )
    folder = Path(database).expanduser().parent
    if not folder.is_dir():
        raise ConfigError(
            f"{label}: the folder {str(folder)!r} does not exist; create it first (mkdir -p {folder}) or "
            "point at another path"
        )


def _url(value: str, label: str, schemes: tuple[str, ...], example: str) -> str:
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{label}: {redact_url(text)!r} must start with "
            f"{' or '.join(s + '://' for s in schemes)}, e.g. {example}"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{label}: {redact_url(text)!r} has a bad port number") from None
    return text


def _smtp_url(value: str, label: str) -> str:
    text = _url(value, label, ("smtp", "smtps", "file"), "smtp://relay.example.com:587?starttls=true")
    parts = urlsplit(text)
    if parts.scheme != "file" and not parts.hostname:
        raise ConfigError(f"{label}: {redact_url(text)!r} names no host")
    if parts.scheme == "file" and not parts.path:
        raise ConfigError(f"{label}: {text!r} names no folder; use file:///path/to/outbox")
    return text


#: this machine's names: a server here may be reached without TLS
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _base_url(value: str, label: str) -> str:
    text = _url(value, label, ("http", "https"), "https://drip.example.com")
    parts = urlsplit(text)
    if not parts.hostname or parts.query or parts.fragment or re.search(r"""[\s<>"',\\]""", text):
        raise ConfigError(f"{label}: {text!r} must be the site's address only, e.g. https://drip.example.com")
    if parts.scheme != "https" and parts.hostname not in LOOPBACK:
        raise ConfigError(
            f"{label}: {text!r} must use https:// (mail clients offer one-click unsubscribe only over "
            "https); plain http is for 127.0.0.1 or localhost"
        )
    return text.rstrip("/")


def _inbox_url(value: str, label: str) -> str:
    return _url(value, label, ("imap", "imaps", "maildir", "mbox"), "imaps://user@mail.example.com")


def _secret_key(value: str, label: str) -> str:
    keys = [key.strip() for key in value.split(",")]
    for key in keys:
        weak = _weakness(key, MIN_SECRET_KEY, MIN_SECRET_KEY_DISTINCT)
        if weak:
            raise ConfigError(
                f"{label}: a key must be at least {MIN_SECRET_KEY} characters with at least "
                f"{MIN_SECRET_KEY_DISTINCT} different ones, none making up more than a quarter ({weak}); "
                'generate one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
    return ",".join(keys)


def _password(value: str, label: str) -> str:
    weak = _weakness(value, MIN_ADMIN_PASSWORD, MIN_PASSWORD_DISTINCT)
    if weak:
        raise ConfigError(
            f"{label}: use at least {MIN_ADMIN_PASSWORD} characters with at least {MIN_PASSWORD_DISTINCT} "
            f"different ones, none making up more than a quarter, not only spaces ({weak}); generate one "
            'with `python -c "import secrets; print(secrets.token_urlsafe(18))"`'
        )
    return value


def _weakness(secret: str, length: int, distinct: int) -> str | None:
    """Say what makes a secret easy to guess (None: nothing that simple rules can see)."""
    if not secret.strip():
        return "this one is blank"
    if len(secret) < length:
        return f"this one has {len(secret)}"
    different = len(set(secret))
    if different < distinct:
        return f"this one has {different} different characters"
    commonest = max(secret.count(character) for character in set(secret))
    if commonest * 4 > len(secret):
        return f"one character makes up {commonest} of {len(secret)}"
    return None


def _reply_address(value: str, label: str) -> str:
    try:
        return parse_email(value)
    except InvalidValue as exc:
        raise ConfigError(f"{label}: {exc}") from None


def _whole_number(low: int, high: int) -> Callable[[str, str], int]:
    def parse(value: str, label: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{label}: {value!r} is not a whole number") from None
        if not low <= number <= high:
            raise ConfigError(f"{label}: {number} must be between {low} and {high}")
        return number

    return parse


def _hours(value: str, label: str) -> float:
    try:
        hours = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{label}: {value!r} is not a number of hours") from None
    if hours <= 0:
        raise ConfigError(f"{label}: must be more than 0 hours")
    return hours


_PER = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _rate(value: str, label: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(second|minute|hour|day)s?\s*", str(value).lower())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f'{label}: {value!r} is not a rate; write it as "30/minute", "5/second" or "2000/hour"'
        )
    return float(match.group(1)) / _PER[match.group(2)]


def parse_listen(value: str, label: str) -> tuple[str, int]:
    """Parse "HOST:PORT" (IPv6 in brackets) into a host and a port."""
    match = re.fullmatch(r"\s*\[?([^\s\[\]]*?)\]?:(\d+)\s*", str(value))
    port = int(match.group(2)) if match else 0
    if match is None or not match.group(1) or not 1 <= port <= 65535:
        raise ConfigError(f'{label}: {value!r} is not an address to listen on; write it as "127.0.0.1:8000"')
    return match.group(1), port


def _check_oauth(parsed: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """Refuse an OAuth2 set-up that cannot get a token: no endpoint, or not exactly one credential."""
    names = ("oauth_client_secret", "oauth_client_cert_file", "oauth_service_account_file")
    given = [name for name in ("oauth_client_id", *names, "oauth_scope") if parsed.get(name)]
    if not parsed.get("oauth_token_url"):
        if given:
            raise ConfigError(
                f"{_label(given[0], origins[given[0]])}: OAuth2 also needs DRIP_OAUTH_TOKEN_URL, your "
                "identity provider's token endpoint (Microsoft 365: "
                "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token)"
            )
        return
    label = _label("oauth_token_url", origins["oauth_token_url"])
    credentials = [name for name in names if parsed.get(name)]
    if len(credentials) != 1:
        said = " and ".join(env_name(name) for name in credentials) if credentials else "none"
        raise ConfigError(
            f"{label}: OAuth2 needs exactly one of DRIP_OAUTH_CLIENT_SECRET, DRIP_OAUTH_CLIENT_CERT_FILE "
            f"or DRIP_OAUTH_SERVICE_ACCOUNT_FILE (a Google service account's JSON key); given: {said}"
        )
    if not parsed.get("oauth_scope"):
        raise ConfigError(
            f"{label}: OAuth2 also needs DRIP_OAUTH_SCOPE: https://outlook.office365.com/.default for "
            "Microsoft 365, https://mail.google.com/ for Google Workspace"
        )
    if credentials[0] != "oauth_service_account_file" and not parsed.get("oauth_client_id"):
        raise ConfigError(
            f"{label}: OAuth2 with a client secret or certificate also needs DRIP_OAUTH_CLIENT_ID, the "
            "application (client) id of your app registration"
        )


def _token_url(value: str, label: str) -> str:
    text = _url(value, label, ("https", "http"), "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token")
    if urlsplit(text).scheme == "http" and urlsplit(text).hostname not in LOOPBACK:
        raise ConfigError(f"{label}: {text!r} would send drip's credentials in clear; use https://")
    return text


def check_selector(selector: str, label: str) -> str:
    """Return ``selector`` if it is one or more DNS labels (``drip``, ``2026.mail``)."""
    if not all(_DNS_LABEL.fullmatch(part) for part in selector.split(".")):
        raise ConfigError(
            f"{label}: {selector!r} is not a DKIM selector; use letters, digits and hyphens, "
            'for example "drip2026", the name before ._domainkey in your DNS record'
        )
    return selector.lower()


def check_domain(domain: str, label: str) -> str:
    """Return ``domain`` in lower case if it is a domain name of ASCII labels (A-labels for IDNs)."""
    parts = domain.rstrip(".").split(".")
    if len(parts) < 2 or not all(_DNS_LABEL.fullmatch(part) for part in parts):
        raise ConfigError(
            f"{label}: {domain!r} is not a domain name; give the domain that publishes the DKIM key, "
            'for example "example.com" (an internationalised name as its xn-- form)'
        )
    return ".".join(parts).lower()


def _words(value: str, label: str) -> tuple[str, ...]:
    words = tuple(word.strip() for word in str(value).split(",") if word.strip())
    if not words:
        raise ConfigError(f'{label}: give the words, comma-separated, e.g. "done, finished, erledigt"')
    return words


def _authserv_ids(value: str, label: str) -> tuple[str, ...]:
    ids = tuple(part.strip().lower() for part in str(value).split(",") if part.strip())
    bad = [part for part in ids if part != "*" and not re.fullmatch(r"[a-z0-9._-]+", part)]
    if not ids or bad:
        raise ConfigError(
            f"{label}: give the authserv-id your receiving server writes first in Authentication-Results "
            '(e.g. "mx.example.com"), several separated by commas, or "*" for a server that writes none'
        )
    return ids


_VALIDATORS: dict[str, Callable[[str, str], Any]] = {
    "done_words": _words,
    "inbox_authserv_id": _authserv_ids,
    "soft_bounce_limit": _whole_number(1, 100),
    "soft_bounce_days": _whole_number(1, 365),
    "inbox_every": _whole_number(10, 86400),
    "listen": parse_listen,
    "web_threads": _whole_number(1, 64),
    "smtp_connections": _whole_number(1, 64),
    "compose_processes": _whole_number(0, 1),
    "smtp_rate": _rate,
    "stale_after_hours": _hours,
    "max_attempts": _whole_number(1, 100),
    "lease_seconds": _whole_number(10, 86400),
    "catcher_port": _whole_number(1, 65535),
    "database_url": _database_url,
    "smtp_url": _smtp_url,
    "base_url": _base_url,
    "inbox_url": _inbox_url,
    "secret_key": _secret_key,
    "admin_password": _password,
    "inbox_password": _password,
    "trusted_proxies": _whole_number(0, 10),
    "max_roster_bytes": _whole_number(1_000, 2_000_000_000),
    "max_value_chars": _whole_number(50, 100_000),
    "max_message_bytes": _whole_number(10_000, 1_000_000_000),
    "reply_address": _reply_address,
    "dkim_selector": check_selector,
    "oauth_token_url": _token_url,
    "dkim_domain": check_domain,
}


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, fit for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
