"""Releases on their way to Redis: when to send them (sans-io; the quota's tasks send).

``release()`` is synchronous, so a released id waits here until a script call carries it.
Any call does — the next acquire, the heartbeat — so a loop of acquire/release costs one round
trip per cycle, not two. But a slot another process waits for must not wait for our next
call: an id is **due** at once when the fleet has waiters (the last reply counted some, the
*queued* channel announced some, or this process has its own) or when it was a queue entry,
and otherwise ``delay`` after it was released. A batch that failed to reach Redis is retried
from ``retry_at``; an id older than ``horizon`` (the lease TTL) is dropped, as Redis has
expired it by then anyway.
"""

from __future__ import annotations

import math

__all__ = ["PendingReleases"]


class PendingReleases:
    """Ids released here and not yet confirmed by Redis: queued, or in a call in flight."""

    def __init__(self, delay: float, horizon: float) -> None:
        self.delay = delay
        self.horizon = horizon
        self._queued: dict[str, float] = {}  # id -> local time of its release()
        self._in_flight: dict[str, float] = {}
        self._urgent = False
        self._retry_at = -math.inf

    def add(self, token: str, now: float, *, urgent: bool = False) -> None:
        self._queued.setdefault(token, now)
        self._urgent = self._urgent or urgent

    def hurry(self) -> None:
        """Make everything queued due now (``flush()``)."""
        self._urgent = True

    def due(self, *, waiters: bool) -> float:
        """When the queued ids must be sent (``inf``: nothing queued)."""
        if not self._queued:
            return math.inf
        at = -math.inf if self._urgent or waiters else min(self._queued.values()) + self.delay
        return max(at, self._retry_at)

    def take(self, now: float) -> list[str]:
        """Everything queued, for one call (and forget ids Redis has expired by now)."""
        tokens = [t for t, at in self._queued.items() if now - at <= self.horizon]
        for token in tokens:
            self._in_flight[token] = self._queued[token]
        self._queued.clear()
        self._urgent = False
        return tokens

    def settle(self, tokens: list[str], *, delivered: bool, retry_at: float = -math.inf) -> None:
        """The call carrying ``tokens`` ended: delivered, or to be queued again."""
        for token in tokens:
            at = self._in_flight.pop(token, None)
            if not delivered and at is not None:
                self._queued.setdefault(token, at)
        if delivered:
            self._retry_at = -math.inf
        else:
            self._retry_at = retry_at
            self._urgent = True

    def all(self) -> list[str]:
        return [*self._queued, *self._in_flight]

    def __len__(self) -> int:
        return len(self._queued) + len(self._in_flight)

    def __repr__(self) -> str:
        return f"<PendingReleases {len(self._queued)} queued, {len(self._in_flight)} in flight>"
