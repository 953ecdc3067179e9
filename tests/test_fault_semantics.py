"""The fault semantics of the pool ("Core v2 part 2"), each promise as a small user program.

Every test drives the pool the way an application does (``open_pool``, ``open_context``,
``send_text``, iterate) against the local speech server — in memory under
``MockClock(autojump_threshold=0)`` for exact virtual times, or over 127.0.0.1 — and checks
the state after the action: the pool's ``statistics()``/``inspect()``, ``assert_quiescent``
and the server's own counters. Tests are named after the issue's items (``test_1_...``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import (
    Faults,
    ServerConfig,
    StallContext,
    tone_pcm,
)
from trio_tts.testing import MemoryServer, nth, open_memory_server

RATE = 24000
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=RATE)
TEXT = "Hello there, general Kenobi."
MiB = 2**20


def expected(text: str) -> bytes:
    return tone_pcm(text, RATE)


def handshakes(server: MemoryServer) -> tuple[float, ...]:
    return server.handshake_statistics().times


@asynccontextmanager
async def memory_pool(
    server: MemoryServer, **settings: Any
) -> AsyncIterator[trio_tts.Pool[trio_tts.VoiceOptions]]:
    provider = trio_tts.InworldProvider(url=server.ws_url)
    async with trio_tts.open_pool(
        provider, defaults=PCM, transport_factory=server.connect, **settings
    ) as pool:
        yield pool


async def speak(pool: trio_tts.Pool[trio_tts.VoiceOptions], text: str = TEXT) -> bytes:
    """One utterance, the way an application writes it."""
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


# -- 1. aclose() does not cancel the caller ----------------------------------------------------


async def test_1_aclose_does_not_cancel_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    after_aclose: list[str] = []
    async with open_memory_server() as server:
        async with memory_pool(server) as pool:
            assert await speak(pool) == expected(TEXT)
            await pool.prewarm(3)
            assert server.statistics().connections_open == 3
            await pool.aclose()
            after_aclose.append("body")  # the caller's own code after aclose() runs
            with pytest.raises(trio_tts.PoolClosed):
                await pool.open_context()
            snap = pool.inspect()
            assert snap.closed
            assert snap.tasks == ()
            assert snap.connections == ()
            assert snap.contexts == ()
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics().connections_open == 0
            await pool.aclose()  # idempotent, and still no cancellation
            after_aclose.append("second aclose")
        after_aclose.append("after the block")
        assert server.statistics().connections_accepted == 3
    assert after_aclose == ["body", "second aclose", "after the block"]


async def test_1_aclose_while_a_context_streams_fails_it_after_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The utterance never ends (its audio stalls after the first chunk): ``aclose`` gives it
    ``close_timeout`` seconds, then the reader gets PoolClosed after the audio it had."""
    faults = Faults(stall_context=StallContext(when=nth(1), after_frames=1))
    outcome: dict[str, Any] = {}
    async with (
        open_memory_server(ServerConfig(synthesizer="tone", faults=faults)) as server,
        memory_pool(server, close_timeout=3.0) as pool,
    ):
        streaming = trio.Event()

        async def reader() -> None:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(TEXT)
                await ctx.finish()
                data = b""
                try:
                    async for event in ctx:
                        if isinstance(event, trio_tts.Audio):
                            data += event.data
                            streaming.set()
                except trio_tts.PoolClosed as exc:
                    outcome["error"], outcome["at"] = exc, trio.current_time()
                outcome["data"] = data

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await streaming.wait()
            t0 = trio.current_time()
            await pool.aclose()
            outcome["after"] = trio.current_time()  # runs: aclose did not cancel us
        assert isinstance(outcome["error"], trio_tts.PoolClosed)
        assert outcome["at"] == t0 + 3.0
        assert outcome["after"] >= t0 + 3.0
        assert outcome["data"] and expected(TEXT).startswith(outcome["data"])
        snap = pool.inspect()
        assert snap.closed and snap.tasks == () and snap.connections == ()
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().connections_open == 0
