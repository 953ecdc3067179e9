"""Inworld's HTTP endpoints on the local server (``Authorization: Basic <key>``).

* ``POST /tts/v1/voice:stream`` — one text, NDJSON lines ``{"result": {"audioContent",
  "timestampInfo"}}`` streamed as they are cut, or ``{"error": ...}``.
* ``POST /tts/v1/voice`` — one text, one JSON ``{"audioContent", "timestampInfo"}``.
* ``GET  /tts/v1/voices`` — ``{"voices": [{"voiceId", "displayName", "languages", ...}]}``,
  optionally ``?filter=language=en`` (a language's primary subtag: ``en-US`` lists ``en``).

Errors are Inworld's JSON ``{"code", "message", "details": []}`` with gRPC codes: 400 with code
3 for a bad request (12 for an encoding the server cannot produce), 500 with code 13 when
synthesis fails. Once ``voice:stream`` has answered 200, a failure is an NDJSON line
``{"error": {"code", "message", "details"}}`` instead.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import trio

from .._asgi import (
    ASGIReceive,
    ASGISend,
    HTTPHandler,
    Scope,
    read_body,
    respond_error,
    respond_json,
)
from .._core import Core
from .._speech import Speech
from .._voices import VOICES
from . import proto
from .chunks import audio_frames, closing_frame, timestamp_info
from .codecs import COMPRESSED, StreamEncoder, synthesis_rate
from .config_rules import ConfigError, validated

__all__ = ["AUTH_SCHEME", "ROUTES", "voice", "voice_stream", "voices"]

AUTH_SCHEME = "Basic"


async def voices(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``GET /tts/v1/voices``."""
    query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode())
    language = None
    for item in query.get("filter", []):
        key, _, value = item.partition("=")
        if key.strip() == "language":
            language = _primary(value)
    found = [
        {
            "voiceId": v.voice_id,
            "displayName": v.voice_id,
            "description": v.description,
            "languages": [v.language],
            "tags": [v.gender],
            "source": "SYSTEM",
            "isCustom": False,
        }
        for v in VOICES.values()
        if language is None or v.language == language
    ]
    await respond_json(send, 200, {"voices": found})


async def voice_stream(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``POST /tts/v1/voice:stream``: the audio as NDJSON lines, cut like a context's."""
    request = await _read_request(core, receive, send)
    if request is None:
        return
    headers = [(b"content-type", b"application/x-ndjson")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    try:
        speech = await _synthesize(core, request)
        encoder = _encoder(request.config)
        frames = await trio.to_thread.run_sync(
            lambda: audio_frames(None, request.text, speech.pcm, speech.words, request.config,
                                 core.config.chunk_ms, encoder, drain=False)
        )  # fmt: skip
        end = closing_frame(None, encoder, request.config.model_id)
    except Exception as exc:
        line = proto.encode_error(13, f"synthesis failed: {exc}") + "\n"
        await send({"type": "http.response.body", "body": line.encode()})
        return
    for line in [*frames, *([end] if end is not None else [])]:
        await send(
            {"type": "http.response.body", "body": (line + "\n").encode(), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b""})


async def voice(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``POST /tts/v1/voice``: the whole audio in one JSON answer."""
    request = await _read_request(core, receive, send)
    if request is None:
        return
    try:
        speech = await _synthesize(core, request)
        audio = speech.pcm
        encoder = _encoder(request.config)
        if encoder is not None:
            audio = encoder.encode(audio) + encoder.close()
        elif request.config.encoding == "LINEAR16":
            audio = proto.wav_header(len(audio), speech.sample_rate) + audio
    except Exception as exc:
        await respond_error(send, 500, f"synthesis failed: {exc}", 13)
        return
    body: dict[str, Any] = {
        "audioContent": base64.b64encode(audio).decode(),
        "usage": {
            "processedCharactersCount": len(request.text),
            "modelId": request.config.model_id,
        },
    }
    kind = request.config.timestamps
    if kind is not None:
        body["timestampInfo"] = timestamp_info(speech.words, kind)
    await respond_json(send, 200, body)


#: (method, path) → handler, for the app's router.
ROUTES: dict[tuple[str, str], HTTPHandler] = {
    ("GET", "/tts/v1/voices"): voices,
    ("POST", "/tts/v1/voice:stream"): voice_stream,
    ("POST", "/tts/v1/voice"): voice,
}


async def _read_request(
    core: Core, receive: ASGIReceive, send: ASGISend
) -> proto.SynthesizeRequest | None:
    """The checked request, or None once an error was answered (or the client left)."""
    body = await read_body(receive)
    if body is None:
        return None
    try:
        request = proto.decode_synthesize_request(body)
    except proto.DecodeError as exc:
        await respond_error(send, 400, str(exc), 3)
        return None
    problem = None
    try:
        validated(request.config)
    except ConfigError as exc:
        problem = (exc.code, str(exc))
    limit = core.config.max_http_text_chars
    if problem is None and len(request.text) > limit:
        core.violation(f"HTTP request of {len(request.text)} characters (limit {limit})")
        problem = (3, f"Text exceeds the maximum of {limit} characters")
    if problem is not None:
        await respond_error(send, 400, problem[1], problem[0])
        return None
    return request


async def _synthesize(core: Core, request: proto.SynthesizeRequest) -> Speech:
    c = request.config
    return await core.synthesizer.synthesize(
        request.text,
        voice=c.voice_id,
        sample_rate=synthesis_rate(c.encoding, c.sample_rate_hertz),
        speaking_rate=c.speaking_rate,
    )


def _primary(language: str) -> str:
    """A language tag's primary subtag, lower case: ``"en-US"`` → ``"en"``."""
    return language.strip().strip('"').replace("_", "-").split("-")[0].lower()


def _encoder(config: proto.Create) -> StreamEncoder | None:
    if config.encoding not in COMPRESSED:
        return None
    return StreamEncoder(config.encoding, config.sample_rate_hertz, config.bit_rate)
