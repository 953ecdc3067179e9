"""The pool end to end over both transports: the default (websockets' sans-io protocol) and
trio-websocket (``open_trio_websocket_factory``), against the local server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts._core.transport_trio_websocket import open_trio_websocket_factory
from trio_tts.server import (
    CloseAfterContexts,
    DropConnection,
    LocalServer,
    ServerConfig,
    open_server,
)

from helpers import PCM, expected, provider_for, turn, wait_quiet

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(params=["websockets", "trio-websocket", "transport-setting"])
async def settings(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """``open_pool`` settings choosing the transport: the default, a trio-websocket factory
    the test owns (its nursery must hold no socket once the pool inside it has closed), and
    the ``transport="trio-websocket"`` setting (the pool owns the factory)."""
    if request.param == "websockets":
        yield {"defaults": PCM}
        return
    if request.param == "transport-setting":
        yield {"defaults": PCM, "transport": "trio-websocket"}
        return
    async with open_trio_websocket_factory() as factory:
        yield {"defaults": PCM, "transport_factory": factory}
        await trio.testing.wait_all_tasks_blocked()
        assert repr(factory) == "<TrioWebSocketFactory sockets=0>"


async def test_one_turn_gets_exactly_its_audio(server: LocalServer, settings: Any) -> None:
    async with trio_tts.open_pool(provider_for(server), **settings) as pool:
        with trio.fail_after(10):
            assert await turn(pool, TEXT) == expected(TEXT)
            assert await turn(pool, "And a second one.") == expected("And a second one.")
        await wait_quiet(pool, server)
        assert pool.statistics().connections_open == 1
    assert server.statistics().violations == ()


async def test_concurrent_contexts_over_several_connections(
    server: LocalServer, settings: Any
) -> None:
    """40 turns at once over 4 connections × 5 contexts: every byte goes to its context."""
    results: dict[int, bytes] = {}
    async with trio_tts.open_pool(provider_for(server), max_connections=4, **settings) as pool:

        async def one(i: int) -> None:
            results[i] = await turn(pool, f"Caller {i} has its own words.")

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(one, i)
        await wait_quiet(pool, server)
        assert pool.statistics().connections_open == 4
    assert results == {i: expected(f"Caller {i} has its own words.") for i in range(40)}
    stats = server.statistics()
    assert stats.peak_connections <= 4 and stats.peak_contexts_per_connection <= 5
    assert stats.violations == ()


async def test_cancelled_turn_leaves_nothing_behind(server: LocalServer, settings: Any) -> None:
    long_text = " ".join(["cancel"] * 60)
    async with trio_tts.open_pool(provider_for(server), **settings) as pool:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                ctx = await pool.open_context()
                async with ctx:
                    await ctx.send_text(long_text)
                    await ctx.finish()
                    async for event in ctx:
                        if isinstance(event, trio_tts.Audio):
                            scope.cancel()  # mid-audio, from inside the consumer
                        await trio.lowlevel.checkpoint()
            assert scope.cancelled_caught
            assert await turn(pool, TEXT) == expected(TEXT)
        await wait_quiet(pool, server)
        assert pool.statistics().connections_failed == 0
    assert server.statistics().violations == ()


async def test_dropped_connection_fails_only_its_contexts(settings: Any) -> None:
    long_text = " ".join(["word"] * 80)
    config = ServerConfig(synthesizer="tone")
    async with open_server(config) as server:
        server.faults.drop = DropConnection(after_frames=20, connections=lambda n: n == 0)
        async with trio_tts.open_pool(provider_for(server), max_connections=1, **settings) as pool:
            with trio.fail_after(10):
                with pytest.raises(trio_tts.ConnectionLost) as info:
                    await turn(pool, long_text)
                assert info.value.code == 1006
                assert await turn(pool, TEXT) == expected(TEXT)  # on a new connection
            await wait_quiet(pool, server)
            stats = pool.statistics()
            assert stats.connections_failed == 1 and stats.connections_opened == 2


async def test_contexts_without_audio_move_to_another_connection(settings: Any) -> None:
    async with open_server(ServerConfig(synthesizer="tone")) as server:
        server.faults.close = CloseAfterContexts(
            after_contexts=1, code=1011, connections=lambda n: n == 0
        )
        async with trio_tts.open_pool(provider_for(server), **settings) as pool:
            with trio.fail_after(10):
                assert await turn(pool, TEXT) == expected(TEXT)
            stats = pool.statistics()
            assert stats.contexts_moved == 1 and stats.connections_failed == 1
            await wait_quiet(pool, server)


async def test_aclose_with_active_contexts(settings: Any) -> None:
    async with open_server(ServerConfig(synthesizer="tone")) as server:
        server.faults.first_audio_delay = 3600
        async with trio_tts.open_pool(
            provider_for(server), close_timeout=0.5, max_connections=2, **settings
        ) as pool:
            contexts = [await pool.open_context() for _ in range(7)]
            for ctx in contexts:
                await ctx.send_text(TEXT, flush=True)
            with trio.fail_after(10):
                await pool.aclose()
            for ctx in contexts:
                with pytest.raises(trio_tts.PoolClosed):
                    async for _ in ctx:
                        pass
            assert pool.statistics().connections == 0
        with trio.fail_after(5):
            while server.statistics().connections_open:
                await trio.sleep(0.01)


async def test_401_fails_all_waiters_fast(settings: Any) -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone", api_key="right-key")) as server,
        trio_tts.open_pool(provider_for(server, "wrong-key"), **settings) as pool,
    ):
        errors: list[trio_tts.HandshakeRejected] = []

        async def attempt() -> None:
            try:
                await pool.open_context()
            except trio_tts.HandshakeRejected as exc:
                errors.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(attempt)
        assert [e.status for e in errors] == [401] * 5
        assert all("wrong-key" not in str(e) for e in errors)
        assert server.statistics().handshakes_rejected == {401: 1}
