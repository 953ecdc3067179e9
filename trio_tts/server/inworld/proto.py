"""The server side of Inworld's bidirectional TTS protocol, sans-io (no sockets, no trio).

:func:`decode_command` turns one client text frame into a typed command; the ``encode_*``
functions build the JSON text frames the server sends. The client codec in
``trio_tts.providers.inworld.codec`` is tested back to back against this one.

Inworld parses frames as protobuf JSON, so every field is accepted in both spellings: the JSON
name (``contextId``, ``voiceId``, ``audioConfig``, ``sampleRateHertz``, ``sendText``) and the
proto name (``context_id``, ``voice_id``, ``audio_config``, ``sample_rate_hertz``,
``send_text``). LiveKit writes the first, Inworld's own examples the second, and the bit rate
appears as ``bitrate`` (LiveKit), ``bitRate`` and ``bit_rate``. Unknown fields are ignored; a
field of the wrong type raises :class:`DecodeError` naming it as the client spelled it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import msgspec

from .._speech import wav_header as wav_header  # in front of every LINEAR16 chunk

__all__ = [
    "AUDIO_ENCODINGS",
    "CancelContext",
    "CloseContext",
    "Command",
    "Create",
    "DecodeError",
    "FlushContext",
    "SendText",
    "SynthesizeRequest",
    "UpdateConfig",
    "decode_command",
    "decode_synthesize_request",
    "encode_audio_chunk",
    "encode_context_closed",
    "encode_context_created",
    "encode_context_updated",
    "encode_error",
    "encode_flush_completed",
    "encode_http_audio",
    "encode_status",
    "wav_header",
]

AUDIO_ENCODINGS = frozenset(
    {"AUDIO_ENCODING_UNSPECIFIED", "LINEAR16", "PCM", "MP3", "OGG_OPUS", "FLAC", "ALAW", "MULAW"}
)
_TIMESTAMP_TYPES = frozenset({"TIMESTAMP_TYPE_UNSPECIFIED", "WORD", "CHARACTER"})
_TRANSPORTS = frozenset({"TIMESTAMP_TRANSPORT_STRATEGY_UNSPECIFIED", "SYNC", "ASYNC"})
#: ``deliveryMode`` (TTS-2's output variation); accepted with every model, changing nothing here.
_DELIVERY_MODES = frozenset({"DELIVERY_MODE_UNSPECIFIED", "STABLE", "BALANCED", "CREATIVE"})


class DecodeError(ValueError):
    """A client frame could not be decoded.

    Attributes:
        field: the offending field's path as the client spelled it (``create.voiceId``).
        context_id: the frame's context id, when it could be read (for the error reply).
    """

    def __init__(self, field: str, message: str, context_id: str | None = None) -> None:
        self.field = field
        self.context_id = context_id
        super().__init__(f"{field}: {message}")


@attrs.frozen(kw_only=True)
class Create:
    """``create``: open a context. Defaults are the service's when a field is absent."""

    context_id: str | None = None
    voice_id: str = ""
    model_id: str = "inworld-tts-1"
    audio_encoding: str = "LINEAR16"
    sample_rate_hertz: int = 48000
    bit_rate: int = 128000
    speaking_rate: float = 1.0
    temperature: float = 1.0
    timestamp_type: str | None = None
    language: str | None = None
    auto_mode: bool = False
    buffer_char_threshold: int | None = None
    max_buffer_delay_ms: int | None = None
    apply_text_normalization: bool | str | None = None
    delivery_mode: str | None = None
    timestamp_transport_strategy: str | None = None
    auto_mode_strategy: str | None = None

    @property
    def encoding(self) -> str:
        """The audio encoding with ``UNSPECIFIED`` resolved to the default (``LINEAR16``)."""
        return (
            "LINEAR16"
            if self.audio_encoding == "AUDIO_ENCODING_UNSPECIFIED"
            else self.audio_encoding
        )

    @property
    def word_timestamps(self) -> bool:
        return self.timestamp_type == "WORD"

    @property
    def timestamps(self) -> str | None:
        """``"WORD"``, ``"CHARACTER"`` or ``None`` (no timestamps asked for)."""
        kind = self.timestamp_type
        return kind if kind in ("WORD", "CHARACTER") else None

    @property
    def async_timestamps(self) -> bool:
        """``timestampTransportStrategy: ASYNC``: timestamps follow the audio separately."""
        return self.timestamp_transport_strategy == "ASYNC"


@attrs.frozen
class SendText:
    """``send_text``: append text to the buffer; ``flush`` if it carried ``flush_context``."""

    context_id: str
    text: str
    flush: bool = False


@attrs.frozen
class FlushContext:
    context_id: str


@attrs.frozen
class CloseContext:
    context_id: str


@attrs.frozen
class CancelContext:
    context_id: str


@attrs.frozen
class UpdateConfig:
    """``update_config``: change some of a context's settings (names as in :class:`Create`)."""

    context_id: str
    changes: Mapping[str, Any]


Command = Create | SendText | FlushContext | CloseContext | CancelContext | UpdateConfig


@attrs.frozen(kw_only=True)
class SynthesizeRequest:
    """The body of HTTP ``POST /tts/v1/voice:stream``: the text plus a :class:`Create`."""

    text: str
    config: Create


# (attribute, spellings, expected type, allowed values) for the body of create/update_config.
_Spec = tuple[str, tuple[str, ...], type | tuple[type, ...], frozenset[str] | None]
_TOP: tuple[_Spec, ...] = (
    ("voice_id", ("voiceId", "voice_id"), str, None),
    ("model_id", ("modelId", "model_id"), str, None),
    ("temperature", ("temperature",), (int, float), None),
    ("timestamp_type", ("timestampType", "timestamp_type"), str, _TIMESTAMP_TYPES),
    ("language", ("language",), str, None),
    ("auto_mode", ("autoMode", "auto_mode"), bool, None),
    ("buffer_char_threshold", ("bufferCharThreshold", "buffer_char_threshold"), int, None),
    ("max_buffer_delay_ms", ("maxBufferDelayMs", "max_buffer_delay_ms"), int, None),
    ("apply_text_normalization", ("applyTextNormalization", "apply_text_normalization"),
     (bool, str), None),
    ("delivery_mode", ("deliveryMode", "delivery_mode"), str, _DELIVERY_MODES),
    ("timestamp_transport_strategy",
     ("timestampTransportStrategy", "timestamp_transport_strategy"), str, _TRANSPORTS),
    ("auto_mode_strategy", ("autoModeStrategy", "auto_mode_strategy"), str, None),
)  # fmt: skip
_AUDIO: tuple[_Spec, ...] = (
    ("audio_encoding", ("audioEncoding", "audio_encoding"), str, AUDIO_ENCODINGS),
    ("sample_rate_hertz", ("sampleRateHertz", "sample_rate_hertz"), int, None),
    ("bit_rate", ("bitrate", "bitRate", "bit_rate"), int, None),
    ("speaking_rate", ("speakingRate", "speaking_rate"), (int, float), None),
    ("temperature", ("temperature",), (int, float), None),
)
_KINDS = {
    "create": "create",
    "send_text": "send_text", "sendText": "send_text",
    "flush_context": "flush_context", "flushContext": "flush_context",
    "close_context": "close_context", "closeContext": "close_context",
    "cancel_context": "cancel_context", "cancelContext": "cancel_context",
    "update_config": "update_config", "updateConfig": "update_config",
}  # fmt: skip
_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:  # JSON has one number type
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _get(obj: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any] | None:
    for name in names:
        if name in obj and obj[name] is not None:
            return name, obj[name]
    return None


def _check(value: Any, kind: type | tuple[type, ...], path: str, ctx: str | None) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    if not ok:
        raise DecodeError(path, f"expected {_type_name(kind)}, got {type(value).__name__}", ctx)
    return value


def _fields(
    body: Mapping[str, Any], specs: Sequence[_Spec], prefix: str, ctx: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, names, kind, allowed in specs:
        found = _get(body, names)
        if found is None:
            continue
        name, value = found
        path = f"{prefix}.{name}"
        _check(value, kind, path, ctx)
        if allowed is not None:
            value = value.upper()
            if value not in allowed:
                raise DecodeError(
                    path, f"{found[1]!r} is not one of {', '.join(sorted(allowed))}", ctx
                )
        out[attr] = value
    return out


def _config_fields(body: Mapping[str, Any], prefix: str, ctx: str | None) -> dict[str, Any]:
    out = _fields(body, _TOP, prefix, ctx)
    found = _get(body, ("audioConfig", "audio_config"))
    if found is not None:
        audio = _check(found[1], dict, f"{prefix}.{found[0]}", ctx)
        out.update(_fields(audio, _AUDIO, f"{prefix}.{found[0]}", ctx))
    return out


def _load(frame: str | bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(frame)
    except msgspec.DecodeError as exc:
        raise DecodeError("<frame>", f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DecodeError("<frame>", f"expected a JSON object, got {type(data).__name__}")
    return data


def decode_command(frame: str | bytes) -> Command:
    """Decode one client frame.

    Raises:
        DecodeError: invalid JSON, no (or several) message kinds, a missing context id, or a
            field of the wrong type / an unknown enum value (the error names the field).
    """
    data = _load(frame)
    kinds = [key for key in data if key in _KINDS]
    if len(kinds) != 1:
        what = "no message" if not kinds else f"several messages ({', '.join(kinds)})"
        raise DecodeError("<frame>", f"{what}; expected one of create, send_text, flush_context, "
                          "close_context, cancel_context, update_config")  # fmt: skip
    key = kinds[0]
    kind = _KINDS[key]
    body = data[key]
    found = _get(data, ("contextId", "context_id"))
    if found is None and isinstance(body, dict):
        found = _get(body, ("contextId", "context_id"))
    ctx = _check(found[1], str, found[0], None) if found is not None else None
    body = _check(body, dict, key, ctx)
    if kind == "create":
        return Create(context_id=ctx, **_config_fields(body, key, ctx))
    if ctx is None:
        raise DecodeError("contextId", f"required for {key}")
    if kind == "send_text":
        text = _get(body, ("text",))
        if text is None:
            raise DecodeError(f"{key}.text", "required", ctx)
        flush = _get(body, ("flush_context", "flushContext"))
        if flush is not None:
            _check(flush[1], dict, f"{key}.{flush[0]}", ctx)
        return SendText(ctx, _check(text[1], str, f"{key}.text", ctx), flush is not None)
    if kind == "update_config":
        return UpdateConfig(ctx, _config_fields(body, key, ctx))
    simple: dict[str, type[FlushContext | CloseContext | CancelContext]] = {
        "flush_context": FlushContext,
        "close_context": CloseContext,
        "cancel_context": CancelContext,
    }
    return simple[kind](ctx)


def decode_synthesize_request(body: bytes) -> SynthesizeRequest:
    """Decode the JSON body of ``POST /tts/v1/voice:stream``.

    Raises:
        DecodeError: as :func:`decode_command`, or a missing ``text``.
    """
    data = _load(body)
    text = _get(data, ("text",))
    if text is None:
        raise DecodeError("text", "required")
    config = Create(**_config_fields(data, "request", None))
    return SynthesizeRequest(text=_check(text[1], str, "text", None), config=config)


# -- server → client ---------------------------------------------------------------------------

_OK = {"code": 0, "message": "", "details": []}
_encode = msgspec.json.Encoder().encode


def _result(context_id: str, key: str, value: Any) -> str:
    return _encode({"result": {"contextId": context_id, key: value, "status": _OK}}).decode()


def encode_context_created(context_id: str, create: Create) -> str:
    body: dict[str, Any] = {
        "voiceId": create.voice_id,
        "modelId": create.model_id,
        "audioConfig": {
            "audioEncoding": create.encoding,
            "sampleRateHertz": create.sample_rate_hertz,
            "bitRate": create.bit_rate,
            "speakingRate": create.speaking_rate,
        },
        "temperature": create.temperature,
    }
    if create.timestamp_type is not None:
        body["timestampType"] = create.timestamp_type
    return _result(context_id, "contextCreated", body)


def encode_context_updated(context_id: str) -> str:
    return _result(context_id, "contextUpdated", {})


def _timestamp_info(words: Sequence[tuple[str, float, float]]) -> dict[str, Any]:
    return {
        "wordAlignment": {
            "words": [w for w, _, _ in words],
            "wordStartTimeSeconds": [round(s, 4) for _, s, _ in words],
            "wordEndTimeSeconds": [round(e, 4) for _, _, e in words],
        }
    }


def _audio_body(
    audio: bytes | None,
    words: Sequence[tuple[str, float, float]] | None,
    info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if audio is not None:
        body["audioContent"] = base64.b64encode(audio).decode("ascii")
    if info is not None:
        body["timestampInfo"] = info
    elif words is not None:
        body["timestampInfo"] = _timestamp_info(words)
    return body


def encode_audio_chunk(
    context_id: str,
    audio: bytes | None,
    words: Sequence[tuple[str, float, float]] | None = None,
    *,
    info: Mapping[str, Any] | None = None,
    processed_characters: int | None = None,
    model_id: str | None = None,
) -> str:
    """An ``audioChunk``: base64 audio (none: a timestamps-only chunk), the word alignment of
    ``words`` or a prebuilt ``timestampInfo`` (``info``), and usage."""
    chunk = _audio_body(audio, words, info)
    if processed_characters is not None:
        chunk["usage"] = {
            "processedCharactersCount": processed_characters,
            "modelId": model_id or "",
        }
    return _result(context_id, "audioChunk", chunk)


def encode_flush_completed(context_id: str) -> str:
    return _result(context_id, "flushCompleted", {})


def encode_context_closed(context_id: str) -> str:
    return _result(context_id, "contextClosed", {})


def encode_status(context_id: str, code: int, message: str) -> str:
    """A context error: ``{"result": {"contextId", "status": {"code" != 0, "message"}}}``."""
    status = {"code": code, "message": message, "details": []}
    return _encode({"result": {"contextId": context_id, "status": status}}).decode()


def encode_error(code: int, message: str) -> str:
    """An error not tied to a context: ``{"error": {"code", "message"}}`` (also an NDJSON line)."""
    return _encode({"error": {"code": code, "message": message, "details": []}}).decode()


def encode_http_audio(
    audio: bytes | None,
    words: Sequence[tuple[str, float, float]] | None = None,
    *,
    info: Mapping[str, Any] | None = None,
    processed_characters: int | None = None,
    model_id: str | None = None,
) -> str:
    """One NDJSON line of ``voice:stream``: ``{"result": {"audioContent", "timestampInfo"?}}``."""
    result = _audio_body(audio, words, info)
    if processed_characters is not None:
        result["usage"] = {
            "processedCharactersCount": processed_characters,
            "modelId": model_id or "",
        }
    return _encode({"result": result}).decode()
