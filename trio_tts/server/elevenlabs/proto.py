"""The server side of ElevenLabs' TTS WebSocket JSON, sans-io (no sockets, no trio).

:func:`decode_message` turns one client frame into a :class:`Message` (the fields of every
client message of both endpoints, so one decoder serves ``stream-input`` and
``multi-stream-input``) or raises :class:`~.config.ElevenLabsError` (``invalid_message``; the
session answers it and closes with 1008). The ``encode_*`` functions build the server's frames:

* audio: ``{"audio": <base64>, "normalizedAlignment": {...} | null, "alignment": {...} | null,
  "contextId"?}``; the alignment is ``{"chars", "charStartTimesMs", "charDurationsMs"}`` in
  milliseconds from the start of the *context* (cumulative over its generations, so never
  decreasing: LiveKit adds no offset of its own);
* ``{"isFinal": true, "contextId"?}``;
* errors ``{"message", "error", "code"?, "contextId"?}`` (``error`` is the machine name LiveKit
  reads, ``message`` the text the ElevenLabs SDK surfaces).

:func:`alignment` spreads each word's span evenly over its characters and puts a space between
words (and before a chunk's first word when an earlier word of the context exists), as
ElevenLabs' character alignment reads. :func:`mulaw` is G.711 mu-law for ``ulaw_8000``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from .config import ElevenLabsError

__all__ = [
    "Message",
    "alignment",
    "decode_message",
    "encode_audio",
    "encode_error",
    "encode_final",
    "mulaw",
]

Words = Sequence[tuple[str, float, float]]
_BOOLS = ("flush", "close_context", "close_socket", "try_trigger_generation")


@attrs.frozen
class Message:
    """One client message, any kind (fields absent from the frame keep their defaults).

    ``text`` is None when the frame has none (``close_context``, ``close_socket``, a bare
    ``flush``); ``""`` is the keep-alive (multi) or the end of input (single).
    ``has_voice_settings`` tells an explicit ``"voice_settings": null`` from none at all."""

    text: str | None = None
    context_id: str | None = None
    flush: bool = False
    close_context: bool = False
    close_socket: bool = False
    try_trigger_generation: bool = False
    voice_settings: dict[str, Any] | None = None
    has_voice_settings: bool = False
    chunk_length_schedule: tuple[int, ...] | None = None
    api_key: str | None = None  # xi_api_key / xi-api-key
    authorization: str | None = None


def _invalid(detail: str) -> ElevenLabsError:
    return ElevenLabsError("invalid_message", f"Invalid message received: {detail}")


def _schedule(config: Any) -> tuple[int, ...] | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise _invalid("generation_config must be an object")
    schedule = config.get("chunk_length_schedule")
    if schedule is None:
        return None
    if not isinstance(schedule, list) or not schedule or not all(
        isinstance(n, int | float) and not isinstance(n, bool) and 50 <= n <= 500
        for n in schedule
    ):  # fmt: skip
        raise _invalid("chunk_length_schedule must be a list of numbers in 50..500")
    return tuple(int(n) for n in schedule)


def _voice_settings(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("voice_settings must be an object")
    speed = value.get("speed")
    if speed is not None and (
        not isinstance(speed, int | float) or isinstance(speed, bool) or not 0.7 <= speed <= 1.2
    ):  # fmt: skip
        raise _invalid("voice_settings.speed must be a number in 0.7..1.2")
    return value


def decode_message(frame: str | bytes) -> Message:
    """One client frame (a binary frame is ``bytes``).

    Raises:
        ElevenLabsError: ``invalid_message`` — not a JSON object, a field of the wrong type.
    """
    if isinstance(frame, bytes):
        raise _invalid("binary frames are not supported; send JSON text")
    try:
        data = json.loads(frame)
    except ValueError:
        raise _invalid("malformed JSON") from None
    if not isinstance(data, dict):
        raise _invalid("expected a JSON object")
    text = data.get("text")
    if text is not None and not isinstance(text, str):
        raise _invalid("text must be a string")
    cid = data.get("context_id", data.get("contextId"))
    if cid is not None and not isinstance(cid, str):
        raise _invalid("context_id must be a string")
    flags: dict[str, bool] = {}
    for key in _BOOLS:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise _invalid(f"{key} must be a boolean")
        flags[key] = value
    api_key = data.get("xi_api_key", data.get("xi-api-key"))
    auth = data.get("authorization")
    if not isinstance(api_key, str | None) or not isinstance(auth, str | None):
        raise _invalid("xi_api_key and authorization must be strings")
    return Message(
        text=text, context_id=cid, **flags,
        voice_settings=_voice_settings(data.get("voice_settings")),
        has_voice_settings="voice_settings" in data,
        chunk_length_schedule=_schedule(data.get("generation_config")),
        api_key=api_key, authorization=auth,
    )  # fmt: skip


def alignment(
    words: Words, offset: float, previous_end: float | None
) -> dict[str, list[Any]] | None:
    """The character alignment of ``words`` (seconds from their generation's start, which
    begins ``offset`` seconds into the context); ``previous_end`` is the context time where
    the context's previous word ended (a space spans the gap). None when there are no words."""
    if not words:
        return None
    chars: list[str] = []
    bounds: list[tuple[float, float]] = []
    before = previous_end
    for word, start, end in words:
        start, end = start + offset, max(start, end) + offset
        if before is not None:
            chars.append(" ")
            bounds.append((before, max(before, start)))
        step = (end - start) / max(1, len(word))
        for k, c in enumerate(word):
            chars.append(c)
            bounds.append((start + k * step, start + (k + 1) * step))
        before = end
    starts = [round(a * 1000) for a, _ in bounds]
    durations = [max(0, round(b * 1000) - s) for s, (_, b) in zip(starts, bounds, strict=True)]
    return {"chars": chars, "charStartTimesMs": starts, "charDurationsMs": durations}


def encode_audio(
    data: bytes, align: dict[str, list[Any]] | None, context_id: str | None, *, multi: bool
) -> str:
    """An audio frame; ``multi`` adds ``contextId`` (the multi-context endpoint)."""
    frame: dict[str, Any] = {
        "audio": base64.b64encode(data).decode(),
        "normalizedAlignment": align,
        "alignment": align,
    }
    if multi:
        frame["contextId"] = context_id
    return json.dumps(frame)


def encode_final(context_id: str | None, *, multi: bool) -> str:
    """``{"isFinal": true}`` (with ``contextId`` on the multi-context endpoint)."""
    frame: dict[str, Any] = {"isFinal": True}
    if multi:
        frame["contextId"] = context_id
    return json.dumps(frame)


def encode_error(
    error: str, message: str, *, code: int | None = None, context_id: str | None = None
) -> str:
    """An error frame; ``contextId`` only when ``context_id`` is given."""
    frame: dict[str, Any] = {"message": message, "error": error}
    if code is not None:
        frame["code"] = code
    if context_id is not None:
        frame["contextId"] = context_id
    return json.dumps(frame)


def mulaw(pcm: bytes) -> bytes:
    """G.711 mu-law of int16 LE samples (one byte per sample)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    coded = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return bytes(coded.tobytes())
