"""The per-message hot path: writes per burst, the transport's frame fast path, burst delivery.

Behaviour, never timing: how many writes a burst of commands costs, which messages come out
of bytes split at every boundary, what a consumer sees per wake-up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import trio
import trio.testing
from websockets.client import ClientProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

import trio_tts
from trio_tts._core.transport import Transport, WebSocketTransport, connect
from trio_tts.server import LocalServer

from helpers import PCM, expected, provider_for, wait_quiet


async def memory_transport(
    **kwargs: object,
) -> tuple[WebSocketTransport, trio.testing.MemorySendStream, trio.abc.Stream, ServerProtocol]:
    """A client transport and a server protocol over trio's in-memory stream pair, after a
    real handshake. Returns the transport, its send stream (to count writes), the server's
    end of the pair and the server's protocol (to build frames)."""
    client, server = trio.testing.memory_stream_pair()
    proto = ClientProtocol(parse_uri("ws://memory/x"), max_size=1 << 20)
    proto.send_request(proto.connect())
    await client.send_all(b"".join(proto.data_to_send()))
    srv = ServerProtocol()
    while not (events := srv.events_received()):
        srv.receive_data(await server.receive_some())
    srv.send_response(srv.accept(events[0]))  # type: ignore[arg-type]
    await server.send_all(b"".join(srv.data_to_send()))
    while not proto.events_received():
        proto.receive_data(await client.receive_some())
    ws = WebSocketTransport(
        client,
        proto,
        host="memory",
        port=80,
        close_timeout=1.0,
        read_size=1 << 18,
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(client.send_stream, trio.testing.MemorySendStream)
    return ws, client.send_stream, server, srv


async def test_send_many_is_one_write() -> None:
    ws, sent, server, srv = await memory_transport()
    pump = sent.send_all_hook
    writes = 0

    async def counting() -> None:
        nonlocal writes
        writes += 1
        if pump is not None:
            await pump()

    sent.send_all_hook = counting
    await ws.send_many([f"message {i}" for i in range(6)])
    assert writes == 1
    srv.receive_data(await server.receive_some())
    assert [bytes(f.data).decode() for f in srv.events_received()] == [  # type: ignore[attr-defined]
        f"message {i}" for i in range(6)
    ]


class CountingTransport:
    """Delegates to the real transport and records every write's frames."""

    def __init__(self, inner: Transport, writes: list[list[str]]) -> None:
        self.inner = inner
        self.writes = writes

    async def send(self, message: str) -> None:
        self.writes.append([message])
        await self.inner.send(message)

    async def send_many(self, messages: Sequence[str]) -> None:
        self.writes.append(list(messages))
        await self.inner.send_many(messages)

    async def receive(self) -> str | bytes:
        return await self.inner.receive()

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.aclose(code, reason)


async def test_a_callers_commands_leave_in_one_write(server: LocalServer) -> None:
    """``open_context``, three ``send_text``, ``flush`` and ``finish`` issued back to back
    queue without a trip through the scheduler each, so the sender writes them together."""
    writes: list[list[str]] = []

    async def factory(url: str, headers: Sequence[tuple[str, str]], **kw: float) -> Transport:
        return CountingTransport(await connect(url, headers, **kw), writes)  # type: ignore[arg-type]

    text = ["One sentence. ", "Another one. ", "The last."]
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, transport_factory=factory
    ) as pool:
        await pool.prewarm(1)
        ctx = await pool.open_context()
        async with ctx:
            for piece in text:
                await ctx.send_text(piece)
            await ctx.flush()
            await ctx.finish()
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert audio == expected("".join(text))
        await wait_quiet(pool, server)
    turn = [w for w in writes if any(ctx.id in frame for frame in w)]
    assert len(turn) == 1, turn
    kinds = [next(k for k in json.loads(frame) if k != "contextId") for frame in turn[0]]
    assert kinds == ["create", "send_text", "send_text", "send_text", "flush_context",
                     "close_context"]  # fmt: skip
