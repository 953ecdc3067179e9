"""The supervisor's allocation core: one synchronous state machine, no awaits, no I/O.

Like httpcore's pool, every decision is a synchronous transition that returns the I/O to do
(:class:`Open`, :class:`Close`, :class:`Ready`, :class:`Fail`), which the pool then runs. Because
nothing here awaits, no other task can observe a half-made decision: there is no lock to hold
across I/O, so no head-of-line blocking, and no event to miss, so no lost wakeup.

State
-----
*Connections* have a state (:class:`ConnState`) and a set of *slots*, one per context placed on
them — reserved while the connection is still connecting, active while the context streams,
and still taken while a close awaits the server's ``contextClosed``. A connection that failed or
closed is removed at once: it never counts as capacity.

*Requests* wait in one FIFO queue. :meth:`Allocator._dispatch` walks it in order and places
each request on the OPEN connection of its key with the fewest slots in use (spreading load
over warm sockets), else on a CONNECTING one with room, else opens a new connection if fewer
than ``max_connections`` are live, else evicts an idle connection of another key. A request
that cannot be placed keeps its place; requests behind it with another key may still be placed
(no key blocks another), and requests of the same key never overtake each other.

Time is passed in (``now``), so the whole machine is tested without a clock or a network.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Hashable
from typing import Any

import attrs

from .errors import PoolClosed

__all__ = [
    "Action",
    "Allocator",
    "Close",
    "ConnRecord",
    "ConnState",
    "Fail",
    "Open",
    "Ready",
    "Request",
]


class ConnState(enum.Enum):
    #: The handshake is in progress; requests may be reserved on it.
    CONNECTING = "connecting"
    #: Ready; accepts contexts while it has free slots.
    OPEN = "open"
    #: Retired (session expired, options changed, stale close): takes no new contexts and is
    #: closed once its last slot is released.
    DRAINING = "draining"


@attrs.define(eq=False)
class ConnRecord:
    """What the allocator knows of one live connection."""

    id: int
    key: Hashable
    capacity: int
    state: ConnState = ConnState.CONNECTING
    slots: set[str] = attrs.field(factory=set)
    #: When the last slot was released (or the connection opened); None while in use.
    idle_since: float | None = None
    #: When the connection was last handed a context (or opened): drives session expiry.
    refreshed_at: float = 0.0
    #: When the handshake succeeded (None while connecting).
    opened_at: float | None = None
    #: True once audio arrived on it: the service works (the reconnect policy's "success").
    proven: bool = False
    #: True once a context was placed on it.
    used: bool = False

    @property
    def free(self) -> int:
        return self.capacity - len(self.slots)


@attrs.define(eq=False)
class Request:
    """One caller waiting for a slot. ``conn_id`` is set once the request is placed."""

    key: Hashable
    context_id: str
    conn_id: int | None = None
    #: Opaque value for the pool (the waiting task's event, the options...).
    payload: Any = None


@attrs.frozen
class Open:
    """Start a connection actor for ``key`` with allocator id ``conn_id``."""

    conn_id: int
    key: Hashable


@attrs.frozen
class Close:
    """Close connection ``conn_id`` gracefully (it holds no slot)."""

    conn_id: int


@attrs.frozen
class Ready:
    """``request`` holds a slot on an OPEN connection: wake its task."""

    request: Request


@attrs.frozen
class Fail:
    """``request`` cannot be served: wake its task with ``error``."""

    request: Request
    error: BaseException


Action = Open | Close | Ready | Fail


class Allocator:
    """Places contexts on connections within ``max_connections`` × ``capacity`` slots.

    Args:
        max_connections: live (connecting, open or draining) connections allowed at once.
        capacity: contexts allowed on one connection.
        min_connections: idle OPEN connections :meth:`sweep` keeps warm (it never opens
            connections by itself: :meth:`ensure_open` does, for ``prewarm``).
        idle_timeout: an OPEN connection with no slot for this long is closed (unless it is
            one of the warm ones).
        max_session_duration: a connection not handed a context for this long is expired: never
            handed out again, closed once empty (None: never).
        refresh_on_use: placing a context on a connection restarts its session clock (Rime's
            ``mark_refreshed_on_get``); otherwise the clock runs from the open.
        keepalive_refresh: a warm idle connection idle this long is replaced by a fresh one so
            the server's inactivity close (Inworld: 10 min) never hits a kept connection.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        capacity: int,
        min_connections: int = 0,
        idle_timeout: float = 300.0,
        max_session_duration: float | None = None,
        refresh_on_use: bool = True,
        keepalive_refresh: float | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.capacity = capacity
        self.min_connections = min_connections
        self.idle_timeout = idle_timeout
        self.max_session_duration = max_session_duration
        self.refresh_on_use = refresh_on_use
        self.keepalive_refresh = keepalive_refresh
        self.connections: dict[int, ConnRecord] = {}
        self.waiting: list[Request] = []
        #: The key new warm connections use (the pool's default options).
        self.default_key: Hashable = None
        self.closed = False
        self._ids = itertools.count(1)
        # Requests placed on a connection that is still connecting, in placement order.
        self._reserved: dict[Request, None] = {}

    # -- queries ---------------------------------------------------------------------------

    def slots_in_use(self) -> int:
        return sum(len(c.slots) for c in self.connections.values())

    def count(self, state: ConnState) -> int:
        return sum(1 for c in self.connections.values() if c.state is state)

    def holds(self, conn_id: int, context_id: str) -> bool:
        """Is a slot on live connection ``conn_id`` held for ``context_id``?"""
        conn = self.connections.get(conn_id)
        return conn is not None and context_id in conn.slots

    def reserved_count(self) -> int:
        """Requests placed on connections that are still connecting."""
        return len(self._reserved)

    def mark_proven(self, conn_id: int) -> None:
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.proven = True

    def _expired(self, conn: ConnRecord, now: float) -> bool:
        limit = self.max_session_duration
        return limit is not None and now - conn.refreshed_at > limit

    # -- transitions -----------------------------------------------------------------------

    def request(self, req: Request, now: float, *, front: bool = False) -> list[Action]:
        """Queue ``req`` (at the front for a context being moved off a failed connection)."""
        if self.closed:
            return [Fail(req, _pool_closed())]
        if front:
            self.waiting.insert(0, req)
        else:
            self.waiting.append(req)
        return self._dispatch(now)

    def withdraw(self, req: Request, now: float) -> list[Action]:
        """The caller gave up (cancelled, timed out): forget a waiting or reserved request.

        A request already placed releases its slot (its context never reached the server).
        """
        if req in self.waiting:
            self.waiting.remove(req)
            return []
        self._reserved.pop(req, None)
        if req.conn_id is not None:
            return self.release(req.conn_id, req.context_id, now)
        return []

    def connection_opened(self, conn_id: int, now: float) -> list[Action]:
        conn = self.connections.get(conn_id)
        if conn is None or conn.state is not ConnState.CONNECTING:
            return []
        conn.state = ConnState.OPEN
        conn.refreshed_at = now
        conn.opened_at = now
        if not conn.slots:
            conn.idle_since = now
        actions: list[Action] = [Ready(r) for r in self._reserved_on(conn_id)]
        for action in actions:
            assert isinstance(action, Ready)
            self._reserved.pop(action.request, None)
        return actions + self._dispatch(now)

    def connection_failed(
        self, conn_id: int, error: BaseException, now: float, *, fatal: bool = False
    ) -> tuple[list[str], list[Action]]:
        """Connection ``conn_id`` is gone (handshake failed, socket dropped, closed).

        Its slots are freed at once (a dead connection holds no capacity). Requests reserved
        on it while it was connecting fail with ``error``; with ``fatal`` (a 401/403 that no
        retry can fix) every queued request of the same key fails too, so waiters fail fast
        instead of looping on handshakes.

        Returns:
            The ids of the contexts that were active on it (the pool decides whether each is
            failed or moved) and the actions to run.
        """
        conn = self.connections.pop(conn_id, None)
        if conn is None:
            return [], []
        reserved = self._reserved_on(conn_id)
        for req in reserved:
            self._reserved.pop(req, None)
        reserved_ids = {r.context_id for r in reserved}
        active = [cid for cid in conn.slots if cid not in reserved_ids]
        actions: list[Action] = [Fail(r, error) for r in reserved]
        if fatal:
            doomed = [r for r in self.waiting if r.key == conn.key]
            self.waiting = [r for r in self.waiting if r.key != conn.key]
            actions += [Fail(r, error) for r in doomed]
        return active, actions + self._dispatch(now)

    def release(self, conn_id: int, context_id: str, now: float) -> list[Action]:
        """The server confirmed ``context_id`` closed (or its stale-close timer fired)."""
        conn = self.connections.get(conn_id)
        if conn is None or context_id not in conn.slots:
            return []
        conn.slots.discard(context_id)
        actions: list[Action] = []
        if not conn.slots:
            conn.idle_since = now
            if conn.state is ConnState.DRAINING or self.closed or self._expired(conn, now):
                del self.connections[conn_id]
                actions.append(Close(conn_id))
        return actions + self._dispatch(now)

    def retire(self, conn_id: int, now: float) -> list[Action]:
        """Take ``conn_id`` out of service: no new contexts; closed when empty."""
        conn = self.connections.get(conn_id)
        if conn is None:
            return []
        if conn.state is ConnState.CONNECTING:
            # Nothing streams on it yet: move its reservations back to the queue front.
            reserved = self._reserved_on(conn_id)
            for req in reserved:
                self._reserved.pop(req, None)
                req.conn_id = None
            self.waiting[:0] = reserved
            del self.connections[conn_id]
            return [Close(conn_id), *self._dispatch(now)]
        conn.state = ConnState.DRAINING
        if not conn.slots:
            del self.connections[conn_id]
            return [Close(conn_id), *self._dispatch(now)]
        return self._dispatch(now)

    def retire_key(self, key: Hashable, now: float) -> list[Action]:
        """Retire every connection not of ``key`` (options changed: a new URL)."""
        actions: list[Action] = []
        for conn_id in [c.id for c in self.connections.values() if c.key != key]:
            actions += self.retire(conn_id, now)
        return actions

    def sweep(self, now: float) -> list[Action]:
        """Periodic housekeeping: expire sessions, close idle connections, refresh warm ones.

        Idle OPEN connections close after ``idle_timeout``, except the ``min_connections``
        most recently used, which are kept warm; a warm one idle past ``keepalive_refresh``
        is replaced by a fresh connection (open first, then close).
        """
        actions: list[Action] = []
        for conn in list(self.connections.values()):
            if conn.state is ConnState.OPEN and self._expired(conn, now):
                actions += self.retire(conn.id, now)
        idle = [c for c in self.connections.values() if c.state is ConnState.OPEN and not c.slots]
        idle.sort(key=lambda c: -(c.idle_since or 0.0))  # the most recently used stay warm
        busy = sum(1 for c in self.connections.values() if c.state is not ConnState.DRAINING)
        keep_warm = max(0, self.min_connections - (busy - len(idle)))
        refresh = self.keepalive_refresh
        for rank, conn in enumerate(idle):
            idle_for = 0.0 if conn.idle_since is None else now - conn.idle_since
            if rank < keep_warm:
                if refresh is not None and idle_for >= refresh and not self.closed:
                    del self.connections[conn.id]
                    actions += [self._open(conn.key, now), Close(conn.id)]
            elif idle_for >= self.idle_timeout:
                actions += self.retire(conn.id, now)
        return actions

    def ensure_open(self, n: int, now: float, key: Hashable = None) -> list[Action]:
        """Open connections until ``n`` of ``key`` are live (capped by ``max_connections``)."""
        if self.closed:
            return []
        key = self.default_key if key is None else key
        actions: list[Action] = []
        live = sum(
            1
            for c in self.connections.values()
            if c.key == key and c.state is not ConnState.DRAINING
        )
        while live < n and len(self.connections) < self.max_connections:
            actions.append(self._open(key, now))
            live += 1
        return actions

    def fail_waiting(self, error: BaseException) -> list[Action]:
        """Fail every queued (not yet placed) request with ``error`` (the circuit opened)."""
        doomed, self.waiting = self.waiting, []
        return [Fail(r, error) for r in doomed]

    def close(self) -> list[Action]:
        """No new requests: waiting ones fail; empty connections close; busy ones drain."""
        self.closed = True
        actions: list[Action] = [Fail(r, _pool_closed()) for r in self.waiting]
        self.waiting.clear()
        for conn in list(self.connections.values()):
            if conn.state is ConnState.CONNECTING:
                for req in self._reserved_on(conn.id):
                    self._reserved.pop(req, None)
                    actions.append(Fail(req, _pool_closed()))
                conn.slots.clear()
            if not conn.slots:
                del self.connections[conn.id]
                actions.append(Close(conn.id))
            else:
                conn.state = ConnState.DRAINING
        return actions

    # -- internals -------------------------------------------------------------------------

    def _reserved_on(self, conn_id: int) -> list[Request]:
        return [r for r in self._reserved if r.conn_id == conn_id]

    def _open(self, key: Hashable, now: float) -> Open:
        conn = ConnRecord(id=next(self._ids), key=key, capacity=self.capacity, refreshed_at=now)
        self.connections[conn.id] = conn
        return Open(conn.id, key)

    def _place(self, req: Request, conn: ConnRecord, now: float) -> list[Action]:
        conn.slots.add(req.context_id)
        conn.used = True
        conn.idle_since = None
        if self.refresh_on_use:
            conn.refreshed_at = now
        req.conn_id = conn.id
        if conn.state is ConnState.OPEN:
            return [Ready(req)]
        self._reserved[req] = None
        return []

    def _dispatch(self, now: float) -> list[Action]:
        actions: list[Action] = []
        blocked: set[Hashable] = set()
        still_waiting: list[Request] = []
        for req in self.waiting:
            if req.key in blocked:
                still_waiting.append(req)
                continue
            target = self._find_slot(req.key, now)
            if target is None and len(self.connections) >= self.max_connections:
                victim = next(
                    (
                        c
                        for c in self.connections.values()
                        if c.key != req.key and c.state is ConnState.OPEN and not c.slots
                    ),
                    None,
                )
                if victim is not None:
                    del self.connections[victim.id]
                    actions.append(Close(victim.id))
            if target is None and len(self.connections) < self.max_connections:
                opened = self._open(req.key, now)
                actions.append(opened)
                target = self.connections[opened.conn_id]
            if target is None:
                blocked.add(req.key)
                still_waiting.append(req)
                continue
            actions += self._place(req, target, now)
        self.waiting = still_waiting
        return actions

    def _find_slot(self, key: Hashable, now: float) -> ConnRecord | None:
        best: ConnRecord | None = None
        for conn in self.connections.values():
            if conn.key != key or conn.free <= 0 or conn.state is ConnState.DRAINING:
                continue
            if conn.state is ConnState.OPEN and self._expired(conn, now):
                continue  # an expired session is never handed out; sweep retires it
            rank = (conn.state is not ConnState.OPEN, len(conn.slots), conn.id)
            if best is None or rank < (best.state is not ConnState.OPEN, len(best.slots), best.id):
                best = conn
        return best


def _pool_closed() -> BaseException:
    return PoolClosed("the pool is closed")
