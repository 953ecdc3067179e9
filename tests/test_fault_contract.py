"""The fault contract, items the fault matrix does not reach (issue "Core v2, part 2"):

* 2 — frames already received survive a failed write: a context the server confirmed closed
  is never failed and never re-sent;
* 6 — a status error after ``finish()`` gives the slot back at once, never retiring the
  connection;
* 7 — the stale-close timer measures silence, not age: a long utterance that keeps streaming
  past ``stale_close_timeout`` is not cut;
* 8 — an error frame naming no context fails one context (the unconfirmed one), not the
  connection.

Every test checks the state after the fault: the pool's own introspection, the server's
counters, and the next turn on the same connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import ContextErrorFault, Faults, PaceAudio, ServerConfig, tone_pcm
from trio_tts.server.inworld import proto
from trio_tts.testing import assert_quiescent, open_memory_server, provider_for

PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=24000)
TEXT = "Every word of this sentence arrives."


async def turn(pool: trio_tts.Pool, text: str) -> bytes:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


# -- 6: a status error after finish() ----------------------------------------------------------


async def test_a_status_error_after_finish_frees_the_slot_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ServerConfig(synthesizer="tone")
    async with (
        open_memory_server(config) as server,
        trio_tts.open_pool(
            provider_for(server), transport_factory=server.connect, defaults=PCM,
            stale_close_timeout=120.0,
        ) as pool,
    ):  # fmt: skip
        server.faults = Faults(
            context_error=ContextErrorFault(when=lambda n, _cid: n == 0, after_audio=True)
        )
        t0 = trio.current_time()
        with pytest.raises(trio_tts.ContextFailed) as info:
            await turn(pool, TEXT)  # send_text + finish(), then the server fails the context
        assert info.value.code == 13
        # The slot comes back on the server's answer, not on the 120 s stale sweep.
        await assert_quiescent(pool, timeout=5.0)
        assert trio.current_time() - t0 < 5.0
        server.faults = Faults()
        assert await turn(pool, "Next.") == tone_pcm("Next.", 24000)
        stats = pool.statistics()
        assert stats.connections_opened == 1 and stats.connections_failed == 0  # not retired
        assert server.statistics().connections_open == 1
        assert server.statistics().violations == ()


# -- 7: stale means silent ---------------------------------------------------------------------


async def test_a_long_streaming_utterance_outlives_the_stale_timer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Audio frames 1 s apart for far longer than ``stale_close_timeout`` (5 s): the context
    streams to its end, its connection is kept."""
    config = ServerConfig(synthesizer="tone", chunk_ms=100)
    text = " ".join(f"Sentence {i} goes on." for i in range(6))
    async with (
        open_memory_server(config) as server,
        trio_tts.open_pool(
            provider_for(server), transport_factory=server.connect, defaults=PCM,
            stale_close_timeout=5.0,
        ) as pool,
    ):  # fmt: skip
        server.faults = Faults(pace_audio=PaceAudio(1.0))
        t0 = trio.current_time()
        assert await turn(pool, text) == tone_pcm(text, 24000)
        assert trio.current_time() - t0 > 20.0  # it really streamed past the stale timeout
        stats = pool.statistics()
        assert stats.connections_opened == 1 and stats.connections_failed == 0
        await assert_quiescent(pool)


async def test_a_silent_closing_context_is_still_freed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The other side of 7: silence after the close still frees the slot after the timeout
    (and retires the connection, whose server-side count is unknown)."""
    config = ServerConfig(synthesizer="tone")
    async with (
        open_memory_server(config) as server,
        trio_tts.open_pool(
            provider_for(server), transport_factory=server.connect, defaults=PCM,
            stale_close_timeout=5.0,
        ) as pool,
    ):  # fmt: skip
        server.faults = Faults(pace_audio=PaceAudio(60.0))
        t0 = trio.current_time()
        with pytest.raises(trio_tts.ContextFailed, match="did not confirm the close"):
            await turn(pool, TEXT)
        assert 5.0 <= trio.current_time() - t0 < 7.0
        await assert_quiescent(pool)


# -- 8: an error frame without a context id ----------------------------------------------------


async def test_an_error_without_a_context_id_fails_one_context_not_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ServerConfig(synthesizer="tone")
    async with (
        open_memory_server(config) as server,
        trio_tts.open_pool(
            provider_for(server), transport_factory=server.connect, defaults=PCM,
            max_connections=1,
        ) as pool,
    ):  # fmt: skip
        # Two contexts streaming on the connection, then a third whose create the server
        # answers with a top-level {"error": ...} (no contextId).
        first = await pool.open_context()
        second = await pool.open_context()
        await first.send_text("First one.")
        await second.send_text("Second one.")
        await first.flush()
        await second.flush()
        firsts = [await first.__anext__(), await second.__anext__()]
        assert all(isinstance(e, trio_tts.Audio) for e in firsts)
        server.faults = Faults(
            context_error=ContextErrorFault(
                when=lambda n, _cid: n == 2, without_context_id=True, message="bad voice"
            )
        )
        with pytest.raises(trio_tts.ContextFailed, match="bad voice"):
            await turn(pool, "Third one.")
        # The two others carry on, on the same connection.
        for ctx, text in ((first, "First one."), (second, "Second one.")):
            await ctx.finish()
            rest = [e.data async for e in ctx if isinstance(e, trio_tts.Audio)]
            assert firsts[0 if ctx is first else 1].data + b"".join(rest) == tone_pcm(text, 24000)
            assert ctx.state is trio_tts.ContextState.CLOSED
            await ctx.aclose()
        await assert_quiescent(pool)
        stats = pool.statistics()
        assert stats.connections_opened == 1 and stats.connections_failed == 0
        assert server.statistics().connections_open == 1


# -- 2: frames received before a failed write --------------------------------------------------


class _ScriptedSocket:
    """A transport whose far side the test plays (the Inworld wire format): ``send*`` fail
    once ``broken`` is set, and ``receive`` hands out what the test queued, only after
    ``reads`` is set — so a write can fail while the server's frames are still unread, the
    order the issue measured. Then it raises the write's error, as the real transport does."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.broken: trio_tts.ConnectionLost | None = None
        self.reads = trio.Event()
        self.frames_in, self.frames_out = trio.open_memory_channel[str](100)
        self.wrote = trio.Event()

    async def send(self, message: str) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        if self.broken is not None:
            raise self.broken
        self.sent += messages
        self.wrote.set()
        self.wrote = trio.Event()

    async def receive(self) -> str | bytes:
        await self.reads.wait()
        try:
            return await self.frames_out.receive()
        except trio.EndOfChannel:
            assert self.broken is not None
            raise self.broken from None

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await trio.lowlevel.checkpoint()

    def ids(self, key: str) -> list[str]:
        return [json.loads(m)["contextId"] for m in self.sent if key in json.loads(m)]


async def test_a_context_the_server_closed_survives_a_failed_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sockets: list[_ScriptedSocket] = []

    async def factory(url: str, headers: Sequence[tuple[str, str]], **_: object) -> _ScriptedSocket:
        sockets.append(_ScriptedSocket())
        return sockets[-1]

    provider = trio_tts.InworldProvider("k", url="ws://127.0.0.1:9/tts")
    audio = tone_pcm("Done before the drop.", 24000)
    async with trio_tts.open_pool(
        provider, transport_factory=factory, defaults=PCM, max_connections=1,
        heartbeat_interval=None,
    ) as pool:  # fmt: skip
        done = await pool.open_context()
        await done.send_text("Done before the drop.")
        await done.finish()
        ws = sockets[0]
        while not ws.ids("close_context"):
            await ws.wrote.wait()
        # The server answers everything for ``done``, then drops the connection: those
        # frames sit unread when the next write (another context's create) fails.
        cid = done.id
        for frame in (
            proto.encode_audio_chunk(cid, audio[:4800]),
            proto.encode_audio_chunk(cid, audio[4800:]),
            proto.encode_flush_completed(cid),
            proto.encode_context_closed(cid),
        ):
            ws.frames_in.send_nowait(frame)
        ws.frames_in.close()
        ws.broken = trio_tts.ConnectionLost("connection reset", code=1006)
        later = await pool.open_context()  # its create is the write that fails
        ws.reads.set()
        events = [e async for e in done]
        assert b"".join(e.data for e in events if isinstance(e, trio_tts.Audio)) == audio
        assert done.state is trio_tts.ContextState.CLOSED  # never failed
        await later.aclose()
        await assert_quiescent(pool)
        # Never re-sent: no other socket ever saw ``done``'s create.
        assert all(cid not in s.ids("create") for s in sockets[1:])
        assert sockets[0].ids("create").count(cid) == 1


# -- a connection that dies while a context is being placed on it -----------------------------


@pytest.mark.parametrize("seed", range(5))
async def test_a_connection_lost_during_placement_is_placed_once(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Every connection but the last is closed right after its upgrade, while the contexts
    moved (or queued) onto it are still being placed: each context is placed by one task at
    a time — it ends with its exact audio or one error, and nothing is held afterwards."""
    import random

    from trio_tts.server import AcceptThenClose, CloseConnection

    random.seed(seed)
    config = ServerConfig(synthesizer="tone")
    async with (
        open_memory_server(config) as server,
        trio_tts.open_pool(
            provider_for(server), transport_factory=server.connect, defaults=PCM,
            max_connections=2, contexts_per_connection=5, move_attempts=4,
        ) as pool,
    ):  # fmt: skip
        server.faults = Faults(
            close_connection=CloseConnection(1011, after_frames=1, connections=lambda n: n == 0),
            accept_then_close=AcceptThenClose(code=1011, handshakes=lambda n: 1 <= n <= 3),
        )
        outcomes: list[str] = []

        async def one(i: int) -> None:
            text = f"Caller {i} speaks."
            try:
                audio = await turn(pool, text)
            except trio_tts.ConnectionLost:
                outcomes.append("lost")
            else:
                assert audio == tone_pcm(text, 24000)
                outcomes.append("audio")

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
        assert len(outcomes) == 8
        await assert_quiescent(pool)
        assert server.statistics().violations == ()
