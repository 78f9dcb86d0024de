"""Keeping long-lived objects out of Python's garbage collections."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Leave what start-up made (modules, compiled statements, templates) out of every later
    garbage collection. A long run otherwise walks all of it again in each full collection:
    a tenth of the CPU of a click, counted in instructions."""
    gc.collect()  # garbage first, or it would be kept for good
    gc.freeze()
