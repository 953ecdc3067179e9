"""The global admission gate: a pluggable quota of context (or connection) permits.

The pool asks a :class:`Quota` for a :class:`Lease` before it places a context, and gives
the lease back when the server confirms the context closed. In one process the default
:class:`LocalQuota` is a ``trio.CapacityLimiter`` (FIFO-fair, cancel-safe, no lost wakeups by
construction). A fleet of processes sharing one provider account plugs in a shared quota
with the same interface instead.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from typing import Protocol

import attrs
import trio

from .errors import CapacityTimeout, InvalidOptions

__all__ = ["Lease", "LocalQuota", "Quota", "QuotaStatistics", "hold"]

_lease_ids = itertools.count(1)


@attrs.define(eq=False)
class Lease:
    """One permit held from a quota. ``lost`` is set if the quota revoked it."""

    id: int = attrs.field(factory=lambda: next(_lease_ids))
    lost: trio.Event = attrs.field(factory=trio.Event)
    released: bool = False


@attrs.frozen
class QuotaStatistics:
    """Permits in total, lent out, and callers waiting for one."""

    total: int
    borrowed: int
    waiting: int


class Quota(Protocol):
    """A counting semaphore of leases.

    ``acquire`` waits FIFO and is cancel-safe (a cancelled call holds nothing); with a
    ``timeout`` it raises :class:`~trio_tts.CapacityTimeout` when none came in time.
    ``release`` is synchronous, idempotent and never raises, so it can run in any cleanup path
    (a shared quota queues the release to its own background task). ``lease.lost`` is set if
    the quota revoked a lease (a shared quota that could not renew it in time): the holder
    should stop using it once its current work is done.
    """

    async def acquire(self, timeout: float | None = None) -> Lease: ...  # noqa: ASYNC109
    def try_acquire(self) -> Lease | None: ...
    def release(self, lease: Lease) -> None: ...
    def statistics(self) -> QuotaStatistics: ...


@contextlib.asynccontextmanager
async def hold(quota: Quota, timeout: float | None = None) -> AsyncIterator[Lease]:  # noqa: ASYNC109
    """Hold one lease of ``quota`` for the block: acquired on entry (FIFO, within ``timeout``
    seconds or :class:`~trio_tts.CapacityTimeout`), released on exit however the block ends.
    """
    lease = await quota.acquire(timeout)
    try:
        yield lease
    finally:
        quota.release(lease)


class LocalQuota:
    """An in-process quota of ``total`` permits on a ``trio.CapacityLimiter``.

    Hold a permit with ``async with quota.lease(timeout=...) as lease:``.
    """

    def __init__(self, total: int) -> None:
        if not isinstance(total, int) or total < 1:
            raise InvalidOptions(f"quota total: {total!r} must be a positive integer")
        self._limiter = trio.CapacityLimiter(total)

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        lease = Lease()
        # A free permit (and nobody queued before us) is taken without a trip through the
        # scheduler; the call stays a cancellation point.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._limiter.acquire_on_behalf_of_nowait(lease)
        except trio.WouldBlock:
            pass
        else:
            return lease
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._limiter.acquire_on_behalf_of(lease)
            return lease
        raise CapacityTimeout(f"no quota lease free within {timeout} s")

    def lease(self, timeout: float | None = None) -> contextlib.AbstractAsyncContextManager[Lease]:
        """Hold one lease for the block (see :func:`hold`)."""
        return hold(self, timeout)

    def try_acquire(self) -> Lease | None:
        lease = Lease()
        try:
            self._limiter.acquire_on_behalf_of_nowait(lease)
        except trio.WouldBlock:
            return None
        return lease

    def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        self._limiter.release_on_behalf_of(lease)

    def statistics(self) -> QuotaStatistics:
        s = self._limiter.statistics()
        return QuotaStatistics(
            total=int(s.total_tokens), borrowed=s.borrowed_tokens, waiting=s.tasks_waiting
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<LocalQuota {s.borrowed}/{s.total} borrowed, {s.waiting} waiting>"
