"""Typed events, shared by the sans-io codecs and the public context API. No I/O here.

A codec turns server frames into these; a :class:`~trio_tts.Context` yields the caller's
share of them (``Audio`` and ``FlushCompleted``) from ``async for event in ctx``.

They are frozen ``msgspec`` structs: made per message on the hot path, they cost a tenth
of an attrs class to build (~0.3 µs instead of ~2.4 µs for three fields, measured) and,
holding no container that could point back at them, are left out of the garbage
collector's tracking (``gc=False``). They compare, hash and ``match`` by their fields.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Audio",
    "ConnectionErrorEvent",
    "ContextClosed",
    "ContextCreated",
    "ContextError",
    "Event",
    "FlushCompleted",
    "Usage",
    "WordTiming",
]


class WordTiming(msgspec.Struct, frozen=True, gc=False):
    """One word's place in the audio, in seconds from the start of the context's audio."""

    word: str
    start: float
    end: float


class ContextCreated(msgspec.Struct, frozen=True, gc=False):
    """The server accepted the context's ``create`` command."""

    context_id: str


class Audio(msgspec.Struct, frozen=True, gc=False):
    """A chunk of audio for one context.

    ``data`` is raw PCM (LINEAR16 chunks have their WAV header stripped) or, for compressed
    encodings, the encoder's bytes in stream order. ``words`` are the word timings the
    server attached to the chunk; a :class:`~trio_tts.Context` makes them monotonic across
    flushes (Inworld and Rime restart them at zero after each flush; Cartesia's run on, see
    :class:`FlushCompleted`).
    """

    context_id: str
    data: bytes
    words: tuple[WordTiming, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Audio(context_id={self.context_id!r}, bytes={len(self.data)},"
            f" words={len(self.words)})"
        )


class FlushCompleted(msgspec.Struct, frozen=True, gc=False):
    """All audio for the text sent before a flush has been delivered.

    ``timings_restart`` says how the provider times the words after the flush: True (Inworld,
    Rime) when they restart at zero (a :class:`~trio_tts.Context` then adds the audio before
    the flush, keeping them monotonic); False (Cartesia) when they run on from the start of
    the context's audio, as they are.
    """

    context_id: str
    timings_restart: bool = True


class ContextClosed(msgspec.Struct, frozen=True, gc=False):
    """The server confirmed the context closed; its slot on the connection is free again."""

    context_id: str


class ContextError(msgspec.Struct, frozen=True, gc=False):
    """The server reported an error status for one context (it fails only that context)."""

    context_id: str
    code: int | None
    message: str


class ConnectionErrorEvent(msgspec.Struct, frozen=True, gc=False):
    """An error not tied to a context (Inworld's top-level ``{"error": ...}``)."""

    code: int | None
    message: str


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Billing information the server attached to a context (characters processed)."""

    context_id: str
    processed_characters: int


Event = (
    ContextCreated
    | Audio
    | FlushCompleted
    | ContextClosed
    | ContextError
    | ConnectionErrorEvent
    | Usage
)
