"""One WebSocket connection as an actor: a sender, a receiver and a heartbeat task.

Ownership and lifetime::

    pool task nursery ── ConnectionActor.run()      (one task per connection, started by the pool)
                           └── actor nursery        (this connection only: one failure here
                                 ├── _sender            cancels its siblings, never other
                                 ├── _receiver          connections — DESIGN §6)
                                 ├── _heartbeat
                                 └── _keepalive     (only for providers with a keepalive_interval)

The actor owns its outbound queue (``(context_id, commands)`` items, bounded for
:meth:`~ConnectionActor.send`) and the transport, and nothing else: which contexts it hosts
and what state it is in are the pool's facts (the allocator's record). It reports what
happens — opened, an event arrived, ended(error) — through its :class:`ConnectionOwner`'s
synchronous methods and asks the owner, when it writes, whether a context still lives here.
``run`` never raises except ``Cancelled``.

Who writes. The sender task takes the whole queue at once, encodes it and writes it with one
``send_all``: text pushed token by token leaves in batches. But a command the server acts on
at once — a flush, a close, a cancel, text with ``flush=True`` — would then wait one pass of
trio's run queue for the sender, which under load is the largest share of the time to first
audio. So while trio is busy (``_BUSY_RUN_QUEUE`` tasks or more waiting to run) the task
that queues such a command takes the queue itself, encodes it and writes it with one
non-blocking write (:meth:`WebSocketTransport.send_nowait`), without yielding; what the socket
does not take is left to the sender. On a quiet scheduler the sender, run at once, writes it
and joins it with what follows (a flush and the close after it: one write, not two). The
queue is taken in order and encoded in one synchronous step by whoever takes it, so frames
leave in the order they were queued. Events a codec makes while encoding are always routed
by the sender task.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from . import transport as _transport
from .commands import Cancel, Close, Command, Create, Flush, SendText
from .errors import ConnectionLost, HandshakeRejected, TTSError
from .events import Event
from .provider import ClientCodec, Provider
from .quota import Lease, Quota
from .telemetry import NO_HANDSHAKE_PROBE, HandshakeProbe
from .transport import TransportFactory, WebSocketTransport

__all__ = [
    "ConnectionActor",
    "ConnectionOwner",
    "ConnectionSettings",
    "ConnectionStatistics",
    "TransportFactory",
]

logger = logging.getLogger("trio_tts.connection")


@attrs.frozen(kw_only=True)
class ConnectionSettings:
    """Per-connection timing and sizing (derived from :class:`~trio_tts.PoolSettings`)."""

    handshake_timeout: float = 10.0
    #: How long the socket's closing handshake may take.
    close_timeout: float = 2.0
    heartbeat_interval: float | None = 20.0
    heartbeat_timeout: float = 10.0
    outbound_buffer: int = 64
    max_message_size: int = _transport.DEFAULT_MAX_MESSAGE_SIZE
    #: How long a graceful close waits for the answer to the codec's ``goodbye`` frames
    #: (Rime's ``eos``) before sending the close frame anyway.
    goodbye_timeout: float = 1.0
    #: Opens one WebSocket (the seam for ``trio_tts.testing``'s in-memory transport).
    transport_factory: TransportFactory = _transport.connect


@attrs.frozen
class ConnectionStatistics:
    id: int
    frames_sent: int
    frames_received: int
    pauses: int = 0


_Task = Callable[["_transport.Transport"], Awaitable[None]]
#: The outbound item of a keep-alive round: no context, no command.
_KEEPALIVE_ROUND: tuple[str, list[Command]] = ("", [])


class ConnectionOwner(Protocol):
    """What a :class:`ConnectionActor` reports to (the pool). All synchronous."""

    def connection_opened(self, conn_id: int) -> None:
        """The handshake succeeded."""
        ...

    def connection_ended(self, conn_id: int, error: ConnectionLost | None) -> None:
        """The connection is gone (``error`` None: closed on request). Called once."""
        ...

    def connection_lease_lost(self, conn_id: int) -> None:
        """The fleet revoked the connection's lease."""
        ...

    def hosts(self, conn_id: int, context_id: str) -> bool:
        """Does ``context_id`` still live on ``conn_id`` (else its commands are dropped)?"""
        ...

    def route(self, conn_id: int, event: Event) -> None:
        """An event decoded from the connection's frames (or made by its codec)."""
        ...

    def backlogged(self, conn_id: int) -> bool:
        """Is every context on ``conn_id`` backlogged (the receiver then pauses until
        :meth:`ConnectionActor.resume`)? False without contexts."""
        ...


class ConnectionActor:
    """One provider WebSocket hosting up to ``contexts_per_connection`` contexts."""

    def __init__(
        self,
        conn_id: int,
        provider: Provider[Any],
        url: str,
        settings: ConnectionSettings,
        owner: ConnectionOwner,
        handshake_limiter: trio.CapacityLimiter,
        quota: Quota | None = None,
        *,
        sockets: trio.Semaphore | None = None,
        not_before: float = 0.0,
        probe: HandshakeProbe = NO_HANDSHAKE_PROBE,
    ) -> None:
        self.id = conn_id
        self._probe = probe
        # The pool's permits of open sockets (``max_connections``): one is held from before
        # the handshake until the socket is closed, so a connection the allocator already
        # let go of (closing: a goodbye awaiting its answer) still counts at the provider.
        self._sockets = sockets
        self._socket_held = False
        # A fleet-wide connection quota: a lease is held for the socket's whole lifetime.
        self._quota = quota
        self._lease: Lease | None = None
        self._provider = provider
        self._url = url
        self._settings = settings
        self._owner = owner
        self._handshake_limiter = handshake_limiter
        self._not_before = not_before
        self._codec: ClientCodec = provider.new_codec()
        # Outbound: commands in order, taken all at once by the sender or by a caller
        # that queues an urgent command (see the module docstring).
        self._queue: collections.deque[tuple[str, list[Command]]] = collections.deque()
        self._queue_limit = max(1, settings.outbound_buffer)
        self._work = trio.lowlevel.ParkingLot()  # the sender, waiting for commands
        self._room = trio.lowlevel.ParkingLot()  # send() callers, waiting for room
        self._accepting = True  # False after close_soon(): sends raise ClosedResourceError
        self._broken = False  # the sender is gone: sends raise BrokenResourceError
        self._direct: WebSocketTransport | None = None  # while serving, if it can write now
        self._direct_error: ConnectionLost | None = None  # a direct write found it broken
        self._direct_events: list[Event] = []  # made while a caller encoded: the sender routes
        self._nursery: trio.Nursery | None = None
        self._cancel_scope = trio.CancelScope()
        self._opened = False
        self._closing = False
        self._error: ConnectionLost | None = None
        self._write_failed = False
        self._frames_sent = 0
        self._frames_received = 0
        # Set by the receiver on the first frame after the goodbye frames were sent.
        self._goodbye_sent = False
        self._goodbye_answered = trio.Event()
        # Flow control: set by the owner when a context it routed to is backlogged; the
        # receiver then asks ``owner.backlogged`` before its next read.
        self.backlog_check = False
        #: The receiver holds off reading: every context here is backlogged.
        self.paused = False
        self._resume: trio.Event | None = None
        self._pinging = False  # a heartbeat awaits its pong: keep reading
        self._pauses = 0

    def __repr__(self) -> str:
        return f"<ConnectionActor #{self.id}>"

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            id=self.id,
            frames_sent=self._frames_sent,
            frames_received=self._frames_received,
            pauses=self._pauses,
        )

    def task_names(self) -> list[str]:
        """Names of the tasks in this connection's nursery (for leak checks)."""
        nursery = self._nursery
        if nursery is None:
            return []
        return [t.name.rsplit(".", 1)[-1] for t in nursery.child_tasks]

    # -- called by the pool ----------------------------------------------------------------

    async def send(self, context_id: str, commands: list[Command]) -> None:
        """Queue ``commands`` for ``context_id``; waits only while the outbound queue is full
        (``outbound_buffer`` items).

        With room it returns without a trip through the scheduler (it is still a
        cancellation point), so the commands a caller issues back to back leave together.
        While trio is busy, an urgent one (flush, close, cancel, text with ``flush=True``) is
        written from this task before it returns, with everything queued before it (see the
        module docstring).

        Raises:
            trio.BrokenResourceError: the connection is gone.
            trio.ClosedResourceError: the connection is closing (:meth:`close_soon`).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            self._check_accepting()
            if len(self._queue) < self._queue_limit:
                break
            await self._room.park()
        self._enqueue(context_id, commands)

    def post(self, context_id: str, command: Command) -> None:
        """Queue ``command`` without waiting (past the bound if need be: one per context at
        most). A closing or dead connection drops it (the pool fails or moves the context
        anyway)."""
        if self._accepting and not self._broken:
            self._enqueue(context_id, [command])

    def close_soon(self) -> None:
        """Close gracefully: flush queued commands, send a close frame, end ``run``."""
        self._closing = True
        if not self._opened:
            self._cancel_scope.cancel()
        else:
            self._accepting = False
            self._work.unpark_all()
            self._room.unpark_all()

    def abort(self) -> None:
        """Cancel everything now (the pool's close deadline passed)."""
        self._cancel_scope.cancel()

    def resume(self) -> None:
        """Trio side: a paused receiver asks ``owner.backlogged`` again (a context drained,
        ended or joined)."""
        if self._resume is not None:
            self._resume.set()

    # -- the outbound queue ----------------------------------------------------------------

    def _check_accepting(self) -> None:
        if self._broken:
            raise trio.BrokenResourceError("the connection is gone")
        if not self._accepting:
            raise trio.ClosedResourceError("the connection is closing")

    def _break_outbound(self) -> None:
        """Nothing more will be written: waiting and later senders raise at once."""
        self._broken = True
        self._room.unpark_all()

    def _enqueue(self, context_id: str, commands: list[Command]) -> None:
        self._queue.append((context_id, commands))
        direct = self._direct
        if (
            direct is not None
            and _urgent(commands)
            and trio.lowlevel.current_statistics().tasks_runnable >= _BUSY_RUN_QUEUE
        ):
            self._write_now(direct)
        else:
            self._work.unpark_all()

    def _write_now(self, transport: WebSocketTransport) -> None:
        """Take the queue and write it from the calling task (see the module docstring)."""
        frames, events = self._take()
        try:
            transport.send_nowait(frames)
        except ConnectionLost as exc:  # the sender reports it, as if its own write failed
            self._direct_error = exc
        else:
            self._frames_sent += len(frames)
        self._direct_events += events
        if transport.write_pending or events or self._direct_error is not None:
            self._work.unpark_all()

    def _take(self) -> tuple[list[str], list[Event]]:
        """Take every queued item and encode it (one synchronous step: frames stay in queue
        order). Items of a context that no longer lives here are dropped."""
        codec = self._codec
        hosts = self._owner.hosts
        queue = self._queue
        frames: list[str] = []
        events: list[Event] = []
        while queue:
            context_id, commands = queue.popleft()
            if not hosts(self.id, context_id):
                if not commands:  # a keep-alive round (_keepalive), in command order
                    frames += codec.keepalive()
                continue  # the context left this connection (moved or released)
            for command in commands:
                frames += _encode(codec, context_id, command)
                events += codec.take_events()
        self._room.unpark_all()
        return frames, events

    # -- the actor -------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait for the pool's backoff, connect (one attempt), serve until closed or failed,
        report the end to the owner, then close the socket (shielded, bounded): the contexts
        hear of a failure before the goodbye."""
        error: ConnectionLost | None = None
        transport: _transport.Transport | None = None
        try:
            with self._cancel_scope:
                try:
                    await trio.sleep_until(self._not_before)
                    if self._sockets is not None:  # never over max_connections at the server
                        await self._sockets.acquire()
                        self._socket_held = True
                    if self._quota is not None:  # before the handshake: never over the fleet
                        self._lease = await self._quota.acquire()
                    transport = await self._connect()
                except ConnectionLost as exc:
                    error = exc
                except TTSError as exc:  # the connection quota is unreachable (fail closed)
                    error = ConnectionLost(f"connection quota: {exc}")
                else:
                    error = await self._serve(transport)
        finally:
            if error is None and not self._closing:
                error = ConnectionLost("connection closed")
            self._break_outbound()
            self._owner.connection_ended(self.id, error)
            if transport is not None:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self._settings.close_timeout):
                        await transport.aclose()
            if self._lease is not None and self._quota is not None:
                self._quota.release(self._lease)  # after the close: the socket is gone
            if self._socket_held and self._sockets is not None:
                self._socket_held = False
                self._sockets.release()

    async def _connect(self) -> _transport.Transport:
        settings = self._settings
        async with self._handshake_limiter:
            self._probe.started()
            try:
                transport = await settings.transport_factory(
                    self._url,
                    self._provider.headers(),
                    handshake_timeout=settings.handshake_timeout,
                    close_timeout=settings.close_timeout,
                    max_message_size=settings.max_message_size,
                )
            except BaseException as exc:
                self._probe.ended(exc)
                if isinstance(exc, HandshakeRejected):
                    logger.info(
                        "connection #%d: handshake rejected (HTTP %d)", self.id, exc.status
                    )
                raise
            self._probe.ended(None)
            return transport

    async def _serve(self, transport: _transport.Transport) -> ConnectionLost | None:
        self._opened = True
        self._owner.connection_opened(self.id)
        try:
            async with trio.open_nursery() as nursery:  # this connection's tasks only
                self._nursery = nursery
                if isinstance(transport, WebSocketTransport) and transport.direct_writes:
                    self._direct = transport
                tasks: list[_Task] = [self._sender, self._receiver]
                if self._settings.heartbeat_interval is not None:
                    tasks.append(self._heartbeat)
                if self._provider.keepalive_interval is not None:
                    tasks.append(self._keepalive)
                if self._lease is not None:
                    tasks.append(self._watch_lease)
                for task in tasks:
                    nursery.start_soon(self._guard, task, transport, nursery.cancel_scope)
        finally:
            self._nursery = None
            self._direct = None
        return self._error

    async def _guard(
        self,
        task: _Task,
        transport: _transport.Transport,
        scope: trio.CancelScope,
    ) -> None:
        """Run one of the actor's tasks; when it ends (a failure, first one wins, or the
        sender's graceful close) the whole connection ends — except a failed write: then the
        receiver goes on reading what the server already sent (the transport bounds that)
        and ends the connection itself."""
        try:
            await task(transport)
        except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            lost = exc if isinstance(exc, ConnectionLost) else ConnectionLost(type(exc).__name__)
            if task == self._receiver:
                # The reader saw how the connection really ended (close code, EOF): that
                # beats a write error recorded before it.
                if not self._closing and (self._error is None or self._write_failed):
                    self._error = lost
            elif self._error is None:
                self._error = lost
            if task != self._receiver and not self._closing and not self._write_failed:
                if task == self._sender:
                    self._write_failed = True
                    # Callers blocked on a full outbound queue learn at once; frames already
                    # in the socket still reach their contexts through the receiver, which
                    # ends the connection (bounded here in case the transport does not).
                    self._direct = None
                    self._break_outbound()
                    assert self._nursery is not None
                    self._nursery.start_soon(self._drain_bound, scope)
                    return
            elif task != self._receiver and self._write_failed:
                return  # e.g. the heartbeat on the failed socket: the receiver decides
        except Exception as exc:  # a bug must not take the pool down: report it as a loss
            logger.exception("connection #%d: internal error", self.id)
            if self._error is None:
                self._error = ConnectionLost(f"internal error: {type(exc).__name__}")
        scope.cancel()

    async def _drain_bound(self, scope: trio.CancelScope) -> None:
        await trio.sleep(self._settings.close_timeout)
        scope.cancel()

    async def _sender(self, transport: _transport.Transport) -> None:
        """Write the queue, one ``send_all`` for everything queued at once; finish what
        direct writes left; route codec events. Ends with a graceful close."""
        codec = self._codec
        route = self._owner.route
        while True:
            if self._direct_error is not None:
                raise self._direct_error
            if self._direct_events:
                events, self._direct_events = self._direct_events, []
                for event in events:
                    route(self.id, event)
            elif self._queue:
                frames, events = self._take()
                if frames:
                    await transport.send_many(frames)
                    self._frames_sent += len(frames)
                for event in events:
                    route(self.id, event)
            elif self._direct is not None and self._direct.write_pending:
                await self._direct.flush()
            elif not self._accepting:
                break
            else:
                await self._work.park()
        # close_soon() stopped the queue and it is written: a graceful close; _guard ends
        # the rest.
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
        if isinstance(transport, WebSocketTransport):
            # One cancel scope around the loop, not one per read (the transport's bound on
            # its reads after a failed send); once that bound ends the loop, what was read
            # is still routed, then the transport raises.
            with transport.reading():
                await self._receive(transport)
        await self._receive(transport)

    async def _receive(self, transport: _transport.Transport) -> None:
        codec = self._codec
        route = self._owner.route
        # The rest of a read's batch without a coroutine per message (WebSocketTransport).
        nowait = transport.receive_nowait if isinstance(transport, WebSocketTransport) else None
        while True:
            if self.backlog_check:
                self.backlog_check = False
                await self._hold_while_backlogged()
            frame = None if nowait is None else nowait()
            if frame is None:
                frame = await transport.receive()
            self._frames_received += 1
            if self._goodbye_sent:
                self._goodbye_answered.set()
            for event in codec.receive(frame):
                route(self.id, event)

    async def _hold_while_backlogged(self) -> None:
        """Flow control: no read while every context here is backlogged (the owner says
        so); the data waits in the socket. Not while a heartbeat awaits its pong."""
        backlogged = self._owner.backlogged
        while not self._pinging and backlogged(self.id):
            self._resume = resume = trio.Event()
            self.paused = True
            self._pauses += 1
            try:
                await resume.wait()
            finally:
                self.paused = False
                self._resume = None

    async def _watch_lease(self, transport: _transport.Transport) -> None:
        """A lost connection lease retires this connection after its current utterances."""
        assert self._lease is not None
        await self._lease.lost.wait()
        self._owner.connection_lease_lost(self.id)
        await trio.sleep_forever()

    async def _keepalive(self, transport: _transport.Transport) -> None:
        """Every ``keepalive_interval``, queue a keep-alive round: the sender asks the codec
        for its keep-alive frames when it reaches it, so they follow the commands queued
        before (never a keep-alive after a context's close). Ends when the outbound queue
        closes (a graceful close): the sender then ends the connection."""
        interval = self._provider.keepalive_interval
        assert interval is not None
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                await trio.sleep(interval)
                await self.send(*_KEEPALIVE_ROUND)
        await trio.sleep_forever()

    async def _heartbeat(self, transport: _transport.Transport) -> None:
        settings = self._settings
        assert settings.heartbeat_interval is not None
        while True:
            await trio.sleep(settings.heartbeat_interval)
            if self.paused:
                continue  # held on purpose (flow control): no pong could be read now
            self._pinging = True
            try:
                with trio.move_on_after(settings.heartbeat_timeout) as scope:
                    await transport.ping()
            finally:
                self._pinging = False
            if scope.cancelled_caught:
                raise ConnectionLost("heartbeat: no pong from the server")


#: Urgent commands are written by their caller only while at least this many trio tasks wait
#: to run (the sender would wait for all of them). With fewer, the sender is scheduled at
#: once and batches them: a flush and the close that usually follows leave in one write, not
#: two (on a quiet machine the direct write cost ~25 % more CPU per paced turn for no gain
#: in latency).
_BUSY_RUN_QUEUE = 16


def _urgent(commands: list[Command]) -> bool:
    """Does the server act on one of ``commands`` at once (worth a write of its own)?"""
    for command in commands:
        if isinstance(command, (Flush, Close, Cancel)):
            return True
        if isinstance(command, SendText) and command.flush:
            return True
    return False


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
