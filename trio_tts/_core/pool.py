"""The supervisor: owns the connection actors and hands out contexts.

Entry is two FIFO gates. A :class:`~trio_tts.Quota` lease (in-process ``CapacityLimiter`` by
default, sized ``max_connections × contexts_per_connection``, or ``max_contexts`` when that is
smaller) admits a caller; the synchronous :class:`~trio_tts._core.allocator.Allocator` then
places it on a connection with a free slot, or starts a new connection. Every allocator
decision returns the I/O to do, which :meth:`Pool._do` starts without awaiting — the pool holds
no lock across I/O.

One owner per fact: the allocator's record is the truth about each connection (state, slots);
the pool's :class:`Placement` record (like httpcore's ``AsyncPoolRequest``) is the truth
about each context (its allocator request, leases, replay log, close bookkeeping); the
:class:`~trio_tts.Context` holds only what its caller reads. Actors report what happens
(:class:`ConnectionOwner`), contexts ask for what they need (:class:`ContextOwner`).

A slot (and its lease) comes back only when the server confirms the context closed, when the
connection carrying it dies (a dead connection holds no capacity), when a cancelled context
stays silent past the provider's documented ``cancel_expiry`` (:class:`~trio_tts.Provider`), or
when a closing context stays silent past ``stale_close_timeout`` (then the connection is
retired too: its server-side count is unknown).

A context whose connection fails before any audio arrived is moved: it queues again at the
front, after a jittered backoff, and its commands are replayed on the new connection. After
audio started, the failure reaches the caller as :class:`~trio_tts.ConnectionLost`.
Connection failures feed one :class:`~trio_tts._core.backoff.ReconnectPolicy` for the pool.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Generic

import attrs
import trio
from typing_extensions import Unpack

from .allocator import Action, Allocator, Close, ConnState, Fail, Open, Ready, Request
from .backoff import ReconnectPolicy, fresh_error, is_fatal
from .commands import Cancel, Command, Create
from .commands import Close as CloseCommand
from .connection import ConnectionActor, ConnectionSettings, TransportFactory
from .context import Context, ContextState, ContextStream
from .errors import (
    CapacityTimeout,
    CircuitOpen,
    ConnectionLost,
    ContextFailed,
    InvalidOptions,
    PoolClosed,
    TTSError,
    redact,
)
from .events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextCreated,
    ContextError,
    Event,
    FlushCompleted,
)
from .live import LiveMetrics
from .placement import Placement, Waiter
from .provider import OptionsT, Provider
from .quota import LocalQuota, Quota
from .settings import PoolSettings, PoolSettingsKwargs
from .snapshot import ConnectionSnapshot, ContextSnapshot, PoolSnapshot, PoolStatistics
from .telemetry import NO_CONTEXT_PROBE, Telemetry, open_probe
from .transport import connect

__all__ = ["Pool", "open_pool"]

logger = logging.getLogger("trio_tts.pool")


def _task_name(task: trio.lowlevel.Task) -> str:
    return task.name.rsplit(".", 1)[-1]


class Pool(Generic[OptionsT]):
    """A supervised pool of provider connections. Create it with :func:`open_pool`.

    Generic in the provider's options class (``Pool[VoiceOptions]`` for Inworld,
    ``Pool[RimeOptions]`` for Rime); the pool itself never looks inside the options.

    Settings come as one :class:`~trio_tts.PoolSettings` and/or as its fields by keyword
    (typed: a misspelled name is a mypy error and, at run time, :class:`InvalidOptions`).

    Session expiry (``max_session_duration``, Rime's ``mark_refreshed_on_get``): a connection's
    session clock starts when it opens and, with ``refresh_on_use`` (the default), restarts
    each time a context is *placed* on it — not when the context ends. A connection whose
    clock shows more than ``max_session_duration`` is expired: it is never handed out again,
    an idle one is closed, and one still carrying a context keeps it until the server
    confirms its close — an utterance is never cut — and is closed then.
    """

    def __init__(
        self,
        provider: Provider[OptionsT],
        settings: PoolSettings | None = None,
        /,
        *,
        defaults: OptionsT | None = None,
        quota: Quota | None = None,
        connection_quota: Quota | None = None,
        context_quota: Quota | None = None,
        transport_factory: TransportFactory | None = None,
        telemetry: Telemetry | None = None,
        **changes: Unpack[PoolSettingsKwargs],
    ) -> None:
        if settings is not None and not isinstance(settings, PoolSettings):
            raise InvalidOptions(f"settings: expected PoolSettings, got {type(settings).__name__}")
        s = PoolSettings.build(settings, **changes)
        self.settings = s
        session = (
            provider.max_session_duration
            if s.max_session_duration == "provider"
            else s.max_session_duration
        )
        per_conn = s.contexts_per_connection or provider.contexts_per_connection
        cap = provider.max_contexts if s.max_contexts == "provider" else s.max_contexts
        slots = s.max_connections * per_conn
        #: Contexts open at once, over all connections (the local quota's size).
        self.max_contexts = slots if cap is None else min(cap, slots)
        self.provider = provider
        self.defaults: OptionsT = defaults if defaults is not None else provider.default_options()
        self._alloc = Allocator(
            max_connections=s.max_connections,
            capacity=per_conn,
            min_connections=s.min_connections,
            idle_timeout=s.idle_timeout,
            max_session_duration=session,
            refresh_on_use=s.refresh_on_use,
            keepalive_refresh=s.keepalive_refresh,
        )
        self._alloc.default_key = provider.connection_key(self.defaults)
        self._conn_settings = ConnectionSettings(
            handshake_timeout=s.handshake_timeout,
            close_timeout=s.socket_close_timeout,
            heartbeat_interval=s.heartbeat_interval,
            heartbeat_timeout=s.heartbeat_timeout,
            max_message_size=s.max_message_size,
            # "trio-websocket" gets its factory in _serve (its sockets need a nursery).
            transport_factory=transport_factory if transport_factory is not None else connect,
        )
        self._own_trio_websocket = transport_factory is None and s.transport == "trio-websocket"
        self._policy = ReconnectPolicy(
            base=s.backoff_base,
            maximum=s.backoff_max,
            threshold=s.circuit_threshold,
            retry_after_max=s.retry_after_max,
            cooldown=s.auth_failure_cooldown,
        )
        # An account-wide cap (Provider.max_contexts / PoolSettings.max_contexts) sizes the
        # pool's own gate.
        self._cancel_expiry = provider.cancel_expiry
        self._quota: Quota = quota if quota is not None else LocalQuota(self.max_contexts)
        # Fleet quotas (e.g. RedisQuota): one lease per WebSocket, one per context. Local
        # permits are always taken first, so a fleet lease is never held while blocked locally.
        self._connection_quota = connection_quota
        self._context_quota = context_quota
        self._handshakes = trio.CapacityLimiter(s.max_concurrent_handshakes)
        # Sockets open at the provider, closing ones included (the allocator forgets a
        # connection when it decides to close it; its goodbye and close still take time).
        self._sockets = trio.Semaphore(s.max_connections)
        # URLs of the keys in use (bounded: pruned when a connection ends).
        self._key_urls: dict[Hashable, str] = {self._alloc.default_key: provider.url(self.defaults)}
        self._actors: dict[int, ConnectionActor] = {}
        self._records: dict[str, Placement] = {}
        # Flow control wakes a paused receiver from wherever a consumer reads (a bridge's
        # host loop too): through the token, never by touching trio objects directly.
        self._token: trio.lowlevel.TrioToken | None = None  # set when it runs
        # The run's clock, for route()'s stamp per event (trio.current_time() is two more
        # calls deep: 2-3 % of a light turn's CPU in the receiver). Set when it runs.
        self._clock: trio.abc.Clock | None = None
        self._entering: set[trio.CancelScope] = set()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._closed = trio.Event()
        #: Set when ``_serve``'s nursery (every pool task) has ended.
        self._served = trio.Event()
        self._counts = {"opened": 0, "failed": 0, "contexts": 0, "moved": 0, "stray": 0}
        # Observers: the caller's telemetry and the live view behind ``metrics_port``.
        self._live = LiveMetrics(s.metrics_port) if s.metrics_port is not None else None
        self._probe = open_probe(self, [telemetry, self._live])

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
            options: the context's options (the provider's class, e.g. ``VoiceOptions``;
                default: the pool's).
            **overrides: single fields to change (``voice="Dennis", speaking_rate=1.1``).

        Returns:
            An open :class:`Context`, its create queued on a connection.

        Raises:
            InvalidOptions: bad options or timeout — before any network I/O.
            CapacityTimeout: no slot within ``timeout`` while no connection attempt failed.
            HandshakeRejected: the server refused the connection this call waited for (at
                once for 401/403, which is remembered for ``auth_failure_cooldown``: later
                calls fail at once; else after ``connect_attempts`` refusals or at
                ``timeout``).
            CircuitOpen: connections kept failing; the pool waits before dialling again.
            ConnectionLost: the connections this call waited for could not be opened
                (``connect_attempts`` failures, or some failed before ``timeout``).
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
        key = self.provider.connection_key(opts)  # the provider validates them before any wait
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
        ):
            raise InvalidOptions(f"timeout: {timeout!r} must be a non-negative number")
        refusal = self._policy.refusal(trio.current_time())
        if refusal is not None:
            # A checkpoint first: a caller retrying at once on CircuitOpen must not spin.
            await trio.lowlevel.checkpoint()
            raise refusal
        s = self.settings
        stream = ContextStream(
            uuid.uuid4().hex,
            opts,
            max_events=s.context_buffer,
            max_bytes=s.context_buffer_bytes,
            pause_bytes=s.context_pause_bytes,
        )
        record = Placement(stream, key, self.provider.url(opts), log=[Create(opts)])
        stream.unblocked = partial(self._unblocked, record)
        record.probe = self._probe.context_queued(stream.id, opts)
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        placed = False
        with trio.CancelScope(deadline=deadline) as scope:
            self._entering.add(scope)
            try:
                record.lease = await self._quota.acquire()
                self._records[stream.id] = record
                if self._context_quota is not None:
                    record.fleet_lease = await self._context_quota.acquire()
                await self._acquire_slot(record, front=False)
                placed = True
            except BaseException as exc:
                # Nobody reads this stream: failing it tells the telemetry why it never opened.
                if isinstance(exc, TTSError):
                    stream.fail(exc)
                elif scope.cancel_called:
                    stream.fail(self._wait_error(record, timeout))
                self._release(record)
                raise
            finally:
                self._entering.discard(scope)
        if not placed:
            assert self._closing or scope.cancelled_caught
            raise self._wait_error(record, timeout)
        self._counts["contexts"] += 1
        assert record.conn_id is not None
        record.probe.placed(record.conn_id)
        ctx = Context(self, stream, opts, max_text=self.provider.max_text_chars)
        try:
            await self._bind(record)
        except BaseException:
            await ctx.aclose()
            raise
        return ctx

    def _wait_error(self, record: Placement, timeout: float | None) -> TTSError:
        """What ``open_context`` raises when its wait for a slot was cancelled by the pool
        (closing) or by its deadline."""
        if self._closing:
            return PoolClosed("the pool is closed")
        if record.last_connect_error is not None:
            # The wait ended on failed connection attempts, not on a lack of capacity.
            return fresh_error(record.last_connect_error)
        return CapacityTimeout(f"no context slot free within {timeout} s")

    async def prewarm(self, n: int | None = None, *, options: OptionsT | None = None) -> int:
        """Open connections ahead of demand until ``n`` (default ``min_connections``, at
        least 1) are open, and wait for their handshakes.

        ``options``: warm connections for contexts of these options (their connection key,
        e.g. ElevenLabs' or Rime's URL) instead of the pool's defaults; then only connections
        of that key count towards ``n``.

        Returns:
            How many connections are open (of that key, when ``options`` is given).

        Raises:
            InvalidOptions: ``n`` is not a positive integer, or ``options`` are invalid.
            ConnectionLost: (or a subclass) no connection could be opened at all.
            PoolClosed: the pool is closed.
        """
        if self._closing:
            raise PoolClosed("the pool is closed")
        target = max(1, self._alloc.min_connections) if n is None else n
        if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
            raise InvalidOptions(f"n: {target!r} must be a positive integer")
        target = min(target, self._alloc.max_connections)
        key: Hashable = None
        if options is not None:
            key = self.provider.connection_key(options)
            self._key_urls.setdefault(key, self.provider.url(options))

        def count(state: ConnState) -> int:
            if key is None:
                return self._alloc.count(state)
            conns = self._alloc.connections.values()
            return sum(1 for c in conns if c.key == key and c.state is state)

        self._do(self._alloc.ensure_open(target, trio.current_time(), key))
        while count(ConnState.CONNECTING) and count(ConnState.OPEN) < target:
            await self._wait_changed()
        opened = count(ConnState.OPEN)
        last = self._policy.last_error
        if opened == 0 and last is not None:
            raise fresh_error(last)
        return opened

    def update_options(self, **changes: Any) -> None:
        """Change the default options of new contexts.

        When the change alters the connection a context needs (e.g. Rime's URL), existing
        connections are retired: idle ones close now, busy ones after their utterances. A
        remembered 401/403 is forgotten (the change may carry a new credential).

        Raises:
            InvalidOptions: an unknown field or invalid value (nothing changes).
        """
        new = self.defaults.replace(**changes)
        key = self.provider.connection_key(new)
        self.defaults = new
        self._policy.forget_rejection()
        if key != self._alloc.default_key:
            self._key_urls[key] = self.provider.url(new)
            self._alloc.default_key = key
            self._do(self._alloc.retire_key(key, trio.current_time()))

    def forget_rejection(self) -> None:
        """Forget a remembered 401/403 (e.g. after rotating the provider's credential)."""
        self._policy.forget_rejection()

    @property
    def metrics_url(self) -> str | None:
        """``http://127.0.0.1:<port>/`` of the live view (``metrics_port``) while it is
        served, else None."""
        return None if self._live is None else self._live.url

    def statistics(self) -> PoolStatistics:
        alloc = self._alloc
        closing = sum(
            1
            for r in self._records.values()
            if r.close_sent_at is not None and r.conn_id is not None
        )
        return PoolStatistics(
            connections=len(alloc.connections),
            connections_connecting=alloc.count(ConnState.CONNECTING),
            connections_open=alloc.count(ConnState.OPEN),
            connections_draining=alloc.count(ConnState.DRAINING),
            contexts_in_use=alloc.slots_in_use(),
            contexts_closing=closing,
            waiting=self._quota.statistics().waiting + len(alloc.waiting),
            max_connections=alloc.max_connections,
            contexts_per_connection=alloc.capacity,
            connections_opened=self._counts["opened"],
            connections_failed=self._counts["failed"],
            contexts_opened=self._counts["contexts"],
            contexts_moved=self._counts["moved"],
            stray_events=self._counts["stray"],
            connect_failures=self._policy.failures,
            max_contexts=self.max_contexts,
        )

    def inspect(self) -> PoolSnapshot:
        """Everything the pool holds right now: connections, contexts, waiters, tasks.

        For debugging and for ``trio_tts.testing.check_quiescent``; synchronous, no side
        effects. The shape may grow between versions (fields are only added).
        """
        alloc = self._alloc
        conns: list[ConnectionSnapshot] = []
        for conn_id, actor in sorted(self._actors.items()):
            record = alloc.connections.get(conn_id)
            stats = actor.statistics()
            conns.append(
                ConnectionSnapshot(
                    id=conn_id,
                    state=record.state.value if record is not None else "closing",
                    contexts=tuple(sorted(record.slots)) if record is not None else (),
                    tasks=tuple(actor.task_names()),
                    frames_sent=stats.frames_sent,
                    frames_received=stats.frames_received,
                    paused=actor.paused,
                    pauses=stats.pauses,
                )
            )
        contexts = tuple(
            ContextSnapshot(
                id=cid,
                state=r.stream.state,
                connection=r.conn_id,
                moving=r.moving is not None,
                closing_since=r.close_sent_at,
            )
            for cid, r in self._records.items()
        )
        nursery = self._nursery
        tasks = () if nursery is None else tuple(_task_name(t) for t in nursery.child_tasks)
        return PoolSnapshot(
            closed=self._closed.is_set(),
            connections=tuple(conns),
            contexts=contexts,
            waiting=self._quota.statistics().waiting + len(alloc.waiting),
            reserved=alloc.reserved_count(),
            entering=len(self._entering),
            leases_held=self._quota.statistics().borrowed,
            tasks=tasks,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self._closed.is_set() else "closing" if self._closing else "open"
        return (
            f"<Pool {self.provider.name} {state} connections={s.connections}/{s.max_connections}"
            f" contexts={s.contexts_in_use}/{s.max_contexts}"
            f" waiting={s.waiting}>"
        )

    async def aclose(self) -> None:
        """Close gracefully; idempotent. Stops the pool's own tasks only: the caller's code
        after ``aclose()`` runs normally.

        New ``open_context`` calls and waiters fail with :class:`PoolClosed`; in-flight
        contexts get ``close_timeout`` seconds to finish, then fail with :class:`PoolClosed`
        and are cancelled; every socket is closed with a close frame (bounded by
        ``socket_close_timeout``).
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            for scope in list(self._entering):
                scope.cancel()
            for actor in self._actors.values():
                actor.resume()  # closing: every connection reads (backlogged() is False)
            self._do(self._alloc.close())
            with trio.move_on_after(self.settings.close_timeout):
                while self._records:
                    await self._wait_changed()
            for record in list(self._records.values()):
                record.stream.fail(PoolClosed("the pool closed before the context finished"))
                if record.moving is not None:
                    record.moving.cancel()
                self._cancel_on_server(record)
            for actor in list(self._actors.values()):
                actor.close_soon()
            with trio.move_on_after(self.settings.socket_close_timeout + 1.0):
                while self._actors:
                    await self._wait_changed()
        finally:
            for actor in list(self._actors.values()):
                actor.abort()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
                # Closed means no task left: wait (bounded: every task is cancelled and an
                # actor's socket close is bounded by socket_close_timeout) for them to end.
                with trio.CancelScope(shield=True):
                    await self._served.wait()
            self._closed.set()

    # -- ContextOwner ----------------------------------------------------------------------

    async def send_command(self, context_id: str, command: Command) -> None:
        record = self._records.get(context_id)
        if record is None:
            raise trio.ClosedResourceError("the context was released")
        if record.log is not None:
            record.log.append(command)
        conn_id = record.conn_id
        actor = None if conn_id is None else self._actors.get(conn_id)
        if actor is None or record.moving is not None or record.binding:
            return  # being placed or moved: the log is (re)played there, in order
        try:
            await actor.send(context_id, [command])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if record.log is None:
                raise record.stream.error or ConnectionLost("connection lost") from None
            return  # logged: the pool moves the context and replays it
        if isinstance(command, CloseCommand) and record.close_sent_at is None:
            record.close_sent_at = trio.current_time()

    def context_left(self, context_id: str, *, cancel: bool) -> None:
        record = self._records.get(context_id)
        if record is None:
            return
        if record.moving is not None:
            record.moving.cancel()  # the move task releases the record
        elif record.conn_id is None:
            self._release(record)
        elif cancel:
            self._cancel_on_server(record)
        elif record.close_sent_at is None:
            record.close_sent_at = trio.current_time()

    # -- ConnectionOwner -------------------------------------------------------------------

    def connection_opened(self, conn_id: int) -> None:
        self._counts["opened"] += 1
        self._do(self._alloc.connection_opened(conn_id, trio.current_time()))

    def connection_ended(self, conn_id: int, error: ConnectionLost | None) -> None:
        now = trio.current_time()
        self._actors.pop(conn_id, None)
        self._probe.connection_ended(conn_id, error)
        conn = self._alloc.connections.get(conn_id)
        proven = conn is not None and conn.proven
        fatal = False
        if error is not None:
            self._counts["failed"] += 1
            logger.info("connection #%d ended: %s", conn_id, error)
            never_opened = conn is not None and conn.opened_at is None
            died_early = (
                conn is not None
                and not proven
                and (conn.used or now - (conn.opened_at or now) < self.settings.handshake_timeout)
            )
            if never_opened or died_early:
                fatal = is_fatal(
                    error, before_audio=True, codes=self.provider.fatal_close_codes
                )
                self._policy.failed(error, now, fatal=fatal)
        lost = error if error is not None else ConnectionLost("connection closed")
        active, actions = self._alloc.connection_failed(conn_id, lost, now, fatal=fatal)
        for context_id in active:
            record = self._records.get(context_id)
            if record is not None and record.conn_id == conn_id:
                record.request = None  # the slot went with the connection
                if record.bound and record.moving is None:
                    self._context_lost(record, lost)
                # else its placing task (open_context or a move) finds the connection gone
                # and queues again: one task per context places it, never two.
        self._do(actions)
        refusal = self._policy.refusal(now)
        if isinstance(refusal, CircuitOpen):
            self._do(self._alloc.fail_waiting(refusal))
        self._prune_urls()

    def connection_lease_lost(self, conn_id: int) -> None:
        """The fleet revoked the connection's lease: drain it, no new contexts."""
        logger.warning("connection #%d: fleet lease lost; retiring the connection", conn_id)
        self._do(self._alloc.retire(conn_id, trio.current_time()))

    def hosts(self, conn_id: int, context_id: str) -> bool:
        record = self._records.get(context_id)
        return record is not None and record.conn_id == conn_id and record.moving is None

    def backlogged(self, conn_id: int) -> bool:
        conn = self._alloc.connections.get(conn_id)
        if conn is None or not conn.slots or self._closing:
            return False
        for context_id in conn.slots:
            record = self._records.get(context_id)
            if record is None or record.conn_id != conn_id or not record.stream.backlogged:
                return False
        return True

    def _unblocked(self, record: Placement) -> None:
        """A context stopped being backlogged (drained or ended): its connection reads
        again. Called by the stream, possibly from a bridge's host loop."""
        conn_id = record.conn_id
        actor = None if conn_id is None else self._actors.get(conn_id)
        if actor is not None and actor.paused and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(actor.resume)

    def route(self, conn_id: int, event: Event) -> None:
        """Hand one event of connection ``conn_id`` to its context (the receiver's hot path:
        one call per event). Synchronous; never raises for the server's content."""
        if type(event) is Audio:
            audio = True
        elif isinstance(event, ConnectionErrorEvent):
            self._connection_error(conn_id, event)
            return
        else:
            audio = False
        record = self._records.get(event.context_id)
        if record is None or (request := record.request) is None or request.conn_id != conn_id:
            # For a context this connection no longer hosts (released after a stale close,
            # an answer to a cancel of a closed one, an id we never created): never delivered.
            self._counts["stray"] += 1
            logger.debug("connection #%d: event for unknown context dropped", conn_id)
            return
        assert self._clock is not None  # the receivers run inside _serve
        record.last_frame_at = self._clock.current_time()
        if audio:
            stream = record.stream
            if not stream.audio_started:
                self._alloc.mark_proven(conn_id)
                self._policy.succeeded()
                record.probe.first_audio()
            if not record.binding:
                record.log = None  # audio started: from now on a lost connection is an error
            if not stream.deliver(event):
                self._cancel_on_server(record)  # SlowConsumer: only this context
            elif stream.backlogged:
                actor = self._actors.get(conn_id)
                if actor is not None:
                    actor.backlog_check = True  # its receiver asks backlogged() next
        elif isinstance(event, ContextClosed):
            record.stream.closed_by_server()
            self._release(record)
        elif isinstance(event, ContextError):
            if record.cancel_sent:
                # The answer to our cancel (e.g. "context not found"): nothing left there.
                record.stream.closed_by_server()
                self._release(record)
                return
            record.stream.fail(ContextFailed(event.code, redact(event.message)))
            # The server may or may not still count the context: close it again and take
            # the answer (closed or "not found") as the confirmation.
            self._cancel_on_server(record)
        elif isinstance(event, ContextCreated):
            record.created = True
        else:
            if isinstance(event, FlushCompleted):
                record.probe.flushed()
            if not record.stream.deliver(event):
                self._cancel_on_server(record)

    def _connection_error(self, conn_id: int, event: ConnectionErrorEvent) -> None:
        """An error frame naming no context: blame the context whose create the server has
        not confirmed (else the oldest on the connection) and keep the others."""
        hosted = [r for r in self._records.values() if r.conn_id == conn_id]
        if not hosted:
            self._counts["stray"] += 1
            logger.info("connection #%d: server error with no context: %s", conn_id, event.code)
            return
        unconfirmed = [r for r in hosted if not r.created]
        record = (unconfirmed or hosted)[0]
        record.last_frame_at = trio.current_time()
        message = redact(event.message)
        logger.info("connection #%d: server error %s blamed on %s", conn_id, event.code, record)
        if record.cancel_sent:
            record.stream.closed_by_server()
            self._release(record)
            return
        record.stream.fail(ContextFailed(event.code, message))
        self._cancel_on_server(record)

    # -- allocation I/O --------------------------------------------------------------------

    def _do(self, actions: list[Action], cause: Placement | None = None) -> None:
        """Start the I/O the allocator decided on (``cause``: the context whose request it
        answers, for telemetry)."""
        for action in actions:
            if isinstance(action, Ready):
                action.request.payload.wake()
            elif isinstance(action, Fail):
                error = action.error
                action.request.payload.wake(
                    fresh_error(error) if isinstance(error, ConnectionLost) else error
                )
            elif isinstance(action, Open):
                assert self._nursery is not None
                url = self._key_urls[action.key]
                actor = ConnectionActor(
                    action.conn_id,
                    self.provider,
                    url,
                    self._conn_settings,
                    self,
                    self._handshakes,
                    quota=self._connection_quota,
                    sockets=self._sockets,
                    not_before=self._policy.next_dial(trio.current_time()),
                    probe=self._probe.dialling(
                        action.conn_id, url, None if cause is None else cause.probe
                    ),
                )
                self._actors[action.conn_id] = actor
                self._nursery.start_soon(actor.run)
            elif isinstance(action, Close):
                closing = self._actors.get(action.conn_id)
                if closing is not None:
                    closing.close_soon()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def _prune_urls(self) -> None:
        live = {c.key for c in self._alloc.connections.values()}
        live |= {r.key for r in self._alloc.waiting}
        live.add(self._alloc.default_key)
        for key in [k for k in self._key_urls if k not in live]:
            del self._key_urls[key]

    async def _acquire_slot(self, record: Placement, *, front: bool) -> None:
        """Wait until ``record`` holds a slot on an open connection (``record.request``)."""
        self._key_urls.setdefault(record.key, record.url)
        cid = record.stream.id
        while True:
            # Every (re)queue asks the policy, not just a new open_context: a context moving
            # off a dead connection or riding through a failed dial must not dial past an
            # open circuit (or a remembered rejection).
            refusal = self._policy.refusal(trio.current_time())
            if refusal is not None:
                raise refusal
            waiter = Waiter()
            req = Request(record.key, cid, payload=waiter)
            record.request = req
            self._do(self._alloc.request(req, trio.current_time(), front=front), record)
            try:
                if not waiter.event.is_set():  # else placed at once: no trip via the scheduler
                    await waiter.event.wait()
            except BaseException:
                self._withdraw(record)
                raise
            error = waiter.error
            if error is not None:
                record.request = None
                if isinstance(error, ConnectionLost):
                    record.connect_failures += 1
                    record.last_connect_error = error
                    if (
                        record.connect_failures < self.settings.connect_attempts
                        and not isinstance(error, CircuitOpen)
                        and not is_fatal(
                            error, before_audio=True, codes=self.provider.fatal_close_codes
                        )
                        and not self._closing
                    ):
                        front = True  # ride through it: the pool's backoff paces the redial
                        continue
                raise error
            conn_id = req.conn_id
            if conn_id is not None and conn_id in self._actors and self._alloc.holds(conn_id, cid):
                return
            # The connection died between the hand-off and this task running: queue again.
            self._withdraw(record)
            front = True

    def _withdraw(self, record: Placement) -> None:
        req = record.request
        if req is None:
            return
        record.request = None
        now = trio.current_time()
        conn_id = req.conn_id
        self._do(self._alloc.withdraw(req, now))
        # While connections fail, a dial nobody waits for any more is stopped.
        if conn_id is not None and self._policy.failures:
            conn = self._alloc.connections.get(conn_id)
            if conn is not None and conn.state is ConnState.CONNECTING and not conn.slots:
                self._do(self._alloc.retire(conn_id, now))

    async def _bind(self, record: Placement) -> None:
        """Send ``record``'s create (and, after a move, its replay) on its connection,
        then whatever the caller logged meanwhile, in order."""
        conn_id = record.conn_id
        log = record.log
        assert conn_id is not None and log is not None
        actor = self._actors[conn_id]
        record.last_frame_at = trio.current_time()
        record.binding = True
        record.bound = True
        actor.resume()  # a new context is not backlogged: its connection reads
        sent = 0
        try:
            while sent < len(log):
                pending = log[sent:]
                await actor.send(record.stream.id, pending)
                sent += len(pending)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The connection is ending and ``record`` holds a slot on it: when it reports its
            # end the pool moves or fails the context like every other one on it.
            return
        finally:
            record.binding = False
            if record.stream.audio_started:
                record.log = None  # audio came while the log was still being sent
        if any(isinstance(c, CloseCommand) for c in log) and record.close_sent_at is None:
            record.close_sent_at = trio.current_time()

    def _release(self, record: Placement) -> None:
        """Give back everything ``record`` holds (slot, leases); idempotent."""
        cid = record.stream.id
        if self._records.get(cid) is record:
            del self._records[cid]
        record.stream.unblocked = None  # no connection to wake any more (and no cycle)
        probe, record.probe = record.probe, NO_CONTEXT_PROBE
        probe.ended(record.stream.state, record.stream.error, record.stream.audio_bytes)
        req = record.request
        if req is not None:
            record.request = None
            now = trio.current_time()
            if req.conn_id is not None:
                self._do(self._alloc.release(req.conn_id, cid, now))
            else:
                self._do(self._alloc.withdraw(req, now))
        if record.lease is not None:
            self._quota.release(record.lease)
            record.lease = None
        if record.fleet_lease is not None and self._context_quota is not None:
            self._context_quota.release(record.fleet_lease)
            record.fleet_lease = None
        self._notify()

    def _cancel_on_server(self, record: Placement) -> None:
        """Ask the server to drop the context (failed, abandoned, overflowed); the answer
        (closed, or a status error such as "not found") gives the slot back."""
        conn_id = record.conn_id
        actor = None if conn_id is None else self._actors.get(conn_id)
        if record.cancel_sent or actor is None or not record.bound:
            return  # not on the server yet: its placing task gives the slot back
        record.cancel_sent = True
        now = trio.current_time()
        record.close_sent_at = now
        record.last_frame_at = now
        actor.post(record.stream.id, Cancel())

    def _context_lost(self, record: Placement, error: ConnectionLost) -> None:
        stream = record.stream
        if stream.state is ContextState.OPEN or stream.state is ContextState.FINISHING:
            if (
                record.log is not None
                and not stream.audio_started
                and record.attempts < self.settings.move_attempts
                and not self._closing
                and self._nursery is not None
            ):
                record.attempts += 1
                record.bound = False
                record.moving = trio.CancelScope()
                self._nursery.start_soon(self._move, record, error)
                return
            stream.fail(error)
        self._release(record)

    async def _move(self, record: Placement, error: ConnectionLost) -> None:
        """Move a context that got no audio to another connection and replay it."""
        self._counts["moved"] += 1
        record.probe.moved(error)
        scope = record.moving
        assert scope is not None
        with scope:
            await trio.sleep(random.uniform(0.05, 0.25) * record.attempts)
            try:
                await self._acquire_slot(record, front=True)
            except TTSError as exc:
                record.moving = None
                record.stream.fail(exc if isinstance(exc, ConnectionLost | PoolClosed) else error)
                self._release(record)
                return
            record.created = False
            record.moving = None
            assert record.conn_id is not None
            record.probe.placed(record.conn_id)
            await self._bind(record)
        if scope.cancelled_caught and record.moving is not None:
            record.moving = None
            self._release(record)

    # -- housekeeping ----------------------------------------------------------------------

    async def _sweeper(self) -> None:
        stale = self.settings.stale_close_timeout
        while True:
            await trio.sleep(self.settings.sweep_interval)
            now = trio.current_time()
            self._do(self._alloc.sweep(now))
            for record in list(self._records.values()):
                conn_id = record.conn_id
                if conn_id is None or record.moving is not None:
                    continue
                expiry = self._cancel_expiry
                silent = now - record.last_frame_at
                if expiry is not None and record.cancel_sent and silent >= expiry:
                    # The provider documents that the server has ended it by now.
                    record.stream.closed_by_server()
                    self._release(record)
                    continue
                closing = record.close_sent_at is not None or record.stream.state in (
                    ContextState.ABANDONED,
                    ContextState.FAILED,
                )
                # Stale means silent: the clock runs from the last frame for the context.
                if not closing or now - record.last_frame_at < stale:
                    continue
                logger.warning(
                    "connection #%d: context %s silent for %g s while closing; "
                    "freeing its slot and retiring the connection",
                    conn_id,
                    record.stream.id,
                    stale,
                )
                record.stream.fail(
                    ContextFailed(None, f"the server did not confirm the close within {stale:g} s")
                )
                self._release(record)
                self._do(self._alloc.retire(conn_id, now))

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The pool's own tasks (connection actors, moves, the sweeper), in a nursery that
        :meth:`aclose` cancels without touching the caller's code. With
        ``transport="trio-websocket"`` the sockets' tasks live in a nursery around it."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._served.set)
            stack.callback(self._probe.closed)
            if self._live is not None:  # the live view's listener, in a nursery of its own
                await stack.enter_async_context(self._live.serving())
            if self._own_trio_websocket:
                # Imported here: trio-websocket (and wsproto, h11) only for those who ask.
                from .transport_trio_websocket import open_trio_websocket_factory

                factory = await stack.enter_async_context(
                    open_trio_websocket_factory(max_message_size=self.settings.max_message_size)
                )
                self._conn_settings = attrs.evolve(self._conn_settings, transport_factory=factory)
            async with trio.open_nursery() as nursery:  # actors, moves, the sweeper
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                self._clock = trio.lowlevel.current_clock()
                nursery.start_soon(self._sweeper)
                task_status.started()


@asynccontextmanager
async def open_pool(
    provider: Provider[OptionsT],
    settings: PoolSettings | None = None,
    /,
    *,
    defaults: OptionsT | None = None,
    quota: Quota | None = None,
    connection_quota: Quota | None = None,
    context_quota: Quota | None = None,
    transport_factory: TransportFactory | None = None,
    telemetry: Telemetry | None = None,
    **changes: Unpack[PoolSettingsKwargs],
) -> AsyncIterator[Pool[OptionsT]]:
    """Open a pool of connections to ``provider``; close it gracefully on exit.

    Example::

        provider = trio_tts.InworldProvider(api_key=key)
        async with trio_tts.open_pool(provider, max_connections=20) as pool:
            ctx = await pool.open_context(voice="Ashley")
            ...

    Args:
        settings: a :class:`~trio_tts.PoolSettings`; keyword settings (its field names)
            change single fields of it.
        defaults: the options of contexts opened without any (the provider's class:
            ``VoiceOptions``, ``RimeOptions``; default ``provider.default_options()``).
        quota: the local context gate (default: a ``LocalQuota`` of every slot).
        connection_quota: a fleet :class:`Quota` held per WebSocket (e.g. ``RedisQuota``).
        context_quota: a fleet :class:`Quota` held per context, taken after the local one.
        transport_factory: how a WebSocket is opened (overrides ``transport``;
            ``trio_tts.testing.MemoryServer.connect`` runs the local server in memory).
        telemetry: an observer of the pool (:class:`~trio_tts.Telemetry`), e.g.
            ``trio_tts.otel.OpenTelemetry()`` for OpenTelemetry metrics and traces; default
            none (no cost). The ``metrics_port`` setting serves a live view for
            ``trio-tts top``.

    Raises:
        InvalidOptions: a setting is unknown or out of range (before any network I/O).
    """
    pool = Pool(
        provider,
        settings,
        defaults=defaults,
        quota=quota,
        connection_quota=connection_quota,
        context_quota=context_quota,
        transport_factory=transport_factory,
        telemetry=telemetry,
        **changes,
    )
    async with trio.open_nursery() as nursery:  # only _serve: the caller's body runs beside it
        await nursery.start(pool._serve)
        try:
            yield pool
        finally:
            with trio.CancelScope(shield=True):
                await pool.aclose()
