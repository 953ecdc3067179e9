"""Conformance with clients nobody here wrote: the official LiveKit ElevenLabs plugin and the
official ``elevenlabs`` SDK, unmodified, against the local server.

* ``livekit-plugins-elevenlabs`` 1.8.9 (with ``livekit-agents`` 1.8.9) is pointed at the
  server by its own ``base_url="http://127.0.0.1:P/v1"`` argument and speaks
  ``/v1/text-to-speech/{voice_id}/multi-stream-input``: one socket per ``TTS`` instance, one
  context per stream, a ``flush`` per sentence, ``{"text": "", "flush": true}`` then
  ``close_context`` at the end, and the stream ends at the context's ``isFinal``.
* ``elevenlabs`` 2.78.0's ``client.text_to_speech.convert_realtime()`` speaks the
  single-context ``/v1/text-to-speech/{voice_id}/stream-input``. The SDK forces ``wss://`` on
  whatever ``base_url`` it is given, so the one change is
  ``client.text_to_speech._ws_base_url = "ws://127.0.0.1:P"`` after construction (the only
  base-URL setting the SDK has for its WebSocket); its call returns when the server closes the
  socket with 1000 after the ``isFinal``.

Audio from the tone synthesiser is exact (:func:`~trio_tts.server.tone_pcm`), so ``pcm_*``
streams are compared byte for byte with what the plugin's messages must produce; mp3 is decoded
with FFmpeg (PyAV) and compared by length.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import pytest
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.realtime_tts import text_chunker
from livekit.agents import APIConnectOptions, APIError, APIStatusError, tokenize, tts
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import elevenlabs
from test_cli import ServeProcess
from test_livekit_plugin import ServerThread, pcm_of, run

from trio_tts.server import ContextErrorFault, ServerConfig, tone_pcm

VOICE = "hpp4J3VqNfWAUOO0d1Us"  # Bella: the LiveKit plugin's default voice
TEXT = "Hello there, my friend. How are you doing today? I am fine."
NO_RETRY = APIConnectOptions(max_retry=0, timeout=10)
# The SDK reads ConnectionClosed.code/.reason, deprecated since websockets 13.1.
pytestmark = pytest.mark.filterwarnings("ignore:ConnectionClosed.:DeprecationWarning")


def _plain_asyncio_run(coro: Any) -> Any:
    """``asyncio.run`` on a plain selector loop: trio_asyncio (imported by other test modules)
    installs a policy whose loops are trio runs."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(synthesizer="tone")).running() as s:
        yield s


def plugin(s: ServerThread, session: aiohttp.ClientSession, **kw: Any) -> elevenlabs.TTS:
    """The official plugin, pointed at the local server by its own ``base_url`` only."""
    return elevenlabs.TTS(
        base_url=f"http://127.0.0.1:{s.server.port}/v1", api_key="local", http_session=session,
        **kw,
    )  # fmt: skip


def sentences(text: str) -> list[str]:
    """What the plugin sends for ``text``: its blingfire sentences, each with a space."""

    async def main() -> list[str]:
        stream = tokenize.blingfire.SentenceTokenizer().stream()
        stream.push_text(text)
        stream.end_input()
        return [ev.token + " " async for ev in stream]

    return _plain_asyncio_run(main())


def expected_pcm(text: str, rate: int) -> bytes:
    """The server's audio for one plugin stream: the init's ``" "`` joins the first sentence,
    then one generation per flushed sentence."""
    pieces = sentences(text)
    pieces[0] = " " + pieces[0]
    return b"".join(tone_pcm(p, rate) for p in pieces)


async def speak(t: elevenlabs.TTS, text: str, **kw: Any) -> list[tts.SynthesizedAudio]:
    async with t.stream(**kw) as stream:
        stream.push_text(text)
        stream.end_input()
        return [frame async for frame in stream]


async def settle(s: ServerThread) -> Any:
    """The server's statistics once it holds no context (its own counter, polled)."""
    async with asyncio.timeout(10):
        while (stats := s.stats()).contexts_open:
            await asyncio.sleep(0.01)
    return stats


@pytest.fixture
def plugin_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No warning or error from LiveKit: every error frame and failure is logged there."""
    with caplog.at_level(logging.WARNING, logger="livekit"):
        yield
    problems = [r for r in caplog.get_records("call") if r.name.startswith("livekit")]
    assert not problems, [f"{r.name}: {r.getMessage()}" for r in problems]


def test_pcm_stream_is_the_exact_audio_with_monotonic_word_times(
    srv: ServerThread, plugin_log: None
) -> None:
    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session, plugin(
            srv, session, encoding="pcm_24000"
        ) as t:  # fmt: skip
            return await speak(t, TEXT)

    frames = run(main)
    got = pcm_of(frames)
    want = expected_pcm(TEXT, 24000)
    assert got in (want, want + b"\0\0" * 240)  # LiveKit may add a 10 ms end marker
    assert frames[-1].is_final and {f.frame.sample_rate for f in frames} == {24000}
    words = [w for f in frames for w in f.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
    starts = [w.start_time for w in words]
    assert len(words) >= 10 and starts == sorted(starts)
    assert "".join(str(w) for w in words).split() == TEXT.split()
    stats = srv.stats()
    assert (stats.connections_accepted, stats.contexts_created, stats.violations) == (1, 1, ())


def test_five_concurrent_streams_share_one_socket(srv: ServerThread, plugin_log: None) -> None:
    """All five are in flight at once (each has audio, none has ended its input) on the
    plugin's one socket, and each gets exactly its own audio."""
    texts = [f"Stream number {i} is speaking. It has a second sentence. And a third." for i in
             range(5)]  # fmt: skip

    async def main() -> tuple[list[list[tts.SynthesizedAudio]], Any]:
        async with aiohttp.ClientSession() as session, plugin(
            srv, session, encoding="pcm_16000"
        ) as t:  # fmt: skip
            streams = [t.stream() for _ in texts]
            got: list[list[tts.SynthesizedAudio]] = [[] for _ in texts]
            for stream, text in zip(streams, texts, strict=True):
                stream.push_text(text)
            for stream, frames in zip(streams, got, strict=True):
                frames.append(await anext(stream))
            during = srv.stats()  # every context open on the server at this point
            for stream in streams:
                stream.end_input()

            async def rest(stream: Any, frames: list[tts.SynthesizedAudio]) -> None:
                frames.extend([frame async for frame in stream])
                await stream.aclose()

            await asyncio.gather(*(rest(s, f) for s, f in zip(streams, got, strict=True)))
            return got, during

    results, during = run(main)
    assert (during.connections_open, during.contexts_open) == (1, 5)
    for frames, text in zip(results, texts, strict=True):
        got, want = pcm_of(frames), expected_pcm(text, 16000)
        assert got in (want, want + b"\0\0" * 160)
    stats = srv.stats()
    assert stats.connections_accepted == 1 and stats.peak_contexts_per_connection == 5
    assert stats.contexts_created == 5 and stats.violations == ()


def test_sequential_streams_reuse_the_socket(srv: ServerThread, plugin_log: None) -> None:
    async def main() -> list[bytes]:
        async with aiohttp.ClientSession() as session, plugin(
            srv, session, encoding="pcm_22050"
        ) as t:  # fmt: skip
            return [pcm_of(await speak(t, f"Turn {i}. Done.")) for i in range(3)]

    for i, got in enumerate(run(main)):
        want = expected_pcm(f"Turn {i}. Done.", 22050)
        assert got[: len(want)] == want and not any(got[len(want) :])
    stats = srv.stats()
    assert (stats.connections_accepted, stats.contexts_created) == (1, 3)
    assert stats.peak_contexts_per_connection == 1


async def overlapping(t: elevenlabs.TTS, n: int) -> list[Any]:
    """``n`` streams whose contexts are all open at once: each pushes two sentences, and none
    ends its input before every one has had its first frame (or failed). Each result is the
    stream's frames or its exception."""
    streams = [t.stream(conn_options=NO_RETRY) for _ in range(n)]
    for i, stream in enumerate(streams):
        stream.push_text(f"Overlapping turn {i} starts to speak now. And goes on. ")
    firsts = await asyncio.gather(*(anext(s) for s in streams), return_exceptions=True)

    async def rest(stream: Any, first: Any) -> Any:
        async with stream:
            if isinstance(first, BaseException):
                return first
            stream.end_input()
            return [first, *[frame async for frame in stream]]

    return list(await asyncio.gather(
        *(rest(s, f) for s, f in zip(streams, firsts, strict=True)), return_exceptions=True
    ))  # fmt: skip


def test_six_overlapping_streams_lose_all_six_to_the_1008_close(srv: ServerThread) -> None:
    """ElevenLabs' limit as reported (livekit/agents-js#1985): the sixth context gets
    ``max_active_conversations`` naming no context, which LiveKit only logs, then the 1008 close
    fails every stream on the socket, the five that were speaking included."""

    async def main() -> tuple[list[Any], Any]:
        async with aiohttp.ClientSession() as session, plugin(srv, session) as t:
            return await overlapping(t, 6), await settle(srv)

    results, stats = run(main)
    assert all(isinstance(r, APIStatusError) and r.status_code == 1008 for r in results), results
    assert stats.violations == ("connection 0: context 6 (limit 5)",)
    assert stats.peak_contexts_per_connection == 5 and stats.contexts_created == 5
    assert stats.connections_open == 0


def test_six_overlapping_streams_pass_without_a_limit() -> None:
    config = ServerConfig(synthesizer="tone", elevenlabs_max_contexts=None)

    async def main(s: ServerThread) -> tuple[list[Any], Any]:
        async with aiohttp.ClientSession() as session, plugin(s, session) as t:
            return await overlapping(t, 6), await settle(s)

    with ServerThread(config).running() as s:
        results, stats = run(lambda: main(s))
    assert all(isinstance(r, list) and pcm_of(r) for r in results), results
    assert stats.peak_contexts_per_connection == 6 and stats.violations == ()
    assert stats.connections_accepted == 1


def test_a_failed_context_fails_only_its_stream(srv: ServerThread) -> None:
    """An error frame naming a context (a fault on the second context created) fails that
    stream as LiveKit's ``APIStatusError("Could not synthesize")``; the rest speak."""
    srv.set_faults(context_error=ContextErrorFault(when=lambda n, _cid: n == 1, message="nope"))

    async def main() -> list[Any]:
        async with aiohttp.ClientSession() as session, plugin(srv, session) as t:
            return await overlapping(t, 3)

    results = run(main)
    assert isinstance(results[1], APIStatusError) and "Could not synthesize" in str(results[1])
    # LiveKit words its error with the frame's ``error`` field (the message is only logged).
    assert isinstance(results[1].__cause__, APIError)
    assert str(results[1].__cause__) == "internal_error"
    assert all(isinstance(r, list) and pcm_of(r) for r in (results[0], results[2])), results
    stats = srv.stats()
    assert stats.connections_accepted == 1 and stats.contexts_created == 2


def test_plugin_synthesize_over_http(srv: ServerThread, plugin_log: None) -> None:
    """``TTS.synthesize()``: one ``POST /v1/text-to-speech/{voice_id}/stream``."""

    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session, plugin(
            srv, session, encoding="pcm_24000"
        ) as t:  # fmt: skip
            return [frame async for frame in t.synthesize(TEXT)]

    got = pcm_of(run(main))
    want = tone_pcm(TEXT, 24000)
    assert got in (want, want + b"\0\0" * 240)


# -- against ``trio-tts serve`` (a subprocess): the SDK, and the plugin's default mp3 -----------


@pytest.fixture(scope="module")
def served() -> Iterator[ServeProcess]:
    server = ServeProcess()  # tone synthesiser, a free port
    try:
        yield server
    finally:
        status, err = server.stop(signal.SIGINT)
        server.kill()
        assert status == 0 and "Traceback" not in err, err


def sdk_client(base_url: str) -> ElevenLabs:
    """The official SDK; its WebSocket base is set after construction (the SDK turns any
    ``base_url`` into ``wss://``, and the local server speaks plain ``ws://``)."""
    client = ElevenLabs(api_key="local", base_url=base_url)
    client.text_to_speech._ws_base_url = base_url.replace("http://", "ws://", 1)
    return client


def decode(data: bytes) -> tuple[int, int]:
    """(sample rate, samples) of a compressed stream, decoded by FFmpeg."""
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    return frames[0].sample_rate, sum(f.samples for f in frames)


def sdk_chunks() -> Iterator[str]:
    """Text as an LLM streams it: pieces that cut words and sentences."""
    yield from ("Hello th", "ere, my fr", "iend. How are", " you doing today? I a", "m fine.")


def test_sdk_convert_realtime_pcm_is_the_whole_text(served: ServeProcess) -> None:
    client = sdk_client(served.base_url)
    audio = b"".join(client.text_to_speech.convert_realtime(
        VOICE, text=sdk_chunks(), model_id="eleven_flash_v2_5", output_format="pcm_16000",
    ))  # fmt: skip
    # What the SDK sends: " ", then its chunker's pieces (re-cut at spaces and punctuation,
    # each ending in a space). Every character is spoken exactly once, in generations the
    # server cuts at spaces, so the audio is exactly as long as the whole sent text's.
    sent = " " + "".join(text_chunker(sdk_chunks()))
    assert len(audio) == len(tone_pcm(sent, 16000)) and any(audio)


def test_sdk_convert_realtime_default_mp3_decodes(served: ServeProcess) -> None:
    client = sdk_client(served.base_url)
    audio = b"".join(client.text_to_speech.convert_realtime(VOICE, text=sdk_chunks()))
    rate, samples = decode(audio)  # the SDK's default output_format: mp3_44100_128
    seconds = len(" " + "".join(text_chunker(sdk_chunks()))) * 0.060
    assert rate == 44100 and samples / rate == pytest.approx(seconds, abs=0.25)


def test_sdk_errors_are_api_errors(served: ServeProcess) -> None:
    client = sdk_client(served.base_url)
    with pytest.raises(ApiError) as info:
        b"".join(client.text_to_speech.convert_realtime("NoSuchVoice", text=sdk_chunks()))
    assert info.value.status_code == 1008
    assert "NoSuchVoice was not found" in str(info.value.body)
    with pytest.raises(ApiError) as info:
        b"".join(client.text_to_speech.convert_realtime(
            VOICE, text=sdk_chunks(), output_format="pcm_12000"))  # fmt: skip
    assert info.value.status_code == 1008 and "pcm_12000" in str(info.value.body)


def test_plugin_default_mp3_against_the_subprocess(served: ServeProcess) -> None:
    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session, elevenlabs.TTS(
            base_url=served.base_url + "/v1", api_key="local", http_session=session
        ) as t:  # fmt: skip
            voices = await t.list_voices()
            assert VOICE in {v.id for v in voices}
            return await speak(t, TEXT)

    frames = run(main)
    # LiveKit decodes the mp3_22050_32 stream itself; its frames are 22.05 kHz PCM.
    assert {f.frame.sample_rate for f in frames} == {22050}
    seconds = len(pcm_of(frames)) / 2 / 22050
    spoken = sum(len(p) for p in sentences(TEXT)) + 1
    # Each flush pads the MP3 stream to get every sample out (~180 ms at 22.05 kHz).
    assert spoken * 0.060 <= seconds <= spoken * 0.060 + 0.2 * len(sentences(TEXT)) + 0.1
    words = [w for f in frames for w in f.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
    assert "".join(str(w) for w in words).split() == TEXT.split()
    # The word times count the padding too: they stay inside the decoded audio, in order.
    starts = [w.start_time for w in words]
    assert starts == sorted(starts) and words[-1].end_time <= seconds


def test_serve_limit_action_context_error_fails_only_the_sixth() -> None:
    """``trio-tts serve --el-limit-action context-error``: the sixth context's error names it,
    so LiveKit fails that stream alone and the socket carries on."""
    server = ServeProcess("--el-limit-action", "context-error")
    try:

        async def main() -> list[Any]:
            async with aiohttp.ClientSession() as session, elevenlabs.TTS(
                base_url=server.base_url + "/v1", api_key="local", http_session=session
            ) as t:  # fmt: skip
                return await overlapping(t, 6)

        results = run(main)
    finally:
        status, err = server.stop(signal.SIGINT)
        server.kill()
    assert status == 0, err
    failed = [r for r in results if not isinstance(r, list)]
    assert len(failed) == 1 and isinstance(failed[0], APIStatusError), results
    assert all(pcm_of(r) for r in results if isinstance(r, list))
