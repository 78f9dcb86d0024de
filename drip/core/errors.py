"""The one error family: every message is written for the person who must act on it.

Everything drip raises on purpose is a :class:`DripError`. The command line
prints its message and exits 1; a link page shows it; a sending pass fails
that one email with it as the reason. Anything else is a bug, and is left to
crash. The family, and where each member lives::

    DripError
    ├── ConfigError          a setting is missing or wrong                      drip.core.errors
    ├── CohortError          a cohort or program folder's problems, all of them drip.core.errors
    ├── InvalidValue         one value drip cannot use (also a ValueError)      drip.core.values
    │   └── AnswerError      a participant's answer drip cannot keep            drip.core.answers
    ├── TemplateError        a template cannot be loaded or rendered            drip.core.errors
    ├── TokenError           a link's token is malformed, forged or misused     drip.core.tokens
    │   └── TokenExpired     a genuine token whose time is over                 drip.core.tokens
    ├── UnreadableMessage    a message in the reply mailbox drip will not read  drip.core.reading
    ├── StarterError         drip init cannot write where asked                 drip.launch.starter
    ├── StoreError           the database refused, or holds the unexpected      drip.core.errors
    │   └── StoreBusy        another writer held it too long; nothing written   drip.core.errors
    ├── KeyringError         a key cannot be rotated or retired as asked        drip.storage.keyring
    ├── ActionError          a change to a participant that cannot be made      drip.changes
    ├── SendError            one message could not be handed over               drip.sending.transport
    │   ├── TransientSendError   worth trying again later                       drip.sending.transport
    │   ├── PermanentSendError   refused for good                               drip.sending.transport
    │   └── RelayError           the relay cannot be used at all                drip.sending.transport
    │       └── RelayBusy        busy or going away: pause, charge nothing      drip.sending.transport
    ├── RelayPaused          sending stopped: the relay refused drip itself     drip.sending.dispatcher
    ├── DispatchError        sending stopped for another reason                 drip.sending.dispatcher
    ├── ComposerGone         the composing process failed: built in place now   drip.sending.composer
    ├── OAuthError           the token endpoint refused drip or is unreachable  drip.sending.oauth
    ├── DigestError          a digest that cannot go                            drip.owners.digest
    └── MailboxError         a mailbox cannot be opened or read                 drip.replies.mailboxes

A test holds this tree equal to the classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class DripError(Exception):
    """Base of every error drip raises on purpose."""


class ConfigError(DripError):
    """A setting is missing or has a bad value."""


class TemplateError(DripError):
    """A program's template cannot be loaded or rendered."""


class StoreError(DripError):
    """The database refused an operation or holds something unexpected."""


class StoreBusy(StoreError):
    """Another writer held the database for longer than the caller would wait; nothing was written."""


def untrusted_certificate(where: str, verify_message: str) -> str:
    """Say that a server's TLS certificate was refused, and how to trust a private CA."""
    return (
        f"TLS with {where} failed: its certificate is not trusted ({verify_message}); if it comes from "
        "your organisation's own CA, set SSL_CERT_FILE to a PEM file holding that CA"
    )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located precisely enough to fix it."""

    file: str
    message: str
    row: int | None = None
    column: str | None = None
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.key is not None:
            where.append(self.key)
        return f"{', '.join(where)}: {self.message}"


class CohortError(DripError):
    """A cohort or program folder has problems; carries every one found."""

    #: how many problems the message lists before summarising the rest
    SHOWN = 50

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Sequence[Problem] = tuple(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found; nothing was written:"
        lines = [head, *(f"  - {p}" for p in self.problems[: self.SHOWN])]
        if count > self.SHOWN:
            lines.append(f"  ... and {count - self.SHOWN} more")
        return "\n".join(lines)
