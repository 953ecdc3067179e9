"""The LiveKit plugin with real livekit-agents classes against the local server (tone audio).

No LiveKit class is mocked: ``TTS.stream()`` / ``synthesize()`` run the framework's own
``SynthesizeStream``/``ChunkedStream`` machinery (retries, ``AudioEmitter`` framing, error
events) and ``FallbackAdapter``. Each test runs its own loop with an absolute timeout; the
servers run in threads with their own ``trio.run``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import uvloop
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tts,
)
from livekit.agents.tts import FallbackAdapter
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT

from bridges import asyncio_adapter, livekit
from bridges._livekit_common import Watchdog
from trio_tts.server import (
    ContextErrorFault,
    DropConnection,
    LocalServer,
    RejectHandshake,
    ServerConfig,
    open_server,
    tone_pcm,
    tone_speech,
)

RATE = 24000
TEXT = "Hello there, my friend. How are you doing today? I am fine."
LONG = " ".join(f"Sentence number {i} is being spoken right now." for i in range(30))
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5)


class ServerThread:
    """A local server in its own thread and trio run; faults are changed in that thread."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self._config = config or ServerConfig(synthesizer="tone")
        self._ready = threading.Event()
        self.server: LocalServer
        self._token: trio.lowlevel.TrioToken
        self._stop: trio.Event

    async def _main(self) -> None:
        async with open_server(self._config) as server:
            self.server = server
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def set_faults(self, **faults: Any) -> None:
        trio.from_thread.run_sync(lambda: self.server.set_faults(**faults), trio_token=self._token)

    def stats(self) -> Any:
        return trio.from_thread.run_sync(self.server.statistics, trio_token=self._token)

    def idle_stats(self, timeout: float = 10) -> Any:
        """The statistics once the server holds no connection (at most ``timeout`` s)."""

        async def wait() -> None:
            with trio.fail_after(timeout):
                await self.server.wait_idle()

        trio.from_thread.run(wait, trio_token=self._token)
        return self.stats()

    @contextmanager
    def running(self) -> Iterator[ServerThread]:
        thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        thread.start()
        assert self._ready.wait(10)
        try:
            yield self
        finally:
            self._token.run_sync_soon(self._stop.set)
            thread.join(10)


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread().running() as s:
        yield s


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,  # explicit: trio_asyncio's import swaps the policy
    "uvloop": uvloop.new_event_loop,
}


def run(main: Callable[[], Awaitable[Any]], runner: str = "asyncio", *, limit: float = 30) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            result = await main()
        assert livekit.shared_pool_count() == 0  # every TTS closed: its shared pool closed too
        assert not asyncio_adapter._ENGINES
        assert not trio.lowlevel.in_trio_run()
        return result

    with asyncio.Runner(loop_factory=LOOPS[runner]) as loop_runner:
        return loop_runner.run(bounded())


def make_tts(s: ServerThread, **kw: Any) -> livekit.TTS:
    return livekit.TTS(ws_url=s.server.ws_url, **kw)


def pcm_of(frames: list[tts.SynthesizedAudio]) -> bytes:
    return b"".join(bytes(f.frame.data) for f in frames)


def assert_speech(data: bytes, text: str, rate: int = RATE) -> None:
    """``data`` is ``text``'s audio, plus at most LiveKit's 10 ms end-of-segment marker."""
    want = tone_pcm(text, rate)
    assert data[: len(want)] == want
    assert len(data) - len(want) <= rate // 100 * 2 and not any(data[len(want) :])


async def speak(t: livekit.TTS, *pieces: str, **kw: Any) -> list[tts.SynthesizedAudio]:
    async with t.stream(**kw) as stream:
        for piece in pieces:
            stream.push_text(piece)
        stream.flush()
        stream.end_input()
        return [frame async for frame in stream]


async def until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.005)


# -- streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_stream_audio_and_aligned_transcript(srv: ServerThread, runner: str) -> None:
    async def main() -> None:
        async with make_tts(srv, timestamp_type="WORD") as t:
            assert t.capabilities.streaming and t.capabilities.aligned_transcript
            # Pushed in pieces that cut words and sentences, as an LLM streams tokens.
            frames = await speak(t, TEXT[:9], TEXT[9:30], TEXT[30:])
            assert_speech(pcm_of(frames), TEXT)
            assert {f.frame.sample_rate for f in frames} == {RATE}
            assert [f.is_final for f in frames].count(True) == 1 and frames[-1].is_final
            assert len({f.segment_id for f in frames}) == 1 and frames[0].segment_id
            words = [w for f in frames for w in f.frame.userdata[USERDATA_TIMED_TRANSCRIPT]]
            want = tone_speech(TEXT, RATE).words
            assert [str(w) for w in words] == [w for w, _, _ in want]
            for got, (_, start, end) in zip(words, want, strict=True):
                assert (got.start_time, got.end_time) == pytest.approx((start, end), abs=1e-6)
            pool = await t.pool()
            await until(lambda: pool.statistics().contexts_in_use == 0)
            assert pool.statistics().contexts_opened == 1
        assert srv.stats().violations == ()

    run(main, runner)


def test_synthesize_one_shot_over_http(srv: ServerThread) -> None:
    async def main() -> None:
        async with make_tts(srv, timestamp_type="WORD") as t:
            frames = [frame async for frame in t.synthesize(TEXT)]
            assert_speech(pcm_of(frames), TEXT)
            assert frames[-1].is_final
            words = [w for f in frames for w in f.frame.userdata[USERDATA_TIMED_TRANSCRIPT]]
            assert [str(w) for w in words] == TEXT.split()
            assert srv.stats().contexts_created == 0  # HTTP voice:stream, not a WS context
            t.update_options(voice="NoSuchVoice")
            with pytest.raises(APIStatusError) as info:
                await t.synthesize(TEXT, conn_options=NO_RETRY).collect()
            assert info.value.status_code == 400 and not info.value.retryable

    run(main)


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_interruption_frees_the_slot(srv: ServerThread, runner: str) -> None:
    """Closing the stream mid-utterance (LiveKit's interruption) cancels the context on the
    server; the slot comes back when the server confirms."""

    async def main() -> None:
        async with make_tts(srv) as t:
            stream = t.stream()
            stream.push_text(LONG)
            stream.end_input()
            got = [await anext(stream) for _ in range(3)]
            pool = await t.pool()
            assert pool.statistics().contexts_in_use == 1
            await stream.aclose()
            await until(lambda: pool.statistics().contexts_in_use == 0, limit=2)
            assert 0 < len(pcm_of(got)) < len(tone_pcm(LONG, RATE))
            assert srv.stats().contexts_open == 0
            # The pool is healthy afterwards.
            assert_speech(pcm_of(await speak(t, TEXT)), TEXT)

    run(main, runner)


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_50_concurrent_streams_share_one_pool(srv: ServerThread, runner: str) -> None:
    async def main() -> None:
        instances = [make_tts(srv) for _ in range(5)]
        pools = {id(await t.pool()) for t in instances}
        assert len(pools) == 1  # one engine per process, shared by every TTS
        texts = [f"Caller {i} says hello. This is turn {i}." for i in range(50)]
        results = await asyncio.gather(
            *(speak(instances[i % 5], text) for i, text in enumerate(texts))
        )
        for text, frames in zip(texts, results, strict=True):
            assert_speech(pcm_of(frames), text)
        pool = await instances[0].pool()
        assert pool.statistics().contexts_opened == 50
        assert pool.statistics().connections <= 10
        for t in instances:
            await t.aclose()
        stats = srv.stats()
        assert stats.violations == () and stats.peak_contexts_per_connection <= 5
        assert stats.contexts_created == 50

    run(main, runner)


def test_prewarm_and_update_options(srv: ServerThread) -> None:
    async def main() -> None:
        async with make_tts(srv, pool_settings={"min_connections": 0}) as t:
            t.prewarm()
            pool = await t.pool()
            await until(lambda: pool.statistics().connections_open == 1)
            t.update_options(voice="Dennis", sample_rate=16000, speaking_rate=1.1)
            assert (t.sample_rate, t.options.voice, t.options.speaking_rate) == (
                16000,
                "Dennis",
                1.1,
            )
            frames = await speak(t, TEXT)
            assert {f.frame.sample_rate for f in frames} == {16000}
            assert_speech(pcm_of(frames), TEXT, 16000)
            with pytest.raises(ValueError, match="sample_rate"):
                t.update_options(sample_rate=12345)
            assert t.sample_rate == 16000
            assert pool.statistics().connections_opened == 1  # prewarmed socket reused

    run(main)


def test_constructor_validates_like_the_official_plugin(srv: ServerThread) -> None:
    with pytest.raises(ValueError, match="API key"):
        livekit.TTS()  # Inworld's endpoint without a key
    with pytest.raises(ValueError, match="speaking_rate"):
        make_tts(srv, speaking_rate=3.0)
    t = make_tts(srv, encoding="LINEAR16", text_normalization=True, timestamp_type="CHARACTER")
    assert t.options.apply_text_normalization is True and t.model == livekit.DEFAULT_MODEL
    assert t.provider == "Inworld"


# -- errors --------------------------------------------------------------------------------


def failing(code: int) -> dict[str, Any]:
    """Faults that answer every ``create`` with the gRPC status ``code``."""
    return {"context_error": ContextErrorFault(lambda index, cid: True, code, "failed")}


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retryable"),
    [
        (failing(13), APIStatusError, 500, True),
        (failing(3), APIStatusError, 400, False),
        (failing(8), APIStatusError, 429, True),
        ({"reject": RejectHandshake(status=401)}, APIStatusError, 401, False),
        ({"reject": RejectHandshake(status=503)}, APIStatusError, 503, True),
        ({"drop": DropConnection(after_frames=3)}, APIConnectionError, None, True),
    ],
)
def test_server_faults_arrive_as_livekit_errors(
    srv: ServerThread,
    fault: dict[str, Any],
    kind: type[APIError],
    status: int | None,
    retryable: bool,
) -> None:
    srv.set_faults(**fault)

    async def main() -> None:
        settings = {"min_connections": 0, "connect_attempts": 1, "move_attempts": 1}
        async with make_tts(srv, pool_settings=settings) as t:
            errors: list[tts.TTSError] = []
            t.on("error", errors.append)
            with pytest.raises(kind) as info:
                await speak(t, LONG, conn_options=NO_RETRY)
            assert type(info.value) is kind
            assert info.value.retryable is retryable
            if status is not None:
                assert isinstance(info.value, APIStatusError)
                assert info.value.status_code == status
            assert [e.recoverable for e in errors] == [False]
            assert errors[0].error is info.value

    run(main)


def test_capacity_timeout_is_api_timeout_error(srv: ServerThread) -> None:
    async def main() -> None:
        settings = {"contexts_per_connection": 1}
        async with make_tts(srv, max_connections=1, pool_settings=settings) as t:
            pool = await t.pool()
            holder = await pool.open_context()
            with pytest.raises(APITimeoutError):
                await speak(t, TEXT, conn_options=APIConnectOptions(max_retry=0, timeout=0.1))
            await holder.aclose()

    run(main)


def test_framework_retry_recovers_from_a_failed_context(srv: ServerThread) -> None:
    """The first context fails before any audio: LiveKit's retry opens a new one."""
    srv.set_faults(context_error=ContextErrorFault(lambda index, cid: index == 0, 14, "busy"))

    async def main() -> None:
        async with make_tts(srv) as t:
            errors: list[tts.TTSError] = []
            t.on("error", errors.append)
            retry = APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=5)
            frames = await speak(t, TEXT, conn_options=retry)
            assert_speech(pcm_of(frames), TEXT)
            assert [e.recoverable for e in errors] == [True]
            assert isinstance(errors[0].error, APIStatusError)
            assert errors[0].error.status_code == 503

    run(main)


def test_fallback_adapter_moves_to_the_next_tts() -> None:
    with ServerThread().running() as bad, ServerThread().running() as good:
        bad.set_faults(reject=RejectHandshake(status=503))

        async def main() -> None:
            settings = {"min_connections": 0, "connect_attempts": 1}
            first = make_tts(bad, pool_settings=settings)
            second = make_tts(good)
            async with FallbackAdapter([first, second], max_retry_per_tts=0) as adapter:
                async with adapter.stream() as stream:
                    stream.push_text(TEXT)
                    stream.end_input()
                    frames = [frame async for frame in stream]
                assert_speech(pcm_of(frames), TEXT)
            for t in (first, second):
                await t.aclose()

        run(main)
        assert bad.stats().contexts_created == 0
        assert good.stats().contexts_created == 1


# -- the watchdog of the ElevenLabs and Cartesia streams (bridges._livekit_common.Watchdog) ----


def test_a_watchdog_armed_before_its_guard_times_the_block_out() -> None:
    async def main() -> float:
        watchdog = Watchdog()
        watchdog.arm(0.01)
        loop = asyncio.get_running_loop()
        armed_at = loop.time()
        with pytest.raises(TimeoutError):
            async with watchdog.guard():
                await asyncio.Event().wait()
        return loop.time() - armed_at

    assert run(main, limit=5) >= 0.01


def test_a_watchdog_moved_from_outside_any_task_times_out_only_past_the_last_deadline() -> None:
    """``arm`` from plain loop callbacks (as a ``forward()`` handler runs, in no task): each
    moves the deadline; the block times out once, ``0.05`` s after the last one (the timer
    set for the first deadline looks again instead of firing)."""

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        watchdog = Watchdog()
        armed = {"count": 0, "last": 0.0}

        def again() -> None:  # a loop callback, not a task: as the pool's receiver
            assert asyncio.current_task() is None
            watchdog.arm(0.05)
            armed["count"] += 1
            armed["last"] = loop.time()
            if armed["count"] < 2000:
                loop.call_soon(again)

        with pytest.raises(TimeoutError):
            async with watchdog.guard():
                watchdog.arm(0.05)
                loop.call_soon(again)
                await asyncio.Event().wait()
        return armed["count"], loop.time() - armed["last"]

    count, after_last = run(main, limit=10)
    assert count == 2000 and after_last >= 0.05


def test_a_disarmed_watchdog_never_times_out() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        watchdog = Watchdog()
        done = asyncio.Event()
        async with watchdog.guard():
            watchdog.arm(0.01)
            watchdog.arm(None)
            assert not watchdog.armed
            loop.call_at(loop.time() + 0.1, done.set)  # well past the 10 ms deadline
            await done.wait()
        return "not timed out"

    assert run(main, limit=5) == "not timed out"
