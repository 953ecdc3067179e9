"""The ASGI application: Inworld's HTTP endpoints and its WebSocket on one port.

Routes (everything else is 404):

* ``WS  /tts/v1/voice:streamBidirectional`` — the multiplexed streaming protocol
  (:mod:`._session`). The upgrade is refused with an HTTP status, as the provider does, for
  a fault-injected rejection, a bad ``Authorization: Basic <key>`` (401), or one connection
  over ``max_connections`` (429 with ``Retry-After``); refusals use ASGI's
  ``websocket.http.response`` extension (hypercorn has it), else a 403 close.
* ``POST /tts/v1/voice:stream`` — one text, NDJSON lines ``{"result": {"audioContent",
  "timestampInfo"}}`` streamed as they are cut, or ``{"error": ...}``.
* ``POST /tts/v1/voice`` — one text, one JSON ``{"audioContent", "timestampInfo"}``.
* ``WS  /ws3`` and ``POST /v1/rime-tts`` — Rime's JSON WebSocket and one-shot synthesis
  (:mod:`._rime`; ``Authorization: Bearer <key>``, a bad query is refused with 400).
* ``GET  /tts/v1/voices`` — ``{"voices": [{"voiceId", "displayName", "languages", ...}]}``,
  optionally ``?filter=language=en``.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.parse
from typing import Any

import trio

from ._codecs import COMPRESSED, StreamEncoder, synthesis_rate
from ._core import Core
from ._speech import VOICES
from .inworld import proto
from .inworld.chunks import audio_frames, closing_frame, timestamp_info
from .inworld.config_rules import ConfigError, validated
from .inworld.session import ASGIReceive, ASGISend, Session
from .rime.session import RIME_HTTP_PATH, RIME_WS_PATH, RimeSession, parse_rime_query, rime_http

__all__ = ["WS_PATH", "App"]

WS_PATH = "/tts/v1/voice:streamBidirectional"
_JSON = [(b"content-type", b"application/json")]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _retry_after(seconds: float) -> bytes:
    return str(max(0, math.ceil(seconds))).encode()


class App:
    """An ASGI 3 application serving one :class:`Core` (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _authorized(self, scope: dict[str, Any]) -> bool:
        key = self.core.config.api_key
        scheme = "Bearer" if scope["path"] in (RIME_WS_PATH, RIME_HTTP_PATH) else "Basic"
        return key is None or _header(scope, b"authorization") == f"{scheme} {key}"

    # -- WebSocket -----------------------------------------------------------------------------

    async def _deny(self, scope: dict[str, Any], send: ASGISend, status: int,
                    message: str, retry_after: float | None = None,
                    echo: bool = False) -> None:  # fmt: skip
        self.core.reject(status)
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = list(_JSON)
        if retry_after is not None:
            headers.append((b"retry-after", _retry_after(retry_after)))
        content: dict[str, Any] = {"code": status, "message": message}
        if echo:  # a careless provider repeating the credential back (secret-leak tests)
            seen = _header(scope, b"authorization") or ""
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            content["received"] = {"authorization": seen, "query": query}
            headers.append((b"x-echo", f"{seen} {query}".encode("latin-1")))
        body = json.dumps(content).encode()
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})

    async def _websocket(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        core, config = self.core, self.core.config
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] not in (WS_PATH, RIME_WS_PATH):
            await self._deny(scope, send, 404, f"no WebSocket endpoint at {scope['path']}")
            return
        rime = scope["path"] == RIME_WS_PATH
        attempt = core.handshakes
        core.handshakes += 1
        core.handshake_times.append(trio.current_time())
        no_answer = core.faults.no_answer
        if no_answer is not None and no_answer.handshakes(attempt):
            while (await receive())["type"] != "websocket.disconnect":
                pass  # silent until the client gives up
            return
        reject = core.faults.reject
        if reject is not None and (reject.count is None or core.fault_rejections < reject.count):
            core.fault_rejections += 1
            await self._deny(
                scope, send, reject.status, "rejected (fault injection)", reject.retry_after,
                echo=reject.echo,
            )  # fmt: skip
            return
        if not self._authorized(scope):
            await self._deny(scope, send, 401, "Unauthenticated: invalid or missing API key")
            return
        problem = parse_rime_query(scope) if rime else None
        if isinstance(problem, str):
            await self._deny(scope, send, 400, problem)
            return
        if core.connections_open >= config.max_connections:
            core.violation(
                f"connection {core.connections_open + 1} (limit {config.max_connections})"
            )
            await self._deny(scope, send, 429, "Too many connections", config.retry_after)
            return
        index = core.connections_accepted
        core.connections_accepted += 1
        core.connections_open += 1
        core.peak_connections = max(core.peak_connections, core.connections_open)
        try:
            await send({"type": "websocket.accept"})
            quit_at_once = core.faults.accept_then_close
            if quit_at_once is not None and quit_at_once.handshakes(attempt):
                code, reason = quit_at_once.code, quit_at_once.reason
                await send({"type": "websocket.close", "code": code, "reason": reason})
                return
            session = RimeSession if rime else Session
            await session(core, index, scope, receive, send).run()
        finally:
            core.connection_closed()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        path, method = scope["path"], scope["method"]
        routes = {
            ("GET", "/tts/v1/voices"): self._voices,
            ("POST", "/tts/v1/voice:stream"): self._voice_stream,
            ("POST", "/tts/v1/voice"): self._voice,
            ("POST", RIME_HTTP_PATH): self._rime,
        }
        handler = routes.get((method, path))
        if handler is None:
            known = {p for _, p in routes}
            status = 405 if path in known else 404
            await _respond(
                send, status, {"code": 5 if status == 404 else 12, "message": f"{method} {path}"}
            )
            return
        if not self._authorized(scope):
            await _respond(
                send, 401, {"code": 16, "message": "Unauthenticated: invalid or missing API key"}
            )
            return
        await handler(scope, receive, send)

    async def _rime(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        await rime_http(self.core, scope, receive, send)

    async def _voices(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode())
        language = None
        for item in query.get("filter", []):
            key, _, value = item.partition("=")
            if key.strip() == "language":
                language = value.strip()
        voices = [
            {
                "voiceId": v.voice_id,
                "displayName": v.voice_id,
                "description": v.description,
                "languages": [v.language],
                "tags": [v.gender],
                "source": "SYSTEM",
            }
            for v in VOICES.values()
            if language is None or v.language == language
        ]
        await _respond(send, 200, {"voices": voices})

    async def _read_request(
        self, receive: ASGIReceive, send: ASGISend
    ) -> proto.SynthesizeRequest | None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            request = proto.decode_synthesize_request(body)
        except proto.DecodeError as exc:
            await _respond(send, 400, {"code": 3, "message": str(exc)})
            return None
        problem = None
        try:
            validated(request.config)
        except ConfigError as exc:
            problem = (exc.code, str(exc))
        if problem is None and len(request.text) > self.core.config.max_http_text_chars:
            limit = self.core.config.max_http_text_chars
            self.core.violation(f"HTTP request of {len(request.text)} characters (limit {limit})")
            problem = (3, f"Text exceeds the maximum of {limit} characters")
        if problem is not None:
            await _respond(send, 400, {"code": problem[0], "message": problem[1]})
            return None
        return request

    async def _synthesize(self, request: proto.SynthesizeRequest) -> Any:
        c = request.config
        return await self.core.synthesizer.synthesize(
            request.text,
            voice=c.voice_id,
            sample_rate=synthesis_rate(c.encoding, c.sample_rate_hertz),
            speaking_rate=c.speaking_rate,
        )

    @staticmethod
    def _encoder(config: proto.Create) -> StreamEncoder | None:
        if config.encoding not in COMPRESSED:
            return None
        return StreamEncoder(config.encoding, config.sample_rate_hertz, config.bit_rate)

    async def _voice_stream(
        self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        request = await self._read_request(receive, send)
        if request is None:
            return
        headers = [(b"content-type", b"application/x-ndjson")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            speech = await self._synthesize(request)
        except Exception as exc:
            line = proto.encode_error(13, f"synthesis failed: {exc}") + "\n"
            await send({"type": "http.response.body", "body": line.encode()})
            return
        encoder = self._encoder(request.config)
        frames = await trio.to_thread.run_sync(
            lambda: audio_frames(
                None,
                request.text,
                speech.pcm,
                speech.words,
                request.config,
                self.core.config.chunk_ms,
                encoder,
                drain=False,
            )
        )
        end = closing_frame(None, encoder, request.config.model_id)
        for line in [*frames, *([end] if end is not None else [])]:
            await send(
                {"type": "http.response.body", "body": (line + "\n").encode(), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})

    async def _voice(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        request = await self._read_request(receive, send)
        if request is None:
            return
        speech = await self._synthesize(request)
        audio = speech.pcm
        encoder = self._encoder(request.config)
        if encoder is not None:
            audio = encoder.encode(audio) + encoder.close()
        elif request.config.encoding == "LINEAR16":
            audio = proto.wav_header(len(audio), speech.sample_rate) + audio
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
        await _respond(send, 200, body)


async def _respond(send: ASGISend, status: int, body: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
