"""The per-message hot path: writes per burst, the transport's frame fast path, burst delivery.

Behaviour, never timing: how many writes a burst of commands costs, which messages come out
of bytes split at every boundary, what a consumer sees per wake-up.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing
from websockets.client import ClientProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

import trio_tts
from trio_tts._core.context import Context, ContextStream
from trio_tts._core.errors import ConnectionLost
from trio_tts._core.transport import Transport, WebSocketTransport, connect
from trio_tts.server import LocalServer

from helpers import PCM, expected, provider_for, wait_quiet


async def memory_transport(
    *, max_message_size: int = 1 << 20, at_frame_boundary: bool = False
) -> tuple[WebSocketTransport, trio.testing.MemorySendStream, trio.abc.Stream, ServerProtocol]:
    """A client transport and a server protocol over trio's in-memory stream pair, after a
    real handshake. Returns the transport, its send stream (to count writes), the server's
    end of the pair and the server's protocol (to build frames)."""
    client, server = trio.testing.memory_stream_pair()
    proto = ClientProtocol(parse_uri("ws://memory/x"), max_size=max_message_size)
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
        max_message_size=max_message_size,
        at_frame_boundary=at_frame_boundary,
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


# ------------------------------------------------------------------ the frame fast path

SMALL = "hi"
UTF8 = "é" * 100  # 200 bytes: a 16-bit length, multi-byte characters
BINARY = bytes(range(256)) * 258  # 66,048 bytes: a 64-bit length
FRAGMENTS = ("frag-one ", "frag-two ", "frag-three")


def frames(srv: ServerProtocol) -> bytes:
    """One byte string of server frames: text, a ping, text, binary, a fragmented text
    message (which ends the fast path), text again."""
    srv.send_text(SMALL.encode())
    srv.send_ping(b"are you there")
    srv.send_text(UTF8.encode())
    srv.send_binary(BINARY)
    srv.send_text(FRAGMENTS[0].encode(), fin=False)
    srv.send_continuation(FRAGMENTS[1].encode(), fin=False)
    srv.send_continuation(FRAGMENTS[2].encode(), fin=True)
    srv.send_text(b"after")
    return b"".join(srv.data_to_send())


EXPECTED = [SMALL, UTF8, BINARY, "".join(FRAGMENTS), "after"]


async def receive_in_parts(parts: list[bytes]) -> tuple[list[str | bytes], list[object]]:
    """Send ``parts`` one read at a time (each consumed before the next is written); return
    the messages the client received and the frames the server got back."""
    ws, _sent, server, srv = await memory_transport(at_frame_boundary=True)
    got: list[str | bytes] = []
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            while len(got) < len(EXPECTED):
                got.append(await ws.receive())

        nursery.start_soon(reader)
        for part in parts:
            await server.send_all(part)
            await trio.testing.wait_all_tasks_blocked()
    srv.receive_data(await server.receive_some())
    return got, srv.events_received()


async def test_frames_split_at_any_byte_come_out_whole() -> None:
    """Bytes cut anywhere — inside a header, a 16/64-bit length, a UTF-8 character, a ping,
    a fragment — give the same messages in the same order, and the ping is answered."""
    _, _, _, srv = await memory_transport()
    data = frames(srv)
    big = data.index(BINARY[:16])
    cuts = sorted(
        {*range(0, big + 12), *range(big + len(BINARY) - 12, len(data) + 1)}
    )  # every byte but the middle of the 66 KB payload
    for cut in cuts:
        got, back = await receive_in_parts([data[:cut], data[cut:]])
        assert got == EXPECTED, cut
        assert [bytes(f.data) for f in back] == [b"are you there"], cut  # type: ignore[attr-defined]


async def test_frames_one_byte_per_read() -> None:
    _, _, _, srv = await memory_transport()
    data = frames(srv)
    small = data[: data.index(BINARY[:16]) - 4]  # up to the binary frame's header
    got, back = await receive_in_parts(
        [small[i : i + 1] for i in range(len(small))] + [data[len(small) :]]
    )
    assert got == EXPECTED
    assert len(back) == 1


async def test_close_frame_ends_receiving_and_drops_what_follows() -> None:
    ws, _sent, server, srv = await memory_transport(at_frame_boundary=True)
    srv.send_text(b"last words")
    srv.send_close(1011, "going away")
    await server.send_all(b"".join(srv.data_to_send()) + b"\x81\x05after")
    assert await ws.receive() == "last words"
    with pytest.raises(ConnectionLost) as info:
        await ws.receive()
    assert info.value.code == 1011
    srv.receive_data(await server.receive_some())  # our echo of the close frame
    assert srv.close_rcvd is not None and srv.close_rcvd.code == 1011


async def test_invalid_utf8_closes_with_1007() -> None:
    ws, _sent, server, srv = await memory_transport(at_frame_boundary=True)
    srv.send_text(b"fine")
    await server.send_all(b"".join(srv.data_to_send()) + b"\x81\x02\xc3\x28")
    assert await ws.receive() == "fine"
    with pytest.raises(ConnectionLost) as info:
        await ws.receive()
    assert info.value.code == 1007
    srv.receive_data(await server.receive_some())
    assert srv.close_rcvd is not None and srv.close_rcvd.code == 1007


async def test_masked_or_reserved_frames_are_protocol_errors() -> None:
    for bad in (b"\x81\x82abcdOK", b"\xc1\x02OK", b"\x83\x02OK", b"\x09\x02OK"):
        ws, _sent, server, _srv = await memory_transport(at_frame_boundary=True)
        await server.send_all(b"\x81\x02ok" + bad)
        assert await ws.receive() == "ok"
        with pytest.raises(ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1002, bad


async def test_a_frame_over_the_limit_is_refused_from_its_header() -> None:
    """Only the header has arrived: the transport already refuses the frame (1009)."""
    ws, _sent, server, _srv = await memory_transport(at_frame_boundary=True, max_message_size=1000)
    await server.send_all(b"\x81\x7e" + (1001).to_bytes(2, "big") + b"x" * 10)
    with pytest.raises(ConnectionLost) as info:
        await ws.receive()
    assert info.value.code == 1009


async def test_frames_in_the_same_read_as_the_101_response(nursery: trio.Nursery) -> None:
    """A server that writes frames right behind its 101 response: ``connect`` gives the
    protocol only the response head and the transport parses the frames."""

    async def handler(stream: trio.SocketStream) -> None:
        srv = ServerProtocol()
        while not (events := srv.events_received()):
            srv.receive_data(await stream.receive_some(65536))
        srv.send_response(srv.accept(events[0]))  # type: ignore[arg-type]
        srv.send_text(b"early one")
        srv.send_ping(b"early ping")
        srv.send_text(b"early \xc3\xa9")
        await stream.send_all(b"".join(srv.data_to_send()))  # one write: 101 + frames
        srv.receive_data(await stream.receive_some(65536))
        pongs = [bytes(f.data) for f in srv.events_received()]  # type: ignore[attr-defined]
        srv.send_text(repr(pongs).encode())
        await stream.send_all(b"".join(srv.data_to_send()))
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(5):
        ws = await connect(f"ws://127.0.0.1:{port}/x", [], close_timeout=0.1)
        assert await ws.receive() == "early one"
        assert await ws.receive() == "early é"
        assert await ws.receive() == repr([b"early ping"])
        await ws.aclose()


# ------------------------------------------------------------------ burst delivery


class Owner:
    """The two calls a Context makes of its pool, recorded."""

    def __init__(self) -> None:
        self.left: list[tuple[str, bool]] = []

    async def send_command(self, context_id: str, command: object) -> None:
        await trio.lowlevel.checkpoint()

    def context_left(self, context_id: str, *, cancel: bool) -> None:
        self.left.append((context_id, cancel))


class TaskSteps(trio.abc.Instrument):
    """How many times each task was run by the scheduler."""

    def __init__(self) -> None:
        self.steps: dict[trio.lowlevel.Task, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] = self.steps.get(task, 0) + 1


def stream_and_context(**bounds: int) -> tuple[ContextStream, Context[trio_tts.VoiceOptions]]:
    stream = ContextStream(
        "c1", PCM, max_events=bounds.get("events", 100), max_bytes=bounds.get("bytes", 1 << 20)
    )
    return stream, Context(Owner(), stream, PCM, max_text=1000)


def chunk(n: int) -> trio_tts.Audio:
    return trio_tts.Audio("c1", bytes([n]) * 480)


async def test_a_burst_is_read_with_one_wake_up() -> None:
    """Events delivered while the reader was parked reach it in one scheduler step: one
    wake-up per burst, not one per event, and nothing reordered or lost."""
    stream, ctx = stream_and_context()
    got: list[object] = []
    reader: list[trio.lowlevel.Task] = []
    steps = TaskSteps()

    async def consume() -> None:
        reader.append(trio.lowlevel.current_task())
        async for event in ctx:
            got.append(event)

    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()  # parked on the empty buffer
            before = steps.steps[reader[0]]
            for n in range(40):
                assert stream.deliver(chunk(n))
            assert stream.buffered_bytes == 40 * 480
            await trio.testing.wait_all_tasks_blocked()
            assert got == [chunk(n) for n in range(40)]
            assert steps.steps[reader[0]] - before == 1  # woken once for the forty
            assert stream.buffered_bytes == 0
            for n in range(40, 43):
                assert stream.deliver(chunk(n))
            stream.closed_by_server()  # the end rides with the burst
            await trio.testing.wait_all_tasks_blocked()
        assert got == [chunk(n) for n in range(43)]
        assert steps.steps[reader[0]] - before <= 3  # this burst and the end of iteration
    finally:
        trio.lowlevel.remove_instrument(steps)


async def test_a_buffered_burst_still_honours_cancellation() -> None:
    """A cancelled reader is stopped within 16 events of a buffered burst, and the event it
    was about to take stays buffered: nothing is lost."""
    stream, ctx = stream_and_context()
    for n in range(40):
        stream.deliver(chunk(n))
    got = []
    with trio.CancelScope() as scope:
        got.append(await ctx.__anext__())
        scope.cancel()
        while True:
            got.append(await ctx.__anext__())
    assert scope.cancelled_caught
    assert 1 < len(got) <= 16
    rest = []
    while (event := stream.take()) is not None:
        rest.append(event)
    assert got + rest == [chunk(n) for n in range(40)]


async def test_the_error_comes_after_the_buffered_events() -> None:
    stream, ctx = stream_and_context()
    stream.deliver(chunk(0))
    stream.deliver(chunk(1))
    stream.fail(trio_tts.ContextFailed(13, "server error"))
    stream.deliver(chunk(2))  # after the failure: dropped, counted
    got = []
    with pytest.raises(trio_tts.ContextFailed):
        async for event in ctx:
            got.append(event)
    assert got == [chunk(0), chunk(1)]
    assert stream.dropped_events == 1


async def test_backlog_bounds_fail_the_stream_not_block_the_writer() -> None:
    stream, ctx = stream_and_context(events=3)
    assert all(stream.deliver(chunk(n)) for n in range(3))
    assert not stream.deliver(chunk(3))  # the 4th event: SlowConsumer
    assert isinstance(stream.error, trio_tts.SlowConsumer)
    assert [e async for e in _until_error(ctx)] == [chunk(0), chunk(1), chunk(2)]

    stream, ctx = stream_and_context(bytes=1000)
    assert stream.deliver(chunk(0)) and stream.deliver(chunk(1))  # 960 bytes
    assert not stream.deliver(chunk(2))  # 1440 > 1000
    assert isinstance(stream.error, trio_tts.SlowConsumer)


async def _until_error(ctx: Context[trio_tts.VoiceOptions]) -> AsyncIterator[object]:
    with contextlib.suppress(trio_tts.TTSError):
        async for event in ctx:
            yield event


async def test_one_reader_at_a_time() -> None:
    stream, ctx = stream_and_context()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctx.__anext__)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await ctx.__anext__()
        stream.deliver(chunk(0))


async def test_a_sink_takes_events_only_while_nothing_is_queued() -> None:
    """``Context.on_event``: an event the sink takes is never queued; one it declines is
    queued, and every later event queues behind it (the sink is not asked) until the
    reader has drained the queue: the order of sink + iteration is the order of arrival."""
    stream, ctx = stream_and_context()
    sunk: list[object] = []
    accept = True

    def sink(event: trio_tts.Audio | trio_tts.FlushCompleted) -> bool:
        if accept:
            sunk.append(event)
        return accept

    ctx.on_event(sink)
    for n in range(3):
        assert stream.deliver(chunk(n))
    assert sunk == [chunk(0), chunk(1), chunk(2)]
    assert stream.buffered_bytes == 0 and stream.audio_bytes == 3 * 480
    accept = False
    assert stream.deliver(chunk(3))  # declined: queued
    accept = True
    assert stream.deliver(chunk(4))  # queued behind chunk 3, the sink not asked
    assert stream.deliver(trio_tts.FlushCompleted("c1"))
    assert sunk == [chunk(0), chunk(1), chunk(2)]
    assert stream.buffered_bytes == 2 * 480
    assert await ctx.__anext__() == chunk(3)
    assert await ctx.__anext__() == chunk(4)
    assert await ctx.__anext__() == trio_tts.FlushCompleted("c1")
    assert stream.deliver(chunk(5))  # the queue is empty again: the sink takes it
    assert sunk[-1] == chunk(5) and stream.buffered_bytes == 0
    ctx.on_event(None)
    assert stream.deliver(chunk(6))  # no sink: queued
    stream.closed_by_server()
    assert [event async for event in ctx] == [chunk(6)]
    assert stream.audio_bytes == 7 * 480


async def test_a_sink_sees_nothing_after_the_context_failed() -> None:
    stream, ctx = stream_and_context()
    sunk: list[object] = []
    ctx.on_event(lambda event: sunk.append(event) is None)
    stream.deliver(chunk(0))
    stream.fail(trio_tts.ContextFailed(13, "server error"))
    stream.deliver(chunk(1))  # after the failure: dropped, counted, not handed on
    assert sunk == [chunk(0)]
    assert stream.dropped_events == 1
    with pytest.raises(trio_tts.ContextFailed):
        await ctx.__anext__()
