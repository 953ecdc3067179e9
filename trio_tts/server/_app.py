"""The ASGI application: every protocol's WebSockets and HTTP endpoints on one port.

Routes (everything else is 404, or 405 for a known path):

* ``WS  /tts/v1/voice:streamBidirectional`` — Inworld's multiplexed streaming protocol
  (:mod:`.inworld.session`; ``Authorization: Basic <key>``);
* ``WS  /ws3`` — Rime's JSON WebSocket (:mod:`.rime.session`; ``Authorization: Bearer <key>``,
  a bad query is refused with 400);
* ``WS  /v1/text-to-speech/{voice_id}/multi-stream-input`` and ``.../stream-input`` —
  ElevenLabs' multi-context and single-context WebSockets (:mod:`.elevenlabs.session`;
  ``xi-api-key``, checked by the session after the upgrade, since ElevenLabs also takes the key
  in the first message);
* ``WS  /tts/websocket`` — Cartesia's context WebSocket (:mod:`.cartesia.session`;
  ``X-API-Key``, ``Authorization: Bearer`` or ``?api_key=``; the API version in
  ``?cartesia_version=`` or the ``Cartesia-Version`` header) and its ``GET /voices``
  (:mod:`.cartesia.http`);
* Inworld's ``voice:stream``, ``voice`` and ``voices`` (:mod:`.inworld.http`), Rime's
  ``/v1/rime-tts`` (:mod:`.rime.http`) and ElevenLabs' ``GET /v1/voices`` and ``POST
  /v1/text-to-speech/{voice_id}[/stream]`` (:mod:`.elevenlabs.http`).

What is decided here, before a session exists: the WebSocket upgrade is refused with an HTTP
status, as the providers do, for a fault-injected rejection, a bad key (401), a refused
query (400), or one connection over ``max_connections`` (429 with ``Retry-After``); refusals
use ASGI's ``websocket.http.response`` extension (hypercorn has it), else a 403 close. Every
refusal and HTTP error carries ``{"code": <gRPC code>, "message", "details": []}``, except
ElevenLabs' (``{"detail": {"status", "message"}}``, as ElevenLabs' API answers).
"""

from __future__ import annotations

import json
import math
import re

import trio

from ._asgi import (
    JSON_HEADERS,
    ASGIReceive,
    ASGISend,
    HTTPHandler,
    Scope,
    error_body,
    header,
    respond_error,
)
from ._core import Core
from ._websocket import WebSocketSession
from .cartesia import http as cartesia_http
from .cartesia.session import CartesiaSession
from .elevenlabs import http as elevenlabs_http
from .elevenlabs.multi import MultiStreamSession
from .elevenlabs.single import StreamInputSession
from .inworld import http as inworld_http
from .inworld.session import InworldSession
from .rime import http as rime_http
from .rime.session import RimeSession

__all__ = ["HTTP_PATTERNS", "HTTP_ROUTES", "SESSIONS", "SESSION_PATTERNS", "App", "session_for"]

#: WebSocket path → the session class that serves it (a benchmark may swap one).
SESSIONS: dict[str, type[WebSocketSession]] = {
    InworldSession.PATH: InworldSession,
    RimeSession.PATH: RimeSession,
    CartesiaSession.PATH: CartesiaSession,
}
#: WebSocket paths with a parameter (ElevenLabs' voice id): pattern → session class, tried in
#: order after :data:`SESSIONS`.
SESSION_PATTERNS: list[tuple[re.Pattern[str], type[WebSocketSession]]] = [
    (MultiStreamSession.PATH_PATTERN, MultiStreamSession),
    (StreamInputSession.PATH_PATTERN, StreamInputSession),
]
#: (method, path) → (handler, authorization scheme; None: the handler checks the key).
HTTP_ROUTES: dict[tuple[str, str], tuple[HTTPHandler, str | None]] = {
    **{route: (h, inworld_http.AUTH_SCHEME) for route, h in inworld_http.ROUTES.items()},
    **{route: (h, rime_http.AUTH_SCHEME) for route, h in rime_http.ROUTES.items()},
    **{route: (h, None) for route, h in elevenlabs_http.ROUTES.items()},
    **{route: (h, None) for route, h in cartesia_http.ROUTES.items()},
}


#: (method, path pattern, handler) for HTTP paths with a parameter; each handler checks its
#: key itself.
HTTP_PATTERNS: list[tuple[str, re.Pattern[str], HTTPHandler]] = [*elevenlabs_http.PATTERNS]


def session_for(path: str) -> type[WebSocketSession] | None:
    """The session class serving the WebSocket ``path``, or None (404)."""
    session = SESSIONS.get(path)
    if session is not None:
        return session
    for pattern, candidate in SESSION_PATTERNS:
        if pattern.fullmatch(path):
            return candidate
    return None


def _retry_after(seconds: float) -> bytes:
    return str(max(0, math.ceil(seconds))).encode()


class App:
    """An ASGI 3 application serving one :class:`Core` (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
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

    def _authorized(self, scope: Scope, scheme: str | None) -> bool:
        """``scheme`` None: the handler checks the key itself."""
        key = self.core.config.api_key
        return key is None or scheme is None or header(scope, b"authorization") == f"{scheme} {key}"

    # -- WebSocket -----------------------------------------------------------------------------

    async def _deny(self, scope: Scope, send: ASGISend, status: int,
                    message: str, retry_after: float | None = None,
                    echo: bool = False,
                    session: type[WebSocketSession] | None = None) -> None:  # fmt: skip
        self.core.reject(status)
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        # The refused upgrade's connection ends here: saying so keeps a client (aiohttp) from
        # putting it back in its pool and sending its next request down a closing socket.
        headers = [*JSON_HEADERS, (b"connection", b"close")]
        if retry_after is not None:
            headers.append((b"retry-after", _retry_after(retry_after)))
        content = session.error_body(status, message) if session else error_body(status, message)
        if echo:  # a careless provider repeating the credential back (secret-leak tests)
            seen = header(scope, b"authorization") or ""
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            content["received"] = {"authorization": seen, "query": query}
            headers.append((b"x-echo", f"{seen} {query}".encode("latin-1")))
        body = json.dumps(content).encode()
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})

    async def _websocket(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        core, config = self.core, self.core.config
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        session = session_for(scope["path"])
        if session is None:
            await self._deny(scope, send, 404, f"no WebSocket endpoint at {scope['path']}")
            return
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
                echo=reject.echo, session=session,
            )  # fmt: skip
            return
        if not session.authorized(scope, config.api_key):
            await self._deny(
                scope, send, 401, "Unauthenticated: invalid or missing API key", session=session
            )
            return
        problem = session.refusal(scope)
        if problem is not None:
            status, text = problem if isinstance(problem, tuple) else (400, problem)
            await self._deny(scope, send, status, text, session=session)
            return
        if core.connections_open >= config.max_connections:
            core.violation(
                f"connection {core.connections_open + 1} (limit {config.max_connections})"
            )
            await self._deny(
                scope, send, 429, "Too many connections", config.retry_after, session=session
            )
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
            await session(core, index, scope, receive, send).run()
        finally:
            core.connection_closed()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        path, method = scope["path"], scope["method"]
        route = HTTP_ROUTES.get((method, path))
        if route is None:
            for want, pattern, handler in HTTP_PATTERNS:
                if pattern.fullmatch(path):
                    if want == method:
                        await handler(self.core, scope, receive, send)
                        return
                    await respond_error(send, 405, f"{method} {path}")
                    return
            known = {p for _, p in HTTP_ROUTES}
            status = 405 if path in known else 404
            await respond_error(send, status, f"{method} {path}")
            return
        handler, scheme = route
        if not self._authorized(scope, scheme):
            await respond_error(send, 401, "Unauthenticated: invalid or missing API key")
            return
        await handler(self.core, scope, receive, send)
