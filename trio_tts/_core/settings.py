"""The pool's settings: one frozen, validated value (:class:`PoolSettings`).

``open_pool(provider, max_connections=20)`` and ``open_pool(provider, PoolSettings(...))`` are
the same call: keyword settings are typed by :class:`PoolSettingsKwargs`, so ``mypy`` rejects a
misspelled one, and at run time :meth:`PoolSettings.build` raises :class:`InvalidOptions`
naming it (with the closest valid name) before any network I/O.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal, TypedDict

import attrs

from .errors import InvalidOptions

__all__ = ["PoolSettings", "PoolSettingsKwargs", "TransportName"]

#: The WebSocket implementations the pool can use (see the README's transport table).
TransportName = Literal["websockets", "trio-websocket"]

MiB = 1024 * 1024


def _positive(integer: bool = False, allow_none: bool = False) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and allow_none:
            return
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            what = "integer" if integer else "number"
            raise InvalidOptions(f"{attribute.name}: {value!r} must be a positive {what}")

    return check


def _provider_or_positive(integer: bool = False) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value != "provider":
            _positive(integer=integer, allow_none=True)(instance, attribute, value)

    return check


_session = _provider_or_positive()


def _transport(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("websockets", "trio-websocket"):
        raise InvalidOptions(
            f"transport: {value!r} must be 'websockets' (the default) or 'trio-websocket'"
        )


def _port(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidOptions(f"{attribute.name}: {value!r} must be a port number 0..65535 or None")


def _flag(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidOptions(f"{attribute.name}: {value!r} must be True or False")


@attrs.frozen(kw_only=True)
class PoolSettings:
    """Every tunable of a pool. Frozen; each field is checked when the value is built.

    Raises:
        InvalidOptions: a field is out of range (on construction), or an unknown name was
            passed to :meth:`build`.
    """

    #: Live WebSockets allowed at once (Inworld: 20 per account).
    max_connections: int = attrs.field(default=20, validator=_positive(integer=True))
    #: Contexts on one WebSocket (None: the provider's — Inworld 5, Rime 1).
    contexts_per_connection: int | None = attrs.field(
        default=None, validator=_positive(integer=True, allow_none=True)
    )
    #: Contexts open at once over all connections ("provider": the provider's — ElevenLabs
    #: 15, its account concurrency; Inworld and Rime none; None: no cap beyond
    #: ``max_connections`` × ``contexts_per_connection``).
    max_contexts: int | Literal["provider"] | None = attrs.field(
        default="provider", validator=_provider_or_positive(integer=True)
    )
    #: Idle connections kept warm (``prewarm()`` opens them).
    min_connections: int = 1
    #: An idle connection beyond the warm ones closes after this long (seconds).
    idle_timeout: float = attrs.field(default=300.0, validator=_positive())
    #: A warm idle connection is replaced after this long (before the server's idle close).
    keepalive_refresh: float | None = attrs.field(
        default=540.0, validator=_positive(allow_none=True)
    )
    #: Session lifetime ("provider": the provider's — Inworld none, Rime 300 s; None: never).
    max_session_duration: float | Literal["provider"] | None = attrs.field(
        default="provider", validator=_session
    )
    #: Placing a context on a connection restarts its session clock.
    refresh_on_use: bool = attrs.field(default=True, validator=_flag)
    #: A closing context silent this long (no frame from the server) gives its slot back and
    #: retires its connection (the server's count is unknown).
    stale_close_timeout: float = attrs.field(default=120.0, validator=_positive())
    #: TCP + TLS + HTTP upgrade, per connection attempt.
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive())
    #: Ping period (None: no heartbeat) and how long a pong may take.
    heartbeat_interval: float | None = attrs.field(
        default=20.0, validator=_positive(allow_none=True)
    )
    heartbeat_timeout: float = attrs.field(default=10.0, validator=_positive())
    #: Failed connection attempts a waiting ``open_context`` rides through (each paced by
    #: the pool's backoff) before it raises the last connect error.
    connect_attempts: int = attrs.field(default=3, validator=_positive(integer=True))
    #: Connections a context that got no audio yet is moved across before it fails.
    move_attempts: int = attrs.field(default=3, validator=_positive(integer=True))
    #: Handshakes in flight at once. A cold start that needs N connections waits about
    #: N / this many handshake round trips for the last of them (4 made a first wave of 100
    #: contexts wait five rounds), so it is close to the providers' connection caps.
    max_concurrent_handshakes: int = attrs.field(default=16, validator=_positive(integer=True))
    #: A context's unread backlog, in events and in bytes of audio; past either bound the
    #: context (only it) fails with ``SlowConsumer``.
    context_buffer: int = attrs.field(default=4096, validator=_positive(integer=True))
    context_buffer_bytes: int = attrs.field(default=2 * MiB, validator=_positive(integer=True))
    #: Flow control: a context with this many bytes of audio unread is *backlogged*; while
    #: every context on a connection is backlogged the pool stops reading that socket (the
    #: audio waits in the kernel and at the server, not in this process), and reads again
    #: as soon as one of them is read down below half of it, ends, or a new context joins.
    #: One slow consumer never holds up the others on its connection. None: always read.
    context_pause_bytes: int | None = attrs.field(
        default=128 * 1024, validator=_positive(integer=True, allow_none=True)
    )
    #: ``aclose()``: how long in-flight contexts may finish before they fail.
    close_timeout: float = attrs.field(default=10.0, validator=_positive())
    #: How long one socket's closing handshake may take (after which it is dropped).
    socket_close_timeout: float = attrs.field(default=2.0, validator=_positive())
    #: Housekeeping period (idle, expiry, stale closes).
    sweep_interval: float = attrs.field(default=1.0, validator=_positive())
    #: Largest WebSocket message accepted; a larger one closes the socket with 1009.
    max_message_size: int = attrs.field(default=1 * MiB, validator=_positive(integer=True))
    #: The pool-wide reconnect backoff: jittered, doubling from ``backoff_base`` up to
    #: ``backoff_max`` seconds per consecutive connection failure.
    backoff_base: float = attrs.field(default=0.25, validator=_positive())
    backoff_max: float = attrs.field(default=5.0, validator=_positive())
    #: Consecutive failures that open the circuit: callers then fail at once with the last
    #: cause until the backoff delay has passed (then one trial connection).
    circuit_threshold: int = attrs.field(default=5, validator=_positive(integer=True))
    #: The longest ``Retry-After`` honoured (seconds).
    retry_after_max: float = attrs.field(default=30.0, validator=_positive())
    #: How long a 401/403 (or a fatal close code) is remembered for the credential: calls
    #: in that time fail at once. ``update_options`` or ``forget_rejection()`` clears it.
    auth_failure_cooldown: float = attrs.field(default=60.0, validator=_positive())
    #: The WebSocket implementation.
    transport: TransportName = attrs.field(default="websockets", validator=_transport)
    #: Serve the pool's live view (JSON: statistics, connections, time to first audio) on
    #: ``127.0.0.1:<port>`` for ``trio-tts top`` (0: a free port, see ``Pool.metrics_url``;
    #: None: no endpoint).
    metrics_port: int | None = attrs.field(default=None, validator=_port)

    def __attrs_post_init__(self) -> None:
        if (
            isinstance(self.min_connections, bool)
            or not isinstance(self.min_connections, int)
            or not 0 <= self.min_connections <= self.max_connections
        ):
            raise InvalidOptions(
                f"min_connections: {self.min_connections!r} must be in 0..max_connections"
            )

    @classmethod
    def build(cls, base: PoolSettings | None = None, /, **changes: Any) -> PoolSettings:
        """``base`` (default: all defaults) with ``changes``; unknown names raise
        :class:`InvalidOptions` naming the closest valid one."""
        names = attrs.fields_dict(cls)
        for name in changes:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise InvalidOptions(f"unknown pool setting {name!r}{hint}")
        if base is None:
            return cls(**changes)
        return attrs.evolve(base, **changes)


class PoolSettingsKwargs(TypedDict, total=False):
    """:class:`PoolSettings`' fields as keyword arguments (``**kwargs: Unpack[...]``)."""

    max_connections: int
    contexts_per_connection: int | None
    max_contexts: int | Literal["provider"] | None
    min_connections: int
    idle_timeout: float
    keepalive_refresh: float | None
    max_session_duration: float | Literal["provider"] | None
    refresh_on_use: bool
    stale_close_timeout: float
    handshake_timeout: float
    heartbeat_interval: float | None
    heartbeat_timeout: float
    connect_attempts: int
    move_attempts: int
    max_concurrent_handshakes: int
    context_buffer: int
    context_buffer_bytes: int
    context_pause_bytes: int | None
    close_timeout: float
    socket_close_timeout: float
    sweep_interval: float
    max_message_size: int
    backoff_base: float
    backoff_max: float
    circuit_threshold: int
    retry_after_max: float
    auth_failure_cooldown: float
    transport: TransportName
    metrics_port: int | None
