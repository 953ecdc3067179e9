"""Cartesia's TTS WebSocket (``/tts/websocket``): the codec, many contexts per connection.

Sans-io: :class:`CartesiaCodec` turns the pool's commands into JSON text frames and server
frames into :mod:`trio_tts._core.events`; :class:`~.provider.CartesiaProvider` names the URL,
credential and limits; :class:`~.options.CartesiaOptions` is what a context asks for.

The wire, as Cartesia documents it and its SDK 4.2.0 and LiveKit plugin 1.8.9 use it::

    client → {<settings>, "context_id", "transcript": "Hello. ", "continue": true}
             {<settings>, "context_id", "transcript": "", "continue": true, "flush": true}
             {<settings>, "context_id", "transcript": "", "continue": false}   end of input
             {"context_id", "cancel": true}
    server → {"type": "chunk", "context_id", "data": <base64>, "done": false, ...}
             {"type": "timestamps", "context_id", "word_timestamps": {"words", "start", "end"}}
             {"type": "flush_done", "context_id", "flush_id", "flush_done": true, ...}
             {"type": "done", "context_id", "done": true, "status_code": 200}
             {"type": "error", "context_id"?, "done", "status_code", "title", "message",
              "error_code"}

``<settings>`` (model, voice, output format, language, timestamps ...) travel in every request
and must not change within a context, so the codec encodes them once per context (a JSON
prefix) and each request appends only its transcript and flags.

How the pool's commands map onto it:

* ``create`` sends nothing: Cartesia has no create, the first request with a new
  ``context_id`` opens the context. Until text is sent, the context exists only here: a
  ``flush`` is answered at once (``FlushCompleted``) and a ``close`` or ``cancel`` ends it at
  once (``ContextClosed`` via :meth:`~CartesiaCodec.take_events`), with nothing on the wire.
* ``send_text`` → a request with ``continue: true``; ``flush`` → an empty request with
  ``flush: true``, answered by ``flush_done`` (→ ``FlushCompleted``; one that answers no
  flush of ours is ignored). Cartesia's word times run on from the start of the context's
  audio across flushes, so the ``FlushCompleted`` says ``timings_restart=False``.
* ``close`` → an empty request with ``continue: false``; the context ends only on the server's
  ``done`` (→ ``ContextClosed``: the pool frees the slot).
* ``cancel`` → ``{"cancel": true}``. Cartesia documents no answer to it. The slot comes back
  on whatever the server still sends that ends the context (``done``, an ``error`` with
  ``done: true``) or, if it stays silent, once the provider's ``cancel_expiry`` has passed
  since its last frame (the pool's timer: Cartesia ends a context 1 s after its last audio).

Errors are never swallowed (the LiveKit plugin reads an ``error`` with ``done: true`` as a
normal end): an ``error`` becomes ``ContextError`` (the pool fails the context with
:class:`~trio_tts.ContextFailed`, Cartesia's ``status_code`` as the code and
``title: message (error_code)`` as the message), followed by ``ContextClosed`` when it says
``done: true`` (the context is gone on the server). Without a ``context_id`` it is a
``ConnectionErrorEvent``. A ``done`` for a context whose input is still open means Cartesia
expired it (1 s after its last audio, with no more text or ``finish()`` in time): it fails
the context with a ``ContextError`` saying so, then frees it. A frame of another ``type``
is a :class:`~trio_tts.ProtocolError`.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import msgspec

from ..._core.errors import ProtocolError, redact
from ..._core.events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextCreated,
    ContextError,
    Event,
    FlushCompleted,
    WordTiming,
)
from .options import CartesiaOptions

__all__ = ["EXPIRED_MESSAGE", "CartesiaCodec", "Frame", "error_message"]

#: The message of the ContextError that reports a context Cartesia expired while open.
EXPIRED_MESSAGE: Final = (
    "Cartesia ended the context while its input was open: it expires 1 s after its last audio"
    " unless more text or finish() arrives in time"
)


# ------------------------------------------------------------------------------ server frames


class _WordTimestamps(msgspec.Struct):
    words: list[str] = []
    start: list[float] = []
    end: list[float] = []


class Frame(msgspec.Struct):
    """One server frame (the fields the codec reads; the rest are ignored)."""

    type: str
    context_id: str | None = None
    # msgspec decodes the base64 while parsing (see providers/inworld/codec.py).
    data: bytes | None = None
    done: bool = False
    status_code: int | None = None
    flush_id: int | None = None
    word_timestamps: _WordTimestamps | None = None
    title: str | None = None
    message: str | None = None
    error_code: str | None = None
    #: The older error shape: ``{"type": "error", "error": "<text>"}``.
    error: str | None = None


_DECODER: Final = msgspec.json.Decoder(Frame)
_ENCODE: Final = msgspec.json.Encoder().encode


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_message(frame: Frame) -> str:
    """``title: message (error_code)`` of an error frame (credentials redacted)."""
    text = ": ".join(p for p in (frame.title, frame.message or frame.error) if p)
    if frame.error_code:
        text = f"{text} ({frame.error_code})" if text else frame.error_code
    return redact(text) or "unspecified Cartesia error"


@attrs.define(eq=False)
class _Context:
    """What the codec remembers of one context it carries."""

    #: The request's JSON up to and including ``"context_id": ...,`` (settings encoded once).
    prefix: str
    #: A request reached the server: the context exists there.
    sent: bool = False
    #: ``continue: false`` was sent.
    closing: bool = False
    cancelled: bool = False
    #: Flushes sent and not yet answered by ``flush_done``.
    flushes: int = 0
    #: A frame for it arrived (reported once as ``ContextCreated``).
    heard: bool = False


# ------------------------------------------------------------------------------------ codec


class CartesiaCodec:
    """Client side of one Cartesia ``/tts/websocket`` connection (implements
    :class:`~trio_tts.ClientCodec`).

    Example::

        codec = CartesiaCodec()
        codec.create("c1", CartesiaOptions())             # []: the first request opens it
        codec.send_text("c1", "Hello there.")             # ['{"model_id":..."continue":true}']
        codec.close("c1")                                 # ['{..."continue":false}']
        codec.receive('{"type": "done", "context_id": "c1", "done": true}')
        # [ContextCreated(context_id='c1'), ContextClosed(context_id='c1')]

    Attributes:
        ignored_flush_dones: ``flush_done`` frames that answered no flush of ours.
        ignored_errors: ``error`` frames without ``done`` for a cancelled context (it still
            has to end).
        expired: contexts Cartesia ended while their input was open.
        phoneme_frames: ``phoneme_timestamps`` frames (never asked for; skipped).
    """

    def __init__(self) -> None:
        self._contexts: dict[str, _Context] = {}
        self._events: list[Event] = []
        self.ignored_flush_dones = 0
        self.ignored_errors = 0
        self.expired = 0
        self.phoneme_frames = 0

    def __repr__(self) -> str:
        return f"<CartesiaCodec contexts={len(self._contexts)} expired={self.expired}>"

    # -- commands

    def create(self, context_id: str, options: CartesiaOptions) -> list[str]:
        """Remember ``context_id`` and its settings; nothing to send yet."""
        fields: dict[str, Any] = {**options.request_fields(), "context_id": context_id}
        self._contexts[context_id] = _Context(_ENCODE(fields).decode()[:-1] + ",")
        return []

    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]:
        """A request with ``continue: true`` (none for ``""``); with ``flush`` a flush
        request follows."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closing or ctx.cancelled:
            return []
        frames: list[str] = []
        if text:
            ctx.sent = True
            frames.append(f'{ctx.prefix}"transcript":{_ENCODE(text).decode()},"continue":true}}')
        if flush:
            frames += self.flush(context_id)
        return frames

    def flush(self, context_id: str) -> list[str]:
        """An empty request with ``flush: true``; before any text, ``FlushCompleted`` at
        once instead (the server does not know the context yet)."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closing or ctx.cancelled:
            return []
        if not ctx.sent:
            self._events.append(FlushCompleted(context_id, timings_restart=False))
            return []
        ctx.flushes += 1
        return [f'{ctx.prefix}"transcript":"","continue":true,"flush":true}}']

    def close(self, context_id: str) -> list[str]:
        """An empty request with ``continue: false`` (``ContextClosed`` follows the server's
        ``done``); before any text, ``ContextClosed`` at once instead."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closing or ctx.cancelled:
            return []
        if not ctx.sent:
            self._end(context_id)
            return []
        ctx.closing = True
        return [f'{ctx.prefix}"transcript":"","continue":false}}']

    def cancel(self, context_id: str) -> list[str]:
        """``{"cancel": true}`` (also after a close: it stops the generation sooner); before
        any text, ``ContextClosed`` at once instead."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.cancelled:
            return []
        if not ctx.sent:
            self._end(context_id)
            return []
        ctx.cancelled = True
        return [f'{{"context_id":{_ENCODE(context_id).decode()},"cancel":true}}']

    def take_events(self) -> list[Event]:
        """The events produced while encoding commands (see :class:`ClientCodec`)."""
        events, self._events = self._events, []
        return events

    def goodbye(self) -> list[str]:
        """None: a Cartesia connection ends with the WebSocket close frame alone."""
        return []

    def keepalive(self) -> list[str]:
        """None: Cartesia has no keep-alive message (the provider sets no interval)."""
        return []

    def _end(self, context_id: str) -> None:
        del self._contexts[context_id]
        self._events.append(ContextClosed(context_id))

    # -- server frames

    def receive(self, frame: str | bytes) -> list[Event]:
        """Decode one server frame into events (see the module docstring).

        Raises:
            ProtocolError: a binary frame, invalid JSON, wrong field types, invalid base64,
                a ``type`` Cartesia does not send, or a frame (but an error) without
                ``context_id``.
        """
        if not isinstance(frame, str):
            raise ProtocolError("unexpected binary frame from Cartesia")
        try:
            decoded = _DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed Cartesia frame: {_short(str(exc))}") from None
        kind, cid = decoded.type, decoded.context_id
        if cid is None:
            if kind == "error":
                return [ConnectionErrorEvent(decoded.status_code, error_message(decoded))]
            raise ProtocolError(f"Cartesia {_short(kind, 40)!r} frame without context_id")
        events: list[Event] = []
        ctx = self._contexts.get(cid)
        if ctx is not None and not ctx.heard:
            ctx.heard = True
            events.append(ContextCreated(cid))
        if kind == "chunk":
            if decoded.data:
                events.append(Audio(cid, decoded.data))
        elif kind == "timestamps":
            ts = decoded.word_timestamps
            if ts is not None and ts.words:
                words = zip(ts.words, ts.start, ts.end, strict=False)
                events.append(Audio(cid, b"", tuple(WordTiming(w, s, e) for w, s, e in words)))
        elif kind == "flush_done":
            if ctx is None:
                events.append(FlushCompleted(cid, timings_restart=False))  # a stray
            elif ctx.flushes and not ctx.cancelled:
                ctx.flushes -= 1
                events.append(FlushCompleted(cid, timings_restart=False))
            else:
                self.ignored_flush_dones += 1
        elif kind == "done":
            events += self._done(cid, ctx)
        elif kind == "error":
            events += self._error(cid, ctx, decoded)
        elif kind == "phoneme_timestamps":
            self.phoneme_frames += 1
        else:
            raise ProtocolError(f"unknown Cartesia frame type {_short(kind, 40)!r}")
        return events

    def _done(self, cid: str, ctx: _Context | None) -> list[Event]:
        if ctx is None:
            return [ContextClosed(cid)]  # not ours (any more): the pool counts it as a stray
        del self._contexts[cid]
        if ctx.closing or ctx.cancelled:
            return [ContextClosed(cid)]
        self.expired += 1
        return [ContextError(cid, None, EXPIRED_MESSAGE), ContextClosed(cid)]

    def _error(self, cid: str, ctx: _Context | None, frame: Frame) -> list[Event]:
        if ctx is not None and ctx.cancelled:
            if not frame.done:
                self.ignored_errors += 1  # it still has to end: keep waiting
                return []
            del self._contexts[cid]
            return [ContextClosed(cid)]  # its caller left: nobody to report the error to
        events: list[Event] = [ContextError(cid, frame.status_code, error_message(frame))]
        if ctx is not None and frame.done:
            del self._contexts[cid]
            events.append(ContextClosed(cid))
        return events
