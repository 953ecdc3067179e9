"""The server side of Cartesia's ``/tts/websocket`` protocol, sans-io (no sockets, no trio).

:func:`decode_message` turns one client frame into a :class:`Generate` (a generation request)
or a :class:`Cancel`, or raises :class:`DecodeError` carrying the ``error`` frame's fields;
:func:`validate` checks what a *new* context asks for (model, voice, output format, language,
speed); the ``encode_*`` functions build the server's frames. Every frame the server sends
carries ``type`` and ``context_id`` (the official SDK dispatches on ``type`` and routes on
``context_id``; the LiveKit plugin drops frames of another ``context_id``).

Client → server::

    {"context_id", "model_id", "transcript", "voice": "<id>" | {"id"} | {"mode": "id", "id"},
     "output_format": {"container": "raw", "encoding", "sample_rate"}, "language"?,
     "add_timestamps"?, "add_phoneme_timestamps"?, "use_normalized_timestamps"?,
     "max_buffer_delay_ms"?, "continue"?, "flush"?, "speed"?, "generation_config"?,
     "pronunciation_dict_id"?}
    {"cancel": true, "context_id"}

Server → client: ``chunk`` ``{data, done: false, status_code: 206, step_time, flush_id?}``,
``timestamps`` ``{word_timestamps: {words, start, end}, done: false, status_code: 206,
flush_id?}``, ``phoneme_timestamps`` ``{phoneme_timestamps: {phonemes, start, end}, ...}``,
``flush_done`` ``{flush_done: true, flush_id, done: false, status_code: 206}``, ``done``
``{done: true, status_code: 200}`` and ``error`` ``{done: true, status_code, title,
message, error_code, request_id}`` (Cartesia's documented error event: ``done`` is always
true on errors).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = [
    "ENCODINGS",
    "LANGUAGES",
    "SAMPLE_RATES",
    "Cancel",
    "DecodeError",
    "Generate",
    "Message",
    "ProtocolError",
    "decode_message",
    "encode_chunk",
    "encode_done",
    "encode_error",
    "encode_flush_done",
    "encode_phoneme_timestamps",
    "encode_timestamps",
    "model_problem",
    "voice_id",
]

#: The raw encodings and sample rates Cartesia documents for ``output_format``.
ENCODINGS = ("pcm_f32le", "pcm_s16le", "pcm_mulaw", "pcm_alaw")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
#: The languages Cartesia's models speak (the SDK's ``SupportedLanguage``).
LANGUAGES = frozenset({
    "en", "fr", "de", "es", "pt", "zh", "ja", "hi", "it", "ko", "nl", "pl", "ru", "sv", "tr",
    "tl", "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "hu", "no",
    "vi", "bn", "th", "he", "ka", "id", "te", "gu", "kn", "ml", "mr", "pa", "or", "ur",
})  # fmt: skip
#: ``speed`` (the older per-request control) and its speaking rates here.
SPEEDS = {"slowest": 0.6, "slow": 0.8, "normal": 1.0, "fast": 1.25, "fastest": 1.5}
#: Sonic model ids: a family, optionally pinned to a dated snapshot (``sonic-3-2025-10-27``).
_MODEL = re.compile(
    r"^sonic(-(2|3|3\.5|turbo|latest|lite|preview|english|multilingual))?(-\d{4}-\d{2}-\d{2})?$"
)
Words = Sequence[tuple[str, float, float]]


@attrs.frozen
class ProtocolError:
    """What an ``error`` frame says: HTTP-like ``status``, ``title``, ``message`` and the
    machine-readable ``code`` (Cartesia's ``error_code``)."""

    status: int
    title: str
    message: str
    code: str | None = None


class DecodeError(ValueError):
    """A client frame the server answers with an ``error`` frame (``error``; ``context_id``
    when the frame named one)."""

    def __init__(self, error: ProtocolError, context_id: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.context_id = context_id


@attrs.frozen
class Generate:
    """One generation request: more ``transcript`` for ``context_id`` (a new context on its
    first request). ``voice`` is the id as the client wrote it, in any of its three shapes;
    ``fields`` is the whole decoded object (a new context's settings)."""

    context_id: str
    transcript: str
    continue_: bool
    flush: bool
    fields: dict[str, Any]


@attrs.frozen
class Cancel:
    """``{"cancel": true, "context_id"}``."""

    context_id: str


Message = Generate | Cancel


def _bad(message: str, context_id: str | None = None, *, title: str = "Invalid request",
         code: str | None = "invalid_request", status: int = 400) -> DecodeError:  # fmt: skip
    return DecodeError(ProtocolError(status, title, message, code), context_id)


def decode_message(frame: str | bytes) -> Message:
    """One client frame (a binary frame is ``bytes``).

    Raises:
        DecodeError: not a JSON object; no ``context_id`` string; a field of the wrong type.
    """
    if isinstance(frame, bytes):
        raise _bad("binary frames are not supported; send JSON text")
    try:
        data = json.loads(frame)
    except ValueError:
        raise _bad("malformed JSON") from None
    if not isinstance(data, dict):
        raise _bad("expected a JSON object")
    cid = data.get("context_id")
    if not isinstance(cid, str) or not cid:
        raise _bad("context_id is required and must be a non-empty string")
    if data.get("cancel") is True:
        return Cancel(cid)
    transcript = data.get("transcript", "")
    if not isinstance(transcript, str):
        raise _bad("transcript must be a string", cid)
    flags = {}
    for name in ("continue", "flush", "add_timestamps", "add_phoneme_timestamps",
                 "use_normalized_timestamps"):  # fmt: skip
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise _bad(f"{name} must be a boolean", cid)
        flags[name] = bool(value)
    return Generate(cid, transcript, flags["continue"], flags["flush"], data)


def model_problem(model: object) -> str | None:
    """Why ``model`` is not a Sonic model id (None: it is one)."""
    if not isinstance(model, str):
        return "model_id is required and must be a string"
    if _MODEL.match(model) is None:
        return f"model_id {model!r} is not a Sonic model (sonic-3, sonic-2, sonic-turbo ...)"
    return None


def voice_id(voice: object) -> str | None:
    """The id of a voice specifier: ``"<id>"``, ``{"id"}`` or ``{"mode": "id", "id"}``
    (None: not one of those)."""
    if isinstance(voice, str):
        return voice
    if isinstance(voice, dict) and voice.get("mode", "id") == "id":
        vid = voice.get("id")
        return vid if isinstance(vid, str) else None
    return None


# -- the server's frames -------------------------------------------------------------------


def _frame(kind: str, context_id: str | None, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields, "context_id": context_id})


def encode_chunk(
    audio: bytes, context_id: str, *, step_time: float, flush_id: int | None = None
) -> str:
    extra = {} if flush_id is None else {"flush_id": flush_id}
    return _frame(
        "chunk", context_id, data=base64.b64encode(audio).decode(), done=False,
        status_code=206, step_time=round(step_time, 3), **extra,
    )  # fmt: skip


def encode_timestamps(
    words: Words, offset: float, context_id: str, *, flush_id: int | None = None
) -> str:
    """The ``timestamps`` of ``words`` shifted by ``offset`` seconds (the audio of the context
    before this generation), so times count from the context's start."""
    extra = {} if flush_id is None else {"flush_id": flush_id}
    return _frame("timestamps", context_id, done=False, status_code=206, word_timestamps={
        "words": [w for w, _, _ in words],
        "start": [round(s + offset, 6) for _, s, _ in words],
        "end": [round(e + offset, 6) for _, _, e in words],
    }, **extra)  # fmt: skip


def encode_phoneme_timestamps(
    words: Words, offset: float, context_id: str, *, flush_id: int | None = None
) -> str:
    """``phoneme_timestamps`` standing in for real ones: each word's letters, spread evenly
    over the word's time (the synthesisers report words, not phonemes)."""
    phonemes: list[str] = []
    start: list[float] = []
    end: list[float] = []
    for word, s, e in words:
        letters = [c for c in word if c.isalnum()] or [word]
        step = (e - s) / len(letters)
        for n, letter in enumerate(letters):
            phonemes.append(letter.lower())
            start.append(round(s + offset + n * step, 6))
            end.append(round(s + offset + (n + 1) * step, 6))
    extra = {} if flush_id is None else {"flush_id": flush_id}
    return _frame("phoneme_timestamps", context_id, done=False, status_code=206,
                  phoneme_timestamps={"phonemes": phonemes, "start": start, "end": end},
                  **extra)  # fmt: skip


def encode_flush_done(context_id: str, flush_id: int) -> str:
    return _frame(
        "flush_done", context_id, done=False, flush_done=True, flush_id=flush_id, status_code=206
    )


def encode_done(context_id: str) -> str:
    return _frame("done", context_id, done=True, status_code=200)


def encode_error(error: ProtocolError, context_id: str | None) -> str:
    """Cartesia's error event; ``done`` is always true (its documented schema), which the
    LiveKit plugin reads as a normal end of the context (its bug, not the server's)."""
    return _frame(
        "error", context_id, done=True, status_code=error.status, error_code=error.code,
        title=error.title, message=error.message, request_id=str(uuid.uuid4()),
    )  # fmt: skip
