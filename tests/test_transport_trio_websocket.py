"""The trio-websocket transport behaves like the default one: every check here runs against
both (``connect`` parametrised), on real sockets on 127.0.0.1 — the project's local speech
server, a trio-websocket echo server, or a raw server with full control over frames."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from websockets.server import ServerProtocol

import trio_tts
from trio_tts._core.errors import ConnectionLost, HandshakeRejected, InvalidOptions
from trio_tts._core.events import Audio, ContextClosed, Event
from trio_tts._core.transport import Transport, connect
from trio_tts._core.transport_trio_websocket import (
    TrioWebSocketTransport,
    connect_trio_websocket,
    open_trio_websocket_factory,
)
from trio_tts.server import (
    BadFrame,
    CloseConnection,
    Faults,
    LocalServer,
    NoHandshakeAnswer,
    RejectHandshake,
    ServerConfig,
    open_server,
)

from helpers import PCM, expected

SECRET = "Q-SECRET-QUERY"
KEY = "SECRET-KEY-42"

Connect = Callable[..., Awaitable[Transport]]


@pytest.fixture(params=["websockets", "trio-websocket"])
async def open_ws(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """``connect`` of the transport under test. The trio-websocket one lends a nursery that
    must be empty once the test is over: every transport's task ended with its aclose()."""
    if request.param == "websockets":
        yield connect
        return
    async with trio.open_nursery() as lender:  # the transports' tasks, and nothing else
        yield functools.partial(connect_trio_websocket, nursery=lender)
        await trio.testing.wait_all_tasks_blocked()
        leftover = len(lender.child_tasks)
        lender.cancel_scope.cancel()
    assert leftover == 0, "a transport's task outlived its aclose()"


# ------------------------------------------------------------------------------- servers

Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> str:
    """A trio-websocket server on 127.0.0.1:0; returns a URL with a secret query."""
    server = await nursery.start(
        functools.partial(
            trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None, max_message_size=2**23
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
    """Handshake with websockets' ServerProtocol, then ``script`` writes frames at will."""

    async def handler(stream: trio.SocketStream) -> None:
        proto = ServerProtocol(max_size=None)
        while not (events := proto.events_received()):
            proto.receive_data(await stream.receive_some(65536))
        proto.send_response(proto.accept(events[0]))  # type: ignore[arg-type]
        await flush(stream, proto)
        await script(stream, proto)

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/x?key={SECRET}"


async def serve_tcp(nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Any]) -> str:
    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/x?key={SECRET}"


async def flush(stream: trio.SocketStream, proto: ServerProtocol) -> None:
    for chunk in proto.data_to_send():
        if chunk:
            await stream.send_all(chunk)


# ------------------------------------------------------------ the local speech server


@pytest.fixture
async def local() -> AsyncIterator[LocalServer]:
    async with open_server(ServerConfig(synthesizer="tone", api_key=KEY)) as server:
        yield server


def local_url(server: LocalServer) -> str:
    return f"{server.ws_url}?key={SECRET}"


# The provider registers KEY as a secret: errors built from server text redact it.
AUTH = list(trio_tts.InworldProvider(KEY).headers())


async def speak(ws: Transport, text: str) -> bytes:
    """One utterance over the bare transport with the Inworld codec: create, text, close."""
    codec = trio_tts.InworldProvider().new_codec()
    await ws.send_many(
        [
            *codec.create("c1", PCM),
            *codec.send_text("c1", text, flush=True),
            *codec.close("c1"),
        ]
    )
    audio: list[bytes] = []
    while True:
        events: list[Event] = codec.receive(await ws.receive())
        audio += [e.data for e in events if isinstance(e, Audio)]
        if any(isinstance(e, ContextClosed) for e in events):
            return b"".join(audio)


async def test_an_utterance_from_the_local_server(open_ws: Connect, local: LocalServer) -> None:
    with trio.fail_after(10):
        ws = await open_ws(local_url(local), AUTH)
        text = "Both transports hear the same tone."
        assert await speak(ws, text) == expected(text)
        async with trio.open_nursery() as inner:  # the default transport reads pongs in receive()
            inner.start_soon(ws.receive)
            await ws.ping()  # hypercorn answers
            inner.cancel_scope.cancel()
        assert await speak(ws, "Again.") == expected("Again.")
        await ws.aclose()
        await ws.aclose()  # idempotent
        with pytest.raises(ConnectionLost, match=r"^connection to 127\.0\.0\.1:\d+ closed"):
            await ws.send("after close")
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1000
    assert local.statistics().violations == ()


async def test_401_with_retry_after_from_the_local_server(
    open_ws: Connect, local: LocalServer
) -> None:
    # echo=True: the server repeats the Authorization header and the query, as careless
    # providers do; none of it may reach the error.
    local.faults.reject = RejectHandshake(status=401, retry_after=3, echo=True)
    with trio.fail_after(10), pytest.raises(HandshakeRejected) as info:
        await open_ws(local_url(local), AUTH)
    exc = info.value
    assert (exc.status, exc.retry_after, exc.is_auth_error) == (401, 3.0, True)
    assert str(exc) == "WebSocket handshake rejected with HTTP 401: Unauthorized"
    for leaked in (KEY, SECRET, "streamBidirectional", "echo"):
        assert leaked not in str(exc) and leaked not in repr(exc)


async def test_wrong_key_is_rejected_by_the_local_server(
    open_ws: Connect, local: LocalServer
) -> None:
    with trio.fail_after(10), pytest.raises(HandshakeRejected) as info:
        await open_ws(local_url(local), [("Authorization", "Basic WRONG-SECRET")])
    assert info.value.status == 401 and info.value.retry_after is None
    assert "WRONG-SECRET" not in str(info.value)


async def test_local_server_that_never_answers_the_upgrade(
    open_ws: Connect, local: LocalServer
) -> None:
    local.faults.no_answer = NoHandshakeAnswer()
    with trio.fail_after(5):
        start = trio.current_time()
        with pytest.raises(ConnectionLost, match=r"^WebSocket handshake with .* timed out after"):
            await open_ws(local_url(local), AUTH, handshake_timeout=0.3)
        assert 0.3 <= trio.current_time() - start < 2


async def test_close_code_and_binary_frame_from_the_local_server(open_ws: Connect) -> None:
    faults = Faults(
        # contextCreated, then a binary frame, then a close frame instead of the audio.
        bad_frame=BadFrame(after_frames=1, kind="binary"),
        close_connection=CloseConnection(code=4002, reason=f"go away {KEY}", after_frames=1),
    )
    config = ServerConfig(synthesizer="tone", api_key=KEY, faults=faults)
    async with open_server(config) as server:
        with trio.fail_after(10):
            ws = await open_ws(local_url(server), AUTH)
            codec = trio_tts.InworldProvider().new_codec()
            await ws.send_many(
                [*codec.create("c1", PCM), *codec.send_text("c1", "Hi.", flush=True)]
            )
            assert "contextCreated" in await ws.receive()
            assert await ws.receive() == b"\x00\x01binary"
            with pytest.raises(ConnectionLost) as info:
                await ws.receive()
            assert info.value.code == 4002
            assert KEY not in str(info.value)  # the server echoed the key: redacted
            with pytest.raises(ConnectionLost):
                await ws.send("late")
            await ws.aclose()


# --------------------------------------------------------------------- frame-level checks


async def test_echo_headers_and_repr(open_ws: Connect, nursery: trio.Nursery) -> None:
    seen: list[object] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        seen.append(dict(request.headers).get(b"authorization"))
        await echo(request)

    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, handler), [("Authorization", KEY)])
        assert seen == [KEY.encode()]
        await ws.send("héllo ✓")
        assert await ws.receive() == "héllo ✓"
        assert "127.0.0.1:" in repr(ws) and "open" in repr(ws)
        assert SECRET not in repr(ws) and "tts" not in repr(ws)
        await ws.aclose()
        assert "closed" in repr(ws)


async def test_large_message_and_message_too_big(open_ws: Connect, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        url = await serve(nursery, echo)
        ws = await open_ws(url, [], max_message_size=2**21)
        big = "x" * 2**21
        await ws.send(big)
        assert await ws.receive() == big
        await ws.aclose()
        small = await open_ws(url, [], max_message_size=1000)
        await small.send("y" * 2000)
        with pytest.raises(ConnectionLost, match="larger than max_message_size") as info:
            await small.receive()
        assert info.value.code == 1009
        await small.aclose()


async def test_fragmented_text_and_binary(open_ws: Connect, nursery: trio.Nursery) -> None:
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
        ws = await open_ws(await serve_raw(nursery, script), [], close_timeout=0.2)
        assert await ws.receive() == "fragmented ✓ message"
        assert await ws.receive() == b"\x00\x01\x02"
        await ws.aclose()


async def test_server_close_after_messages(open_ws: Connect, nursery: trio.Nursery) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("one")
        await ws.send_message(b"two")
        await ws.aclose(code=1011, reason="internal oops")

    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, handler), [])
        assert await ws.receive() == "one"
        assert await ws.receive() == b"two"
        with pytest.raises(
            ConnectionLost,
            match=r"^connection to 127\.0\.0\.1:\d+ closed by the server \(code 1011\): "
            r"internal oops$",
        ) as info:
            await ws.receive()
        assert info.value.code == 1011
        with pytest.raises(ConnectionLost) as late:
            await ws.send("late")
        assert late.value.code == 1011
        await ws.aclose()
        with pytest.raises(ConnectionLost) as after:
            await ws.receive()
        assert after.value.code == 1011  # the server's close stays the answer


async def test_server_normal_close_is_code_1000(open_ws: Connect, nursery: trio.Nursery) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await (await request.accept()).aclose()

    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, handler), [])
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1000
        await ws.aclose()


async def test_tcp_drop_without_close_frame(open_ws: Connect, nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        proto.send_text(b"last")
        await flush(stream, proto)
        await stream.aclose()

    with trio.fail_after(5):
        ws = await open_ws(await serve_raw(nursery, script), [])
        assert await ws.receive() == "last"
        with pytest.raises(ConnectionLost, match="lost without a close frame") as info:
            await ws.receive()
        assert info.value.code == 1006
        await ws.aclose()


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(401, [], None), (429, [(b"Retry-After", b"7")], 7.0), (503, [(b"retry-after", b"x")], None)],
)
async def test_handshake_rejected(
    open_ws: Connect,
    nursery: trio.Nursery,
    status: int,
    headers: list[tuple[bytes, bytes]],
    retry_after: float | None,
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(
            status, extra_headers=[*headers, (b"X-Echo", KEY.encode())], body=f"{KEY}".encode()
        )

    with trio.fail_after(5), pytest.raises(HandshakeRejected) as info:
        await open_ws(await serve(nursery, handler), [("Authorization", KEY)])
    assert (info.value.status, info.value.retry_after) == (status, retry_after)
    assert str(info.value).startswith(f"WebSocket handshake rejected with HTTP {status}")
    for leaked in ("SECRET", "X-Echo", "tts"):
        assert leaked not in str(info.value)


async def test_handshake_timeout_against_silent_server(
    open_ws: Connect, nursery: trio.Nursery
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    url = await serve_tcp(nursery, silent)
    with trio.fail_after(5):
        start = trio.current_time()
        with pytest.raises(
            ConnectionLost,
            match=r"^WebSocket handshake with 127\.0\.0\.1:\d+ timed out after 0\.3s$",
        ):
            await open_ws(url, [], handshake_timeout=0.3)
        assert 0.3 <= trio.current_time() - start < 2


@pytest.mark.parametrize("reply", [b"SSH-2.0-OpenSSH\r\n\r\n", b""])
async def test_server_hangs_up_during_the_handshake(
    open_ws: Connect, nursery: trio.Nursery, reply: bytes
) -> None:
    """Garbage or nothing, then EOF: a failure at once, not at the handshake timeout."""

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        if reply:
            await stream.send_all(reply)
        await stream.aclose()

    url = await serve_tcp(nursery, hang_up)
    with (
        trio.fail_after(5),
        pytest.raises(ConnectionLost, match=r"^WebSocket handshake with 127\.0\.0\.1:\d+ failed"),
    ):
        await open_ws(url, [], handshake_timeout=60)


async def test_connection_refused_and_bad_url(open_ws: Connect) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(5):
        refused = rf"^could not connect to 127\.0\.0\.1:{port}: connection refused$"
        with pytest.raises(ConnectionLost, match=refused):
            await open_ws(f"ws://127.0.0.1:{port}/x?key={SECRET}", [])
        for bad in (f"http://example.com/?key={SECRET}", f"ws://:99/?key={SECRET}"):
            with pytest.raises(InvalidOptions) as info:
                await open_ws(bad, [])
            assert SECRET not in str(info.value)


async def test_ping_pong(open_ws: Connect, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, echo), [])
        got_one = trio.Event()
        received: list[str | bytes] = []

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


async def test_server_ping_answered_while_receiving(
    open_ws: Connect, nursery: trio.Nursery
) -> None:
    pinged = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.ping(b"srv")  # returns once our automatic pong arrives
        pinged.set()
        await ws.send_message("done")
        await trio.sleep_forever()

    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, handler), [], close_timeout=0.2)
        assert await ws.receive() == "done"
        assert pinged.is_set()
        await ws.aclose()


async def test_ping_fails_when_connection_dies(open_ws: Connect, nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await stream.receive_some(1000)  # the ping
        await stream.aclose()  # never answers it

    with trio.fail_after(5):
        ws = await open_ws(await serve_raw(nursery, script), [])
        async with trio.open_nursery() as inner:

            async def reader() -> None:
                with pytest.raises(ConnectionLost):
                    await ws.receive()

            inner.start_soon(reader)
            with pytest.raises(ConnectionLost) as info:
                await ws.ping()
            assert info.value.code == 1006
        with pytest.raises(ConnectionLost):
            await ws.ping()
        await ws.aclose()


async def test_aclose_bounded_when_peer_ignores_close(
    open_ws: Connect, nursery: trio.Nursery
) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await trio.sleep_forever()  # reads nothing, answers nothing

    with trio.fail_after(5):
        ws = await open_ws(await serve_raw(nursery, script), [], close_timeout=0.3)
        start = trio.current_time()
        await ws.aclose()
        assert 0.3 <= trio.current_time() - start < 2
        with pytest.raises(ConnectionLost):
            await ws.receive()


async def test_aclose_while_another_task_receives(open_ws: Connect, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, echo), [])
        async with trio.open_nursery() as inner:

            async def reader() -> None:
                with pytest.raises(ConnectionLost) as info:
                    await ws.receive()
                assert info.value.code == 4000

            inner.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await ws.aclose(4000, "bye")


async def test_cancelled_aclose_still_closes_the_socket(
    open_ws: Connect, nursery: trio.Nursery
) -> None:
    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        with trio.fail_after(5):
            while await stream.receive_some(1000):
                pass  # the close frame arrives, then EOF: the client closed the socket

    with trio.fail_after(5):
        ws = await open_ws(await serve_raw(nursery, script), [], close_timeout=10)
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.aclose()
        with pytest.raises(ConnectionLost):
            await ws.send("after a cancelled close")


async def test_concurrent_send_from_two_tasks(open_ws: Connect, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        ws = await open_ws(await serve(nursery, echo), [])
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


async def test_receive_is_single_consumer(open_ws: Connect, nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        ws = await open_ws(await serve(nursery, echo), [])
        async with trio.open_nursery() as inner:
            inner.start_soon(ws.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await ws.receive()
            inner.cancel_scope.cancel()
        await ws.send("still works after a cancelled receive")
        assert await ws.receive() == "still works after a cancelled receive"
        await ws.aclose()


# -------------------------------------------------------------- trio-websocket specifics


async def test_cancelled_send_breaks_the_transport(nursery: trio.Nursery) -> None:
    """A write cut by cancellation may leave half a frame: the socket is closed, not reused."""

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await trio.sleep_forever()  # reads nothing: the client's send_all blocks

    async with trio.open_nursery() as lender:
        ws = await connect_trio_websocket(
            await serve_raw(nursery, script), [], nursery=lender, close_timeout=0.2
        )
        with trio.move_on_after(0.3):
            while True:
                await ws.send("z" * 65536)
        with pytest.raises(ConnectionLost, match=r"^write to 127\.0\.0\.1:\d+ failed$"):
            await ws.send("after")
        await ws.aclose()
        assert repr(ws).endswith(" closed>")
        assert not lender.child_tasks


async def test_factory_scope_owns_every_socket(server: LocalServer) -> None:
    """The factory's nursery holds one task per open socket; none is left after the pool."""
    async with open_trio_websocket_factory() as factory:
        provider = trio_tts.InworldProvider(url=server.ws_url)
        async with trio_tts.open_pool(provider, transport_factory=factory, defaults=PCM) as pool:
            ctx = await pool.open_context()
            await ctx.aclose()
            assert repr(factory) == "<TrioWebSocketFactory sockets=1>"
        assert repr(factory) == "<TrioWebSocketFactory sockets=0>"


async def test_factory_scope_aborts_a_socket_left_open(server: LocalServer) -> None:
    with trio.fail_after(5):
        async with open_trio_websocket_factory() as factory:
            ws = await factory(server.ws_url, [], nursery=None)  # a nursery is ignored
            assert isinstance(ws, TrioWebSocketTransport)
        with pytest.raises(ConnectionLost):
            await ws.send("the block ended: the socket was aborted")


# ------------------------------------------------------------------------- secret scan


@pytest.mark.parametrize(
    "name", ["401", "429", "rejection-echoes-the-key", "tls-error", "connection-refused",
             "close-reason-echoes-the-key", "handshake-timeout"],
)  # fmt: skip
async def test_secret_scan_over_trio_websocket(
    name: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_secret_scan's scenarios, each pool opened over the trio-websocket transport: the
    key shows up in no log record (every logger at DEBUG), error, traceback or repr."""
    import logging

    import test_secret_scan as scan

    caplog.set_level(logging.DEBUG)
    for logger in [*scan.LOGGERS, *logging.Logger.manager.loggerDict]:
        logging.getLogger(logger).setLevel(logging.DEBUG)
    fail_once = scan.fail_once

    async def over_trio_websocket(url: str, **settings: Any) -> list[str]:
        async with open_trio_websocket_factory() as factory:
            texts = await fail_once(url, transport_factory=factory, **settings)
            texts.append(repr(factory))
            return texts

    monkeypatch.setattr(scan, "fail_once", over_trio_websocket)
    texts = await scan.SCENARIOS[name]()
    texts += scan.log_texts(caplog)
    assert any(r.name.startswith("trio-websocket") for r in caplog.records) or name in (
        "tls-error", "connection-refused", "handshake-timeout",
    )  # fmt: skip
    scan.assert_no_key(texts)
