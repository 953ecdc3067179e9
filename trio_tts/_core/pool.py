"""The supervisor: owns the connection actors and hands out contexts.

Entry is two FIFO gates. A :class:`~trio_tts.Quota` lease (in-process ``CapacityLimiter`` by
default, sized ``max_connections × contexts_per_connection``) admits a caller; the
synchronous :class:`~trio_tts._allocator.Allocator` then places it on a connection with a free
slot, or starts a new connection. Every allocator decision returns the I/O to do, which
:meth:`Pool._run` starts without awaiting — the pool holds no lock across I/O.

A slot (and its lease) comes back only when the server confirms the context closed, when the
connection carrying it dies (a dead connection holds no capacity), or when the stale-close
timer fires (then the connection is retired too: its server-side count is unknown).

A context whose connection fails before any audio arrived is moved: it queues again at the
front, after a jittered backoff, and its commands are replayed on the new connection. After
audio started, the failure reaches the caller as :class:`~trio_tts.ConnectionLost`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any, Generic, Literal

import attrs
import trio

from .allocator import Allocator, Close, ConnState, Fail, Open, Ready, Request
from .connection import ConnectionActor, ConnectionSettings, TransportFactory
from .context import Context, ContextState
from .errors import (
    CapacityTimeout,
    ConnectionLost,
    ContextFailed,
    InvalidOptions,
    PoolClosed,
    TTSError,
)
from .provider import OptionsT, Provider
from .quota import Lease, LocalQuota, Quota

__all__ = ["Pool", "PoolStatistics", "open_pool"]

logger = logging.getLogger("trio_tts.pool")


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


@attrs.define(eq=False)
class _Waiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    error: BaseException | None = None

    def wake(self, error: BaseException | None = None) -> None:
        self.error = error
        self.event.set()


def _positive(name: str, value: object, *, allow_none: bool = False, integer: bool = False) -> None:
    if value is None and allow_none:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise InvalidOptions(
            f"{name}: {value!r} must be a positive {'integer' if integer else 'number'}"
        )


class Pool(Generic[OptionsT]):
    """A supervised pool of provider connections. Create it with :func:`open_pool`.

    Generic in the provider's options class (``Pool[VoiceOptions]`` for Inworld,
    ``Pool[RimeOptions]`` for Rime); the pool itself never looks inside the options.

    Session expiry (``max_session_duration``, Rime's ``mark_refreshed_on_get``): a connection's
    session clock starts when it opens and, with ``refresh_on_use`` (the default), restarts
    each time a context is *placed* on it — not when the context ends. A connection whose
    clock shows more than ``max_session_duration`` is expired: it is never handed out again
    (the check is made at hand-out time, so a request can never get one), an idle one is
    closed, and one still carrying a context keeps it until the server confirms its close —
    an utterance is never cut — and is closed then. With ``refresh_on_use=False`` the clock
    runs from the open only.
    """

    def __init__(
        self,
        provider: Provider[OptionsT],
        *,
        defaults: OptionsT | None = None,
        max_connections: int = 20,
        contexts_per_connection: int | None = None,
        min_connections: int = 1,
        idle_timeout: float = 300.0,
        keepalive_refresh: float | None = 540.0,
        max_session_duration: float | Literal["provider"] | None = "provider",
        refresh_on_use: bool = True,
        stale_close_timeout: float = 120.0,
        handshake_timeout: float = 10.0,
        heartbeat_interval: float | None = 20.0,
        heartbeat_timeout: float = 10.0,
        connect_attempts: int = 3,
        move_attempts: int = 3,
        max_concurrent_handshakes: int = 4,
        context_buffer: int = 4096,
        close_timeout: float = 10.0,
        sweep_interval: float = 1.0,
        quota: Quota | None = None,
        connection_quota: Quota | None = None,
        context_quota: Quota | None = None,
        transport_factory: TransportFactory | None = None,
    ) -> None:
        if max_session_duration == "provider":
            max_session_duration = provider.max_session_duration
        per_conn = (
            provider.contexts_per_connection
            if contexts_per_connection is None
            else contexts_per_connection
        )
        _positive("max_connections", max_connections, integer=True)
        _positive("contexts_per_connection", per_conn, integer=True)
        if not isinstance(min_connections, int) or not 0 <= min_connections <= max_connections:
            raise InvalidOptions(
                f"min_connections: {min_connections!r} must be in 0..max_connections"
            )
        for name, value in (
            ("idle_timeout", idle_timeout),
            ("stale_close_timeout", stale_close_timeout),
            ("handshake_timeout", handshake_timeout),
            ("heartbeat_timeout", heartbeat_timeout),
            ("close_timeout", close_timeout),
            ("sweep_interval", sweep_interval),
        ):
            _positive(name, value)
        for name, maybe in (
            ("keepalive_refresh", keepalive_refresh),
            ("max_session_duration", max_session_duration),
            ("heartbeat_interval", heartbeat_interval),
        ):
            _positive(name, maybe, allow_none=True)
        for name, value in (
            ("connect_attempts", connect_attempts),
            ("move_attempts", move_attempts),
            ("max_concurrent_handshakes", max_concurrent_handshakes),
            ("context_buffer", context_buffer),
        ):
            _positive(name, value, integer=True)
        self.provider = provider
        self.defaults: OptionsT = (
            defaults if defaults is not None else provider.default_options()
        )
        self._alloc = Allocator(
            max_connections=max_connections,
            capacity=per_conn,
            min_connections=min_connections,
            idle_timeout=idle_timeout,
            max_session_duration=max_session_duration,
            refresh_on_use=refresh_on_use,
            keepalive_refresh=keepalive_refresh,
        )
        self._alloc.default_key = provider.connection_key(self.defaults)
        self._settings = ConnectionSettings(
            handshake_timeout=handshake_timeout,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            connect_attempts=connect_attempts,
        )
        if transport_factory is not None:
            self._settings = attrs.evolve(self._settings, transport_factory=transport_factory)
        self._quota: Quota = quota if quota is not None else LocalQuota(max_connections * per_conn)
        # Fleet quotas (e.g. RedisQuota): one lease per WebSocket, one per context. Local
        # permits are always taken first, so a fleet lease is never held while blocked locally.
        self._connection_quota = connection_quota
        self._context_quota = context_quota
        self._context_leases: dict[Context[Any], Lease] = {}
        self._handshakes = trio.CapacityLimiter(max_concurrent_handshakes)
        self._stale_close_timeout = stale_close_timeout
        self._move_attempts = move_attempts
        self._context_buffer = context_buffer
        self._close_timeout = close_timeout
        self._sweep_interval = sweep_interval
        self._key_urls: dict[Hashable, str] = {self._alloc.default_key: provider.url(self.defaults)}
        self._actors: dict[int, ConnectionActor] = {}
        self._contexts: set[Context[Any]] = set()
        self._entering: set[trio.CancelScope] = set()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._closed = trio.Event()
        self._last_connect_error: ConnectionLost | None = None
        self._counts = {"opened": 0, "failed": 0, "contexts": 0, "moved": 0}

    # -- public API ------------------------------------------------------------------------

    async def open_context(
        self,
        *,
        # A deadline for the wait only (not a cancel scope): it raises CapacityTimeout.
        timeout: float | None = None,  # noqa: ASYNC109
        options: OptionsT | None = None,
        **overrides: Any,
    ) -> Context[OptionsT]:
        """Open one utterance stream; waits (FIFO) for a free slot.

        Args:
            timeout: seconds to wait for a slot (None: no limit).
            options: the context's options (the provider's class, e.g. :class:`VoiceOptions`;
                default: the pool's).
            **overrides: single fields to change (``voice="Dennis", speaking_rate=1.1``).

        Returns:
            An open :class:`Context`, already created on the server's side of the wire.

        Raises:
            InvalidOptions: bad options or timeout — before any network I/O.
            CapacityTimeout: no slot within ``timeout``.
            HandshakeRejected: the server refused the connection (401/403 fail at once).
            ConnectionLost: no connection could be opened.
            PoolClosed: the pool is closing or closed.
        """
        if self._closing:
            raise PoolClosed("the pool is closed")
        base = options if options is not None else self.defaults
        if not isinstance(base, type(self.defaults)):
            raise InvalidOptions(
                f"options: expected {type(self.defaults).__name__}, got {type(base).__name__}"
            )
        opts = base.replace(**overrides) if overrides else base
        self.provider.connection_key(opts)  # the provider validates them before any wait
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
        ):
            raise InvalidOptions(f"timeout: {timeout!r} must be a non-negative number")
        ctx = Context(
            self,
            uuid.uuid4().hex,
            opts,
            buffer=self._context_buffer,
            max_text=self.provider.max_text_chars,
        )
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        conn: ConnectionActor | None = None
        with trio.CancelScope(deadline=deadline) as scope:
            self._entering.add(scope)
            try:
                lease = await self._quota.acquire()
                try:
                    if self._context_quota is not None:
                        self._context_leases[ctx] = await self._context_quota.acquire()
                    conn = await self._acquire_slot(ctx, front=False)
                except BaseException:
                    self._quota.release(lease)
                    self._release_context_lease(ctx)
                    raise
            finally:
                self._entering.discard(scope)
        if conn is None:
            self._release_context_lease(ctx)
            if self._closing:
                raise PoolClosed("the pool is closed")
            assert scope.cancelled_caught
            raise CapacityTimeout(f"no context slot free within {timeout} s")
        ctx._lease = lease
        ctx._slot_held = True
        self._contexts.add(ctx)
        self._counts["contexts"] += 1
        try:
            await self._bind(ctx, conn)
        except BaseException:
            ctx._abandon()
            raise
        return ctx

    async def prewarm(self, n: int | None = None) -> int:
        """Open connections ahead of demand until ``n`` (default ``min_connections``, at
        least 1) are open, and wait for their handshakes.

        Returns:
            How many connections are open.

        Raises:
            InvalidOptions: ``n`` is not a positive integer.
            ConnectionLost: (or a subclass) no connection could be opened at all.
            PoolClosed: the pool is closed.
        """
        if self._closing:
            raise PoolClosed("the pool is closed")
        target = max(1, self._alloc.min_connections) if n is None else n
        _positive("n", target, integer=True)
        target = min(target, self._alloc.max_connections)
        self._run(self._alloc.ensure_open(target, trio.current_time()))
        while (
            self._alloc.count(ConnState.CONNECTING) and self._alloc.count(ConnState.OPEN) < target
        ):
            await self._wait_changed()
        opened = self._alloc.count(ConnState.OPEN)
        if opened == 0 and self._last_connect_error is not None:
            raise self._last_connect_error
        return opened

    def update_options(self, **changes: Any) -> None:
        """Change the default options of new contexts.

        When the change alters the connection a context needs (e.g. Rime's URL), existing
        connections are retired: idle ones close now, busy ones after their utterances.

        Raises:
            InvalidOptions: an unknown field or invalid value (nothing changes).
        """
        new = self.defaults.replace(**changes)
        key = self.provider.connection_key(new)
        self.defaults = new
        if key != self._alloc.default_key:
            self._key_urls[key] = self.provider.url(new)
            self._alloc.default_key = key
            self._run(self._alloc.retire_key(key, trio.current_time()))

    def statistics(self) -> PoolStatistics:
        alloc = self._alloc
        closing = sum(
            1 for ctx in self._contexts if ctx._close_requested_at is not None and ctx._slot_held
        )
        quota_waiting = self._quota.statistics().waiting
        return PoolStatistics(
            connections=len(alloc.connections),
            connections_connecting=alloc.count(ConnState.CONNECTING),
            connections_open=alloc.count(ConnState.OPEN),
            connections_draining=alloc.count(ConnState.DRAINING),
            contexts_in_use=alloc.slots_in_use(),
            contexts_closing=closing,
            waiting=quota_waiting + len(alloc.waiting),
            max_connections=alloc.max_connections,
            contexts_per_connection=alloc.capacity,
            connections_opened=self._counts["opened"],
            connections_failed=self._counts["failed"],
            contexts_opened=self._counts["contexts"],
            contexts_moved=self._counts["moved"],
        )

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self._closed.is_set() else "closing" if self._closing else "open"
        return (
            f"<Pool {self.provider.name} {state} connections={s.connections}/{s.max_connections}"
            f" contexts={s.contexts_in_use}/{s.max_connections * s.contexts_per_connection}"
            f" waiting={s.waiting}>"
        )

    async def aclose(self) -> None:
        """Close gracefully; idempotent.

        New ``open_context`` calls and waiters fail with :class:`PoolClosed`; in-flight
        contexts get ``close_timeout`` seconds to finish, then fail with :class:`PoolClosed`
        and are cancelled; every socket is closed with a close frame (bounded).
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        for scope in list(self._entering):
            scope.cancel()
        self._run(self._alloc.close())
        with trio.move_on_after(self._close_timeout):
            while self._contexts:
                await self._wait_changed()
        for ctx in list(self._contexts):
            ctx._fail(PoolClosed("the pool closed before the context finished"))
            ctx._request_close()
        for actor in list(self._actors.values()):
            actor.close_soon()
        with trio.move_on_after(self._settings.close_timeout + 1.0):
            while self._actors:
                await self._wait_changed()
        for actor in list(self._actors.values()):
            actor.abort()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self._closed.set()

    # -- allocation I/O --------------------------------------------------------------------

    def _run(self, actions: list[Open | Close | Ready | Fail]) -> None:
        for action in actions:
            if isinstance(action, Ready):
                action.request.payload.wake()
            elif isinstance(action, Fail):
                action.request.payload.wake(action.error)
            elif isinstance(action, Open):
                assert self._nursery is not None
                actor = ConnectionActor(
                    action.conn_id,
                    self.provider,
                    self._key_urls[action.key],
                    self._settings,
                    self,
                    self._handshakes,
                    quota=self._connection_quota,
                )
                self._actors[action.conn_id] = actor
                self._nursery.start_soon(actor.run)
            else:
                closing = self._actors.get(action.conn_id)
                if closing is not None:
                    closing.close_soon()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    async def _acquire_slot(self, ctx: Context[Any], *, front: bool) -> ConnectionActor:
        key = self.provider.connection_key(ctx.options)
        self._key_urls.setdefault(key, self.provider.url(ctx.options))
        while True:
            waiter = _Waiter()
            req = Request(key, ctx.id, payload=waiter)
            self._run(self._alloc.request(req, trio.current_time(), front=front))
            try:
                await waiter.event.wait()
            except BaseException:
                self._run(self._alloc.withdraw(req, trio.current_time()))
                raise
            if waiter.error is not None:
                raise waiter.error
            assert req.conn_id is not None
            actor = self._actors.get(req.conn_id)
            if actor is not None and actor.state == "open":
                return actor
            # The connection died between the hand-off and this task running: queue again.
            self._run(self._alloc.withdraw(req, trio.current_time()))
            front = True

    async def _bind(self, ctx: Context[Any], conn: ConnectionActor) -> None:
        """Host ``ctx`` on ``conn`` and send its create (and, after a move, its replay)."""
        ctx._conn = conn
        conn.routes[ctx.id] = ctx
        assert ctx._log is not None
        # If the connection is ending (its sender already left while it still reads "open"),
        # ``ctx`` is in its routes: when it reports its end the pool moves or fails ``ctx``
        # like every other context on it (bounded by move_attempts).
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await conn.send(ctx, list(ctx._log))

    def _release(self, ctx: Context[Any]) -> None:
        if ctx._lease is not None:
            self._quota.release(ctx._lease)
        self._release_context_lease(ctx)
        ctx._slot_held = False
        ctx._conn = None
        self._contexts.discard(ctx)
        self._notify()

    async def _move(self, ctx: Context[Any], error: ConnectionLost) -> None:
        """Move a context that got no audio to another connection and replay it."""
        self._counts["moved"] += 1
        with trio.CancelScope() as scope:
            ctx._moving = scope
            await trio.sleep(random.uniform(0.05, 0.25) * ctx._attempts)
            try:
                conn = await self._acquire_slot(ctx, front=True)
            except TTSError as exc:
                ctx._fail(exc if isinstance(exc, ConnectionLost | PoolClosed) else error)
                self._release(ctx)
                return
            ctx._moving = None
            ctx._slot_held = True
            await self._bind(ctx, conn)
        if scope.cancelled_caught and ctx._conn is None:
            self._release(ctx)

    # -- callbacks from actors and contexts (synchronous) ----------------------------------

    def _connection_opened(self, actor: ConnectionActor) -> None:
        self._counts["opened"] += 1
        self._run(self._alloc.connection_opened(actor.id, trio.current_time()))

    def _connection_finished(
        self, actor: ConnectionActor, error: ConnectionLost | None, fatal: bool
    ) -> None:
        self._actors.pop(actor.id, None)
        if error is not None:
            self._counts["failed"] += 1
            self._last_connect_error = error
            logger.info("connection #%d ended: %s", actor.id, error)
        lost = error if error is not None else ConnectionLost("connection closed")
        _, actions = self._alloc.connection_failed(actor.id, lost, trio.current_time(), fatal=fatal)
        contexts = list(actor.routes.values())
        actor.routes.clear()
        for ctx in contexts:
            self._context_lost(ctx, lost)
        self._run(actions)

    def _context_lost(self, ctx: Context[Any], error: ConnectionLost) -> None:
        ctx._conn = None
        ctx._slot_held = False
        if ctx.state is ContextState.OPEN or ctx.state is ContextState.FINISHING:
            if (
                ctx._log is not None
                and ctx._attempts < self._move_attempts
                and not self._closing
                and self._nursery is not None
            ):
                ctx._attempts += 1
                self._nursery.start_soon(self._move, ctx, error)
                return
            ctx._fail(error)
        self._release(ctx)

    def _context_released(self, actor: ConnectionActor, ctx: Context[Any]) -> None:
        """The server confirmed ``ctx`` closed on ``actor`` (or its stale timer fired)."""
        if actor.routes.get(ctx.id) is ctx:
            del actor.routes[ctx.id]
        self._run(self._alloc.release(actor.id, ctx.id, trio.current_time()))
        self._release(ctx)

    def _release_context_lease(self, ctx: Context[Any]) -> None:
        fleet = self._context_leases.pop(ctx, None)
        if fleet is not None and self._context_quota is not None:
            self._context_quota.release(fleet)

    def _connection_lease_lost(self, actor: ConnectionActor) -> None:
        """The fleet revoked ``actor``'s connection lease: drain it, no new contexts."""
        logger.warning("connection #%d: fleet lease lost; retiring the connection", actor.id)
        self._run(self._alloc.retire(actor.id, trio.current_time()))

    def _context_abandoned(self, ctx: Context[Any]) -> None:
        moving = ctx._moving
        if moving is not None:
            moving.cancel()
        elif ctx._conn is None and ctx._slot_held is False and ctx in self._contexts:
            self._release(ctx)

    # -- housekeeping ----------------------------------------------------------------------

    async def _sweeper(self) -> None:
        while True:
            await trio.sleep(self._sweep_interval)
            now = trio.current_time()
            self._run(self._alloc.sweep(now))
            for actor in list(self._actors.values()):
                for ctx in list(actor.routes.values()):
                    asked = ctx._close_requested_at
                    if asked is not None and now - asked >= self._stale_close_timeout:
                        logger.warning(
                            "connection #%d: close of context %s never confirmed; "
                            "freeing its slot and retiring the connection",
                            actor.id,
                            ctx.id,
                        )
                        ctx._fail(
                            ContextFailed(
                                None,
                                f"the server did not confirm the close within "
                                f"{self._stale_close_timeout:g} s",
                            )
                        )
                        self._context_released(actor, ctx)
                        self._run(self._alloc.retire(actor.id, now))


@asynccontextmanager
async def open_pool(
    provider: Provider[OptionsT], **settings: Any
) -> AsyncIterator[Pool[OptionsT]]:
    """Open a pool of connections to ``provider``; close it gracefully on exit.

    Example::

        provider = trio_tts.InworldProvider(api_key=key)
        async with trio_tts.open_pool(provider, max_connections=20) as pool:
            ctx = await pool.open_context(voice="Ashley")
            ...

    Settings (all optional; see :class:`Pool`): ``defaults`` (the provider's options class:
    :class:`VoiceOptions`, :class:`RimeOptions`; default ``provider.default_options()``),
    ``max_connections`` (20), ``contexts_per_connection`` (the provider's: Inworld 5, Rime 1),
    ``min_connections`` (1 kept warm), ``idle_timeout`` (300 s), ``keepalive_refresh``
    (540 s), ``max_session_duration`` (the provider's: Inworld None, Rime 300 s; None: never),
    ``refresh_on_use`` (True: a hand-out restarts the session clock),
    ``stale_close_timeout`` (120 s), ``handshake_timeout`` (10 s), ``heartbeat_interval``
    (20 s), ``heartbeat_timeout`` (10 s), ``connect_attempts`` (3), ``move_attempts`` (3),
    ``max_concurrent_handshakes`` (4), ``context_buffer`` (4096 events), ``close_timeout``
    (10 s), ``sweep_interval`` (1 s), ``quota`` (a :class:`Quota`: the local context gate),
    ``connection_quota`` (a fleet :class:`Quota` held per WebSocket, e.g. a
    :class:`RedisQuota`), ``context_quota`` (a fleet :class:`Quota` held per context, taken
    after the local one), ``transport_factory``
    (how a WebSocket is opened; ``trio_tts.testing.MemoryServer.connect`` runs the local
    server in memory).

    Raises:
        InvalidOptions: a setting is out of range (before any network I/O).
    """
    pool = Pool(provider, **settings)
    async with trio.open_nursery() as nursery:  # connection actors, context moves, the sweeper
        pool._nursery = nursery
        nursery.start_soon(pool._sweeper)
        try:
            yield pool
        finally:
            with trio.CancelScope(shield=True):
                await pool.aclose()
