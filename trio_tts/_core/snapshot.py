"""What the pool reports about itself: counters (:class:`PoolStatistics`, like trio's
``statistics()``) and a full picture of what it holds (:class:`PoolSnapshot`, from
:meth:`Pool.inspect`). Frozen values; building them never changes the pool."""

from __future__ import annotations

import attrs

from .context import ContextState

__all__ = ["ConnectionSnapshot", "ContextSnapshot", "PoolSnapshot", "PoolStatistics"]


@attrs.frozen
class PoolStatistics:
    """A snapshot of the pool, like trio's ``statistics()``."""

    connections: int
    connections_connecting: int
    connections_open: int
    connections_draining: int
    contexts_in_use: int
    contexts_closing: int
    waiting: int
    max_connections: int
    contexts_per_connection: int
    connections_opened: int
    connections_failed: int
    contexts_opened: int
    contexts_moved: int
    #: Events for a context the connection no longer hosts (counted, never delivered).
    stray_events: int = 0
    #: Consecutive connection failures (the reconnect backoff's exponent).
    connect_failures: int = 0
    #: Contexts open at once over all connections (the pool's cap; 0: not reported).
    max_contexts: int = 0


@attrs.frozen
class ConnectionSnapshot:
    """One connection in :meth:`Pool.inspect`."""

    id: int
    #: "connecting", "open", "draining" (the allocator's state) or "closing" (no longer
    #: counted as capacity; its socket is being closed).
    state: str
    #: Contexts holding a slot on it.
    contexts: tuple[str, ...]
    #: Tasks in the connection's own nursery.
    tasks: tuple[str, ...]
    frames_sent: int
    frames_received: int
    #: Flow control (``PoolSettings.context_pause_bytes``): reading is paused now, and how
    #: many times it was.
    paused: bool = False
    pauses: int = 0


@attrs.frozen
class ContextSnapshot:
    """One context the pool still holds something for, in :meth:`Pool.inspect`."""

    id: str
    state: ContextState
    #: The connection holding its slot (None while waiting or moving).
    connection: int | None
    moving: bool
    #: When the close (or cancel) was sent, if it was.
    closing_since: float | None


@attrs.frozen
class PoolSnapshot:
    """Everything the pool holds, for debugging and leak checks (``trio_tts.testing``)."""

    closed: bool
    connections: tuple[ConnectionSnapshot, ...]
    contexts: tuple[ContextSnapshot, ...]
    #: Callers queued in the allocator / placed on a connection still connecting / inside
    #: ``open_context`` before their slot.
    waiting: int
    reserved: int
    entering: int
    #: Leases of the local quota held.
    leases_held: int
    #: Tasks in the pool's own nursery.
    tasks: tuple[str, ...]
