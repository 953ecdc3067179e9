"""Driver: the trio_tts pool from asyncio, through ``bridges.asyncio_adapter.AsyncioPool``."""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h
from driver_trio import pool_settings

import trio_tts
from bridges.asyncio_adapter import AsyncioPool


async def worker(run: h.Run, pool: AsyncioPool, w: int) -> None:
    n = 0
    while not run.stopping:
        turn, sentences = run.new_turn(w, n)
        n += 1
        try:
            ctx = await pool.open_context(timeout=h.OPEN_TIMEOUT)
            async with ctx:
                for s in sentences:
                    await ctx.send_text(s)
                await ctx.flush()
                await ctx.finish()
                async for ev in ctx:
                    if isinstance(ev, trio_tts.Audio):
                        turn.audio(ev.data)
        except trio_tts.TTSError as exc:
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
    provider = trio_tts.InworldProvider("bench", url=args.url)
    async with AsyncioPool(provider, **pool_settings()) as pool:
        await asyncio.gather(clock(run), *(worker(run, pool, w) for w in range(args.concurrency)))
        stats = pool.statistics()
        run.extra["pool"] = {
            "connections_opened": stats.connections_opened,
            "connections_failed": stats.connections_failed,
            "contexts_moved": stats.contexts_moved,
        }
    h.emit(run.result("trio_tts/asyncio"))


if __name__ == "__main__":
    asyncio.run(main())
