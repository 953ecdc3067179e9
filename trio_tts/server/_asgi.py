"""The little of ASGI both protocols need: the callable types, a header, a body, a JSON reply."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import Core

__all__ = [
    "JSON_HEADERS",
    "ASGIReceive",
    "ASGISend",
    "HTTPHandler",
    "Scope",
    "header",
    "read_body",
    "respond_json",
]

Scope = dict[str, Any]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
#: One HTTP endpoint of a protocol: ``handler(core, scope, receive, send)``.
HTTPHandler = Callable[["Core", Scope, ASGIReceive, ASGISend], Awaitable[None]]
JSON_HEADERS = [(b"content-type", b"application/json")]


def header(scope: Scope, name: bytes) -> str | None:
    """The request header ``name`` (lower case), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(receive: ASGIReceive) -> bytes | None:
    """An HTTP request's whole body; None if the client left first."""
    body: bytes = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond_json(send: ASGISend, status: int, body: dict[str, Any]) -> None:
    """A whole HTTP response: ``status`` and ``body`` as JSON."""
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
