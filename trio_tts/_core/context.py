"""What a caller holds: one utterance stream on a pooled connection.

Ownership: the :class:`Context` owns the receive end of its event channel (the caller reads
it); the connection actor currently hosting the context writes the send end, through the
synchronous ``_deliver``/``_server_*`` methods, and never blocks on it — an overflowing buffer
fails the context with :class:`SlowConsumer` instead of stalling the other contexts on the
socket. The slot and the quota lease belong to the pool and are returned when the server
confirms the close (``contextClosed``), never earlier.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic

import attrs
import trio

from .commands import Cancel, Close, Command, Create, Flush, SendText
from .errors import ConnectionLost, ContextFailed, InvalidOptions, SlowConsumer, TTSError
from .events import Audio, Event, FlushCompleted, Usage, WordTiming
from .provider import OptionsT
from .quota import Lease
from .text import split_text

if TYPE_CHECKING:
    from .connection import ConnectionActor
    from .pool import Pool

__all__ = ["Context", "ContextState"]


class ContextState(enum.Enum):
    """Where a :class:`Context` is in its life, as its caller sees it."""

    #: Accepting text.
    OPEN = "open"
    #: ``finish()`` sent the close; audio still arrives until the server confirms.
    FINISHING = "finishing"
    #: The server confirmed the close and every event was queued for the caller.
    CLOSED = "closed"
    #: An error ended the context (server status, lost connection, slow consumer).
    FAILED = "failed"
    #: The caller left early; the rest of the audio is dropped, the slot waits for the server.
    ABANDONED = "abandoned"


_TERMINAL = (ContextState.CLOSED, ContextState.FAILED, ContextState.ABANDONED)


class Context(trio.abc.AsyncResource, Generic[OptionsT]):
    """One utterance stream. Create it with :meth:`Pool.open_context`, never directly.

    Use it as an async context manager; leaving the block before the server confirmed the
    close (error, cancellation, ``break``) cancels the utterance on the server — the actor
    does that, shielded and bounded, and frees the slot when the server confirms::

        ctx = await pool.open_context(voice="Ashley")
        async with ctx:
            await ctx.send_text("Hello there. How are you today?")
            await ctx.finish()
            async for event in ctx:
                if isinstance(event, trio_tts.Audio):
                    play(event.data)

    Iteration yields :class:`Audio` (word timings monotonic across flushes) and
    :class:`FlushCompleted` events and ends after the server confirmed the close. It raises
    :class:`ContextFailed`, :class:`ConnectionLost` or :class:`SlowConsumer` after the events
    that arrived before the failure.

    Generic in the provider's options class (``Context[RimeOptions]`` for Rime).
    """

    def __init__(
        self, pool: Pool[Any], context_id: str, options: OptionsT, *, buffer: int, max_text: int
    ) -> None:
        self._pool = pool
        self.id = context_id
        self.options = options
        self._max_text = max_text
        self._events_in, self._events_out = trio.open_memory_channel[Event](buffer)
        self.state = ContextState.OPEN
        self._error: TTSError | None = None
        self._done = trio.Event()
        # Commands to replay if the connection fails before any audio; None once audio came.
        self._log: list[Command] | None = [Create(options)]
        self._conn: ConnectionActor | None = None
        self._lease: Lease | None = None
        self._attempts = 1
        self._close_requested_at: float | None = None
        self._slot_held = False
        #: Cancel scope of a move to another connection in progress (owned by the pool).
        self._moving: trio.CancelScope | None = None
        # Timestamp bookkeeping: the server restarts timings at 0 after each flush.
        self._offset = 0.0
        self._audio_seconds = 0.0
        self._last_word_end = 0.0
        self._bytes_per_second = 2 * options.sample_rate if options.encoding.is_pcm else 0
        self.usage_characters = 0
        self._unchecked = 0  # events taken without a checkpoint (see __anext__)
        self.audio_bytes = 0
        self.dropped_events = 0

    def __repr__(self) -> str:
        conn = self._conn.id if self._conn is not None else None
        return (
            f"<Context {self.id} {self.state.value} conn={conn} audio={self.audio_bytes}B"
            f" voice={self.options.voice!r}>"
        )

    # -- caller side -----------------------------------------------------------------------

    async def send_text(self, text: str, *, flush: bool = False) -> None:
        """Queue ``text`` for synthesis, split under the provider's per-message limit.

        Waits only for room in the connection's outbound buffer (backpressure).

        Raises:
            InvalidOptions: ``text`` is not a string.
            ContextFailed, ConnectionLost, SlowConsumer: the context already failed.
            trio.ClosedResourceError: after ``finish()``, ``close()`` or ``aclose()``.
        """
        if not isinstance(text, str):
            raise InvalidOptions(f"text: expected str, got {type(text).__name__}")
        self._check_open()
        pieces = split_text(text, self._max_text) or [""]
        for n, piece in enumerate(pieces):
            await self._send(SendText(piece, flush=flush and n == len(pieces) - 1))

    async def flush(self) -> None:
        """Ask the server to synthesise all text sent so far (a ``FlushCompleted`` follows)."""
        self._check_open()
        await self._send(Flush())

    async def finish(self) -> None:
        """No more text: the server finishes the audio, then iteration ends. Returns at once."""
        self._check_open()
        await self._send(Close())
        # Only once the close is queued: a finish() cancelled before that leaves the context
        # OPEN, so leaving it still cancels it on the server.
        if self.state is ContextState.OPEN:
            self.state = ContextState.FINISHING
            self._close_requested_at = trio.current_time()

    async def close(self) -> None:
        """``finish()`` and wait until the server confirms the close.

        Audio that arrived meanwhile stays queued for iteration.

        Raises:
            ContextFailed, ConnectionLost, SlowConsumer: the context failed before the close.
        """
        if self.state is ContextState.OPEN:
            await self.finish()
        await self._done.wait()
        if self._error is not None:
            raise self._error

    async def cancel(self) -> None:
        """Stop the utterance: iteration ends now, the rest of its audio is dropped."""
        self._abandon()
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Leave the context. Cancels it on the server unless the server already closed it.

        Never raises for the context's own failure; returns without waiting for the server.
        """
        self._abandon()
        await trio.lowlevel.checkpoint()

    def __aiter__(self) -> AsyncIterator[Audio | FlushCompleted]:
        return self

    async def __anext__(self) -> Audio | FlushCompleted:
        # Fast path: take a buffered event without a trip through the scheduler, yielding
        # (a checkpoint: cancellation, fairness) once every 16 events.
        try:
            event = self._events_out.receive_nowait()
        except trio.WouldBlock:
            event = None
        except (trio.EndOfChannel, trio.ClosedResourceError):
            await trio.lowlevel.checkpoint()
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None
        if event is not None:
            self._unchecked += 1
            if self._unchecked >= 16:
                self._unchecked = 0
                await trio.lowlevel.checkpoint()
            assert isinstance(event, Audio | FlushCompleted)
            return event
        self._unchecked = 0
        try:
            event = await self._events_out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None
        assert isinstance(event, Audio | FlushCompleted)
        return event

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self.state is not ContextState.OPEN:
            raise trio.ClosedResourceError(f"context is {self.state.value}")

    async def _send(self, command: Command) -> None:
        if self._log is not None:
            self._log.append(command)
        conn = self._conn
        if conn is None:
            return  # being moved to another connection: the log is replayed there
        try:
            await conn.send(self, [command])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self._log is None:
                raise self._error or ConnectionLost("connection lost") from None
            # Logged: the pool moves the context and replays it.

    def _abandon(self) -> None:
        state = self.state
        if state in _TERMINAL:
            return
        self.state = ContextState.ABANDONED
        self._events_in.close()
        self._done.set()
        if state is ContextState.OPEN:
            self._close_requested_at = trio.current_time()
            if self._conn is not None:
                self._conn.post(self, Cancel())
        self._pool._context_abandoned(self)

    # -- actor side (synchronous, never blocks) --------------------------------------------

    def _deliver(self, event: Event) -> None:
        if self.state is ContextState.ABANDONED or self._error is not None:
            self.dropped_events += 1
            return
        if isinstance(event, Audio):
            self._log = None  # audio started: from now on a lost connection is an error
            event = self._retime(event)
            self.audio_bytes += len(event.data)
        elif isinstance(event, FlushCompleted):
            self._offset = max(self._offset + self._audio_seconds, self._last_word_end)
            self._audio_seconds = 0.0
        elif isinstance(event, Usage):
            self.usage_characters += event.processed_characters
            return
        else:
            return
        try:
            self._events_in.send_nowait(event)
        except trio.WouldBlock:
            self._fail(SlowConsumer(f"context {self.id}: event buffer overflowed"))
            if self._conn is not None:
                self._request_close()

    def _retime(self, event: Audio) -> Audio:
        if self._bytes_per_second:
            self._audio_seconds += len(event.data) / self._bytes_per_second
        if not event.words:
            return event
        offset = self._offset
        if offset == 0.0:
            self._last_word_end = max(self._last_word_end, event.words[-1].end)
            return event
        words = tuple(WordTiming(w.word, w.start + offset, w.end + offset) for w in event.words)
        self._last_word_end = max(self._last_word_end, words[-1].end)
        return attrs.evolve(event, words=words)

    def _request_close(self) -> None:
        """Ask the server to close a failed context so its slot comes back."""
        if self._close_requested_at is None and self._conn is not None:
            self._close_requested_at = trio.current_time()
            self._conn.post(self, Cancel())

    def _server_closed(self) -> None:
        if self.state in (ContextState.OPEN, ContextState.FINISHING):
            self.state = ContextState.CLOSED
        self._finish_events()

    def _server_error(self, code: int | None, message: str) -> bool:
        """A status error for this context. Returns True if it answers our own close."""
        if self._close_requested_at is not None and (
            self.state is ContextState.ABANDONED or self._error is not None
        ):
            return True  # e.g. "Context not found during closeContext": nothing left there
        self._fail(ContextFailed(code, message))
        self._request_close()
        return False

    def _fail(self, error: TTSError) -> None:
        if self.state in _TERMINAL:
            return
        self.state = ContextState.FAILED
        self._error = error
        self._finish_events()

    def _finish_events(self) -> None:
        self._events_in.close()
        self._done.set()
