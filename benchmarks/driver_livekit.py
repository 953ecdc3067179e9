"""Driver: LiveKit's Inworld pool (``livekit-plugins-inworld==1.8.3``), at pool level.

Runs in ``benchmarks/.venv-livekit`` (made by ``make bench``), never in the project's venv.
It drives ``_ConnectionPool`` the way the plugin's ``SynthesizeStream`` does: acquire a
context, ``send_text`` per sentence, ``flush_context``, ``close_context``, then wait for the
waiter (resolved by ``contextClosed``). The plugin hands audio to a ``tts.AudioEmitter``; here
a stub takes its place (``push`` records the chunk), so what is measured is the pool, its
connections and its JSON/base64 handling, not LiveKit's audio pipeline.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
from livekit.agents import APIError
from livekit.plugins.inworld.tts import _ConnectionPool, _TTSOptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h


class StubEmitter:
    """What ``_InworldConnection._recv_loop`` calls on a ``tts.AudioEmitter``."""

    __slots__ = ("turn",)

    def __init__(self, turn: h.Turn) -> None:
        self.turn = turn

    def start_segment(self, *, segment_id: str) -> None:
        pass

    def push(self, data: bytes) -> None:
        self.turn.audio(data)

    def flush(self) -> None:
        pass

    def push_timed_transcript(self, ts: Any) -> None:
        pass


OPTIONS = _TTSOptions(
    model="inworld-tts-1.5-max",
    encoding="PCM",
    voice=h.VOICE,
    sample_rate=h.RATE,
    bit_rate=64000,
    speaking_rate=1.0,
    temperature=1.0,
    timestamp_type="WORD",
)


async def worker(run: h.Run, pool: _ConnectionPool, w: int) -> None:
    n = 0
    while not run.stopping:
        turn, sentences = run.new_turn(w, n)
        n += 1
        try:
            emitter: Any = StubEmitter(turn)
            cid, waiter, conn = await pool.acquire_context(emitter, OPTIONS, h.OPEN_TIMEOUT)
            for s in sentences:
                conn.send_text(cid, s)
            conn.flush_context(cid)
            conn.close_context(cid)
            await asyncio.wait_for(waiter, timeout=h.OPEN_TIMEOUT + 60)
        except (TimeoutError, APIError) as exc:
            run.done(turn, exc)
        else:
            run.done(turn)


async def clock(run: h.Run) -> None:
    await asyncio.sleep(run.window_start - time.perf_counter())
    run.mark_start()
    h.emit({"mark": "start"})
    await asyncio.sleep(run.scenario.duration)
    run.mark_end()
    h.emit({"mark": "end"})


async def main() -> None:
    args = h.parse_args()
    run = h.Run(args)
    base = args.url.split("/tts/")[0] + "/"
    async with aiohttp.ClientSession() as session:
        pool = _ConnectionPool(session, base, "Basic bench", max_connections=h.MAX_CONNECTIONS)
        try:
            await asyncio.gather(
                clock(run), *(worker(run, pool, w) for w in range(args.concurrency))
            )
        finally:
            await pool.aclose()
    h.emit(run.result("livekit-1.8.3"))


if __name__ == "__main__":
    asyncio.run(main())
