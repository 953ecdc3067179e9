"""The websockets-sans-io transport against real loopback servers (trio-websocket, raw)."""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio_websocket
from websockets.frames import Close, Frame, Opcode
from websockets.server import ServerProtocol

from trio_tts._core.errors import ConnectionLost, HandshakeRejected, InvalidOptions
from trio_tts._core.transport import WebSocketTransport, connect

SECRET = "Q-SECRET-QUERY"
KEY = "Basic SECRET-KEY-42"

Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> str:
    """Start a trio-websocket server on 127.0.0.1:0; return a URL with a secret query."""
    server = await nursery.start(
        functools.partial(
            trio_websocket.serve_websocket,
            handler,
            "127.0.0.1",
            0,
            None,
            max_message_size=8 * 2**20,
        )
    )
    return f"ws://127.0.0.1:{server.port}/tts/v1/voice:streamBidirectional?key={SECRET}"


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


Script = Callable[[trio.SocketStream, ServerProtocol], Awaitable[None]]


async def serve_raw(nursery: trio.Nursery, script: Script) -> str:
    """A server that completes the handshake with websockets' ServerProtocol, then runs
    ``script`` with full control over frames (fragments, ignoring close ...)."""

    async def handler(stream: trio.SocketStream) -> None:
        proto = ServerProtocol(max_size=None)
        while True:
            proto.receive_data(await stream.receive_some(65536))
            if events := proto.events_received():
                break
        proto.send_response(proto.accept(events[0]))  # type: ignore[arg-type]
        for chunk in proto.data_to_send():
            await stream.send_all(chunk)
        await script(stream, proto)

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    port = listeners[0].socket.getsockname()[1]
    return f"ws://127.0.0.1:{port}/x?key={SECRET}"


async def flush(stream: trio.SocketStream, proto: ServerProtocol) -> None:
    for chunk in proto.data_to_send():
        if chunk:
            await stream.send_all(chunk)


async def test_echo_headers_and_repr(nursery: trio.Nursery) -> None:
    seen: list[object] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        seen.append(dict(request.headers).get(b"authorization"))
        await echo(request)

    with trio.fail_after(5):
        url = await serve(nursery, handler)
        ws = await connect(url, [("Authorization", KEY)])
        assert isinstance(ws, WebSocketTransport)
        assert seen == [KEY.encode()]
        await ws.send("hello")
        assert await ws.receive() == "hello"
        await ws.send("héllo ✓")
        assert await ws.receive() == "héllo ✓"
        assert repr(ws).startswith("<WebSocketTransport 127.0.0.1:")
        assert SECRET not in repr(ws) and "tts" not in repr(ws)
        await ws.aclose()
        await ws.aclose()  # idempotent
        with pytest.raises(ConnectionLost):
            await ws.send("after close")
        with pytest.raises(ConnectionLost):
            await ws.receive()


async def test_large_message(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        url = await serve(nursery, echo)
        ws = await connect(url, [], read_size=64 * 1024)
        big = "x" * 2**20
        await ws.send(big)
        assert await ws.receive() == big
        await ws.aclose()


async def test_message_too_big(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        url = await serve(nursery, echo)
        ws = await connect(url, [], max_message_size=1000)
        await ws.send("y" * 2000)
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1009
        await ws.aclose()


async def test_fragmented_message_and_binary(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        text = "fragmented ✓ message".encode()
        cut = text.index("✓".encode()) + 1  # split inside a multi-byte character
        proto.send_text(text[:cut], fin=False)
        proto.send_continuation(text[cut:-3], fin=False)
        proto.send_continuation(text[-3:], fin=True)
        proto.send_binary(b"\x00\x01", fin=False)
        proto.send_continuation(b"\x02", fin=True)
        await flush(stream, proto)
        await trio.sleep_forever()

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])
        assert await ws.receive() == "fragmented ✓ message"
        assert await ws.receive() == b"\x00\x01\x02"
        with trio.move_on_after(0.2):
            await ws.aclose()


async def test_server_close_1011_after_messages(nursery: trio.Nursery) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("one")
        await ws.send_message("two")
        await ws.aclose(code=1011, reason="internal oops")

    with trio.fail_after(5):
        url = await serve(nursery, handler)
        ws = await connect(url, [])
        assert await ws.receive() == "one"
        assert await ws.receive() == "two"
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1011
        assert "internal oops" in str(info.value)
        assert SECRET not in str(info.value)
        with pytest.raises(ConnectionLost):
            await ws.send("late")
        await ws.aclose()


async def test_server_normal_close_raises_with_code_1000(nursery: trio.Nursery) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose()

    with trio.fail_after(5):
        url = await serve(nursery, handler)
        ws = await connect(url, [])
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1000
        await ws.aclose()


async def test_tcp_drop_without_close_frame(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        proto.send_text(b"last")
        await flush(stream, proto)
        await stream.aclose()

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])
        assert await ws.receive() == "last"
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1006
        await ws.aclose()


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (401, [], None),
        (429, [(b"Retry-After", b"7")], 7.0),
    ],
)
async def test_handshake_rejected(
    nursery: trio.Nursery,
    status: int,
    headers: list[tuple[bytes, bytes]],
    retry_after: float | None,
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(
            status,
            extra_headers=[*headers, (b"X-Echo", KEY.encode())],
            body=f"bad key {KEY}".encode(),
        )

    with trio.fail_after(5):
        url = await serve(nursery, handler)
        with pytest.raises(HandshakeRejected) as info:
            await connect(url, [("Authorization", KEY)])
    exc = info.value
    assert exc.status == status
    assert exc.retry_after == retry_after
    text = str(exc)
    assert text.startswith(f"WebSocket handshake rejected with HTTP {status}")
    for leaked in ("SECRET", "X-Echo", "bad key", "tts"):
        assert leaked not in text


async def test_handshake_timeout_against_silent_server(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, silent, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(5):
        start = trio.current_time()
        with pytest.raises(ConnectionLost, match="timed out") as info:
            await connect(f"ws://127.0.0.1:{port}/x?key={SECRET}", [], handshake_timeout=0.3)
        assert 0.3 <= trio.current_time() - start < 2
    assert SECRET not in str(info.value)


async def test_garbage_handshake_response(nursery: trio.Nursery) -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await stream.send_all(b"SSH-2.0-OpenSSH\r\n\r\n")
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, garbage, 0)
    port = listeners[0].socket.getsockname()[1]
    with (
        trio.fail_after(5),
        pytest.raises(
            ConnectionLost,
            match=r"^WebSocket handshake with 127\.0\.0\.1:\d+ failed \(InvalidMessage\)$",
        ),
    ):
        await connect(f"ws://127.0.0.1:{port}/?key={SECRET}", [])


async def test_connection_refused_and_bad_url() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(5):
        with pytest.raises(ConnectionLost) as info:
            await connect(f"ws://127.0.0.1:{port}/x?key={SECRET}", [])
        assert str(info.value) == f"could not connect to 127.0.0.1:{port}: connection refused"
        assert SECRET not in str(info.value)
        with pytest.raises(InvalidOptions) as bad:
            await connect(f"http://example.com/?key={SECRET}", [])
        assert SECRET not in str(bad.value)


async def test_ping_pong(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        url = await serve(nursery, echo)
        ws = await connect(url, [])
        received: list[str | bytes] = []
        got_one = trio.Event()

        async def reader() -> None:
            while True:
                received.append(await ws.receive())
                got_one.set()

        async with trio.open_nursery() as inner:
            inner.start_soon(reader)
            await ws.ping()
            await ws.ping()
            await ws.send("after pings")
            await got_one.wait()
            inner.cancel_scope.cancel()
        assert received == ["after pings"]
        await ws.aclose()


async def test_server_ping_answered_while_receiving(nursery: trio.Nursery) -> None:
    pinged = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.ping(b"srv")  # returns once our automatic pong arrives
        pinged.set()
        await ws.send_message("done")
        await trio.sleep_forever()

    with trio.fail_after(5):
        url = await serve(nursery, handler)
        ws = await connect(url, [])
        assert await ws.receive() == "done"
        assert pinged.is_set()
        with trio.move_on_after(0.2):
            await ws.aclose()


async def test_ping_fails_when_connection_dies(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await stream.receive_some(1000)  # the ping
        await stream.aclose()  # never answers it

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])
        async with trio.open_nursery() as inner:

            async def reader() -> None:
                with pytest.raises(ConnectionLost):
                    await ws.receive()

            inner.start_soon(reader)
            with pytest.raises(ConnectionLost):
                await ws.ping()
        await ws.aclose()


async def test_aclose_bounded_when_peer_ignores_close(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await trio.sleep_forever()  # reads nothing, answers nothing

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [], close_timeout=0.3)
        start = trio.current_time()
        await ws.aclose()
        assert 0.3 <= trio.current_time() - start < 2
        with pytest.raises(ConnectionLost):
            await ws.receive()


async def test_aclose_while_another_task_receives(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        url = await serve(nursery, echo)
        ws = await connect(url, [])
        async with trio.open_nursery() as inner:

            async def reader() -> None:
                with pytest.raises(ConnectionLost) as info:
                    await ws.receive()
                assert info.value.code == 4000

            inner.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await ws.aclose(4000, "bye")


async def test_concurrent_send_from_two_tasks(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        url = await serve(nursery, echo)
        ws = await connect(url, [])
        count = 40

        async def sender(tag: str) -> None:
            for i in range(count):
                await ws.send(f"{tag}{i:03d}" + tag * 50_000)

        got: list[str | bytes] = []
        async with trio.open_nursery() as inner:
            inner.start_soon(sender, "a")
            inner.start_soon(sender, "b")
            for _ in range(2 * count):
                got.append(await ws.receive())
        for tag in "ab":
            mine = [m for m in got if isinstance(m, str) and m.startswith(tag)]
            assert [m[1:4] for m in mine] == [f"{i:03d}" for i in range(count)]
            assert all(m[4:] == tag * 50_000 for m in mine)
        await ws.aclose()


async def test_receive_is_single_consumer(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        url = await serve(nursery, echo)
        ws = await connect(url, [])
        async with trio.open_nursery() as inner:
            inner.start_soon(ws.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await ws.receive()
            inner.cancel_scope.cancel()
        await ws.send("still works after a cancelled receive")
        assert await ws.receive() == "still works after a cancelled receive"
        await ws.aclose()


async def test_receive_nowait_takes_what_a_read_brought_in_order(nursery: trio.Nursery) -> None:
    """receive_nowait() never reads: None until receive() has read; then the rest of that
    read's messages in order (text and binary), then None; the close stays for receive()
    to raise, and receive_nowait() still returns None (never raises) after it."""
    connected, sent = trio.Event(), trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await connected.wait()  # not with the handshake's answer: connect() would read them
        proto.send_text(b"one")
        proto.send_text(b"two")
        proto.send_binary(b"three")
        proto.send_text(b"four")
        proto.send_close(1011, "bye")
        await stream.send_all(b"".join(proto.data_to_send()))  # one write: one batch
        sent.set()
        await trio.sleep_forever()

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])
        connected.set()
        await sent.wait()
        assert ws.receive_nowait() is None  # in the socket, not read yet
        assert await ws.receive() == "one"  # one read: everything was in the socket
        got = [ws.receive_nowait() for _ in range(4)]
        assert got == ["two", b"three", "four", None]
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1011
        assert ws.receive_nowait() is None
        await ws.aclose()


@pytest.mark.parametrize("end", ["reset", "aclose"])
async def test_reading_messages_one_at_a_time_then_the_end(nursery: trio.Nursery, end: str) -> None:
    """Inside ``reading()`` on a TCP socket (the connection actor's loop): messages that
    arrive one at a time (each read empties the socket, so the next read waits first), a
    frame split across two writes, and a message over several full reads all arrive whole
    and in order. Then the reader, parked on the empty socket, ends with ConnectionLost:
    1006 for a TCP reset, or the code of an ``aclose()`` from another task, which the server
    receives in the close frame."""
    big = b"\x07" * (600 * 1024)  # over two 256 KiB reads
    server_got: list[int] = []
    done = trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        async def until_ack() -> None:
            while not (events := proto.events_received()):
                proto.receive_data(await stream.receive_some(65536))
            server_got.extend(getattr(e, "opcode", 0) for e in events)

        await until_ack()  # the client's "go": nothing rides with the handshake's answer
        for i in range(20):
            proto.send_text(f"m{i}".encode())
            await flush(stream, proto)
            await until_ack()
        proto.send_binary(big)
        await flush(stream, proto)
        await until_ack()
        proto.send_text(b"split in two")
        data = b"".join(proto.data_to_send())
        await stream.send_all(data[:5])
        await trio.testing.wait_all_tasks_blocked()  # the client read the head, waits again
        await stream.send_all(data[5:])
        await until_ack()
        if end == "reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
        else:
            try:
                while data := await stream.receive_some(65536):
                    proto.receive_data(data)
                    for event in proto.events_received():
                        if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                            server_got.append(Close.parse(event.data).code)
                    await flush(stream, proto)  # the answering close frame
            except trio.BrokenResourceError:
                pass
        done.set()

    with trio.fail_after(10):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])
        got: list[str | bytes] = []

        async def reader() -> None:
            with ws.reading(), pytest.raises(ConnectionLost) as info:
                while True:
                    got.append(await ws.receive())
                    await ws.send("ack")
            assert info.value.code == (1006 if end == "reset" else 4000)

        await ws.send("go")
        async with trio.open_nursery() as inner:
            inner.start_soon(reader)
            if end == "aclose":
                while len(got) < 22:
                    await trio.testing.wait_all_tasks_blocked()
                await trio.testing.wait_all_tasks_blocked()  # parked on the empty socket
                await ws.aclose(4000, "bye")
        assert got == [f"m{i}" for i in range(20)] + [big, "split in two"]
        with pytest.raises(ConnectionLost):
            await ws.receive()  # ended: raises again, reads nothing
        await ws.aclose()
        if end == "aclose":
            await done.wait()
            assert server_got[-1] == 4000  # the server read our close frame's code
