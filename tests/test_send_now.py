"""Urgent commands are written from the caller's task while trio is busy
(``WebSocketTransport.send_nowait``), against real sockets on 127.0.0.1: the bytes leave
before the call yields, a socket that takes only part of them keeps the order, a quiet
scheduler leaves them to the sender, and many contexts sharing a connection still each get
exactly their own audio."""

from __future__ import annotations

import random

import pytest
import trio
import trio.lowlevel
from test_transport import serve_raw
from trio.testing import wait_all_tasks_blocked
from websockets.frames import Opcode
from websockets.server import ServerProtocol

import trio_tts
from trio_tts._core import connection
from trio_tts._core.transport import connect
from trio_tts.server import LocalServer

from helpers import PCM, connection_of, expected, provider_for, wait_quiet


async def read_texts(stream: trio.SocketStream, proto: ServerProtocol, into: list[str]) -> None:
    """Read until the client closes, appending every text message."""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        proto.receive_data(data)
        for frame in proto.events_received():
            if frame.opcode is Opcode.TEXT:  # type: ignore[union-attr]
                into.append(frame.data.decode())  # type: ignore[union-attr]


async def test_send_nowait_writes_before_it_returns(nursery: trio.Nursery) -> None:
    """No task but the server's reads: what reaches the server was written by the
    synchronous call itself, and nothing is left pending."""
    got: list[str] = []
    arrived = trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        while len(got) < 2:
            proto.receive_data(await stream.receive_some(65536))
            got.extend(f.data.decode() for f in proto.events_received())  # type: ignore[union-attr]
        arrived.set()
        await trio.sleep_forever()

    transport = await connect(await serve_raw(nursery, script), [])
    assert transport.direct_writes
    transport.send_nowait(["one", "two"])
    assert not transport.write_pending
    with trio.fail_after(10):
        await arrived.wait()
    assert got == ["one", "two"]
    await transport.aclose()


async def test_what_a_full_socket_refuses_is_written_first_and_in_order(
    nursery: trio.Nursery,
) -> None:
    """The server does not read: direct writes fill the socket, the rest waits (pending);
    a later ``send`` writes it first, then its own frame; every message arrives once, in
    order."""
    got: list[str] = []
    start_reading = trio.Event()
    done = trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        await start_reading.wait()
        await read_texts(stream, proto, got)
        done.set()

    transport = await connect(await serve_raw(nursery, script), [])
    sent: list[str] = []
    block = "x" * 65536
    while not transport.write_pending:  # the kernel buffers fill within a few MB
        assert len(sent) < 2000
        msg = f"{len(sent)}:{block}"
        transport.send_nowait([msg])
        sent.append(msg)
    for _ in range(3):  # more while pending: queued behind the unsent bytes
        msg = f"{len(sent)}:{block}"
        transport.send_nowait([msg])
        sent.append(msg)
    assert transport.write_pending
    start_reading.set()
    await transport.send("last")
    sent.append("last")
    assert not transport.write_pending
    await transport.aclose()
    with trio.fail_after(30):
        await done.wait()
    assert got == sent


def frames_sent(pool: trio_tts.Pool, conn: int | None) -> int:
    return next(c for c in pool.inspect().connections if c.id == conn).frames_sent


async def test_a_flush_leaves_from_the_callers_task_when_trio_is_busy(
    server: LocalServer, nursery: trio.Nursery
) -> None:
    """With many tasks waiting to run (the sender would wait behind all of them),
    ``send_text(..., flush=True)`` returns with its frames already written: the connection
    counted them without the caller yielding, and the utterance is whole."""
    go = trio.Event()
    for _ in range(2 * connection._BUSY_RUN_QUEUE):
        nursery.start_soon(go.wait)
    await wait_all_tasks_blocked()
    async with trio_tts.open_pool(provider_for(server), defaults=PCM, max_connections=1) as pool:
        ctx = await pool.open_context()
        async with ctx:
            conn = connection_of(pool, ctx)
            before = frames_sent(pool, conn)
            go.set()  # all those tasks are now scheduled to run
            await ctx.send_text("Hello there.", flush=True)
            # No checkpoint since the call returned: the sender task has not run.
            assert frames_sent(pool, conn) > before
            await ctx.finish()
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert audio == expected("Hello there.")
        await wait_quiet(pool, server)
    assert server.statistics().violations == ()


async def test_on_a_quiet_scheduler_the_sender_batches_the_flush(server: LocalServer) -> None:
    """Nothing else waits to run: the flush is left to the sender (scheduled at once), so a
    close that follows it leaves in the same write."""
    async with trio_tts.open_pool(provider_for(server), defaults=PCM, max_connections=1) as pool:
        ctx = await pool.open_context()
        async with ctx:
            conn = connection_of(pool, ctx)
            before = frames_sent(pool, conn)
            await ctx.send_text("Hello there.", flush=True)
            await ctx.finish()
            assert frames_sent(pool, conn) == before  # both still queued for the sender
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
            assert frames_sent(pool, conn) > before
        assert audio == expected("Hello there.")
        await wait_quiet(pool, server)
    assert server.statistics().violations == ()


def pieces(n: int) -> list[tuple[str, bool]]:
    """Context ``n``'s text, in pieces: every fourth carries ``flush=True``."""
    return [(f"Word{n}x{i}. ", i % 4 == 3) for i in range(10)]


def expected_audio(n: int) -> bytes:
    """One generation per flush (and the rest at the close), each timed from zero."""
    audio, buffered = b"", ""
    for text, flush in pieces(n):
        buffered += text
        if flush:
            audio, buffered = audio + expected(buffered), ""
    return audio + expected(buffered)


async def test_contexts_sharing_a_connection_keep_their_order(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five contexts on one connection push text in pieces (queued, written by the sender)
    and flushes and closes (written by the caller: here always, however quiet trio is),
    interleaved at random, while some callers leave half-way (a cancel, also written by the
    caller): every finished context gets exactly its own audio, the server sees no protocol
    violation, every slot comes back."""
    monkeypatch.setattr(connection, "_BUSY_RUN_QUEUE", 0)
    rng = random.Random(19)
    results: dict[int, bytes] = {}
    left = {n for n in range(40) if n % 7 == 3}

    async def speak(pool: trio_tts.Pool, n: int) -> None:
        ctx = await pool.open_context()
        async with ctx:
            for i, (text, flush) in enumerate(pieces(n)):
                if n in left and i == 5:
                    return  # leaves the context: a cancel goes out
                await ctx.send_text(text, flush=flush)
                if rng.random() < 0.5:
                    await trio.lowlevel.checkpoint()
            await ctx.finish()
            results[n] = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])

    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, max_connections=1, contexts_per_connection=5
    ) as pool:
        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(speak, pool, n)
        await wait_quiet(pool, server)
        assert pool.statistics().connections_open == 1
    assert set(results) == set(range(40)) - left
    for n, audio in results.items():
        assert audio == expected_audio(n), n
    assert server.statistics().violations == ()
