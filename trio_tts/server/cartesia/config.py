"""What a Cartesia context asks for, checked once on its first request (pure).

Cartesia says the inputs of one context must keep every field but ``transcript``,
``continue`` and ``flush`` the same; the server therefore reads the settings from a context's
first request and ignores them on later ones. A setting it cannot honour is a
:class:`~.proto.ProtocolError` (an ``error`` frame) before the context exists:

* ``model_id`` not a Sonic model id (400 ``invalid_model``);
* ``voice`` not ``"<id>"`` / ``{"id"}`` / ``{"mode": "id", "id"}`` — an embedding voice
  (``{"mode": "embedding"}``) included, which the local server cannot speak (400
  ``invalid_voice``) — or an id it does not know (404 ``voice_not_found``);
* ``output_format`` not ``container: raw`` with one of :data:`~.proto.ENCODINGS` at one of
  :data:`~.proto.SAMPLE_RATES` (400 ``invalid_output_format``);
* ``language`` not one of :data:`~.proto.LANGUAGES`, ``max_buffer_delay_ms`` outside
  0..5000, ``speed`` (a name or -1..1) or ``generation_config.speed`` (0.6..2.0) out of
  range (400 ``invalid_request``).

``max_buffer_delay_ms`` defaults to 3000 (Cartesia's documented default). ``language`` is
checked but does not change the voice (each local voice speaks its own language).
``add_phoneme_timestamps`` gets ``phoneme_timestamps`` frames whose "phonemes" are each
word's letters spread over the word (the synthesisers report words only);
``use_normalized_timestamps``, ``pronunciation_dict_id`` and the rest of
``generation_config`` (``volume``, ``emotion``) are accepted and change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from . import proto
from .voices import local_voice

__all__ = ["DEFAULT_BUFFER_DELAY_MS", "ContextConfig", "context_config"]

DEFAULT_BUFFER_DELAY_MS = 3000


@attrs.frozen
class ContextConfig:
    """One context's settings (from its first request)."""

    model_id: str
    voice_id: str
    voice: str  # the local voice that speaks it
    encoding: str
    sample_rate: int
    language: str | None = None
    add_timestamps: bool = False
    add_phoneme_timestamps: bool = False
    max_buffer_delay_ms: int = DEFAULT_BUFFER_DELAY_MS
    speaking_rate: float = 1.0


def _error(status: int, code: str, title: str, message: str) -> proto.ProtocolError:
    return proto.ProtocolError(status, title, message, code)


def _invalid(message: str) -> proto.ProtocolError:
    return _error(400, "invalid_request", "Invalid request", message)


def _bad_format(message: str) -> proto.ProtocolError:
    return _error(400, "invalid_output_format", "Invalid output format", message)


def _speaking_rate(fields: Mapping[str, Any]) -> float | proto.ProtocolError:
    config = fields.get("generation_config")
    if config is not None and not isinstance(config, dict):
        return _invalid("generation_config must be an object")
    speed = (config or {}).get("speed")
    if speed is not None:  # sonic-3: a number (LiveKit allows 0.6..2.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.6 <= speed <= 2.0:
            return _invalid(f"generation_config.speed {speed!r} is not a number in 0.6..2.0")
        return float(speed)
    speed = fields.get("speed")
    if speed is None:
        return 1.0
    if isinstance(speed, str) and speed in proto.SPEEDS:
        return proto.SPEEDS[speed]
    if not isinstance(speed, bool) and isinstance(speed, int | float) and -1.0 <= speed <= 1.0:
        return 1.0 + 0.5 * float(speed)  # the older numeric control, -1 (slowest) .. 1 (fastest)
    names = ", ".join(proto.SPEEDS)
    return _invalid(f"speed {speed!r} is not one of {names} or a number in -1..1")


def context_config(fields: Mapping[str, Any]) -> ContextConfig | proto.ProtocolError:
    """A new context's settings from its first request, or the error to answer."""
    problem = proto.model_problem(fields.get("model_id"))
    if problem is not None:
        return _error(400, "invalid_model", "Invalid model", problem)
    model = str(fields["model_id"])
    voice = fields.get("voice")
    vid = proto.voice_id(voice)
    if vid is None:
        mode = voice.get("mode") if isinstance(voice, dict) else None
        why = (
            "embedding voices are not supported by the local server; pass a voice id"
            if mode == "embedding"
            else 'voice must be "<id>", {"id": "<id>"} or {"mode": "id", "id": "<id>"}'
        )
        return _error(400, "invalid_voice", "Invalid voice", why)
    local = local_voice(vid)
    if local is None:
        return _error(404, "voice_not_found", "Voice not found",
                      f"Voice {vid} was not found (GET /voices lists the voices)")
    fmt = fields.get("output_format")
    if not isinstance(fmt, dict):
        return _bad_format("output_format is required: {container, encoding, sample_rate}")
    container, encoding, rate = fmt.get("container"), fmt.get("encoding"), fmt.get("sample_rate")
    if container != "raw":
        return _bad_format(f"container {container!r} is not supported on the WebSocket (use raw)")
    if encoding not in proto.ENCODINGS:
        return _bad_format(f"encoding {encoding!r} is not one of {', '.join(proto.ENCODINGS)}")
    if isinstance(rate, bool) or rate not in proto.SAMPLE_RATES:
        rates = ", ".join(map(str, proto.SAMPLE_RATES))
        return _bad_format(f"sample_rate {rate!r} is not one of {rates}")
    language = fields.get("language")
    if language is not None and language not in proto.LANGUAGES:
        return _invalid(f"language {language!r} is not supported")
    delay = fields.get("max_buffer_delay_ms")
    if delay is None:
        delay = DEFAULT_BUFFER_DELAY_MS
    elif isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 5000:
        return _invalid(f"max_buffer_delay_ms {delay!r} is not an integer in 0..5000")
    rate_or_error = _speaking_rate(fields)
    if isinstance(rate_or_error, proto.ProtocolError):
        return rate_or_error
    return ContextConfig(
        model_id=model, voice_id=vid, voice=local, encoding=str(encoding), sample_rate=int(rate),
        language=language, add_timestamps=bool(fields.get("add_timestamps")),
        add_phoneme_timestamps=bool(fields.get("add_phoneme_timestamps")),
        max_buffer_delay_ms=delay, speaking_rate=rate_or_error,
    )  # fmt: skip
