"""Leases: a row claimed by one worker for a while, which another may take over once the lease ends.

Deliveries (``drip.sending.claims``) and the owners' weekly digests
(``drip.owners.digest``) are claimed alike: the claim records when its lease
ends; a worker that is alive renews it; a claim whose lease has ended belongs
to a worker that stopped, and another may take it over. Leases are measured
by the real clock, even when drip runs on a virtual one (``--now``): they are
about processes, which live in real time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement


@dataclass(frozen=True)
class Lease:
    """How long a claim holds before another worker may take it over."""

    length: dt.timedelta

    @classmethod
    def of_seconds(cls, seconds: float) -> Lease:
        return cls(dt.timedelta(seconds=seconds))

    def ends(self, real_now: dt.datetime) -> dt.datetime:
        """When a lease taken or renewed at ``real_now`` ends."""
        return real_now + self.length

    @staticmethod
    def ended(ends_at: dt.datetime, real_now: dt.datetime) -> bool:
        """Whether a claim whose lease ends at ``ends_at`` may be taken over."""
        return ends_at < real_now

    @staticmethod
    def ended_in_sql(ends_at: ColumnElement[dt.datetime], real_now: dt.datetime) -> ColumnElement[bool]:
        """The same rule as :meth:`ended`, for a query's WHERE clause."""
        return ends_at < real_now
