"""What the asyncio bridge costs: per crossing, per event and per context (utterance).

Run: ``.venv/bin/python benchmarks/bench_bridge.py [--turns N] [--append PATH]``
(``--append`` adds the tables as markdown to ``PATH``: ``make bench`` appends them to
``results/livekit_plugin.md``, so the bridge's cost sits beside the plugin comparison).

The local server (tone synthesizer, 20 ms chunks so a turn has many events) runs in a
separate process, so the CPU measured (``time.process_time``) is the client's alone. The
same workload runs on:

* ``trio``            — the engine itself (``trio.run``), the baseline;
* ``asyncio+guest``   — ``AsyncioPool`` on the default asyncio loop (trio as a guest);
* ``uvloop+guest``    — the same on uvloop;
* ``trio_asyncio``    — ``AsyncioPool.from_trio_pool`` from asyncio code under trio_asyncio;

each with ``prefetch=8`` (read-ahead, the default) and ``prefetch=0`` (one crossing per event).

Tables:

(a) a no-op crossing (``await pool.run(trio.lowlevel.checkpoint)``): wall µs per call;
(b) long turns (~1 s of audio in ~50 events each): client CPU per event, and the
    difference to the trio baseline = the bridge's overhead per event;
(c) short turns (1–2 events): client CPU per turn and the difference to the trio baseline =
    the bridge's overhead per context (open, send, finish, iterate, close: ~5 crossings).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio_asyncio
import uvloop

import trio_tts
from bridges.asyncio_adapter import AsyncioPool

LONG = "The quick brown fox jumps over the lazy dog."  # 44 chars × 60 ms ≈ 2.6 s, 20 ms chunks
SHORT = "Hi."
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=16000)


def _serve(conn: Any) -> None:
    from trio_tts.server import ServerConfig, open_server

    async def main() -> None:
        config = ServerConfig(synthesizer="tone", chunk_ms=20, max_connections=1000)
        async with open_server(config) as server:
            conn.send(server.ws_url)
            await trio.sleep_forever()

    trio.run(main)


# -- workloads: the same code shape on each side ------------------------------------------


async def trio_turn(pool: trio_tts.Pool, text: str) -> int:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return sum([1 async for _ in ctx])


async def aio_turn(pool: AsyncioPool, text: str) -> int:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return sum([1 async for _ in ctx])


async def aio_workload(pool: AsyncioPool, turns: int, crossings: int) -> dict[str, float]:
    await pool.prewarm()
    for _ in range(3):
        await aio_turn(pool, LONG)  # warm up
    t0 = time.perf_counter()
    for _ in range(crossings):
        await pool.run(trio.lowlevel.checkpoint)
    noop = (time.perf_counter() - t0) / crossings
    c0 = time.process_time()
    events = 0
    for _ in range(turns):
        events += await aio_turn(pool, LONG)
    long_cpu = time.process_time() - c0
    c0 = time.process_time()
    for _ in range(turns):
        await aio_turn(pool, SHORT)
    short_cpu = time.process_time() - c0
    return {"noop": noop, "per_event": long_cpu / events, "events": events / turns,
            "per_turn": short_cpu / turns}  # fmt: skip


async def trio_workload(pool: trio_tts.Pool, turns: int, crossings: int) -> dict[str, float]:
    await pool.prewarm()
    for _ in range(3):
        await trio_turn(pool, LONG)
    t0 = time.perf_counter()
    for _ in range(crossings):
        await trio.lowlevel.checkpoint()
    noop = (time.perf_counter() - t0) / crossings
    c0 = time.process_time()
    events = 0
    for _ in range(turns):
        events += await trio_turn(pool, LONG)
    long_cpu = time.process_time() - c0
    c0 = time.process_time()
    for _ in range(turns):
        await trio_turn(pool, SHORT)
    short_cpu = time.process_time() - c0
    return {"noop": noop, "per_event": long_cpu / events, "events": events / turns,
            "per_turn": short_cpu / turns}  # fmt: skip


# -- hosting modes --------------------------------------------------------------------------


def run_trio(url: str, turns: int, crossings: int, prefetch: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        async with trio_tts.open_pool(trio_tts.InworldProvider(url=url), defaults=PCM) as pool:
            return await trio_workload(pool, turns, crossings)

    return trio.run(main)


def run_guest(
    url: str, turns: int, crossings: int, prefetch: int, factory: Callable[[], Any]
) -> dict[str, float]:
    async def main() -> dict[str, float]:
        provider = trio_tts.InworldProvider(url=url)
        async with AsyncioPool(provider, defaults=PCM, prefetch=prefetch) as pool:
            return await aio_workload(pool, turns, crossings)

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def run_trio_asyncio(url: str, turns: int, crossings: int, prefetch: int) -> dict[str, float]:
    async def aio_main(pool: trio_tts.Pool) -> dict[str, float]:
        async with AsyncioPool.from_trio_pool(pool, prefetch=prefetch) as apool:
            return await aio_workload(apool, turns, crossings)

    async def main() -> dict[str, float]:
        async with (
            trio_tts.open_pool(trio_tts.InworldProvider(url=url), defaults=PCM) as pool,
            trio_asyncio.open_loop(),
        ):
            result: dict[str, float] = await trio_asyncio.aio_as_trio(aio_main)(pool)
            return result

    return trio.run(main)


MODES: dict[str, Callable[[str, int, int, int], dict[str, float]]] = {
    "trio": run_trio,
    "asyncio+guest": lambda *a: run_guest(*a, factory=asyncio.SelectorEventLoop),
    "uvloop+guest": lambda *a: run_guest(*a, factory=uvloop.new_event_loop),
    "trio_asyncio": run_trio_asyncio,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--crossings", type=int, default=20000)
    parser.add_argument("--append", metavar="PATH", help="append the tables as markdown")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(there,), daemon=True)
    server.start()
    url = here.recv()
    try:
        rows: list[tuple[str, int, dict[str, float]]] = []
        for name, fn in MODES.items():
            for prefetch in (8, 0) if name != "trio" else (0,):
                rows.append((name, prefetch, fn(url, args.turns, args.crossings, prefetch)))
    finally:
        server.kill()
    base = rows[0][2]
    print(f"server: tone, 20 ms chunks, separate process; {args.turns} turns per workload")
    print(f"long turn: {base['events']:.0f} events; short turn: '{SHORT}'\n")
    header = (
        f"{'mode':<15}{'prefetch':>9}{'(a) noop µs':>13}{'(b) CPU µs/event':>18}"
        f"{'Δ/event':>10}{'(c) CPU µs/turn':>17}{'Δ/context':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, prefetch, r in rows:
        pre = "-" if name == "trio" else str(prefetch)
        print(
            f"{name:<15}{pre:>9}{r['noop'] * 1e6:>13.2f}{r['per_event'] * 1e6:>18.1f}"
            f"{(r['per_event'] - base['per_event']) * 1e6:>+10.1f}"
            f"{r['per_turn'] * 1e6:>17.0f}{(r['per_turn'] - base['per_turn']) * 1e6:>+11.0f}"
        )
    if args.append:
        with open(args.append, "a") as out:
            out.write(markdown(rows, args.turns))


def markdown(rows: list[tuple[str, int, dict[str, float]]], turns: int) -> str:
    """The three tables as one markdown table (Δ: over the plain trio engine)."""
    base = rows[0][2]
    lines = [
        "",
        "### The asyncio bridge's own cost",
        "",
        f"`benchmarks/bench_bridge.py --turns {turns}`, run "
        f"{time.strftime('%Y-%m-%d %H:%M')}: the same turns through the trio engine itself "
        "and through `bridges.asyncio_adapter` (what `bridges.livekit` runs on), the local "
        "server (tone, 20 ms chunks) in its own process; client CPU only. *prefetch* is the "
        "read-ahead (8 events, the default; 0: one crossing per event).",
        "",
        "| host | prefetch | no-op crossing µs | CPU µs per event | bridge's µs per event "
        "| CPU µs per short turn | bridge's µs per context |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, prefetch, r in rows:
        pre = "–" if name == "trio" else str(prefetch)
        lines.append(
            f"| {name} | {pre} | {r['noop'] * 1e6:.2f} | {r['per_event'] * 1e6:.1f} | "
            f"{(r['per_event'] - base['per_event']) * 1e6:+.1f} | {r['per_turn'] * 1e6:.0f} | "
            f"{(r['per_turn'] - base['per_turn']) * 1e6:+.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
