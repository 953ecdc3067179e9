"""The LiveKit plugin's Rime variant with real livekit-agents classes against the local
server's Rime endpoints (``/ws3`` and ``POST /v1/rime-tts``, tone audio).

No LiveKit class is mocked: ``TTS.stream()`` / ``synthesize()`` run the framework's own
``SynthesizeStream``/``ChunkedStream`` machinery (retries, ``AudioEmitter`` framing, error
events). The server runs in a thread with its own ``trio.run`` and records which local voice
spoke each text, i.e. which Rime ``speaker`` the connection's URL (or the HTTP body) named.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from livekit.agents import APIConnectOptions, APIStatusError, tts
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from test_livekit_plugin import LONG, NO_RETRY, ServerThread, pcm_of, run, until

from bridges import livekit, livekit_rime
from trio_tts.server import (
    ContextErrorFault,
    ServerConfig,
    Speech,
    ToneSynthesizer,
    tone_pcm,
    tone_speech,
)

RATE = 24000
TEXT = "Hello there, my friend. How are you doing today? I am fine."
# What the sentence tokenizer makes of TEXT; each goes out with a trailing space, as the
# official plugin sends it, and the server (segment=bySentence) synthesises each at once.
SENTENCES = ["Hello there, my friend.", "How are you doing today?", "I am fine."]
SETTINGS = {"min_connections": 0, "connect_attempts": 1, "move_attempts": 1}


class RecordingTone(ToneSynthesizer):
    """Tone audio, remembering the local voice of every synthesis (speaker → voice:
    astra → Ashley, celeste → Olivia, lyra → Julia)."""

    def __init__(self) -> None:
        super().__init__()
        self.spoken: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        with self._lock:
            self.spoken.append((voice, text))
        return await super().synthesize(
            text, voice=voice, sample_rate=sample_rate, speaking_rate=speaking_rate
        )

    def voices(self) -> set[str]:
        with self._lock:
            return {voice for voice, _ in self.spoken}

    def clear(self) -> None:
        with self._lock:
            self.spoken.clear()


@pytest.fixture
def synth() -> RecordingTone:
    return RecordingTone()


@pytest.fixture
def srv(synth: RecordingTone) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(synthesizer=synth)).running() as s:
        yield s


def ws_tts(s: ServerThread, **kw: Any) -> livekit_rime.TTS:
    """A streaming TTS: the ws:// base_url alone selects the WebSocket."""
    return livekit_rime.TTS(base_url=s.server.rime_url.removesuffix("/ws3"), **kw)


def http_tts(s: ServerThread, **kw: Any) -> livekit_rime.TTS:
    return livekit_rime.TTS(base_url=s.server.rime_http_url, **kw)


def sent(text: str) -> list[str]:
    """The texts the plugin sends for ``text`` made of ``SENTENCES``-like sentences."""
    return [s + " " for s in SENTENCES] if text == TEXT else [text + " "]


def assert_speech(data: bytes, pieces: list[str], rate: int = RATE) -> None:
    """``data`` is the audio of ``pieces`` (one synthesis each), plus at most LiveKit's
    10 ms end-of-segment marker."""
    want = b"".join(tone_pcm(p, rate) for p in pieces)
    assert data[: len(want)] == want
    assert len(data) - len(want) <= rate // 100 * 2 and not any(data[len(want) :])


async def speak(t: livekit_rime.TTS, *pieces: str, **kw: Any) -> list[tts.SynthesizedAudio]:
    async with t.stream(**kw) as stream:
        for piece in pieces:
            stream.push_text(piece)
        stream.end_input()
        return [frame async for frame in stream]


# -- streaming over /ws3 -------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_stream_exact_audio_and_word_timings(
    srv: ServerThread, synth: RecordingTone, runner: str
) -> None:
    async def main() -> None:
        async with ws_tts(srv, model="arcana", speaker="astra", sample_rate=RATE) as t:
            assert t.capabilities.streaming and t.capabilities.aligned_transcript
            # Pushed in pieces that cut words and sentences, as an LLM streams tokens.
            frames = await speak(t, TEXT[:9], TEXT[9:30], TEXT[30:])
            assert_speech(pcm_of(frames), sent(TEXT))
            assert {f.frame.sample_rate for f in frames} == {RATE}
            assert [f.is_final for f in frames].count(True) == 1 and frames[-1].is_final
            assert len({f.segment_id for f in frames}) == 1 and frames[0].segment_id
            # Rime's word timestamps, as TimedStrings (a space after each word, as the
            # official plugin): times run on across the sentences of the utterance.
            words = [w for f in frames for w in f.frame.userdata[USERDATA_TIMED_TRANSCRIPT]]
            want: list[tuple[str, float, float]] = []
            offset = 0.0
            for piece in sent(TEXT):
                speech = tone_speech(piece, RATE)
                want += [(w + " ", s + offset, e + offset) for w, s, e in speech.words]
                offset += speech.duration
            assert [str(w) for w in words] == [w for w, _, _ in want]
            for got, (_, start, end) in zip(words, want, strict=True):
                assert (got.start_time, got.end_time) == pytest.approx((start, end), abs=1e-5)
            pool = await t.pool()
            await until(lambda: pool.statistics().contexts_in_use == 0)
            # A second utterance reuses the connection (Rime: one utterance at a time).
            assert_speech(pcm_of(await speak(t, "Once more.")), ["Once more. "])
            assert pool.statistics().connections_opened == 1
        stats = srv.stats()
        assert stats.violations == () and stats.connections_accepted == 1
        assert synth.voices() == {"Ashley"}  # speaker=astra, from the connection URL

    run(main, runner)


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_interruption_frees_the_slot(srv: ServerThread, runner: str) -> None:
    """Closing the stream mid-utterance (LiveKit's interruption) clears Rime's buffer; the
    slot comes back once the server's done proves the connection drained, and the same
    connection serves the next utterance with none of the old audio."""

    async def main() -> None:
        async with ws_tts(srv, model="arcana", speaker="astra") as t:
            assert t.sample_rate == 22050  # the official default for arcana
            stream = t.stream()
            stream.push_text(LONG)
            stream.end_input()
            got = [await anext(stream) for _ in range(3)]
            pool = await t.pool()
            assert pool.statistics().contexts_in_use == 1
            await stream.aclose()
            await until(lambda: pool.statistics().contexts_in_use == 0, limit=2)
            assert 0 < len(pcm_of(got)) < len(tone_pcm(LONG, 22050))
            assert_speech(pcm_of(await speak(t, "Fresh start.")), ["Fresh start. "], 22050)
            assert pool.statistics().connections_opened == 1  # drained, then reused
        assert srv.stats().violations == ()

    run(main, runner)


def test_update_options_mid_session_moves_to_the_new_url(
    srv: ServerThread, synth: RecordingTone
) -> None:
    """The utterance in flight keeps its connection and voice; the next one connects with
    the new speaker in the URL; the old connection is retired once its utterance ends."""

    async def main() -> None:
        async with ws_tts(srv, speaker="astra", pool_settings={"min_connections": 0}) as t:
            before = [f"Sentence number {i} is being spoken right now." for i in range(3)]
            first = t.stream()
            first.push_text(" ".join(before) + " ")
            frame = await anext(first)  # audio is flowing on the astra connection
            pool = await t.pool()
            t.update_options(speaker="celeste")
            assert t.options.speaker == "celeste" and t.options.model == "coda"
            first.push_text("So it ends in the old voice.")
            first.end_input()
            rest = [frame] + [f async for f in first]
            await first.aclose()
            pieces = [*before, "So it ends in the old voice."]
            assert_speech(pcm_of(rest), [p + " " for p in pieces])
            assert synth.voices() == {"Ashley"}
            synth.clear()
            assert_speech(pcm_of(await speak(t, TEXT)), sent(TEXT))
            assert synth.voices() == {"Olivia"}  # the server saw speaker=celeste
            assert await t.pool() is pool  # the same shared pool, with new defaults
            assert pool.defaults.speaker == "celeste"
            await until(lambda: pool.statistics().connections == 1)  # astra's retired
            assert pool.statistics().connections_opened == 2
            # A change that keeps the URL keeps the connection.
            t.update_options(speaker="celeste")
            assert_speech(pcm_of(await speak(t, "Same voice.")), ["Same voice. "])
            assert pool.statistics().connections_opened == 2
        assert srv.stats().violations == ()

    run(main)


def test_tts_instances_share_a_pool_until_one_changes_its_voice(
    srv: ServerThread, synth: RecordingTone
) -> None:
    async def main() -> None:
        a = ws_tts(srv, speaker="astra")
        b = ws_tts(srv, speaker="astra")
        pool = await a.pool()
        assert await b.pool() is pool  # same endpoint and options: one shared pool
        b.update_options(speaker="celeste")  # b moves; a keeps the pool and its connection
        moved = await b.pool()
        assert moved is not pool and moved.defaults.speaker == "celeste"
        assert pool.defaults.speaker == "astra"
        results = await asyncio.gather(speak(a, "From A."), speak(b, "From B."))
        assert_speech(pcm_of(results[0]), ["From A. "])
        assert_speech(pcm_of(results[1]), ["From B. "])
        assert set(synth.spoken) == {("Ashley", "From A. "), ("Olivia", "From B. ")}
        await a.aclose()
        await b.aclose()

    run(main)


def test_prewarm_opens_a_connection_of_this_voice(srv: ServerThread) -> None:
    async def main() -> None:
        async with ws_tts(srv, speaker="astra", pool_settings={"min_connections": 0}) as t:
            t.prewarm()
            pool = await t.pool()
            await until(lambda: pool.statistics().connections_open == 1)
            assert_speech(pcm_of(await speak(t, TEXT)), sent(TEXT))
            assert pool.statistics().connections_opened == 1  # the prewarmed one

    run(main)


def test_empty_input_finishes_at_once_without_audio(srv: ServerThread) -> None:
    async def main() -> None:
        async with ws_tts(srv) as t, asyncio.timeout(2):
            assert await speak(t) == []
            assert await speak(t, "   ") == []
            assert srv.stats().contexts_created == 0  # no text went to the server
            assert_speech(pcm_of(await speak(t, "Now words.")), ["Now words. "])
        async with http_tts(srv) as h:
            assert [f async for f in h.synthesize("")] == []  # no request at all

    run(main)


# -- one-shot synthesis over HTTP -------------------------------------------------------------


def test_synthesize_over_http(srv: ServerThread, synth: RecordingTone) -> None:
    async def main() -> None:
        async with http_tts(srv, model="mistv2", sample_rate=16000) as t:
            assert not t.capabilities.streaming and not t.capabilities.aligned_transcript
            assert t.options.speaker == "cove"  # the official default for mist models
            frames = [frame async for frame in t.synthesize(TEXT)]
            assert_speech(pcm_of(frames), [TEXT], 16000)
            assert frames[-1].is_final and {f.frame.sample_rate for f in frames} == {16000}
            assert synth.voices() == {"Dennis"}  # cove
            assert srv.stats().contexts_created == 0  # HTTP, not the WebSocket
            synth.clear()
            t.update_options(speaker="celeste", speed_alpha=1.0)
            assert_speech(pcm_of([f async for f in t.synthesize("Hi.")]), ["Hi."], 16000)
            assert synth.voices() == {"Olivia"}
            with pytest.raises(APIStatusError) as info:  # Rime's 500-character limit
                await t.synthesize("x" * 501, conn_options=NO_RETRY).collect()
            assert info.value.status_code == 400 and not info.value.retryable
            with pytest.raises(RuntimeError, match="use_websocket=True"):
                t.stream()

    run(main)


def test_synthesize_with_a_websocket_base_url_fails_up_front(srv: ServerThread) -> None:
    t = ws_tts(srv)
    with pytest.raises(RuntimeError, match="requires an HTTP base_url"):
        t.synthesize("Hello.")
    official = livekit_rime.TTS(use_websocket=True, api_key="key")
    assert official.capabilities.streaming
    with pytest.raises(RuntimeError, match="streams over the WebSocket"):
        official.synthesize("Hello.")
    assert srv.stats().connections_accepted == 0


def test_use_websocket_with_an_http_host_streams_from_its_ws_twin(srv: ServerThread) -> None:
    """As the official plugin (aiohttp connects ``http://host/ws3`` as a WebSocket)."""

    async def main() -> None:
        async with livekit_rime.TTS(base_url=srv.server.base_url, use_websocket=True) as t:
            assert t.capabilities.streaming
            assert_speech(pcm_of(await speak(t, TEXT)), sent(TEXT))

    run(main)


# -- errors -----------------------------------------------------------------------------------


def test_wrong_key_is_api_status_error_401() -> None:
    with ServerThread(ServerConfig(synthesizer="tone", api_key="right")).running() as s:

        async def main() -> None:
            async with ws_tts(s, api_key="wrong", pool_settings=SETTINGS) as t:
                errors: list[tts.TTSError] = []
                t.on("error", errors.append)
                with pytest.raises(APIStatusError) as info:
                    await speak(t, TEXT, conn_options=NO_RETRY)
                assert info.value.status_code == 401 and not info.value.retryable
                assert [e.recoverable for e in errors] == [False]
                # The rejection surfaces while the stream still waits for its first text.
                async with t.stream(conn_options=NO_RETRY) as stream, asyncio.timeout(2):
                    with pytest.raises(APIStatusError) as info:
                        await anext(stream)
                    assert info.value.status_code == 401
            async with http_tts(s, api_key="wrong") as h:
                with pytest.raises(APIStatusError) as info:
                    await h.synthesize(TEXT, conn_options=NO_RETRY).collect()
                assert info.value.status_code == 401 and not info.value.retryable
            async with ws_tts(s, api_key="right") as t:
                assert_speech(pcm_of(await speak(t, TEXT)), sent(TEXT))

        run(main)
        # One handshake: the pool remembers the 401 for the key, the second stream fails at once.
        assert s.stats().handshakes_rejected == {401: 1}


def test_error_frame_is_retryable_and_the_framework_retry_recovers(srv: ServerThread) -> None:
    """Rime's ``error`` frame fails the utterance (500, retryable); LiveKit retries it."""
    failed: list[str] = []

    def first_utterance_only(index: int, cid: str) -> bool:
        # Once for the whole server: the retry may land on a new connection, whose own
        # create index starts at 0 again.
        if failed:
            return False
        failed.append(cid)
        return True

    srv.set_faults(context_error=ContextErrorFault(first_utterance_only, 13, "busy"))

    async def main() -> None:
        async with ws_tts(srv) as t:
            errors: list[tts.TTSError] = []
            t.on("error", errors.append)
            retry = APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=5)
            frames = await speak(t, TEXT, conn_options=retry)
            assert_speech(pcm_of(frames), sent(TEXT))
            assert [e.recoverable for e in errors] == [True]
            error = errors[0].error
            assert isinstance(error, APIStatusError) and error.status_code == 500
            assert "Rime error: busy" in str(error)

    run(main)


# -- construction, as the official plugin -----------------------------------------------------


def test_constructor_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIME_API_KEY", raising=False)
    with pytest.raises(ValueError, match="API key"):
        livekit_rime.TTS()  # Rime's own host without a key
    monkeypatch.setenv("RIME_API_KEY", "from-env")
    t = livekit_rime.TTS()
    assert (t.model, t.options.speaker, t.sample_rate, t.provider) == (
        "coda",
        "lyra",
        24000,
        "Rime",
    )
    assert not t.capabilities.streaming  # HTTP unless told otherwise
    for model, speaker, rate in [
        ("mistv2", "cove", 22050),
        ("mistv3", "cove", 24000),
        ("arcana", "astra", 22050),
    ]:
        t = livekit_rime.TTS(model=model)
        assert (t.options.speaker, t.sample_rate) == (speaker, rate)
    assert livekit_rime.TTS(base_url="wss://users-ws.rime.ai").capabilities.aligned_transcript
    with pytest.raises(ValueError, match="trusted Rime host"):
        livekit_rime.TTS(base_url="wss://example.com")
    assert livekit_rime.TTS(base_url="wss://example.com", allow_custom_endpoint=True)
    with pytest.raises(ValueError, match="reduce_latency"):
        livekit_rime.TTS(use_websocket=True, model="mistv2", reduce_latency=True)
    with pytest.raises(ValueError, match="temperature"):
        livekit_rime.TTS(model="mistv2", temperature=0.5)  # an arcana/coda parameter
    with pytest.raises(ValueError, match="segment"):
        livekit_rime.TTS(use_websocket=True, segment="word")
    # A model of the other family drops the old family's parameters and takes its rate.
    t = livekit_rime.TTS(model="mistv2", speed_alpha=1.2)
    t.update_options(model="coda", temperature=0.5)
    assert (t.options.speed_alpha, t.options.temperature, t.sample_rate) == (None, 0.5, 24000)
    t.update_options(model="mistv2")
    assert (t.options.temperature, t.sample_rate) == (None, 22050)
    t.update_options(sample_rate=24000)
    t.update_options(model="coda")
    assert t.sample_rate == 24000  # an explicit rate stays
    with pytest.raises(ValueError, match="sample_rate"):
        t.update_options(sample_rate=12345)
    assert t.sample_rate == 24000
    with pytest.raises(ValueError, match="cannot switch"):
        t.update_options(base_url="wss://users-ws.rime.ai")
    assert livekit.shared_pool_count() == 0
