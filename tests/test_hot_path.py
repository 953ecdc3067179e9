"""The per-message hot path: writes per burst, the transport's frame fast path, burst delivery.

Behaviour, never timing: how many writes a burst of commands costs, which messages come out
of bytes split at every boundary, what a consumer sees per wake-up.
"""

from __future__ import annotations

import trio
import trio.testing
from websockets.client import ClientProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from trio_tts._core.transport import WebSocketTransport


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
