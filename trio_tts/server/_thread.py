"""The local server for programs that are not trio: :func:`open_server_in_thread`.

An asyncio program (or a plain script, or a LiveKit agent) cannot ``async with open_server()``
on its own loop; this runs the server's own ``trio.run`` in a daemon thread for the duration
of a ``with`` block — like a radio station in the next room: you only need its frequency.

Example::

    with open_server_in_thread(ServerConfig()) as server:
        asyncio.run(main(server.ws_url))
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import outcome
import trio

from ._core import ServerConfig
from ._server import LocalServer, open_server

__all__ = ["open_server_in_thread"]


@contextlib.contextmanager
def open_server_in_thread(
    config: ServerConfig | None = None, *, start_timeout: float = 10.0
) -> Iterator[LocalServer]:
    """Run a local server in a thread of its own for the duration of the ``with`` block.

    The :class:`LocalServer`'s addresses (``ws_url``, ``base_url``, ``rime_url``,
    ``rime_http_url``) may be read from any thread; everything else about it belongs to the
    server's thread. Leaving the block stops the server as :func:`open_server` does and waits
    for the thread.

    Raises:
        RuntimeError: the server did not start within ``start_timeout`` seconds, or failed
            to start (the cause is chained).
    """
    started = threading.Event()
    handle: list[tuple[LocalServer, trio.lowlevel.TrioToken, trio.Event]] = []
    result: list[outcome.Outcome[None]] = []

    async def serve_until_stopped() -> None:
        async with open_server(config) as server:
            stop = trio.Event()
            handle.append((server, trio.lowlevel.current_trio_token(), stop))
            started.set()
            await stop.wait()

    def run() -> None:
        result.append(outcome.capture(trio.run, serve_until_stopped))
        started.set()

    thread = threading.Thread(target=run, name="trio-tts local server", daemon=True)
    thread.start()
    if not started.wait(start_timeout):
        raise RuntimeError(f"the local server did not start within {start_timeout} s")
    if not handle:
        raise RuntimeError("the local server failed to start") from _error(result)
    server, token, stop = handle[0]
    try:
        yield server
    finally:
        with contextlib.suppress(trio.RunFinishedError):  # its run may have ended already
            token.run_sync_soon(stop.set)
        thread.join()
    if result and isinstance(result[0], outcome.Error):
        result[0].unwrap()


def _error(result: list[outcome.Outcome[None]]) -> BaseException | None:
    if result and isinstance(result[0], outcome.Error):
        return result[0].error
    return None
