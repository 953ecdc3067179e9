"""``open_redis_quota``: check the settings of a :class:`~trio_tts.RedisQuota`, connect, and
run it (:meth:`~trio_tts.RedisQuota.run`: its keeper, releaser and listener) for the block.

Leaving the block gives every lease of this process back to Redis at once (bounded by one
round trip), so the fleet gets them now rather than after ``lease_ttl``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import coredis
import trio

from .._core.errors import InvalidOptions
from .quota import RedisQuota, check_positive

__all__ = ["open_redis_quota"]


@contextlib.asynccontextmanager
async def open_redis_quota(
    redis: str | coredis.Redis[str],
    name: str,
    capacity: int | None,
    *,
    lease_ttl: float = 10.0,
    heartbeat_interval: float | None = None,
    waiter_ttl: float | None = None,
    loss_margin: float | None = None,
    op_timeout: float | None = None,
    fallback_share: int | None = None,
    release_delay: float = 0.005,
) -> AsyncIterator[RedisQuota]:
    """Open a fleet-wide quota named ``name`` in Redis; its background tasks run inside.

    Example::

        async with (
            trio_tts.open_redis_quota("redis://10.0.0.5:6379/0", "inworld:conns", 20) as conns,
            trio_tts.open_pool(provider, connection_quota=conns) as pool,
        ):
            ...

    Args:
        redis: a ``redis://`` URL or a ``coredis.Redis`` client with ``decode_responses=True``.
        name: the quota's name; every process using it must give the same capacity.
        capacity: the fleet-wide number of leases (stored in Redis on first use; None adopts
            the stored one).
        lease_ttl: a crashed process's leases come back after this long (10 s).
        heartbeat_interval: how often this process renews everything (``lease_ttl / 5``).
        waiter_ttl: a dead process's queue entries are dropped after this long
            (``lease_ttl / 2``).
        loss_margin: a lease not renewed by ``lease_ttl - loss_margin`` after its last
            renewal fires ``lost`` (``lease_ttl / 10``).
        op_timeout: one Redis round trip may take this long (``heartbeat_interval``).
        fallback_share: when Redis is unreachable, admit up to this many leases from a local
            limiter (None: fail closed with :class:`QuotaUnavailable`).
        release_delay: a release waits at most this long (5 ms) for another call to carry it
            to Redis — unless the fleet has waiters, then it leaves at once (0: always at once).

    Raises:
        InvalidOptions: a setting is out of range, or ``capacity`` differs from the stored one.
        QuotaUnavailable: Redis is unreachable at open and no fallback share is configured.
    """
    if capacity is not None:
        check_positive("capacity", capacity)
    if fallback_share is not None:
        check_positive("fallback_share", fallback_share)
    check_positive("lease_ttl", lease_ttl, integer=False)
    if (
        isinstance(release_delay, bool)
        or not isinstance(release_delay, (int, float))
        or not 0 <= release_delay <= lease_ttl
    ):
        raise InvalidOptions(f"release_delay: {release_delay!r} must be between 0 and lease_ttl")
    if not isinstance(name, str) or not name or "{" in name or "}" in name:
        raise InvalidOptions(f"name: {name!r} must be a non-empty string without braces")
    beat = lease_ttl / 5 if heartbeat_interval is None else heartbeat_interval
    margin = lease_ttl / 10 if loss_margin is None else loss_margin
    wttl = lease_ttl / 2 if waiter_ttl is None else waiter_ttl
    for key, value in (("heartbeat_interval", beat), ("loss_margin", margin), ("waiter_ttl", wttl)):
        check_positive(key, value, integer=False)
    if beat >= lease_ttl - margin or wttl <= beat:
        raise InvalidOptions(
            "need heartbeat_interval < lease_ttl - loss_margin and waiter_ttl > heartbeat_interval"
        )
    client: coredis.Redis[str] = (
        coredis.Redis.from_url(
            redis, decode_responses=True, connect_timeout=op_timeout or beat, stream_timeout=None
        )
        if isinstance(redis, str)
        else redis
    )
    quota = RedisQuota(
        client,
        name,
        capacity,
        lease_ttl=lease_ttl,
        heartbeat_interval=beat,
        waiter_ttl=wttl,
        loss_margin=margin,
        op_timeout=op_timeout or beat,
        fallback_share=fallback_share,
        release_delay=release_delay,
    )
    # coredis's client and this quota each own a nursery: an error of the body (or of the
    # open) comes out of them wrapped in groups; unwrap it when it is the only one.
    raised: list[BaseException] = []
    try:
        async with client, trio.open_nursery() as nursery:  # the quota's run()
            try:
                await nursery.start(quota.run)
                yield quota
            except BaseException as exc:
                raised.append(exc)
                raise
            finally:
                nursery.cancel_scope.cancel()  # run() gives every lease back as it ends
    except BaseExceptionGroup as group:
        if raised and _only(group, raised[0]):
            raise raised[0] from None
        raise


def _only(group: BaseExceptionGroup[BaseException], exc: BaseException) -> bool:
    """Is ``exc`` the one leaf of ``group``?"""
    for leaf in group.exceptions:
        if isinstance(leaf, BaseExceptionGroup):
            if not _only(leaf, exc):
                return False
        elif leaf is not exc:
            return False
    return True
