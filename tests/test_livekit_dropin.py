"""The LiveKit plugins are drop-ins: an agent that changes only its import, from
``livekit.plugins.inworld`` to ``bridges.livekit`` (``livekit.plugins.rime`` to
``bridges.livekit_rime``), keeps working with the same audio, word timings, metrics and
errors.

Each scenario is one function, written against the official plugin's API, run twice against
the same local server (in a thread, tone audio: deterministic to the byte): once with the
official plugin (PyPI, unmodified) and once with ours, both constructed with the identical
arguments. The two runs' records must be equal: every frame (rate, length, bytes, which one is
final), the seconds of audio, the timed words and the frame each rides on, the metrics
(everything but clocks and random ids), ``label``/``model``/``provider``, and the voice list.
Errors: ours is an instance of the official plugin's error class (an ``except`` written for
the official plugin catches it); where ours is a subclass (``APIStatusError`` with the HTTP
status instead of a bare ``APIError``) or another ``APIError`` (a refused key), the test pins
the difference the README lists.

The local Rime server accepts any speaker (a name it does not know gets a voice of its own),
so Rime's failures are a refused key and Rime's ``error`` frame instead of a bad voice.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    tts,
)
from livekit.agents.metrics import TTSMetrics
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.plugins import inworld as official_inworld
from livekit.plugins import rime as official_rime
from test_livekit_plugin import ServerThread, run
from test_livekit_rime import RecordingTone

from bridges import livekit as our_inworld
from bridges import livekit_rime as our_rime
from trio_tts.server import ContextErrorFault, ServerConfig, tone_speech

KEY = "local-key"
RATE = 24000
TEXT = "Hello there, my friend. How are you doing today? I am fine."
# As an LLM streams tokens: the cuts fall inside words and sentences.
PIECES = (TEXT[:9], TEXT[9:30], TEXT[30:])
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5)
#: What TTSMetrics carries that is a clock reading or a random id (differs run to run).
VOLATILE = {"timestamp", "request_id", "ttfb", "duration", "segment_id", "speech_id"}


@pytest.fixture(scope="module")
def synth() -> RecordingTone:
    return RecordingTone()


@pytest.fixture(scope="module")
def srv(synth: RecordingTone) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(synthesizer=synth, api_key=KEY)).running() as s:
        yield s


def twice(
    agent: Callable[[ModuleType], Any], synth: RecordingTone, official: ModuleType, ours: ModuleType
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``agent`` run with each plugin, the server's record of syntheses cleared before each."""
    records = []
    for plugin in (official, ours):
        synth.clear()
        records.append(run(lambda plugin=plugin: agent(plugin)))
    return records[0], records[1]


def spoken(synth: RecordingTone) -> list[tuple[str, str]]:
    """What the server synthesised so far (the local voice and text of every generation, in
    order). Taken before the failures: how much of an utterance the server still speaks
    after its error frame is a race."""
    return list(synth.spoken)


# -- what one run observed ---------------------------------------------------------------------


def observed(frames: list[tts.SynthesizedAudio]) -> dict[str, Any]:
    """Everything a LiveKit user can see of one utterance's frames, minus random ids."""
    return {
        "frames": [
            (f.frame.sample_rate, f.frame.num_channels, f.frame.samples_per_channel, f.is_final)
            for f in frames
        ],
        "pcm": b"".join(bytes(f.frame.data) for f in frames),
        "seconds": round(sum(f.frame.duration for f in frames), 6),
        "segments": len({f.segment_id for f in frames}),
        "requests": len({f.request_id for f in frames}),
        "words": [
            (n, str(w), round(w.start_time, 6), round(w.end_time, 6))
            for n, f in enumerate(frames)
            for w in (f.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT) or [])
        ],
    }


def metrics_of(metrics: list[TTSMetrics]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude=VOLATILE) for m in metrics]


def identity(t: tts.TTS) -> dict[str, Any]:
    return {
        "label": t.label,
        "model": t.model,
        "provider": t.provider,
        "capabilities": t.capabilities,
        "sample_rate": t.sample_rate,
        "num_channels": t.num_channels,
        "metrics_metadata": t.metrics_metadata,
    }


async def stream(t: tts.TTS, *pieces: str, **kw: Any) -> dict[str, Any]:
    async with t.stream(**kw) as s:
        for piece in pieces:
            s.push_text(piece)
        s.flush()
        s.end_input()
        return observed([frame async for frame in s])


async def synthesize(t: tts.TTS, text: str, **kw: Any) -> dict[str, Any]:
    async with t.synthesize(text, **kw) as s:
        return observed([frame async for frame in s])


async def heard(synth: RecordingTone, utterance: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """The utterance's record plus the texts the server synthesised for it: its
    generations."""
    before = len(synth.spoken)
    record = await utterance
    record["generations"] = [text for _, text in list(synth.spoken)[before:]]
    return record


def timeline(generations: list[str], rate: int, *, follow_audio: bool) -> list[Any]:
    """The words of consecutive generations with the server's timings (each generation's
    restart at 0), offset by the generations before: by their audio's length (where the words
    are in the audio), or by their last word's end (the official plugin's reckoning)."""
    words: list[tuple[str, float, float]] = []
    offset = 0.0
    for text in generations:
        speech = tone_speech(text, rate)
        words += [(w, start + offset, end + offset) for w, start, end in speech.words]
        offset += len(speech.pcm) / 2 / rate if follow_audio else speech.words[-1][2]
    return words


def flat(words: list[tuple[str, float, float]]) -> list[float]:
    return [t for _, start, end in words for t in (start, end)]


async def failure(call: Callable[[], Any]) -> APIError:
    with pytest.raises(APIError) as info:
        await call()
    return info.value


class Watch:
    """The ``metrics_collected`` and ``error`` events of a TTS."""

    def __init__(self, t: tts.TTS) -> None:
        self.metrics: list[TTSMetrics] = []
        self.errors: list[tts.TTSError] = []
        t.on("metrics_collected", self.metrics.append)
        t.on("error", self.errors.append)


def assert_same(official: dict[str, Any], ours: dict[str, Any]) -> None:
    """Equal records, with the errors compared by class: ours is an official one."""
    assert official.keys() == ours.keys()
    for key, want in official.items():
        got = ours[key]
        if isinstance(want, BaseException):
            assert isinstance(got, type(want)), (key, got, want)
        elif key == "errors":
            assert len(got) == len(want), key
            for (g_type, g_rec, g_label), (w_type, w_rec, w_label) in zip(got, want, strict=True):
                assert issubclass(g_type, w_type) and (g_rec, g_label) == (w_rec, w_label)
        else:
            assert got == want, key


# -- Inworld -----------------------------------------------------------------------------------


def inworld_args(s: ServerThread, session: aiohttp.ClientSession, **kw: Any) -> dict[str, Any]:
    """The official plugin's arguments for the local server: the roots, as it takes them."""
    base = s.server.base_url
    return {
        "api_key": KEY,
        "ws_url": base.replace("http://", "ws://", 1) + "/",
        "base_url": base + "/",
        "voice": "Dennis",
        "sample_rate": RATE,
        "timestamp_type": "WORD",
        "http_session": session,
        **kw,
    }


async def inworld_agent(
    plugin: ModuleType, s: ServerThread, synth: RecordingTone, model: str
) -> dict[str, Any]:
    """One agent's use of Inworld's plugin, start to end, with ``plugin`` imported."""
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        # A low threshold: the server cuts the text into several generations, where the
        # pieces it got allow (sentences from the tokenizer, or raw pieces for tts-2).
        t = plugin.TTS(**inworld_args(s, session, model=model, buffer_char_threshold=20))
        watch = Watch(t)
        out["identity"] = identity(t)
        out["synthesize"] = await heard(synth, synthesize(t, TEXT))
        out["stream"] = await heard(synth, stream(t, *PIECES))
        out["voices"] = await t.list_voices(language="en")
        t.update_options(voice="Ashley", sample_rate=16000, speaking_rate=1.2)
        out["updated"] = identity(t)
        out["updated stream"] = await heard(synth, stream(t, TEXT))
        out["updated synthesize"] = await heard(synth, synthesize(t, TEXT))
        out["spoken"] = spoken(synth)
        t.update_options(voice="NoSuchVoice")
        out["bad voice stream"] = await failure(lambda: stream(t, TEXT, conn_options=NO_RETRY))
        out["bad voice synthesize"] = await failure(
            lambda: synthesize(t, TEXT, conn_options=NO_RETRY)
        )
        out["metrics"] = metrics_of(watch.metrics)
        out["errors"] = [(type(e.error), e.recoverable, e.label) for e in watch.errors]
        await t.aclose()
    return out


@pytest.mark.parametrize("model", ["inworld-tts-1.5-max", "inworld-tts-2"])
def test_inworld_agent_sees_the_same_with_either_import(
    srv: ServerThread, synth: RecordingTone, model: str
) -> None:
    """``inworld-tts-2``: both forward the pushed pieces as they come and the server cuts
    the sentences (``autoModeStrategy: SENTENCE_BOUNDARY``)."""
    official, ours = twice(
        lambda plugin: inworld_agent(plugin, srv, synth, model),
        synth,
        official_inworld,
        our_inworld,
    )
    assert {voice for voice, _ in official["spoken"]} == {"Dennis", "Ashley"}
    assert len(official["stream"]["generations"]) > 1
    # Word timings: the same words on the same frames. Across generations ours follow the
    # audio; the official plugin's run early by each earlier generation's trailing silence
    # (the README lists it). Within one generation they are equal.
    for key in ("synthesize", "stream", "updated stream", "updated synthesize"):
        rate = official[key]["frames"][0][0]
        for record, follow_audio in ((official[key], False), (ours[key], True)):
            want = timeline(record["generations"], rate, follow_audio=follow_audio)
            got = [(w, start, end) for _, w, start, end in record["words"]]
            assert [w for w, _, _ in got] == [w for w, _, _ in want], key
            # The server rounds its timings to 0.1 ms.
            assert flat(got) == pytest.approx(flat(want), abs=1e-4), key
            record["words"] = [(n, w) for n, w, _, _ in record["words"]]
    if model == "inworld-tts-2":  # "friend. " ends in a space: a silent tail
        gens = official["stream"]["generations"]
        assert timeline(gens, RATE, follow_audio=True) != timeline(gens, RATE, follow_audio=False)
    assert official["stream"]["words"] and official["synthesize"]["words"]
    assert official["updated stream"]["frames"][0][0] == 16000
    assert official["voices"] and len(official["metrics"]) == 4
    assert_same(official, ours)
    # Where ours is a subclass: the HTTP status, and a bad voice is not retried.
    error = ours["bad voice stream"]
    assert type(official["bad voice stream"]) is APIError
    assert isinstance(error, APIStatusError) and error.status_code == 400
    assert not error.retryable


def test_inworld_refused_key_is_a_typed_final_error(srv: ServerThread) -> None:
    """The documented difference: the official plugin reports a refused handshake as a
    retryable ``APIConnectionError``; ours as ``APIStatusError(401)``, not retried. Both are
    ``APIError``s (what the framework and ``FallbackAdapter`` catch)."""

    async def agent(plugin: ModuleType) -> list[APIError]:
        async with aiohttp.ClientSession() as session:
            t = plugin.TTS(**inworld_args(srv, session, api_key="wrong"))
            errors = [
                await failure(lambda: stream(t, TEXT, conn_options=NO_RETRY)),
                await failure(lambda: synthesize(t, TEXT, conn_options=NO_RETRY)),
            ]
            await t.aclose()
            return errors

    official = run(lambda: agent(official_inworld))
    ours = run(lambda: agent(our_inworld))
    assert [type(e) for e in official] == [APIConnectionError, APIStatusError]
    assert [type(e) for e in ours] == [APIStatusError, APIStatusError]
    assert [getattr(e, "status_code", None) for e in ours] == [401, 401]
    assert [e.retryable for e in official] == [True, False]
    assert [e.retryable for e in ours] == [False, False]


# -- Rime --------------------------------------------------------------------------------------


def rime_args(base_url: str, session: aiohttp.ClientSession, **kw: Any) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_key": KEY,
        "model": "arcana",
        "speaker": "astra",
        "sample_rate": RATE,
        "http_session": session,
        **kw,
    }


async def rime_agent(plugin: ModuleType, s: ServerThread, synth: RecordingTone) -> dict[str, Any]:
    """One agent's use of Rime's plugin: streaming over ``/ws3`` and one-shot HTTP."""
    out: dict[str, Any] = {}
    ws_root = s.server.rime_url.removesuffix("/ws3")
    async with aiohttp.ClientSession() as session:
        t = plugin.TTS(**rime_args(ws_root, session))
        h = plugin.TTS(**rime_args(s.server.rime_http_url, session))
        watch, http_watch = Watch(t), Watch(h)
        out["identity"] = identity(t)
        out["http identity"] = identity(h)
        out["stream"] = await stream(t, *PIECES)
        out["synthesize"] = await synthesize(h, TEXT)
        for x in (t, h):
            x.update_options(speaker="celeste", sample_rate=16000, time_scale_factor=1.1)
        out["updated"] = identity(t)
        out["updated stream"] = await stream(t, TEXT)
        out["updated synthesize"] = await synthesize(h, TEXT)
        out["spoken"] = spoken(synth)
        s.set_faults(context_error=ContextErrorFault(lambda index, cid: True, 13, "busy"))
        try:
            out["error frame"] = await failure(lambda: stream(t, TEXT, conn_options=NO_RETRY))
        finally:
            s.set_faults(context_error=None)
        out["metrics"] = metrics_of(watch.metrics)
        out["http metrics"] = metrics_of(http_watch.metrics)
        out["errors"] = [(type(e.error), e.recoverable, e.label) for e in watch.errors]
        await t.aclose()
        await h.aclose()
        wrong = plugin.TTS(**rime_args(ws_root, session, api_key="wrong"))
        out["refused key stream"] = await failure(
            lambda: stream(wrong, TEXT, conn_options=NO_RETRY)
        )
        await wrong.aclose()
        wrong = plugin.TTS(**rime_args(s.server.rime_http_url, session, api_key="wrong"))
        out["refused key synthesize"] = await failure(
            lambda: synthesize(wrong, TEXT, conn_options=NO_RETRY)
        )
        await wrong.aclose()
    return out


def test_rime_agent_sees_the_same_with_either_import(
    srv: ServerThread, synth: RecordingTone
) -> None:
    official, ours = twice(
        lambda plugin: rime_agent(plugin, srv, synth), synth, official_rime, our_rime
    )
    assert {voice for voice, _ in official["spoken"]} == {"Ashley", "Olivia"}
    assert official["stream"]["words"]
    assert official["updated stream"]["frames"][0][0] == 16000
    assert len(official["metrics"]) == 2 and len(official["http metrics"]) == 2
    assert_same(official, ours)
    for key in ("refused key stream", "refused key synthesize"):
        assert type(official[key]) is type(ours[key]) is APIStatusError
        assert ours[key].status_code == official[key].status_code == 401
    error = ours["error frame"]
    assert type(official["error frame"]) is APIError
    assert isinstance(error, APIStatusError) and error.status_code == 500 and error.retryable


# -- the constructors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("official", "ours"),
    [(official_inworld.TTS, our_inworld.TTS), (official_rime.TTS, our_rime.TTS)],
    ids=["inworld", "rime"],
)
def test_every_official_argument_is_accepted(official: type, ours: type) -> None:
    theirs = inspect.signature(official.__init__).parameters
    mine = inspect.signature(ours.__init__).parameters
    missing = [name for name in theirs if name not in mine]
    assert missing == []
    for name, param in theirs.items():
        assert mine[name].kind == param.kind, name
    for method in ("update_options", "synthesize", "stream", "prewarm", "aclose"):
        theirs = inspect.signature(getattr(official, method)).parameters
        mine = inspect.signature(getattr(ours, method)).parameters
        assert [n for n in theirs if n not in mine] == [], method


INWORLD_REFUSED: list[dict[str, Any]] = [
    {"encoding": "WAV"},
    {"timestamp_type": "WORDS"},
    {"text_normalization": "MAYBE"},
    {"delivery_mode": "LOUD"},
    {"timestamp_transport_strategy": "LATER"},
]
RIME_REFUSED: list[dict[str, Any]] = [
    {"model": "mistv2", "time_scale_factor": 1.1},
    {"audio_format": "pcm"},  # v1 only
    {"base_url": "wss://example.com"},  # credentials to an untrusted host
]


@pytest.mark.parametrize("bad", INWORLD_REFUSED, ids=lambda kw: next(iter(kw)))
def test_inworld_refuses_what_the_official_plugin_refuses(bad: dict[str, Any]) -> None:
    for plugin in (official_inworld, our_inworld):
        with pytest.raises(ValueError):
            plugin.TTS(api_key=KEY, **bad)
        t = plugin.TTS(api_key=KEY)
        with pytest.raises(ValueError):
            t.update_options(**bad)


@pytest.mark.parametrize("bad", RIME_REFUSED, ids=lambda kw: "+".join(kw))
def test_rime_refuses_what_the_official_plugin_refuses(bad: dict[str, Any]) -> None:
    for plugin in (official_rime, our_rime):
        with pytest.raises(ValueError):
            plugin.TTS(api_key=KEY, **bad)
    t = our_rime.TTS(api_key=KEY)
    with pytest.raises(ValueError, match="only supported with the Rime v1"):
        t.update_options(audio_format="pcm")


def test_rime_v1_websocket_is_refused_at_construction() -> None:
    """The one argument of the official plugin that does not work here: Rime's v1
    WebSocket. Refused at once, with what to use instead (listed in the README)."""
    v1 = {"websocket_url": "wss://users-ws.rime.ai/v1/ws", "model": "arcana"}
    assert official_rime.TTS(api_key=KEY, **v1).capabilities.streaming
    with pytest.raises(ValueError, match=r"websocket_url .* not supported.*/ws3"):
        our_rime.TTS(api_key=KEY, **v1)
    with pytest.raises(ValueError, match="websocket_url"):
        our_rime.TTS(api_key=KEY).update_options(websocket_url=v1["websocket_url"])


def test_inworld_ws_url_is_the_root_or_the_full_endpoint() -> None:
    """``ws_url`` as the official plugin takes it (the root) or as trio_tts's provider takes
    it (the endpoint): the same connection URL."""
    endpoint = "ws://127.0.0.1:9/tts/v1/voice:streamBidirectional"
    for given in ("ws://127.0.0.1:9/", "ws://127.0.0.1:9", endpoint):
        assert our_inworld.ws_endpoint(given) == endpoint
    assert our_inworld.ws_endpoint(our_inworld.DEFAULT_WS_URL) == (
        "wss://api.inworld.ai/tts/v1/voice:streamBidirectional"
    )
    assert our_inworld.DEFAULT_WS_URL == official_inworld.tts.DEFAULT_WS_URL
    assert our_inworld.DEFAULT_URL == official_inworld.tts.DEFAULT_URL
