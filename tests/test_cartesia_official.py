"""Conformance with Cartesia's official clients, unmodified: ``livekit-plugins-cartesia`` 1.8.9
(on livekit-agents 1.8.9) and the ``cartesia`` SDK 4.2.0, pointed at the local server by their
own arguments only (LiveKit ``base_url="http://127.0.0.1:P"``, the SDK
``websocket_base_url="ws://127.0.0.1:P"`` and ``base_url=`` for HTTP).

What the two clients do on the wire (read from their source): the plugin keeps a pool of
sockets, one per concurrent stream, each reused by the next stream; it sends every sentence
of its tokenizer as ``transcript: "<sentence> "`` with ``max_buffer_delay_ms: 0``, then
``transcript: " ", continue: false``, authenticates with ``X-API-Key`` and puts the API
version in the query. The SDK multiplexes any number of contexts on one socket, sends
``Authorization: Bearer`` and a ``cartesia-version`` header, defaults to ``sonic-latest`` and
raw ``pcm_f32le`` at 44100 Hz, and routes frames by ``context_id`` to each context's
``receive()``, which ends at ``done`` or ``error``.

The tone synthesiser makes the audio exact: a generation of text ``t`` is
``tone_pcm(t, rate)``, so each test knows the bytes it must get and how the server cut the
text into generations. The server runs in a thread (its counters are read directly) or as a
``trio-tts serve`` subprocess.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from cartesia import AsyncCartesia
from livekit.agents import APIConnectOptions, APIStatusError, tokenize, tts
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import cartesia as lk_cartesia
from test_cli import ServeProcess
from test_livekit_plugin import ServerThread, pcm_of

from trio_tts.server import (
    PaceAudio,
    ServerConfig,
    Speech,
    StallContext,
    ToneSynthesizer,
    tone_pcm,
    tone_speech,
)
from trio_tts.server.cartesia.voices import CARTESIA_VOICES

KEY = "ca-official-key-91b2"
RATE = 24000
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"  # the plugin's default voice
TESSA = "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"  # the SDK's fallback voice
TEXT = "Hello there, my friend. How are you doing today? I am fine."
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5)
#: The 10 ms of silence LiveKit's AudioEmitter may send as the final frame of a segment.
MARKER = b"\0\0" * (RATE // 100)


class RecordingTone(ToneSynthesizer):
    """Tone audio that remembers every text it spoke and fails any text containing
    ``FAIL`` (a synthesis error: the server answers the context with an ``error``)."""

    def __init__(self) -> None:
        super().__init__()
        self.spoken: list[str] = []
        self._lock = threading.Lock()

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        with self._lock:
            self.spoken.append(text)
        if "FAIL" in text:
            raise RuntimeError("the synthesiser refused this text")
        return await super().synthesize(
            text, voice=voice, sample_rate=sample_rate, speaking_rate=speaking_rate
        )


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    config = ServerConfig(synthesizer=RecordingTone(), api_key=KEY)
    with ServerThread(config).running() as server:
        yield server


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """A ``trio-tts serve`` subprocess requiring ``KEY``: its base URL."""
    process = ServeProcess("--key", KEY)
    try:
        yield process.base_url
    finally:
        process.kill()


def arun(main: Callable[[], Awaitable[Any]], limit: float = 30) -> Any:
    """Run ``main`` on a plain asyncio loop (explicit: importing trio_asyncio elsewhere in the
    test session swaps the default policy for one whose loops run inside trio)."""

    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            return await main()

    # A plain loop, made explicitly: once trio_asyncio is imported (tests/test_asyncio_adapter.py
    # runs first), its policy makes asyncio.run() a trio run.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(bounded())


async def until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.005)


def sentences(text: str) -> list[str]:
    """What the plugin sends for ``text``: its default tokenizer's sentences, in order."""

    async def main() -> list[str]:
        stream = tokenize.blingfire.SentenceTokenizer().stream()
        stream.push_text(text)
        stream.end_input()
        return [ev.token async for ev in stream]

    return arun(main)


def plugin_audio(text: str, rate: int = RATE) -> bytes:
    """The plugin's audio for ``text``: each sentence (sent with a trailing space) is one
    generation (``max_buffer_delay_ms: 0``)."""
    return b"".join(tone_pcm(s + " ", rate) for s in sentences(text))


def assert_plugin_audio(frames: list[tts.SynthesizedAudio], text: str) -> None:
    want = plugin_audio(text)
    assert pcm_of(frames) in (want, want + MARKER)
    assert [f.is_final for f in frames].count(True) == 1 and frames[-1].is_final


# -- the official LiveKit plugin ----------------------------------------------------------------


def plugin(base_url: str, session: aiohttp.ClientSession, **kw: Any) -> lk_cartesia.TTS:
    return lk_cartesia.TTS(base_url=base_url, api_key=KEY, http_session=session, **kw)


async def speak(t: lk_cartesia.TTS, text: str, **kw: Any) -> list[tts.SynthesizedAudio]:
    async with t.stream(**kw) as stream:
        stream.push_text(text)
        stream.end_input()
        return [frame async for frame in stream]


def test_livekit_plugin_streams_from_trio_tts_serve_with_word_timestamps(served: str) -> None:
    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session:
            t = plugin(served, session)
            try:
                return await speak(t, TEXT)
            finally:
                await t.aclose()

    frames = arun(main)
    assert_plugin_audio(frames, TEXT)
    # Word times run on across the sentences (each generation starts where the last ended);
    # the plugin matches each word back to the text it sent.
    words = [w for f in frames for w in f.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
    want: list[float] = []
    offset = 0.0
    for sentence in sentences(TEXT):
        speech = tone_speech(sentence + " ", RATE)
        want += [t + offset for _, s, e in speech.words for t in (s, e)]
        offset += speech.duration
    assert "".join(str(w) for w in words).split() == TEXT.split()
    assert [t for w in words for t in (w.start_time, w.end_time)] == pytest.approx(want, abs=1e-5)


def test_livekit_plugin_pool_one_socket_per_concurrent_stream_then_reuse(
    srv: ServerThread,
) -> None:
    texts = [f"Stream number {i} speaks. It has two sentences." for i in range(4)]

    async def main() -> tuple[list[list[tts.SynthesizedAudio]], list[tts.SynthesizedAudio]]:
        async with aiohttp.ClientSession() as session:
            t = plugin(srv.server.base_url, session)
            try:
                # The server holds every context's audio until all four are open at once, so
                # the four streams surely overlap.
                srv.set_faults(stall_context=StallContext(when=lambda *_: True))
                streams = asyncio.gather(*(speak(t, text) for text in texts))
                await until(lambda: srv.stats().contexts_open == 4)
                srv.set_faults(stall_context=None)
                together = await streams
                during = srv.stats()
                again = await speak(t, "A later stream reuses a socket.")
                after = srv.stats()
                assert (during.connections_accepted, after.connections_accepted) == (4, 4)
            finally:
                await t.aclose()
            await until(lambda: srv.stats().connections_open == 0)
            return list(together), again

    together, again = arun(main)
    for frames, text in zip(together, texts, strict=True):
        assert_plugin_audio(frames, text)  # nothing lost, nothing misrouted
    assert_plugin_audio(again, "A later stream reuses a socket.")
    stats = srv.stats()
    assert (stats.peak_connections, stats.peak_contexts_per_connection) == (4, 1)
    assert (stats.contexts_created, stats.contexts_open, stats.violations) == (5, 0, ())


def test_livekit_plugin_swallows_an_error_that_carries_done_true(srv: ServerThread) -> None:
    """Cartesia's error events carry ``done: true``; the plugin checks ``done`` before
    ``type``, so the failed stream ends as if it had finished, short, without an exception,
    and the socket goes back to its pool. (trio_tts's drop-in raises instead.)"""
    text = "The first sentence is fine. The second one will FAIL here. The third never comes."
    tone = srv.server.config.synthesizer
    assert isinstance(tone, RecordingTone)

    async def main() -> tuple[list[tts.SynthesizedAudio], list[tts.SynthesizedAudio]]:
        async with aiohttp.ClientSession() as session:
            t = plugin(srv.server.base_url, session)
            try:
                failed = await speak(t, text, conn_options=NO_RETRY)  # no exception
                fine = await speak(t, "Then all is well.", conn_options=NO_RETRY)
            finally:
                await t.aclose()
            return failed, fine

    failed, fine = arun(main)
    first = sentences(text)[0]
    assert pcm_of(failed) in (tone_pcm(first + " ", RATE), tone_pcm(first + " ", RATE) + MARKER)
    assert_plugin_audio(fine, "Then all is well.")
    assert any("FAIL" in spoken for spoken in tone.spoken)  # the server did fail it
    stats = srv.stats()
    assert stats.connections_accepted == 1  # the "finished" socket was reused
    assert (stats.contexts_open, stats.violations) == (0, ())


def test_livekit_plugin_with_a_wrong_key_gets_401(srv: ServerThread) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            t = lk_cartesia.TTS(
                base_url=srv.server.base_url, api_key="wrong", http_session=session
            )
            try:
                with pytest.raises(APIStatusError) as info:
                    await speak(t, "Hello.", conn_options=NO_RETRY)
                assert info.value.status_code == 401
                assert "wrong" not in str(info.value) and KEY not in str(info.value)
            finally:
                await t.aclose()

    arun(main)
    assert srv.stats().handshakes_rejected == {401: 1}


# -- the official cartesia SDK ------------------------------------------------------------------


def sdk(base_url: str) -> AsyncCartesia:
    return AsyncCartesia(
        api_key=KEY, base_url=base_url, websocket_base_url=base_url.replace("http", "ws", 1)
    )


def f32(pcm: bytes) -> np.ndarray[Any, Any]:
    return np.frombuffer(pcm, "<i2").astype("<f4") / np.float32(32768)


async def collect(ctx: Any) -> tuple[bytes, list[Any]]:
    """Everything a context's ``receive()`` yields: the audio and the other events."""
    audio, events = b"", []
    async for event in ctx.receive():
        if event.type == "chunk":
            audio += event.audio or b""
        else:
            events.append(event)
    return audio, events


def test_sdk_readme_streaming_inputs_example_against_trio_tts_serve(served: str) -> None:
    """The README's "Streaming inputs with Websockets", async, as written (only the URLs set):
    the SDK's default output, raw pcm_f32le at 44100 Hz."""

    async def main() -> tuple[bytes, list[Any]]:
        client = sdk(served)
        try:
            async with client.tts.websocket_connect() as connection:
                ctx = connection.context(
                    model_id="sonic-3", voice={"mode": "id", "id": KATIE}, add_timestamps=True
                )
                for part in ["Hi there! ", "Welcome to ", "Cartesia Sonic."]:
                    await ctx.push(part)
                await ctx.no_more_inputs()
                return await collect(ctx)
        finally:
            await client.close()

    audio, events = arun(main)
    # The default max_buffer_delay_ms (3000): "Hi there! " ends a sentence and is spoken at
    # once; the rest waits for no_more_inputs().
    want = np.concatenate([f32(tone_pcm("Hi there! ", 44100)),
                           f32(tone_pcm("Welcome to Cartesia Sonic.", 44100))])  # fmt: skip
    got = np.frombuffer(audio, "<f4")
    assert np.array_equal(got, want) and len(got) / 44100 == pytest.approx(2.16)
    words = [w for e in events if e.type == "timestamps" for w in e.word_timestamps.words]
    assert words == ["Hi", "there!", "Welcome", "to", "Cartesia", "Sonic."]
    assert [e.type for e in events][-1] == "done"


def test_sdk_contexts_interleaved_on_one_socket_with_a_plain_string_voice(
    srv: ServerThread,
) -> None:
    parts = {
        "a": ["First context, ", "part two, ", "part three."],
        "b": ["Second context ", "speaks ", "too."],
        "c": ["Third ", "and ", "last."],
    }

    async def main() -> dict[str, bytes]:
        client = sdk(srv.server.base_url)
        try:
            async with client.tts.websocket_connect() as connection:
                contexts = {cid: connection.context(cid, voice=KATIE) for cid in parts}
                for i in range(3):  # the contexts' parts alternate on the wire
                    for cid, ctx in contexts.items():
                        await ctx.push(parts[cid][i])
                for ctx in contexts.values():
                    await ctx.no_more_inputs()
                results = await asyncio.gather(*(collect(ctx) for ctx in contexts.values()))
                return {cid: audio for cid, (audio, _) in zip(contexts, results, strict=True)}
        finally:
            await client.close()

    audio = arun(main)
    for cid, pieces in parts.items():  # no sentence end before the last part: one generation
        want = f32(tone_pcm("".join(pieces), 44100))
        assert np.array_equal(np.frombuffer(audio[cid], "<f4"), want)
    stats = srv.stats()
    assert (stats.connections_accepted, stats.peak_contexts_per_connection) == (1, 3)
    assert (stats.contexts_created, stats.contexts_open) == (3, 0)


def test_sdk_flush_answers_flush_done_then_done(srv: ServerThread) -> None:
    fmt = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE}

    async def main() -> list[Any]:
        client = sdk(srv.server.base_url)
        try:
            async with client.tts.websocket_connect() as connection:
                ctx = connection.context(model_id="sonic-3", voice={"id": KATIE}, output_format=fmt)
                await ctx.push("Flush this much", flush=True)
                await ctx.push(" and then the rest.")
                await ctx.no_more_inputs()
                return [event async for event in ctx.receive()]
        finally:
            await client.close()

    events = arun(main)
    kinds = [e.type for e in events]
    cut = kinds.index("flush_done")
    assert (events[cut].flush_id, events[cut].flush_done, kinds[-1]) == (1, True, "done")
    before = b"".join(e.audio for e in events[:cut] if e.type == "chunk")
    after = b"".join(e.audio for e in events[cut:] if e.type == "chunk")
    assert before == tone_pcm("Flush this much", RATE)
    assert after == tone_pcm(" and then the rest.", RATE)
    assert {e.flush_id for e in events[:cut]} == {1}


def test_sdk_cancel_frees_the_context_and_the_socket_goes_on(srv: ServerThread) -> None:
    srv.set_faults(pace_audio=PaceAudio(0.05, when=lambda index, cid: cid == "long"))
    long = "This sentence is long enough to need many chunks of audio. " * 3

    async def main() -> bytes:
        client = sdk(srv.server.base_url)
        try:
            async with client.tts.websocket_connect() as connection:
                ctx = connection.context("long", voice=KATIE)
                await ctx.push(long)
                await ctx.no_more_inputs()
                chunks = 0
                async for event in ctx.receive():
                    chunks += event.type == "chunk"
                    if chunks == 2:
                        break
                assert srv.stats().contexts_open == 1
                await ctx.cancel()
                await until(lambda: srv.stats().contexts_open == 0)
                other = connection.context("after", voice=KATIE)
                await other.push("After the cancel.")
                await other.no_more_inputs()
                audio, _ = await collect(other)
                return audio
        finally:
            await client.close()

    audio = arun(main)
    assert np.array_equal(np.frombuffer(audio, "<f4"), f32(tone_pcm("After the cancel.", 44100)))
    stats = srv.stats()
    assert (stats.connections_accepted, stats.contexts_created, stats.violations) == (1, 2, ())


def test_sdk_fallback_voice_and_errors_end_receive(srv: ServerThread, caplog: Any) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        client = sdk(srv.server.base_url)
        try:
            async with client.tts.websocket_connect() as connection:
                # No voice on the context: no_more_inputs() sends the SDK's fallback voice.
                empty = connection.context("empty")
                await empty.no_more_inputs()
                ended = [e async for e in empty.receive()]
                unknown = connection.context("unknown", voice="not-a-cartesia-voice")
                await unknown.push("Hello.")
                refused = [e async for e in unknown.receive()]
                embedded = connection.context("emb", voice={"mode": "embedding", "id": "x"})
                await embedded.push("Hello.")
                embedding = [e async for e in embedded.receive()]
                return ended, refused, embedding
        finally:
            await client.close()

    with caplog.at_level(logging.WARNING, logger="cartesia"):
        ended, refused, embedding = arun(main)
    assert TESSA in CARTESIA_VOICES
    assert [(e.type, e.context_id) for e in ended] == [("done", "empty")]
    (error,) = refused
    assert (error.type, error.status_code, error.error_code, error.done) == (
        "error", 404, "voice_not_found", True,
    )  # fmt: skip
    assert "not-a-cartesia-voice" in error.message and error.title == "Voice not found"
    assert [(e.type, e.status_code) for e in embedding] == [("error", 400)]
    assert not caplog.records  # no "connection closed unexpectedly": the socket stayed up
    assert srv.stats().connections_accepted == 1


def test_sdk_voices_list_pages_through_every_voice(srv: ServerThread) -> None:
    async def main() -> list[Any]:
        client = sdk(srv.server.base_url)
        try:
            return [voice async for voice in client.voices.list(limit=25)]
        finally:
            await client.close()

    voices = arun(main)
    assert [v.id for v in voices] == list(CARTESIA_VOICES)
    katie = voices[0]
    assert (katie.id, katie.name, katie.language) == (KATIE, "Katie", "en")
    assert katie.locales[0].locale == "en-US" and katie.created_at.year == 2026


def test_sdk_with_real_speech_plausible_length_and_timestamps() -> None:
    """eSpeak NG instead of the tone: real speech, so only plausibility can be checked."""

    async def main(base_url: str) -> tuple[bytes, list[Any]]:
        client = sdk(base_url)
        try:
            async with client.tts.websocket_connect() as connection:
                ctx = connection.context(voice=KATIE, add_timestamps=True)
                await ctx.push("The quick brown fox jumps over the lazy dog.")
                await ctx.no_more_inputs()
                return await collect(ctx)
        finally:
            await client.close()

    with ServerThread(ServerConfig(synthesizer="espeak")).running() as srv:
        audio, events = arun(lambda: main(srv.server.base_url))
    samples = np.frombuffer(audio, "<f4")
    seconds = len(samples) / 44100
    assert 1.5 < seconds < 6.0 and 0.05 < float(np.abs(samples).max()) <= 1.0
    stamps = [e.word_timestamps for e in events if e.type == "timestamps"]
    words = [w for s in stamps for w in s.words]
    starts = [t for s in stamps for t in s.start]
    assert len(words) == 9 and starts == sorted(starts) and starts[-1] < seconds
