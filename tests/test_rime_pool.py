"""Rime through the pool's public API, against the local server's ``/ws3`` in memory.

Every test runs under ``MockClock(autojump_threshold=0)`` (the ``autojump_clock`` fixture):
times are virtual and exact. A recording transport sees every frame the pool sends, on which
connection and when, and every close.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import (
    ContextErrorFault,
    RejectHandshake,
    ServerConfig,
    Stall,
    StrayAudio,
    tone_pcm,
)
from trio_tts.testing import MemoryServer, assert_quiescent, open_memory_server

RATE = 24000
TEXT = "The quick brown fox jumps over the lazy dog."
LATENCY = 0.005  # the memory server's handshake latency


def tone(*pieces: str) -> bytes:
    """The audio of ``pieces`` synthesised one after another (one synthesis each)."""
    return b"".join(tone_pcm(p, RATE) for p in pieces)


class _Recording:
    def __init__(self, inner: Any, rec: Recorder, n: int) -> None:
        self._inner, self._rec, self._n = inner, rec, n

    async def send(self, message: str) -> None:
        self._rec.sent.append((trio.current_time(), self._n, json.loads(message)))
        await self._inner.send(message)

    async def send_many(self, messages: Sequence[str]) -> None:
        for message in messages:
            self._rec.sent.append((trio.current_time(), self._n, json.loads(message)))
        await self._inner.send_many(messages)

    async def receive(self) -> str | bytes:
        frame: str | bytes = await self._inner.receive()
        return frame

    async def ping(self) -> None:
        await self._inner.ping()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self._rec.closes.append((trio.current_time(), self._n))
        await self._inner.aclose(code, reason)


class Recorder:
    """A transport factory around the memory server that records what the pool does."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.urls: list[str] = []
        self.sent: list[tuple[float, int, dict[str, Any]]] = []
        self.closes: list[tuple[float, int]] = []

    async def connect(self, url: str, headers: Sequence[tuple[str, str]], **kw: Any) -> _Recording:
        inner = await self.server.connect(url, headers, **kw)
        self.urls.append(url)
        return _Recording(inner, self, len(self.urls) - 1)

    def frames(self, conn: int) -> list[dict[str, Any]]:
        return [f for _, n, f in self.sent if n == conn]

    def texts(self, conn: int) -> str:
        return "".join(str(f["text"]) for f in self.frames(conn) if "text" in f)


@asynccontextmanager
async def rime_pool(
    config: ServerConfig | None = None, api_key: str | None = None, **settings: Any
) -> AsyncIterator[tuple[trio_tts.Pool[trio_tts.RimeOptions], MemoryServer, Recorder]]:
    async with open_memory_server(config or ServerConfig(synthesizer="tone")) as server:
        rec = Recorder(server)
        provider = trio_tts.RimeProvider(api_key, url=server.rime_url)
        async with trio_tts.open_pool(provider, transport_factory=rec.connect, **settings) as pool:
            yield pool, server, rec


async def turn(pool: trio_tts.Pool[trio_tts.RimeOptions], text: str) -> bytes:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


async def test_turns_reuse_one_connection_with_exact_audio_and_timings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, server, rec):
        assert pool.statistics().contexts_per_connection == 1
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("Hello there. ")
            await ctx.send_text("How are you?")
            await ctx.flush()
            await ctx.send_text("Fine.")
            await ctx.finish()
            events = [e async for e in ctx]
        audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
        assert audio == tone("Hello there. ", "How are you?", "Fine.")
        words = [w for e in events if isinstance(e, trio_tts.Audio) for w in e.words]
        assert [w.word for w in words] == ["Hello", "there.", "How", "are", "you?", "Fine."]
        starts = [w.start for w in words]
        assert starts == sorted(starts)  # monotonic across the done that restarts them
        assert words[-1].start == pytest.approx(len("Hello there. How are you?") * 0.06)
        assert sum(isinstance(e, trio_tts.FlushCompleted) for e in events) == 1
        for _ in range(3):
            assert await turn(pool, TEXT) == tone(TEXT)
        assert len(rec.urls) == 1
        assert server.statistics().violations == ()
        await assert_quiescent(pool)  # type: ignore[arg-type]


async def test_session_is_refreshed_on_use_and_an_expired_one_is_never_handed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The sweep never runs here: only the hand-out check can keep the expired connection out.
    async with rime_pool(sweep_interval=10_000.0, idle_timeout=10_000.0) as (pool, _, rec):
        assert await turn(pool, TEXT) == tone(TEXT)  # opened (clock set) at LATENCY
        await trio.sleep_until(LATENCY + 299.0)
        assert await turn(pool, "Second.") == tone("Second.")  # reused; clock restarts
        await trio.sleep_until(LATENCY + 299.0 + 299.0)
        assert await turn(pool, "Third.") == tone("Third.")  # 598 s old, 299 s since use
        assert len(rec.urls) == 1
        await trio.sleep_until(LATENCY + 598.0 + 300.5)
        assert await turn(pool, "Fourth.") == tone("Fourth.")
        assert len(rec.urls) == 2  # 300.5 s since its last hand-out: a fresh connection
        assert rec.texts(0) == TEXT + "Second.Third." and rec.texts(1) == "Fourth."


async def test_a_connection_expiring_in_use_is_not_cut_and_closed_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, _, rec):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("Hello there. ")
            await trio.sleep(400.0)  # expired (and swept) while in use
            assert pool.statistics().connections_draining == 1
            await ctx.send_text("Still here.")
            await ctx.finish()
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert audio == tone("Hello there. ", "Still here.")
        await assert_quiescent(pool)  # type: ignore[arg-type]
        assert rec.frames(0)[-1] == {"operation": "eos"}  # closed once the utterance ended
        assert {n for _, n in rec.closes} == {0}
        assert await turn(pool, TEXT) == tone(TEXT)
        assert len(rec.urls) == 2


async def test_close_sends_eos_and_waits_for_the_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, _, rec):
        assert await turn(pool, TEXT) == tone(TEXT)
    eos_at, conn, eos = rec.sent[-1]
    assert (conn, eos) == (0, {"operation": "eos"})
    assert rec.closes[0] == (eos_at, 0)  # the server answered at once (done, then its close)


async def test_an_unanswered_eos_waits_exactly_one_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, server, rec):
        assert await turn(pool, TEXT) == tone(TEXT)
        server.faults.stall = Stall()  # nothing more comes from the server
        start = trio.current_time()
    eos_at = next(t for t, _, f in rec.sent if f == {"operation": "eos"})
    assert eos_at == start
    assert rec.closes[0] == (start + 1.0, 0)


async def test_update_options_mid_utterance_finishes_it_then_uses_the_new_url(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, _, rec):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("First part. ")
            pool.update_options(speaker="celeste", segment="immediate")
            assert pool.defaults.speaker == "celeste"
            await ctx.send_text("Second part.")
            await ctx.finish()
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert audio == tone("First part. ", "Second part.")  # nothing in flight was cut
        assert await turn(pool, TEXT) == tone(TEXT)
        assert "speaker=astra" in rec.urls[0] and "segment=bySentence" in rec.urls[0]
        assert "speaker=celeste" in rec.urls[1] and "segment=immediate" in rec.urls[1]
        assert rec.texts(0) == "First part. Second part." and rec.texts(1) == TEXT
        assert rec.frames(0)[-1] == {"operation": "eos"}  # retired once its utterance ended
        # An idle connection of the old URL is closed at once.
        now = trio.current_time()
        pool.update_options(speaker="luna")
        await trio.testing.wait_all_tasks_blocked()
        assert (now, 1) in rec.closes
        assert pool.statistics().connections == 0


async def test_handshake_401_keeps_its_status_and_is_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ServerConfig(synthesizer="tone", api_key="right-key")
    async with rime_pool(config, api_key="wrong-key") as (pool, _, _):
        with pytest.raises(trio_tts.HandshakeRejected) as info:
            await pool.open_context()
        assert info.value.status == 401 and info.value.is_auth_error
        assert trio.current_time() == LATENCY
    async with rime_pool(config, api_key="right-key") as (pool, _, _):
        assert await turn(pool, TEXT) == tone(TEXT)  # Authorization: Bearer <key>


async def test_handshake_429_is_retried_after_retry_after_then_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, server, _):
        server.faults.reject = RejectHandshake(status=429, retry_after=2.0)
        with pytest.raises(trio_tts.HandshakeRejected) as info:
            await pool.open_context()
        assert info.value.status == 429
        assert trio.current_time() == pytest.approx(3 * LATENCY + 2 * 2.0)
        server.faults.reject = None
        assert await turn(pool, TEXT) == tone(TEXT)


async def test_empty_input_finishes_at_once_with_no_audio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, _, rec):
        await pool.prewarm()
        start = trio.current_time()
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("")
            await ctx.finish()
            assert [e async for e in ctx] == []
        assert ctx.state is trio_tts.ContextState.CLOSED
        assert trio.current_time() == start
        assert rec.sent == []  # nothing went to the server
        assert pool.statistics().contexts_in_use == 0
        assert await turn(pool, TEXT) == tone(TEXT)  # and the connection is clean


@pytest.mark.parametrize("max_connections", [1, 2])
async def test_abandoned_utterance_then_a_new_one_gets_only_its_own_audio(
    max_connections: int, autojump_clock: trio.testing.MockClock
) -> None:
    long = " ".join(f"word{i}" for i in range(60)) + "."  # ~24 s of audio, 120 chunks
    async with rime_pool(max_connections=max_connections) as (pool, server, rec):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text(long)
            async for event in ctx:
                assert isinstance(event, trio_tts.Audio) and event.data
                break  # barge-in: leave with most of the audio still coming
        assert await turn(pool, "Next one.") == tone("Next one.")
        assert rec.frames(0)[1:3] == [
            {"operation": "clear", "contextId": ctx.id},
            {"operation": "flush", "contextId": ctx.id},
        ]
        # One connection: reused only after the done proved it drained. Two: a fresh one.
        assert len(rec.urls) == max_connections
        assert rec.texts(max_connections - 1).endswith("Next one.")
        await assert_quiescent(pool)  # type: ignore[arg-type]
        assert server.statistics().violations == ()


async def test_stray_audio_after_done_never_reaches_the_next_utterance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, server, _):
        server.faults.stray_audio = StrayAudio(kind="closed")
        for text in ("One.", "Two.", "Three."):
            assert await turn(pool, text) == tone(text)
        assert pool.statistics().stray_events >= 2  # the third may still be on its way


async def test_a_failed_utterance_drains_and_the_connection_is_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, server, rec):
        server.faults.context_error = ContextErrorFault(
            when=lambda n, _cid: n == 0, message="model overloaded"
        )
        with pytest.raises(trio_tts.ContextFailed, match="model overloaded"):
            await turn(pool, TEXT)
        assert await turn(pool, "Again.") == tone("Again.")
        assert len(rec.urls) == 1


async def test_a_closing_connection_counts_against_max_connections_until_its_socket_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Regression (found by the fault matrix on Rime): the allocator forgets a connection
    as soon as it decides to close it, but the socket stays open at the provider until its
    goodbye is answered (Rime's ``eos``: up to 1 s) and the close is done. A request that
    needed a connection at that moment was dialled at once, one connection over
    ``max_connections`` at the server — refused with 429 and recorded as a violation. Now
    the new socket waits until the old one is closed."""
    config = ServerConfig(synthesizer="tone", max_connections=1)
    async with rime_pool(config, max_connections=1) as (pool, server, rec):
        assert await turn(pool, TEXT) == tone(TEXT)
        server.faults.stall = Stall(connections=lambda n: n == 0)  # its eos goes unanswered
        start = trio.current_time()
        pool.update_options(speaker="celeste")  # the idle old-URL connection closes now
        assert await turn(pool, "Next one.") == tone("Next one.")
        assert rec.closes[0] == (start + 1.0, 0)  # the whole goodbye wait
        stats = server.statistics()
        assert (stats.violations, stats.handshakes_rejected, stats.peak_connections) == ((), {}, 1)
        assert server.handshake_statistics().times[-1] == start + 1.0  # dialled once closed
        await assert_quiescent(pool)  # type: ignore[arg-type]


async def test_the_server_holds_each_connection_to_one_open_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The local server's own record (what the fault matrix reads): a context is open from
    its first text until a ``done`` leaves nothing of it outstanding; a text of another
    context before that is a second context on the connection — peak 2 and a violation."""
    async with open_memory_server(ServerConfig(synthesizer="tone")) as server:
        url = trio_tts.RimeProvider(url=server.rime_url).url(trio_tts.RimeOptions(segment="never"))
        transport = await server.connect(url, [])

        async def until_done() -> None:
            while json.loads(await transport.receive())["type"] != "done":
                pass

        await transport.send(json.dumps({"text": "First one.", "contextId": "a"}))
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().contexts_open == 1
        await transport.send(json.dumps({"operation": "flush", "contextId": "a"}))
        await until_done()
        stats = server.statistics()
        assert (stats.contexts_open, stats.contexts_created, stats.peak_contexts_per_connection,
                stats.violations) == (0, 1, 1, ())  # fmt: skip
        await transport.send(json.dumps({"text": "Second.", "contextId": "b"}))  # buffered
        await transport.send(json.dumps({"text": "Third.", "contextId": "c"}))  # b still open
        await trio.testing.wait_all_tasks_blocked()
        stats = server.statistics()
        assert (stats.contexts_open, stats.peak_contexts_per_connection) == (2, 2)
        assert stats.violations == (
            "connection 0: context 'c' while 'b' is open (Rime carries one utterance at a "
            "time: limit 1)",
        )
        await transport.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().contexts_open == 0  # the connection's end closes them


async def test_an_utterance_failing_after_audio_keeps_its_first_chunk_then_drains(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rime_pool() as (pool, server, rec):
        server.faults.context_error = ContextErrorFault(
            when=lambda n, _cid: n == 0, after_audio=True, message="model overloaded"
        )
        got = b""
        with pytest.raises(trio_tts.ContextFailed, match="model overloaded") as info:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(TEXT)
                await ctx.finish()
                async for event in ctx:
                    assert isinstance(event, trio_tts.Audio)
                    got += event.data
        assert info.value.code is None  # Rime's errors carry a message only
        assert got == tone(TEXT)[: RATE * 200 // 1000 * 2]  # one 200 ms chunk, then the error
        assert await turn(pool, "Again.") == tone("Again.")
        assert len(rec.urls) == 1  # drained by its done, then reused
        await assert_quiescent(pool)  # type: ignore[arg-type]
        stats = server.statistics()
        assert (stats.violations, stats.contexts_open, stats.peak_contexts_per_connection) == (
            (), 0, 1)  # fmt: skip


async def test_blanks_of_an_utterance_never_reach_the_next_one_on_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Regression: blank text was sent but never flushed (only words counted), so it stayed
    in the server's buffer and the next utterance on the connection was synthesised with
    it in front ("   Next one."). Blanks before the first word are not sent now (the
    utterance still closes at once, with nothing from the server); blanks after a word are
    flushed by the close like words."""
    async with rime_pool() as (pool, server, rec):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("   ")
            await ctx.finish()
            assert [e async for e in ctx] == []
        assert rec.sent == []
        assert await turn(pool, "Next one.") == tone("Next one.")
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("Hello there.", flush=True)
            await ctx.send_text("  ")
            await ctx.finish()
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert audio == tone("Hello there.")
        assert await turn(pool, "Last one.") == tone("Last one.")
        assert len(rec.urls) == 1
        await assert_quiescent(pool)  # type: ignore[arg-type]
        assert server.statistics().violations == ()
