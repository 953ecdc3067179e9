"""trio-websocket as the transport: the same :class:`~trio_tts._core.transport.Transport`
interface as the default one, on the ``trio-websocket`` library.

trio-websocket runs one background *reader task* per connection: it reads the socket, parses
frames with ``wsproto``, answers pings and queues messages for ``get_message()``. That task
needs a nursery that outlives ``connect``, and our ``Transport`` has no ``async with``, so the
caller lends one. Think of the lent nursery as a building and each connection as a tenant with
a flat of its own: the tenant (``_run``) owns the socket and a private nursery for the reader,
and everything that goes wrong in the flat stays there::

    lent nursery ── TrioWebSocketTransport._run    (one task per socket; owns the stream and
                      └── reader nursery            closes it; never raises into the lender
                            └── trio-websocket's     after the handshake)
                                reader task

:func:`connect_trio_websocket` starts ``_run`` with ``nursery.start``: handshake failures come
back from ``start`` as our errors (``HandshakeRejected``, ``ConnectionLost``). Afterwards
``_run`` only waits; :meth:`~TrioWebSocketTransport.aclose` cancels it, which ends the reader
and closes the socket. A transport that is never closed keeps its lender's nursery open, as
any trio-websocket connection does.

With a pool, :func:`open_trio_websocket_factory` owns the lent nursery around the pool::

    async with (
        open_trio_websocket_factory() as factory,
        trio_tts.open_pool(provider, transport_factory=factory) as pool,
    ):
        ...

The socket is opened here (not by trio-websocket's ``connect_websocket``) so that DNS, TCP and
TLS errors map to :class:`ConnectionLost` precisely, and it is handed to trio-websocket wrapped
in a :class:`_WatchedStream` that reports its end: trio-websocket itself wakes neither a pending
handshake nor a pending ping when the server hangs up. Messages name ``host:port`` only —
never the path, the query or a header — and trio-websocket's own debug log line with the URL
is never emitted (it belongs to ``connect_websocket``).
"""

from __future__ import annotations

import http
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NamedTuple, cast, final

import trio
import trio_websocket

from .errors import (
    ConnectionLost,
    HandshakeRejected,
    InvalidOptions,
    connect_failure,
    redact,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from .connection import TransportFactory
    from .transport import Transport

__all__ = [
    "TrioWebSocketFactory",
    "TrioWebSocketTransport",
    "connect_trio_websocket",
    "open_trio_websocket_factory",
]

_TOO_BIG = "Exceeded maximum message size"  # trio-websocket's reason when *we* refused one

logger = logging.getLogger("trio_tts.transport")


class _RedactFilter(logging.Filter):
    """On trio-websocket's logger: its DEBUG line for a close repeats the server's reason,
    which a careless server fills with the credential. Registered secrets become ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: keep the format string, drop the arguments
            text = str(record.msg)
        record.msg, record.args = redact(text), None
        return True


_LIBRARY_LOGGER = logging.getLogger("trio-websocket")
if not any(isinstance(f, _RedactFilter) for f in _LIBRARY_LOGGER.filters):
    _LIBRARY_LOGGER.addFilter(_RedactFilter())


class _Options(NamedTuple):
    """trio-websocket's per-connection sizes (see :func:`connect_trio_websocket`)."""

    max_message_size: int = 1_048_576
    message_queue_size: int = 16
    receive_buffer_size: int = 256 * 1024


class _WatchedStream(trio.abc.Stream):
    """The socket as trio-websocket sees it; calls ``on_end`` once it ends (EOF, error, close)."""

    def __init__(self, stream: trio.abc.Stream, on_end: Callable[[], None]) -> None:
        self._stream = stream
        self._on_end = on_end

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_end()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_end()
            raise
        if not data:
            self._on_end()
        return data

    async def aclose(self) -> None:
        self._on_end()
        await self._stream.aclose()


@final
class TrioWebSocketTransport:
    """A client WebSocket on trio-websocket, behind the ``Transport`` interface.

    Create it with :func:`connect_trio_websocket`. One task at a time may call
    :meth:`receive`; any number may call :meth:`send`, :meth:`ping` and :meth:`aclose`.
    Unlike the default transport, pings are answered and pongs processed by trio-websocket's
    reader task even while nobody receives — until ``message_queue_size`` messages wait.
    """

    def __init__(self, host: str, port: int, *, close_timeout: float) -> None:
        self._where = f"{host}:{port}"
        self._close_timeout = close_timeout
        self._ws: trio_websocket.WebSocketConnection | None = None
        # Why this transport is unusable from our side (closed by us, a broken write, a
        # failed reader). What the server did is the connection's own ``closed``.
        self._lost: ConnectionLost | None = None
        self._ended = False  # the socket reached EOF, failed or was closed
        self._wake_on_end: set[trio.CancelScope] = set()  # the handshake and pending pings
        self._scope = trio.CancelScope()  # _run's: cancelled by aclose()
        self._done = trio.Event()  # _run returned: the reader ended, the socket is closed
        self._closing = False
        self._receiving = False

    def __repr__(self) -> str:
        if self._done.is_set():
            state = "closed"
        elif self._closing:
            state = "closing"
        elif self._lost is not None or (self._ws is not None and self._ws.closed is not None):
            state = "failed"
        else:
            state = "open"
        return f"<TrioWebSocketTransport {self._where} {state}>"

    @property
    def _conn(self) -> trio_websocket.WebSocketConnection:
        assert self._ws is not None, "used before connect_trio_websocket() returned it"
        return self._ws

    # ----------------------------------------------------------------------------- the I/O

    async def send(self, message: str) -> None:
        """Send ``message`` as one text frame.

        Raises:
            ConnectionLost: the connection is closing, closed or failed; also when this call
                was interrupted mid-write (the socket is then closed: it may hold half a frame).
        """
        await self.send_many((message,))

    async def send_many(self, messages: Sequence[str]) -> None:
        """Send each of ``messages`` as a text frame, in order. Raises as :meth:`send`."""
        self._check_open()
        ws = self._conn
        try:
            for message in messages:
                await ws.send_message(message)
            return
        except trio_websocket.ConnectionClosed:
            pass  # raised below, unchained: see receive()
        except BaseException:
            self._break(ConnectionLost(f"write to {self._where} failed"))
            raise
        raise self._lost_now()

    async def receive(self) -> str | bytes:
        """Return the next message (``str`` for text, ``bytes`` for binary).

        Messages that arrived before the server closed are returned first; then every call
        raises.

        Raises:
            ConnectionLost: the connection ended (``code``: the server's close code, 1006 when
                the TCP connection ended without a close frame, 1009 for a message over
                ``max_message_size``, ours after :meth:`aclose`).
            trio.BusyResourceError: another task is already inside ``receive()``.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving")
        self._receiving = True
        try:
            try:
                return await self._conn.get_message()
            except trio_websocket.ConnectionClosed:
                # Raised below, outside this handler: the ConnectionClosed's close reason
                # may echo a secret, and `from None` would still keep it as __context__.
                pass
            if self._closing:
                # aclose() is waiting for the server's close frame: let it, then fail (the
                # connection actor ends the whole connection when its receiver fails).
                await self._done.wait()
        finally:
            self._receiving = False
        raise self._lost_now()

    async def ping(self) -> None:
        """Send a ping and wait for its pong (bound it with your own timeout).

        Raises:
            ConnectionLost: the connection closed or failed before the pong arrived.
        """
        self._check_open()
        if self._ended:
            raise self._lost_now()
        closed = False
        with trio.CancelScope() as wake:
            self._wake_on_end.add(wake)
            try:
                await self._conn.ping()
            except trio_websocket.ConnectionClosed:
                closed = True  # raised below, unchained: see receive()
            finally:
                self._wake_on_end.discard(wake)
        if closed or wake.cancelled_caught:
            raise self._lost_now()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait at most ``close_timeout`` for the server's, then close the
        socket and wait for the reader task to end.

        Idempotent (a second call waits for the first to finish); a task inside
        :meth:`receive` raises :class:`ConnectionLost` with ``code`` once it has. Never raises
        for a dead or silent peer; honours the caller's cancellation (the socket is closed
        regardless).
        """
        if self._closing:
            await self._done.wait()
            return
        self._closing = True
        usable = self._lost is None and self._conn.closed is None
        if usable:
            self._lost = ConnectionLost(f"connection to {self._where} closed", code=code)
        else:
            self._lost_now()  # the server's close (or our failure) stays the answer
        try:
            if usable:
                with trio.move_on_after(self._close_timeout):
                    await self._conn.aclose(code, reason or None)
        finally:
            self._scope.cancel()  # the reader ends and _run closes the socket
            await self._done.wait()

    # -------------------------------------------------------------------------- the state

    def _check_open(self) -> None:
        if self._lost is not None or self._conn.closed is not None:
            raise self._lost_now()

    def _lost_now(self) -> ConnectionLost:
        """The one answer to "why is this connection unusable", fixed once given."""
        if self._lost is None:
            self._lost = self._from_close_reason(self._conn.closed)
        return self._lost

    def _from_close_reason(self, closed: trio_websocket.CloseReason | None) -> ConnectionLost:
        where = self._where
        # No reason: the reader stopped on its own, for a lost socket or for bad data.
        code = closed.code if closed is not None else 1006 if self._ended else 1002
        if code == 1006:
            return ConnectionLost(f"connection to {where} lost without a close frame", code=1006)
        if closed is None:
            return ConnectionLost(f"invalid WebSocket data from {where}", code=1002)
        if code == 1009 and (closed.reason or "").startswith(_TOO_BIG):
            return ConnectionLost(
                f"a message from {where} is larger than max_message_size, so the connection "
                "was closed with code 1009 (message too big); max_message_size is a setting",
                code=1009,
            )
        text = f"connection to {where} closed by the server (code {code})"
        reason = redact(closed.reason or "")[:80]
        return ConnectionLost(f"{text}: {reason}" if reason else text, code=code)

    def _break(self, lost: ConnectionLost) -> None:
        """Fail the transport from our side and close the socket (by ending _run)."""
        if self._lost is None:
            self._lost = lost
        self._scope.cancel()

    def _stream_ended(self) -> None:
        self._ended = True
        for scope in self._wake_on_end:
            scope.cancel()

    # ------------------------------------------------------------------------- the socket

    async def _run(
        self,
        host: str,
        port: int,
        resource: str,
        ssl_context: ssl.SSLContext | None,
        headers: list[tuple[bytes, bytes]],
        options: _Options,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The socket's whole life, in the lent nursery: open, handshake, wait for aclose()."""
        stream: trio.abc.Stream | None = None
        opened = False
        try:
            with self._scope:
                stream = await self._open_stream(host, port, ssl_context)
                watched = _WatchedStream(stream, self._stream_ended)
                failure: ConnectionLost | None = None
                try:
                    async with trio.open_nursery() as readers:  # trio-websocket's reader only
                        with trio.CancelScope() as handshake:
                            self._wake_on_end.add(handshake)
                            self._ws = await trio_websocket.wrap_client_stream(
                                readers,
                                # Typed for trio's concrete streams; any Stream works.
                                cast(trio.SocketStream, watched),
                                _host_header(host, port, ssl_context is not None),
                                resource,
                                extra_headers=headers,
                                message_queue_size=options.message_queue_size,
                                max_message_size=options.max_message_size,
                                receive_buffer_size=options.receive_buffer_size,
                            )
                        self._wake_on_end.discard(handshake)
                        if handshake.cancelled_caught:
                            raise ConnectionLost(
                                f"WebSocket handshake with {self._where} failed (connection closed)"
                            )
                        opened = True
                        task_status.started()
                        await trio.sleep_forever()  # until aclose() or _break() cancels _scope
                except BaseExceptionGroup as group:
                    errors, _ = group.split(Exception)
                    if errors is None:
                        raise  # only cancellations: the scopes that own them catch them
                    if opened:  # never raise into the lender's nursery: fail this transport
                        name = type(_leaves(errors)[0]).__name__
                        logger.warning("connection to %s: reader failed (%s)", self._where, name)
                        self._break(ConnectionLost(f"connection to {self._where} failed ({name})"))
                    else:
                        failure = _handshake_error(errors, self._where)
                if failure is not None:
                    # Raised outside the except block: no __context__ chain leads from it to
                    # trio-websocket's ConnectionRejected (whose headers and body a careless
                    # server fills with the credential). nursery.start() reports it.
                    raise failure
        finally:
            self._stream_ended()  # wake pings still waiting
            if stream is not None:
                await trio.aclose_forcefully(stream)
            self._done.set()

    async def _open_stream(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectionLost(f"could not connect to {self._where}: {_detail(exc)}") from None
        if ssl_context is None:
            return tcp
        tls = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=True)
        try:
            await tls.do_handshake()
        except BaseException as exc:
            await trio.aclose_forcefully(tcp)
            if isinstance(exc, (trio.BrokenResourceError, OSError)):
                cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
                detail = _detail(cause)
                raise ConnectionLost(f"could not connect to {self._where}: {detail}") from None
            raise
        return tls


def _detail(exc: BaseException) -> str:
    return connect_failure(exc) or type(exc).__name__


def _host_header(host: str, port: int, secure: bool) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if secure else 80) else f"{name}:{port}"


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def _handshake_error(group: BaseExceptionGroup[Exception], where: str) -> ConnectionLost:
    """The error to report for a failed handshake: the server's rejection first, then ours."""
    leaves = _leaves(group)
    for exc in leaves:
        if isinstance(exc, trio_websocket.ConnectionRejected):
            try:
                phrase = http.HTTPStatus(exc.status_code).phrase
            except ValueError:
                phrase = ""
            return HandshakeRejected(exc.status_code, phrase, retry_after=_retry_after(exc.headers))
    for exc in leaves:
        if isinstance(exc, ConnectionLost):
            return exc
    return ConnectionLost(f"WebSocket handshake with {where} failed ({type(leaves[0]).__name__})")


def _retry_after(headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    for name, raw in headers:
        if name.lower() == b"retry-after":
            return retry_after_seconds(raw.decode("latin-1"))
    return None


def _parse_url(url: str) -> tuple[str, int, str, bool]:
    """``(host, port, resource, secure)`` of a ws/wss URL; the message never echoes it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except (TypeError, ValueError):
        raise InvalidOptions("url: not a valid ws:// or wss:// URL") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidOptions("url: not a valid ws:// or wss:// URL")
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port or (443 if secure else 80), resource, secure


async def connect_trio_websocket(
    url: str,
    headers: Sequence[tuple[str, str]],
    *,
    nursery: trio.Nursery,
    handshake_timeout: float = 10.0,
    close_timeout: float = 2.0,
    max_message_size: int = 1_048_576,
    ssl_context: ssl.SSLContext | None = None,
    message_queue_size: int = 16,
    receive_buffer_size: int = 256 * 1024,
) -> TrioWebSocketTransport:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) with trio-websocket, sending the
    extra handshake ``headers``; its background task runs in ``nursery`` until :meth:`aclose`.

    TCP connect, TLS and the HTTP upgrade together are bounded by ``handshake_timeout``.
    ``message_queue_size`` messages are buffered before the reader stops reading the socket;
    ``receive_buffer_size`` is its read size (trio-websocket's own defaults, 1 and 4 KiB,
    cost ~2.5x the CPU per audio message: ``benchmarks/bench_transport.py``). Error messages
    name ``host:port`` only.

    Raises:
        InvalidOptions: ``url`` is not a ws/wss URL.
        HandshakeRejected: the server answered the upgrade with an HTTP status (``status``,
            ``retry_after`` from a ``Retry-After`` header).
        ConnectionLost: DNS failure, refused connection, TLS failure, an invalid handshake
            response, or the deadline passed.
    """
    host, port, resource, secure = _parse_url(url)
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    transport = TrioWebSocketTransport(host, port, close_timeout=close_timeout)
    extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    options = _Options(max_message_size, message_queue_size, receive_buffer_size)
    with trio.move_on_after(handshake_timeout):
        await nursery.start(
            transport._run, host, port, resource, ssl_context if secure else None, extra, options
        )
        return transport
    raise ConnectionLost(
        f"WebSocket handshake with {host}:{port} timed out after {handshake_timeout}s"
    )


@final
class TrioWebSocketFactory:
    """Opens trio-websocket transports whose tasks live in one nursery: a
    ``transport_factory`` for :func:`trio_tts.open_pool` (see
    :func:`open_trio_websocket_factory`)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        max_message_size: int = 1_048_576,
        ssl_context: ssl.SSLContext | None = None,
        message_queue_size: int = 16,
        receive_buffer_size: int = 256 * 1024,
    ) -> None:
        self._nursery = nursery
        self._max_message_size = max_message_size
        self._ssl_context = ssl_context
        self._message_queue_size = message_queue_size
        self._receive_buffer_size = receive_buffer_size

    def __repr__(self) -> str:
        return f"<TrioWebSocketFactory sockets={len(self._nursery.child_tasks)}>"

    async def __call__(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        *,
        handshake_timeout: float = 10.0,
        close_timeout: float = 2.0,
        **_ignored: object,
    ) -> TrioWebSocketTransport:
        """Open one socket (see :func:`connect_trio_websocket`); its task runs in this
        factory's nursery. Other keywords a caller passes (a ``nursery``) are ignored."""
        return await connect_trio_websocket(
            url,
            headers,
            nursery=self._nursery,
            handshake_timeout=handshake_timeout,
            close_timeout=close_timeout,
            max_message_size=self._max_message_size,
            ssl_context=self._ssl_context,
            message_queue_size=self._message_queue_size,
            receive_buffer_size=self._receive_buffer_size,
        )


@asynccontextmanager
async def open_trio_websocket_factory(
    *,
    max_message_size: int = 1_048_576,
    ssl_context: ssl.SSLContext | None = None,
    message_queue_size: int = 16,
    receive_buffer_size: int = 256 * 1024,
) -> AsyncIterator[TrioWebSocketFactory]:
    """A :class:`TrioWebSocketFactory` owning the nursery its sockets live in.

    Open the pool inside it, so the pool closes every socket before this block ends::

        async with (
            open_trio_websocket_factory() as factory,
            trio_tts.open_pool(provider, transport_factory=factory) as pool,
        ):
            ...

    Sockets still open when the block ends (a pool that outlived it) are aborted.
    """
    async with trio.open_nursery() as nursery:  # every socket's _run (and its reader task)
        yield TrioWebSocketFactory(
            nursery,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            message_queue_size=message_queue_size,
            receive_buffer_size=receive_buffer_size,
        )
        nursery.cancel_scope.cancel()


if TYPE_CHECKING:  # mypy checks that both fit the interfaces the connection actor uses

    def _fits(factory: TrioWebSocketFactory) -> tuple[TransportFactory, type[Transport]]:
        return factory, TrioWebSocketTransport
