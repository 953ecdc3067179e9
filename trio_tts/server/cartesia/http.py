"""Cartesia's voice listing on the local server: ``GET /voices``.

Auth as on the WebSocket but without the query (``X-API-Key`` or ``Authorization: Bearer``),
and the ``Cartesia-Version`` header is required (:mod:`.auth`). Query: ``limit`` (1..100,
default 10), ``starting_after`` / ``ending_before`` (a voice id: cursor paging, as the SDK's
``voices.list()`` pages) and ``q`` (a substring of the id, name or description). The answer
is ``{"data": [voice...], "has_more", "next_page"}`` (:func:`.voices.listing`); errors are
Cartesia's error object with 400, 401 or 404.
"""

from __future__ import annotations

import urllib.parse

from .._asgi import ASGIReceive, ASGISend, HTTPHandler, Scope, respond_json
from .._core import Core
from . import auth
from .voices import listing

__all__ = ["ROUTES", "VOICES_PATH", "list_voices"]

VOICES_PATH = "/voices"


async def list_voices(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``GET /voices`` (see the module docstring)."""
    key = core.config.api_key
    if key is not None and not auth.authorized(scope, key, query=False):
        message = "Unauthenticated: invalid or missing API key"
        await respond_json(send, 401, auth.error_object(401, message))
        return
    problem = auth.version_problem(scope, query=False)
    if problem is not None:
        status, message = problem
        await respond_json(send, status, auth.error_object(status, message))
        return
    query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))

    def get(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    raw_limit = get("limit") or "10"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        message = f"limit {raw_limit!r} is not an integer in 1..100"
        await respond_json(send, 400, auth.error_object(400, message))
        return
    page = listing(
        limit=int(raw_limit), starting_after=get("starting_after"),
        ending_before=get("ending_before"), query=get("q"), language=get("language"),
    )  # fmt: skip
    await respond_json(send, 200, page)


#: (method, path) → handler, for the app's router.
ROUTES: dict[tuple[str, str], HTTPHandler] = {("GET", VOICES_PATH): list_voices}
