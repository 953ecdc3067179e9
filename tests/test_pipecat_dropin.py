"""The pipecat services are drop-ins: a pipeline that changes only its import, from
``pipecat.services.inworld.tts`` / ``pipecat.services.rime.tts`` to ``bridges.pipecat``, keeps
the same frames, audio and word timings, errors and metrics; and every service of the process
draws from one shared pool.

Each comparison runs the same pipeline through pipecat's own test harness
(``pipecat.tests.utils.run_test``) twice against the same local server (in a thread, tone
audio: deterministic to the byte): once with pipecat's service (PyPI, unmodified; the HTTP
services' fixed URL pointed at the local server) and once with ours, constructed with the
same arguments. What the two runs see downstream must be equal: the sequence of frame types
(consecutive audio frames counted as one run where the HTTP transport decides their sizes),
each context's audio, its words and their timings (milliseconds after the context's first
word), and the errors pushed upstream. Where they differ on purpose, the test pins how.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import aiohttp
import pipecat.services.inworld.tts as pipecat_inworld
import pipecat.services.rime.tts as pipecat_rime
import pytest
import trio
from pipecat.frames.frames import (
    EndWorkerFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test
from pipecat.utils.errors import ErrorCategory
from test_livekit_plugin import ServerThread
from test_livekit_rime import RecordingTone

import trio_tts
from bridges import asyncio_adapter
from bridges import pipecat as ours
from bridges._shared_pools import shared_pool_count
from trio_tts.server import PaceAudio, ServerConfig, tone_pcm, tone_speech
from trio_tts.testing import assert_quiescent, first

KEY = "local-key"
RATE = 24000
TEXT = "Hello there, my friend. How are you doing today? I am fine."
# As an LLM streams tokens: the cuts fall inside words and sentences.
TOKENS = (TEXT[:9], TEXT[9:30], TEXT[30:])
# Past the server's 250-character buffer: spoken in two generations.
LONG = " ".join(f"Sentence number {n} is being spoken right now." for n in range(8))
NEXT = "This comes next."
#: Frames whose place among the others depends on when audio arrives.
RACING = ("TTSAudioRawFrame", "AggregatedTextFrame")


@pytest.fixture(scope="module")
def synth() -> RecordingTone:
    return RecordingTone()


@pytest.fixture(scope="module")
def srv(synth: RecordingTone) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(synthesizer=synth, api_key=KEY)).running() as s:
        yield s


def run(main: Callable[[], Awaitable[Any]], *, limit: float = 60) -> Any:
    """``main()`` on a fresh asyncio loop; afterwards every shared pool is closed and the
    trio guest run has finished."""

    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            result = await main()
        assert shared_pool_count() == 0  # every service stopped: its shared pool closed too
        assert not asyncio_adapter._ENGINES
        assert not trio.lowlevel.in_trio_run()
        return result

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(bounded())


def turn(*pieces: str) -> list[Frame]:
    """One LLM reply, streamed as ``pieces``."""
    return [LLMFullResponseStartFrame(), *map(LLMTextFrame, pieces), LLMFullResponseEndFrame()]


async def pipeline(
    service: FrameProcessor, frames: Sequence[Frame], **params: Any
) -> tuple[Sequence[Frame], Sequence[Frame]]:
    """pipecat's harness: ``frames`` through ``service``, the frames it let out (down, up)."""
    return await run_test(
        service, frames_to_send=frames, pipeline_params=PipelineParams(**params)
    )


def observed(
    down: Sequence[Frame], up: Sequence[Frame], *, collapse_audio: bool = False
) -> dict[str, Any]:
    """What a pipecat user sees of a run, without clocks and random ids."""
    types = [type(f).__name__ for f in down if not isinstance(f, MetricsFrame)]
    if collapse_audio:
        types = [name for name, _ in itertools.groupby(types)]
    contexts = list(dict.fromkeys(f.context_id for f in down if isinstance(f, TTSStartedFrame)))
    audio = {c: b"" for c in contexts}
    words: list[tuple[int, str, int]] = []
    first_pts: dict[str, int] = {}
    for f in down:
        if isinstance(f, TTSAudioRawFrame):
            assert f.context_id in audio and f.sample_rate == RATE and f.num_channels == 1
            audio[f.context_id] += f.audio
        elif isinstance(f, TTSTextFrame) and f.pts is not None and f.context_id in audio:
            base = first_pts.setdefault(f.context_id, f.pts)
            words.append((contexts.index(f.context_id), f.text, round((f.pts - base) / 1e6)))
    return {
        "types": types,
        "audio": [audio[c] for c in contexts],
        "words": words,
        "texts": [f.text for f in down if isinstance(f, TTSTextFrame)],
        "errors": [f.error for f in up if isinstance(f, ErrorFrame)],
    }


def seconds(audio: list[bytes]) -> float:
    return sum(len(a) for a in audio) / 2 / RATE


def assert_same(theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    """Same frames, same audio (±2 %, and here to the byte), same words and timings."""
    assert mine["types"] == theirs["types"]
    assert seconds(mine["audio"]) == pytest.approx(seconds(theirs["audio"]), rel=0.02)
    assert mine["audio"] == theirs["audio"]
    assert mine["words"] == theirs["words"]
    assert mine["texts"] == theirs["texts"]
    assert mine["errors"] == theirs["errors"]


# -- the same pipeline, pipecat's service and ours ---------------------------------------------

SCENARIO = [*turn(*TOKENS), TTSSpeakFrame("Spoken on its own."), *turn("Bye now.")]


def test_inworld_websocket_service_matches_pipecats(srv: ServerThread) -> None:
    def make(module: Any) -> Any:
        return module.InworldTTSService(
            api_key=KEY,
            url=srv.server.ws_url,
            sample_rate=RATE,
            settings=module.InworldTTSService.Settings(voice="Ashley"),
        )

    theirs = observed(*run(lambda: pipeline(make(pipecat_inworld), SCENARIO)))
    mine_service = make(ours)
    assert isinstance(mine_service, pipecat_inworld.InworldTTSService)
    mine = observed(*run(lambda: pipeline(mine_service, SCENARIO)))
    assert_same(theirs, mine)
    assert len(mine["audio"]) == 3 and all(mine["audio"])
    assert [w for _, w, _ in mine["words"]][:5] == ["Hello", "there,", "my", "friend.", "How"]


def test_inworld_words_of_later_generations_follow_the_audio(
    srv: ServerThread, synth: RecordingTone
) -> None:
    """A turn past the server's 250-character buffer is spoken in two generations: the same
    frames and audio, and the same words; the second generation's words are offset by the
    first's audio (pipecat's: by its last word's end, early by its trailing silence)."""
    reply = turn(LONG[:100], LONG[100:])

    def make(module: Any) -> Any:
        return module.InworldTTSService(api_key=KEY, url=srv.server.ws_url, sample_rate=RATE)

    synth.clear()
    theirs = observed(*run(lambda: pipeline(make(pipecat_inworld), reply)))
    mine = observed(*run(lambda: pipeline(make(ours), reply)))
    first_text, second_text = [text for _, text in synth.spoken][-2:]
    first, second = tone_speech(first_text, RATE), tone_speech(second_text, RATE)
    # The first generation's audio races the later sentences' announcements (in both): the
    # frames are compared without the audio and the announcements' places.
    for seen in (theirs, mine):
        seen["types"] = [t for t in seen["types"] if t not in RACING]
    assert_same({**theirs, "words": mine["words"]}, mine)
    n = len(first.words)
    assert mine["words"][:n] == theirs["words"][:n]
    later = [
        round((offset + start) * 1000)
        for offset in (first.duration, first.words[-1][2])
        for _, start, _ in second.words[:1]
    ]
    assert [mine["words"][n][2], theirs["words"][n][2]] == later
    assert later[0] > later[1]


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "whole"])
def test_inworld_http_service_matches_pipecats(srv: ServerThread, streaming: bool) -> None:
    async def theirs() -> Any:
        async with aiohttp.ClientSession() as session:
            service = pipecat_inworld.InworldHttpTTSService(
                api_key=KEY, aiohttp_session=session, sample_rate=RATE, streaming=streaming
            )
            path = "/tts/v1/voice:stream" if streaming else "/tts/v1/voice"
            service._base_url = srv.server.base_url + path  # pipecat's URL is fixed
            return await pipeline(service, SCENARIO)

    mine = ours.InworldHttpTTSService(
        api_key=KEY, base_url=srv.server.base_url, sample_rate=RATE, streaming=streaming
    )
    assert_same(observed(*run(theirs)), observed(*run(lambda: pipeline(mine, SCENARIO))))


def test_rime_websocket_service_matches_pipecats_but_times_words_by_the_audio(
    srv: ServerThread,
) -> None:
    def make(module: Any) -> Any:
        # segment=never: the server speaks at the end of the turn (as Inworld's here), so
        # where the sentences' announcements fall among the audio frames is not a race.
        return module.RimeTTSService(
            api_key=KEY,
            url=srv.server.rime_url,
            sample_rate=RATE,
            settings=module.RimeTTSService.Settings(voice="astra", segment="never"),
        )

    theirs = observed(*run(lambda: pipeline(make(pipecat_rime), SCENARIO)))
    mine = observed(*run(lambda: pipeline(make(ours), SCENARIO)))
    # The words' audio-aligned times: the Inworld service's on the same tone audio.
    inworld = ours.InworldTTSService(api_key=KEY, url=srv.server.ws_url, sample_rate=RATE)
    truth = observed(*run(lambda: pipeline(inworld, SCENARIO)))["words"]
    assert mine["words"] == truth
    # pipecat's adds each timestamps message's last end to the next one's times, so against
    # Rime's utterance-relative times (the local server's, LiveKit's reading) its words run
    # late; the word texts are the same.
    assert [w[:2] for w in theirs["words"]] == [w[:2] for w in mine["words"]]
    assert theirs["words"] != mine["words"] and theirs["words"][-1][2] > mine["words"][-1][2]
    assert_same({**theirs, "words": mine["words"]}, mine)


def test_rime_http_service_matches_pipecats(srv: ServerThread) -> None:
    async def theirs() -> Any:
        async with aiohttp.ClientSession() as session:
            service = pipecat_rime.RimeHttpTTSService(
                api_key=KEY,
                aiohttp_session=session,
                sample_rate=RATE,
                settings=pipecat_rime.RimeHttpTTSService.Settings(voice="astra"),
            )
            service._base_url = srv.server.rime_http_url  # pipecat's URL is fixed
            return await pipeline(service, SCENARIO)

    mine = ours.RimeHttpTTSService(
        api_key=KEY,
        url=srv.server.rime_http_url,
        sample_rate=RATE,
        settings=ours.RimeHttpTTSService.Settings(voice="astra"),
    )
    # The audio frames' sizes are the HTTP reads' (transport-dependent in both): compared
    # as runs, their bytes exactly.
    assert_same(
        observed(*run(theirs), collapse_audio=True),
        observed(*run(lambda: pipeline(mine, SCENARIO)), collapse_audio=True),
    )


def test_metrics_match_pipecats(srv: ServerThread) -> None:
    """TTFB and usage reported by the same processor name, for the same characters."""

    def metrics(down: Sequence[Frame]) -> list[tuple[str, str, str | None, Any]]:
        out = []
        for f in down:
            for d in f.data if isinstance(f, MetricsFrame) else ():
                if isinstance(d, TTFBMetricsData | TTSUsageMetricsData):
                    value = d.value if isinstance(d, TTSUsageMetricsData) else d.value > 0
                    name = d.processor.split("#")[0]  # without the instance number
                    out.append((type(d).__name__, name, d.model, value))
        return out

    def make(module: Any) -> Any:
        return module.InworldTTSService(api_key=KEY, url=srv.server.ws_url, sample_rate=RATE)

    params = {"enable_metrics": True, "enable_usage_metrics": True}
    theirs = metrics(run(lambda: pipeline(make(pipecat_inworld), SCENARIO, **params))[0])
    mine = metrics(run(lambda: pipeline(make(ours), SCENARIO, **params))[0])
    assert mine == theirs
    assert {m[0] for m in mine} == {"TTFBMetricsData", "TTSUsageMetricsData"}


# -- one pool for the process ------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["inworld", "rime"])
def test_forty_pipelines_share_twenty_connections(
    provider: str, synth: RecordingTone
) -> None:
    """40 concurrent calls, each its own pipeline and service: the server never sees more
    than 20 connections nor more than 5 contexts on one (Rime: 1), and every call hears
    its own audio, whole."""
    config = ServerConfig(synthesizer=synth, api_key=KEY)
    with ServerThread(config).running() as server:
        # Each utterance streams for a while, so the calls overlap.
        server.set_faults(pace_audio=PaceAudio(interval=0.02))

        def make() -> Any:
            if provider == "rime":
                return ours.RimeTTSService(
                    api_key=KEY,
                    url=server.server.rime_url,
                    sample_rate=RATE,
                    # One generation per turn: its audio is tone_pcm of the turn's text.
                    settings=ours.RimeTTSService.Settings(voice="astra", segment="never"),
                )
            return ours.InworldTTSService(api_key=KEY, url=server.server.ws_url, sample_rate=RATE)

        # What each service saw once set up: how many shared pools, and which one it holds.
        pools: list[tuple[int, int]] = []

        async def call(n: int) -> dict[str, Any]:
            service = make()

            @service.event_handler("on_connected")
            async def connected(service: Any) -> None:
                pools.append((shared_pool_count(), id(service.pool)))

            return observed(*await pipeline(service, turn(f"Caller {n} says hello. ", "Bye.")))

        async def main() -> list[dict[str, Any]]:
            return await asyncio.gather(*(call(n) for n in range(40)))

        synth.clear()
        results = run(main)
        stats = server.stats()
    assert len(pools) == 40 and {count for count, _ in pools} == {1}
    assert len({pool for _, pool in pools}) == 1  # one pool, shared by every service
    assert stats.violations == ()
    assert stats.peak_connections <= 20
    assert stats.peak_contexts_per_connection <= (1 if provider == "rime" else 5)
    assert stats.contexts_created == 40
    if provider == "inworld":
        assert stats.peak_contexts_per_connection > 1  # the calls shared connections
    spoken = [text for _, text in synth.spoken]
    for n, result in enumerate(results):
        assert result["errors"] == []
        (audio,) = result["audio"]
        (text,) = [t for t in spoken if t.startswith(f"Caller {n} says ")]
        assert audio == tone_pcm(text, RATE)


# -- interruptions -----------------------------------------------------------------------------


class Interrupter(FrameProcessor):
    """Downstream of the TTS: at the first audio of the first context, interrupts it (an
    InterruptionFrame upstream, as a user barging in); at the end of the next context, waits
    until the pool holds nothing (the server confirmed the interrupted context's close),
    then ends the pipeline."""

    def __init__(self, tts: Any) -> None:
        super().__init__()
        self.tts = tts
        self.interrupted: str | None = None
        self.after: trio_tts.PoolStatistics | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and self.interrupted is None:
            self.interrupted = frame.context_id
            await self.push_frame(InterruptionFrame(), FrameDirection.UPSTREAM)
        elif isinstance(frame, TTSStoppedFrame) and frame.context_id != self.interrupted:
            pool = self.tts.pool
            await pool.run(partial(assert_quiescent, pool.trio_pool, timeout=20))
            self.after = pool.statistics()
            await self.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)




@pytest.mark.parametrize("provider", ["inworld", "rime"])
def test_an_interruption_cancels_on_the_server_and_frees_the_slot(
    provider: str, synth: RecordingTone
) -> None:
    with ServerThread(ServerConfig(synthesizer=synth, api_key=KEY)).running() as server:
        # The first utterance streams slowly: the interruption lands in the middle of it.
        server.set_faults(pace_audio=PaceAudio(interval=0.02, when=first(1)))
        if provider == "rime":
            tts: Any = ours.RimeTTSService(
                api_key=KEY,
                url=server.server.rime_url,
                sample_rate=RATE,
                settings=ours.RimeTTSService.Settings(voice="astra", segment="never"),
            )
        else:
            tts = ours.InworldTTSService(api_key=KEY, url=server.server.ws_url, sample_rate=RATE)
        interrupter = Interrupter(tts)
        # Kept through the interruption (it waits behind the first speech).
        after = TTSSpeakFrame(NEXT)
        after.interruptible = False
        synth.clear()
        frames = [TTSSpeakFrame(LONG), after]
        down, up = run(
            lambda: run_test(
                Pipeline([tts, interrupter]), frames_to_send=frames, send_end_frame=False
            )
        )
        stats = server.stats()

    result = observed(down, up)
    assert result["errors"] == []
    assert interrupter.interrupted is not None
    cut, whole = result["audio"]
    full = tone_pcm(LONG + " ", RATE)
    assert cut and len(cut) < len(full) and full.startswith(cut)  # cut mid-utterance
    # Not one byte of the interrupted context in the next one.
    assert whole == tone_pcm(next(t for _, t in synth.spoken if NEXT in t), RATE)
    started = [i for i, f in enumerate(down) if isinstance(f, TTSStartedFrame)][1]
    assert all(
        f.context_id != interrupter.interrupted
        for f in down[started:]
        if isinstance(f, TTSAudioRawFrame)
    )
    # The slot came back (Inworld's server confirms the close once it drained the
    # context, Rime's at once); every event of the cancelled context after that was dropped.
    assert interrupter.after is not None
    assert interrupter.after.contexts_in_use == 0 and interrupter.after.contexts_closing == 0
    assert interrupter.after.contexts_opened == 2 and interrupter.after.stray_events == 0
    assert stats.contexts_created == 2 and stats.contexts_open == 0 and stats.violations == ()


# -- settings and bad input --------------------------------------------------------------------


def test_update_settings_applies_to_the_next_context_and_bad_values_are_an_error_frame(
    srv: ServerThread, synth: RecordingTone
) -> None:
    settings = ours.InworldTTSService.Settings
    tts = ours.InworldTTSService(api_key=KEY, url=srv.server.ws_url, sample_rate=RATE)
    frames = [
        TTSSpeakFrame("First."),
        TTSUpdateSettingsFrame(delta=settings(voice="Olivia")),
        TTSSpeakFrame("Second."),
        TTSUpdateSettingsFrame(delta=settings(speaking_rate=3.0)),  # outside 0.5-1.5
        TTSSpeakFrame("Third."),
    ]
    synth.clear()
    down, up = run(lambda: pipeline(tts, frames))
    assert [voice for voice, _ in synth.spoken] == ["Ashley", "Olivia", "Olivia"]
    (error,) = [f for f in up if isinstance(f, ErrorFrame)]
    assert "settings not applied" in error.error and "speaking_rate" in error.error
    assert error.category is ErrorCategory.APPLICATION  # the service stays usable
    assert len(observed(down, up)["audio"]) == 3


def test_an_unknown_voice_is_an_error_frame_and_the_pipeline_goes_on(
    srv: ServerThread,
) -> None:
    settings = ours.InworldTTSService.Settings
    tts = ours.InworldTTSService(
        api_key=KEY, url=srv.server.ws_url, sample_rate=RATE, settings=settings(voice="Nobody")
    )
    frames = [
        TTSSpeakFrame("Hello there."),
        TTSUpdateSettingsFrame(delta=settings(voice="Ashley")),
        TTSSpeakFrame("Second one."),
    ]
    down, up = run(lambda: pipeline(tts, frames))
    result = observed(down, up)
    assert result["errors"][0] == "Inworld API error: Unknown voice: Nobody"  # as pipecat's
    assert [bool(a) for a in result["audio"]] == [False, True]
    # Unlike pipecat's, the failed context ends at once (pipecat's waits out its 3 s
    # stop-frame timeout and never sends its TTSStoppedFrame).
    assert result["types"].count("TTSStoppedFrame") == 2


def test_a_refused_key_is_an_error_frame_as_pipecats(srv: ServerThread) -> None:
    def make(module: Any) -> Any:
        return module.InworldTTSService(api_key="wrong", url=srv.server.ws_url, sample_rate=RATE)

    def seen(result: tuple[Sequence[Frame], Sequence[Frame]]) -> tuple[Any, ...]:
        down, up = result
        errors = [f for f in up if isinstance(f, ErrorFrame)]
        return observed(down, up)["types"], [(e.category, "401" in e.error) for e in errors]

    frames = [TTSSpeakFrame("Hello there."), *turn("Anyone?")]
    theirs = seen(run(lambda: pipeline(make(pipecat_inworld), frames)))
    assert seen(run(lambda: pipeline(make(ours), frames))) == theirs
    assert theirs[1] == [(ErrorCategory.AUTHENTICATION, True)]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ours.InworldTTSService(api_key=""), "api_key"),
        (lambda: ours.InworldTTSService(api_key=KEY, url="ftp://x/"), "url"),
        (lambda: ours.InworldTTSService(api_key=KEY, encoding="MP3"), "encoding"),
        (lambda: ours.InworldTTSService(api_key=KEY, sample_rate=12345), "sample_rate"),
        (
            lambda: ours.InworldTTSService(
                api_key=KEY, settings=ours.InworldTTSService.Settings(speaking_rate=2.5)
            ),
            "speaking_rate",
        ),
        (lambda: ours.InworldTTSService(api_key=KEY, apply_text_normalization="X"), "normal"),
        (lambda: ours.InworldTTSService(api_key=KEY, max_connections=0), "max_connections"),
        (lambda: ours.InworldTTSService(api_key=KEY, pool_settings={"nope": 1}), "nope"),
        (lambda: ours.InworldHttpTTSService(api_key=KEY, base_url="ws://x"), "base_url"),
        (lambda: ours.RimeTTSService(api_key=KEY), "voice"),
        (
            lambda: ours.RimeTTSService(
                api_key=KEY, settings=ours.RimeTTSService.Settings(voice="astra", top_p=3.0)
            ),
            "top_p",
        ),
        (
            lambda: ours.RimeTTSService(
                api_key=KEY,
                settings=ours.RimeTTSService.Settings(
                    voice="cove", model="mistv2", noTextNormalization=True
                ),
            ),
            "noTextNormalization",
        ),
        (lambda: ours.RimeHttpTTSService(api_key=KEY, url="ftp://x"), "url"),
    ],
)
def test_invalid_options_raise_at_construction(make: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()

