"""Cartesia's ``/tts/websocket`` as a :class:`~trio_tts.Provider`: the URL (the API version is
its query), the credential and the limits (:class:`~trio_tts.AccountLimits` too).

Cartesia's limits, from its "Concurrency and WebSocket Limits" page
(docs.cartesia.ai/use-the-api/concurrency-limits-and-timeouts, read 2026-12) and its contexts
guide (docs.cartesia.ai/use-the-api/tts-websocket/contexts):

* TTS concurrency is counted in contexts active at once **per account**, by plan: Free 2,
  Pro 3, Startup 5, Scale 15, Enterprise custom; beyond it a new context gets 429;
* WebSocket connections: up to 10× the concurrency limit; no limit of contexts per connection
  is documented ("the WebSocket scales up to dozens of concurrent generations");
* an idle WebSocket is closed after 5 minutes;
* a context expires 1 s after its last audio (no documented answer to a cancel).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any, Final

from ..._core.backoff import FATAL_CLOSE_CODES
from ..._core.errors import InvalidOptions, register_api_key
from ..._core.options import is_number
from ..urls import websocket_url
from .codec import CartesiaCodec
from .options import CartesiaOptions

__all__ = ["DEFAULT_URL", "WS_PATH", "CartesiaProvider"]

WS_PATH: Final = "/tts/websocket"
DEFAULT_URL: Final = f"wss://api.cartesia.ai{WS_PATH}"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptions(f"{name}: {value!r} is not a positive int")
    return value


def _positive(name: str, value: object) -> float:
    if not isinstance(value, int | float) or not is_number(value) or value <= 0:
        raise InvalidOptions(f"{name}: {value!r} must be a positive number")
    return float(value)


class CartesiaProvider:
    """Cartesia's TTS WebSocket as a :class:`~trio_tts.Provider`: URL, credential, limits.

    Every setting of a context travels in each of its requests, so contexts with different
    voices, models or formats share connections; only the API version is the connection's
    (``?cartesia_version=``, as the LiveKit plugin sends it): the connection key is the URL,
    and ``Pool.update_options(api_version=...)`` retires the connections of the old version.

    Limits (see the module docstring for the source):

    * ``concurrency`` — the account's plan limit of contexts at once (default 2: the Free
      plan's, the one every account has; Pro 3, Startup 5, Scale 15). The pool's own gate
      holds at most that many contexts (:attr:`max_contexts`); several pools or processes on
      one account share it through a fleet quota (``RedisQuota``).
    * ``contexts_per_connection`` — default ``concurrency``: all contexts fit on one socket,
      as Cartesia recommends; the pool setting of the same name overrides it.
    * ``max_session_duration`` — 270 s by default: a connection no context was placed on for
      that long is replaced before Cartesia's 5-minute idle close (the pool's
      ``refresh_on_use`` restarts the clock on each placement).
    * ``cancel_expiry`` — 1.5 s: a cancelled context the server does not answer counts as
      gone that long after its last frame arrived here (Cartesia ends it 1 s after its last
      audio went out, which is earlier; the 0.5 s margin covers jitter). The pool's sweep
      (``sweep_interval``, 1 s) frees the slot at its first pass after that.

    ``api_key`` is sent as ``X-API-Key`` (the header Cartesia's WebSocket reference and the
    LiveKit plugin use; ``None``: no credential, for the local speech server); it is
    registered with redaction and never shown by ``repr``.

    ``url`` is the ``/tts/websocket`` endpoint or the service's root as ``trio-tts --url``
    takes it (``http://127.0.0.1:8765`` means ``ws://127.0.0.1:8765/tts/websocket``).

    Raises:
        InvalidOptions: a URL that is not ws(s):// or http(s):// with a host, or that carries
            a query; a non-positive limit; an empty key.
    """

    name = "cartesia"
    #: No keep-alive messages: a context lives while it has input or audio in flight.
    keepalive_interval: float | None = None
    fatal_close_codes: frozenset[int] = FATAL_CLOSE_CODES

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = DEFAULT_URL,
        concurrency: int = 2,
        contexts_per_connection: int | None = None,
        max_text_chars: int = 1000,
        max_session_duration: float | None = 270.0,
        cancel_expiry: float = 1.5,
    ) -> None:
        register_api_key(api_key)
        endpoint = websocket_url(url, WS_PATH, query=False)
        self.max_contexts: int | None = _positive_int("concurrency", concurrency)
        self.contexts_per_connection = _positive_int(
            "contexts_per_connection",
            concurrency if contexts_per_connection is None else contexts_per_connection,
        )
        self.max_text_chars = _positive_int("max_text_chars", max_text_chars)
        self.max_session_duration: float | None = (
            None
            if max_session_duration is None
            else _positive("max_session_duration", max_session_duration)
        )
        self.cancel_expiry: float | None = _positive("cancel_expiry", cancel_expiry)
        self._api_key = api_key
        self._url = endpoint

    @classmethod
    def from_env(cls, url: str = DEFAULT_URL, **settings: Any) -> CartesiaProvider:
        """A provider keyed by ``$CARTESIA_API_KEY`` (no credential when unset or empty)."""
        return cls(os.environ.get("CARTESIA_API_KEY") or None, url=url, **settings)

    def __repr__(self) -> str:
        key = "***" if self._api_key is not None else "None"
        return (
            f"CartesiaProvider(api_key={key}, url={self._url!r}, concurrency={self.max_contexts},"
            f" contexts_per_connection={self.contexts_per_connection})"
        )

    def default_options(self) -> CartesiaOptions:
        """``CartesiaOptions()``: sonic-3, the voice Katie, 24 kHz ``pcm_s16le``, English."""
        return CartesiaOptions()

    def connection_key(self, options: CartesiaOptions) -> Hashable:
        """The connection URL: contexts of one API version share connections.

        Raises:
            InvalidOptions: ``options`` are not :class:`CartesiaOptions`.
        """
        return self.url(options)

    def url(self, options: CartesiaOptions) -> str:
        """``<endpoint>?cartesia_version=<options.api_version>``.

        Raises:
            InvalidOptions: ``options`` are not :class:`CartesiaOptions`.
        """
        if not isinstance(options, CartesiaOptions):
            raise InvalidOptions(
                f"options: expected CartesiaOptions, got {type(options).__name__}"
            )
        return f"{self._url}?cartesia_version={options.api_version}"

    def headers(self) -> Sequence[tuple[str, str]]:
        """``[("X-API-Key", "<key>")]``, or ``[]`` without a key. Never log these."""
        if self._api_key is None:
            return []
        return [("X-API-Key", self._api_key)]

    def new_codec(self) -> CartesiaCodec:
        """A fresh codec for one connection."""
        return CartesiaCodec()
