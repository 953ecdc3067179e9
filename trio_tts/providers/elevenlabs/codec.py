"""ElevenLabs' multi-context WebSocket (``/v1/text-to-speech/{voice_id}/multi-stream-input``):
the codec.

Sans-io: :class:`ElevenLabsCodec` turns the pool's commands into JSON text frames and server
frames into :mod:`trio_tts._core.events`; :class:`~.provider.ElevenLabsProvider` names the URL
(the voice and the connection options), the credential and the limits. The wire, as
livekit-plugins-elevenlabs 1.8.9 and ElevenLabs' AsyncAPI schema describe it::

    client → {"text": " ", "voice_settings": {...}, "generation_config"?, "context_id": X}
             {"text": "Hello there. ", "context_id": X, "flush"?: true}
             {"text": "", "context_id": X, "flush": true}          synthesise the buffer now
             {"text": "", "context_id": X}                         keep-alive (resets the timer)
             {"context_id": X, "close_context": true}              no more text / stop
             {"close_socket": true}                                end the connection
    server → {"audio": <base64>, "normalizedAlignment"?, "alignment"?, "contextId": X}
             {"isFinal": true, "contextId": X}                     the context is gone
             {"error": "<name>", "message": "...", "code": 1008, "contextId"?: X}

How the pool's commands map onto it:

* ``create`` → the context's first message: its text is one space, as ElevenLabs requires.
* ``send_text`` → the text verbatim (the server concatenates a context's text; a piece may
  end inside a word). With ``flush`` a missing trailing space is added, as LiveKit does: the
  piece ends a phrase. ``flush`` → an empty text with ``flush: true``.
* ``close`` → a flush, then ``close_context`` (ElevenLabs' schema: ``close_context`` lets
  only what was flushed finish). ``cancel`` → ``close_context`` alone: ElevenLabs has no other
  way to stop a context, and what it still sends is dropped by the pool. Either way the
  context ends **only** when the server says so — ``isFinal``, an error naming it, or the
  socket's end: until then its slot stays taken, so a burst of barge-ins never puts a sixth
  context on a socket (livekit/agents-js#1985).
* ``keepalive`` → for each open context that sent nothing since the previous call, the
  documented keep-alive ``{"text": "", "context_id": X}`` (the connection calls it every
  ``keepalive_interval``); ``goodbye`` → ``close_socket``.

Server frames: ``audio`` (base64, decoded once by msgspec while parsing) becomes
:class:`~trio_tts.Audio`; the alignment's characters become its ``words`` — a word is emitted
once the character after it (a space) has arrived, the last one at ``isFinal`` — with times in
seconds from the start of the context's audio. ElevenLabs' schema calls the times "relative to
the returned chunk" while LiveKit reads them as cumulative per context: the codec accepts
both (times that go back mark chunk-relative timings, which are then offset by the audio that
came before — exact for PCM), so words are always cumulative and monotonic. An ``error`` with
a context id fails that context (:class:`~trio_tts._core.events.ContextError` with
ElevenLabs' ``code`` and ``"<error>: <message>"``) and ends it — ElevenLabs forgets a context it
reports failed and sends no ``isFinal`` for it, so the error is also the confirmation that
frees its slot (``ContextClosed`` follows); one without is about the whole socket
(``max_active_conversations``, an invalid message, ...), which ElevenLabs closes right after:
:meth:`receive` raises :class:`~trio_tts.ConnectionLost` so the pool ends the connection at
once, moving the contexts that had no audio yet. A frame that is none of these raises
:class:`~trio_tts.ProtocolError`: nothing is skipped silently.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import msgspec
from msgspec import UNSET, UnsetType

from ..._core.errors import ConnectionLost, ProtocolError, redact
from ..._core.events import Audio, ContextClosed, ContextError, Event, WordTiming
from ..._core.options import AudioEncoding
from .options import ElevenLabsOptions

__all__ = ["ElevenLabsCodec"]

_ENCODE: Final = msgspec.json.Encoder().encode
#: How far (ms) a chunk's first character may start before the previous chunk's end and still
#: be read as cumulative (rounding); further back, the timings restart with each chunk.
_BACKWARDS_MS: Final = 10.0


# ------------------------------------------------------------------------------ server frames


class _Alignment(msgspec.Struct):
    chars: list[str] = []
    # LiveKit reads both spellings of the two time lists.
    charStartTimesMs: list[float] | None = None
    charsStartTimesMs: list[float] | None = None
    charDurationsMs: list[float] | None = None
    charsDurationsMs: list[float] | None = None


class _Frame(msgspec.Struct):
    # msgspec decodes the base64 while parsing (see providers/inworld/codec.py). UNSET: the
    # key is absent (a frame with none of these keys is not an ElevenLabs message).
    audio: bytes | UnsetType | None = UNSET
    isFinal: bool | UnsetType | None = UNSET
    is_final: bool | UnsetType | None = UNSET
    normalizedAlignment: _Alignment | UnsetType | None = UNSET
    alignment: _Alignment | UnsetType | None = UNSET
    contextId: str | None = None
    context_id: str | None = None
    error: Any = None
    message: Any = None
    code: Any = None


_DECODER: Final = msgspec.json.Decoder(_Frame)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_text(frame: _Frame) -> tuple[int | None, str]:
    """ElevenLabs' ``code`` (an int, or None) and ``"<error>: <message>"`` (redacted)."""
    code = frame.code if isinstance(frame.code, int) and not isinstance(frame.code, bool) else None
    name = frame.error if isinstance(frame.error, str) else str(frame.error)
    message = frame.message if isinstance(frame.message, str) else ""
    text = f"{name}: {message}" if message and message != name else name
    return code, redact(_short(text, 300))


# -------------------------------------------------------------------------------- word timing


@attrs.define
class _Words:
    """Turns one context's character alignments into cumulative :class:`WordTiming`.

    ``bytes_per_second`` is the audio's byte rate when it is raw samples (PCM, μ-law; else 0):
    then chunk-relative timings are offset by the exact duration of the audio before the
    chunk, otherwise by where the previous chunk's timings ended.
    """

    bytes_per_second: int = 0
    _word: str = ""
    _word_start: float = 0.0
    _word_end: float = 0.0
    _relative: bool = False
    _offset_ms: float = 0.0
    _raw_end_ms: float = 0.0
    _audio_ms: float = 0.0

    def add(self, alignment: _Alignment | None, audio_bytes: int) -> tuple[WordTiming, ...]:
        """The words completed by one message (its alignment, then ``audio_bytes`` of audio).

        Raises:
            ProtocolError: the alignment's lists have different lengths.
        """
        words: list[WordTiming] = []
        if alignment is not None and alignment.chars:
            starts = alignment.charStartTimesMs or alignment.charsStartTimesMs or []
            durations = alignment.charDurationsMs or alignment.charsDurationsMs or []
            chars = alignment.chars
            if not (len(chars) == len(starts) == len(durations)):
                raise ProtocolError(
                    f"ElevenLabs alignment has {len(chars)} chars, {len(starts)} start times"
                    f" and {len(durations)} durations"
                )
            if not self._relative and starts[0] < self._raw_end_ms - _BACKWARDS_MS:
                self._relative = True  # the times went back: they restart with each chunk
            if self._relative:
                self._offset_ms = (
                    self._audio_ms if self.bytes_per_second else self._offset_ms + self._raw_end_ms
                )
            offset = self._offset_ms
            for char, start, duration in zip(chars, starts, durations, strict=True):
                if char.isspace() or not char:
                    if self._word:
                        words.append(WordTiming(self._word, self._word_start, self._word_end))
                        self._word = ""
                    continue
                if not self._word:
                    self._word_start = (start + offset) / 1000
                self._word += char
                self._word_end = (start + duration + offset) / 1000
            self._raw_end_ms = starts[-1] + durations[-1]
        if self.bytes_per_second:
            self._audio_ms += audio_bytes * 1000 / self.bytes_per_second
        return tuple(words)

    def finish(self) -> tuple[WordTiming, ...]:
        """The last word, which no space followed."""
        if not self._word:
            return ()
        word, self._word = WordTiming(self._word, self._word_start, self._word_end), ""
        return (word,)


@attrs.define
class _Context:
    words: _Words
    preferred: str
    #: ``close_context`` was sent (by close or cancel): no text, no keep-alive any more.
    closing: bool = False
    #: A frame was sent for it since the last keep-alive round.
    active: bool = True


# ------------------------------------------------------------------------------------ codec


class ElevenLabsCodec:
    """Client side of one ElevenLabs ``multi-stream-input`` connection (a
    :class:`~trio_tts.ClientCodec`).

    Example::

        codec = ElevenLabsCodec()
        codec.create("c1", ElevenLabsOptions())   # ['{"text":" ","voice_settings":{},...}']
        codec.send_text("c1", "Hello there.", flush=True)
        codec.close("c1")                         # flush, then close_context
        codec.receive('{"isFinal": true, "contextId": "c1"}')  # [ContextClosed('c1')]

    Attributes:
        keepalives_sent: keep-alive frames produced by :meth:`keepalive`.
    """

    def __init__(self) -> None:
        self._contexts: dict[str, _Context] = {}
        self.keepalives_sent = 0

    def __repr__(self) -> str:
        closing = sum(1 for c in self._contexts.values() if c.closing)
        return f"<ElevenLabsCodec contexts={len(self._contexts)} closing={closing}>"

    # -- commands

    def create(self, context_id: str, options: ElevenLabsOptions) -> list[str]:
        """The context's first message (text ``" "``, its voice settings and generation
        config)."""
        # Bytes per second when that is exact (raw samples): chunk-relative timings are then
        # offset by the exact duration of the audio before them.
        rate = {AudioEncoding.PCM: 2, AudioEncoding.MULAW: 1}.get(options.encoding, 0)
        rate *= options.sample_rate
        self._contexts[context_id] = _Context(_Words(rate), options.preferred_alignment)
        body: dict[str, Any] = {"text": " ", **options.context_fields(), "context_id": context_id}
        return [_ENCODE(body).decode()]

    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]:
        """A text frame (none for ``""`` without ``flush``; none once the context closes)."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closing or not (text or flush):
            return []
        ctx.active = True
        body: dict[str, Any] = {"text": text, "context_id": context_id}
        if flush:
            if text and not text[-1].isspace():
                body["text"] = text + " "
            body["flush"] = True
        return [_ENCODE(body).decode()]

    def flush(self, context_id: str) -> list[str]:
        """``{"text": "", "flush": true}``: synthesise what the context has buffered.
        ElevenLabs does not confirm flushes (no ``FlushCompleted``)."""
        return self.send_text(context_id, "", flush=True)

    def close(self, context_id: str) -> list[str]:
        """A flush then ``close_context``; the context ends at the server's ``isFinal``."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closing:
            return []
        frames = self.flush(context_id)
        ctx.closing = True
        return [*frames, _ENCODE({"context_id": context_id, "close_context": True}).decode()]

    def cancel(self, context_id: str) -> list[str]:
        """``close_context`` without a flush: ElevenLabs stops generating. Nothing when the
        close was already sent (its ``isFinal`` ends the context either way)."""
        ctx = self._contexts.get(context_id)
        if ctx is None or ctx.closing:
            return []
        ctx.closing = True
        return [_ENCODE({"context_id": context_id, "close_context": True}).decode()]

    def keepalive(self) -> list[str]:
        """``{"text": "", "context_id": X}`` for every open context that sent nothing since
        the previous call (ElevenLabs' documented way to reset a context's inactivity timer).
        Called every ``keepalive_interval``: no context is silent for two intervals."""
        frames: list[str] = []
        for context_id, ctx in self._contexts.items():
            if ctx.closing:
                continue
            if not ctx.active:
                frames.append(_ENCODE({"text": "", "context_id": context_id}).decode())
            ctx.active = False
        self.keepalives_sent += len(frames)
        return frames

    def take_events(self) -> list[Event]:
        """None: every ElevenLabs event comes from the server."""
        return []

    def goodbye(self) -> list[str]:
        """``close_socket``: the server ends the connection (answer awaited ≤ 1 s)."""
        return [_ENCODE({"close_socket": True}).decode()]

    # -- server frames

    def receive(self, frame: str | bytes) -> list[Event]:
        """Decode one server frame into events, in this order: ``ContextError``, ``Audio``
        (with the words it completes), ``ContextClosed`` (after ``isFinal``, or an error for a
        context this codec carries).

        Frames of a context this codec does not carry (after its ``isFinal``, or never
        created here) are decoded all the same: the pool drops them as strays.

        Raises:
            ConnectionLost: an ``error`` naming no context (``code``: ElevenLabs' code).
            ProtocolError: a binary frame, invalid JSON, wrong field types, invalid base64,
                no ``contextId``, alignment lists of different lengths, or a frame with no
                known content.
        """
        if not isinstance(frame, str):
            raise ProtocolError("unexpected binary frame from ElevenLabs")
        try:
            decoded = _DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed ElevenLabs frame: {_short(str(exc))}") from None
        context_id = decoded.contextId or decoded.context_id
        if decoded.error:
            code, message = _error_text(decoded)
            if context_id is None:
                raise ConnectionLost(f"ElevenLabs error (code {code}): {message}", code=code)
            if self._contexts.pop(context_id, None) is None:
                return [ContextError(context_id, code, message)]  # e.g. "context_not_found"
            # ElevenLabs drops a context it reports failed (LiveKit forgets it too): no
            # isFinal follows, so the error is also the confirmation that frees its slot.
            return [ContextError(context_id, code, message), ContextClosed(context_id)]
        if context_id is None:
            raise ProtocolError("ElevenLabs frame without contextId")
        audio, normalized, original = decoded.audio, decoded.normalizedAlignment, decoded.alignment
        keys = (audio, decoded.isFinal, decoded.is_final, normalized, original)
        if all(v is UNSET for v in keys):
            raise ProtocolError("ElevenLabs frame with no known content")
        final = decoded.isFinal is True or decoded.is_final is True
        data = audio if isinstance(audio, bytes) else b""
        events: list[Event] = []
        words: tuple[WordTiming, ...] = ()
        ctx = self._contexts.get(context_id)
        if ctx is not None:
            aligned = normalized if ctx.preferred == "normalized" else original
            words = ctx.words.add(aligned if isinstance(aligned, _Alignment) else None, len(data))
            if final:
                words += ctx.words.finish()
        if data or words:
            events.append(Audio(context_id, data, words))
        if final:
            self._contexts.pop(context_id, None)
            events.append(ContextClosed(context_id))
        return events
