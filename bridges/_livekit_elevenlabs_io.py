"""What the streams of :mod:`bridges.livekit_elevenlabs` share: the LiveKit errors for the
engine's, the official plugin's word timings and silence timer, and the loop that forwards a
context's audio to LiveKit's emitter."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from livekit.agents import APIError, APIStatusError, APITimeoutError, tts
from livekit.agents.types import TimedString

import trio_tts

from . import _livekit_common
from ._livekit_common import Watchdog
from .asyncio_adapter import AsyncioContext, AsyncioPool
from .livekit import to_api_error as generic_api_error

__all__ = [
    "Silence",
    "StreamTimeoutError",
    "TimedWords",
    "http_api_error",
    "open_timed",
    "speak",
    "to_api_error",
]


def to_api_error(exc: trio_tts.TTSError) -> APIError:
    """The LiveKit error for a ``trio_tts`` error, as the official plugin raises it:

    ===================== ==========================================================
    ``ContextFailed``     ``APIStatusError("Could not synthesize: ...")`` (retryable), as
                          the official plugin's context ``error`` frame
    ``ConnectionLost``    with a close code: ``APIStatusError("ElevenLabs websocket
                          connection closed unexpectedly", status_code=<close code>)``
    others                as :func:`bridges.livekit.to_api_error`: ``HandshakeRejected``
                          → ``APIStatusError(status)``, ``CapacityTimeout`` →
                          ``APITimeoutError``, ``ConnectionLost`` → ``APIConnectionError``,
                          ``PoolClosed`` → ``APIConnectionError(retryable=False)``
    ===================== ==========================================================
    """
    if isinstance(exc, trio_tts.ContextFailed):
        return APIStatusError(f"Could not synthesize: {exc.message}", body={"code": exc.code})
    if (
        isinstance(exc, trio_tts.ConnectionLost)
        and not isinstance(exc, trio_tts.HandshakeRejected)
        and exc.code is not None
    ):
        return APIStatusError(
            "ElevenLabs websocket connection closed unexpectedly",
            status_code=exc.code,
            body={"message": str(exc)},
        )
    return generic_api_error(exc, provider="ElevenLabs")


def http_api_error(exc: trio_tts.TTSError) -> APIError:
    """The LiveKit error for a failed one-shot synthesis, as the official plugin raises it
    from the HTTP status: ``APIStatusError(status)`` (400 for what the engine reports as
    ``ContextFailed``: a refused request, not retried), else as :func:`to_api_error`."""
    if isinstance(exc, trio_tts.ContextFailed):
        return APIStatusError(
            f"ElevenLabs error: {exc.message}", status_code=400, body={"code": exc.code}
        )
    return to_api_error(exc)


class StreamTimeoutError(APIStatusError, APITimeoutError):
    """The server was silent too long while it owed audio (``conn_options.timeout``).

    Both an ``APITimeoutError`` (what it is) and an ``APIStatusError`` with status -1 (what
    the official plugin raises for it: its stream re-raises its own timeout as
    ``APIStatusError("Could not synthesize")``), so handlers written for either catch it.
    Retryable."""

    def __init__(self, timeout: float) -> None:
        APIError.__init__(self, f"11labs tts timed out after {timeout} seconds")
        self.status_code = -1
        self.request_id = None


class TimedWords:
    """The engine's words as the official plugin's ``TimedString`` s: each word with its
    trailing space, from its first character to the next word's first one (so a word waits
    for the next); the last one, at the end, to its own end."""

    def __init__(self) -> None:
        self._pending: trio_tts.WordTiming | None = None

    def add(self, words: tuple[trio_tts.WordTiming, ...]) -> list[TimedString]:
        out: list[TimedString] = []
        for word in words:
            if self._pending is not None:
                w = self._pending
                out.append(TimedString(f"{w.word} ", start_time=w.start, end_time=word.start))
            self._pending = word
        return out

    def finish(self) -> list[TimedString]:
        w, self._pending = self._pending, None
        return [] if w is None else [TimedString(w.word, start_time=w.start, end_time=w.end)]


class Silence:
    """The official plugin's per-context timer: armed when text goes out (until audio comes)
    and, once the input ended, after each audio message (until the end); on expiry the
    task in :meth:`guard` gets ``TimeoutError``. Made in a task of the loop it times on;
    armed and disarmed from that loop's thread (:meth:`audio` also from the pool's receiver,
    under :meth:`AsyncioContext.forward`)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._input_closed = False
        self._watchdog = Watchdog()

    def guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The timeout scope for the task reading the context (``async with``)."""
        return self._watchdog.guard()

    def sent(self, *, last: bool = False) -> None:
        """Text (``last``: the end of input) went out: arm, unless armed."""
        self._input_closed = self._input_closed or last
        if not self._watchdog.armed:
            self._watchdog.arm(self.timeout)

    def audio(self) -> None:
        """Audio came: disarm, or re-arm once the input ended."""
        self._watchdog.arm(self.timeout if self._input_closed else None)


async def speak(
    ctx: AsyncioContext[Any], emitter: tts.AudioEmitter, silence: Silence, *, timed: bool
) -> None:
    """Forward a context's audio and words to ``emitter`` until the server ends it.

    Raises:
        StreamTimeoutError: the server was silent for ``silence.timeout`` while it owed audio.
    """
    words = TimedWords()

    def heard(event: trio_tts.Audio | trio_tts.FlushCompleted) -> None:
        if type(event) is trio_tts.Audio and event.data:
            silence.audio()

    try:
        async with silence.guard():
            await _livekit_common.speak(
                ctx, emitter, words.add if timed else None, segment=False, heard=heard
            )
    except TimeoutError:
        raise StreamTimeoutError(silence.timeout) from None
    if timed:
        emitter.push_timed_transcript(words.finish())


async def open_timed(
    pool: AsyncioPool[Any], opts: trio_tts.ElevenLabsOptions, wait: float
) -> tuple[AsyncioContext[Any], float, bool]:
    """A context for ``opts``, how long it took, and whether it got an open socket (for
    ``TTSMetrics.acquire_time``/``connection_reused``)."""
    t0 = time.perf_counter()
    opened = pool.statistics().connections_opened
    ctx = await pool.open_context(options=opts, timeout=wait)
    return ctx, time.perf_counter() - t0, pool.statistics().connections_opened == opened
