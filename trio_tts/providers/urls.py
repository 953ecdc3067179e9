"""What the providers' WebSocket URLs share: a ``url=`` given as the service's base URL.

A provider takes what ``trio-tts --url`` takes: the full WebSocket endpoint
(``ws://127.0.0.1:8765/tts/v1/voice:streamBidirectional``) or just the service's root, as a
WebSocket or an HTTP URL (``http://127.0.0.1:8765``, ``https://api.inworld.ai/``). A root
gets the provider's endpoint path; ``http`` becomes ``ws`` and ``https`` becomes ``wss``.
"""

from __future__ import annotations

import urllib.parse

from .._core.errors import InvalidOptions

__all__ = ["VOICE_PLACEHOLDER", "voice_url_template", "websocket_url"]

#: Where a per-voice endpoint (ElevenLabs) names the voice: ``.../{voice_id}/...``.
VOICE_PLACEHOLDER = "{voice_id}"

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def websocket_url(url: object, endpoint_path: str, *, query: bool = True) -> str:
    """The WebSocket URL for ``url``: its scheme as ws/wss, ``endpoint_path`` when it names
    no path (none, or ``/``); a path it names, and its query, are kept.

    Example::

        websocket_url("http://127.0.0.1:8765", "/ws3")      # 'ws://127.0.0.1:8765/ws3'
        websocket_url("wss://h/custom/path", "/ws3")        # 'wss://h/custom/path'

    Raises:
        InvalidOptions: not a ws(s):// or http(s):// URL with a host, or (``query=False``) a
            URL with a query.
    """
    if not isinstance(url, str):
        raise InvalidOptions(f"url: expected a str, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidOptions("url: must start with ws://, wss://, http:// or https://")
    if not parts.netloc:
        raise InvalidOptions("url: has no host")
    if parts.query and not query:
        raise InvalidOptions("url: must not carry a query (the options make it)")
    path = parts.path if parts.path not in ("", "/") else endpoint_path
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def voice_url_template(url: object, api_prefix: str, endpoint_path: str) -> str:
    """The WebSocket URL template of a per-voice endpoint (ElevenLabs puts the voice in the
    path), with :data:`VOICE_PLACEHOLDER` where the voice goes.

    ``url`` is the template itself (its path names ``{voice_id}``), the service's root
    (``http://127.0.0.1:8765``: ``api_prefix`` then ``endpoint_path`` are appended), or an API
    base with a path (``http://127.0.0.1:8765/v1``, as LiveKit's ``base_url`` takes it; a
    proxy's ``https://proxy.example/elevenlabs/v1``: ``endpoint_path`` is appended). http
    becomes ws, https wss.

    Example::

        voice_url_template("http://127.0.0.1:8765/v1", "/v1", "/text-to-speech/{voice_id}/x")
        # 'ws://127.0.0.1:8765/v1/text-to-speech/{voice_id}/x'

    Raises:
        InvalidOptions: not a ws(s):// or http(s):// URL with a host, or one with a query
            (the options make the query).
    """
    if not isinstance(url, str):
        raise InvalidOptions(f"url: expected a str, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidOptions("url: must start with ws://, wss://, http:// or https://")
    if not parts.netloc:
        raise InvalidOptions("url: has no host")
    if parts.query:
        raise InvalidOptions("url: must not carry a query (the options make it)")
    path = parts.path
    if VOICE_PLACEHOLDER not in path:
        base = path.rstrip("/") or api_prefix
        path = base + endpoint_path
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))
