"""The pool against a real local server on 127.0.0.1 (tone synthesizer: exact bytes)."""

from __future__ import annotations

import functools
import random

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import (
    CloseAfterContexts,
    ContextErrorFault,
    DropConnection,
    LocalServer,
    ServerConfig,
    Stall,
    open_server,
)

from helpers import PCM, connection_of, expected, provider_for, turn, wait_quiet

TEXT = "The quick brown fox jumps over the lazy dog."


async def test_one_turn_gets_exactly_its_audio(server: LocalServer) -> None:
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        assert await turn(pool, TEXT) == expected(TEXT)
        await wait_quiet(pool, server)
        assert pool.statistics().connections_open == 1
    assert server.statistics().violations == ()


async def test_linear16_headers_are_stripped(server: LocalServer) -> None:
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        assert await turn(pool, TEXT, encoding="LINEAR16") == expected(TEXT)


async def test_200_callers_100_slots_limits_and_fifo() -> None:
    """Never over 20 connections × 5 contexts; waiters get slots in arrival order.

    100 holders fill every slot, 100 waiters queue one by one, then a single holder leaves:
    its one free slot passes from waiter to waiter, and must do so in arrival order.
    """
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider_for(server), defaults=PCM) as pool,
    ):
        holders_go = [trio.Event() for _ in range(100)]
        waiters_done = trio.Event()
        granted: list[int] = []
        results: dict[int, bytes] = {}

        async def holder(i: int, task_status: trio.TaskStatus[None]) -> None:
            ctx = await pool.open_context()
            task_status.started()
            async with ctx:
                text = f"holder {i} says hello."
                await ctx.send_text(text)
                await holders_go[i].wait()
                await ctx.finish()
                data = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
                results[i] = data
                assert data == expected(text)

        async def waiter(i: int) -> None:
            ctx = await pool.open_context()
            granted.append(i)
            async with ctx:
                text = f"waiter {i} speaks now."
                await ctx.send_text(text)
                await ctx.finish()
                data = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
                results[100 + i] = data
                assert data == expected(text)
            if len(granted) == 100:
                waiters_done.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    await nursery.start(holder, i)
                assert pool.statistics().contexts_in_use == 100
                for i in range(100):
                    nursery.start_soon(waiter, i)
                    await trio.testing.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 100
                holders_go[0].set()
                await waiters_done.wait()
                assert pool.statistics().contexts_in_use == 99
                for go in holders_go:
                    go.set()
        assert granted == list(range(100))
        assert len(results) == 200
        stats = server.statistics()
        assert stats.peak_connections <= 20
        assert stats.peak_contexts_per_connection <= 5
        assert stats.violations == ()
        await wait_quiet(pool, server)


async def test_capacity_timeout_at_the_deadline(
    server: LocalServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, max_connections=1, contexts_per_connection=1
    ) as pool:
        held = await pool.open_context()
        start = trio.current_time()
        with pytest.raises(trio_tts.CapacityTimeout, match=r"^no context slot free within 2.5 s$"):
            await pool.open_context(timeout=2.5)
        assert trio.current_time() == start + 2.5
        assert pool.statistics().waiting == 0
        await held.aclose()
        await wait_quiet(pool)


async def test_server_error_fails_only_its_context(server: LocalServer) -> None:
    server.faults.context_error = ContextErrorFault(when=lambda index, _cid: index == 1, code=13)
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        outcomes: dict[int, object] = {}

        async def run(i: int) -> None:
            try:
                outcomes[i] = await turn(pool, f"context {i} text.")
            except trio_tts.ContextFailed as exc:
                outcomes[i] = exc

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(run, i)
                await trio.testing.wait_all_tasks_blocked()
        failed = [i for i, o in outcomes.items() if isinstance(o, trio_tts.ContextFailed)]
        assert len(failed) == 1
        error = outcomes[failed[0]]
        assert isinstance(error, trio_tts.ContextFailed) and error.code == 13
        for i, o in outcomes.items():
            if i not in failed:
                assert o == expected(f"context {i} text.")
        await wait_quiet(pool, server)


async def test_dropped_connection_fails_only_its_contexts() -> None:
    """5 contexts on a connection that drops mid-audio; 5 on another stay byte-identical."""
    long_text = " ".join(["word"] * 80)  # ~19 s of audio: ~100 frames per context
    faults_drop = DropConnection(after_frames=60, connections=lambda n: n == 0)
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider_for(server), defaults=PCM, max_connections=2) as pool,
    ):
        outcomes: dict[int, object] = {}
        conn_of: dict[int, int] = {}
        all_open = trio.Event()

        async def run(i: int) -> None:
            ctx = await pool.open_context()
            conn = connection_of(pool, ctx)
            assert conn is not None
            conn_of[i] = conn
            if len(conn_of) == 10:
                all_open.set()
            await all_open.wait()
            try:
                async with ctx:
                    await ctx.send_text(f"{i} {long_text}")
                    await ctx.finish()
                    data = [e.data async for e in ctx if isinstance(e, trio_tts.Audio)]
                    outcomes[i] = b"".join(data)
            except trio_tts.ConnectionLost as exc:
                outcomes[i] = exc

        server.faults.drop = faults_drop
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(run, i)
        failed = {i for i, o in outcomes.items() if isinstance(o, trio_tts.ConnectionLost)}
        assert failed
        dropped = {conn_of[i] for i in failed}
        assert len(dropped) == 1  # the server dropped one socket: only its contexts failed
        assert sorted(conn_of.values()).count(dropped.pop()) == 5
        for i, o in outcomes.items():
            if i not in failed:
                assert o == expected(f"{i} {long_text}"), i
        await wait_quiet(pool, server)


async def test_contexts_without_audio_move_to_another_connection() -> None:
    """The server closes a connection with 1011 right after a create: that context is moved
    (its text replayed) and the caller sees only a delay."""
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider_for(server), defaults=PCM) as pool,
    ):
        server.faults.close = CloseAfterContexts(
            after_contexts=1, code=1011, connections=lambda n: n == 0
        )
        with trio.fail_after(10):
            assert await turn(pool, TEXT) == expected(TEXT)
        stats = pool.statistics()
        assert stats.contexts_moved == 1
        assert stats.connections_failed == 1
        await wait_quiet(pool, server)


async def test_random_cancellation_never_leaks(autojump_clock: trio.testing.MockClock) -> None:
    """1000 turns cancelled at random points: no slot, lease, waiter or task left behind."""
    rng = random.Random(1234)
    async with (
        open_server(ServerConfig(synthesizer="tone", chunk_ms=100)) as server,
        trio_tts.open_pool(
            provider_for(server), defaults=PCM, max_connections=2, contexts_per_connection=3
        ) as pool,
    ):
        completed = 0

        async def one(n: int) -> None:
            nonlocal completed
            checkpoints = rng.randrange(0, 400)
            with trio.CancelScope() as scope:

                async def canceller() -> None:
                    for _ in range(checkpoints):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()

                async with trio.open_nursery() as inner:
                    inner.start_soon(canceller)
                    text = f"turn {n} has a few words."
                    got = await turn(pool, text)
                    assert got == expected(text)
                    completed += 1
                    inner.cancel_scope.cancel()

        with trio.fail_after(600):
            for batch in range(100):
                async with trio.open_nursery() as nursery:
                    for i in range(10):
                        nursery.start_soon(one, batch * 10 + i)
        await wait_quiet(pool, server)
        stats = pool.statistics()
        assert stats.contexts_in_use == 0 and stats.waiting == 0
        snap = pool.inspect()
        assert snap.leases_held == 0
        assert snap.contexts == ()
        assert all(not conn.contexts for conn in snap.connections)
        assert 0 < completed < 1000  # some turns finished, some were cut: both paths ran
        assert server.statistics().violations == ()


async def test_late_audio_of_an_abandoned_context_goes_nowhere() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider_for(server), defaults=PCM, max_connections=1) as pool,
    ):
        long_text = " ".join(["abandon"] * 100)
        a = await pool.open_context()
        await a.send_text(long_text)
        await a.flush()
        async for _event in a:
            break  # got some audio; the rest is in flight
        await a.aclose()
        text_b = "Only my own audio, please."
        b_audio = await turn(pool, text_b)
        assert b_audio == expected(text_b)
        await wait_quiet(pool, server)
        assert a.dropped_events > 0  # late audio did arrive, and was dropped
        assert connection_of(pool, a) is None and pool.statistics().connections == 1
        assert pool.statistics().stray_events == 0  # its slot was held until the close


async def test_stale_close_frees_the_slot_and_retires_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider_for(server), defaults=PCM, heartbeat_interval=None) as pool,
    ):
        ctx = await pool.open_context()
        await ctx.send_text("never confirmed")
        await trio.testing.wait_all_tasks_blocked()
        server.faults.stall = Stall(after_frames=0)
        start = trio.current_time()
        await ctx.finish()
        with pytest.raises(trio_tts.ContextFailed, match="did not confirm the close within 120 s"):
            async for _ in ctx:
                pass
        elapsed = trio.current_time() - start
        assert 120 <= elapsed <= 121
        stats = pool.statistics()
        assert stats.contexts_in_use == 0
        assert stats.connections == 0  # retired: its server-side count is unknown
        server.faults.stall = None
        assert await turn(pool, TEXT) == expected(TEXT)


async def test_idle_eviction_keeps_min_connections(
    server: LocalServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_tts.open_pool(
        provider_for(server),
        defaults=PCM,
        contexts_per_connection=1,
        min_connections=1,
        idle_timeout=300,
        keepalive_refresh=540,  # the server closes connections idle for 600 s
        heartbeat_interval=None,
    ) as pool:
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(turn, pool, f"turn {i}.")
        await wait_quiet(pool, server)
        assert pool.statistics().connections_open == 3
        await trio.sleep(295)
        assert pool.statistics().connections_open == 3
        await trio.sleep(10)
        assert pool.statistics().connections_open == 1
        await trio.sleep(3600)  # the warm one is refreshed: the server never closes it
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert stats.connections_open == 1 and stats.connections_failed == 0
        assert server.statistics().connections_open == 1


async def test_keepalive_refresh_replaces_the_warm_connection(
    server: LocalServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_tts.open_pool(
        provider_for(server), defaults=PCM, keepalive_refresh=540, heartbeat_interval=None
    ) as pool:
        assert await pool.prewarm() == 1
        await trio.sleep(545)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert stats.connections_open == 1 and stats.connections_opened == 2
        assert server.statistics().connections_accepted == 2
        assert server.statistics().connections_open == 1


async def test_prewarm_opens_real_sockets(server: LocalServer) -> None:
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        assert await pool.prewarm(3) == 3
        assert server.statistics().connections_open == 3
        assert pool.statistics().connections_open == 3
        await turn(pool, TEXT)
        assert server.statistics().connections_accepted == 3  # the context reused a warm one


async def test_handshake_timeout_against_a_silent_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        provider = trio_tts.InworldProvider(url=f"ws://127.0.0.1:{port}/x")
        async with trio_tts.open_pool(provider, handshake_timeout=10, connect_attempts=1) as pool:
            start = trio.current_time()
            with pytest.raises(trio_tts.ConnectionLost):
                await pool.open_context()
            assert trio.current_time() - start == pytest.approx(10, abs=0.01)
            assert pool.statistics().connections == 0
        nursery.cancel_scope.cancel()


async def test_heartbeat_detects_a_peer_that_stops_answering(
    server: LocalServer, autojump_clock: trio.testing.MockClock
) -> None:
    """A TCP relay that starts swallowing everything: only the heartbeat can tell."""
    blackhole = trio.Event()

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        while data := await src.receive_some(65536):
            if not blackhole.is_set():
                await dst.send_all(data)

    async def relay(client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with trio.open_nursery() as n:
            n.start_soon(pump, client, upstream)
            n.start_soon(pump, upstream, client)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, relay, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        url = server.ws_url.replace(f":{server.port}/", f":{port}/")
        provider = trio_tts.InworldProvider(url=url)
        async with trio_tts.open_pool(
            provider, defaults=PCM, heartbeat_interval=20, heartbeat_timeout=10
        ) as pool:
            ctx = await pool.open_context()
            await ctx.send_text(TEXT)
            await ctx.flush()
            async for _ in ctx:
                break  # audio started: the loss must reach the caller
            blackhole.set()
            start = trio.current_time()
            with pytest.raises(trio_tts.ConnectionLost, match="heartbeat"):
                async for _ in ctx:
                    pass
            assert 10 <= trio.current_time() - start <= 30.01
            assert pool.statistics().connections == 0
        nursery.cancel_scope.cancel()


async def test_401_fails_all_waiters_fast_without_a_retry_loop() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone", api_key="right-key")) as server,
        trio_tts.open_pool(provider_for(server, "wrong-key"), defaults=PCM) as pool,
    ):
        errors: list[BaseException] = []

        async def attempt() -> None:
            try:
                await pool.open_context()
            except trio_tts.HandshakeRejected as exc:
                errors.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(attempt)
        assert len(errors) == 5
        assert all(isinstance(e, trio_tts.HandshakeRejected) and e.status == 401 for e in errors)
        assert server.statistics().handshakes_rejected == {401: 1}
        assert pool.statistics().contexts_in_use == 0 and pool.statistics().waiting == 0


async def test_aclose_with_active_contexts() -> None:
    async with open_server(ServerConfig(synthesizer="tone")) as server:
        server.faults.first_audio_delay = 3600
        async with trio_tts.open_pool(
            provider_for(server), defaults=PCM, close_timeout=0.5
        ) as pool:
            contexts = [await pool.open_context() for _ in range(3)]
            for ctx in contexts:
                await ctx.send_text(TEXT, flush=True)
            with trio.fail_after(10):
                await pool.aclose()
            for ctx in contexts:
                with pytest.raises(trio_tts.PoolClosed):
                    async for _ in ctx:
                        pass
            with pytest.raises(trio_tts.PoolClosed):
                await pool.open_context()
            await pool.aclose()  # idempotent
            assert "closed" in repr(pool)
            assert pool.statistics().connections == 0
        with trio.fail_after(5):
            while server.statistics().connections_open:
                await trio.sleep(0.01)


async def test_word_timings_are_monotonic_across_flushes(server: LocalServer) -> None:
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        ctx = await pool.open_context()
        parts = ["First part here.", "Second part follows.", "Third and last."]
        async with ctx:
            for part in parts:
                await ctx.send_text(part, flush=True)
            await ctx.finish()
            words = []
            audio = b""
            async for event in ctx:
                if isinstance(event, trio_tts.Audio):
                    words.extend(event.words)
                    audio += event.data
        assert [w.word for w in words] == " ".join(parts).split()
        starts = [w.start for w in words]
        assert starts == sorted(starts)
        assert all(w.end >= w.start for w in words)
        assert words[-1].end <= len(audio) / 2 / 24000 + 1e-6
        # The second flush's first word starts after the first flush's audio.
        first_len = len(expected(parts[0])) / 2 / 24000
        assert words[3].start >= first_len - 1e-6


async def test_invalid_options_fail_before_any_network(server: LocalServer) -> None:
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        with pytest.raises(trio_tts.InvalidOptions, match=r"^speaking_rate"):
            await pool.open_context(speaking_rate=3)
        with pytest.raises(trio_tts.InvalidOptions, match=r"^timeout"):
            await pool.open_context(timeout=-1)
        assert server.statistics().connections_accepted == 0
    with pytest.raises(trio_tts.InvalidOptions, match=r"^max_connections"):
        async with trio_tts.open_pool(provider_for(server), max_connections=0):
            pass


async def test_statistics_and_repr_show_live_counts(server: LocalServer) -> None:
    async with trio_tts.open_pool(provider_for(server), defaults=PCM) as pool:
        ctx = await pool.open_context()
        stats = pool.statistics()
        assert (stats.connections_open, stats.contexts_in_use) == (1, 1)
        assert repr(pool) == "<Pool inworld open connections=1/20 contexts=1/100 waiting=0>"
        assert "open" in repr(ctx) and ctx.id in repr(ctx)
        await ctx.aclose()
        await wait_quiet(pool, server)
        assert repr(pool) == "<Pool inworld open connections=1/20 contexts=0/100 waiting=0>"


async def test_prewarm_for_options_opens_a_connection_of_their_key(server: LocalServer) -> None:
    """``prewarm(options=...)`` warms the connection those options need (ElevenLabs' URL:
    voice and format), not the defaults' one; only connections of that key count."""
    provider = trio_tts.ElevenLabsProvider(url=server.base_url)
    defaults = trio_tts.ElevenLabsOptions(output_format="pcm_16000")
    other = defaults.replace(voice_id="cjVigY5qzO86Huf0OWal")
    async with trio_tts.open_pool(provider, defaults=defaults) as pool:
        assert await pool.prewarm() == 1
        assert await pool.prewarm(options=other) == 1  # the defaults' one does not count
        assert await pool.prewarm(options=other) == 1  # already warm: nothing opened
        assert pool.statistics().connections_opened == 2
        ctx = await pool.open_context(options=other)
        async with ctx:
            await ctx.send_text("Warm.", flush=True)
            await ctx.finish()
            assert b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert pool.statistics().connections_opened == 2  # it took the warm connection
        with pytest.raises(trio_tts.InvalidOptions):
            await pool.prewarm(options=trio_tts.VoiceOptions())  # not this provider's
    assert server.statistics().connections_accepted == 2
