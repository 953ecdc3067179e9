"""What a caller holds: one utterance stream on a pooled connection.

Two halves, one owner each:

* :class:`ContextStream` is the caller-visible state of one context — its :class:`ContextState`,
  its error and its bounded event buffer. The pool owns it (in its per-context placement
  record) and writes it through synchronous methods that never block: an overflowing buffer
  fails the context with :class:`SlowConsumer` instead of stalling the other contexts on the
  socket.
* :class:`Context` is the caller's handle: it reads the stream and sends commands through
  its :class:`ContextOwner` (the pool), which knows where the context is placed. The slot and
  the quota lease belong to the pool and come back when the server confirms the close.

Nothing here imports the pool or the connection actor.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import AsyncIterator, Callable
from typing import Generic, Protocol

import trio

from .commands import Close, Command, Flush, SendText
from .errors import InvalidOptions, SlowConsumer, TTSError
from .events import Audio, Event, FlushCompleted, Usage, WordTiming
from .options import Options
from .provider import OptionsT
from .text import split_text

__all__ = ["Context", "ContextOwner", "ContextState", "ContextStream"]


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


TERMINAL = frozenset({ContextState.CLOSED, ContextState.FAILED, ContextState.ABANDONED})


class ContextOwner(Protocol):
    """What a :class:`Context` asks of the pool that placed it."""

    async def send_command(self, context_id: str, command: Command) -> None:
        """Send ``command`` for the context (waits for room in the outbound buffer).

        Raises:
            TTSError: the context failed (its connection was lost after audio started).
        """
        ...

    def context_left(self, context_id: str, *, cancel: bool) -> None:
        """The caller left the context; ``cancel``: it was still open (cancel it there)."""
        ...


class ContextStream:
    """The caller-visible state of one context, written by the pool, read by its Context.

    ``max_events``/``max_bytes`` bound the unread backlog (events, audio bytes): past either,
    the context fails with :class:`SlowConsumer` (the owner then cancels it on the server).

    Delivery is by bursts. The unread events wait in a deque; a reader that finds it empty
    parks (:meth:`wait`), and :meth:`deliver` wakes it with the first event of a burst —
    the rest of what the connection read in the same pass is only appended. Woken, the
    reader takes the whole burst (:meth:`take`) without a trip through the scheduler per
    event. That never starves another task: nothing is appended while the reader runs, so a
    burst is finite, and the reader parks again once it is drained. One reader at a time.
    """

    def __init__(
        self,
        context_id: str,
        options: Options,
        *,
        max_events: int,
        max_bytes: int,
        pause_bytes: int | None = None,
    ) -> None:
        self.id = context_id
        self.options = options
        self.state = ContextState.OPEN
        self.error: TTSError | None = None
        self.done = trio.Event()
        self._max_bytes = max_bytes
        self._max_events = max_events
        self._events: collections.deque[Audio | FlushCompleted] = collections.deque()
        #: No more events will be appended (closed, failed or abandoned).
        self.ended = False
        # The reader's task while it is parked in wait().
        self._reader: trio.lowlevel.Task | None = None
        #: Audio bytes delivered to the buffer and not yet read by the caller.
        self.buffered_bytes = 0
        #: True once audio arrived (a lost connection then fails the context, not moves it).
        self.audio_started = False
        self.audio_bytes = 0
        self.usage_characters = 0
        self.dropped_events = 0
        # Timestamp bookkeeping: the server restarts timings at 0 after each flush (unless
        # its FlushCompleted says they run on, as Cartesia's do).
        self._offset = 0.0
        self._audio_seconds = 0.0
        self._last_word_end = 0.0
        self._bytes_per_second = options.encoding.bytes_per_sample * options.sample_rate
        #: Called after an event was queued or the stream ended (``Context.on_ready``).
        self.ready: Callable[[], object] | None = None
        #: Takes an event instead of the queue while the queue is empty (``Context.on_event``).
        self.sink: Callable[[Audio | FlushCompleted], bool] | None = None
        # Flow control (PoolSettings.context_pause_bytes): the unread audio at or past which
        # the stream is backlogged, and who hears when it stops being so (the pool). The
        # hook may run on the host loop of a bridge (take() from receive_nowait).
        self._pause_bytes = pause_bytes if pause_bytes is not None else math.inf
        # Hysteresis: backlogged from pause_bytes until read down below half of it, so a
        # consumer reading at the pace of the audio resumes its connection once per
        # pause_bytes / 2, not once per event.
        self._resume_bytes = self._pause_bytes / 2
        #: Unread audio reached ``pause_bytes`` (and not yet read down below half of it)
        #: while the stream still takes events.
        self.backlogged = False
        self.unblocked: Callable[[], object] | None = None

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    # -- writer side (the pool; synchronous, never blocks) ---------------------------------

    def deliver(self, event: Event) -> bool:
        """Queue ``event`` for the caller. Returns False if this overflowed the backlog
        bound (the stream is now FAILED with :class:`SlowConsumer`)."""
        if self.state is ContextState.ABANDONED or self.error is not None:
            self.dropped_events += 1
            return True
        size = 0
        if type(event) is Audio:  # the hot path: one per audio frame
            self.audio_started = True
            size = len(event.data)
            if self._bytes_per_second:
                self._audio_seconds += size / self._bytes_per_second
            if event.words:
                event = self._retime(event)
            self.audio_bytes += size
        elif isinstance(event, FlushCompleted):
            if event.timings_restart:
                self._offset = max(self._offset + self._audio_seconds, self._last_word_end)
                self._audio_seconds = 0.0
        elif isinstance(event, Usage):
            self.usage_characters += event.processed_characters
            return True
        else:
            return True
        if self.sink is not None and not self._events and self.sink(event):
            return True  # handed on as it came: nothing queued, nobody to wake
        if self.buffered_bytes + size > self._max_bytes and self.buffered_bytes:
            return self._overflow(f"more than {self._max_bytes} bytes of audio unread")
        if len(self._events) >= self._max_events:
            return self._overflow("event buffer full")
        self._events.append(event)
        self.buffered_bytes += size
        if self.buffered_bytes >= self._pause_bytes:
            self.backlogged = True
        if self._reader is not None:
            self._wake()
        if self.ready is not None:
            self.ready()
        return True

    def _overflow(self, why: str) -> bool:
        self.dropped_events += 1
        self.fail(SlowConsumer(f"context {self.id}: {why} (the consumer fell behind)"))
        return False

    def _retime(self, event: Audio) -> Audio:
        """``event`` (with words) with its timings moved past the earlier generations."""
        offset = self._offset
        if offset == 0.0:
            self._last_word_end = max(self._last_word_end, event.words[-1].end)
            return event
        words = tuple(WordTiming(w.word, w.start + offset, w.end + offset) for w in event.words)
        self._last_word_end = max(self._last_word_end, words[-1].end)
        return Audio(event.context_id, event.data, words)

    def closed_by_server(self) -> None:
        """The server confirmed the close: iteration ends after the queued events."""
        if self.state in (ContextState.OPEN, ContextState.FINISHING):
            self.state = ContextState.CLOSED
        self._end()

    def fail(self, error: TTSError) -> bool:
        """End the stream with ``error`` (raised after the queued events). Returns False if
        it had already ended."""
        if self.state in TERMINAL:
            return False
        self.state = ContextState.FAILED
        self.error = error
        self._end()
        return True

    def _end(self) -> None:
        self.ended = True
        if self.backlogged:
            self._unblock()
        self.done.set()
        if self._reader is not None:
            self._wake()
        if self.ready is not None:
            self.ready()

    def _wake(self) -> None:
        reader, self._reader = self._reader, None
        assert reader is not None
        trio.lowlevel.reschedule(reader)

    # -- reader side (the Context) ---------------------------------------------------------

    def finishing(self) -> None:
        if self.state is ContextState.OPEN:
            self.state = ContextState.FINISHING

    def abandon(self) -> ContextState:
        """The caller left: drop the rest. Returns the state it left in."""
        state = self.state
        if state not in TERMINAL:
            self.state = ContextState.ABANDONED
            self._end()
        return state

    def take(self) -> Audio | FlushCompleted | None:
        """The oldest unread event, or None if none is buffered now."""
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) is Audio:
            self.buffered_bytes -= len(event.data)
            if self.backlogged and self.buffered_bytes < self._resume_bytes:
                self._unblock()
        return event

    def awaited(self) -> None:
        """The caller waits for the end (``Context.close``) before reading: reading on is
        the only way there, so the stream no longer counts as backlogged."""
        self._pause_bytes = self._resume_bytes = math.inf
        if self.backlogged:
            self._unblock()

    def _unblock(self) -> None:
        self.backlogged = False
        if self.unblocked is not None:
            self.unblocked()

    async def wait(self) -> None:
        """Park until an event is buffered or the stream ended (a checkpoint either way).

        Raises:
            trio.BusyResourceError: another task is already waiting.
        """
        if self._events or self.ended:
            await trio.lowlevel.checkpoint()
            return
        if self._reader is not None:
            raise trio.BusyResourceError("another task is already reading this context")
        self._reader = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._reader = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class Context(trio.abc.AsyncResource, Generic[OptionsT]):
    """One utterance stream. Create it with :meth:`Pool.open_context`, never directly.

    Use it as an async context manager; leaving the block before the server confirmed the
    close (error, cancellation, ``break``) cancels the utterance on the server — the pool
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
        self, owner: ContextOwner, stream: ContextStream, options: OptionsT, *, max_text: int
    ) -> None:
        self._owner = owner
        self._stream = stream
        self.id = stream.id
        self.options = options
        self._max_text = max_text
        self._unchecked = 0  # events taken since the last cancellation point

    @property
    def state(self) -> ContextState:
        return self._stream.state

    @property
    def audio_bytes(self) -> int:
        """Audio bytes received so far."""
        return self._stream.audio_bytes

    @property
    def usage_characters(self) -> int:
        """Characters the server reported as processed (billing), where it reports them."""
        return self._stream.usage_characters

    @property
    def dropped_events(self) -> int:
        """Events that arrived after the caller left (or after a failure) and were dropped."""
        return self._stream.dropped_events

    @property
    def buffered_bytes(self) -> int:
        """Audio bytes received and not yet read by the caller."""
        return self._stream.buffered_bytes

    @property
    def max_buffered_bytes(self) -> int:
        """The bound on :attr:`buffered_bytes` past which the context fails with
        :class:`SlowConsumer` (``PoolSettings.context_buffer_bytes``)."""
        return self._stream.max_bytes

    def __repr__(self) -> str:
        return (
            f"<Context {self.id} {self.state.value} audio={self.audio_bytes}B"
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
            await self._owner.send_command(
                self.id, SendText(piece, flush=flush and n == len(pieces) - 1)
            )

    async def flush(self) -> None:
        """Ask the server to synthesise all text sent so far (a ``FlushCompleted`` follows
        where the provider confirms flushes: Inworld and Rime do, ElevenLabs does not)."""
        self._check_open()
        await self._owner.send_command(self.id, Flush())

    async def finish(self) -> None:
        """No more text: the server finishes the audio, then iteration ends. Returns at once."""
        self._check_open()
        await self._owner.send_command(self.id, Close())
        # Only once the close is queued: a finish() cancelled before that leaves the context
        # OPEN, so leaving it still cancels it on the server.
        self._stream.finishing()

    async def close(self) -> None:
        """``finish()`` and wait until the server confirms the close.

        Audio that arrived meanwhile stays queued for iteration (up to the context's bound:
        waiting here, the context is exempt from the pool's flow control).

        Raises:
            ContextFailed, ConnectionLost, SlowConsumer: the context failed before the close.
        """
        if self.state is ContextState.OPEN:
            await self.finish()
        self._stream.awaited()
        await self._stream.done.wait()
        if self._stream.error is not None:
            raise self._stream.error

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

    def on_ready(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback()`` each time an event is queued for this context and when it
        ends (None: stop). For a bridge that reads with :meth:`receive_nowait` from another
        event loop on the same thread: the callback runs inside the pool's receiver, so it
        must return at once and never raise."""
        self._stream.ready = callback

    def on_event(self, sink: Callable[[Audio | FlushCompleted], bool] | None) -> None:
        """Offer each event to ``sink(event)`` as it arrives, before it is queued (None:
        stop). Only while nothing is queued, so the order holds: ``sink`` returns True when it
        took the event (it is then never queued, iterated or counted in
        :attr:`buffered_bytes`), False to queue it as usual. For a bridge that hands audio
        on to a non-blocking consumer without a task step per event; like :meth:`on_ready`,
        ``sink`` runs inside the pool's receiver, so it must return at once and never raise.
        The end of the context is still seen by iteration (:meth:`receive_nowait`)."""
        self._stream.sink = sink

    def receive_nowait(self) -> Audio | FlushCompleted:
        """The next queued event, without waiting (a synchronous call: also from a host
        loop on the run's thread, e.g. the asyncio bridge); what iteration does, minus the
        wait and the checkpoints.

        Raises:
            trio.WouldBlock: no event queued yet.
            StopAsyncIteration: the context ended (closed by the server, or left).
            ContextFailed, ConnectionLost, SlowConsumer, PoolClosed: it failed, after the
                events queued before the failure.
        """
        stream = self._stream
        event = stream.take()
        if event is not None:
            return event
        if stream.ended:
            if stream.error is not None:
                raise stream.error
            raise StopAsyncIteration
        raise trio.WouldBlock

    def __aiter__(self) -> AsyncIterator[Audio | FlushCompleted]:
        return self

    async def __anext__(self) -> Audio | FlushCompleted:
        # A buffered burst is handed over event by event without a trip through the
        # scheduler (see ContextStream: that cannot starve anyone), with a cancellation
        # point every 16 events. An empty buffer parks the task until the next burst.
        stream = self._stream
        events = stream._events
        while True:
            if events:
                self._unchecked += 1
                if self._unchecked >= 16:
                    # Every 16th event of a burst: a cancellation point, raising before the
                    # event leaves the buffer (and no yield otherwise: nothing can take it).
                    self._unchecked = 0
                    await trio.lowlevel.checkpoint_if_cancelled()
                event = stream.take()
                assert event is not None
                return event
            if stream.ended:
                await trio.lowlevel.checkpoint()
                if stream.error is not None:
                    raise stream.error from None
                raise StopAsyncIteration
            self._unchecked = 0
            await stream.wait()

    def _check_open(self) -> None:
        if self._stream.error is not None:
            raise self._stream.error
        if self.state is not ContextState.OPEN:
            raise trio.ClosedResourceError(f"context is {self.state.value}")

    def _abandon(self) -> None:
        left = self._stream.abandon()
        if left not in TERMINAL:
            self._owner.context_left(self.id, cancel=left is ContextState.OPEN)
