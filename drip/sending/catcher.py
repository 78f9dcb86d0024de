"""The built-in mail catcher: a real SMTP server on 127.0.0.1 that keeps every message it is given.

It is what ``drip run`` sends to when no ``DRIP_SMTP_URL`` is set, so a comms
person can play the executive on a laptop: nothing leaves the machine, and
``/inbox`` on the web app shows what arrived. Messages are kept as .eml files
in ``DRIP_MAIL_DIR``, written whole (a temporary file, then renamed).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drip.core.errors import ConfigError

logger = logging.getLogger(__name__)

NAME = re.compile(r"^[0-9]{13}-[0-9a-f]{8}\.eml$")


class _Keeper:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        keep(self.folder, envelope.original_content or envelope.content)
        return "250 Message kept by the drip mail catcher"


def keep(folder: Path, data: bytes) -> Path:
    """Store one message; return its file."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns() // 1_000_000:013d}-{os.urandom(4).hex()}.eml"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, folder / name)
    return folder / name


def messages(folder: Path) -> list[Path]:
    """Return the kept messages, newest first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if NAME.match(p.name)), reverse=True)


@contextmanager
def running(folder: Path, port: int) -> Iterator[tuple[str, int]]:
    """Run the catcher on 127.0.0.1:``port`` for the duration of the block."""
    from aiosmtpd.controller import Controller

    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        _Keeper(folder), hostname="127.0.0.1", port=port, data_size_limit=25 * 1024 * 1024
    )
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        controller.loop.close()  # the server never ran: nothing of it may outlive the error
        raise ConfigError(
            f"the mail catcher cannot listen on 127.0.0.1:{port} ({exc}); set DRIP_CATCHER_PORT to a free one"
        ) from None
    try:
        yield "127.0.0.1", port
    finally:
        controller.stop()
