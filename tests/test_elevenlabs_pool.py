"""ElevenLabs through the pool's public API, against the local server's ``multi-stream-input``.

Two kinds of test: over real sockets (``open_server``, 127.0.0.1) for the audio, the timings
and the limits under load; and in memory under ``MockClock(autojump_threshold=0)`` (the
server's own application, exact virtual times) where time is the point: keep-alives past
the inactivity timeout, a cancelled context's slot held until its ``isFinal``. Every test
ends with the server's own counters and :func:`assert_quiescent`.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import (
    CloseConnection,
    ContextErrorFault,
    LocalServer,
    PaceAudio,
    ServerConfig,
    open_server,
    tone_pcm,
    tone_speech,
)
from trio_tts.testing import MemoryServer, assert_quiescent, at, open_memory_server

from helpers import connection_of

RATE = 24000
OPTS = trio_tts.ElevenLabsOptions()  # pcm_24000, LiveKit's default voice


def tone(*generations: str) -> bytes:
    """The audio of ``generations`` synthesised one after another (one synthesis each)."""
    return b"".join(tone_pcm(g, RATE) for g in generations)


def provider(server: LocalServer, **kw: Any) -> trio_tts.ElevenLabsProvider:
    return trio_tts.ElevenLabsProvider(url=server.base_url, **kw)


async def turn(pool: trio_tts.Pool[Any], text: str, **overrides: Any) -> bytes:
    ctx = await pool.open_context(**overrides)
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


class _Recording:
    def __init__(self, inner: Any, rec: Recorder, n: int) -> None:
        self._inner, self._rec, self._n = inner, rec, n

    async def send(self, message: str) -> None:
        await self.send_many([message])

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
        await self._inner.aclose(code, reason)


class Recorder:
    """A transport factory around the memory server that records every frame the pool sends
    (virtual time, connection number, JSON)."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.connections = 0
        self.sent: list[tuple[float, int, dict[str, Any]]] = []

    async def connect(self, url: str, headers: Sequence[tuple[str, str]], **kw: Any) -> _Recording:
        inner = await self.server.connect(url, headers, **kw)
        self.connections += 1
        return _Recording(inner, self, self.connections - 1)

    def keepalives(self) -> list[float]:
        """When each keep-alive (``{"text": "", "context_id"}``, nothing else) was sent."""
        return [t for t, _, f in self.sent if f.get("text") == "" and len(f) == 2]


@asynccontextmanager
async def memory_pool(
    config: ServerConfig | None = None, *, keepalive_interval: float | None = 5.0, **settings: Any
) -> AsyncIterator[tuple[trio_tts.Pool[trio_tts.ElevenLabsOptions], MemoryServer, Recorder]]:
    async with open_memory_server(config or ServerConfig(synthesizer="tone")) as server:
        rec = Recorder(server)
        el = provider(server, keepalive_interval=keepalive_interval)
        async with trio_tts.open_pool(el, transport_factory=rec.connect, **settings) as pool:
            yield pool, server, rec


# ------------------------------------------------------------------------- audio and words


async def test_audio_and_word_timings_are_the_servers_over_real_sockets() -> None:
    """Two generations (a flush between them): the audio is exactly the server's synthesis
    of each, and the words carry times from the start of the context — cumulative over the
    generations and monotonic — equal to the synthesiser's own word timings."""
    first, second = " Hello there. ", "How are you today?"
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider(server)) as pool,
    ):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("Hello there.", flush=True)  # the init's " " comes first
            await ctx.send_text(second)
            await ctx.finish()
            events = [e async for e in ctx]
        audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
        assert audio == tone(first, second)
        words = [w for e in events if isinstance(e, trio_tts.Audio) for w in e.words]
        offset = len(tone_pcm(first, RATE)) / 2 / RATE
        want = [*tone_speech(first, RATE).words]
        want += [(w, s + offset, e + offset) for w, s, e in tone_speech(second, RATE).words]
        assert [w.word for w in words] == [w for w, _, _ in want]
        for got, (_, start, end) in zip(words, want, strict=True):
            assert got.start == pytest.approx(start, abs=0.0015)  # the server rounds to ms
            assert got.end == pytest.approx(end, abs=0.0015)
        starts = [w.start for w in words]
        assert starts == sorted(starts) and all(w.end >= w.start for w in words)
        assert words[-1].end <= len(audio) / 2 / RATE + 0.001
        await assert_quiescent(pool)
        stats = server.statistics()
        assert (stats.contexts_created, stats.contexts_open, stats.violations) == (1, 0, ())


@pytest.mark.parametrize(
    ("output_format", "decode"),
    [("pcm_16000", None), ("ulaw_8000", "mulaw")],
)
async def test_other_output_formats(output_format: str, decode: str | None) -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider(server)) as pool,
    ):
        opts = OPTS.replace(output_format=output_format)
        audio = await turn(pool, "Format test.", options=opts)
        pcm = tone_pcm(" Format test.", opts.sample_rate)
        if decode is None:
            assert audio == pcm
        else:
            assert len(audio) == len(pcm) // 2 and opts.encoding is trio_tts.AudioEncoding.MULAW
            assert audio != b"\xff" * len(audio)  # not silence
        await assert_quiescent(pool)


# ------------------------------------------------------------------------------- the limits


async def test_thirty_concurrent_contexts_with_rapid_cancels_stay_within_the_limits() -> None:
    """40 callers at once, a third of which abandon their context at its first audio and at
    once open a new one: every full turn gets exactly its audio, the server never sees a
    sixth context on a socket (its own peak and violations), the pool never holds more than
    its 15 (the account's concurrency), and nothing is left behind."""
    random.seed(18)
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider(server)) as pool,
    ):
        peak_in_use = 0
        done = 0

        async def opened() -> trio_tts.Context[Any]:
            nonlocal peak_in_use
            ctx = await pool.open_context()
            peak_in_use = max(peak_in_use, pool.statistics().contexts_in_use)
            return ctx

        async def caller(i: int) -> None:
            nonlocal done
            text = f"Caller {i} says {'hello ' * random.randint(1, 4)}now."
            if i % 3 == 0:
                ctx = await opened()
                async with ctx:  # leaving at the first audio cancels it on the server
                    await ctx.send_text(text, flush=True)
                    async for event in ctx:
                        if isinstance(event, trio_tts.Audio) and event.data:
                            break
            ctx = await opened()
            async with ctx:
                await ctx.send_text(text)
                await ctx.finish()
                audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
            assert audio == tone(" " + text)
            done += 1

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(caller, i)
        assert done == 40
        await assert_quiescent(pool)
        stats = server.statistics()
        assert stats.violations == ()
        assert stats.peak_contexts_per_connection == 5  # used to the limit, never over it
        assert stats.contexts_created == 40 + 14 and stats.contexts_open == 0
        assert peak_in_use == 15 == pool.statistics().max_contexts
        assert stats.peak_connections <= 3  # 15 contexts fit on 3 sockets


async def test_a_cancelled_context_keeps_its_slot_until_its_is_final(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """livekit/agents-js#1985: five contexts on the only socket; one is abandoned while the
    server still streams it. Its slot is held — by the pool and by the server — until the
    server's ``isFinal``: a sixth context waits for it instead of reaching the socket (where
    ElevenLabs would close everything with 1008)."""
    config = ServerConfig(synthesizer="tone")
    config.faults.pace_audio = PaceAudio(1.0)  # one 200 ms frame a second: a long reply
    async with memory_pool(config, max_connections=1) as (pool, server, _):
        contexts = [await pool.open_context() for _ in range(5)]
        for ctx in contexts:
            await ctx.send_text("A reply that takes a while to speak.", flush=True)
        victim = contexts[0]
        first = await victim.__anext__()
        assert isinstance(first, trio_tts.Audio)
        await victim.aclose()  # barge-in: cancel now
        cancelled_at = trio.current_time()
        assert victim.state is trio_tts.ContextState.ABANDONED
        snapshot = pool.inspect()
        held = {c.id: c for c in snapshot.contexts}
        assert held[victim.id].closing_since == cancelled_at
        assert victim.id in snapshot.connections[0].contexts
        assert pool.statistics().contexts_in_use == 5
        assert server.statistics().contexts_open == 5
        with pytest.raises(trio_tts.CapacityTimeout):
            await pool.open_context(timeout=2.0)
        sixth = await pool.open_context()  # waits for the isFinal
        waited = trio.current_time() - cancelled_at
        # The server finishes the reply's generation (paced) before the close: ~10 frames.
        assert waited >= 5.0
        assert victim.id not in {c.id for c in pool.inspect().contexts}
        assert connection_of(pool, sixth) == connection_of(pool, contexts[1])
        for ctx in [*contexts[1:], sixth]:
            await ctx.aclose()
        await assert_quiescent(pool, timeout=60)
        stats = server.statistics()
        assert stats.violations == () and stats.peak_contexts_per_connection == 5
        assert stats.connections_accepted == 1 and stats.contexts_open == 0


async def test_rapid_cancel_and_reopen_never_overshoots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Thirty open/cancel cycles as fast as they go, five at a time, on one socket."""
    async with memory_pool(max_connections=1) as (pool, server, _):

        async def churn(n: int) -> None:
            for k in range(6):
                ctx = await pool.open_context()
                await ctx.send_text(f"Interrupted reply {n}-{k}.", flush=True)
                await ctx.cancel()

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(churn, n)
        assert await turn(pool, "Still fine.") == tone(" Still fine.")
        await assert_quiescent(pool, timeout=60)
        stats = server.statistics()
        assert stats.violations == () and stats.peak_contexts_per_connection <= 5
        assert (stats.contexts_created, stats.connections_accepted) == (31, 1)


async def test_a_smaller_plans_concurrency_caps_the_pool() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider(server), max_contexts=3) as pool,
    ):
        held = [await pool.open_context() for _ in range(3)]
        with pytest.raises(trio_tts.CapacityTimeout):
            await pool.open_context(timeout=0.2)
        await held[0].aclose()
        fourth = await pool.open_context(timeout=10)  # the server confirmed the cancel
        for ctx in [*held[1:], fourth]:
            await ctx.aclose()
        await assert_quiescent(pool)
        assert pool.statistics().max_contexts == 3
        assert server.statistics().connections_accepted == 1


# ------------------------------------------------------------------------------- keep-alive


async def test_keepalives_hold_an_idle_context_past_the_inactivity_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An open context that stops sending (an LLM thinking) outlives ``inactivity_timeout``
    (30 s) tenfold: the connection sends ElevenLabs' keep-alive for it every round it was
    silent, so the server never closes the socket; the reply then completes."""
    opts = OPTS.replace(inactivity_timeout=30)
    async with memory_pool(defaults=opts) as (pool, server, rec):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text("Before the pause.", flush=True)
            assert isinstance(await ctx.__anext__(), trio_tts.Audio)
            idle_from = trio.current_time()
            await trio.sleep(300)
            await ctx.send_text("After it.")
            await ctx.finish()
            rest = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        keepalives = [t for t in rec.keepalives() if t >= idle_from]
        assert len(keepalives) >= 300 / 10 - 1
        # Never silent for two keep-alive intervals, far below the server's 30 s.
        outbound = sorted(t for t, _, _ in rec.sent)
        gaps = [b - a for a, b in itertools.pairwise(outbound)]
        assert max(gaps) <= 2 * 5.0
        assert len(rest) > 0
        await assert_quiescent(pool)
        stats = server.statistics()
        assert stats.connections_accepted == 1 and pool.statistics().connections_failed == 0
        assert stats.violations == ()


async def test_without_keepalives_the_server_closes_the_idle_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The control: the same pause with keep-alives off, and the server ends the socket with
    ``input_timeout_exceeded`` (1008) after 30 s; the context, which had audio, fails."""
    opts = OPTS.replace(inactivity_timeout=30)
    async with memory_pool(defaults=opts, keepalive_interval=None) as (pool, _, rec):
        ctx = await pool.open_context()
        with pytest.raises(trio_tts.ConnectionLost) as caught:
            async with ctx:
                await ctx.send_text("Before the pause.", flush=True)
                start = trio.current_time()
                async for _ in ctx:
                    pass
        assert trio.current_time() - start == pytest.approx(30, abs=1.0)
        assert caught.value.code == 1008 and "input_timeout_exceeded" in str(caught.value)
        assert rec.keepalives() == []
        await assert_quiescent(pool)
        assert not isinstance(caught.value, trio_tts.HandshakeRejected)


async def test_a_socket_close_is_graceful_with_close_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_pool() as (pool, server, rec):
        assert await turn(pool, "Bye.") == tone(" Bye.")
    assert rec.sent[-1][2] == {"close_socket": True}
    assert server.statistics().connections_open == 0
    assert pool.statistics().connections_failed == 0


# ---------------------------------------------------------------------------------- errors


async def test_invalid_options_fail_before_any_network() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider(server)) as pool,
    ):
        for bad, match in [
            ({"model": "eleven_v3"}, r"^model: 'eleven_v3' speaks ElevenLabs' text-to-dialogue"),
            ({"output_format": "pcm_11025"}, r"^output_format: 'pcm_11025' is not one of"),
            ({"voice_settings": {"speed": 2.0}}, r"^voice_settings\.speed: 2\.0 is outside"),
            ({"inactivity_timeout": 10}, r"^inactivity_timeout: 10 s is not longer than two"),
            ({"language": "de", "model": "eleven_multilingual_v2"}, r"^language: model "),
            ({"stability": 0.5}, r"^unknown option\(s\): stability$"),
        ]:
            with pytest.raises(trio_tts.InvalidOptions, match=match):
                await pool.open_context(**bad)
        with pytest.raises(trio_tts.InvalidOptions, match=r"^options: expected ElevenLabsOpt"):
            await pool.open_context(options=trio_tts.VoiceOptions())  # type: ignore[arg-type]
        await assert_quiescent(pool)
        stats = server.statistics()
        assert stats.connections_accepted == 0 and stats.handshake_times == ()


@pytest.mark.parametrize("after_audio", [False, True], ids=["on-create", "after-audio"])
async def test_a_server_error_fails_only_its_context(
    after_audio: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """ElevenLabs' ``{"error", "message", "contextId"}``: that context fails with
    ``ContextFailed`` carrying ElevenLabs' error and message, its slot comes back at once (the
    error is the server's word that the context is gone), the others on the socket go on."""
    config = ServerConfig(synthesizer="tone")
    config.faults.context_error = ContextErrorFault(when=at(1), after_audio=after_audio)
    async with memory_pool(config, max_connections=1) as (pool, server, _):
        outcomes: dict[int, bytes | BaseException] = {}

        async def caller(i: int) -> None:
            try:
                outcomes[i] = await turn(pool, f"Caller {i} is here.")
            except trio_tts.TTSError as exc:
                outcomes[i] = exc

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(caller, i)
        # The second create on the socket failed (whose it was is up to the scheduler).
        failed = [i for i, o in outcomes.items() if isinstance(o, BaseException)]
        assert len(failed) == 1, outcomes
        error = outcomes.pop(failed[0])
        assert isinstance(error, trio_tts.ContextFailed)
        assert (error.code, error.message) == (None, "internal_error: Internal error")
        assert outcomes == {i: tone(f" Caller {i} is here.") for i in outcomes}
        assert trio.current_time() - start < 5.0  # no stale-close wait
        await assert_quiescent(pool)
        assert await turn(pool, "Next.") == tone(" Next.")
        stats = server.statistics()
        assert stats.connections_accepted == 1 and stats.contexts_open == 0


async def test_an_unknown_voice_is_the_servers_error_not_a_remembered_rejection() -> None:
    """ElevenLabs refuses an unknown voice after the upgrade: an error naming no context
    (``voice_not_found``) and a 1008 close. The caller gets ``ConnectionLost`` with
    ElevenLabs' error and code, and the next context, with a real voice, works at once: a
    1008 is not an authentication failure here."""
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(provider(server), backoff_base=0.01, backoff_max=0.05) as pool,
    ):
        with pytest.raises(trio_tts.ConnectionLost) as caught:
            await turn(pool, "Hello?", voice_id="NoSuchVoice")
        assert caught.value.code == 1008
        assert "voice_not_found" in str(caught.value)
        assert not isinstance(caught.value, trio_tts.HandshakeRejected | trio_tts.CircuitOpen)
        assert await turn(pool, "Hello.") == tone(" Hello.")
        await assert_quiescent(pool)


async def test_max_active_conversations_is_a_lost_connection_not_an_auth_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server that allows fewer contexts than the pool places (a lower limit than
    ElevenLabs' 5) answers the extra one with ``max_active_conversations`` naming no context
    and a 1008 close: the pool ends that socket at once, moves the contexts that had no
    audio, fails the others with the server's words, and keeps serving."""
    config = ServerConfig(synthesizer="tone", elevenlabs_max_contexts=2)
    config.faults.pace_audio = PaceAudio(0.5)
    async with memory_pool(
        config, max_connections=1, contexts_per_connection=3, circuit_threshold=100
    ) as (pool, server, _):
        outcomes: list[bytes | BaseException] = []

        async def caller(i: int) -> None:
            try:
                outcomes.append(await turn(pool, f"Reply {i}."))
            except trio_tts.TTSError as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(caller, i)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert errors, outcomes  # the overshoot did happen
        for error in errors:
            assert isinstance(error, trio_tts.ConnectionLost) and error.code == 1008
            assert "max_active_conversations" in str(error)
        assert server.statistics().violations  # the server saw the third context
        await assert_quiescent(pool)
        # Not remembered as a rejected credential: the next context is served.
        assert await turn(pool, "After.") == tone(" After.")
        await assert_quiescent(pool)


async def test_a_1008_close_before_audio_moves_the_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ElevenLabs closes with 1008 for its own trouble too: a context that had no audio yet
    is moved to a new socket and replayed there; the caller only waits."""
    config = ServerConfig(synthesizer="tone")
    config.faults.close_connection = CloseConnection(
        code=1008, reason="We are sorry, something went wrong.", after_frames=0,
        connections=at(0),
    )  # fmt: skip
    async with memory_pool(config) as (pool, server, _):
        assert await turn(pool, "Moved along.") == tone(" Moved along.")
        assert pool.statistics().contexts_moved == 1
        await assert_quiescent(pool)
        assert server.statistics().connections_accepted == 2
