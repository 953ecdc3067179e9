"""ElevenLabs' HTTP endpoints on the local server (``xi-api-key``).

* ``GET /v1/voices`` answers ElevenLabs' shape, ``{"voices": [{"voice_id", "name", "category",
  "labels", "description", "preview_url", "settings"}]}``, listing the premade voices of
  :data:`~.config.VOICE_IDS` under their ElevenLabs ids (``labels`` carry the local voice that
  speaks each).
* ``POST /v1/text-to-speech/{voice_id}/stream`` (and without ``/stream``) with JSON ``{"text",
  "model_id"?, "voice_settings"?}`` and the query's ``output_format`` (default
  ``mp3_44100_128``) answers the audio as a streamed body (``audio/mpeg``, ``audio/pcm``,
  ``audio/basic`` for mu-law, ``audio/ogg``): what the LiveKit plugin's ``synthesize()`` uses.

Errors are ElevenLabs' ``{"detail": {"status", "message"}}``: 401 ``invalid_api_key`` for a
missing or wrong key (when the server has one), 404 ``voice_not_found``, 400 for the rest.
"""

from __future__ import annotations

import json
import re
from typing import Any

import trio

from .._asgi import ASGIReceive, ASGISend, HTTPHandler, Scope, header, read_body, respond_json
from .._core import Core
from .._voices import VOICES
from ..inworld.codecs import StreamEncoder
from . import proto
from .config import VOICE_IDS, ElevenLabsError, parse_query

__all__ = [
    "AUTH_HEADER", "PATTERNS", "ROUTES", "SYNTHESIZE_PATH", "VOICES_PATH", "error_detail",
    "list_voices", "synthesize",
]  # fmt: skip

VOICES_PATH = "/v1/voices"
AUTH_HEADER = b"xi-api-key"


def error_detail(status: str, message: str) -> dict[str, Any]:
    """ElevenLabs' HTTP error body."""
    return {"detail": {"status": status, "message": message}}


def _voice(voice_id: str, name: str, local: str) -> dict[str, Any]:
    info = VOICES[local]
    return {
        "voice_id": voice_id,
        "name": name,
        "category": "premade",
        "labels": {"gender": info.gender, "language": info.language, "local_voice": local},
        "description": info.description,
        "preview_url": None,
        "settings": None,
    }


async def _refused_key(core: Core, scope: Scope, send: ASGISend) -> bool:
    """Answer 401 if the request's key is missing or wrong; True if it did."""
    key = core.config.api_key
    if key is not None and header(scope, AUTH_HEADER) != key:
        await respond_json(send, 401, error_detail("invalid_api_key", "Invalid API key"))
        return True
    return False


async def list_voices(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``GET /v1/voices`` (see the module docstring)."""
    if await _refused_key(core, scope, send):
        return
    voices = [_voice(vid, name, local) for vid, (name, local) in VOICE_IDS.items()]
    await respond_json(send, 200, {"voices": voices})


SYNTHESIZE_PATH = re.compile(r"/v1/text-to-speech/(?P<voice_id>[^/]+)(/stream)?")
_CONTENT_TYPES = {"mp3": b"audio/mpeg", "pcm": b"audio/pcm", "ulaw": b"audio/basic",
                  "opus": b"audio/ogg"}  # fmt: skip


def _request(scope: Scope, body: bytes) -> tuple[Any, str]:
    """The request's settings and text.

    Raises:
        ElevenLabsError: a bad body, voice, model or format.
    """
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ElevenLabsError("invalid_request", "Expected a JSON object body")
    text, model = data.get("text"), data.get("model_id")
    if not isinstance(text, str) or not text.strip():
        raise ElevenLabsError("invalid_request", "text is required")
    if not isinstance(model, str | None):
        raise ElevenLabsError("invalid_request", "model_id must be a string")
    match = SYNTHESIZE_PATH.fullmatch(scope["path"])
    assert match is not None, "routed here by the pattern"
    config = parse_query(scope, match["voice_id"], default_format="mp3_44100_128", model_id=model)
    settings = data.get("voice_settings")
    speed = settings.get("speed") if isinstance(settings, dict) else None
    rate = float(speed) if isinstance(speed, int | float) and 0.7 <= speed <= 1.2 else 1.0
    return (config, rate), text


async def synthesize(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``POST /v1/text-to-speech/{voice_id}[/stream]`` (see the module docstring)."""
    body = await read_body(receive)
    if body is None or await _refused_key(core, scope, send):
        return
    try:
        (config, speaking_rate), text = _request(scope, body)
    except ElevenLabsError as exc:
        status = 404 if exc.error == "voice_not_found" else 400
        await respond_json(send, status, error_detail(exc.error, exc.message))
        return
    audio = config.audio
    speech = await core.synthesizer.synthesize(
        text, voice=config.voice, sample_rate=audio.sample_rate, speaking_rate=speaking_rate
    )
    data = speech.pcm
    if audio.kind == "ulaw":
        data = proto.mulaw(data)
    elif audio.encoding is not None:
        encoding = audio.encoding

        def encode() -> bytes:
            encoder = StreamEncoder(encoding, audio.sample_rate, audio.bit_rate)
            return encoder.encode(speech.pcm) + encoder.close()

        data = await trio.to_thread.run_sync(encode)
    headers = [(b"content-type", _CONTENT_TYPES[audio.kind])]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    step = max(1, len(data) * core.config.chunk_ms // max(1, round(speech.duration * 1000)))
    for offset in range(0, len(data), step):
        piece = data[offset : offset + step]
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


#: (method, path) → handler, for the app's router.
ROUTES: dict[tuple[str, str], HTTPHandler] = {("GET", VOICES_PATH): list_voices}
#: (method, path pattern) → handler, for paths with the voice id in them.
PATTERNS: list[tuple[str, re.Pattern[str], HTTPHandler]] = [
    ("POST", SYNTHESIZE_PATH, synthesize),
]
