"""What the LiveKit plugins (:mod:`bridges.livekit`, :mod:`bridges.livekit_rime`) share: the
process-wide pool registry, the pooled ``TTS`` machinery (prewarm, stream tracking, close) and
the helpers of their streams. Each plugin keeps its provider's options and protocol."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import trio
from livekit.agents import APIConnectionError, APIError, APITimeoutError, tokenize, tts, utils

import trio_tts

from .asyncio_adapter import AsyncioPool

NUM_CHANNELS = 1

H = TypeVar("H", bound=trio.abc.AsyncResource | None)
S = TypeVar("S", bound=tts.SynthesizeStream)


class SharedPool(Generic[H]):
    """One AsyncioPool per (loop, endpoint, key, settings), shared by the process's TTSes,
    and the HTTP client of one-shot synthesis (``trio_tts.http``; None: the provider has
    none) in the same trio run.

    ``users`` counts the holders (each TTS using it, and anything else that called
    :meth:`acquire`); the last :meth:`release` closes the pool and the HTTP client and takes
    it out of the registry."""

    def __init__(
        self, key: str, pool: AsyncioPool, http: H, registry: dict[str, SharedPool[Any]]
    ) -> None:
        self.key = key
        self.pool = pool
        self.http = http
        self.users = 0
        self._registry = registry  # the pools of the loop this one belongs to
        self._opening: asyncio.Task[None] | None = None

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
                if self.http is not None:
                    await self.pool.run(self.http.aclose)
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
    credential, the read-ahead and the pool settings (compared by ``repr``), as one keyed
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
        shared = pools[key] = SharedPool(key, pool, http(), pools)
    shared.users += 1
    return shared


class PooledTTS(tts.TTS[None], Generic[H]):
    """The part of a plugin's ``TTS`` that manages its shared pool, prewarm and streams.

    A subclass calls :meth:`_init_pool` in its constructor and implements :meth:`_acquire`
    (this TTS's shared pool, made on first use)."""

    _shared: SharedPool[H] | None

    def _init_pool(
        self,
        max_connections: int,
        pool_settings: Mapping[str, Any] | None,
        prefetch: int,
        sentence_tokenizer: tokenize.SentenceTokenizer,
    ) -> None:
        self._pool_settings = {"max_connections": max_connections, **(pool_settings or {})}
        self._prefetch = prefetch
        self._shared = None
        self._prewarm_task: asyncio.Task[None] | None = None
        self._streams = weakref.WeakSet[tts.SynthesizeStream]()
        self._sentence_tokenizer = sentence_tokenizer

    def _acquire(self) -> SharedPool[H]:
        raise NotImplementedError

    @property
    def sentence_tokenizer(self) -> tokenize.SentenceTokenizer:
        """What splits the agent's text into sentences for :meth:`stream`."""
        return self._sentence_tokenizer

    async def shared(self) -> SharedPool[H]:
        """This TTS's shared pool (and HTTP client), opened on first use."""
        shared = self._acquire()
        await shared.get()
        return shared

    async def pool(self) -> AsyncioPool:
        """The process's shared pool for this endpoint, opened on first use."""
        return await self._acquire().get()

    def prewarm(self) -> None:
        """Open the shared pool and its first connection in the background."""
        if self._prewarm_task is None or self._prewarm_task.done():
            self._prewarm_task = asyncio.create_task(self._prewarm(), name="trio_tts.prewarm")

    async def _prewarm(self) -> None:
        with contextlib.suppress(trio_tts.TTSError):
            pool = await self.pool()
            await pool.prewarm()

    def _track(self, stream: S) -> S:
        """``stream``, closed with this TTS."""
        self._streams.add(stream)
        return stream

    async def _let_go(self, shared: SharedPool[H]) -> None:
        """Give up this TTS's hold on ``shared`` (on :meth:`aclose`)."""
        await shared.release()

    async def aclose(self) -> None:
        """Close this TTS's streams; the last TTS using the shared pool closes it."""
        if self._prewarm_task is not None:
            await utils.aio.cancel_and_wait(self._prewarm_task)
            self._prewarm_task = None
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        shared, self._shared = self._shared, None
        if shared is not None:
            await self._let_go(shared)


class PooledSynthesizeStream(tts.SynthesizeStream):
    """What the plugins' streaming ``SynthesizeStream`` classes share."""

    async def _read_input(self, sentences: tokenize.SentenceStream) -> None:
        """Feed the agent's text (and flushes) from this stream's input into ``sentences``."""
        async for data in self._input_ch:
            if isinstance(data, self._FlushSentinel):
                sentences.flush()
            else:
                sentences.push_text(data)
        sentences.end_input()


def initialize(
    emitter: tts.AudioEmitter, sample_rate: int, mime_type: str, *, stream: bool = False
) -> None:
    """Start ``emitter`` for a new request (mono audio)."""
    emitter.initialize(
        request_id=utils.shortuuid(),
        sample_rate=sample_rate,
        num_channels=NUM_CHANNELS,
        mime_type=mime_type,
        stream=stream,
    )


def raise_failed(*tasks: asyncio.Task[Any]) -> None:
    """Re-raise the exception of the first of ``tasks`` that failed, if any."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            task.result()


@contextlib.contextmanager
def api_errors(
    to_api_error: Callable[[trio_tts.TTSError], APIError],
    failure: str,
    *,
    too_slow: bool = False,
) -> Iterator[None]:
    """Raise what fails in the block as LiveKit's ``APIError`` family: ``trio_tts`` errors
    through ``to_api_error``, timeouts (with ``too_slow``, trio's too) as
    ``APITimeoutError``, anything else as ``APIConnectionError("<failure>: <exc>")``."""
    try:
        yield
    except trio.TooSlowError as exc:
        if not too_slow:
            raise APIConnectionError(f"{failure}: {exc!r}") from exc
        raise APITimeoutError() from None
    except trio_tts.TTSError as exc:
        raise to_api_error(exc) from exc
    except TimeoutError:
        raise APITimeoutError() from None
    except APIError:
        raise
    except Exception as exc:
        raise APIConnectionError(f"{failure}: {exc!r}") from exc
