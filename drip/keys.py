"""The values links and Message-IDs are made from: signing keys, the instance id, the reply address."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import Connection

from drip import store
from drip.config import Settings
from drip.mime import Mailbox


def signing_keys(
    settings: Settings, conn: Connection | None = None, *, create: bool = False
) -> tuple[str, ...]:
    """Return the keys links are signed with: newest first.

    ``DRIP_SECRET_KEY`` when set (followed by any key generated earlier, which
    then only verifies); otherwise a key generated once (``create``, when a
    cohort is started) and kept in the database, so links keep working across
    restarts. Without one (a preview before any start) a throwaway key:
    such links are only for looking at.
    """
    if settings.secret_key:
        keys = tuple(key for key in settings.secret_key.split(",") if key)
        # A key generated before DRIP_SECRET_KEY was set still verifies the links it signed.
        stored = _meta(conn, "secret_key", lambda: "", create=False)
        return keys + ((stored,) if stored and stored not in keys else ())
    stored = _meta(conn, "secret_key", lambda: secrets.token_urlsafe(32), create)
    return (stored or secrets.token_urlsafe(32),)


def instance_id(conn: Connection | None = None, *, create: bool = False) -> str:
    """Return this database's short random id, part of every Message-ID drip makes."""
    return _meta(conn, "instance", lambda: secrets.token_hex(4), create) or "preview"


def _meta(conn: Connection | None, name: str, make: Callable[[], str], create: bool) -> str | None:
    if conn is None:
        return None
    return store.meta_value(conn, name, make) if create else store.meta_get(conn, name)


def reply_address(settings: Settings, sender: Mailbox, reply_to: Mailbox | None) -> str:
    """Return where replies go: DRIP_REPLY_ADDRESS, else the cohort's reply_to, else its sender."""
    return settings.reply_address or (reply_to or sender).address


def prepare(settings: Settings, conn: Connection) -> None:
    """Make sure the database holds what links and Message-IDs need, from the first start on."""
    signing_keys(settings, conn, create=True)
    instance_id(conn, create=True)
