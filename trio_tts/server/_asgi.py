"""The little of ASGI both protocols need: the callable types, a header, a body, a JSON reply,
and the Google-style error body (``{"code", "message", "details"}``) of every error status."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import Core

__all__ = [
    "GRPC_CODES",
    "JSON_HEADERS",
    "ASGIReceive",
    "ASGISend",
    "HTTPHandler",
    "Scope",
    "error_body",
    "header",
    "read_body",
    "respond_error",
    "respond_json",
]

Scope = dict[str, Any]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
#: One HTTP endpoint of a protocol: ``handler(core, scope, receive, send)``.
HTTPHandler = Callable[["Core", Scope, ASGIReceive, ASGISend], Awaitable[None]]
JSON_HEADERS = [(b"content-type", b"application/json")]
#: HTTP status → the gRPC code it stands for (Google's mapping; anything else is 2, UNKNOWN).
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 10, 413: 3, 429: 8, 499: 1,
              500: 13, 501: 12, 503: 14, 504: 4}  # fmt: skip


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


def error_body(status: int, message: str, code: int | None = None) -> dict[str, Any]:
    """The JSON body of an error answered with HTTP ``status``, as Inworld's gateway writes it:
    ``{"code": <gRPC code>, "message": ..., "details": []}`` (``code`` defaults to the one
    :data:`GRPC_CODES` maps ``status`` to)."""
    grpc = code if code is not None else GRPC_CODES.get(status, 2)
    return {"code": grpc, "message": message, "details": []}


async def respond_error(send: ASGISend, status: int, message: str, code: int | None = None) -> None:
    """A whole error response: ``status`` with :func:`error_body`."""
    await respond_json(send, status, error_body(status, message, code))
