"""The local server over trio memory channels: the same ASGI app, no sockets, no hypercorn.

Think of it as a crossover cable between the pool and the server's ASGI application. The
handshake, every frame and every close go through :class:`_Link` — a pair of in-memory
queues plus the few things a wire does on its own (a close code, an abrupt end, a silent
peer) — so every fault of :class:`~trio_tts.server.Faults` behaves exactly as over TCP, only
deterministically: under ``trio.testing.MockClock(autojump_threshold=0)`` a test sees exact
virtual times (a 429 with ``Retry-After: 2`` is retried at exactly +2 s).

Plug it into a pool with ``transport_factory``::

    async with open_memory_server(ServerConfig(synthesizer="tone")) as server:
        provider = trio_tts.InworldProvider(url=server.ws_url)
        async with trio_tts.open_pool(provider, transport_factory=server.connect) as pool:
            ...

What the link models, frame for frame like :mod:`trio_tts._core.transport`: close codes and
reasons (``ConnectionLost.code``), an abrupt end (1006, the server's ``DropConnection``),
invalid UTF-8 in a text frame (1007), an oversize message (1009), a black hole that leaves
pings unanswered, and handshake refusals as :class:`~trio_tts.HandshakeRejected` with
``Retry-After``. Error texts name ``memory:80`` only: never the URL's path, query or headers.
"""

from __future__ import annotations

import http
import itertools
import math
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._core.errors import ConnectionLost, HandshakeRejected, InvalidOptions, redact
from .._core.transport import DEFAULT_MAX_MESSAGE_SIZE
from ..server import App, Core, LocalServer, ServerConfig

__all__ = ["HandshakeStatistics", "MemoryServer", "MemoryTransport", "open_memory_server"]

_HOST, _PORT = "memory", 80
_WHERE = f"{_HOST}:{_PORT}"
_DEFAULT_MAX_MESSAGE = DEFAULT_MAX_MESSAGE_SIZE


def _too_big(limit: int) -> str:
    """The real transport's message for an oversize message (same words, same code)."""
    return (
        f"a message from {_WHERE} is larger than max_message_size ({limit} bytes), so the "
        "connection was closed with code 1009 (message too big); max_message_size is a setting"
    )


@attrs.frozen
class HandshakeStatistics:
    """What the client side of the link saw of handshakes (``server.handshake_statistics()``).

    ``times`` are the (virtual) times each handshake started; ``peak_in_flight`` is the most
    handshakes in progress at once — the pool's ``max_concurrent_handshakes`` bounds it.
    """

    started: int
    in_flight: int
    peak_in_flight: int
    times: tuple[float, ...]


@attrs.define(eq=False)
class _Closed:
    code: int
    reason: str


_ABORT = object()  # the server dropped the "TCP connection": no close frame
_LOCAL = object()  # the client closed its end: wakes a pending receive()


class _Link:
    """One in-memory WebSocket: the ASGI side (``asgi_receive``/``asgi_send``) and the queues
    the client transport reads. Owned by :class:`MemoryServer`; the session reaches it as
    ``scope["trio_tts.link"]`` for the faults that act below the WebSocket layer."""

    def __init__(self) -> None:
        self.to_app_send, self.to_app_receive = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.to_client_send, self.to_client_receive = trio.open_memory_channel[object](math.inf)
        self.handshake_done = trio.Event()
        self.accepted = False
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.server_gone = False
        self.client_gone = False
        self.blackholed = False
        self.silenced = trio.Event()  # set when nothing more will come (for ping waiters)

    # -- the ASGI side (the server's app calls these) -----------------------------------------

    async def asgi_receive(self) -> dict[str, Any]:
        try:
            return await self.to_app_receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return {"type": "websocket.disconnect", "code": 1006}

    async def asgi_send(self, message: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        kind = message["type"]
        if not self.handshake_done.is_set():
            if kind == "websocket.accept":
                self.accepted = True
                self.handshake_done.set()
            elif kind == "websocket.close":  # a close before accept is an HTTP 403 (ASGI)
                self.status = 403
                self.handshake_done.set()
            elif kind == "websocket.http.response.start":
                self.status = int(message["status"])
                self.headers = list(message.get("headers", []))
            elif kind == "websocket.http.response.body" and not message.get("more_body"):
                self.handshake_done.set()
            return
        if self.server_gone or self.client_gone:
            return  # written to a closed socket: nobody reads it
        if kind == "websocket.send":
            if not self.blackholed:
                data = message.get("text")
                self.to_client_send.send_nowait(data if data is not None else message["bytes"])
        elif kind == "websocket.close":
            self.server_gone = True
            if not self.blackholed:
                code = int(message.get("code", 1000))
                self.to_client_send.send_nowait(_Closed(code, str(message.get("reason") or "")))
            # The client answers the close frame: the app hears the disconnect.
            self.to_app_send.send_nowait({"type": "websocket.disconnect", "code": 1000})

    # -- faults below the WebSocket layer (the session calls these) ---------------------------

    def abort(self) -> None:
        """Drop the connection without a close frame (the client sees code 1006)."""
        if not self.server_gone:
            self.server_gone = True
            self.to_client_send.send_nowait(_ABORT)
            self.to_app_send.send_nowait({"type": "websocket.disconnect", "code": 1006})

    def blackhole(self) -> None:
        """From now on nothing reaches the client, not even pongs."""
        self.blackholed = True

    # -- the client side ----------------------------------------------------------------------

    def client_close(self, code: int) -> None:
        if not self.client_gone:
            self.client_gone = True
            self.to_app_send.send_nowait({"type": "websocket.disconnect", "code": code})
            self.to_client_send.send_nowait(_LOCAL)
        self.silenced.set()


class MemoryTransport:
    """The client end of an in-memory WebSocket (implements ``trio_tts``' ``Transport``).

    Create it with :meth:`MemoryServer.connect`. One task at a time may call
    :meth:`receive`; :meth:`send`, :meth:`ping` and :meth:`aclose` may run concurrently.
    """

    def __init__(self, link: _Link, *, max_message_size: int) -> None:
        self._link = link
        self._max_message_size = max_message_size
        self._failure: ConnectionLost | None = None
        self._closing = False

    def __repr__(self) -> str:
        state = "closed" if self._closing else "failed" if self._failure is not None else "open"
        return f"<MemoryTransport {_WHERE} {state}>"

    def _fail(self, error: ConnectionLost) -> ConnectionLost:
        if self._failure is None:
            self._failure = error
        self._link.silenced.set()
        return self._failure

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise ConnectionLost(f"connection to {_WHERE} is closing")

    async def send(self, message: str) -> None:
        """Send one text message (the app reads it as ``websocket.receive``)."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        self._check_open()
        if not self._link.server_gone:
            self._link.to_app_send.send_nowait({"type": "websocket.receive", "text": message})

    async def send_many(self, messages: Sequence[str]) -> None:
        """Send text messages in order (the app reads each as ``websocket.receive``)."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        for message in messages:
            self._check_open()
            if not self._link.server_gone:
                self._link.to_app_send.send_nowait({"type": "websocket.receive", "text": message})

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`ConnectionLost` (with the close code) once the
        connection ended, after the messages that came before the end."""
        if self._failure is not None:
            await trio.lowlevel.checkpoint()
            raise self._failure
        try:
            item = await self._link.to_client_receive.receive()
        except trio.ClosedResourceError:  # pragma: no cover - the link never closes it
            raise self._fail(ConnectionLost(f"connection to {_WHERE} closed")) from None
        if isinstance(item, str):
            try:
                size = len(item.encode("utf-8"))
            except UnicodeEncodeError:
                self._link.client_close(1007)
                raise self._fail(
                    ConnectionLost("server sent invalid UTF-8 in a text message", code=1007)
                ) from None
            if size > self._max_message_size:
                self._link.client_close(1009)
                raise self._fail(
                    ConnectionLost(_too_big(self._max_message_size), code=1009)
                )
            return item
        if isinstance(item, bytes):
            if len(item) > self._max_message_size:
                self._link.client_close(1009)
                raise self._fail(
                    ConnectionLost(_too_big(self._max_message_size), code=1009)
                )
            return item
        if isinstance(item, _Closed):
            text = f"connection to {_WHERE} closed by the server (code {item.code})"
            reason = redact(item.reason)[:80]
            raise self._fail(
                ConnectionLost(f"{text}: {reason}" if reason else text, code=item.code)
            )
        if item is _ABORT:
            raise self._fail(
                ConnectionLost(f"connection to {_WHERE} lost without a close frame", code=1006)
            )
        raise self._fail(ConnectionLost(f"connection to {_WHERE} closed"))

    async def ping(self) -> None:
        """Return when the pong arrives: at once, unless the server is a black hole (then
        never — bound it with your own timeout)."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        if self._link.blackholed:
            await self._link.silenced.wait()
            if self._failure is not None:
                raise self._failure
            raise ConnectionLost(f"connection to {_WHERE} closed")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close: the app hears a disconnect with ``code``. Idempotent, never raises."""
        if not self._closing:
            self._closing = True
            self._link.client_close(code)
            self._fail(ConnectionLost(f"connection to {_WHERE} closed", code=code))
        await trio.lowlevel.checkpoint()


class MemoryServer(LocalServer):
    """A local server whose only "network" is :meth:`connect` (create it with
    :func:`open_memory_server`). Faults, statistics and ``ws_url`` work as on
    :class:`~trio_tts.server.LocalServer`.

    Args:
        handshake_latency: virtual seconds each handshake takes (so concurrent handshakes
            overlap and :meth:`handshake_statistics` can see how many ran at once).
    """

    def __init__(self, core: Core, nursery: trio.Nursery, *, handshake_latency: float) -> None:
        super().__init__(core, _HOST, _PORT)
        self._app = App(core)
        self._nursery = nursery
        self._latency = handshake_latency
        self._ports = itertools.count(40000)
        self._started: list[float] = []
        self._in_flight = 0
        self._peak = 0

    def __repr__(self) -> str:
        c = self._core
        return (
            f"<MemoryServer {_WHERE} connections={c.connections_open} "
            f"contexts={c.contexts_open} frames_sent={c.frames_sent} "
            f"violations={len(c.violations)}>"
        )

    def handshake_statistics(self) -> HandshakeStatistics:
        return HandshakeStatistics(
            started=len(self._started),
            in_flight=self._in_flight,
            peak_in_flight=self._peak,
            times=tuple(self._started),
        )

    async def connect(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        *,
        handshake_timeout: float = 10.0,
        close_timeout: float = 2.0,
        max_message_size: int = _DEFAULT_MAX_MESSAGE,
        **_ignored: object,
    ) -> MemoryTransport:
        """Open an in-memory WebSocket to the server (a ``transport_factory`` for the pool).

        Raises:
            InvalidOptions: ``url`` is not a ws/wss URL.
            HandshakeRejected: the app refused the upgrade (``status``, ``retry_after``).
            ConnectionLost: no answer within ``handshake_timeout``.
        """
        split = urllib.parse.urlsplit(url)
        if split.scheme not in ("ws", "wss"):
            raise InvalidOptions("url: not a valid ws:// or wss:// URL")
        link = _Link()
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "scheme": split.scheme,
            "http_version": "1.1",
            "path": urllib.parse.unquote(split.path),
            "raw_path": split.path.encode(),
            "query_string": split.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            "client": ("127.0.0.1", next(self._ports)),
            "server": (_HOST, _PORT),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
            "trio_tts.link": link,
        }
        self._started.append(trio.current_time())
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            with trio.move_on_after(handshake_timeout):
                await trio.sleep(self._latency)
                link.to_app_send.send_nowait({"type": "websocket.connect"})
                self._nursery.start_soon(self._serve, scope, link)
                await link.handshake_done.wait()
        finally:
            self._in_flight -= 1
        if not link.handshake_done.is_set():
            link.client_close(1006)
            raise ConnectionLost(
                f"WebSocket handshake with {_WHERE} timed out after {handshake_timeout}s"
            )
        if link.accepted:
            return MemoryTransport(link, max_message_size=max_message_size)
        status = link.status or 500
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        raise HandshakeRejected(status, phrase, retry_after=_retry_after(link.headers))

    async def _serve(self, scope: dict[str, Any], link: _Link) -> None:
        try:
            await self._app(scope, link.asgi_receive, link.asgi_send)
        finally:
            if link.accepted and not link.server_gone and not link.client_gone:
                # The app returned without a close: the server closes the socket (1000).
                link.server_gone = True
                link.to_client_send.send_nowait(_Closed(1000, ""))


def _retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            text = value.decode("latin-1").strip()
            return float(text) if text.isdigit() else None
    return None


@asynccontextmanager
async def open_memory_server(
    config: ServerConfig | None = None, *, handshake_latency: float = 0.005
) -> AsyncIterator[MemoryServer]:
    """Run the local server's application in memory for the ``async with`` block.

    Leaving the block sends every live session a 1001 close and cancels what is left.
    Works under ``MockClock(autojump_threshold=0)``: nothing here touches a socket or the
    real clock.
    """
    core = Core(config or ServerConfig(synthesizer="tone"))
    # Holds the app's task for every connection (each ends when its client leaves).
    async with trio.open_nursery() as nursery:
        server = MemoryServer(core, nursery, handshake_latency=handshake_latency)
        try:
            yield server
        finally:
            for session in list(core.sessions):
                session.shutdown()
            with trio.move_on_after(1.0):
                while core.connections_open:
                    await core.wait_connection_closed()
            nursery.cancel_scope.cancel()
