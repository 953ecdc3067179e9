"""Flow control (``PoolSettings.context_pause_bytes``) against the local server on 127.0.0.1:
a connection whose every context is backlogged stops reading (the audio waits in the socket
and at the server), and reads again when one drains, ends, or a new context joins it."""

from __future__ import annotations

from collections.abc import Callable

import trio

import trio_tts
from trio_tts._core.snapshot import ConnectionSnapshot
from trio_tts.server import LocalServer

from helpers import PCM, connection_of, expected, provider_for, wait_quiet

PAUSE = 64 * 1024
#: 120 s of audio (5.76 MB of PCM, ~7.7 MB of JSON): more than the socket buffers hold, and
#: more than the context's 2 MiB bound would take if it were all read.
LONG = "Slow " * 400


async def until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(30):
        while not predicate():
            await trio.sleep(0.01)


def conn_snapshot(pool: trio_tts.Pool, conn_id: int | None) -> ConnectionSnapshot:
    return next(c for c in pool.inspect().connections if c.id == conn_id)


async def backlogged(pool: trio_tts.Pool) -> tuple[trio_tts.Context, int | None]:
    """Open a context, send it ``LONG`` and finish it without reading: return it (and its
    connection) once that connection paused."""
    ctx = await pool.open_context()
    await ctx.send_text(LONG)
    await ctx.finish()
    conn = connection_of(pool, ctx)
    await until(lambda: conn_snapshot(pool, conn).paused)
    return ctx, conn


async def test_a_connection_whose_contexts_are_all_backlogged_stops_reading(
    server: LocalServer,
) -> None:
    """One context that does not read: past ``context_pause_bytes`` its connection pauses,
    so it neither overflows (no SlowConsumer) nor holds the utterance in memory; reading it
    resumes the connection and every byte arrives, in order; the slot comes back."""
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, max_connections=1, context_pause_bytes=PAUSE
    ) as pool:
        ctx, conn = await backlogged(pool)
        async with ctx:
            # Paused at the bound: the rest waits in the socket and at the server.
            assert PAUSE <= ctx.buffered_bytes < PAUSE + 2 * 2**20
            assert ctx.state is trio_tts.ContextState.FINISHING
            sent_when_paused = server.statistics().frames_sent
            got = bytearray()
            async for event in ctx:
                if isinstance(event, trio_tts.Audio):
                    got += event.data
        assert bytes(got) == expected(LONG)
        assert ctx.state is trio_tts.ContextState.CLOSED
        snap = conn_snapshot(pool, conn)
        assert not snap.paused and snap.pauses >= 1
        # The server had not sent the whole utterance while the client held off.
        assert sent_when_paused < server.statistics().frames_sent
        await wait_quiet(pool, server)
    assert server.statistics().violations == ()


async def test_one_backlogged_context_never_holds_up_another(server: LocalServer) -> None:
    """A paused connection reads again for a context that joins it: the newcomer gets all
    its audio while the backlogged one still does not read; then the backlogged one gets
    all of its own."""
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, max_connections=1, context_pause_bytes=PAUSE
    ) as pool:
        slow, conn = await backlogged(pool)
        async with slow:
            fast = await pool.open_context()
            assert connection_of(pool, fast) == conn
            async with fast:
                await fast.send_text("Fast " * 20)
                await fast.finish()
                got_fast = b"".join([e.data async for e in fast if isinstance(e, trio_tts.Audio)])
            assert got_fast == expected("Fast " * 20)
            assert slow.state is trio_tts.ContextState.FINISHING  # not failed: no overflow
            got = b"".join([e.data async for e in slow if isinstance(e, trio_tts.Audio)])
        assert got == expected(LONG)
        await wait_quiet(pool, server)
    assert server.statistics().violations == ()


async def test_leaving_a_backlogged_context_resumes_and_frees_its_slot(
    server: LocalServer,
) -> None:
    """Leaving a context that paused its connection: reading resumes, the rest of its audio
    is dropped, and the slot comes back once the server confirms."""
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, max_connections=1, context_pause_bytes=PAUSE
    ) as pool:
        ctx, conn = await backlogged(pool)
        await ctx.aclose()  # leave it while its connection is paused
        assert ctx.state is trio_tts.ContextState.ABANDONED
        await wait_quiet(pool, server)
        assert not conn_snapshot(pool, conn).paused
        assert pool.statistics().connections_open == 1  # the connection still serves
    assert server.statistics().violations == ()


async def test_close_reads_on_past_the_pause_bound(server: LocalServer) -> None:
    """``close()`` before reading waits for the server's confirmation: the context is
    exempt from flow control, so it completes (within the context's own bound)."""
    text = "Slow " * 40  # 576 KB of PCM: past the pause bound, within the 2 MiB bound
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, max_connections=1, context_pause_bytes=PAUSE
    ) as pool:
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text(text)
            await ctx.close()
            assert ctx.buffered_bytes == len(expected(text))
            got = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert got == expected(text)
        await wait_quiet(pool, server)
