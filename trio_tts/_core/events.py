"""Typed events, shared by the sans-io codecs and the public context API. No I/O here.

A codec turns server frames into these; a :class:`~trio_tts.Context` yields the caller's
share of them (``Audio`` and ``FlushCompleted``) from ``async for event in ctx``.
"""

from __future__ import annotations

import attrs

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


@attrs.frozen
class WordTiming:
    """One word's place in the audio, in seconds from the start of the context's audio."""

    word: str
    start: float
    end: float


@attrs.frozen
class ContextCreated:
    """The server accepted the context's ``create`` command."""

    context_id: str


@attrs.frozen(repr=False)
class Audio:
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


@attrs.frozen
class FlushCompleted:
    """All audio for the text sent before a flush has been delivered.

    ``timings_restart`` says how the provider times the words after the flush: True (Inworld,
    Rime) when they restart at zero (a :class:`~trio_tts.Context` then adds the audio before
    the flush, keeping them monotonic); False (Cartesia) when they run on from the start of
    the context's audio, as they are.
    """

    context_id: str
    timings_restart: bool = True


@attrs.frozen
class ContextClosed:
    """The server confirmed the context closed; its slot on the connection is free again."""

    context_id: str


@attrs.frozen
class ContextError:
    """The server reported an error status for one context (it fails only that context)."""

    context_id: str
    code: int | None
    message: str


@attrs.frozen
class ConnectionErrorEvent:
    """An error not tied to a context (Inworld's top-level ``{"error": ...}``)."""

    code: int | None
    message: str


@attrs.frozen
class Usage:
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
