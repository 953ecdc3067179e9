"""Cartesia through the pool's public API, against the local server's ``/tts/websocket``.

Tests on real sockets (``open_server``) check the audio byte for byte against the server's own
synthesis, the word times, many contexts on one socket and the errors; the ones about time
(a cancel's expiry, a context Cartesia expires) run the same server in memory under
``MockClock(autojump_threshold=0)`` and assert exact virtual times. After each, the server's
own counters (contexts open, peak per connection, limit violations) are checked, not only what
the pool believes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import trio_tts
import trio_tts.http
from trio_tts.providers.cartesia.codec import EXPIRED_MESSAGE
from trio_tts.server import (
    ContextErrorFault,
    Faults,
    LocalServer,
    PaceAudio,
    ServerConfig,
    open_server,
    tone_pcm,
    tone_speech,
)
from trio_tts.server.cartesia import pcm
from trio_tts.server.cartesia.voices import CARTESIA_VOICES, voice_uuid
from trio_tts.testing import MemoryServer, assert_quiescent, open_memory_server

KEY = "sk_car_pool-test-9c1d"
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
TESSA = "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"
TEXT = "The quick brown fox jumps over the lazy dog."
Pool = trio_tts.Pool[trio_tts.CartesiaOptions]


def expected(text: str, encoding: str = "pcm_s16le", rate: int = 24000) -> bytes:
    """The server's audio for ``text`` as one generation, in ``encoding``."""
    return pcm.encode(tone_pcm(text, rate), encoding)


async def turn(pool: Pool, text: str, **overrides: Any) -> bytes:
    ctx = await pool.open_context(**overrides)
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


async def quiet(pool: Pool, server: LocalServer) -> None:
    """Every slot back and nothing open on the server (waits on events, never sleeps)."""
    await assert_quiescent(pool)  # type: ignore[arg-type]
    stats = server.statistics()
    assert (stats.contexts_open, stats.violations) == (0, ())


@asynccontextmanager
async def tcp_pool(
    config: ServerConfig | None = None, *, concurrency: int = 15, **settings: Any
) -> AsyncIterator[tuple[Pool, LocalServer]]:
    config = config or ServerConfig(synthesizer="tone", api_key=KEY)
    async with open_server(config) as server:
        provider = trio_tts.CartesiaProvider(KEY, url=server.base_url, concurrency=concurrency)
        async with trio_tts.open_pool(provider, **settings) as pool:
            yield pool, server


class Recorder:
    """A transport factory around the memory server that records the frames the pool sends."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.urls: list[str] = []
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def connect(self, url: str, headers: Sequence[tuple[str, str]], **kw: Any) -> Any:
        inner = await self.server.connect(url, headers, **kw)
        self.urls.append(url)
        recorder = self

        class Recording:
            async def send(self, message: str) -> None:
                recorder.sent.append((trio.current_time(), json.loads(message)))
                await inner.send(message)

            async def send_many(self, messages: Sequence[str]) -> None:
                for message in messages:
                    recorder.sent.append((trio.current_time(), json.loads(message)))
                await inner.send_many(messages)

            async def receive(self) -> str | bytes:
                frame: str | bytes = await inner.receive()
                return frame

            async def ping(self) -> None:
                await inner.ping()

            async def aclose(self, code: int = 1000, reason: str = "") -> None:
                await inner.aclose(code, reason)

        return Recording()

    def cancels(self) -> list[float]:
        return [t for t, f in self.sent if f.get("cancel") is True]


@asynccontextmanager
async def memory_pool(
    config: ServerConfig | None = None, *, concurrency: int = 2, **settings: Any
) -> AsyncIterator[tuple[Pool, MemoryServer, Recorder]]:
    async with open_memory_server(config or ServerConfig(synthesizer="tone")) as server:
        rec = Recorder(server)
        provider = trio_tts.CartesiaProvider(url=server.cartesia_url, concurrency=concurrency)
        async with trio_tts.open_pool(provider, transport_factory=rec.connect, **settings) as pool:
            yield pool, server, rec


# --------------------------------------------------------------------------- audio and times


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("pcm_s16le", 24000), ("pcm_f32le", 44100), ("pcm_mulaw", 8000), ("pcm_alaw", 8000)],
)
async def test_a_turn_is_the_servers_audio_byte_for_byte(encoding: str, rate: int) -> None:
    async with tcp_pool() as (pool, server):
        audio = await turn(pool, TEXT, encoding=encoding, sample_rate=rate)
        assert audio == expected(TEXT, encoding, rate) and audio
        width = trio_tts.CartesiaOptions(encoding=encoding, sample_rate=rate).encoding
        assert len(audio) == width.bytes_per_sample * len(tone_pcm(TEXT, rate)) // 2
        await quiet(pool, server)
        assert server.statistics().contexts_created == 1


async def test_word_times_run_on_from_the_contexts_start_across_flushes() -> None:
    parts = ["Hello there. ", "How are you today? ", "Fine."]
    async with tcp_pool() as (pool, server):
        ctx = await pool.open_context(word_timestamps=True)
        async with ctx:
            await ctx.send_text(parts[0], flush=True)
            await ctx.send_text(parts[1])
            await ctx.flush()
            await ctx.send_text(parts[2])
            await ctx.finish()
            events = [e async for e in ctx]
        audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
        assert audio == b"".join(expected(p) for p in parts)  # one generation per flush
        flushes = [e for e in events if isinstance(e, trio_tts.FlushCompleted)]
        assert flushes == [trio_tts.FlushCompleted(ctx.id, timings_restart=False)] * 2
        words = [(w.word, w.start, w.end) for e in events if isinstance(e, trio_tts.Audio)
                 for w in e.words]  # fmt: skip
        want, offset = [], 0.0
        for text in parts:
            speech = tone_speech(text, 24000)
            want += [(w, round(s + offset, 6), round(e + offset, 6)) for w, s, e in speech.words]
            offset += speech.duration
        assert words == want  # cumulative, not restarted (nor shifted twice) at each flush
        starts = [w[1] for w in words]
        assert starts == sorted(starts) and starts[-1] > len(parts[0] + parts[1]) * 0.06 - 1e-6
        await quiet(pool, server)


async def test_many_contexts_with_different_voices_share_one_socket_within_the_limit() -> None:
    config = ServerConfig(synthesizer="tone", api_key=KEY, cartesia_concurrency=5)
    voices = [KATIE, TESSA, voice_uuid("Dennis"), "Ashley"]
    async with tcp_pool(config, concurrency=5) as (pool, server):
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            text = f"Sentence number {i} is spoken here."
            options = {"voice": voices[i % 4], "model": ("sonic-3", "sonic-2")[i % 2]}
            results[i] = await turn(pool, text, **options)
            assert results[i] == expected(text)

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(one, i)
        assert len(results) == 40
        stats = server.statistics()
        assert stats.connections_accepted == 1  # everything per context travels in-band
        assert stats.peak_contexts_per_connection == 5  # the account limit, reached, not passed
        assert stats.contexts_created == 40
        assert pool.statistics().contexts_opened == 40
        await quiet(pool, server)


# ------------------------------------------------------------------------------------ errors


async def test_an_unknown_voice_is_cartesias_404_and_its_slot_is_back_at_once() -> None:
    async with tcp_pool(concurrency=1) as (pool, server):
        ctx = await pool.open_context(voice="no-such-voice")
        async with ctx:
            await ctx.send_text(TEXT)
            with pytest.raises(trio_tts.ContextFailed) as failed:
                async for _ in ctx:
                    pass
            # The error frame said done: true: the context is gone on the server.
            assert pool.statistics().contexts_in_use == 0
        assert failed.value.code == 404
        assert failed.value.message == (
            "Voice not found: Voice no-such-voice was not found (GET /voices lists the voices)"
            " (voice_not_found)"
        )
        assert await turn(pool, TEXT) == expected(TEXT)  # the only slot serves the next turn
        await quiet(pool, server)


async def test_an_error_after_audio_is_not_swallowed_and_frees_the_slot_at_once() -> None:
    async with tcp_pool() as (pool, server):
        ctx = await pool.open_context()
        got = b""
        async with ctx:
            await ctx.send_text("First sentence here. ", flush=True)
            async for event in ctx:
                if isinstance(event, trio_tts.FlushCompleted):
                    break
                assert isinstance(event, trio_tts.Audio)
                got += event.data
            # The next generation fails: Cartesia's error event says done: true.
            fault = ContextErrorFault(lambda i, cid: True, code=503, message="boom",
                                      after_audio=True)  # fmt: skip
            server.set_faults(Faults(context_error=fault))
            await ctx.send_text("Second sentence here.")  # a sentence: spoken at once
            await ctx.finish()  # races the failure: the server's first answer is the error
            with pytest.raises(trio_tts.ContextFailed) as failed:
                async for _ in ctx:
                    pass
            assert pool.statistics().contexts_in_use == 0  # no cancel, no wait: it is gone
        assert got == expected("First sentence here. ")  # the audio before the error came
        assert (failed.value.code, failed.value.message) == (
            503, "Internal error: boom (fault_injected)",
        )  # fmt: skip
        assert ctx.state is trio_tts.ContextState.FAILED
        server.set_faults(Faults())
        await quiet(pool, server)


async def test_the_accounts_limit_on_the_server_is_a_typed_429() -> None:
    # The client believes in 3 contexts, the account allows 2: the third is refused.
    config = ServerConfig(synthesizer="tone", api_key=KEY, cartesia_concurrency=2,
                          faults=Faults(pace_audio=PaceAudio(0.05)))  # fmt: skip
    async with tcp_pool(config, concurrency=3) as (pool, server):
        contexts = [await pool.open_context() for _ in range(3)]
        for ctx in contexts:
            await ctx.send_text(TEXT)
        with pytest.raises(trio_tts.ContextFailed) as failed:
            async for _ in contexts[2]:
                pass
        assert (failed.value.code, failed.value.message) == (
            429,
            "Too many concurrent requests: You have exceeded your plan's concurrency limit."
            " (concurrency_limited)",
        )
        for ctx in contexts:
            await ctx.aclose()
        assert len(server.statistics().violations) == 1  # recorded by the server: ours
        await assert_quiescent(pool)  # type: ignore[arg-type]


async def test_invalid_options_fail_before_any_network() -> None:
    async with tcp_pool() as (pool, server):
        with pytest.raises(trio_tts.InvalidOptions, match=r"^sample_rate: pcm_mulaw is 8000"):
            await pool.open_context(encoding="pcm_mulaw")  # at the default 24000 Hz
        with pytest.raises(trio_tts.InvalidOptions, match=r"^options: expected CartesiaOpt"):
            await pool.open_context(options=trio_tts.VoiceOptions())  # type: ignore[arg-type]
        with pytest.raises(trio_tts.InvalidOptions, match=r"^unknown option\(s\): speaking_rate"):
            await pool.open_context(speaking_rate=1.1)
        stats = server.statistics()
        assert (stats.connections_accepted, stats.handshake_times) == (0, ())


async def test_the_key_goes_in_x_api_key_and_a_wrong_one_is_a_401() -> None:
    async with open_server(ServerConfig(synthesizer="tone", api_key=KEY)) as server:
        wrong = trio_tts.CartesiaProvider("sk_car_wrong", url=server.cartesia_url)
        async with trio_tts.open_pool(wrong) as pool:
            with pytest.raises(trio_tts.HandshakeRejected) as rejected:
                await pool.open_context()
            assert rejected.value.status == 401 and "sk_car_wrong" not in str(rejected.value)


async def test_the_api_version_is_the_connections() -> None:
    async with open_memory_server(ServerConfig(synthesizer="tone")) as server:
        rec = Recorder(server)
        provider = trio_tts.CartesiaProvider(url=server.cartesia_url)
        async with trio_tts.open_pool(provider, transport_factory=rec.connect) as pool:
            assert await turn(pool, TEXT) == expected(TEXT)
            pool.update_options(api_version="2025-04-16")
            assert await turn(pool, TEXT) == expected(TEXT)
            await quiet(pool, server)
        assert [u.rsplit("?", 1)[1] for u in rec.urls] == [
            "cartesia_version=2026-08-14",
            "cartesia_version=2025-04-16",
        ]


# ------------------------------------------------------------- cancel, expiry and capacity


async def test_a_cancelled_context_keeps_its_slot_until_cartesias_expiry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_pool(concurrency=1, sweep_interval=0.25) as (pool, server, rec):
        a = await pool.open_context()
        await a.send_text(TEXT, flush=True)
        async for event in a:  # all of a's audio so far has arrived
            if isinstance(event, trio_tts.FlushCompleted):
                break
        await a.aclose()  # leaves it open: the pool cancels it on the server
        await trio.testing.wait_all_tasks_blocked()  # sent, and read by the server
        [cancelled_at] = rec.cancels()
        assert rec.sent[-1][1] == {"context_id": a.id, "cancel": True}
        assert trio.current_time() == cancelled_at
        # The server dropped it at once and says nothing; the pool still counts it.
        assert server.statistics().contexts_open == 0
        assert pool.statistics().contexts_in_use == 1
        b = await pool.open_context()  # waits for a's slot
        waited = trio.current_time() - cancelled_at
        assert 1.5 <= waited <= 1.5 + 0.25  # the expiry, at the next sweep
        assert [x.id for x in pool.inspect().contexts] == [b.id]
        await b.send_text("Next turn.")
        await b.finish()
        assert b"".join([e.data async for e in b if isinstance(e, trio_tts.Audio)]) == expected(
            "Next turn."
        )
        await quiet(pool, server)
        assert server.statistics().contexts_created == 2


async def test_rapid_cancel_and_reopen_never_exceeds_either_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ServerConfig(synthesizer="tone", cartesia_concurrency=3,
                          cartesia_contexts_per_connection=3,
                          faults=Faults(pace_audio=PaceAudio(0.02)))  # fmt: skip
    async with memory_pool(config, concurrency=3) as (pool, server, rec):
        peak = 0

        async def barge_in(worker: int) -> None:
            nonlocal peak
            for i in range(12):
                ctx = await pool.open_context()
                peak = max(peak, *(len(c.contexts) for c in pool.inspect().connections))
                async with ctx:
                    if i % 3:
                        await ctx.send_text(f"Reply {worker}-{i} is interrupted. ")
                    if i % 3 == 2:
                        async for event in ctx:  # some audio, then the user barges in
                            assert isinstance(event, trio_tts.Audio)
                            break
                # Left open: cancelled on the server.

        async with trio.open_nursery() as nursery:
            for worker in range(5):
                nursery.start_soon(barge_in, worker)
        await quiet(pool, server)
        stats = server.statistics()
        assert peak <= 3 and stats.peak_contexts_per_connection <= 3
        assert stats.violations == ()  # the server never saw a 4th context at once
        # Contexts that never had text never reached the server: nothing to cancel there.
        assert stats.contexts_created == len(rec.cancels()) == 5 * 8
        assert pool.statistics().contexts_opened == 60


async def test_a_context_left_open_is_expired_by_cartesia_with_a_typed_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_pool() as (pool, server, _):
        ctx = await pool.open_context()
        got = b""
        async with ctx:
            await ctx.send_text("Hello there. ")  # a sentence: spoken at once
            with pytest.raises(trio_tts.ContextFailed) as failed:
                async for event in ctx:
                    assert isinstance(event, trio_tts.Audio)
                    got += event.data
                    last_audio = trio.current_time()
            assert trio.current_time() - last_audio == pytest.approx(1.0)  # Cartesia's 1 s
            assert pool.statistics().contexts_in_use == 0  # its done freed the slot
        assert got == expected("Hello there. ")
        assert (failed.value.code, failed.value.message) == (None, EXPIRED_MESSAGE)
        await quiet(pool, server)


async def test_a_cancel_before_any_text_reaches_nothing_and_frees_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_pool(concurrency=1) as (pool, server, rec):
        for _ in range(3):
            ctx = await pool.open_context()
            await ctx.flush()
            async for event in ctx:
                assert event == trio_tts.FlushCompleted(ctx.id, timings_restart=False)
                break
            await ctx.aclose()
            await trio.testing.wait_all_tasks_blocked()  # the connection's sender ran
            assert pool.statistics().contexts_in_use == 0
        assert trio.current_time() < 0.1 and rec.sent == [] and rec.urls == [rec.urls[0]]
        await quiet(pool, server)


# --------------------------------------------------------------------------------------- HTTP


async def test_voices_over_http_every_page_and_one_language() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone", api_key=KEY)) as server,
        trio_tts.http.CartesiaHTTPClient(KEY, base_url=server.base_url) as client,
    ):
        voices = await client.voices()
        assert [v.voice_id for v in voices] == list(CARTESIA_VOICES)  # every page, in order
        assert len(voices) > 100  # more than one page of 100
        katie = voices[0]
        assert (katie.voice_id, katie.display_name, katie.languages) == (KATIE, "Katie", ("en",))
        french = await client.voices(language="fr")
        assert french and all(v.languages == ("fr",) for v in french)
        rows = await client.voice_rows()
        assert rows[0]["id"] == KATIE and "created_at" in rows[0]
        bad = trio_tts.http.CartesiaHTTPClient("sk_car_wrong", base_url=server.base_url)
        async with bad:
            with pytest.raises(trio_tts.RequestRejected) as rejected:
                await bad.voices()
        assert rejected.value.status == 401 and rejected.value.is_auth_error


async def test_bytes_request_and_whole_samples() -> None:
    """``/tts/bytes`` (the local server does not serve it: an httpx transport answers)."""
    seen: list[httpx.Request] = []
    audio = expected(TEXT, "pcm_f32le", 16000)

    async def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)

        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(audio), 1001):  # cut across samples
                yield audio[i : i + 1001]

        return httpx.Response(200, headers={"content-type": "audio/pcm"}, content=body())

    async with trio_tts.http.CartesiaHTTPClient(
        KEY, transport=httpx.MockTransport(answer)
    ) as client:
        speech = await client.synthesize(TEXT, encoding="pcm_f32le", sample_rate=16000)
        async with client.stream(TEXT, encoding="pcm_f32le", sample_rate=16000) as chunks:
            pieces = [a.data async for a in chunks]
    assert speech.audio == audio == b"".join(pieces)
    assert all(len(p) % 4 == 0 for p in pieces)
    assert speech.duration == pytest.approx(len(tone_pcm(TEXT, 16000)) / 2 / 16000)
    request = seen[0]
    assert (request.url.path, request.headers["x-api-key"]) == ("/tts/bytes", KEY)
    assert request.headers["cartesia-version"] == "2026-08-14"
    assert json.loads(request.content) == {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": KATIE},
        "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000},
        "language": "en",
        "transcript": TEXT,
    }
    assert "sk_car" not in repr(client)


async def test_the_account_limit_caps_the_pool_whatever_its_connection_settings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``concurrency`` is the pool's gate even with 20 connections allowed; the pool's own
    settings can only lower it (here: 1 connection × 1 context)."""
    async with memory_pool(concurrency=2, max_connections=20) as (pool, server, _):
        first, second = await pool.open_context(), await pool.open_context()
        with pytest.raises(trio_tts.CapacityTimeout):
            await pool.open_context(timeout=5.0)
        assert pool.statistics().contexts_in_use == 2
        # Both on one socket (contexts_per_connection defaults to the concurrency).
        [conn] = pool.inspect().connections
        assert sorted(conn.contexts) == sorted((first.id, second.id))
        for ctx in (first, second):
            await ctx.aclose()
        await quiet(pool, server)
    async with memory_pool(concurrency=5, max_connections=1, contexts_per_connection=1) as (
        pool, server, _,
    ):  # fmt: skip
        ctx = await pool.open_context()
        with pytest.raises(trio_tts.CapacityTimeout):
            await pool.open_context(timeout=1.0)
        await ctx.aclose()
        await quiet(pool, server)


# ------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize("scenario", ["401", "echoed-503", "error-message"])
async def test_the_key_shows_up_nowhere(
    scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As tests/test_secret_scan.py does for Inworld: every logger at DEBUG, one failure, and
    the key (raw, base64, URL-encoded, after ``Bearer``) in no log, exception or repr."""
    import logging

    from test_secret_scan import LOGGERS, exception_texts, forms, log_texts

    from trio_tts.server import RejectHandshake

    caplog.set_level(logging.DEBUG)
    for name in [*LOGGERS, *logging.Logger.manager.loggerDict]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    secret = "sk_car_SCAN+secret/9f8e7d=="
    faults = {
        "401": Faults(),
        "echoed-503": Faults(reject=RejectHandshake(status=503, retry_after=0, echo=True)),
        "error-message": Faults(context_error=ContextErrorFault(
            lambda i, cid: True, code=400, message=f"bad key {secret}")),
    }[scenario]  # fmt: skip
    server_key = "sk_car_other" if scenario == "401" else secret
    config = ServerConfig(synthesizer="tone", api_key=server_key, faults=faults)
    texts: list[str] = []
    async with open_server(config) as server:
        provider = trio_tts.CartesiaProvider(secret, url=server.cartesia_url)
        texts += [repr(provider), str(provider.default_options())]
        async with trio_tts.open_pool(provider, connect_attempts=2) as pool:
            with pytest.raises(trio_tts.TTSError) as raised:
                ctx = await pool.open_context()
                async with ctx:
                    await ctx.send_text(TEXT)
                    await ctx.finish()
                    async for _ in ctx:
                        pass
            texts += exception_texts(raised.value)
            texts += [repr(pool), repr(pool.statistics()), repr(pool.inspect())]
    texts += log_texts(caplog)
    blob = "\n".join(texts)
    assert all(form not in blob for form in forms(secret))
    if scenario == "error-message":
        assert "bad key" in blob  # the message came through, redacted
