"""Rime's ``/ws3`` as a :class:`~trio_tts.Provider`: the URL (the options are its query), the
credential and the limits."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Hashable, Sequence
from typing import Any, Final

from ..._core.backoff import FATAL_CLOSE_CODES
from ..._core.errors import InvalidOptions, register_api_key
from ..._core.options import is_number
from ..urls import websocket_url
from .codec import RimeCodec
from .options import RimeOptions, model_params

__all__ = ["DEFAULT_URL", "RimeProvider", "ws_query"]

DEFAULT_URL: Final = "wss://users-ws.rime.ai/ws3"


def ws_query(options: RimeOptions) -> dict[str, str]:
    """The ``/ws3`` query parameters for ``options`` (booleans as ``true``/``false``).

    Raises:
        InvalidOptions: ``reduce_latency`` is set — an HTTP-only option the WebSocket cannot
            honour.
    """
    if options.reduce_latency is not None:
        raise InvalidOptions(
            "reduce_latency: an HTTP-only option (mistv2 over /v1/rime-tts); the /ws3 WebSocket"
            " cannot honour it — use trio_tts.http.RimeHTTPClient or leave it None"
        )
    params: dict[str, object] = {
        "speaker": options.speaker,
        "modelId": options.model,
        "audioFormat": "pcm",
        "samplingRate": options.sample_rate,
        "segment": options.segment,
        **model_params(options),
    }
    return {
        k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in params.items()
    }



class RimeProvider:
    """Rime's ``/ws3`` as a :class:`~trio_tts.Provider`: URL, credential, limits.

    One utterance per connection (``contexts_per_connection = 1``); connections are reused
    until their session expires: the pool's ``max_session_duration`` defaults to this
    provider's (300 s), counted from the connection's last hand-out (``refresh_on_use``,
    LiveKit's ``mark_refreshed_on_get``). The connection key is the whole URL, so contexts
    with other options get other connections and ``Pool.update_options`` retires the old ones
    after their utterances. Closing a connection sends ``eos`` and waits up to 1 s for the
    answer.

    ``api_key`` is sent as ``Authorization: Bearer <key>`` (``None``: no credential, for the
    local speech server); it is registered with redaction and never shown by ``repr``.

    ``url`` is the ``/ws3`` endpoint or the service's root as ``trio-tts --url`` takes it
    (``http://127.0.0.1:8765`` means ``ws://127.0.0.1:8765/ws3``; http → ws, https → wss).

    Raises:
        InvalidOptions: a URL that is not ws(s):// or http(s):// with a host, or that
            carries a query; a bad limit or key.
    """

    name = "rime"
    contexts_per_connection = 1
    max_contexts: int | None = None
    keepalive_interval: float | None = None
    fatal_close_codes: frozenset[int] = FATAL_CLOSE_CODES
    cancel_expiry: float | None = None

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = DEFAULT_URL,
        max_text_chars: int = 500,
        max_session_duration: float | None = 300.0,
    ) -> None:
        register_api_key(api_key)
        endpoint = websocket_url(url, "/ws3", query=False)
        if not isinstance(max_text_chars, int) or max_text_chars < 1:
            raise InvalidOptions(f"max_text_chars: {max_text_chars!r} is not a positive int")
        if max_session_duration is not None and (
            not is_number(max_session_duration) or max_session_duration <= 0
        ):
            raise InvalidOptions(
                f"max_session_duration: {max_session_duration!r} must be positive or None"
            )
        self._api_key = api_key
        self._url = endpoint
        self.max_text_chars = max_text_chars
        self.max_session_duration: float | None = max_session_duration

    @classmethod
    def from_env(cls, url: str = DEFAULT_URL, **settings: Any) -> RimeProvider:
        """A provider keyed by ``$RIME_API_KEY`` (no credential when it is unset or empty)."""
        return cls(os.environ.get("RIME_API_KEY") or None, url=url, **settings)

    def __repr__(self) -> str:
        key = "***" if self._api_key is not None else "None"
        return (
            f"RimeProvider(api_key={key}, url={self._url!r}, "
            f"max_session_duration={self.max_session_duration})"
        )

    def default_options(self) -> RimeOptions:
        """``RimeOptions()``: arcana, speaker astra, 24 kHz, ``bySentence``."""
        return RimeOptions()

    def connection_key(self, options: RimeOptions) -> Hashable:
        """The connection URL: equal URLs may share a connection.

        Raises:
            InvalidOptions: ``options`` are not :class:`RimeOptions`, or ask for what the
                WebSocket cannot do (``reduce_latency``).
        """
        return self.url(options)

    def url(self, options: RimeOptions) -> str:
        """``<endpoint>?speaker=...&modelId=...&audioFormat=pcm&samplingRate=...&segment=...``

        Raises:
            InvalidOptions: as :meth:`connection_key`.
        """
        if not isinstance(options, RimeOptions):
            raise InvalidOptions(f"options: expected RimeOptions, got {type(options).__name__}")
        return f"{self._url}?{urllib.parse.urlencode(ws_query(options))}"

    def headers(self) -> Sequence[tuple[str, str]]:
        """``[("Authorization", "Bearer <key>")]``, or ``[]`` without a key. Never log these."""
        if self._api_key is None:
            return []
        return [("Authorization", f"Bearer {self._api_key}")]

    def new_codec(self) -> RimeCodec:
        """A fresh codec for one connection."""
        return RimeCodec()
