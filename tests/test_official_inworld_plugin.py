"""Conformance with a client nobody here wrote: the official ``livekit-plugins-inworld``.

The plugin comes from PyPI (a ``test`` extra), unmodified and unpatched; it is pointed at a
real ``trio-tts serve`` subprocess by its own ``ws_url``/``base_url`` arguments and driven by
the real livekit-agents classes, with ``tts.stream()`` (the WebSocket) and
``tts.synthesize()`` (HTTP ``voice:stream``). Its audio is compared with what trio_tts's own
pool gets from the same server for the same text and voice.

What the plugin sends (read from its source, version 1.8.9, default model
``inworld-tts-1.5-max``): ``stream()`` cuts the text into sentences with LiveKit's blingfire
tokenizer (``retain_format=True``: the pieces join back into the text exactly), sends each as
its own ``send_text`` *without* a flush, and only after the input ends sends one
``flush_context`` and ``close_context``. Every context is created with ``autoMode: true``,
``bufferCharThreshold: 250`` and ``maxBufferDelayMs: 3000``, so the *server* decides where one
generation ends: a text under 250 characters is one generation (exactly the pool's audio for
the whole text); a longer one is cut at the sentence end where the buffer first reaches 250
characters. The tone synthesiser's pattern restarts with every generation, so for the long
text the pool replays the plugin's exact messages (the same sentence pieces under the same
``create`` settings) and the two must agree byte for byte, and the audio must differ from the
whole text spoken as one generation (the comparison can tell generations apart).

LiveKit's ``AudioEmitter`` may end a segment with a 10 ms all-zero marker frame (when the
last frame carrying audio already went out); that marker, and nothing else, is allowed after
the pool's bytes.

With the real eSpeak NG engine the audio is compared by duration (within 2 %) and by the
correlation of the loudness envelopes (RMS per 10 ms), not byte for byte: eSpeak's output for
the same text and voice may differ by a few samples between calls (enough to drop even the
plain waveform correlation of two pool calls to about 0.3). A different voice is the negative
control.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import numpy as np
import psutil  # a dependency of livekit-agents
import pytest
import trio
from livekit.agents import tokenize, tts
from livekit.plugins import inworld
from test_cli import TIMEOUT, ServeProcess
from test_livekit_plugin import pcm_of, run

import trio_tts
from trio_tts.server import tone_pcm

RATE = 24000
VOICE = "Dennis"  # not either side's default voice (Ashley)
TEXT = "Hello there, my friend. How are you doing today? I am fine."
# 12 sentences, 565 characters: more than the plugin's bufferCharThreshold (250).
LONG = " ".join(f"Sentence number {i} is being spoken right now." for i in range(12))
#: The 10 ms of silence LiveKit's AudioEmitter may send as the final frame of a segment.
MARKER = b"\0\0" * (RATE // 100)
#: The ``create`` settings the plugin sends with every streaming context.
PLUGIN_BUFFERING = {"auto_mode": True, "buffer_char_threshold": 250, "max_buffer_delay_ms": 3000}


# -- the server: ``trio-tts serve`` in a subprocess ----------------------------------------------


class Served:
    """A running ``trio-tts serve --port 0`` (a free port, printed by the server)."""

    def __init__(self, synth: str) -> None:
        self._server = ServeProcess("--synth", synth)  # the last --synth wins
        self.base_url = self._server.base_url
        #: The root, as the plugin takes it (its default is ``wss://api.inworld.ai/``).
        self.ws_root = self.base_url.replace("http://", "ws://", 1) + "/"
        #: The full endpoint, as trio_tts's provider takes it.
        self.ws_url = self.ws_root + "tts/v1/voice:streamBidirectional"
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def websockets(self) -> int:
        """Established TCP connections the server process holds on its port."""
        conns = psutil.Process(self._server.proc.pid).net_connections(kind="tcp")
        return sum(
            1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port
        )

    def stop(self) -> None:
        """SIGINT, then the server must exit 0 having logged no error."""
        try:
            status, err = self._server.stop(signal.SIGINT)
        finally:
            self._server.kill()
        # Nothing else on stderr: no traceback, no warning or error logged by the server.
        assert (status, err.splitlines()) == (0, ["trio-tts: SIGINT, shutting down"]), err


@pytest.fixture(scope="module")
def tone() -> Iterator[Served]:
    served = Served("tone")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def espeak() -> Iterator[Served]:
    served = Served("espeak")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def plugin_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No warning from LiveKit: the plugin logs every error frame from the server and every
    connection failure as a warning, and the framework each retry."""
    with caplog.at_level(logging.WARNING, logger="livekit"):
        yield
    problems = [r for r in caplog.get_records("call") if r.name.startswith("livekit")]
    assert not problems, [f"{r.name}: {r.getMessage()}" for r in problems]


# -- the two clients ---------------------------------------------------------------------------


def plugin_tts(served: Served, session: aiohttp.ClientSession, **kw: Any) -> inworld.TTS:
    """The official plugin, pointed at the local server by its own arguments only."""
    return inworld.TTS(
        api_key="local", ws_url=served.ws_root, base_url=served.base_url, voice=VOICE,
        sample_rate=RATE, encoding="PCM", http_session=session, **kw,
    )  # fmt: skip


async def plugin_stream(t: inworld.TTS, text: str) -> list[tts.SynthesizedAudio]:
    async with t.stream() as stream:
        stream.push_text(text)
        stream.end_input()
        return [frame async for frame in stream]


def pool_audio(
    served: Served, *utterances: Sequence[str], voice: str = VOICE, **options: Any
) -> list[bytes]:
    """trio_tts's pool against the same server: one context per utterance, its pieces sent
    one ``send_text`` each, then a flush and the close (as the plugin ends a stream)."""
    defaults = trio_tts.VoiceOptions(
        voice=voice, model=inworld.tts.DEFAULT_MODEL, encoding="PCM", sample_rate=RATE, **options
    )

    async def one(pool: trio_tts.Pool, pieces: Sequence[str]) -> bytes:
        ctx = await pool.open_context()
        async with ctx:
            for piece in pieces:
                await ctx.send_text(piece)
            await ctx.flush()
            await ctx.finish()
            return b"".join([ev.data async for ev in ctx if isinstance(ev, trio_tts.Audio)])

    async def main() -> list[bytes]:
        provider = trio_tts.InworldProvider("local", url=served.ws_url)
        with trio.fail_after(TIMEOUT):
            async with trio_tts.open_pool(provider, defaults=defaults) as pool:
                return [await one(pool, pieces) for pieces in utterances]

    return trio.run(main)


def sentences(text: str) -> list[str]:
    """What the plugin sends for ``text``: its default tokenizer's sentences, in order."""

    async def main() -> list[str]:
        stream = tokenize.blingfire.SentenceTokenizer(retain_format=True).stream()
        stream.push_text(text)
        stream.end_input()
        return [ev.token async for ev in stream]

    return asyncio.run(main())


def assert_same_audio(frames: list[tts.SynthesizedAudio], want: bytes) -> None:
    """The plugin's frames carry exactly ``want`` (plus, maybe, LiveKit's final marker)."""
    assert want
    assert {f.frame.sample_rate for f in frames} == {RATE}
    assert [f.is_final for f in frames].count(True) == 1 and frames[-1].is_final
    got = pcm_of(frames)
    assert got in (want, want + MARKER), (len(got), len(want))


# -- the deterministic tone synthesiser: byte for byte -----------------------------------------


def test_stream_short_text_is_the_pools_audio(tone: Served, plugin_log: None) -> None:
    pieces = sentences(TEXT)
    assert len(pieces) == 3 and "".join(pieces) == TEXT  # three send_text, nothing lost
    (pool,) = pool_audio(tone, [TEXT])
    assert pool == tone_pcm(TEXT, RATE)  # under 250 characters: one generation

    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session, plugin_tts(tone, session) as t:
            return await plugin_stream(t, TEXT)

    assert_same_audio(run(main, limit=TIMEOUT), pool)


def test_stream_long_text_is_the_pools_audio_for_the_same_messages(
    tone: Served, plugin_log: None
) -> None:
    pieces = sentences(LONG)
    assert len(pieces) == 12 and "".join(pieces) == LONG
    replay, whole = pool_audio(tone, pieces, [LONG], **PLUGIN_BUFFERING)
    # Same characters, so the same length; but several generations, so other bytes.
    assert len(replay) == len(tone_pcm(LONG, RATE)) and replay != tone_pcm(LONG, RATE)
    assert whole == tone_pcm(LONG, RATE)

    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session, plugin_tts(tone, session) as t:
            return await plugin_stream(t, LONG)

    assert_same_audio(run(main, limit=TIMEOUT), replay)


@pytest.mark.parametrize("text", [TEXT, LONG], ids=["short", "long"])
def test_synthesize_over_http_is_the_pools_audio(tone: Served, plugin_log: None, text: str) -> None:
    (pool,) = pool_audio(tone, [text])  # the whole text, one generation
    assert pool == tone_pcm(text, RATE)

    async def main() -> list[tts.SynthesizedAudio]:
        async with aiohttp.ClientSession() as session, plugin_tts(tone, session) as t:
            return [frame async for frame in t.synthesize(text)]

    assert_same_audio(run(main, limit=TIMEOUT), pool)


def test_two_streams_at_once_share_one_websocket(tone: Served, plugin_log: None) -> None:
    """Both streams are in flight at once (each has audio, neither has ended its input) on
    the plugin's one WebSocket, and each gets exactly its own audio."""
    texts = [LONG, LONG.replace("Sentence", "Phrase")]
    replays = pool_audio(tone, *(sentences(t) for t in texts), **PLUGIN_BUFFERING)
    assert replays[0] != replays[1]

    async def main() -> tuple[list[list[tts.SynthesizedAudio]], list[int]]:
        async with aiohttp.ClientSession() as session, plugin_tts(tone, session) as t:
            errors: list[tts.TTSError] = []
            t.on("error", errors.append)
            streams = [t.stream() for _ in texts]
            got: list[list[tts.SynthesizedAudio]] = [[], []]
            for stream, text in zip(streams, texts, strict=True):
                stream.push_text(text)  # over 250 characters: audio before the input ends
            for stream, frames in zip(streams, got, strict=True):
                frames.append(await anext(stream))
            sockets = [tone.websockets()]
            for stream in streams:
                stream.end_input()

            async def rest(stream: Any, frames: list[tts.SynthesizedAudio]) -> None:
                frames.extend([frame async for frame in stream])
                await stream.aclose()

            await asyncio.gather(*(rest(s, f) for s, f in zip(streams, got, strict=True)))
            sockets.append(tone.websockets())
            assert errors == []
            return got, sockets

    got, sockets = run(main, limit=TIMEOUT)
    assert sockets == [1, 1]  # one WebSocket, both contexts multiplexed on it
    for frames, want in zip(got, replays, strict=True):
        assert len({f.segment_id for f in frames}) == 1
        assert_same_audio(frames, want)


# -- the real eSpeak NG engine: same duration and waveform -------------------------------------


def envelope_correlation(a: bytes, b: bytes) -> float:
    """Pearson correlation of the two signals' loudness envelopes (RMS per 10 ms), over the
    common length. Robust to eSpeak's jitter of a few samples, which already drops the plain
    waveform correlation of two calls for the same text and voice to about 0.3."""
    window = RATE // 100

    def envelope(pcm: bytes) -> np.ndarray[Any, Any]:
        samples = np.frombuffer(pcm, "<i2").astype(np.float64)
        n = len(samples) // window
        return np.sqrt((samples[: n * window].reshape(n, window) ** 2).mean(axis=1))

    x, y = envelope(a), envelope(b)
    n = min(len(x), len(y))
    return float(np.corrcoef(x[:n], y[:n])[0, 1])


def test_espeak_stream_and_synthesize_match_the_pool(espeak: Served, plugin_log: None) -> None:
    """Real speech may differ by a few samples between two calls for the same text and voice,
    so: durations within 2 % and loudness envelopes correlated above 0.95 (two pool calls
    reach about 0.99); the same text in another voice (Ashley, about 0.5) must not pass."""
    pool, other_voice = (
        pool_audio(espeak, [TEXT])[0], pool_audio(espeak, [TEXT], voice="Ashley")[0]
    )  # fmt: skip
    assert envelope_correlation(other_voice, pool) < 0.8  # the measure tells voices apart

    async def main() -> tuple[bytes, bytes]:
        async with aiohttp.ClientSession() as session, plugin_tts(espeak, session) as t:
            streamed = pcm_of(await plugin_stream(t, TEXT))
            synthesized = pcm_of([frame async for frame in t.synthesize(TEXT)])
            return streamed, synthesized

    for got in run(main, limit=TIMEOUT):
        seconds = (len(got) - len(MARKER) if got.endswith(MARKER) else len(got)) / 2 / RATE
        assert seconds > 2  # speech, not a stub
        assert seconds == pytest.approx(len(pool) / 2 / RATE, rel=0.02)
        assert envelope_correlation(got, pool) > 0.95
        assert envelope_correlation(got, other_voice) < 0.8
