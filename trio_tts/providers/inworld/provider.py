"""Inworld as a :class:`~trio_tts.Provider`: the WebSocket URL, the credential and the limits."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Final

from ..._core.backoff import FATAL_CLOSE_CODES
from ..._core.errors import InvalidOptions, register_api_key
from ..urls import websocket_url
from .codec import InworldCodec
from .options import VoiceOptions

__all__ = ["DEFAULT_URL", "InworldProvider"]

_WS_PATH: Final = "/tts/v1/voice:streamBidirectional"
DEFAULT_URL: Final = f"wss://api.inworld.ai{_WS_PATH}"


class InworldProvider:
    """Inworld as a :class:`~trio_tts.Provider`: URL, credential and limits.

    All contexts share connections (one connection key). ``api_key`` is the Base64 key from
    the Inworld portal, sent as ``Authorization: Basic <key>``; ``None`` sends no credential
    (for the local speech server). The key is registered with :func:`trio_tts._core.errors.redact`
    and never shown by ``repr``.

    ``url`` is the bidirectional endpoint, or the service's root as ``trio-tts --url`` takes
    it: ``http://127.0.0.1:8765`` and ``ws://127.0.0.1:8765/`` both mean
    ``ws://127.0.0.1:8765/tts/v1/voice:streamBidirectional`` (http → ws, https → wss).

    Raises:
        InvalidOptions: a URL that is not ws(s):// or http(s):// with a host, a non-positive
            limit, or an empty or non-string key.
    """

    name = "inworld"
    #: Inworld sessions do not expire (only the server's 10-minute inactivity close).
    max_session_duration: float | None = None
    #: No account-wide context cap beyond 20 connections × 5 contexts.
    max_contexts: int | None = None
    #: No keep-alive messages (the pool's heartbeat and ``keepalive_refresh`` suffice).
    keepalive_interval: float | None = None
    fatal_close_codes: frozenset[int] = FATAL_CLOSE_CODES
    #: A cancel is confirmed by ``contextClosed``: no expiry rule.
    cancel_expiry: float | None = None

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = DEFAULT_URL,
        contexts_per_connection: int = 5,
        max_text_chars: int = 1000,
    ) -> None:
        register_api_key(api_key)
        endpoint = websocket_url(url, _WS_PATH)
        if not isinstance(contexts_per_connection, int) or contexts_per_connection < 1:
            raise InvalidOptions(
                f"contexts_per_connection: {contexts_per_connection!r} is not a positive int"
            )
        if not isinstance(max_text_chars, int) or max_text_chars < 1:
            raise InvalidOptions(f"max_text_chars: {max_text_chars!r} is not a positive int")
        self._api_key = api_key
        self._url = endpoint
        self.contexts_per_connection = contexts_per_connection
        self.max_text_chars = max_text_chars

    @classmethod
    def from_env(cls, url: str = DEFAULT_URL, **limits: int) -> InworldProvider:
        """A provider keyed by ``$INWORLD_API_KEY`` (no credential when it is unset or empty)."""
        return cls(os.environ.get("INWORLD_API_KEY") or None, url=url, **limits)

    def __repr__(self) -> str:
        key = "***" if self._api_key is not None else "None"
        return (
            f"InworldProvider(api_key={key}, url={self._url.split('?', 1)[0]!r}, "
            f"contexts_per_connection={self.contexts_per_connection}, "
            f"max_text_chars={self.max_text_chars})"
        )

    def default_options(self) -> VoiceOptions:
        """``VoiceOptions()``: the options of contexts when the pool is given none."""
        return VoiceOptions()

    def connection_key(self, options: VoiceOptions) -> Hashable:
        """Always the same: any Inworld context may share any connection."""
        return "inworld"

    def url(self, options: VoiceOptions) -> str:
        """The WebSocket URL (the same for every context)."""
        return self._url

    def headers(self) -> Sequence[tuple[str, str]]:
        """``[("Authorization", "Basic <key>")]``, or ``[]`` without a key. Never log these."""
        if self._api_key is None:
            return []
        return [("Authorization", f"Basic {self._api_key}")]

    def new_codec(self) -> InworldCodec:
        """A fresh codec for one connection."""
        return InworldCodec()
