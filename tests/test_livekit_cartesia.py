"""``bridges.livekit_cartesia`` is a drop-in for ``livekit.plugins.cartesia`` (1.8.9), with real
livekit-agents classes, the official plugin from PyPI (unmodified) and the local server's
Cartesia ``/tts/websocket`` in a thread (tone audio: deterministic to the byte).

The same agent runs once with each import, both constructed with the identical arguments, and
the two records must be equal: every frame (rate, length, which one is final), the audio, the
timed words (text, times, the frame each rides on), the metrics and ``label``/``model``/
``provider``. Where ours differs on purpose the test shows both sides: a Cartesia error frame
(``done: true``) fails our stream but ends the official one "normally"; concurrent streams are
contexts on one socket within the plan's limit here, a socket each (and 429s past the limit)
there; an interrupted stream's slot comes back only after Cartesia's expiry of its context.
Every test ends by reading the server's own counters (contexts open, sockets, violations).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tokenize,
    tts,
)
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import cartesia as official
from test_livekit_dropin import Watch, assert_same, failure, identity, metrics_of, observed
from test_livekit_plugin import LONG, ServerThread, pcm_of, run, until

from bridges import livekit_cartesia as ours
from trio_tts.server import (
    ContextErrorFault,
    Faults,
    PaceAudio,
    ServerConfig,
    Speech,
    StallContext,
    ToneSynthesizer,
    tone_pcm,
    tone_speech,
)
from trio_tts.testing import check_quiescent

KEY = "sk_car_livekit-dropin-5e1f"
RATE = 24000
TESSA = "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"  # spoken by the local voice Claire
TEXT = "Hello there, my friend. How are you doing today? I am fine."
# As an LLM streams tokens: the cuts fall inside words and sentences.
PIECES = (TEXT[:9], TEXT[9:30], TEXT[30:])
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5)


@functools.cache
def sentences(text: str) -> list[str]:
    """What both plugins send for ``text``: the default tokenizer's sentences, in order (on a
    loop of its own, in a thread: callers may be on a running loop)."""

    async def main() -> list[str]:
        stream = tokenize.blingfire.SentenceTokenizer().stream()
        stream.push_text(text)
        stream.end_input()
        return [ev.token async for ev in stream]

    def in_thread() -> list[str]:
        # A plain loop: trio_asyncio's import (other tests) swaps the default policy.
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(main())

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(in_thread).result()


def sent_audio(text: str, rate: int = RATE) -> bytes:
    """The audio of ``text`` as both plugins send it: each sentence with a trailing space is
    one generation (``max_buffer_delay_ms: 0``)."""
    return b"".join(tone_pcm(s + " ", rate) for s in sentences(text))


def assert_audio(data: bytes, want: bytes, rate: int = RATE) -> None:
    """``data`` is ``want``, plus at most LiveKit's 10 ms end-of-segment marker."""
    assert data in (want, want + b"\0\0" * (rate // 100))


def args(
    s: ServerThread, session: aiohttp.ClientSession | None = None, **kw: Any
) -> dict[str, Any]:
    """The official plugin's arguments for the local server: its root as ``base_url``."""
    return {"base_url": s.server.base_url, "api_key": KEY, "http_session": session, **kw}


async def stream(t: tts.TTS, *pieces: str, **kw: Any) -> list[tts.SynthesizedAudio]:
    async with t.stream(**kw) as s:
        for piece in pieces:
            s.push_text(piece)
        s.end_input()
        return [frame async for frame in s]


class RecordingTone(ToneSynthesizer):
    """Tone audio, remembering the local voice, text and speaking rate of every generation
    (Katie is spoken by Ashley, Tessa by Claire)."""

    def __init__(self) -> None:
        super().__init__()
        self.spoken: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        with self._lock:
            self.spoken.append((voice, text, speaking_rate))
        return await super().synthesize(
            text, voice=voice, sample_rate=sample_rate, speaking_rate=speaking_rate
        )

    def clear(self) -> None:
        with self._lock:
            self.spoken.clear()


@pytest.fixture
def synth() -> RecordingTone:
    return RecordingTone()


@pytest.fixture
def srv(synth: RecordingTone) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(synthesizer=synth, api_key=KEY)).running() as s:
        yield s


def limited(concurrency: int, **faults: Any) -> ServerThread:
    """A server with a plan of ``concurrency`` contexts at once (a 429 past it)."""
    return ServerThread(
        ServerConfig(
            synthesizer="tone",
            api_key=KEY,
            cartesia_concurrency=concurrency,
            faults=Faults(**faults),
        )
    )


def once_per_context(generation: int) -> Any:
    """A ``ContextErrorFault`` predicate selecting each context's ``generation``-th synthesis
    (the server asks once per generation)."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def when(index: int, cid: str) -> bool:
        with lock:
            seen[cid] = seen.get(cid, 0) + 1
            return seen[cid] == generation

    return when


# -- the same agent with either import ---------------------------------------------------------


async def agent(plugin: ModuleType, s: ServerThread, synth: RecordingTone) -> dict[str, Any]:
    """One agent's use of the Cartesia plugin, start to end, with ``plugin`` imported."""
    out: dict[str, Any] = {}
    sockets = s.stats().connections_accepted
    async with aiohttp.ClientSession() as session:
        t = plugin.TTS(**args(s, session))
        watch = Watch(t)
        out["identity"] = identity(t)
        out["stream"] = observed(await stream(t, *PIECES))
        out["again"] = observed(await stream(t, "A second turn. It reuses what it can."))
        t.update_options(voice=TESSA, speed=1.5, emotion=["Calm"], language="en-US")
        out["updated"] = identity(t)
        out["updated stream"] = observed(await stream(t, TEXT))
        out["spoken"] = list(synth.spoken)
        # acquire_time is a clock reading, 0 for a reused socket (as connection_reused says).
        out["metrics"] = [
            {**m, "acquire_time": m["acquire_time"] > 0} for m in metrics_of(watch.metrics)
        ]
        out["errors"] = [(type(e.error), e.recoverable, e.label) for e in watch.errors]
        await t.aclose()
        wrong = plugin.TTS(**args(s, session, api_key="sk_car_wrong"))
        out["refused key"] = await failure(lambda: stream(wrong, TEXT, conn_options=NO_RETRY))
        await wrong.aclose()
    # One socket for the agent's three streams (the official plugin reuses its socket for
    # sequential streams; ours is the shared pool's), one refused handshake.
    out["sockets"] = s.stats().connections_accepted - sockets
    return out


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_an_agent_sees_the_same_with_either_import(
    srv: ServerThread, synth: RecordingTone, runner: str
) -> None:
    records = []
    for plugin in (official, ours):
        synth.clear()
        records.append(run(lambda plugin=plugin: agent(plugin, srv, synth), runner))
        # After aclose: nothing left open on the server by either.
        run(lambda: until(lambda: srv.stats().connections_open == 0))
        assert srv.stats().contexts_open == 0
    theirs, mine = records
    assert_same(theirs, mine)
    # What the records hold (so the comparison means something): exact audio, words of the
    # whole text with times that run on across the sentences, the voices the server used.
    assert_audio(theirs["stream"]["pcm"], sent_audio(TEXT))
    words = theirs["stream"]["words"]
    assert "".join(w for _, w, _, _ in words) == TEXT  # matched back to the text sent
    want, offset = [], 0.0
    for sentence in sentences(TEXT):
        speech = tone_speech(sentence + " ", RATE)
        want += [round(t + offset, 6) for _, s, e in speech.words for t in (s, e)]
        offset += speech.duration
    assert [t for _, _, s, e in words for t in (s, e)] == pytest.approx(want, abs=1e-5)
    assert len({n for n, _, _, _ in words}) > 1  # the words ride on several frames
    spoken = theirs["spoken"]
    assert spoken[:3] == [("Ashley", s + " ", 1.0) for s in sentences(TEXT)]  # Katie
    assert spoken[-1] == ("Claire", sentences(TEXT)[-1] + " ", 1.5)  # Tessa, speed 1.5
    assert theirs["sockets"] == 1
    assert len(theirs["metrics"]) == 3 and theirs["errors"] == []
    assert theirs["identity"]["label"] == "livekit.plugins.cartesia.tts.TTS"
    assert type(theirs["refused key"]) is type(mine["refused key"]) is APIStatusError
    assert mine["refused key"].status_code == theirs["refused key"].status_code == 401
    assert "sk_car_wrong" not in str(mine["refused key"]) and KEY not in str(mine["refused key"])
    assert srv.stats().violations == ()


# -- capacity: contexts on one socket, within the plan -------------------------------------------


STREAMS = [f"Stream number {i} speaks. It has two sentences." for i in range(12)]


def test_the_official_plugin_opens_a_socket_per_stream_and_overruns_the_plan() -> None:
    """The reference for the next test: 12 concurrent streams are 12 sockets. Against a plan
    of 5 contexts, Cartesia answers the 6th with a 429 error (``done: true``), which the
    official plugin swallows: those streams end with no audio at all."""

    async def main() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            t = official.TTS(**args(srv, session))
            try:
                return await asyncio.gather(
                    *(stream(t, text, conn_options=NO_RETRY) for text in STREAMS),
                    return_exceptions=True,
                )
            finally:
                await t.aclose()

    with limited(15, pace_audio=PaceAudio(0.05)).running() as srv:
        results = run(main)
        stats = srv.stats()
    for frames, text in zip(results, STREAMS, strict=True):
        assert_audio(pcm_of(frames), sent_audio(text))
    assert (stats.peak_connections, stats.peak_contexts_per_connection) == (12, 1)
    assert stats.violations == ()
    with limited(5, pace_audio=PaceAudio(0.05)).running() as srv:
        results = run(main)
        stats = srv.stats()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert stats.peak_connections > 5 and stats.violations  # a 6th context at once: 429
    assert failed and all(isinstance(r, APIError) for r in failed)
    assert all("no audio frames" in str(r) for r in failed)  # the 429 itself was swallowed


def test_many_streams_share_one_socket_within_the_plan() -> None:
    """Ours: the same 12 streams, with ``concurrency=5`` (the plan), are contexts multiplexed
    on one socket; the pool's gate admits 5 at a time (the others wait their turn, FIFO);
    every stream gets exactly its audio and the server never sees a 6th context."""

    async def main() -> list[list[tts.SynthesizedAudio]]:
        async with ours.TTS(**args(srv), concurrency=5) as t:
            pool = await t.pool()
            results = await asyncio.gather(
                *(stream(t, text, conn_options=NO_RETRY) for text in STREAMS)
            )
            await until(lambda: not check_quiescent(pool.trio_pool))
            assert pool.statistics().connections_opened == 1
            return results

    with limited(5, pace_audio=PaceAudio(0.05)).running() as srv:
        results = run(main)
        stats = srv.stats()
    for frames, text in zip(results, STREAMS, strict=True):
        assert_audio(pcm_of(frames), sent_audio(text))  # nothing lost, nothing misrouted
    assert (stats.connections_accepted, stats.peak_contexts_per_connection) == (1, 5)
    assert stats.violations == () and stats.contexts_open == 0
    assert stats.contexts_created == len(STREAMS)


def test_streams_wait_their_turn_first_come_first_served(synth: RecordingTone) -> None:
    """A plan of one context: streams that asked for a slot one after another are spoken in
    that order (the gate is FIFO), each whole before the next one starts on the server."""
    texts = [f"Caller {i} waits for a turn." for i in range(6)]

    async def main() -> None:
        async with ours.TTS(**args(srv), concurrency=1) as t:
            pool = await t.pool()
            streams = []
            for i, text in enumerate(texts):
                s = t.stream()
                s.push_text(text)
                s.end_input()
                streams.append(s)
                if i == 0:
                    await until(lambda: pool.statistics().contexts_in_use == 1)
                else:  # it waits for the slot, behind the ones before it
                    await until(lambda i=i: pool.statistics().waiting == i)
            for s, text in zip(streams, texts, strict=True):
                async with s:
                    assert_audio(pcm_of([f async for f in s]), sent_audio(text))

    config = ServerConfig(synthesizer=synth, api_key=KEY, cartesia_concurrency=1,
                          faults=Faults(pace_audio=PaceAudio(0.05)))  # fmt: skip
    with ServerThread(config).running() as srv:
        run(main)
        stats = srv.stats()
    assert [text for _, text, _ in synth.spoken] == [text + " " for text in texts]
    assert (stats.violations, stats.contexts_created, stats.connections_accepted) == ((), 6, 1)


# -- errors ------------------------------------------------------------------------------------


def test_an_error_frame_with_done_fails_ours_and_ends_the_official_one_normally(
    srv: ServerThread,
) -> None:
    """The server fails each context's second sentence with Cartesia's error event (500,
    ``done: true``). The official plugin's stream ends as if finished, with only the first
    sentence's audio and no exception; ours raises ``APIStatusError(500)`` with Cartesia's
    message (not retried: audio was already played), and its slot is back at once."""
    srv.set_faults(
        context_error=ContextErrorFault(once_per_context(2), 500, "boom", after_audio=True)
    )
    first = sentences(TEXT)[0] + " "

    async def agent(plugin: ModuleType) -> tuple[Any, bytes, list[Any]]:
        async with aiohttp.ClientSession() as session:
            t = plugin.TTS(**args(srv, session))
            errors: list[tts.TTSError] = []
            t.on("error", errors.append)
            frames: list[tts.SynthesizedAudio] = []
            outcome: Any = None
            try:
                async with t.stream(conn_options=APIConnectOptions(timeout=5)) as s:
                    s.push_text(TEXT)
                    s.end_input()
                    async for frame in s:
                        frames.append(frame)
            except APIError as exc:
                outcome = exc
            if plugin is ours:
                pool = await t.pool()
                assert pool.statistics().contexts_in_use == 0  # done: true freed it
            await t.aclose()
            return outcome, pcm_of(frames), errors

    theirs = run(lambda: agent(official))
    mine = run(lambda: agent(ours))
    assert theirs[0] is None and theirs[2] == []  # no exception, no error event
    assert_audio(theirs[1], tone_pcm(first, RATE))  # short: the rest was lost silently
    error = mine[0]
    assert isinstance(error, APIStatusError) and str(error).startswith("message='Cartesia error:")
    assert error.status_code == 500 and "boom" in str(error)
    # Audio before the error was played (LiveKit drops the frame it was still filling).
    assert mine[1] and tone_pcm(first, RATE).startswith(mine[1])
    assert [(type(e.error), e.recoverable) for e in mine[2]] == [(APIStatusError, False)]
    stats = srv.stats()
    assert (stats.contexts_open, stats.violations) == (0, ())


def test_an_error_before_any_audio_is_retried_by_the_framework(srv: ServerThread) -> None:
    """The first sentence of the first context fails: nothing was played, so LiveKit's retry
    runs the stream again, on a new context of the same socket, and it succeeds."""
    failed: list[str] = []

    def first_only(index: int, cid: str) -> bool:
        if failed:
            return False
        failed.append(cid)
        return True

    srv.set_faults(context_error=ContextErrorFault(first_only, 503, "busy", after_audio=True))

    async def main() -> list[tts.TTSError]:
        async with ours.TTS(**args(srv)) as t:
            errors: list[tts.TTSError] = []
            t.on("error", errors.append)
            retry = APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=5)
            assert_audio(pcm_of(await stream(t, TEXT, conn_options=retry)), sent_audio(TEXT))
            return errors

    errors = run(main)
    assert [(type(e.error), e.recoverable) for e in errors] == [(APIStatusError, True)]
    assert isinstance(errors[0].error, APIStatusError) and errors[0].error.status_code == 503
    stats = srv.stats()
    assert (stats.connections_accepted, stats.contexts_created, stats.contexts_open) == (1, 2, 0)


def test_a_silent_server_is_a_timeout_for_both(srv: ServerThread) -> None:
    """A context the server stops answering: the official plugin's read times out after
    ``conn_options.timeout``; so does ours, with the same ``APITimeoutError``."""
    srv.set_faults(stall_context=StallContext(lambda index, cid: True, after_frames=1))
    quick = APIConnectOptions(max_retry=0, timeout=1.0)

    async def agent(plugin: ModuleType) -> tuple[APIError, float]:
        async with aiohttp.ClientSession() as session, plugin.TTS(**args(srv, session)) as t:
            started = time.monotonic()
            error = await failure(lambda: stream(t, TEXT, conn_options=quick))
            return error, time.monotonic() - started

    for plugin in (official, ours):
        error, took = run(lambda plugin=plugin: agent(plugin))
        assert type(error) is APITimeoutError, plugin
        assert 1.0 <= took < 5.0
    srv.set_faults(stall_context=None)


def test_no_server_is_a_retryable_connection_error_for_both() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def agent(plugin: ModuleType) -> APIError:
        async with aiohttp.ClientSession() as session:
            t = plugin.TTS(base_url=f"http://127.0.0.1:{port}", api_key=KEY, http_session=session)
            async with t:
                return await failure(lambda: stream(t, TEXT, conn_options=NO_RETRY))

    for plugin in (official, ours):
        error = run(lambda plugin=plugin: agent(plugin))
        assert type(error) is APIConnectionError and error.retryable, plugin


# -- interruption ------------------------------------------------------------------------------


REPLY = "This reply is long enough to be interrupted. It goes on. And it ends here."


@pytest.mark.parametrize(
    ("runner", "input_ended"), [("asyncio", False), ("uvloop", False), ("asyncio", True)]
)
def test_an_interrupted_stream_keeps_its_slot_until_cartesia_is_done_with_it(
    runner: str, input_ended: bool
) -> None:
    """LiveKit interrupts a reply by closing its stream after the first audio. With a plan of
    one context, the next stream must wait until Cartesia no longer counts the old one:

    * the LLM still streaming (input open): ours cancels the context on the server, which
      drops it at once and says nothing, so the slot is counted taken until Cartesia's expiry
      of the context has passed (``cancel_expiry``, 1.5 s after its last frame);
    * the whole reply already sent (``continue: false`` went out): the server finishes it and
      its ``done`` gives the slot back.

    Either way the server never sees two contexts at once (its plan would answer 429 and
    record a violation) and the next stream gets only its own audio."""

    async def main() -> None:
        settings = {"sweep_interval": 0.1}
        async with ours.TTS(**args(srv), concurrency=1, pool_settings=settings) as t:
            pool = await t.pool()
            s = t.stream()
            s.push_text(REPLY if input_ended else LONG)
            if input_ended:
                s.end_input()
            got = [await anext(s) for _ in range(2)]
            assert pool.statistics().contexts_in_use == 1
            await s.aclose()  # the interruption
            closed_at = time.monotonic()
            assert pool.statistics().contexts_in_use == 1  # not confirmed yet
            assert 0 < len(pcm_of(got)) < len(sent_audio(REPLY))
            if not input_ended:
                await until(lambda: srv.stats().contexts_open == 0)  # cancelled there
                assert pool.statistics().contexts_in_use == 1  # Cartesia said nothing
            after = await stream(t, "Fresh start.")
            if not input_ended:
                assert time.monotonic() - closed_at >= 1.4  # Cartesia's expiry
            assert_audio(pcm_of(after), sent_audio("Fresh start."))  # none of the old audio
            await until(lambda: not check_quiescent(pool.trio_pool))
            assert pool.statistics().connections_opened == 1

    with limited(1, pace_audio=PaceAudio(0.02)).running() as srv:
        run(main, runner)
        stats = srv.stats()
    assert stats.violations == ()  # never a second context at once on the server
    assert (stats.contexts_created, stats.contexts_open, stats.connections_accepted) == (2, 0, 1)


def test_aclose_leaves_nothing_behind(srv: ServerThread) -> None:
    """Streams done, one interrupted, a synthesis: after the last ``aclose`` the shared pool is
    gone (``run`` checks), and the server has no socket and no context left."""

    async def main() -> None:
        a = ours.TTS(**args(srv))
        b = ours.TTS(**args(srv), voice=TESSA)
        pool = await a.pool()
        assert await b.pool() is pool  # same endpoint, key and settings: one shared pool
        s = a.stream()
        s.push_text(LONG)
        await anext(s)  # audio flowing; then the agent shuts down
        assert_audio(pcm_of(await stream(b, TEXT)), sent_audio(TEXT))
        await a.aclose()  # closes its open stream too
        assert pool.statistics().contexts_in_use <= 1  # the cancelled one, until its expiry
        assert [f async for f in b.synthesize(TEXT)]
        await until(lambda: not check_quiescent(pool.trio_pool), limit=5)
        await b.aclose()  # the last user: the pool closes

    srv.set_faults(pace_audio=PaceAudio(0.01))
    run(main)
    run(lambda: until(lambda: srv.stats().connections_open == 0))
    stats = srv.stats()
    assert (stats.contexts_open, stats.violations, stats.connections_accepted) == (0, (), 1)


# -- synthesize(), prewarm(), update_options() ---------------------------------------------------


def test_synthesize_is_one_context_on_the_pooled_socket(srv: ServerThread) -> None:
    """One-shot synthesis: the whole text in one request (one generation), the frames of a
    non-streaming LiveKit synthesis, no timed transcript (as the official plugin's HTTP
    request), on the socket the streams use."""

    async def main() -> None:
        async with ours.TTS(**args(srv), sample_rate=16000) as t:
            t.prewarm()
            pool = await t.pool()
            await until(lambda: pool.statistics().connections_open == 1)
            frames = [f async for f in t.synthesize(TEXT)]
            assert_audio(pcm_of(frames), tone_pcm(TEXT, 16000), 16000)
            assert frames[-1].is_final and {f.frame.sample_rate for f in frames} == {16000}
            assert not any(f.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT) for f in frames)
            assert [f async for f in t.synthesize("   ")] == []  # nothing to say, no context
            then = await stream(t, "Then a stream.")
            assert_audio(pcm_of(then), sent_audio("Then a stream.", 16000), 16000)
            assert pool.statistics().connections_opened == 1  # the prewarmed socket

    run(main)
    stats = srv.stats()
    assert (stats.connections_accepted, stats.contexts_created, stats.contexts_open) == (1, 2, 0)


def test_empty_input_sends_nothing(srv: ServerThread) -> None:
    async def main() -> None:
        async with ours.TTS(**args(srv)) as t, asyncio.timeout(2):
            assert await stream(t) == []
            assert await stream(t, "   ") == []

    run(main)
    assert srv.stats().contexts_created == 0  # the official plugin opens a context for it


def test_api_version_is_the_sockets(srv: ServerThread) -> None:
    """The version travels in the socket's URL: a TTS of another version shares the pool (one
    gate for the account) on a socket of its own; ``update_options(api_version=...)`` takes
    later streams there, and moves the pool's defaults (its warm socket) when that TTS is the
    pool's only user."""

    async def main() -> None:
        a = ours.TTS(**args(srv))
        b = ours.TTS(**args(srv), api_version="2026-08-14")
        pool = await a.pool()
        assert await b.pool() is pool
        assert_audio(pcm_of(await stream(a, "Old version.")), sent_audio("Old version."))
        assert_audio(pcm_of(await stream(b, "New version.")), sent_audio("New version."))
        assert pool.statistics().connections_opened == 2
        a.update_options(api_version="2026-08-14")
        assert_audio(pcm_of(await stream(a, "Moved.")), sent_audio("Moved."))
        assert pool.statistics().connections_opened == 2  # b's socket
        assert pool.defaults.api_version == ours.API_VERSION  # a's, the first: shared
        await b.aclose()
        a.update_options(api_version="2025-06-04")  # a alone now: the pool's defaults move
        assert_audio(pcm_of(await stream(a, "Alone.")), sent_audio("Alone."))
        assert pool.defaults.api_version == "2025-06-04"
        await a.aclose()

    run(main)
    assert srv.stats().connections_accepted == 3


def test_text_pacing_sends_the_whole_text(srv: ServerThread) -> None:
    async def main() -> list[tts.SynthesizedAudio]:
        async with ours.TTS(**args(srv), text_pacing=True) as t:
            return await stream(t, *PIECES)

    frames = run(main)
    words = [w for f in frames for w in f.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
    assert "".join(str(w) for w in words).split() == TEXT.split()
    assert srv.stats().contexts_open == 0


# -- construction, as the official plugin -------------------------------------------------------


def test_every_official_argument_is_accepted_with_its_default() -> None:
    theirs = inspect.signature(official.TTS.__init__).parameters
    mine = inspect.signature(ours.TTS.__init__).parameters
    assert [name for name in theirs if name not in mine] == []
    for name, param in theirs.items():
        assert mine[name].kind == param.kind, name
        assert mine[name].default == param.default, name
    for method in ("update_options", "synthesize", "stream", "prewarm", "aclose"):
        theirs = inspect.signature(getattr(official.TTS, method)).parameters
        mine = inspect.signature(getattr(ours.TTS, method)).parameters
        assert [n for n in theirs if n not in mine] == [], method
    assert ours.API_VERSION == official.tts.API_VERSION
    assert ours.TTSDefaultVoiceId == official.models.TTSDefaultVoiceId


def test_the_same_arguments_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    for plugin in (official, ours):
        with pytest.raises(ValueError, match="Cartesia API key is required"):
            plugin.TTS()
        with pytest.raises(ValueError, match="speed"):
            plugin.TTS(api_key=KEY, speed="fast")  # a named speed with sonic-3
        t = plugin.TTS(api_key=KEY)
        with pytest.raises(ValueError, match="speed"):
            t.update_options(speed="slow")
    monkeypatch.setenv("CARTESIA_API_KEY", KEY)
    t = ours.TTS()
    assert (t.label, t.model, t.provider, t.sample_rate) == (
        "livekit.plugins.cartesia.tts.TTS",
        "sonic-3",
        "Cartesia",
        24000,
    )
    assert t.capabilities.streaming and t.capabilities.aligned_transcript
    assert not ours.TTS(word_timestamps=False).capabilities.aligned_transcript
    assert ours.TTS(language="en-US").options.language == "en"  # as LanguageCode(...).language
    assert ours.TTS(emotion=["Calm", "Happy"]).options.emotion == "Calm"  # the first, as sent


STRICTER: list[dict[str, Any]] = [
    {"sample_rate": 12345},
    {"encoding": "pcm_f32le"},
    {"voice": [0.1, 0.2, 0.3]},
    {"speed": 5.0},
    {"volume": 0.1},
    {"emotion": "Sleepy"},
    {"language": "xx"},
    {"model": "sonic-2", "speed": 1.2},
    {"model": "gpt-4o"},
    {"api_version": "latest"},
    {"base_url": "ftp://example.com"},
]


@pytest.mark.parametrize("bad", STRICTER, ids=lambda kw: "+".join(kw))
def test_what_the_official_plugin_sends_anyway_is_refused_up_front(bad: dict[str, Any]) -> None:
    """The official plugin takes these (logging a warning at most) and fails, or speaks
    something else, at the first utterance; ours raises ``ValueError`` at once."""
    official.TTS(api_key=KEY, **bad)
    with pytest.raises(ValueError):
        ours.TTS(api_key=KEY, **bad)
    if set(bad) <= {"voice", "speed", "volume", "emotion", "language", "api_version"}:
        t = ours.TTS(api_key=KEY)
        with pytest.raises(ValueError):
            t.update_options(**bad)
        assert t.options == ours.TTS(api_key=KEY).options  # nothing changed


def test_no_key_is_needed_off_cartesias_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    assert ours.TTS(base_url="http://127.0.0.1:9").provider == "Cartesia"
    with pytest.raises(ValueError, match="API key"):
        ours.TTS(base_url="https://api.cartesia.ai/")
    assert ours.ws_endpoint("https://api.cartesia.ai/") == "wss://api.cartesia.ai/tts/websocket"
    assert ours.ws_endpoint("http://127.0.0.1:9") == "ws://127.0.0.1:9/tts/websocket"


# -- the word texts ------------------------------------------------------------------------------


def test_word_aligner_matches_words_back_to_the_text_sent() -> None:
    a = ours.WordAligner()
    a.sent("Hello there, my friend. ")
    got = [a.word(w) for w in ("Hello", "there,", "my", "friend.")]
    a.sent("How are you? ")  # sent after its predecessor's words were timed
    got += [a.word(w) for w in ("How", "are", "you?")]
    assert got == ["Hello", " there,", " my", " friend.", " How", " are", " you?"]
    # A word Cartesia normalised: matching stops for the rest of the stream.
    b = ours.WordAligner()
    b.sent("I have 20 apples. ")
    assert [b.word(w) for w in ("I", "have", "twenty", "apples.")] == [
        "I",
        " have",
        "twenty ",
        "apples. ",
    ]
