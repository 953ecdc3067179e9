"""The process's registry of shared pools: one :class:`~bridges.asyncio_adapter.AsyncioPool`
per (event loop, endpoint, credential, settings), held by every framework object (a LiveKit
``TTS``, a pipecat service) that talks to that endpoint with that key, opened on first use and
closed with its last holder. Nothing here imports a framework; :mod:`bridges._livekit_common`
builds on it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import trio

import trio_tts

from .asyncio_adapter import AsyncioPool

__all__ = [
    "SharedPool",
    "pool_key",
    "shared_pool",
    "shared_pool_count",
    "shared_pool_keys",
]

H = TypeVar("H", bound=trio.abc.AsyncResource | None)


class SharedPool(Generic[H]):
    """One AsyncioPool per (loop, endpoint, key, settings), shared by the process's TTSes,
    and the HTTP client of one-shot synthesis (``trio_tts.http``; None: the provider has
    none) in the same trio run.

    ``users`` counts the holders (each TTS using it, and anything else that called
    :meth:`acquire`); the last :meth:`release` closes the pool and the HTTP client and takes
    it out of the registry."""

    def __init__(
        self,
        key: str,
        pool: AsyncioPool,
        http: Callable[[], H],
        registry: dict[str, SharedPool[Any]],
    ) -> None:
        self.key = key
        self.pool = pool
        self._make_http = http
        self._http: list[H] = []  # made on first use: streaming never needs it
        self.users = 0
        self._registry = registry  # the pools of the loop this one belongs to
        self._opening: asyncio.Task[None] | None = None

    @property
    def http(self) -> H:
        """The HTTP client (None: the provider has none), made on first use: a stream
        never needs its TLS context or its imports."""
        if not self._http:
            self._http.append(self._make_http())
        return self._http[0]

    @property
    def is_open(self) -> bool:
        """The pool has opened (and is not closed yet): its synchronous API may be used."""
        opening = self._opening
        return (
            opening is not None
            and opening.done()
            and not opening.cancelled()
            and opening.exception() is None
        )

    async def get(self) -> AsyncioPool:
        if self._opening is None or (self._opening.done() and self._opening.exception()):
            self._opening = asyncio.create_task(self.pool.open(), name="trio_tts.open_pool")
        await asyncio.shield(self._opening)
        return self.pool

    def acquire(self) -> SharedPool[H]:
        """One more holder; pair with :meth:`release`."""
        self.users += 1
        return self

    def rekey(self, key: str) -> bool:
        """File this pool under ``key`` (its defaults changed); False if ``key`` is taken."""
        if key == self.key:
            return True
        if key in self._registry:
            return False
        if self._registry.get(self.key) is self:
            del self._registry[self.key]
        self.key = key
        self._registry[key] = self
        return True

    async def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        if self._registry.get(self.key) is self:
            del self._registry[self.key]
        opening, self._opening = self._opening, None
        if opening is not None:
            with contextlib.suppress(Exception):
                await opening
                http = self._http[0] if self._http else None
                if http is not None:
                    await self.pool.run(http.aclose)
            await self.pool.aclose()


# The registry: each event loop's shared pools, filed by pool_key(). Bounded on both levels:
# a loop's pools go when the loop is garbage (a weak key) or closed (pruned on every use),
# and a pool goes when its last user releases it. Keys are keyed digests, so the registry
# holds no credential (the pools' providers do, behind their redacting reprs).
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedPool[Any]]] = (
    weakref.WeakKeyDictionary()
)
# Keys the digests: without it they are useless outside this process.
_KEY_SECRET = os.urandom(32)


def _prune() -> None:
    """Forget closed loops (their pools can never run again) and loops without pools."""
    for loop, pools in list(_SHARED.items()):
        if loop.is_closed() or not pools:
            del _SHARED[loop]


def _running_loop_pools() -> dict[str, SharedPool[Any]]:
    _prune()
    return _SHARED.setdefault(asyncio.get_running_loop(), {})


def shared_pool_count() -> int:
    """How many shared pools the process's live event loops hold. Testing and debugging
    only: 0 once every TTS is closed or its loop is."""
    _prune()
    return sum(len(pools) for pools in _SHARED.values())


def shared_pool_keys() -> list[str]:
    """The keys the shared pools are filed under (digests, never a credential). Testing and
    debugging only."""
    _prune()
    return [key for pools in _SHARED.values() for key in pools]


def pool_key(
    endpoint: tuple[str, ...],
    credential: str | None,
    settings: Mapping[str, Any],
    prefetch: int,
) -> str:
    """The identity of a shared pool on its loop: the provider's endpoint (URLs ...), the
    credential, the ``prefetch`` and the pool settings (compared by ``repr``), as one keyed
    SHA-256 digest: equal for equal parts, and no part can be read back from it."""
    identity = repr(
        (endpoint, credential, prefetch, tuple(sorted((k, repr(v)) for k, v in settings.items())))
    )
    return hmac.new(_KEY_SECRET, identity.encode(), hashlib.sha256).hexdigest()


def shared_pool(
    key: str,
    provider: Callable[[], trio_tts.Provider[Any]],
    http: Callable[[], H],
    settings: Mapping[str, Any],
    prefetch: int,
) -> SharedPool[H]:
    """The running loop's shared pool filed under ``key`` (see :func:`pool_key`), made on
    first use from the ``provider`` and ``http`` factories, with one more user."""
    pools = _running_loop_pools()
    shared = pools.get(key)
    if shared is None:
        pool = AsyncioPool(provider(), prefetch=prefetch, **settings)
        shared = pools[key] = SharedPool(key, pool, http, pools)
    shared.users += 1
    return shared
