"""Helpers to drive turns through a pool against the local server."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

import trio_tts
from trio_tts.server import LocalServer, tone_pcm

RATE = 24000


def provider_for(server: LocalServer, api_key: str | None = None) -> trio_tts.InworldProvider:
    return trio_tts.InworldProvider(api_key, url=server.ws_url)


PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=RATE, timestamp_type="WORD")


def connection_of(pool: trio_tts.Pool, ctx: trio_tts.Context) -> int | None:
    """The connection holding ``ctx``'s slot, from the pool's own introspection."""
    return next((c.connection for c in pool.inspect().contexts if c.id == ctx.id), None)


def expected(text: str) -> bytes:
    return tone_pcm(text, RATE)


async def turn(pool: trio_tts.Pool, text: str, **kwargs: object) -> bytes:
    """One whole utterance: open, send, finish, read all audio, leave."""
    ctx = await pool.open_context(**kwargs)  # type: ignore[arg-type]
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([ev.data async for ev in ctx if isinstance(ev, trio_tts.Audio)])


async def wait_quiet(pool: trio_tts.Pool, server: LocalServer | None = None) -> None:
    """Wait until no slot is held (the server confirmed every close)."""
    with trio.fail_after(30):
        while pool.statistics().contexts_in_use or pool.inspect().leases_held:
            await trio.sleep(0.01)
        if server is not None:
            while server.statistics().contexts_open:
                await trio.sleep(0.01)


@asynccontextmanager
async def open_ws(
    url: str, *, connect_timeout: float = 10.0, **kwargs: Any
) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's client, as ``open_websocket_url(url, **kwargs)``, on a TCP stream this
    helper owns and always closes. ``open_websocket_url`` (0.12.2) leaves the socket of a
    refused upgrade open: its ``ConnectionRejected`` leaks a socket that gc later reports as
    a ResourceWarning in whichever test happens to collect it.

    Raises what ``open_websocket_url`` raises: ``ConnectionRejected`` for a refused upgrade,
    the body's own exception unwrapped from the reader's nursery."""
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "ws" and parts.hostname is not None and parts.port is not None, url
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    with trio.fail_after(connect_timeout):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:  # closed on every way out, a refused upgrade's included
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(connect_timeout):
                    ws = await wrap_client_stream(nursery, stream, parts.netloc, resource, **kwargs)
                try:
                    yield ws
                finally:
                    await ws.aclose()
        except BaseExceptionGroup as group:
            # One error (the reader's ConnectionRejected, or the body's): raised as itself,
            # as open_websocket_url does.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
