"""Driver: the trio_tts pool, on trio (one process, one JSON line on stdout).

``--transport trio-websocket`` runs the same pool over trio-websocket (``open_pool(...,
transport="trio-websocket")``) and reports itself as the driver ``trio_tts/trio-websocket``;
the default is the pool's default transport (websockets sans-io), reported as ``trio_tts``.
"""

from __future__ import annotations

import argparse
import os
import sys

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h

import trio_tts

OPTIONS = trio_tts.VoiceOptions(
    voice=h.VOICE, encoding="PCM", sample_rate=h.RATE, timestamp_type="WORD"
)


def pool_settings() -> dict[str, object]:
    return {
        "defaults": OPTIONS,
        "max_connections": h.MAX_CONNECTIONS,
        "contexts_per_connection": h.CONTEXTS_PER_CONNECTION,
    }


async def worker(run: h.Run, pool: trio_tts.Pool, w: int) -> None:
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
    await trio.sleep_until(trio.current_time() + (run.window_start - run.t0))
    run.mark_start()
    h.emit({"mark": "start"})
    await trio.sleep(run.scenario.duration)
    run.mark_end()
    h.emit({"mark": "end"})


#: ``--transport`` value -> the driver name in the results.
DRIVER_NAMES = {"websockets": "trio_tts", "trio-websocket": "trio_tts/trio-websocket"}


async def main() -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--transport", choices=sorted(DRIVER_NAMES), default="websockets")
    mine, rest = own.parse_known_args()
    args = h.parse_args(rest)
    run = h.Run(args)
    provider = trio_tts.InworldProvider("bench", url=args.url)
    settings = {**pool_settings(), "transport": mine.transport}
    async with trio_tts.open_pool(provider, **settings) as pool:  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:  # the workers and the window's clock
            nursery.start_soon(clock, run)
            for w in range(args.concurrency):
                nursery.start_soon(worker, run, pool, w)
        stats = pool.statistics()
        run.extra["pool"] = {
            "connections_opened": stats.connections_opened,
            "connections_failed": stats.connections_failed,
            "contexts_moved": stats.contexts_moved,
        }
    h.emit(run.result(DRIVER_NAMES[mine.transport]))


if __name__ == "__main__":
    trio.run(main)
