"""What the transport still delivers when the connection dies: frames the server sent before a
failed or interrupted write (the drain), and the messages before an oversize one (1009).

Real TCP servers on 127.0.0.1 speak through ``websockets``' sans-io ``ServerProtocol``; the
drain-bound tests use in-memory streams under ``autojump_clock`` so time is exact.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import socket
import struct

import pytest
import trio
import trio.testing
from test_transport import SECRET, flush, serve_raw
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from trio_tts._core.errors import ConnectionLost
from trio_tts._core.transport import (
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    WebSocketTransport,
    connect,
)
from trio_tts.testing import MemoryServer

FRAMES = 20
CONTEXT_CLOSED = '{"result": {"contextId": "c1", "contextClosed": {}}}'


def audio(i: int) -> bytes:
    return bytes([i]) * 2000


# ------------------------------------------------------------------- real TCP, peer resets


async def wait_buffered(sock: trio.socket.SocketType, nbytes: int) -> None:
    """Wait until the kernel holds ``nbytes`` unread bytes on ``sock``: with SO_RCVLOWAT,
    "readable" means that much is there."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
    try:
        await trio.lowlevel.wait_readable(sock)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


@pytest.mark.parametrize("loop_scope", [False, True], ids=["scope per read", "reading()"])
async def test_frames_sent_before_a_reset_survive_the_failed_write(
    nursery: trio.Nursery, loop_scope: bool
) -> None:
    """The server sends audio + contextClosed, then resets the TCP connection; the client only
    notices when its next write fails. Every frame must still be received, then the write's
    ConnectionLost (``loop_scope``: received inside ``ws.reading()``, as the connection actor
    reads)."""
    sent: list[int] = []
    all_sent = trio.Event()
    reset_now = trio.Event()
    gone = trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        # Wait for the client's first message so no frame rides along with the 101 response.
        while not proto.events_received():
            proto.receive_data(await stream.receive_some(65536))
        for i in range(FRAMES):
            proto.send_binary(audio(i))
        proto.send_text(CONTEXT_CLOSED.encode())
        data = b"".join(proto.data_to_send())
        await stream.send_all(data)
        sent.append(len(data))
        all_sent.set()
        await reset_now.wait()
        # Abrupt: SO_LINGER 0 turns close() into a TCP reset, with no close frame or FIN.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        gone.set()

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [], read_size=4096)  # many reads in the drain
        await ws.send("go")
        await all_sent.wait()
        # A reset discards what the server's kernel has not transmitted yet: wait until all
        # of it is in the client's socket (not read by the transport), then reset.
        stream = ws._stream
        assert isinstance(stream, trio.SocketStream)
        await wait_buffered(stream.socket, sent[0])
        reset_now.set()
        await gone.wait()
        with pytest.raises(ConnectionLost) as failed_send:
            while True:  # the first write after the reset may still be accepted locally
                await ws.send('{"send_text": {"text": "more"}}')
        with ws.reading() if loop_scope else contextlib.nullcontext():
            for i in range(FRAMES):
                assert await ws.receive() == audio(i)
                assert repr(ws).endswith(" draining>")
            assert await ws.receive() == CONTEXT_CLOSED
            with pytest.raises(ConnectionLost) as end:
                await ws.receive()
        assert end.value is failed_send.value  # the original cause, not a generic EOF
        assert isinstance(end.value.__cause__, trio.BrokenResourceError)
        assert SECRET not in str(end.value)
        with pytest.raises(ConnectionLost) as later:
            await ws.send("after")
        assert later.value is failed_send.value
        with pytest.raises(ConnectionLost):
            await ws.ping()
        await ws.aclose()
        with pytest.raises(ConnectionLost):
            await ws.receive()


# ------------------------------------------------------- in memory, exact times, drain bound


class Peer:
    """The server end of an in-memory WebSocket: a ``ServerProtocol`` and the raw streams.

    Client -> server is a lockstep stream (a write blocks until the peer reads all of it, so a
    test can leave one half-written); server -> client is buffered.
    """

    def __init__(self, *, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT) -> None:
        c2s_send, self.c2s = trio.testing.lockstep_stream_one_way_pair()
        self.s2c, s2c_receive = trio.testing.memory_stream_one_way_pair()
        client = ClientProtocol(parse_uri("ws://peer.invalid/x"), max_size=DEFAULT_MAX_MESSAGE_SIZE)
        self.proto = ServerProtocol()
        client.send_request(client.connect())
        for chunk in client.data_to_send():
            self.proto.receive_data(chunk)
        request = self.proto.events_received()[0]
        self.proto.send_response(self.proto.accept(request))  # type: ignore[arg-type]
        for chunk in self.proto.data_to_send():
            client.receive_data(chunk)
        assert client.state is State.OPEN
        self.ws = WebSocketTransport(
            trio.StapledStream(c2s_send, s2c_receive),
            client,
            host="peer.invalid",
            port=80,
            close_timeout=2.0,
            drain_timeout=drain_timeout,
            read_size=4096,
        )

    async def send_frames(self, count: int) -> None:
        for i in range(count):
            self.proto.send_binary(audio(i))
        self.proto.send_text(CONTEXT_CLOSED.encode())
        await self.s2c.send_all(b"".join(self.proto.data_to_send()))

    async def half_written_send(self) -> ConnectionLost:
        """Start a big send, read part of it, cancel it; return what the next send raises."""
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def read_a_little() -> None:
                    await self.c2s.receive_some(100)
                    scope.cancel()

                nursery.start_soon(read_a_little)
                await self.ws.send("x" * 100_000)
        assert scope.cancelled_caught
        with pytest.raises(ConnectionLost) as info:
            await self.ws.send("after")
        return info.value


async def test_cancelled_half_written_write_keeps_readable_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = Peer(drain_timeout=1.5)
    await peer.send_frames(5)  # readable, not yet read
    lost = await peer.half_written_send()
    failed_at = trio.current_time()
    for i in range(5):
        assert await peer.ws.receive() == audio(i)
    assert await peer.ws.receive() == CONTEXT_CLOSED
    assert trio.current_time() == failed_at
    # The peer stays silent and open: receiving ends drain_timeout after the failed write.
    with pytest.raises(ConnectionLost) as end:
        await peer.ws.receive()
    assert end.value is lost
    assert trio.current_time() == failed_at + 1.5
    assert str(lost) == "write to peer.invalid:80 was interrupted"
    await peer.ws.aclose()  # no close frame can be written: closes at once
    assert trio.current_time() == failed_at + 1.5


async def receive_all(ws: WebSocketTransport, got: list[str | bytes], *, loop_scope: bool) -> None:
    """Receive until the transport raises. ``loop_scope``: as the connection actor reads,
    inside ``ws.reading()`` (one scope for the loop, not one per read) and, once its bound
    ended that block, on outside it for what was read before."""

    async def loop() -> None:
        while True:
            got.append(await ws.receive())

    if loop_scope:
        with ws.reading():
            await loop()
    await loop()


@pytest.mark.parametrize("loop_scope", [False, True], ids=["scope per read", "reading()"])
async def test_reader_blocked_when_the_write_breaks_gets_the_drain_bound(
    autojump_clock: trio.testing.MockClock, loop_scope: bool
) -> None:
    """A reader already waiting when a write breaks keeps receiving what arrives (in two
    batches here), then ends exactly drain_timeout after the failure."""
    peer = Peer(drain_timeout=1.0)
    got: list[str | bytes] = []
    ended: list[ConnectionLost] = []

    async def reader() -> None:
        try:
            await receive_all(peer.ws, got, loop_scope=loop_scope)
        except ConnectionLost as exc:
            ended.append(exc)

    with trio.fail_after(10):  # a reader the bound missed: a failure, not a hang
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            lost = await peer.half_written_send()
            await peer.send_frames(2)
            await trio.testing.wait_all_tasks_blocked()
            assert got == [audio(0), audio(1), CONTEXT_CLOSED]
            await peer.send_frames(1)
    assert got == [audio(0), audio(1), CONTEXT_CLOSED, audio(0), CONTEXT_CLOSED]
    assert ended == [lost]
    assert trio.current_time() == start + 1.0


async def test_drain_ends_at_the_server_close_frame_with_the_original_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = Peer(drain_timeout=10.0)
    lost = await peer.half_written_send()
    start = trio.current_time()
    peer.proto.send_text(b"last words")
    peer.proto.send_close(1011, "going away")
    await peer.s2c.send_all(b"".join(peer.proto.data_to_send()))
    assert await peer.ws.receive() == "last words"
    with pytest.raises(ConnectionLost) as end:
        await peer.ws.receive()
    assert end.value is lost
    assert trio.current_time() == start  # not a second of the drain bound spent
    await peer.ws.aclose()


async def test_drain_timeout_zero_returns_only_what_was_already_buffered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = Peer(drain_timeout=0.0)
    await peer.send_frames(1)
    assert await peer.ws.receive() == audio(0)  # CONTEXT_CLOSED came in the same read
    lost = await peer.half_written_send()
    assert await peer.ws.receive() == CONTEXT_CLOSED
    with pytest.raises(ConnectionLost) as end:
        await peer.ws.receive()
    assert end.value is lost


@pytest.mark.parametrize("loop_scope", [False, True], ids=["scope per read", "reading()"])
async def test_aclose_while_draining_is_prompt_and_ends_the_reader(
    autojump_clock: trio.testing.MockClock, loop_scope: bool
) -> None:
    peer = Peer(drain_timeout=30.0)
    got: list[str | bytes] = []
    ended: list[ConnectionLost] = []

    async def reader() -> None:
        with pytest.raises(ConnectionLost) as info:
            await receive_all(peer.ws, got, loop_scope=loop_scope)
        ended.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        lost = await peer.half_written_send()
        start = trio.current_time()
        await peer.ws.aclose()
        assert trio.current_time() == start
    assert ended == [lost] and got == []
    assert trio.current_time() == start


async def test_ping_fails_at_once_when_a_write_breaks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = Peer(drain_timeout=30.0)
    failures: list[ConnectionLost] = []

    async def pinger() -> None:
        with pytest.raises(ConnectionLost) as info:
            await peer.ws.ping()
        failures.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pinger)
        await peer.c2s.receive_some(100)  # the whole ping frame: now it waits for its pong
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        lost = await peer.half_written_send()
    assert failures == [lost]
    assert trio.current_time() == start  # not after the drain


# ------------------------------------------------------------------- message size limit


async def test_oversize_message_after_a_small_one_closes_with_1009(
    nursery: trio.Nursery,
) -> None:
    close_codes: list[int | None] = []
    got_close = trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        proto.send_text(b"small")
        proto.send_binary(b"\x00" * (2 * 2**20))
        async with trio.open_nursery() as inner:

            async def write() -> None:
                # May block for good: the client stops reading after the big frame's header.
                with contextlib.suppress(trio.BrokenResourceError):
                    await flush(stream, proto)

            inner.start_soon(write)
            while proto.close_rcvd is None and (data := await stream.receive_some(65536)):
                proto.receive_data(data)
                for event in proto.events_received():
                    assert isinstance(event, Frame)
            close_codes.append(proto.close_rcvd.code if proto.close_rcvd else None)
            got_close.set()
            inner.cancel_scope.cancel()

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])  # the default limit: 1 MiB
        assert await ws.receive() == "small"
        with pytest.raises(
            ConnectionLost,
            match=r"^a message from 127\.0\.0\.1:\d+ is larger than max_message_size "
            r"\(1048576 bytes\), so the connection was closed with code 1009 "
            r"\(message too big\); max_message_size is a setting$",
        ) as info:
            await ws.receive()
        assert info.value.code == 1009
        assert SECRET not in str(info.value)
        await got_close.wait()
        assert close_codes == [1009]
        with pytest.raises(ConnectionLost) as later:
            await ws.send("after")
        assert later.value is info.value
        await ws.aclose()


async def test_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 1_048_576
    params = inspect.signature(connect).parameters
    assert params["max_message_size"].default == DEFAULT_MAX_MESSAGE_SIZE
    assert params["drain_timeout"].default == DEFAULT_DRAIN_TIMEOUT == 1.0
    assert math.isfinite(DEFAULT_DRAIN_TIMEOUT)


@pytest.mark.parametrize("factory", [connect, MemoryServer.connect])
def test_factory_contract_keywords(factory: object) -> None:
    """Both transport factories accept the keywords the pool passes."""
    args = ("ws://h/x", []) if factory is connect else (object(), "ws://h/x", [])
    inspect.signature(factory).bind(  # type: ignore[arg-type]
        *args, handshake_timeout=1.0, close_timeout=1.0, max_message_size=1000
    )
