"""The fault semantics of the pool ("Core v2 part 2"), each promise as a small user program.

Every test drives the pool the way an application does (``open_pool``, ``open_context``,
``send_text``, iterate) against the local speech server — in memory under
``MockClock(autojump_threshold=0)`` for exact virtual times, or over 127.0.0.1 — and checks
the state after the action: the pool's ``statistics()``/``inspect()``, ``assert_quiescent``
and the server's own counters. Tests are named after the issue's items (``test_1_...``).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import (
    AcceptThenClose,
    BadFrame,
    Faults,
    NoHandshakeAnswer,
    RejectHandshake,
    ServerConfig,
    StallContext,
    open_server,
    tone_pcm,
)
from trio_tts.testing import MemoryServer, assert_quiescent, at, nth, open_memory_server

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


# -- 3. connect failures reach the waiters -----------------------------------------------------


def _silent_server() -> ServerConfig:
    """Accepts TCP, never answers the upgrade."""
    return ServerConfig(synthesizer="tone", faults=Faults(no_answer=NoHandshakeAnswer()))


async def test_3_connect_failures_reach_the_waiter_after_connect_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_memory_server(_silent_server()) as server,
        memory_pool(server, handshake_timeout=1.0) as pool,
    ):
        t0 = trio.current_time()
        with pytest.raises(trio_tts.ConnectionLost) as info:
            await pool.open_context(timeout=30)
        assert not isinstance(info.value, trio_tts.CapacityTimeout | trio_tts.CircuitOpen)
        assert "timed out" in str(info.value)
        times = handshakes(server)
        assert len(times) == 3  # connect_attempts
        # Each attempt waits out the 1 s handshake timeout, then the pool's backoff: jittered
        # into [50 %, 100 %] of 0.25 s, 0.5 s ..., spread by up to half of it.
        gaps = [b - a - 1.0 for a, b in itertools.pairwise(times)]
        assert 0.125 <= gaps[0] <= 0.375 and 0.25 <= gaps[1] <= 0.75
        assert trio.current_time() - t0 < 5  # the third failure, not the 30 s deadline
        # Every caller has gone: nobody dials for them.
        await trio.sleep(120)
        assert len(handshakes(server)) == 3
        assert pool.statistics().connections == 0
        await assert_quiescent(pool)


async def test_3_a_wait_that_saw_a_failed_attempt_is_a_connect_error_not_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_memory_server(_silent_server()) as server,
        memory_pool(server, handshake_timeout=1.0) as pool,
    ):
        t0 = trio.current_time()
        with pytest.raises(trio_tts.ConnectionLost) as info:
            await pool.open_context(timeout=1.5)
        assert not isinstance(info.value, trio_tts.CapacityTimeout)
        assert trio.current_time() == t0 + 1.5  # at its own deadline
        assert len(handshakes(server)) == 2  # the second was under way at the deadline
        await trio.sleep(120)
        assert len(handshakes(server)) == 2
        assert pool.statistics().connections == 0
        await assert_quiescent(pool)


# -- 4. one backoff for the pool ---------------------------------------------------------------


def _closing_server(code: int = 1011) -> ServerConfig:
    """Accepts every upgrade, then closes at once with ``code``."""
    faults = Faults(accept_then_close=AcceptThenClose(code=code, reason="nope"))
    return ServerConfig(synthesizer="tone", faults=faults)


async def test_4_ten_callers_retrying_share_one_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ten callers that retry every failure (after a 0.1 s pause) for 10 s against a server
    that closes every connection at once: the handshakes come in rounds spaced by the pool's
    one doubling backoff — a handful, not dozens — then the circuit opens and only single
    trial dials follow, each after the delay."""
    errors: list[tuple[float, trio_tts.ConnectionLost]] = []
    async with (
        open_memory_server(_closing_server()) as server,
        memory_pool(server) as pool,
    ):
        t0 = trio.current_time()

        async def caller() -> None:
            while trio.current_time() < t0 + 10:
                try:
                    await speak(pool)
                except trio_tts.ConnectionLost as exc:
                    errors.append((trio.current_time(), exc))
                    await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(caller)
        times = [t for t in handshakes(server) if t < t0 + 10]
        # Five rounds of at most two dials (10 callers, 5 contexts a connection) before the
        # circuit opens, then single trial dials, each at least 2 s after the one before.
        assert 5 <= len(times) <= 13, times
        assert times[4] - times[0] >= 0.125 + 0.25  # not a herd: at least two delays
        opened = min(t for t, e in errors if isinstance(e, trio_tts.CircuitOpen))
        # At most one dial of the fifth round was still pending (spread by up to 1 s) when
        # the circuit opened; every later one is a trial.
        assert len([t for t in times if opened < t <= opened + 1.0]) <= 1, times
        trials = [t for t in times if t > opened + 1.0]
        assert all(b - a >= 2.0 for a, b in itertools.pairwise(trials)), times
        assert len(trials) <= 3
        circuit = [e for _, e in errors if isinstance(e, trio_tts.CircuitOpen)]
        assert all(isinstance(e.cause, trio_tts.ConnectionLost) for e in circuit)
        assert {e.cause.code for e in circuit} == {1011}
        assert not any(isinstance(e, trio_tts.CapacityTimeout) for _, e in errors)
        await assert_quiescent(pool)


async def test_4_the_circuit_opens_after_threshold_rounds_then_one_trial_dial(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One caller, one connection per utterance (``move_attempts=1``): five failures spaced
    by the doubling backoff, then CircuitOpen at once; after its delay one trial dial, which
    (the server healed meanwhile) closes the circuit."""
    async with (
        open_memory_server(_closing_server(), handshake_latency=0) as server,
        memory_pool(server, move_attempts=1) as pool,
    ):
        for _ in range(5):
            with pytest.raises(trio_tts.ConnectionLost) as failed:
                await speak(pool)
            assert failed.value.code == 1011
            assert not isinstance(failed.value, trio_tts.CircuitOpen)
        times = handshakes(server)
        assert len(times) == 5
        for k, (a, b) in enumerate(itertools.pairwise(times)):
            ceiling = 0.25 * 2**k  # backoff_base doubling (backoff_max 5 not reached yet)
            assert ceiling / 2 <= b - a <= ceiling * 1.5, times

        t_open = trio.current_time()
        with pytest.raises(trio_tts.CircuitOpen) as refused:
            await pool.open_context()
        circuit = refused.value
        assert trio.current_time() == t_open  # at once
        assert isinstance(circuit, trio_tts.ConnectionLost)
        assert isinstance(circuit.cause, trio_tts.ConnectionLost) and circuit.cause.code == 1011
        assert circuit.failures == 5
        assert 2.0 <= circuit.retry_in <= 4.0  # 0.25 * 2**4, jittered into [50 %, 100 %]
        assert len(handshakes(server)) == 5

        server.faults = Faults()  # the service recovers while the circuit is open
        await trio.sleep(circuit.retry_in / 2)
        with pytest.raises(trio_tts.CircuitOpen):
            await pool.open_context()  # still open
        await trio.sleep_until(t_open + circuit.retry_in)
        assert len(handshakes(server)) == 5  # nothing dialled while open

        trial_result: list[bytes] = []

        async def trial() -> None:
            trial_result.append(await speak(pool))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trial)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio_tts.CircuitOpen):  # half-open: only the trial dials
                await pool.open_context()
        assert trial_result == [expected(TEXT)]
        assert len(handshakes(server)) == 6
        assert handshakes(server)[5] >= t_open + circuit.retry_in
        # The trial's audio closed the circuit: callers go through again.
        assert await speak(pool) == expected(TEXT)
        assert pool.statistics().connect_failures == 0
        await assert_quiescent(pool)


@pytest.mark.parametrize("fault", ["accept-then-close", "no-answer"])
async def test_4_callers_riding_through_failures_make_single_trial_dials(
    fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Three callers, one connection each, and a circuit that opens on the first failure
    round. Neither the contexts moved off the dead connections (accept-then-close) nor the
    callers riding through failed dials (no-answer) dial as a herd past the open circuit:
    after the first round, dials come one at a time (one trial, after the delay), and the
    others fail at once with CircuitOpen."""
    silent = fault == "no-answer"
    config = _silent_server() if silent else _closing_server()
    async with (
        open_memory_server(config, handshake_latency=0) as server,
        memory_pool(
            server, contexts_per_connection=1, circuit_threshold=1, handshake_timeout=1.0
        ) as pool,
    ):
        errors: list[trio_tts.TTSError] = []

        async def caller() -> None:
            try:
                await speak(pool)
            except trio_tts.TTSError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(caller)
        assert len(errors) == 3 and all(isinstance(e, trio_tts.ConnectionLost) for e in errors)
        circuit = [e for e in errors if isinstance(e, trio_tts.CircuitOpen)]
        assert circuit and all(isinstance(e.cause, trio_tts.ConnectionLost) for e in circuit)
        times = handshakes(server)
        assert times[:3] == (0.0, 0.0, 0.0)  # the first round: one dial per caller
        # Later dials are trials, one at a time: each starts after the previous one ended
        # (a silent dial lasts handshake_timeout) and the backoff delay (>= 0.125 s) ran out.
        trials = times[2:]
        least = 1.0 + 0.125 if silent else 0.125
        assert all(b - a >= least for a, b in itertools.pairwise(trials)), times
        n = len(times)
        await trio.sleep(60)
        assert len(handshakes(server)) == n  # nobody waits: nobody dials
        with pytest.raises(trio_tts.ConnectionLost):
            await speak(pool)  # one trial for this caller, which fails again
        assert len(handshakes(server)) == n + 1
        await assert_quiescent(pool)


@pytest.mark.parametrize("code", [1008, 4001, 4003])
async def test_4_fatal_close_codes_right_after_the_upgrade_fail_without_retry(
    code: int, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        open_memory_server(_closing_server(code)) as server,
        memory_pool(server) as pool,
    ):
        errors: list[trio_tts.TTSError] = []

        async def caller() -> None:
            try:
                await speak(pool)
            except trio_tts.TTSError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(caller)
        assert len(errors) == 5
        assert all(isinstance(e, trio_tts.ConnectionLost) and e.code == code for e in errors)
        assert len(handshakes(server)) == 1  # like a 401: no retry with the same key
        # Remembered: the next caller fails at once, without a handshake.
        t = trio.current_time()
        with pytest.raises(trio_tts.ConnectionLost) as again:
            await pool.open_context()
        assert again.value.code == code and trio.current_time() == t
        assert len(handshakes(server)) == 1
        await assert_quiescent(pool)


async def test_4_retry_after_is_capped_by_retry_after_max(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faults = Faults(reject=RejectHandshake(status=429, retry_after=3600, count=1))
    config = ServerConfig(synthesizer="tone", faults=faults)
    async with (
        open_memory_server(config, handshake_latency=0) as server,
        memory_pool(server) as pool,
    ):
        t0 = trio.current_time()
        assert await speak(pool) == expected(TEXT)  # timeout=None: waits through the 429
        times = handshakes(server)
        assert len(times) == 2
        assert times[1] - times[0] == 30.0  # retry_after_max, not an hour
        assert 30.0 <= trio.current_time() - t0 < 31.0
        assert server.statistics().handshakes_rejected == {429: 1}
        await assert_quiescent(pool)


async def test_4_retry_after_max_is_a_setting(autojump_clock: trio.testing.MockClock) -> None:
    faults = Faults(reject=RejectHandshake(status=429, retry_after=3600, count=1))
    config = ServerConfig(synthesizer="tone", faults=faults)
    async with (
        open_memory_server(config, handshake_latency=0) as server,
        memory_pool(server, retry_after_max=7.5) as pool,
    ):
        assert await speak(pool) == expected(TEXT)
        times = handshakes(server)
        assert len(times) == 2 and times[1] - times[0] == 7.5


# -- 5. auth rejection remembered --------------------------------------------------------------


def _rejecting_server() -> ServerConfig:
    faults = Faults(reject=RejectHandshake(status=401))
    return ServerConfig(synthesizer="tone", faults=faults)


async def _rejected_at_once(pool: trio_tts.Pool[trio_tts.VoiceOptions]) -> None:
    t = trio.current_time()
    with pytest.raises(trio_tts.HandshakeRejected) as info:
        await pool.open_context()
    assert info.value.status == 401
    assert trio.current_time() == t


async def test_5_a_401_is_remembered_no_handshake_until_cleared(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_memory_server(_rejecting_server()) as server,
        memory_pool(server) as pool,
    ):
        with pytest.raises(trio_tts.HandshakeRejected) as first:
            await pool.open_context()
        assert first.value.status == 401
        assert len(handshakes(server)) == 1
        await _rejected_at_once(pool)
        assert len(handshakes(server)) == 1  # remembered: no second handshake

        pool.update_options(voice="Dennis")  # may carry a new credential: try again
        with pytest.raises(trio_tts.HandshakeRejected):
            await pool.open_context()
        assert len(handshakes(server)) == 2
        await _rejected_at_once(pool)

        pool.forget_rejection()  # e.g. after rotating the key
        server.faults = Faults()  # ... which the server now accepts
        assert await speak(pool) == expected(TEXT)
        assert len(handshakes(server)) == 3
        assert server.statistics().handshakes_rejected == {401: 2}
        await assert_quiescent(pool)


async def test_5_a_401_is_retried_after_auth_failure_cooldown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_memory_server(_rejecting_server()) as server,
        memory_pool(server) as pool,
    ):
        t0 = trio.current_time()
        with pytest.raises(trio_tts.HandshakeRejected):
            await pool.open_context()
        await trio.sleep_until(t0 + 59.0)
        await _rejected_at_once(pool)
        assert len(handshakes(server)) == 1
        await trio.sleep_until(t0 + 60.5)  # auth_failure_cooldown (60 s) has passed
        with pytest.raises(trio_tts.HandshakeRejected) as again:
            await pool.open_context()
        assert again.value.status == 401
        assert len(handshakes(server)) == 2
        await _rejected_at_once(pool)  # and remembered afresh
        assert len(handshakes(server)) == 2
        await assert_quiescent(pool)


async def test_5_auth_failure_cooldown_is_a_setting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_memory_server(_rejecting_server()) as server,
        memory_pool(server, auth_failure_cooldown=5.0) as pool,
    ):
        t0 = trio.current_time()
        with pytest.raises(trio_tts.HandshakeRejected):
            await pool.open_context()
        await trio.sleep_until(t0 + 4.5)
        await _rejected_at_once(pool)
        server.faults = Faults()
        await trio.sleep_until(t0 + 5.5)
        assert await speak(pool) == expected(TEXT)
        assert len(handshakes(server)) == 2


# -- 9. message size ---------------------------------------------------------------------------


async def test_9_an_oversize_message_fails_contexts_with_audio_1009_and_moves_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Context A has audio (the rest of it stalls); B was just created, no audio yet. Then a
    message one byte over the default ``max_message_size`` (1 MiB): A fails with
    ConnectionLost 1009 after the audio it had; B moves to a new connection and gets all of
    its audio."""
    faults = Faults(stall_context=StallContext(when=nth(1), after_frames=1, connections=at(0)))
    text_b = "Bravo speaks after the big one."
    async with (
        open_memory_server(ServerConfig(synthesizer="tone", faults=faults)) as server,
        memory_pool(server) as pool,
    ):
        a = await pool.open_context()
        async with a:
            await a.send_text(TEXT)
            await a.finish()
            first = await a.__anext__()
            assert isinstance(first, trio_tts.Audio)
            server.faults.bad_frame = BadFrame(
                after_frames=0, kind="oversize", size=MiB + 1, connections=at(0)
            )  # sent right after the next frame on connection 0: B's contextCreated
            b_audio = b""
            b = await pool.open_context()
            async with b:
                await b.send_text(text_b)
                await b.finish()
                with pytest.raises(trio_tts.ConnectionLost) as lost:
                    async for _ in a:
                        pass
                assert lost.value.code == 1009
                assert "max_message_size" in str(lost.value)
                async for event in b:
                    if isinstance(event, trio_tts.Audio):
                        b_audio += event.data
        assert expected(TEXT).startswith(first.data)
        assert b_audio == expected(text_b)
        assert pool.statistics().contexts_moved == 1
        assert server.statistics().connections_accepted == 2
        await assert_quiescent(pool)


BIG_TEXT = "m" * 600  # 36 s of audio: 1.7 MB of PCM, ~2.2 MiB as one base64 JSON message


def _big_messages(host: str = "127.0.0.1") -> ServerConfig:
    return ServerConfig(synthesizer="tone", host=host, chunk_ms=60_000)  # one chunk


async def _big_turn(pool: trio_tts.Pool[trio_tts.VoiceOptions]) -> list[bytes]:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(BIG_TEXT)
        await ctx.finish()
        return [e.data async for e in ctx if isinstance(e, trio_tts.Audio)]


async def test_9_max_message_size_reaches_the_memory_transport(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_server(_big_messages()) as server:
        async with memory_pool(server) as pool:  # the default: 1 MiB
            with pytest.raises(trio_tts.ConnectionLost) as lost:
                await _big_turn(pool)
            assert lost.value.code == 1009
        async with memory_pool(server, max_message_size=4 * MiB) as pool:
            chunks = await _big_turn(pool)
            assert b"".join(chunks) == expected(BIG_TEXT)
            assert len(chunks) == 1 and len(chunks[0]) * 4 / 3 > 2 * MiB
            await assert_quiescent(pool)


@pytest.mark.parametrize("transport", ["websockets", "trio-websocket"])
async def test_9_max_message_size_reaches_the_tcp_transports(transport: Any) -> None:
    async with open_server(_big_messages()) as server:
        provider = trio_tts.InworldProvider(url=server.ws_url)
        with trio.fail_after(30):
            async with trio_tts.open_pool(
                provider, defaults=PCM, transport=transport, move_attempts=1
            ) as pool:
                with pytest.raises(trio_tts.ConnectionLost) as lost:
                    await _big_turn(pool)
                assert lost.value.code == 1009
            async with trio_tts.open_pool(
                provider, defaults=PCM, transport=transport, max_message_size=4 * MiB
            ) as pool:
                chunks = await _big_turn(pool)
                assert b"".join(chunks) == expected(BIG_TEXT)
                assert len(chunks) == 1 and len(chunks[0]) * 4 / 3 > 2 * MiB
                await assert_quiescent(pool)


# -- 10. slow consumer bound in bytes ----------------------------------------------------------


async def test_10_a_context_that_never_reads_fails_alone_past_context_buffer_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two contexts on one connection; one never reads. Past 64 KiB of unread audio it fails
    with SlowConsumer (after the events that fit) and its slot comes back; the reader gets
    all its audio and the connection stays open."""
    slow_text = "Slow " * 40  # 12 s of audio (576 KB): far more than 64 KiB
    fast_text = "Fast " * 40
    async with (
        open_memory_server() as server,
        memory_pool(server, max_connections=1, context_buffer_bytes=64 * 1024) as pool,
    ):
        slow = await pool.open_context()
        async with slow:
            await slow.send_text(slow_text)
            await slow.finish()
            assert await speak(pool, fast_text) == expected(fast_text)
            # The server confirms the cancel of the overflowed context: its slot is back
            # while its caller still holds it unread.
            await assert_quiescent(pool)
            assert slow.state is trio_tts.ContextState.FAILED
            assert slow.buffered_bytes <= 64 * 1024
            got = b""
            with pytest.raises(trio_tts.SlowConsumer):
                async for event in slow:
                    assert isinstance(event, trio_tts.Audio)
                    got += event.data
        assert got and expected(slow_text).startswith(got)
        assert 64 * 1024 - 9600 < len(got) <= 64 * 1024  # every 200 ms chunk (9600 B) that fit
        assert pool.statistics().connections_open == 1
        assert pool.statistics().connections_opened == 1
        stats = server.statistics()
        assert stats.connections_open == 1 and stats.connections_accepted == 1
        assert stats.contexts_open == 0
        # The connection still serves.
        assert await speak(pool) == expected(TEXT)
        assert server.statistics().connections_accepted == 1
        await assert_quiescent(pool)


async def test_10_the_default_byte_bound_holds_a_long_utterance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same program with the default ``context_buffer_bytes`` (2 MiB): 12 s of unread
    audio (576 KB) never overflows (past ``context_pause_bytes`` the rest waits in the
    socket), and the late reader gets all of it."""
    slow_text = "Slow " * 40
    async with open_memory_server() as server, memory_pool(server, max_connections=1) as pool:
        slow = await pool.open_context()
        async with slow:
            await slow.send_text(slow_text)
            await slow.finish()
            assert await speak(pool) == expected(TEXT)
            await trio.testing.wait_all_tasks_blocked()
            assert slow.state is trio_tts.ContextState.FINISHING  # not failed
            assert 0 < slow.buffered_bytes <= len(expected(slow_text))
            got = b"".join([e.data async for e in slow if isinstance(e, trio_tts.Audio)])
        assert got == expected(slow_text)
        await assert_quiescent(pool)


# -- typed settings ----------------------------------------------------------------------------


async def test_settings_a_misspelled_setting_is_invalid_options_naming_the_right_one() -> None:
    """Raised on entering ``open_pool``, before any network I/O (nothing listens there)."""
    provider = trio_tts.InworldProvider(url="ws://127.0.0.1:9/never-dialled")
    match = r"^unknown pool setting 'max_conections' \(did you mean 'max_connections'\?\)$"
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        async with trio_tts.open_pool(provider, max_conections=3):  # type: ignore[call-arg]
            pytest.fail("the pool opened")
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        trio_tts.Pool(provider, max_conections=3)  # type: ignore[call-arg]
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        trio_tts.PoolSettings.build(max_conections=3)


def test_settings_out_of_range_values_are_invalid_options() -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=r"^max_connections: 0 must be"):
        trio_tts.PoolSettings(max_connections=0)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^context_buffer_bytes"):
        trio_tts.PoolSettings(context_buffer_bytes=-1)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^retry_after_max"):
        trio_tts.PoolSettings(retry_after_max=0)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^max_connections"):
        trio_tts.PoolSettings.build(trio_tts.PoolSettings(), max_connections=True)


def test_settings_are_frozen_with_the_documented_defaults() -> None:
    settings = trio_tts.PoolSettings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.max_connections = 3  # type: ignore[misc]
    assert settings.max_message_size == MiB
    assert settings.context_buffer_bytes == 2 * MiB
    assert settings.retry_after_max == 30.0
    assert settings.auth_failure_cooldown == 60.0
    assert (settings.backoff_base, settings.backoff_max, settings.circuit_threshold) == (
        0.25, 5.0, 5,
    )  # fmt: skip
    assert settings.connect_attempts == 3
    changed = trio_tts.PoolSettings.build(settings, max_connections=3)
    assert changed.max_connections == 3 and settings.max_connections == 20


def test_settings_kwargs_type_names_every_field() -> None:
    assert set(trio_tts.PoolSettingsKwargs.__annotations__) == set(
        attrs.fields_dict(trio_tts.PoolSettings)
    )


SNIPPET = """\
import trio_tts
from bridges.asyncio_adapter import AsyncioPool


async def main(provider: trio_tts.InworldProvider) -> None:
    async with trio_tts.open_pool(provider, max_connections=3) as pool:
        reveal_type(pool)
    AsyncioPool(provider, max_connections=3, retry_after_max=5.0)
    async with trio_tts.open_pool(provider, max_conections=3):  # line 9
        pass
    AsyncioPool(provider, max_conections=3)  # line 11
    trio_tts.PoolSettings(max_conections=3)  # line 12
"""


def test_settings_mypy_rejects_a_misspelled_setting(tmp_path: Path) -> None:
    """``mypy --strict`` on a user's program: the misspelled keyword is a type error for
    ``open_pool``, ``AsyncioPool`` and ``PoolSettings``; the right spellings are not."""
    program = tmp_path / "program.py"
    program.write_text(SNIPPET)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), str(program)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    errors = [
        line for line in result.stdout.splitlines() if ": error:" in line or ": note:" in line
    ]
    found = {
        int(line.split(":")[1]) for line in errors if "max_conections" in line and "error" in line
    }
    assert found == {9, 11, 12}, result.stdout + result.stderr
    assert any('did you mean "max_connections"' in line for line in errors), result.stdout
    assert 'Revealed type is "trio_tts._core.pool.Pool[' in result.stdout
    # Nothing else is an error: the correct spellings type-check.
    others = [line for line in errors if ": error:" in line and "max_conections" not in line]
    assert others == [], result.stdout
