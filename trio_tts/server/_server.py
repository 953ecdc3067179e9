"""Running the local server: :func:`open_server`, :func:`serve`, :func:`run_forever`.

The ASGI :class:`~._app.App` runs under hypercorn's trio worker, so HTTP and the WebSocket
upgrade share one port and no HTTP is parsed by hand. ``port=0`` (the default) binds a free
port; the :class:`LocalServer` handle knows which.

Example::

    async with open_server(ServerConfig(synthesizer="tone")) as server:
        async with open_websocket_url(server.ws_url) as ws:
            ...
        print(server.statistics())
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from ._app import App
from ._core import Core, ServerConfig, ServerStatistics
from ._faults import Faults
from .cartesia.session import WS_PATH as CARTESIA_WS_PATH
from .inworld.session import WS_PATH as INWORLD_WS_PATH
from .rime.http import HTTP_PATH as RIME_HTTP_PATH
from .rime.session import WS_PATH as RIME_WS_PATH

__all__ = ["LocalServer", "open_server", "run_forever", "serve"]

logger = logging.getLogger("trio_tts.server")
_STOP_TIMEOUT = 3.0


class LocalServer:
    """A running local server: its addresses, live statistics and mutable faults."""

    def __init__(self, core: Core, host: str, port: int) -> None:
        self._core = core
        self.host = host
        self.port = port
        self._stop = trio.Event()

    @property
    def config(self) -> ServerConfig:
        return self._core.config

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` — for ``voice:stream`` and ``voices``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/tts/v1/voice:streamBidirectional``."""
        return f"ws://{self.host}:{self.port}{INWORLD_WS_PATH}"

    @property
    def rime_url(self) -> str:
        """``ws://127.0.0.1:PORT/ws3`` — Rime's JSON WebSocket (``RimeProvider(url=...)``)."""
        return f"ws://{self.host}:{self.port}{RIME_WS_PATH}"

    @property
    def rime_http_url(self) -> str:
        """``http://127.0.0.1:PORT/v1/rime-tts`` — Rime's one-shot HTTP synthesis."""
        return f"{self.base_url}{RIME_HTTP_PATH}"

    @property
    def elevenlabs_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` — ElevenLabs' API root, as the LiveKit plugin's
        ``base_url`` takes it; the WebSockets are ``ws://127.0.0.1:PORT/v1/text-to-speech/
        {voice_id}/multi-stream-input`` and ``.../stream-input``, the voices ``.../v1/voices``."""
        return f"{self.base_url}/v1"

    @property
    def cartesia_url(self) -> str:
        """``ws://127.0.0.1:PORT/tts/websocket`` — Cartesia's context WebSocket (the official
        clients take the base: LiveKit ``base_url=server.base_url``, the SDK
        ``websocket_base_url="ws://127.0.0.1:PORT"``)."""
        return f"ws://{self.host}:{self.port}{CARTESIA_WS_PATH}"

    @property
    def faults(self) -> Faults:
        """The live faults; mutate fields (``server.faults.drop = None``) or assign a new one."""
        return self._core.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._core.set_faults(faults)

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> None:
        """Replace the faults (``set_faults(Faults(...))``) or change fields (``stall=None``).

        Raises:
            AttributeError: for a name that is not a :class:`Faults` field.
        """
        current = faults if faults is not None else self._core.faults
        for name, value in changes.items():
            if not hasattr(current, name):
                raise AttributeError(f"Faults has no field {name!r}")
            setattr(current, name, value)
        self._core.set_faults(current)

    def statistics(self) -> ServerStatistics:
        return self._core.statistics()

    async def wait_idle(self) -> None:
        """Return once no connection is open. A client's ``aclose()`` returns when the close
        handshake is done, a moment before this server has ended its side and counted the
        connection closed: tests read ``statistics()`` after this."""
        while self._core.connections_open:
            await self._core.wait_connection_closed()

    def __repr__(self) -> str:
        c = self._core
        return (
            f"<LocalServer {self.base_url} connections={c.connections_open} "
            f"contexts={c.contexts_open} frames_sent={c.frames_sent} "
            f"violations={len(c.violations)}>"
        )


def _bind(config: ServerConfig) -> socket.socket:
    """The listening socket, bound here and not by hypercorn: hypercorn (0.17) leaves the
    socket of a failed bind (a taken port) open. The caller owns it and closes it once
    hypercorn is done (hypercorn closes it too when its listeners stop: closing twice is a
    no-op on the same socket object).

    Raises:
        OSError: the address cannot be bound."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as hypercorn's own
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
    except BaseException:
        sock.close()
        raise
    return sock


def _hypercorn_config(listener: socket.socket) -> Any:
    from hypercorn.config import Config, Sockets

    hconfig = Config()
    # Hypercorn listens on our socket instead of binding its own.
    hconfig.create_sockets = lambda: Sockets([], [listener], [])  # type: ignore[method-assign]
    hconfig.accesslog = None
    hconfig.errorlog = logger
    hconfig.graceful_timeout = 1.0
    hconfig.websocket_ping_interval = None
    return hconfig


_handshakes_guarded = False


def _guard_rejected_handshakes() -> None:
    """Hypercorn (0.17, 0.18) answers data that follows a refused WebSocket upgrade with a
    400 response although the app's rejection (401, 403, 429...) was already sent: h11
    raises ``LocalProtocolError`` and, out of the connection's task, that ends the whole
    server. A client that writes after a refusal (a frame already in flight, as the official
    LiveKit plugin can) must cost only its own connection: such data is dropped. Applied once,
    idempotent."""
    from hypercorn.protocol.events import Body, Data
    from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream

    global _handshakes_guarded
    if _handshakes_guarded:
        return
    _handshakes_guarded = True
    handle = WSStream.handle
    refused = (ASGIWebsocketState.RESPONSE, ASGIWebsocketState.HTTPCLOSED)

    async def guarded(self: Any, event: Any) -> None:
        if isinstance(event, (Body, Data)) and self.state in refused:
            return  # the refusal is on its way (or sent): the client's bytes go nowhere
        await handle(self, event)

    WSStream.handle = guarded  # type: ignore[method-assign]


async def serve(
    config: ServerConfig, *, task_status: trio.TaskStatus[LocalServer] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled (or, under :func:`open_server`, until asked to stop).

    ``await nursery.start(serve, config)`` returns the :class:`LocalServer` once the port is
    bound."""
    import hypercorn.trio

    _guard_rejected_handshakes()
    core = Core(config)
    app: Any = App(core)  # an ASGI 3 callable; hypercorn's TypedDict scopes are stricter
    hypercorn_done = trio.Event()
    # Holds hypercorn's serve task (its listeners and every connection's tasks).
    with _bind(config) as listener:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(
                    hypercorn.trio.serve,
                    app,
                    _hypercorn_config(listener),
                    shutdown_trigger=hypercorn_done.wait,
                    mode="asgi",
                )
            )
            url = urllib.parse.urlsplit(binds[0])
            server = LocalServer(core, config.host, url.port or 0)
            task_status.started(server)
            await server._stop.wait()
            # Graceful stop (open_server's exit): close frames first, then hypercorn shuts down.
            await _close_sessions(core)
            hypercorn_done.set()


async def _close_sessions(core: Core, *, grace: float = 1.0) -> None:
    """Send every live WebSocket a 1001 close and give clients ``grace`` seconds to finish."""
    with trio.move_on_after(grace):
        for session in list(core.sessions):
            session.shutdown()
        while core.connections_open:
            await core.wait_connection_closed()


@asynccontextmanager
async def open_server(config: ServerConfig | None = None) -> AsyncIterator[LocalServer]:
    """Run a local server for the duration of the ``async with`` block.

    Leaving the block stops it gracefully: every open WebSocket gets a 1001 close frame and
    about a second to finish, then the listener closes. (If the block is left by
    cancellation, everything is simply cancelled.)
    """
    # Holds the server task; it returns by itself once asked to stop.
    async with trio.open_nursery() as nursery:
        server: LocalServer = await nursery.start(serve, config or ServerConfig())
        try:
            yield server
        finally:
            server._stop.set()
            nursery.cancel_scope.deadline = trio.current_time() + _STOP_TIMEOUT


async def run_forever(config: ServerConfig) -> None:
    """What ``trio-tts serve`` runs: serve until cancelled (Ctrl-C), then shut down cleanly."""
    async with open_server(config) as server:
        logger.info("local speech server on %s (WebSocket %s)", server.base_url, server.ws_url)
        await trio.sleep_forever()
