"""Rime's JSON WebSocket (``/ws3``): the codec, one utterance at a time per connection.

Sans-io: :class:`RimeCodec` turns the pool's commands into JSON text frames and server frames
into :mod:`trio_tts._core.events`; :class:`~.provider.RimeProvider` names the URL, credential
and limits; :class:`~.options.RimeOptions` is what a context asks for. Everything about the
voice travels in the connection URL's query (``speaker``, ``modelId``, ``audioFormat=pcm``,
``samplingRate``, ``segment``, ``lang`` and the model's own parameters), so two contexts may
share a connection only when their URLs are equal: that URL is the provider's connection key,
and a change of options retires the connections of the old URL (``Pool.update_options``).

The wire, as livekit-plugins-rime 1.8.9 (``_legacy_websocket_adapter``) uses it::

    client → {"text": "Hello there. ", "contextId": "c1"}    text to synthesise
             {"operation": "flush"}                         synthesise the buffer now
             {"operation": "clear"}                         drop the buffer (barge-in)
             {"operation": "eos"}                           synthesise the rest, then close
    server → {"type": "chunk", "data": <base64 PCM>, "contextId"?}
             {"type": "timestamps", "word_timestamps": {"words", "start", "end"}, "contextId"?}
             {"type": "done", "contextId"?}                 the synthesis asked for is complete
             {"type": "error", "message"}                   the connection stays usable

How the pool's commands map onto it — the codec is per connection and remembers the one
context it carries:

* ``create`` sends nothing (the URL carries the voice); it refuses a second context while the
  previous one is not drained (a :class:`~trio_tts.ProtocolError`, which ends the connection:
  the new context moves to a fresh one before any audio, so stale audio can never reach it).
* ``send_text`` → a text frame; ``flush`` → ``flush`` (answered by one ``done``, which
  becomes ``FlushCompleted``).
* ``close`` → ``flush`` for any text not yet flushed; when the ``done`` of the last
  outstanding flush arrives the codec emits ``ContextClosed`` and the pool frees the slot.
  An utterance that never had text closes at once, without the server (no audio, no wait).
* ``cancel`` → ``clear`` then ``flush``: the ``done`` that answers that final flush comes
  after every frame of the abandoned synthesis, so only then is the connection *provably
  drained* and the ``ContextClosed`` emitted. Until then the slot stays taken.

Frames tagged with another ``contextId`` than the current one, or arriving while no context
is current, are attributed to a context the connection no longer hosts: the connection
counts and drops them, they never reach the next utterance. A ``done`` that answers no flush
of ours (e.g. sentence segmentation finishing on its own) is ignored, never taken as an end.
Word timings restart at zero after each ``done``, like Inworld's after each flush; the
:class:`~trio_tts.Context` makes them monotonic.
"""

from __future__ import annotations

import collections
from typing import Any, Final, Literal

import msgspec

from ..._core.errors import ProtocolError, redact
from ..._core.events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextError,
    Event,
    FlushCompleted,
    WordTiming,
)

__all__ = ["RimeCodec"]


# ------------------------------------------------------------------------------ server frames


class _WordTimestamps(msgspec.Struct):
    words: list[str] = []
    start: list[float] = []
    end: list[float] = []


class _Frame(msgspec.Struct):
    type: str
    # msgspec decodes the base64 while parsing (see providers/inworld/codec.py).
    data: bytes = b""
    contextId: str | None = None
    word_timestamps: _WordTimestamps | None = None
    message: str = ""


_DECODER: Final = msgspec.json.Decoder(_Frame)
_ENCODE: Final = msgspec.json.Encoder().encode
_PendingKind = Literal["flush", "close", "cancel"]


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ codec


class RimeCodec:
    """Client side of one Rime ``/ws3`` connection (implements :class:`ClientCodec`).

    Example::

        codec = RimeCodec()
        codec.create("c1", RimeOptions())                 # []: the URL carries the voice
        codec.send_text("c1", "Hello there.")             # ['{"text":...,"contextId":"c1"}']
        codec.close("c1")                                 # ['{"operation":"flush",...}']
        codec.receive('{"type": "done"}')                 # [ContextClosed(context_id='c1')]

    Attributes:
        stray_frames: frames tagged with a context this connection no longer carries.
        ignored_dones: ``done`` frames that answered no flush of ours.
        ignored_errors: ``error`` frames while a cancelled context drains (it still must).
        unknown_frames: frames of a ``type`` this codec does not know (counted, skipped).
    """

    def __init__(self) -> None:
        self._current: str | None = None
        self._previous: str | None = None
        # One entry per flush sent and not yet answered by a done, oldest first.
        self._pending: collections.deque[_PendingKind] = collections.deque()
        self._closing = False
        self._cancelled = False
        self._had_text = False
        self._unflushed = False
        self._events: list[Event] = []
        self.stray_frames = 0
        self.ignored_dones = 0
        self.ignored_errors = 0
        self.unknown_frames = 0

    @property
    def state(self) -> str:
        """``idle``, ``streaming``, ``closing`` (waiting for ``done``) or ``draining``
        (cancelled, waiting for the ``done`` that proves it drained)."""
        if self._current is None:
            return "idle"
        if self._cancelled:
            return "draining"
        return "closing" if self._closing else "streaming"

    def __repr__(self) -> str:
        return (
            f"<RimeCodec {self.state} context={self._current!r} pending={len(self._pending)}"
            f" strays={self.stray_frames}>"
        )

    # -- commands

    def create(self, context_id: str, options: Any) -> list[str]:
        """Start carrying ``context_id``; nothing to send (the URL carries the voice).

        Raises:
            ProtocolError: the previous utterance is not drained yet (the connection must
                not be reused: the pool moves the new context to another one).
        """
        if self._current is not None or self._pending:
            raise ProtocolError(
                f"Rime carries one utterance at a time; {self._current or self._previous} "
                "is not drained"
            )
        self._current = context_id
        self._closing = self._cancelled = self._had_text = self._unflushed = False
        return []

    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]:
        """A text frame (none for ``""``, nor for blanks before the utterance's first word:
        they would only wait in the server's buffer); with ``flush`` a ``flush`` frame
        follows. Blanks after a word are sent and, like words, flushed by :meth:`close`, so
        nothing of this utterance stays buffered for the next one on the connection."""
        if context_id != self._current or self._closing:
            return []
        frames: list[str] = []
        if text.strip() or (text and self._had_text):
            frames.append(_ENCODE({"text": text, "contextId": context_id}).decode())
            self._had_text = self._unflushed = True
        if flush:
            frames += self.flush(context_id)
        return frames

    def flush(self, context_id: str) -> list[str]:
        """``flush``; with no text since the last one, a ``FlushCompleted`` at once instead."""
        if context_id != self._current or self._closing:
            return []
        if not self._unflushed:
            self._events.append(FlushCompleted(context_id))
            return []
        self._unflushed = False
        self._pending.append("flush")
        return [self._operation("flush", context_id)]

    def close(self, context_id: str) -> list[str]:
        """Flush what is left; ``ContextClosed`` follows the last ``done`` (or comes at once
        for an utterance that never had text, or whose flushes were all answered)."""
        if context_id != self._current or self._closing:
            return []
        self._closing = True
        frames: list[str] = []
        if self._had_text and self._unflushed:
            self._unflushed = False
            self._pending.append("close")
            frames.append(self._operation("flush", context_id))
        if not self._pending:
            self._events.append(self._end())
        return frames

    def cancel(self, context_id: str) -> list[str]:
        """``clear`` then ``flush``: ``ContextClosed`` only once the server's ``done`` for that
        flush proves every frame of the utterance has arrived (and was dropped)."""
        if context_id != self._current or self._cancelled:
            return []
        if self._closing:
            # The close was sent: its ``done`` ends the utterance. A clear now would race
            # it; only stop reporting errors for it (it still has to drain).
            self._cancelled = True
            return []
        self._closing = self._cancelled = True
        if not self._had_text:
            self._events.append(self._end())  # nothing was sent: nothing can come back
            return []
        self._unflushed = False
        self._pending.append("cancel")
        return [self._operation("clear", context_id), self._operation("flush", context_id)]

    def take_events(self) -> list[Event]:
        """The events produced while encoding commands (see :class:`ClientCodec`)."""
        events, self._events = self._events, []
        return events

    def goodbye(self) -> list[str]:
        """``eos``: the server synthesises what is left and closes (answer awaited ≤ 1 s)."""
        return [_ENCODE({"operation": "eos"}).decode()]

    def keepalive(self) -> list[str]:
        """None: Rime needs no keep-alive (sessions end at ``max_session_duration``)."""
        return []

    @staticmethod
    def _operation(name: str, context_id: str) -> str:
        return _ENCODE({"operation": name, "contextId": context_id}).decode()

    def _end(self) -> ContextClosed:
        """The current context is over: forget it (its late frames become strays)."""
        assert self._current is not None and not self._pending
        closed = ContextClosed(self._current)
        self._previous, self._current = self._current, None
        return closed

    # -- server frames

    def receive(self, frame: str | bytes) -> list[Event]:
        """Decode one server frame into events.

        Raises:
            ProtocolError: a binary frame, invalid JSON, wrong field types, invalid base64.
        """
        if not isinstance(frame, str):
            raise ProtocolError("unexpected binary frame from Rime")
        try:
            decoded = _DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed Rime frame: {_short(str(exc))}") from None
        kind, tag = decoded.type, decoded.contextId
        if kind == "chunk":
            return [Audio(self._owner(tag), decoded.data)]
        if kind == "timestamps":
            ts = decoded.word_timestamps
            if ts is None or not ts.words:
                return []
            words = tuple(
                WordTiming(w, s, e) for w, s, e in zip(ts.words, ts.start, ts.end, strict=False)
            )
            return [Audio(self._owner(tag), b"", words)]
        if kind == "done":
            return self._done(tag)
        if kind == "error":
            message = redact(decoded.message) or "unspecified Rime error"
            if self._current is None:
                return [ConnectionErrorEvent(None, message)]
            if self._cancelled:
                self.ignored_errors += 1  # it still has to drain: keep waiting for done
                return []
            return [ContextError(self._current, None, message)]
        self.unknown_frames += 1
        return []

    def _owner(self, tag: str | None) -> str:
        """The context a chunk belongs to. Anything not the current context's is routed to
        an id the connection no longer hosts (counted as a stray there, never delivered)."""
        if tag is not None:
            if tag != self._current:
                self.stray_frames += 1
            return tag
        if self._current is not None:
            return self._current
        self.stray_frames += 1
        return self._previous or ""

    def _done(self, tag: str | None) -> list[Event]:
        current = self._current
        if tag is not None and tag != current:
            self.stray_frames += 1
            return []
        if current is None or not self._pending:
            self.ignored_dones += 1
            return []
        kind = self._pending.popleft()
        events: list[Event] = []
        if kind == "flush" and not self._cancelled:
            events.append(FlushCompleted(current))
        if self._closing and not self._pending:
            events.append(self._end())
        return events
