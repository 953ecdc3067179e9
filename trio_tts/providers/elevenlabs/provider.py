"""ElevenLabs' multi-context WebSocket as a :class:`~trio_tts.Provider`: the URL (the voice in
the path, the connection options in the query), the credential and the limits."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Hashable, Sequence
from typing import Final

from ..._core.errors import InvalidOptions, register_api_key
from ..._core.options import is_number
from ..urls import VOICE_PLACEHOLDER, voice_url_template
from .codec import ElevenLabsCodec
from .options import ElevenLabsOptions

__all__ = [
    "API_KEY_VARIABLES",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_URL",
    "ElevenLabsProvider",
]

_API_PREFIX: Final = "/v1"
_WS_PATH: Final = f"/text-to-speech/{VOICE_PLACEHOLDER}/multi-stream-input"
#: The endpoint template; ``{voice_id}`` is each context's voice.
DEFAULT_URL: Final = f"wss://api.elevenlabs.io{_API_PREFIX}{_WS_PATH}"
#: Where :meth:`ElevenLabsProvider.from_env` looks for the key, in order (the official SDK's
#: variable, then LiveKit's).
API_KEY_VARIABLES: Final = ("ELEVENLABS_API_KEY", "ELEVEN_API_KEY")
#: ElevenLabs' concurrency of the Scale and Business plans (Multilingual v2; the Flash and
#: Turbo models get twice as much; Free 2, Starter 3, Creator 5, Pro 10): the pool's default
#: cap on contexts open at once. Set yours with ``max_contexts``.
DEFAULT_CONCURRENCY: Final = 15


class ElevenLabsProvider:
    """ElevenLabs' ``multi-stream-input`` as a :class:`~trio_tts.Provider`: URL, credential,
    limits.

    Limits, each a default the pool settings can change:

    * **5 contexts per connection** (ElevenLabs' documented cap; a sixth gets the socket
      closed with 1008 ``max_active_conversations``). A slot comes back only when the server
      confirms the context is gone (``isFinal``, or the socket's end), never when the caller
      leaves, so rapid barge-ins cannot overshoot it.
    * **15 contexts at once over all connections** (``max_contexts``,
      :data:`DEFAULT_CONCURRENCY`): the account's concurrency. ElevenLabs counts concurrent
      generations per account, not sockets; lower it for smaller plans.
    * **Keep-alives** every ``keepalive_interval`` seconds (5 s): each open context that sent
      nothing since the previous round gets ElevenLabs' ``{"text": "", "context_id"}``, which
      resets its inactivity timer — so no context stays silent for two intervals, and an
      ``inactivity_timeout`` (the options') must be longer than that.
    * **1008 is not an authentication failure** here: ElevenLabs closes with 1008 for an
      invalid message, a capacity problem (``max_active_conversations``), an inactivity
      timeout and its own internal errors alike, so a 1008 is handled like any other lost
      connection (contexts without audio are moved; the backoff paces the redials), never
      remembered as a rejected credential. 401/403 at the handshake, and 4001/4003/4401/4403,
      still are.

    The connection key is the URL: the voice (in the path) and the connection options (the
    query). Contexts differing only in ``voice_settings``, ``chunk_length_schedule`` or the
    pronunciation dictionaries share a socket. Graceful closes send ``close_socket``.

    ``api_key`` goes in the ``xi-api-key`` header (``None``: no credential, for the local
    speech server); it is registered with redaction and never shown by ``repr``.

    ``url`` is the endpoint template (:data:`DEFAULT_URL`, with ``{voice_id}``), the service's
    root (``http://127.0.0.1:8765`` means ``ws://127.0.0.1:8765/v1/text-to-speech/{voice_id}/
    multi-stream-input``) or an API base such as LiveKit's ``base_url``
    (``http://127.0.0.1:8765/v1``); http → ws, https → wss.

    Raises:
        InvalidOptions: a URL that is not ws(s):// or http(s):// with a host, or that carries
            a query; a bad limit or key.
    """

    name = "elevenlabs"
    #: Sessions do not expire.
    max_session_duration: float | None = None
    fatal_close_codes: frozenset[int] = frozenset({4001, 4003, 4401, 4403})
    #: A cancel (``close_context``) is confirmed by ``isFinal``: no expiry rule.
    cancel_expiry: float | None = None

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = DEFAULT_URL,
        contexts_per_connection: int = 5,
        max_contexts: int | None = DEFAULT_CONCURRENCY,
        keepalive_interval: float | None = 5.0,
        max_text_chars: int = 1000,
    ) -> None:
        register_api_key(api_key)
        template = voice_url_template(url, _API_PREFIX, _WS_PATH)
        for name, value in (
            ("contexts_per_connection", contexts_per_connection),
            ("max_text_chars", max_text_chars),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptions(f"{name}: {value!r} is not a positive int")
        if max_contexts is not None and (
            isinstance(max_contexts, bool) or not isinstance(max_contexts, int) or max_contexts < 1
        ):
            raise InvalidOptions(f"max_contexts: {max_contexts!r} is not a positive int or None")
        if keepalive_interval is not None and (
            not is_number(keepalive_interval) or keepalive_interval <= 0
        ):
            raise InvalidOptions(
                f"keepalive_interval: {keepalive_interval!r} must be positive or None"
            )
        self._api_key = api_key
        self._template = template
        self.contexts_per_connection = contexts_per_connection
        self.max_contexts: int | None = max_contexts
        self.keepalive_interval: float | None = keepalive_interval
        self.max_text_chars = max_text_chars

    @classmethod
    def from_env(cls, url: str = DEFAULT_URL, **limits: int | float | None) -> ElevenLabsProvider:
        """A provider keyed by ``$ELEVENLABS_API_KEY`` or else ``$ELEVEN_API_KEY`` (no
        credential when both are unset or empty)."""
        key = next((os.environ[v] for v in API_KEY_VARIABLES if os.environ.get(v)), None)
        return cls(key, url=url, **limits)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        key = "***" if self._api_key is not None else "None"
        return (
            f"ElevenLabsProvider(api_key={key}, url={self._template!r}, "
            f"contexts_per_connection={self.contexts_per_connection}, "
            f"max_contexts={self.max_contexts}, keepalive_interval={self.keepalive_interval})"
        )

    def default_options(self) -> ElevenLabsOptions:
        """``ElevenLabsOptions()``: LiveKit's default voice, ``eleven_turbo_v2_5``, 24 kHz PCM."""
        return ElevenLabsOptions()

    def connection_key(self, options: ElevenLabsOptions) -> Hashable:
        """The connection URL: contexts with equal URLs may share a connection.

        Raises:
            InvalidOptions: as :meth:`url`.
        """
        return self.url(options)

    def url(self, options: ElevenLabsOptions) -> str:
        """``.../text-to-speech/<voice_id>/multi-stream-input?model_id=...&output_format=...``

        Raises:
            InvalidOptions: ``options`` are not :class:`ElevenLabsOptions`, or their
                ``inactivity_timeout`` is not longer than two keep-alive intervals (a context
                could then time out between two keep-alives).
        """
        if not isinstance(options, ElevenLabsOptions):
            raise InvalidOptions(
                f"options: expected ElevenLabsOptions, got {type(options).__name__}"
            )
        interval = self.keepalive_interval
        if interval is not None and options.inactivity_timeout <= 2 * interval:
            raise InvalidOptions(
                f"inactivity_timeout: {options.inactivity_timeout} s is not longer than two"
                f" keep-alive intervals ({interval:g} s each); raise it or lower the"
                " provider's keepalive_interval"
            )
        voice = urllib.parse.quote(options.voice_id, safe="")
        base = self._template.replace(VOICE_PLACEHOLDER, voice)
        return f"{base}?{urllib.parse.urlencode(options.query())}"

    def headers(self) -> Sequence[tuple[str, str]]:
        """``[("xi-api-key", "<key>")]``, or ``[]`` without a key. Never log these."""
        if self._api_key is None:
            return []
        return [("xi-api-key", self._api_key)]

    def new_codec(self) -> ElevenLabsCodec:
        """A fresh codec for one connection."""
        return ElevenLabsCodec()
