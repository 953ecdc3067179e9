"""Trio's wait for I/O done by the asyncio loop (``bridges._guest_io``), against a real server.

The engine of ``bridges.asyncio_adapter`` runs trio as a guest of the asyncio loop. By default
(Linux) the loop itself waits on trio's epoll descriptor and trio's next deadline, where
stock guest mode would use a helper thread. These tests check what that must keep: every
kind of wake-up still reaches trio (I/O, a deadline, a shorter deadline after a longer one,
another thread), other guest runs keep their thread, and nothing is left on the loop after
the run. Each asyncio test runs its own loop with an absolute ``asyncio.timeout``: a missed
wake-up fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import trio

import trio_tts
from bridges import _guest_io, asyncio_adapter
from bridges.asyncio_adapter import AsyncioPool
from tests.test_asyncio_adapter import PCM, RATE, TEXT, ServerThread, provider, run, turn
from trio_tts.server import ServerConfig, tone_pcm


def _supported() -> bool:
    loop = asyncio.SelectorEventLoop()  # closed again: its self-pipe must not leak
    try:
        return _guest_io.supported(loop)
    finally:
        loop.close()


pytestmark = pytest.mark.skipif(not _supported(), reason="the host wait needs epoll")


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(synthesizer="tone")).running() as s:
        yield s


def engine_of(pool: AsyncioPool[Any]) -> asyncio_adapter._Engine:
    engine = pool._engine
    assert engine is not None
    return engine


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_the_loop_waits_for_trio_and_the_audio_is_exact(srv: ServerThread, runner: str) -> None:
    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            host = engine_of(pool).host_io
            assert host is not None and host.loop is asyncio.get_running_loop()
            before = host.waits
            results = await asyncio.gather(*(turn(pool, f"{TEXT} {i}") for i in range(6)))
            assert [a for a, _ in results] == [tone_pcm(f"{TEXT} {i}", RATE) for i in range(6)]
            assert host.waits > before  # trio went idle, and the loop waited for it
            fd = host.fd
            assert fd is not None
        # The run has finished: the loop no longer watches trio's descriptor.
        assert host.fd is None
        assert not asyncio.get_running_loop().remove_reader(fd)

    run(main, runner)
    assert srv.stats().violations == ()


def test_with_the_thread_setting_guest_mode_keeps_its_thread(
    srv: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncio_adapter, "_GUEST_IO", "thread")

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            assert engine_of(pool).host_io is None
            audio, _ = await turn(pool, TEXT)
            assert audio == tone_pcm(TEXT, RATE)

    run(main)


def test_a_deadline_wakes_trio_when_nothing_else_happens(srv: ServerThread) -> None:
    """No I/O at all: only the loop's timer can end trio's wait."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            for _ in range(3):
                await pool.run(partial(trio.sleep, 0.01))

    run(main, limit=10)


def test_a_shorter_deadline_after_a_longer_one_is_not_missed(srv: ServerThread) -> None:
    """A task sleeps for a minute (the loop's timer is set for then); a later, shorter
    sleep must get a timer of its own."""

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            engine = engine_of(pool)
            long_sleep = trio.CancelScope()

            async def sleeps_long() -> None:
                with long_sleep:
                    await trio.sleep(60)

            engine.start_soon(sleeps_long)
            await pool.run(trio.lowlevel.checkpoint)  # it sleeps now: trio idles till then
            async with asyncio.timeout(10):
                await pool.run(partial(trio.sleep, 0.02))
            engine.run_sync_soon(long_sleep.cancel)

    run(main, limit=20)


def test_another_thread_wakes_trio(srv: ServerThread) -> None:
    """``trio.to_thread`` (trio's own helper thread) delivers through the trio token: the
    wake-up of a trio that waits on the loop."""

    def in_thread() -> int:
        threading.Event().wait(0.01)
        return 42

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            assert await pool.run(lambda: trio.to_thread.run_sync(in_thread)) == 42

    run(main, limit=10)


def test_another_guest_run_in_the_process_keeps_its_thread(srv: ServerThread) -> None:
    """A plain guest run (not the engine's) on another thread's loop, while the engine's wait
    is installed: its I/O still goes through its own helper thread, and it completes."""
    url = srv.server.ws_url
    outcome_box: list[Any] = []

    async def plain() -> int:
        provider = trio_tts.InworldProvider(url=url)
        async with trio_tts.open_pool(provider, defaults=PCM) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(TEXT)
                await ctx.finish()
                total = 0
                async for event in ctx:
                    if isinstance(event, trio_tts.Audio):
                        total += len(event.data)
                return total

    async def host() -> int:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            plain,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        return int((await done).unwrap())

    def other_thread() -> None:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as r:
            outcome_box.append(r.run(asyncio.wait_for(host(), 20)))

    async def main() -> None:
        async with AsyncioPool(provider(srv), defaults=PCM) as pool:
            assert engine_of(pool).host_io is not None
            thread = threading.Thread(target=other_thread)
            thread.start()
            audio, _ = await turn(pool, TEXT)
            assert audio == tone_pcm(TEXT, RATE)
            await asyncio.to_thread(thread.join, 30)

    run(main, limit=40)
    assert outcome_box == [len(tone_pcm(TEXT, RATE))]
