"""Who may connect to the Cartesia endpoints, and with which API version (pure).

The key (when the server has one) is accepted wherever Cartesia accepts it: the
``X-API-Key`` header (the LiveKit plugin), ``Authorization: Bearer <key>`` (the ``cartesia``
SDK, and Cartesia's documented default), or the ``api_key`` / ``access_token`` query
parameters (browsers, where a WebSocket cannot set headers). A missing or wrong key is
refused with 401.

The API version comes from ``?cartesia_version=`` (WebSocket only; it wins over the header,
as documented) or the ``Cartesia-Version`` header. Chosen here where Cartesia documents
nothing: a request **without** a version is refused with 400 (Cartesia requires one on every
request); a version that is not a date ``YYYY-MM-DD`` on or after ``2024-06-10`` (the first
public version) is refused with 404 and Cartesia's own words for an unknown version, "API
version not found: No API schema exists for the requested Cartesia-Version." Any later date
is accepted (the SDK 4.2.0 sends ``2026-08-14``, the LiveKit plugin ``2025-04-16``), and the
version changes nothing in what the server sends.

Refusals carry Cartesia's HTTP error object, ``{"error_code", "title", "message",
"request_id"}``.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from typing import Any

from .._asgi import Scope, header

__all__ = ["FIRST_VERSION", "authorized", "error_object", "version", "version_problem"]

FIRST_VERSION = "2024-06-10"
_UNKNOWN_VERSION = (
    "API version not found: No API schema exists for the requested Cartesia-Version."
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TITLES = {
    400: ("invalid_request", "Invalid request"),
    401: ("unauthorized", "Unauthorized"),
    404: ("not_found", "Not found"),
    429: ("rate_limited", "Too many requests"),
}


def _query(scope: Scope) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))


def authorized(scope: Scope, key: str, *, query: bool = True) -> bool:
    """Whether the request carries ``key`` in any place Cartesia accepts (the query only when
    ``query``: the WebSocket)."""
    offered = [header(scope, b"x-api-key")]
    bearer = header(scope, b"authorization")
    if bearer is not None and bearer.startswith("Bearer "):
        offered.append(bearer[len("Bearer ") :])
    if query:
        params = _query(scope)
        offered += params.get("api_key", []) + params.get("access_token", [])
    return key in offered


def version(scope: Scope, *, query: bool = True) -> str | None:
    """The requested API version: ``?cartesia_version=`` (when ``query``) over the header."""
    if query:
        values = _query(scope).get("cartesia_version")
        if values:
            return values[-1]
    return header(scope, b"cartesia-version")


def version_problem(scope: Scope, *, query: bool = True) -> tuple[int, str] | None:
    """``(status, message)`` refusing a missing or unknown API version, or None."""
    value = version(scope, query=query)
    if value is None or not value.strip():
        where = "the Cartesia-Version header or ?cartesia_version=" if query else (
            "the Cartesia-Version header"
        )  # fmt: skip
        return 400, f"An API version is required: pass {where} (e.g. 2025-04-16)"
    if _DATE.match(value) is None or value < FIRST_VERSION:
        return 404, _UNKNOWN_VERSION
    return None


def error_object(status: int, message: str) -> dict[str, Any]:
    """Cartesia's HTTP error object for ``status``."""
    code, title = _TITLES.get(status, (None, "Error"))
    return {"error_code": code, "title": title, "message": message,
            "request_id": str(uuid.uuid4())}  # fmt: skip
