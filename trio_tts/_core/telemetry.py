"""What the pool tells an observer (metrics, traces, a live view): a small interface whose
default does nothing.

Think of a flight recorder wired to a few switches in the cockpit, not to every rivet: the
pool calls its :class:`Telemetry` at a handful of points in a context's and a connection's
life — never per audio chunk — and the default object's methods are empty, so a pool
without telemetry pays one no-op call at each of those points and nothing else::

    Telemetry.open(pool) -> PoolProbe                      once, when the pool is built
      PoolProbe.context_queued(id, options) -> ContextProbe  open_context() was entered
        ContextProbe.placed(conn_id)                       it holds a slot on an open connection
        ContextProbe.first_audio()                         its first audio chunk arrived
        ContextProbe.flushed()                             a FlushCompleted arrived
        ContextProbe.moved(error)                          its connection died before audio
        ContextProbe.ended(state, error, audio_bytes)      its slot was released (once)
      PoolProbe.dialling(conn_id, url, parent) -> HandshakeProbe   a connection actor starts
        HandshakeProbe.started() / ended(error)            the WebSocket handshake itself
      PoolProbe.connection_ended(conn_id, error)           a connection is gone
      PoolProbe.closed()                                   the pool's tasks have ended

Every method is synchronous, runs on the pool's trio thread inside its state transitions, and
must neither block nor raise. ``parent`` is the probe of the context whose wait started the
dial (None for a prewarm or a keep-alive refresh). Whatever else an observer wants (counters,
gauges) it reads from ``pool.statistics()`` and ``pool.inspect()``.

The OpenTelemetry implementation lives outside the core (``trio_tts.otel``); the local JSON
endpoint behind ``trio-tts top`` is :mod:`trio_tts._core.live`. :func:`open_probe` fans one
pool's events out to several observers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .options import Options

if TYPE_CHECKING:
    from .context import ContextState
    from .provider import Provider
    from .snapshot import PoolSnapshot, PoolStatistics

__all__ = [
    "NO_CONTEXT_PROBE",
    "NO_HANDSHAKE_PROBE",
    "NO_POOL_PROBE",
    "ContextProbe",
    "HandshakeProbe",
    "ObservedPool",
    "PoolProbe",
    "Telemetry",
    "open_probe",
]


class ObservedPool(Protocol):
    """What an observer may read of the pool (a :class:`~trio_tts.Pool` is one)."""

    @property
    def provider(self) -> Provider[Any]: ...

    def statistics(self) -> PoolStatistics: ...

    def inspect(self) -> PoolSnapshot: ...


class ContextProbe:
    """Observes one context, from ``open_context()`` to the release of its slot. Override
    what you need; every method here does nothing."""

    __slots__ = ()

    def placed(self, conn_id: int) -> None:
        """It holds a slot on open connection ``conn_id`` (again after a move)."""

    def first_audio(self) -> None:
        """Its first audio chunk arrived."""

    def flushed(self) -> None:
        """A ``FlushCompleted`` arrived for it."""

    def moved(self, error: BaseException) -> None:
        """Its connection failed (``error``) before any audio: it queues for another one."""

    def ended(self, state: ContextState, error: BaseException | None, audio_bytes: int) -> None:
        """Its slot and leases were given back; called once. ``state`` is the caller-visible
        state then (``OPEN`` when the caller stopped waiting before a slot), ``error`` what
        failed it, ``audio_bytes`` the audio received."""


class HandshakeProbe:
    """Observes one connection's WebSocket handshake. Every method here does nothing."""

    __slots__ = ()

    def started(self) -> None:
        """The handshake begins (the connection passed the backoff and the handshake limit)."""

    def ended(self, error: BaseException | None) -> None:
        """It succeeded (``None``), was refused or failed (a ``ConnectionLost``), or was
        cancelled (``trio.Cancelled``)."""


class PoolProbe:
    """Observes one pool. Every method here does nothing."""

    __slots__ = ()

    def context_queued(self, context_id: str, options: Options) -> ContextProbe:
        """``open_context()`` was entered (in the caller's task) for a context with
        ``options``, to be known as ``context_id``."""
        return NO_CONTEXT_PROBE

    def dialling(self, conn_id: int, url: str, parent: ContextProbe | None) -> HandshakeProbe:
        """Connection ``conn_id`` to ``url`` was started (its handshake may wait for the
        reconnect backoff); ``parent``: the context whose wait started it."""
        return NO_HANDSHAKE_PROBE

    def connection_ended(self, conn_id: int, error: BaseException | None) -> None:
        """Connection ``conn_id`` is gone (``None``: closed on request)."""

    def closed(self) -> None:
        """The pool has closed and its tasks have ended."""


class Telemetry:
    """An observer of pools: the ``telemetry=`` argument of :func:`~trio_tts.open_pool`.

    This base class observes nothing; ``trio_tts.otel.OpenTelemetry`` exports OpenTelemetry
    metrics and traces. An implementation overrides :meth:`open` and returns its own
    :class:`PoolProbe`, whose methods (see the module's table) must not block or raise. One
    :class:`Telemetry` may observe several pools.
    """

    __slots__ = ()

    def open(self, pool: ObservedPool) -> PoolProbe:
        """Start observing ``pool`` (called once, when it is built)."""
        return NO_POOL_PROBE


NO_CONTEXT_PROBE = ContextProbe()
NO_HANDSHAKE_PROBE = HandshakeProbe()
NO_POOL_PROBE = PoolProbe()


# -- several observers at once ---------------------------------------------------------------


def open_probe(pool: ObservedPool, telemetries: Sequence[Telemetry | None]) -> PoolProbe:
    """One probe for ``pool`` that reports to every telemetry given (``None``s skipped)."""
    probes = [t.open(pool) for t in telemetries if t is not None]
    probes = [p for p in probes if p is not NO_POOL_PROBE]
    if not probes:
        return NO_POOL_PROBE
    return probes[0] if len(probes) == 1 else _FanoutPool(probes)


class _FanoutContext(ContextProbe):
    __slots__ = ("probes",)

    def __init__(self, probes: list[ContextProbe]) -> None:
        self.probes = probes

    def placed(self, conn_id: int) -> None:
        for p in self.probes:
            p.placed(conn_id)

    def first_audio(self) -> None:
        for p in self.probes:
            p.first_audio()

    def flushed(self) -> None:
        for p in self.probes:
            p.flushed()

    def moved(self, error: BaseException) -> None:
        for p in self.probes:
            p.moved(error)

    def ended(self, state: ContextState, error: BaseException | None, audio_bytes: int) -> None:
        for p in self.probes:
            p.ended(state, error, audio_bytes)


class _FanoutHandshake(HandshakeProbe):
    __slots__ = ("probes",)

    def __init__(self, probes: list[HandshakeProbe]) -> None:
        self.probes = probes

    def started(self) -> None:
        for p in self.probes:
            p.started()

    def ended(self, error: BaseException | None) -> None:
        for p in self.probes:
            p.ended(error)


class _FanoutPool(PoolProbe):
    __slots__ = ("probes",)

    def __init__(self, probes: list[PoolProbe]) -> None:
        self.probes = probes

    def context_queued(self, context_id: str, options: Options) -> ContextProbe:
        return _FanoutContext([p.context_queued(context_id, options) for p in self.probes])

    def dialling(self, conn_id: int, url: str, parent: ContextProbe | None) -> HandshakeProbe:
        parents: list[ContextProbe | None] = (
            list(parent.probes) if isinstance(parent, _FanoutContext) else [None] * len(self.probes)
        )
        return _FanoutHandshake(
            [p.dialling(conn_id, url, up) for p, up in zip(self.probes, parents, strict=True)]
        )

    def connection_ended(self, conn_id: int, error: BaseException | None) -> None:
        for p in self.probes:
            p.connection_ended(conn_id, error)

    def closed(self) -> None:
        for p in self.probes:
            p.closed()
