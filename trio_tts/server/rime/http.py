"""Rime's one-shot HTTP synthesis on the local server (``Authorization: Bearer <key>``).

``POST /v1/rime-tts`` with JSON ``{"speaker", "text", "modelId", "samplingRate", ...}``
(the fields of :mod:`.config`) answers the raw PCM (``Accept: audio/pcm``, the default) or a
WAV (``audio/wav``), streamed in ``chunk_ms`` pieces, or JSON ``{"message"}`` with 400.
"""

from __future__ import annotations

import json

from .._asgi import ASGIReceive, ASGISend, HTTPHandler, Scope, read_body, respond_json
from .._core import Core
from .._speech import wav_header
from .config import MAX_TEXT_CHARS, RimeConfig, config_from

__all__ = ["AUTH_SCHEME", "HTTP_PATH", "ROUTES", "synthesize"]

HTTP_PATH = "/v1/rime-tts"
AUTH_SCHEME = "Bearer"


async def synthesize(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``POST /v1/rime-tts`` (see the module docstring)."""
    body = await read_body(receive)
    if body is None:
        return
    accept = "audio/pcm"
    for key, value in scope.get("headers", []):
        if key.lower() == b"accept":
            accept = bytes(value).decode("latin-1").split(";")[0].strip() or accept
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    problem: str | None = None
    config: RimeConfig | str = "expected a JSON object"
    if isinstance(data, dict):
        config = config_from(data.get)
    text = data.get("text") if isinstance(data, dict) else None
    if isinstance(config, str):
        problem = config
    elif not isinstance(text, str) or not text.strip():
        problem = "text is required"
    elif len(text) > MAX_TEXT_CHARS:
        core.violation(f"HTTP request of {len(text)} characters (limit {MAX_TEXT_CHARS})")
        problem = f"text exceeds {MAX_TEXT_CHARS} characters"
    elif accept not in ("audio/pcm", "audio/wav", "*/*"):
        problem = f"Accept {accept} is not supported by the local server (audio/pcm, audio/wav)"
    if problem is not None or not isinstance(config, RimeConfig) or not isinstance(text, str):
        await respond_json(send, 400, {"message": problem})
        return
    speech = await core.synthesizer.synthesize(
        text, voice=config.voice, sample_rate=config.sample_rate,
        speaking_rate=config.speaking_rate,
    )  # fmt: skip
    kind = "audio/wav" if accept == "audio/wav" else "audio/pcm"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", kind.encode())]})  # fmt: skip
    if kind == "audio/wav":
        head = wav_header(len(speech.pcm), config.sample_rate)
        await send({"type": "http.response.body", "body": head, "more_body": True})
    step = max(1, config.sample_rate * core.config.chunk_ms // 1000) * 2
    for offset in range(0, len(speech.pcm), step):
        piece = speech.pcm[offset : offset + step]
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


#: (method, path) → handler, for the app's router.
ROUTES: dict[tuple[str, str], HTTPHandler] = {("POST", HTTP_PATH): synthesize}
