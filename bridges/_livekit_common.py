"""What the LiveKit plugins (:mod:`bridges.livekit`, :mod:`bridges.livekit_rime`) share: the
pooled ``TTS`` machinery (prewarm, stream tracking, close) and the helpers of their streams,
on the process-wide pool registry of :mod:`bridges._shared_pools` (re-exported here). Each
plugin keeps its provider's options and protocol."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import trio
from livekit.agents import APIConnectionError, APIError, APITimeoutError, tokenize, tts, utils
from livekit.agents.types import TimedString

import trio_tts

from ._shared_pools import SharedPool as SharedPool
from ._shared_pools import pool_key as pool_key
from ._shared_pools import shared_pool as shared_pool
from ._shared_pools import shared_pool_count as shared_pool_count
from ._shared_pools import shared_pool_keys as shared_pool_keys
from .asyncio_adapter import AsyncioContext, AsyncioPool

NUM_CHANNELS = 1

H = TypeVar("H", bound=trio.abc.AsyncResource | None)
S = TypeVar("S", bound=tts.SynthesizeStream)


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


async def speak(
    ctx: AsyncioContext,
    emitter: tts.AudioEmitter,
    timed: Callable[[tuple[trio_tts.WordTiming, ...]], list[TimedString]] | None,
    *,
    segment: bool = True,
    flush_each: bool = False,
    heard: Callable[[trio_tts.Audio | trio_tts.FlushCompleted], object] | None = None,
) -> None:
    """Forward a context's audio and word timings (``timed``: the plugin's transcript form;
    None: no transcript) to ``emitter`` until the server closes it, each event as it arrives
    (:meth:`AsyncioContext.forward`). ``segment``: start the emitter's segment (named after
    the context) before the first audio; ``flush_each``: flush after each chunk (raw PCM, as
    the official Inworld plugin does); ``heard``: called with every event after it was
    handed on (a plugin's silence timer). FlushCompleted is skipped: the timings are already
    monotonic across generations."""
    started = not segment

    def hand_on(event: trio_tts.Audio | trio_tts.FlushCompleted) -> None:
        nonlocal started
        if type(event) is trio_tts.Audio:
            if not started:
                emitter.start_segment(segment_id=ctx.id)
                started = True
            if timed is not None and event.words:
                emitter.push_timed_transcript(timed(event.words))
            if event.data:
                emitter.push(event.data)
                if flush_each:
                    emitter.flush()
        if heard is not None:
            heard(event)

    await ctx.forward(hand_on)


class Watchdog:
    """A deadline for the task inside :meth:`guard`: past it, that task gets
    ``TimeoutError`` (as from ``asyncio.timeout``). Made in a task of the loop it times on;
    :meth:`arm` may be called from any code on that loop's thread, inside a task or not (a
    :meth:`AsyncioContext.forward` handler runs in the pool's receiver). Moving the deadline
    is one assignment: one loop timer, due no later than the deadline, looks again when it
    fires (no timer per event, as ``Timeout.reschedule`` would make)."""

    __slots__ = ("_deadline", "_loop", "_scope", "_timer")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._scope: asyncio.Timeout | None = None

    @property
    def armed(self) -> bool:
        return self._deadline is not None

    def arm(self, seconds: float | None) -> None:
        """The deadline is ``seconds`` from now (None: no deadline)."""
        if seconds is None:
            self._deadline = None
            return
        self._deadline = deadline = self._loop.time() + seconds
        if self._timer is None and self._scope is not None:
            self._timer = self._loop.call_at(deadline, self._look)

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Time the block out at the deadline (one set before it is entered counts too)."""
        async with asyncio.timeout(None) as scope:
            self._scope = scope
            try:
                self._look()
                yield
            finally:
                self._scope = None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None

    def _look(self) -> None:
        """The deadline passed: time the block out; else wait for the deadline as it is now."""
        self._timer = None
        deadline, scope = self._deadline, self._scope
        if deadline is None or scope is None or scope.expired():
            return
        if deadline <= self._loop.time():
            scope.reschedule(deadline)  # past: the task is cancelled, then TimeoutError
        else:
            self._timer = self._loop.call_at(deadline, self._look)


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
