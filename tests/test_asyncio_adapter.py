"""The asyncio bridge against a real local server (tone synthesizer: exact bytes).

Asyncio tests are plain functions that run their own loop (``asyncio.run`` or ``uvloop.run``)
with an absolute ``asyncio.timeout``; the server runs in a thread with its own ``trio.run``.
The trio-hosted mode (``trio_asyncio``) is tested from trio tests.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trio_asyncio
import uvloop

import trio_tts
from bridges import asyncio_adapter
from bridges.asyncio_adapter import AsyncioPool
from trio_tts.server import (
    ContextErrorFault,
    LocalServer,
    RejectHandshake,
    ServerConfig,
    open_server,
    tone_pcm,
    tone_speech,
)

RATE = 24000
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=RATE, timestamp_type="WORD")
TEXT = "The quick brown fox jumps over the lazy dog."
LONG = " ".join(f"Sentence number {i} is here." for i in range(40))


class ServerThread:
    """A local server in its own thread and trio run; faults are changed in that thread."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
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

    def run_sync(self, fn: Callable[[], object]) -> object:
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def stats(self) -> Any:
        return self.run_sync(self.server.statistics)

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
    with ServerThread(ServerConfig(synthesizer="tone")).running() as s:
        yield s


# Plain loops, made explicitly: importing trio_asyncio installs an event loop policy whose
# loops are trio runs, so asyncio.run() would not give a plain asyncio loop here.
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.new_event_loop,
}


def run(main: Callable[[], Awaitable[Any]], runner: str = "asyncio", *, limit: float = 20) -> Any:
    """Run ``main`` on a fresh loop with an absolute timeout; check the loop is left clean."""

    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            result = await main()
        # The trio run finished with the last pool: nothing of it is left on this loop.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert not trio.lowlevel.in_trio_run()
        assert not asyncio_adapter._ENGINES
        return result

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with asyncio.Runner(loop_factory=LOOPS[runner]) as loop_runner:
            result = loop_runner.run(bounded())
        gc.collect()
    return result


def provider(s: ServerThread) -> trio_tts.InworldProvider:
    return trio_tts.InworldProvider(url=s.server.ws_url)


async def turn(pool: AsyncioPool, text: str, **kw: Any) -> tuple[bytes, list[Any]]:
    ctx = await pool.open_context(**kw)
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        events = [event async for event in ctx]
    audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
    return audio, events


async def until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.005)


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
@pytest.mark.parametrize("prefetch", [0, 1, 8])
def test_turn_gets_exactly_its_audio(srv: ServerThread, runner: str, prefetch: int) -> None:
    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM, prefetch=prefetch) as pool:
            audio, events = await turn(pool, TEXT)
            assert audio == tone_pcm(TEXT, RATE)
            words = [w.word for e in events if isinstance(e, trio_tts.Audio) for w in e.words]
            assert words == TEXT.split()
            assert pool.statistics().contexts_opened == 1
            await until(lambda: pool.statistics().contexts_in_use == 0)

    run(main, runner)
    assert srv.stats().violations == ()


def test_flushes_and_monotonic_word_timings(srv: ServerThread) -> None:
    first, second = "Hello there. How are you?", "Second part of it."

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(first)
                await ctx.flush()
                await ctx.send_text(second, flush=True)
                await ctx.finish()
                events = [event async for event in ctx]
            kinds = [type(e).__name__ for e in events]
            assert kinds.count("FlushCompleted") == 2
            audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
            assert audio == tone_pcm(first, RATE) + tone_pcm(second, RATE)
            timings = [
                (w.word, w.start, w.end)
                for e in events
                if isinstance(e, trio_tts.Audio)
                for w in e.words
            ]
            offset = len(first) * 0.06
            want = tone_speech(first, RATE).words + [
                (w, a + offset, b + offset) for w, a, b in tone_speech(second, RATE).words
            ]
            assert [t[0] for t in timings] == [w[0] for w in want]
            for (_, start, end), (_, want_start, want_end) in zip(timings, want, strict=True):
                assert (start, end) == pytest.approx((want_start, want_end), abs=1e-6)

    run(main)


def test_events_wait_in_the_trio_buffer_not_in_the_bridge(srv: ServerThread) -> None:
    """A consumer that stops reading leaves every event in the trio context's own buffer
    (bounded there): the bridge holds none, no task reads ahead, and nothing is lost."""

    async def main() -> None:
        # LONG is 3.2 MB of PCM: room for all of it in the trio context's own buffer.
        room = 8 * 2**20
        async with AsyncioPool(provider(srv), defaults=PCM, context_buffer_bytes=room) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(LONG)
                await ctx.finish()
                first = await anext(ctx)
                await ctx.close()  # every event of the utterance has reached trio
                await pool.run(trio.testing.wait_all_tasks_blocked)
                assert ctx.buffered == 0
                queued = ctx.trio_context.buffered_bytes
                rest = [event async for event in ctx]
            audio = b"".join(e.data for e in [first, *rest] if isinstance(e, trio_tts.Audio))
            assert audio == tone_pcm(LONG, RATE)
            assert queued == len(audio) - len(first.data)  # all but the first waited in trio

    run(main)


def pausing_pool(s: ServerThread) -> AsyncioPool:
    """A pool whose contexts pause their socket past 64 KiB of unread audio."""
    return AsyncioPool(provider(s), defaults=PCM, context_pause_bytes=64 * 1024)


def test_a_held_consumer_leaves_the_audio_in_trio_and_misses_nothing(srv: ServerThread) -> None:
    """``hold(full)``: while ``full()`` is true iteration waits, the audio stays in the trio
    context's buffer (whose flow control pauses the socket), and ``release()`` lets the
    consumer go on; every byte arrives in order. Never held past half the trio bound."""

    async def main() -> None:
        async with pausing_pool(srv) as pool:
            ctx = await pool.open_context()
            downstream: list[bytes] = []
            full = True
            ctx.hold(lambda: full)
            async with ctx:
                await ctx.send_text(LONG)
                await ctx.finish()
                reader = asyncio.ensure_future(ctx.__anext__())
                await until(lambda: ctx.trio_context.buffered_bytes >= 64 * 1024)
                await pool.run(trio.testing.wait_all_tasks_blocked)
                assert not reader.done()  # held: nothing taken although audio is queued
                assert ctx.trio_context.buffered_bytes * 2 < ctx.trio_context.max_buffered_bytes
                full = False
                ctx.release()
                first = await reader
                downstream += [first.data] if isinstance(first, trio_tts.Audio) else []
                async for event in ctx:
                    if isinstance(event, trio_tts.Audio):
                        downstream.append(event.data)
            assert b"".join(downstream) == tone_pcm(LONG, RATE)

    run(main)


async def start_forward(ctx: Any, handle: Callable[[Any], object]) -> asyncio.Task[None]:
    """A task running ``ctx.forward(handle)``, returned once forward() has given its sink to
    the context (forward() does so before its first wait)."""
    started = asyncio.Event()

    async def forwarding() -> None:
        started.set()
        await ctx.forward(handle)

    task = asyncio.ensure_future(forwarding())
    await started.wait()
    return task


def test_forward_hands_each_event_on_from_the_receiver_in_order(srv: ServerThread) -> None:
    """``forward(handle)``: with nothing queued, the first event of a loop callback is handed
    on inside the pool's receiver (no asyncio task runs ``handle``), the rest of a burst by
    forward()'s task; every byte arrives in order, nothing is left in trio, and forward()
    returns when the server closed the context."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = await pool.open_context()
            handed: list[trio_tts.Audio | trio_tts.FlushCompleted] = []
            by_receiver: list[bool] = []  # per event: handed on from the pool's receiver?

            def handle(event: trio_tts.Audio | trio_tts.FlushCompleted) -> None:
                by_receiver.append(trio.lowlevel.in_trio_task())
                handed.append(event)

            async with ctx:
                forwarding = await start_forward(ctx, handle)
                await ctx.send_text(LONG, flush=True)
                await ctx.finish()
                await forwarding
                assert ctx.state is trio_tts.ContextState.CLOSED
                assert ctx.trio_context.buffered_bytes == 0
            audio = b"".join(e.data for e in handed if isinstance(e, trio_tts.Audio))
            assert audio == tone_pcm(LONG, RATE)
            assert any(isinstance(e, trio_tts.FlushCompleted) for e in handed)
            assert by_receiver[0]  # the first event: from the receiver, nothing queued
            await until(lambda: pool.statistics().contexts_in_use == 0)

    run(main)
    assert srv.stats().contexts_open == 0


def test_forward_queues_while_the_downstream_is_full_and_misses_nothing(
    srv: ServerThread,
) -> None:
    """While ``hold``'s ``full()`` is true, forward() hands nothing on: the audio queues in
    trio. After ``release()`` its own task hands the queue on; the downstream gets every
    byte in order across the switches between the receiver and the task."""

    async def main() -> None:
        async with pausing_pool(srv) as pool:
            ctx = await pool.open_context()
            downstream: list[bytes] = []
            sources: list[bool] = []  # per event: handed on by the pool's receiver (trio)?
            full = False

            def handle(event: trio_tts.Audio | trio_tts.FlushCompleted) -> None:
                nonlocal full
                if isinstance(event, trio_tts.Audio):
                    downstream.append(event.data)
                    sources.append(trio.lowlevel.in_trio_task())
                    if len(downstream) == 3:
                        full = True  # the downstream fills up after the third chunk

            ctx.hold(lambda: full)
            async with ctx:
                forwarding = await start_forward(ctx, handle)
                await ctx.send_text(LONG)
                await ctx.finish()
                # Held after the third chunk: what comes next waits in trio (and, past
                # context_pause_bytes, in the socket).
                await until(lambda: ctx.trio_context.buffered_bytes > 0 and len(downstream) >= 3)
                await pool.run(trio.testing.wait_all_tasks_blocked)
                assert len(downstream) == 3  # held: the rest waits in trio
                full = False
                ctx.release()
                await forwarding
            assert b"".join(downstream) == tone_pcm(LONG, RATE)
            assert sources[0]  # from the receiver
            assert not sources[3]  # queued while held, handed on by forward()'s task
            await until(lambda: pool.statistics().contexts_in_use == 0)

    run(main)


def test_a_failing_forward_handler_fails_only_its_context(srv: ServerThread) -> None:
    """An error from ``handle`` is raised by forward(), not into the pool's receiver: the
    context is cancelled when left, its slot comes back, and the next turn on the same
    connection gets exactly its audio. A second forward() at once is refused."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = await pool.open_context()
            seen = 0

            def handle(event: trio_tts.Audio | trio_tts.FlushCompleted) -> None:
                nonlocal seen
                seen += 1
                if seen == 1:  # the first event: handed on by the pool's receiver
                    raise ValueError("downstream broke")

            with pytest.raises(ValueError, match="downstream broke"):
                async with ctx:
                    await ctx.send_text(LONG)
                    await ctx.finish()
                    forwarding = await start_forward(ctx, handle)
                    with pytest.raises(RuntimeError, match="already running"):
                        await ctx.forward(handle)
                    await forwarding
            await until(lambda: pool.statistics().contexts_in_use == 0)
            audio, _ = await turn(pool, TEXT)
            assert audio == tone_pcm(TEXT, RATE)

    run(main)
    stats = srv.stats()
    assert stats.connections_accepted == 1 and stats.contexts_created == 2
    assert stats.contexts_open == 0 and stats.violations == ()


def test_a_slow_consumer_fails_in_trio_and_the_bridge_raises_it(srv: ServerThread) -> None:
    """The trio context's bound applies to the asyncio consumer: one that does not read
    fails with SlowConsumer after the events that fitted, and the slot comes back."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM, context_buffer_bytes=64000) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(LONG)
                await ctx.finish()
                await until(lambda: ctx.state is trio_tts.ContextState.FAILED)
                got = 0
                with pytest.raises(trio_tts.SlowConsumer):
                    async for event in ctx:
                        got += len(event.data) if isinstance(event, trio_tts.Audio) else 0
                assert 0 < got <= 64000
            await until(lambda: pool.statistics().contexts_in_use == 0)

    run(main)


@pytest.mark.parametrize("burst", [0, 3])
def test_a_consumer_lets_other_tasks_run_between_bursts(srv: ServerThread, burst: int) -> None:
    """Events queued in trio are taken without waiting, but every ``prefetch`` events the
    consumer yields to the loop: another task runs between bursts."""

    async def main() -> None:
        room = 8 * 2**20  # all of LONG fits in the trio context's buffer
        async with AsyncioPool(
            provider(srv), defaults=PCM, prefetch=burst, context_buffer_bytes=room
        ) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(LONG)
                await ctx.close()  # all of it is queued in trio before the first read
                ticks = 0

                async def ticker() -> None:
                    nonlocal ticks
                    while True:
                        ticks += 1
                        await asyncio.sleep(0)

                task = asyncio.create_task(ticker())
                await asyncio.sleep(0)
                seen = [ticks async for _ in ctx]
                task.cancel()
            assert len(seen) > 10
            # The other task ran at least once in every window of ``burst + 1`` events.
            step = burst + 1
            assert all(seen[i + step] > seen[i] for i in range(len(seen) - step))

    run(main)


# -- commands and start_context -------------------------------------------------------------


def test_commands_are_queued_in_order_without_waiting_for_trio(srv: ServerThread) -> None:
    """send_text, flush and finish return before trio ran any of them (no round trip), go
    out in order, and a command after finish() is refused at once."""

    async def main() -> None:
        first, second = "First part here.", "Second part there."
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(first)
                await ctx.flush()
                await ctx.send_text(second)
                await ctx.finish()
                # Nothing crossed yet: trio has not even seen the close.
                assert ctx.trio_context.state is trio_tts.ContextState.OPEN
                with pytest.raises(trio.ClosedResourceError):
                    await ctx.send_text("too late")
                with pytest.raises(trio_tts.InvalidOptions, match="text"):
                    await ctx.send_text(b"bytes")  # type: ignore[arg-type]
                events = [event async for event in ctx]
            audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
            assert audio == tone_pcm(first, RATE) + tone_pcm(second, RATE)
            assert sum(isinstance(e, trio_tts.FlushCompleted) for e in events) == 1

    run(main)


def test_start_context_takes_text_before_it_is_open(srv: ServerThread) -> None:
    """start_context returns before trio opened anything; the text queued meanwhile goes
    out once it is open, and the audio is the text's."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = pool.start_context()
            with pytest.raises(RuntimeError, match="opening"):
                _ = ctx.id  # trio has not run: not open yet
            assert ctx.state is trio_tts.ContextState.OPEN and ctx.options == PCM
            async with ctx:
                await ctx.send_text(TEXT)
                await ctx.finish()
                events = [event async for event in ctx]
                assert ctx.state is trio_tts.ContextState.CLOSED
            audio = b"".join(e.data for e in events if isinstance(e, trio_tts.Audio))
            assert audio == tone_pcm(TEXT, RATE)
            with pytest.raises(trio_tts.InvalidOptions):
                pool.start_context(sample_rate=-1)  # refused before anything crosses

    run(main)


def test_forward_on_a_started_context_takes_over_once_it_opens(srv: ServerThread) -> None:
    """forward() on a context that is still opening (start_context, as the LiveKit plugin
    does): the context gets forward()'s sink when it opens, so its first event is handed on
    by the receiver too, and the audio is the text's."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = pool.start_context()
            audio: list[bytes] = []
            by_receiver: list[bool] = []

            def handle(event: trio_tts.Audio | trio_tts.FlushCompleted) -> None:
                if isinstance(event, trio_tts.Audio):
                    audio.append(event.data)
                    by_receiver.append(trio.lowlevel.in_trio_task())

            async with ctx:
                forwarding = await start_forward(ctx, handle)
                with pytest.raises(RuntimeError, match="opening"):
                    _ = ctx.id  # forward() started before trio opened it
                await ctx.send_text(TEXT)
                await ctx.finish()
                await forwarding
            assert b"".join(audio) == tone_pcm(TEXT, RATE)
            assert by_receiver[0]
            await until(lambda: pool.statistics().contexts_in_use == 0)

    run(main)


def test_start_context_failure_is_raised_by_iteration_and_commands(srv: ServerThread) -> None:
    """A context that cannot open (no slot within its timeout) raises CapacityTimeout from
    iteration and from the next command; nothing leaks."""

    async def main() -> None:
        async with AsyncioPool(
            provider(srv), defaults=PCM, max_connections=1, contexts_per_connection=1
        ) as pool:
            holder = await pool.open_context()
            ctx = pool.start_context(timeout=0.05)
            await ctx.send_text(TEXT)  # queued: the failure is not known yet
            with pytest.raises(trio_tts.CapacityTimeout):
                await anext(ctx)
            assert ctx.state is trio_tts.ContextState.FAILED
            with pytest.raises(trio_tts.CapacityTimeout):
                await ctx.send_text(TEXT)
            await ctx.aclose()
            await holder.aclose()
            await until(lambda: pool.statistics().contexts_in_use == 0)
            assert (await turn(pool, TEXT))[0] == tone_pcm(TEXT, RATE)

    run(main)


def test_leaving_a_started_context_before_it_opens_frees_its_place(srv: ServerThread) -> None:
    """aclose() of a context still waiting for a slot withdraws it: iteration ends, the
    server never sees it, and the slot serves the next caller."""

    async def main() -> None:
        async with AsyncioPool(
            provider(srv), defaults=PCM, max_connections=1, contexts_per_connection=1
        ) as pool:
            holder = await pool.open_context()
            ctx = pool.start_context()
            await ctx.send_text(TEXT)
            await until(lambda: pool.statistics().waiting == 1)
            await ctx.aclose()
            assert ctx.state is trio_tts.ContextState.ABANDONED
            with pytest.raises(StopAsyncIteration):
                await anext(ctx)
            with pytest.raises(trio.ClosedResourceError):
                await ctx.send_text(TEXT)
            await until(lambda: pool.statistics().waiting == 0)
            await holder.aclose()
            assert (await turn(pool, TEXT))[0] == tone_pcm(TEXT, RATE)
            await until(lambda: pool.statistics().contexts_in_use == 0)
        assert srv.stats().contexts_created == 2  # the holder and the last turn only

    run(main)


# -- pool API ------------------------------------------------------------------------------


def test_prewarm_update_options_statistics(srv: ServerThread) -> None:
    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM, min_connections=0) as pool:
            assert pool.statistics().connections == 0
            assert await pool.prewarm(2) == 2
            assert pool.statistics().connections_open == 2
            pool.update_options(voice="Dennis", speaking_rate=1.2)
            ctx = await pool.open_context()
            assert (ctx.options.voice, ctx.options.speaking_rate) == ("Dennis", 1.2)
            await ctx.aclose()
            with pytest.raises(trio_tts.InvalidOptions, match="unknown option"):
                pool.update_options(no_such_field=1)
            assert pool.defaults.voice == "Dennis"
            assert "AsyncioPool" in repr(pool) and "connections=2/20" in repr(pool)

    run(main)


@pytest.mark.parametrize(("budget", "batches_per_callback"), [(60.0, "many"), (0.0, "one")])
def test_trio_batches_run_in_one_asyncio_callback_within_the_budget(
    srv: ServerThread, monkeypatch: pytest.MonkeyPatch, budget: float, batches_per_callback: str
) -> None:
    """A trio task that yields 20 times (20 batches of the guest run) finishes within one
    asyncio callback when the tick budget allows, while another asyncio task waits; with no
    budget every batch waits for its own turn of the loop, as with plain ``call_soon``."""
    monkeypatch.setattr(asyncio_adapter, "_TICK_BUDGET", budget)

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            await pool.prewarm()
            loop_turns = 0

            async def ticker() -> None:
                nonlocal loop_turns
                while True:
                    loop_turns += 1
                    await asyncio.sleep(0)

            async def yields() -> int:
                begin = loop_turns  # read in trio: both worlds share the thread
                for _ in range(20):
                    await trio.lowlevel.checkpoint()
                return loop_turns - begin

            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            turns = await pool.run(yields)
            task.cancel()
            if batches_per_callback == "many":
                assert turns == 0  # all 20 batches in the callback that ran the first
            else:
                assert turns >= 19  # one batch per turn of the loop

    run(main)


def test_two_pools_share_one_trio_run(srv: ServerThread) -> None:
    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as a:
            engine = a._engine
            async with AsyncioPool(provider(srv), defaults=PCM) as b:
                assert b._engine is engine and engine is not None and engine.users == 2
                results = await asyncio.gather(turn(a, TEXT), turn(b, TEXT))
                assert [r[0] for r in results] == [tone_pcm(TEXT, RATE)] * 2
            assert trio.lowlevel.in_trio_run()  # `a` still holds the run
            assert (await turn(a, "Still here."))[0] == tone_pcm("Still here.", RATE)
        assert not trio.lowlevel.in_trio_run()
        # A new run can start on the same loop afterwards.
        async with AsyncioPool(provider(srv), defaults=PCM) as c:
            assert (await turn(c, TEXT))[0] == tone_pcm(TEXT, RATE)

    run(main)


def test_bad_settings_raise_and_stop_the_run(srv: ServerThread) -> None:
    async def main() -> None:
        with pytest.raises(trio_tts.InvalidOptions, match="max_connections"):
            async with AsyncioPool(provider(srv), max_connections=0):
                pass
        with pytest.raises(trio_tts.InvalidOptions, match="prefetch"):
            AsyncioPool(provider(srv), prefetch=-1)
        with pytest.raises(trio_tts.PoolClosed):
            await AsyncioPool(provider(srv)).open_context()

    run(main)


def test_from_trio_pool_needs_trio_asyncio() -> None:
    async def main() -> None:
        pool = trio_tts.Pool(trio_tts.InworldProvider(url="ws://127.0.0.1:9/x"))
        with pytest.raises(RuntimeError, match="trio_asyncio"):
            async with AsyncioPool.from_trio_pool(pool):
                pass

    run(main)


# -- errors: trio → asyncio ----------------------------------------------------------------


def test_trio_errors_arrive_as_the_same_types(srv: ServerThread) -> None:
    async def main() -> None:
        async with AsyncioPool(
            provider(srv), defaults=PCM, max_connections=1, contexts_per_connection=1
        ) as pool:
            with pytest.raises(trio_tts.InvalidOptions, match="voice"):
                await pool.open_context(voice="")
            holder = await pool.open_context()
            with pytest.raises(trio_tts.CapacityTimeout):
                await pool.open_context(timeout=0.05)
            await holder.aclose()
            await until(lambda: pool.statistics().contexts_in_use == 0)

            srv.run_sync(
                lambda: srv.server.set_faults(
                    context_error=ContextErrorFault(when=lambda i, c: True, code=13, message="boom")
                )
            )
            with pytest.raises(trio_tts.ContextFailed) as info:
                await turn(pool, TEXT)
            assert (info.value.code, info.value.message) == (13, "boom")
            srv.run_sync(lambda: srv.server.set_faults(context_error=None))
            assert (await turn(pool, TEXT))[0] == tone_pcm(TEXT, RATE)

    run(main)


def test_handshake_rejection_arrives_as_handshake_rejected(srv: ServerThread) -> None:
    srv.run_sync(lambda: srv.server.set_faults(reject=RejectHandshake(status=401)))

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM, min_connections=0) as pool:
            with pytest.raises(trio_tts.HandshakeRejected) as info:
                await pool.open_context(timeout=5)
            assert info.value.status == 401 and info.value.is_auth_error

    run(main)


def test_trio_side_cancellation_cancels_the_asyncio_waiter(srv: ServerThread) -> None:
    """A crossing cancelled by trio (here: its engine's nursery) cancels the asyncio future;
    the asyncio task was not cancelled by asyncio (``cancelling() == 0``)."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            engine = pool._engine
            assert engine is not None
            seen: list[int] = []
            parked = asyncio.Event()

            async def park() -> None:
                parked.set()  # in trio (same thread): the crossing's scope is entered
                await trio.sleep_forever()

            async def waiter() -> None:
                try:
                    await engine.call(park)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    assert task is not None
                    seen.append(task.cancelling())
                    raise

            task = asyncio.create_task(waiter())
            await parked.wait()

            # Cancel only the crossing task's own scope, from trio: find it via its _Call.
            calls = [c for c in gc.get_objects() if isinstance(c, asyncio_adapter._Call)]
            sleeping = [c for c in calls if c.afn is park and not c.future.done()]
            assert len(sleeping) == 1
            engine.run_sync_soon(sleeping[0].scope.cancel)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert seen == [0]
            assert (await turn(pool, TEXT))[0] == tone_pcm(TEXT, RATE)

    run(main)


def test_pool_closing_fails_waiters_with_pool_closed(srv: ServerThread) -> None:
    async def main() -> None:
        pool = AsyncioPool(
            provider(srv), defaults=PCM, max_connections=1, contexts_per_connection=1
        )
        await pool.open()
        holder = await pool.open_context()
        waiting = asyncio.create_task(pool.open_context())
        await until(lambda: pool.statistics().waiting == 1)
        await pool.aclose()
        with pytest.raises(trio_tts.PoolClosed):
            await waiting
        assert holder.state is trio_tts.ContextState.FAILED

    run(main)


# -- cancellation: asyncio → trio ----------------------------------------------------------


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_cancelling_a_slot_waiter_leaves_the_queue(srv: ServerThread, runner: str) -> None:
    async def main() -> None:
        async with AsyncioPool(
            provider(srv), defaults=PCM, max_connections=1, contexts_per_connection=1
        ) as pool:
            holder = await pool.open_context()
            waiter = asyncio.create_task(pool.open_context())
            await until(lambda: pool.statistics().waiting == 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await until(lambda: pool.statistics().waiting == 0, limit=0.5)
            assert pool.statistics().contexts_in_use == 1  # the cancelled waiter got nothing
            await holder.aclose()
            # The one slot is free again: nothing leaked on either side.
            assert (await turn(pool, TEXT, timeout=2))[0] == tone_pcm(TEXT, RATE)

    run(main, runner)


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_cancelling_the_consumer_cancels_the_utterance(srv: ServerThread, runner: str) -> None:
    """The asyncio task reading events is cancelled mid-utterance: the context is cancelled
    on the server at once and its slot comes back when the server confirms."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            got_audio = asyncio.Event()
            received: list[Any] = []

            async def speak() -> None:
                ctx = await pool.open_context()
                async with ctx:
                    await ctx.send_text(LONG)
                    await ctx.finish()
                    async for event in ctx:
                        received.append(event)
                        got_audio.set()
                        await asyncio.sleep(0.01)  # a slow player

            task = asyncio.create_task(speak())
            await got_audio.wait()
            assert pool.statistics().contexts_in_use == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: pool.statistics().contexts_in_use == 0, limit=2)
            audio = b"".join(e.data for e in received)
            assert 0 < len(audio) < len(tone_pcm(LONG, RATE))
            stats = srv.stats()
            assert stats.contexts_open == 0 and stats.violations == ()

    run(main, runner)


def test_cancelled_open_context_that_already_succeeded_is_released(srv: ServerThread) -> None:
    """The race: trio hands out a context just as asyncio gives up waiting. The context the
    asyncio side never saw is abandoned in trio, so the slot is not lost."""

    async def main() -> None:
        async with AsyncioPool(
            provider(srv), defaults=PCM, max_connections=1, contexts_per_connection=1
        ) as pool:
            await pool.prewarm()
            for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008):
                task = asyncio.create_task(pool.open_context())
                await asyncio.sleep(delay)
                task.cancel()
                try:
                    ctx = await task
                except asyncio.CancelledError:
                    pass
                else:
                    await ctx.aclose()
                await until(lambda: pool.statistics().contexts_in_use == 0, limit=2)
            assert (await turn(pool, TEXT, timeout=2))[0] == tone_pcm(TEXT, RATE)

    run(main)


def test_aclose_completes_even_if_cancelled_again(srv: ServerThread) -> None:
    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            ctx = await pool.open_context()
            await ctx.send_text(LONG)
            closing = asyncio.create_task(ctx.aclose())
            await asyncio.sleep(0)  # the crossing is posted; trio has not run it yet
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            await until(lambda: ctx.state is trio_tts.ContextState.ABANDONED)
            await until(lambda: pool.statistics().contexts_in_use == 0, limit=2)
            with pytest.raises(StopAsyncIteration):
                await anext(ctx)

    run(main)


# -- trio hosting asyncio (trio_asyncio) ----------------------------------------------------


async def test_trio_asyncio_shares_the_host_pool() -> None:
    """asyncio code under trio_asyncio uses the pool the trio program owns, alongside trio
    code on the same pool and the same connection."""
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(trio_tts.InworldProvider(url=server.ws_url), defaults=PCM) as pool,
        trio_asyncio.open_loop(),
    ):
        await pool.prewarm()

        async def asyncio_side() -> bytes:
            async with AsyncioPool.from_trio_pool(pool) as apool:
                assert apool.statistics() == pool.statistics()
                audio, _ = await turn(apool, TEXT)
            return audio

        async def trio_side() -> None:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text("From trio.")
                await ctx.finish()
                data = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
            assert data == tone_pcm("From trio.", RATE)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_side)
            audio = await trio_asyncio.aio_as_trio(asyncio_side)()
        assert audio == tone_pcm(TEXT, RATE)
        stats = pool.statistics()
        assert (stats.contexts_opened, stats.connections_opened) == (2, 1)
        with trio.fail_after(2):
            while pool.statistics().contexts_in_use:
                await trio.sleep(0.005)
    assert server.statistics().violations == ()


async def test_trio_asyncio_pool_of_its_own() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_asyncio.open_loop(),
    ):

        async def asyncio_side() -> bytes:
            async with AsyncioPool(
                trio_tts.InworldProvider(url=server.ws_url), defaults=PCM
            ) as apool:
                return (await turn(apool, TEXT))[0]

        assert await trio_asyncio.aio_as_trio(asyncio_side)() == tone_pcm(TEXT, RATE)
        assert server.statistics().contexts_open == 0

        async def forwarded() -> bytes:  # forward() hands every event on from its own task
            async with AsyncioPool(
                trio_tts.InworldProvider(url=server.ws_url), defaults=PCM
            ) as apool:
                ctx = await apool.open_context()
                audio: list[bytes] = []
                async with ctx:
                    await ctx.send_text(LONG)
                    await ctx.finish()
                    await ctx.forward(
                        lambda e: audio.append(e.data) if isinstance(e, trio_tts.Audio) else None
                    )
                return b"".join(audio)

        assert await trio_asyncio.aio_as_trio(forwarded)() == tone_pcm(LONG, RATE)
        assert server.statistics().contexts_open == 0


async def test_trio_asyncio_cancellation_both_ways() -> None:
    """The trio host cancels asyncio code that waits for a slot: the asyncio task sees
    CancelledError, and the crossing's trio task leaves the pool's queue."""
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(
            trio_tts.InworldProvider(url=server.ws_url),
            defaults=PCM,
            max_connections=1,
            contexts_per_connection=1,
        ) as pool,
        trio_asyncio.open_loop(),
    ):
        holder = await pool.open_context()
        seen: list[str] = []

        async def asyncio_waiter() -> None:
            async with AsyncioPool.from_trio_pool(pool) as apool:
                try:
                    await apool.open_context()
                except asyncio.CancelledError:
                    seen.append("cancelled")
                    raise

        with trio.move_on_after(5) as outer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio_asyncio.aio_as_trio(asyncio_waiter))
                while pool.statistics().waiting != 1:
                    await trio.sleep(0.001)
                nursery.cancel_scope.cancel()
        assert not outer.cancelled_caught
        assert seen == ["cancelled"]
        assert pool.statistics().waiting == 0
        await holder.aclose()
        ctx = await pool.open_context(timeout=2)  # the slot was not lost
        await ctx.aclose()


def test_importing_the_bridge_does_not_import_livekit() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trio_tts, bridges.asyncio_adapter; "
        "assert not [m for m in sys.modules if m.startswith('livekit')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
