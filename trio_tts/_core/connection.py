"""One WebSocket connection as an actor: a sender, a receiver and a heartbeat task.

Ownership and lifetime::

    pool nursery ── ConnectionActor.run()          (one task per connection, started by the pool)
                      └── actor nursery            (this connection only: one failure here
                            ├── _sender                cancels its siblings, never other
                            ├── _receiver              connections — DESIGN §6)
                            ├── _heartbeat
                            └── spilled posts      (cancels that found the outbound buffer full)

The actor owns the receive end of its bounded outbound channel (contexts send commands into
it) and the transport. It never awaits a context's consumer: events are handed to contexts
with their synchronous ``_deliver``. ``run`` never raises except ``Cancelled``; every outcome
(opened, failed, closed) is reported to the pool through its synchronous callbacks.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from . import transport as _transport
from .commands import Cancel, Close, Command, Create, Flush, SendText
from .errors import ConnectionLost, HandshakeRejected, TTSError, redact
from .events import ConnectionErrorEvent, ContextClosed, ContextError, Event
from .provider import ClientCodec, Provider
from .quota import Lease, Quota

if TYPE_CHECKING:
    from .context import Context

__all__ = ["ConnectionActor", "ConnectionSettings", "ConnectionStatistics", "TransportFactory"]

logger = logging.getLogger("trio_tts.connection")


class TransportFactory(Protocol):
    """Opens one WebSocket: :func:`trio_tts._core.transport.connect`'s signature (a test seam)."""

    def __call__(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        *,
        handshake_timeout: float,
        close_timeout: float,
    ) -> Awaitable[_transport.Transport]: ...


@attrs.frozen(kw_only=True)
class ConnectionSettings:
    """Per-connection timing and sizing (see :func:`trio_tts.open_pool`)."""

    handshake_timeout: float = 10.0
    close_timeout: float = 2.0
    heartbeat_interval: float | None = 20.0
    heartbeat_timeout: float = 10.0
    outbound_buffer: int = 64
    connect_attempts: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 5.0
    #: How long a graceful close waits for the answer to the codec's ``goodbye`` frames
    #: (Rime's ``eos``) before sending the close frame anyway.
    goodbye_timeout: float = 1.0
    #: Opens one WebSocket (the seam for ``trio_tts.testing``'s in-memory transport).
    transport_factory: TransportFactory = _transport.connect


@attrs.frozen
class ConnectionStatistics:
    id: int
    state: str
    contexts: int
    frames_sent: int
    frames_received: int
    stray_events: int


_Task = Callable[["_transport.Transport"], Awaitable[None]]


class _PoolCallbacks(Protocol):
    def _connection_opened(self, actor: ConnectionActor) -> None: ...
    def _connection_finished(
        self, actor: ConnectionActor, error: ConnectionLost | None, fatal: bool
    ) -> None: ...
    def _context_released(self, actor: ConnectionActor, ctx: Context[Any]) -> None: ...
    def _connection_lease_lost(self, actor: ConnectionActor) -> None: ...


class ConnectionActor:
    """One provider WebSocket hosting up to ``contexts_per_connection`` contexts."""

    def __init__(
        self,
        conn_id: int,
        provider: Provider[Any],
        url: str,
        settings: ConnectionSettings,
        pool: _PoolCallbacks,
        handshake_limiter: trio.CapacityLimiter,
        quota: Quota | None = None,
    ) -> None:
        self.id = conn_id
        # A fleet-wide connection quota: a lease is held for the socket's whole lifetime.
        self._quota = quota
        self._lease: Lease | None = None
        self._provider = provider
        self._url = url
        self._settings = settings
        self._pool = pool
        self._handshake_limiter = handshake_limiter
        self._codec: ClientCodec = provider.new_codec()
        self._outbound_in, self._outbound_out = trio.open_memory_channel[
            tuple["Context[Any]", list[Command]]
        ](settings.outbound_buffer)
        #: Contexts hosted here, by id. An id absent from this map gets no event.
        self.routes: dict[str, Context[Any]] = {}
        self.state = "connecting"
        self._nursery: trio.Nursery | None = None
        self._cancel_scope = trio.CancelScope()
        self._closing = False
        self._error: ConnectionLost | None = None
        self._frames_sent = 0
        self._frames_received = 0
        self._stray_events = 0
        # Set by the receiver on the first frame after the goodbye frames were sent.
        self._goodbye_sent = False
        self._goodbye_answered = trio.Event()

    def __repr__(self) -> str:
        return f"<ConnectionActor #{self.id} {self.state} contexts={len(self.routes)}>"

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            id=self.id,
            state=self.state,
            contexts=len(self.routes),
            frames_sent=self._frames_sent,
            frames_received=self._frames_received,
            stray_events=self._stray_events,
        )

    # -- called by contexts and the pool ---------------------------------------------------

    async def send(self, ctx: Context[Any], commands: list[Command]) -> None:
        """Queue ``commands`` for ``ctx``; waits for room in the outbound buffer.

        Raises:
            trio.BrokenResourceError: the connection is gone.
        """
        await self._outbound_in.send((ctx, commands))

    def post(self, ctx: Context[Any], command: Command) -> None:
        """Queue ``command`` without waiting: a full buffer spills it into a task of the
        actor's own nursery, which keeps the order. A dead connection drops it (the context
        is failed or moved by the pool anyway)."""
        try:
            self._outbound_in.send_nowait((ctx, [command]))
        except trio.WouldBlock:
            if self._nursery is not None:
                self._nursery.start_soon(self._spill, ctx, command)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def close_soon(self) -> None:
        """Close gracefully: flush queued commands, send a close frame, end ``run``."""
        self._closing = True
        if self.state == "connecting":
            self._cancel_scope.cancel()
        else:
            self._outbound_in.close()

    def abort(self) -> None:
        """Cancel everything now (the pool's close deadline passed)."""
        self._cancel_scope.cancel()

    # -- the actor -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve until closed or failed, report the outcome to the pool, then close
        the socket (shielded, bounded): the contexts hear of a failure before the goodbye."""
        error: ConnectionLost | None = None
        fatal = False
        transport: _transport.Transport | None = None
        try:
            with self._cancel_scope:
                try:
                    if self._quota is not None:  # before the handshake: never over the fleet
                        self._lease = await self._quota.acquire()
                    transport = await self._connect()
                except HandshakeRejected as exc:
                    error, fatal = exc, exc.is_auth_error
                except ConnectionLost as exc:
                    error = exc
                except TTSError as exc:  # the connection quota is unreachable (fail closed)
                    error = ConnectionLost(f"connection quota: {exc}")
                else:
                    error = await self._serve(transport)
        finally:
            if error is None and not self._closing:
                error = ConnectionLost("connection closed")
            self.state = "closed"
            self._outbound_out.close()
            self._pool._connection_finished(self, error, fatal)
            if transport is not None:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self._settings.close_timeout):
                        await transport.aclose()
            if self._lease is not None and self._quota is not None:
                self._quota.release(self._lease)  # after the close: the socket is gone

    async def _connect(self) -> _transport.Transport:
        settings = self._settings
        attempts = max(1, settings.connect_attempts)
        for attempt in range(attempts):
            try:
                async with self._handshake_limiter:
                    return await settings.transport_factory(
                        self._url,
                        self._provider.headers(),
                        handshake_timeout=settings.handshake_timeout,
                        close_timeout=settings.close_timeout,
                    )
            except HandshakeRejected as exc:
                if exc.is_auth_error or attempt == attempts - 1:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                logger.info("connection #%d: handshake rejected (HTTP %d)", self.id, exc.status)
            except ConnectionLost as exc:
                if attempt == attempts - 1:
                    raise
                delay = self._backoff(attempt)
                logger.info("connection #%d: connect failed: %s", self.id, redact(str(exc)))
            await trio.sleep(delay)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        s = self._settings
        ceiling = min(s.backoff_max, s.backoff_base * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # jittered: reconnects spread out

    async def _serve(self, transport: _transport.Transport) -> ConnectionLost | None:
        self.state = "open"
        self._pool._connection_opened(self)
        try:
            async with trio.open_nursery() as nursery:  # this connection's tasks only
                self._nursery = nursery
                tasks: list[_Task] = [self._sender, self._receiver]
                if self._settings.heartbeat_interval is not None:
                    tasks.append(self._heartbeat)
                if self._lease is not None:
                    tasks.append(self._watch_lease)
                for task in tasks:
                    nursery.start_soon(self._guard, task, transport, nursery.cancel_scope)
        finally:
            self._nursery = None
            self.state = "closing"
        return self._error

    async def _guard(
        self,
        task: _Task,
        transport: _transport.Transport,
        scope: trio.CancelScope,
    ) -> None:
        """Run one of the actor's tasks; when it ends (a failure, first one wins, or the
        sender's graceful close) the whole connection ends."""
        try:
            await task(transport)
        except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if self._error is None and not (self._closing and task == self._receiver):
                self._error = (
                    exc if isinstance(exc, ConnectionLost) else ConnectionLost(type(exc).__name__)
                )
        except Exception as exc:  # a bug must not take the pool down: report it as a loss
            logger.exception("connection #%d: internal error", self.id)
            if self._error is None:
                self._error = ConnectionLost(f"internal error: {type(exc).__name__}")
        scope.cancel()

    async def _spill(self, ctx: Context[Any], command: Command) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._outbound_in.send((ctx, [command]))

    async def _sender(self, transport: _transport.Transport) -> None:
        codec = self._codec
        outbound = self._outbound_out
        async with outbound:
            async for first in outbound:
                # Drain whatever else is queued and write it all with one flush: one lock
                # and one send_all per batch instead of per frame.
                batch = [first]
                with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                    while len(batch) < 64:
                        batch.append(outbound.receive_nowait())
                frames: list[str] = []
                events: list[Event] = []
                for ctx, commands in batch:
                    if self.routes.get(ctx.id) is not ctx:
                        continue  # the context left this connection (moved or released)
                    for command in commands:
                        frames += _encode(codec, ctx.id, command)
                        events += codec.take_events()
                if frames:
                    await transport.send_many(frames)
                    self._frames_sent += len(frames)
                for event in events:
                    self._route(event)
        # The outbound channel was closed (close_soon): a graceful close; _guard ends the rest.
        goodbye = codec.goodbye()
        if goodbye:
            for frame in goodbye:
                await transport.send(frame)
                self._frames_sent += 1
            self._goodbye_sent = True
            # The answer is any frame, or the server's own close (which ends the receiver and
            # so this task too): at most goodbye_timeout, then the close frame regardless.
            with trio.move_on_after(self._settings.goodbye_timeout):
                await self._goodbye_answered.wait()
        await transport.aclose()

    async def _receiver(self, transport: _transport.Transport) -> None:
        codec = self._codec
        while True:
            frame = await transport.receive()
            self._frames_received += 1
            if self._goodbye_sent:
                self._goodbye_answered.set()
            for event in codec.receive(frame):
                self._route(event)

    def _route(self, event: Event) -> None:
        if isinstance(event, ConnectionErrorEvent):
            raise ConnectionLost(f"server error {event.code}: {redact(event.message)}")
        ctx = self.routes.get(event.context_id)
        if ctx is None:
            # Audio for a context this connection no longer hosts (released after a stale
            # close, or an id we never created). Counted, never delivered anywhere.
            self._stray_events += 1
            logger.debug("connection #%d: event for unknown context dropped", self.id)
            return
        if isinstance(event, ContextClosed):
            ctx._server_closed()
            self._pool._context_released(self, ctx)
        elif isinstance(event, ContextError):
            if ctx._server_error(event.code, redact(event.message)):
                ctx._server_closed()
                self._pool._context_released(self, ctx)
        else:
            ctx._deliver(event)

    async def _watch_lease(self, transport: _transport.Transport) -> None:
        """A lost connection lease retires this connection after its current utterances."""
        assert self._lease is not None
        await self._lease.lost.wait()
        self._pool._connection_lease_lost(self)
        await trio.sleep_forever()

    async def _heartbeat(self, transport: _transport.Transport) -> None:
        settings = self._settings
        assert settings.heartbeat_interval is not None
        while True:
            await trio.sleep(settings.heartbeat_interval)
            with trio.move_on_after(settings.heartbeat_timeout) as scope:
                await transport.ping()
            if scope.cancelled_caught:
                raise ConnectionLost("heartbeat: no pong from the server")


def _encode(codec: ClientCodec, context_id: str, command: Command) -> list[str]:
    if isinstance(command, SendText):
        return codec.send_text(context_id, command.text, flush=command.flush)
    if isinstance(command, Create):
        return codec.create(context_id, command.options)
    if isinstance(command, Flush):
        return codec.flush(context_id)
    if isinstance(command, Close):
        return codec.close(context_id)
    if isinstance(command, Cancel):
        return codec.cancel(context_id)
    raise TypeError(f"unknown command {command!r}")
