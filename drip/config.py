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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from drip.errors import ConfigError
from drip.values import InvalidValue, parse_email

DEFAULT_DATABASE_URL = "sqlite:///drip.db"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_CONFIG_FILE = "drip.toml"
DEFAULT_EMAILS_DIR = "emails"
ENV_PREFIX = "DRIP_"


@dataclass(frozen=True)
class Settings:
    """Everything an operator can set; see the README for each one."""

    database_url: str = DEFAULT_DATABASE_URL
    smtp_url: str | None = None
    base_url: str = DEFAULT_BASE_URL
    secret_key: str | None = field(default=None, repr=False)
    inbox_url: str | None = None
    reply_address: str | None = None
    emails_dir: str = DEFAULT_EMAILS_DIR
    #: where each value came from ("default", "drip.toml", "environment", "option")
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def origin(self, name: str) -> str:
        """Say where setting ``name`` was taken from, for error messages."""
        return self.origins.get(name, "default")


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name != "origins")


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

    for name, value in values.items():
        values[name] = _VALIDATORS.get(name, _as_is)(value, _label(name, origins[name]))
    return Settings(**values, origins=origins)


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
    return text


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


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _base_url(value: str, label: str) -> str:
    text = _url(value, label, ("http", "https"), "https://drip.example.com")
    parts = urlsplit(text)
    if not parts.hostname or parts.query or parts.fragment or re.search(r"""[\s<>"',\\]""", text):
        raise ConfigError(f"{label}: {text!r} must be the site's address only, e.g. https://drip.example.com")
    if parts.scheme != "https" and parts.hostname not in _LOCAL_HOSTS:
        raise ConfigError(
            f"{label}: {text!r} must use https:// (mail clients offer one-click unsubscribe only over "
            "https); plain http is for 127.0.0.1 or localhost"
        )
    return text.rstrip("/")


def _inbox_url(value: str, label: str) -> str:
    return _url(value, label, ("imap", "imaps", "maildir", "mbox"), "imaps://user@mail.example.com")


def _secret_key(value: str, label: str) -> str:
    keys = [key.strip() for key in value.split(",")]
    if any(len(key) < 32 for key in keys):
        raise ConfigError(
            f"{label}: each key must be at least 32 characters; generate one with "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
        )
    return ",".join(keys)


def _reply_address(value: str, label: str) -> str:
    try:
        return parse_email(value)
    except InvalidValue as exc:
        raise ConfigError(f"{label}: {exc}") from None


_VALIDATORS = {
    "database_url": _database_url,
    "smtp_url": _smtp_url,
    "base_url": _base_url,
    "inbox_url": _inbox_url,
    "secret_key": _secret_key,
    "reply_address": _reply_address,
}


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, fit for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
