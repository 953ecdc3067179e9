"""Inworld's bidirectional streaming TTS (``/tts/v1/voice:streamBidirectional``): the codec.

Sans-io: :class:`InworldCodec` turns commands into JSON text frames and server frames into
:mod:`trio_tts._core.events` (:class:`~.provider.InworldProvider` names the URL, credential and
limits). The HTTP client (:mod:`.http`) decodes its NDJSON lines with the same
:data:`FRAME_DECODER`, :func:`word_timings` and :func:`strip_wav_header`.

Commands match what livekit-plugins-inworld 1.8.x sends (camelCase JSON names)::

    {"create": {"voiceId", "modelId", "audioConfig": {...}, "temperature", ...}, "contextId"}
    {"send_text": {"text": "...", "flush_context": {}?}, "contextId"}
    {"flush_context": {}, "contextId"}     {"close_context": {}, "contextId"}

Server frames are ``{"result": {"contextId", <one of contextCreated | audioChunk |
flushCompleted | contextClosed>, "status"?, "usage"?}}`` or a top-level ``{"error": ...}``.
They are decoded by a typed msgspec decoder whose audio field is ``bytes``, so msgspec
decodes the base64 while parsing (about 4x faster than ``json.loads`` + ``b64decode`` on a
13 KB audio frame; see ``benchmarks/bench_transport.py``).
"""

from __future__ import annotations

from typing import Any, Final

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
    Usage,
    WordTiming,
)
from ..._core.options import AudioEncoding
from .options import VoiceOptions

__all__ = [
    "FRAME_DECODER",
    "Frame",
    "InworldCodec",
    "TimestampInfo",
    "strip_wav_header",
    "word_timings",
]

_UNSET = msgspec.UNSET


# ------------------------------------------------------------------------ server frame types


class WordAlignment(msgspec.Struct):
    words: list[str] = []
    wordStartTimeSeconds: list[float] = []
    wordEndTimeSeconds: list[float] = []


class CharacterAlignment(msgspec.Struct):
    characters: list[str] = []
    characterStartTimeSeconds: list[float] = []
    characterEndTimeSeconds: list[float] = []


class TimestampInfo(msgspec.Struct):
    """Word and/or character timings of an audio chunk."""

    wordAlignment: WordAlignment | None = None
    characterAlignment: CharacterAlignment | None = None


class UsageCount(msgspec.Struct):
    processedCharactersCount: int = 0


class AudioChunk(msgspec.Struct):
    audioContent: bytes = b""
    timestampInfo: TimestampInfo | None = None
    usage: UsageCount | None = None


class Status(msgspec.Struct):
    code: int = 0
    message: str = ""


class Result(msgspec.Struct):
    contextId: str | None = None
    # Presence markers: their value ({} or details) carries nothing we use.
    contextCreated: Any = _UNSET
    flushCompleted: Any = _UNSET
    contextClosed: Any = _UNSET
    contextUpdated: Any = _UNSET
    audioChunk: AudioChunk | None = None
    # The older / HTTP shape puts the audio directly in the result.
    audioContent: bytes | None = None
    timestampInfo: TimestampInfo | None = None
    status: Status | None = None
    usage: UsageCount | None = None


class Frame(msgspec.Struct):
    """One server frame (WebSocket) or NDJSON line (HTTP ``voice:stream``)."""

    result: Result | None = None
    error: Status | None = None


#: Decodes one server frame into a :class:`Frame` (base64 audio decoded while parsing).
FRAME_DECODER: Final = msgspec.json.Decoder(Frame)
_ENCODE: Final = msgspec.json.Encoder().encode


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def strip_wav_header(chunk: bytes) -> bytes:
    """Return the samples of a RIFF/WAVE chunk: everything after the ``data`` sub-chunk header.

    Walks the RIFF sub-chunks (``fmt ``, ``LIST`` ...) rather than assuming 44 bytes. The
    ``data`` size field is not trusted (streaming encoders write 0 or 0xFFFFFFFF).

    Raises:
        ProtocolError: the chunk starts with ``RIFF`` but has no ``WAVE`` form or ``data``
            sub-chunk.
    """
    if len(chunk) < 12 or chunk[8:12] != b"WAVE":
        raise ProtocolError("LINEAR16 chunk has a RIFF header that is not WAVE")
    pos = 12
    while pos + 8 <= len(chunk):
        chunk_id = chunk[pos : pos + 4]
        size = int.from_bytes(chunk[pos + 4 : pos + 8], "little")
        if chunk_id == b"data":
            return chunk[pos + 8 :]
        pos += 8 + size + (size & 1)
    raise ProtocolError("LINEAR16 chunk has a WAV header without a data chunk")


def word_timings(info: TimestampInfo | None) -> tuple[WordTiming, ...]:
    """The word (and character) timings of a chunk, in the order the server sent them."""
    if info is None:
        return ()
    timings: list[WordTiming] = []
    if (wa := info.wordAlignment) is not None:
        timings.extend(
            WordTiming(w, s, e)
            for w, s, e in zip(
                wa.words, wa.wordStartTimeSeconds, wa.wordEndTimeSeconds, strict=False
            )
        )
    if (ca := info.characterAlignment) is not None:
        timings.extend(
            WordTiming(c, s, e)
            for c, s, e in zip(
                ca.characters,
                ca.characterStartTimeSeconds,
                ca.characterEndTimeSeconds,
                strict=False,
            )
        )
    return tuple(timings)


# ------------------------------------------------------------------------------------ codec


class InworldCodec:
    """Client side of one Inworld connection (implements :class:`ClientCodec`).

    Remembers each open context's audio encoding (from :meth:`create`) so that ``LINEAR16``
    chunks lose their WAV header and ``PCM`` chunks stay untouched; forgets it when the
    server confirms ``contextClosed``.

    Example::

        codec = InworldCodec()
        frames = codec.create("c1", VoiceOptions(voice="Ashley"))
        events = codec.receive('{"result": {"contextId": "c1", "contextCreated": {}}}')
        # [ContextCreated(context_id='c1')]
    """

    def __init__(self) -> None:
        self._encodings: dict[str, AudioEncoding] = {}

    def __repr__(self) -> str:
        return f"<InworldCodec contexts={len(self._encodings)}>"

    # -- commands

    def create(self, context_id: str, options: VoiceOptions) -> list[str]:
        """The ``create`` frame for a new context with ``options``."""
        create: dict[str, Any] = {
            "voiceId": options.voice,
            "modelId": options.model,
            "audioConfig": {
                "audioEncoding": options.encoding.value,
                "sampleRateHertz": options.sample_rate,
                "bitrate": options.bit_rate,
                "speakingRate": options.speaking_rate,
            },
            "temperature": options.temperature,
        }
        if options.buffer_char_threshold is not None:
            create["bufferCharThreshold"] = options.buffer_char_threshold
        if options.max_buffer_delay_ms is not None:
            create["maxBufferDelayMs"] = options.max_buffer_delay_ms
        if options.auto_mode is not None:
            create["autoMode"] = options.auto_mode
        if options.auto_mode_strategy is not None:
            create["autoModeStrategy"] = options.auto_mode_strategy
        create.update(options.optional_fields())
        self._encodings[context_id] = options.encoding
        return [_ENCODE({"create": create, "contextId": context_id}).decode()]

    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]:
        """A ``send_text`` frame; with ``flush`` it carries ``flush_context`` inside it."""
        body: dict[str, Any] = {"text": text}
        if flush:
            body["flush_context"] = {}
        return [_ENCODE({"send_text": body, "contextId": context_id}).decode()]

    def flush(self, context_id: str) -> list[str]:
        """A ``flush_context`` frame: synthesise everything buffered so far."""
        return [_ENCODE({"flush_context": {}, "contextId": context_id}).decode()]

    def close(self, context_id: str) -> list[str]:
        """A ``close_context`` frame: finish the buffered text, then close the context."""
        return [_ENCODE({"close_context": {}, "contextId": context_id}).decode()]

    def cancel(self, context_id: str) -> list[str]:
        """Stop a context: ``close_context`` (the documented way; ``cancel_context`` is not).

        The server may still send audio for it until ``contextClosed``; the caller drops it.
        """
        return self.close(context_id)

    # -- server frames

    def receive(self, frame: str | bytes) -> list[Event]:
        """Decode one server frame into events, in this order: ``ContextCreated``,
        ``Audio``, ``Usage``, ``FlushCompleted``, ``ContextError``, ``ContextClosed``.

        A ``status`` with code 0 is not an error. A status error without a ``contextId``
        becomes a :class:`ConnectionErrorEvent`, as does a top-level ``error``.

        Raises:
            ProtocolError: binary frame, invalid JSON, wrong field types, invalid base64, a
                result without ``contextId`` or without any known content.
        """
        if not isinstance(frame, str):
            raise ProtocolError("unexpected binary frame from Inworld")
        try:
            decoded = FRAME_DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed Inworld frame: {_short(str(exc))}") from None

        events: list[Event] = []
        if decoded.error is not None:
            events.append(ConnectionErrorEvent(decoded.error.code, redact(decoded.error.message)))
        result = decoded.result
        if result is None:
            if not events:
                raise ProtocolError("Inworld frame has neither result nor error")
            return events

        ctx = result.contextId
        status = result.status
        failed = status is not None and status.code != 0
        if ctx is None:
            if failed and status is not None:
                events.append(ConnectionErrorEvent(status.code, redact(status.message)))
                return events
            raise ProtocolError("Inworld result without contextId")

        if result.contextCreated is not _UNSET:
            events.append(ContextCreated(ctx))
        chunk = result.audioChunk
        if chunk is not None:
            events.append(
                Audio(ctx, self._pcm(ctx, chunk.audioContent), word_timings(chunk.timestampInfo))
            )
            if chunk.usage is not None:
                events.append(Usage(ctx, chunk.usage.processedCharactersCount))
        elif result.audioContent is not None:
            events.append(
                Audio(ctx, self._pcm(ctx, result.audioContent), word_timings(result.timestampInfo))
            )
        if result.usage is not None:
            events.append(Usage(ctx, result.usage.processedCharactersCount))
        if result.flushCompleted is not _UNSET:
            events.append(FlushCompleted(ctx))
        if failed and status is not None:
            events.append(ContextError(ctx, status.code, redact(status.message)))
        if result.contextClosed is not _UNSET:
            self._encodings.pop(ctx, None)
            events.append(ContextClosed(ctx))
        if not events and status is None and result.contextUpdated is _UNSET:
            raise ProtocolError("Inworld result with no known content")
        return events

    def take_events(self) -> list[Event]:
        """None: every Inworld event comes from the server."""
        return []

    def goodbye(self) -> list[str]:
        """None: an Inworld connection ends with the WebSocket close frame alone."""
        return []

    def keepalive(self) -> list[str]:
        """None: Inworld keeps contexts open without keep-alives (the heartbeat's pings keep
        the socket)."""
        return []

    def _pcm(self, context_id: str, data: bytes) -> bytes:
        encoding = self._encodings.get(context_id, AudioEncoding.LINEAR16)
        if encoding is AudioEncoding.LINEAR16 and data[:4] == b"RIFF":
            return strip_wav_header(data)
        return data
