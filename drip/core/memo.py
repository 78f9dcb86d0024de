"""A bounded memo: values worked out once per key, for the keys a run keeps meeting."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Values by key, made on first use; past ``size`` keys, all are forgotten and made again.

    For what a cohort's emails share (a subject, a timing's dates): few distinct
    keys, met thousands of times, where an LRU's bookkeeping would cost more
    than the rare refill.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._values: dict[K, V] = {}

    def get(self, key: K, make: Callable[[], V]) -> V:
        try:
            return self._values[key]
        except KeyError:
            pass
        if len(self._values) >= self.size:
            self._values.clear()
        value = self._values[key] = make()
        return value
