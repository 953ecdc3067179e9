"""What telemetry costs on the hot path: client CPU per turn with telemetry off and on.

Run: ``.venv/bin/python benchmarks/bench_telemetry.py [--turns N] [--reps R]``.

The local server (tone synthesizer, 20 ms chunks) runs in a separate process, so the CPU
measured (``time.process_time``: every thread of the client process, the SDK's included) is
the client's alone. ``--concurrency`` workers share one pool and loop turns; a *short* turn is
a two-word text (one or two audio events: the per-context cost dominates), a *long* one ~2.6 s
of audio in ~130 events (the per-event cost dominates). Modes, interleaved and rotated per
repetition (each repetition a fresh ``trio.run`` and pool, after a warm-up):

* ``off``        — ``open_pool(...)`` with no telemetry (the default);
* ``otel-api``   — ``telemetry=OpenTelemetry()`` with no SDK installed as provider: the
  OpenTelemetry API's no-op meter and tracer;
* ``otel-sdk``   — ``OpenTelemetry(meter_provider=..., tracer_provider=...)`` with the SDK:
  a ``MeterProvider`` with a metric reader, a ``TracerProvider`` with a ``BatchSpanProcessor``
  and an exporter that drops the batches (the SDK's own cost, not an exporter's I/O);
* ``live``       — the ``metrics_port`` live view (one sample per context).

``--modes off`` alone runs on a tree without telemetry (compare a commit before it with
``PYTHONPATH=<that tree>``). The table prints the median and the minimum over repetitions
(the minimum is the least disturbed by other processes on a shared machine) and their
differences to ``off``; ``--json`` adds every sample.

Then, unless ``--no-calls``, the telemetry calls alone: the exact sequence the pool makes for
one context (queued, placed, first audio, flush completed, released), ``--calls`` times in a
loop, per mode — the cost per context without the noise of the rest of a turn.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio_tts

SHORT = "Hi there."
LONG = "The quick brown fox jumps over the lazy dog."
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=16000)
MODES = ("off", "otel-api", "otel-sdk", "live")


def _serve(conn: Any) -> None:
    from trio_tts.server import ServerConfig, open_server

    async def main() -> None:
        config = ServerConfig(synthesizer="tone", chunk_ms=20, max_connections=1000)
        async with open_server(config) as server:
            conn.send(server.ws_url)
            await trio.sleep_forever()

    trio.run(main)


def _settings(mode: str) -> dict[str, Any]:
    """The open_pool arguments of ``mode`` (OpenTelemetry imported only when asked for)."""
    if mode == "off":
        return {}
    if mode == "live":
        return {"metrics_port": 0}
    from trio_tts.otel import OpenTelemetry

    if mode == "otel-api":
        return {"telemetry": OpenTelemetry()}
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracers = TracerProvider()
    tracers.add_span_processor(BatchSpanProcessor(Drop()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {"telemetry": OpenTelemetry(meter_provider=meters, tracer_provider=tracers)}


async def _turn(pool: trio_tts.Pool[trio_tts.VoiceOptions], text: str) -> int:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return sum([1 async for _ in ctx])


async def _loop(
    pool: trio_tts.Pool[trio_tts.VoiceOptions], text: str, turns: int, workers: int
) -> int:
    events = 0
    left = turns

    async def worker() -> None:
        nonlocal events, left
        while left > 0:
            left -= 1
            got = await _turn(pool, text)  # (not ``events += await``: it reads events first)
            events += got

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return events


def run_once(url: str, mode: str, turns: int, workers: int) -> dict[str, float]:
    settings = _settings(mode)

    async def main() -> dict[str, float]:
        provider = trio_tts.InworldProvider(url=url)
        async with trio_tts.open_pool(
            provider, defaults=PCM, max_connections=workers, **settings
        ) as pool:
            await pool.prewarm(max(1, workers // 5))
            await _loop(pool, SHORT, workers * 4, workers)  # warm-up
            c0 = time.process_time()
            await _loop(pool, SHORT, turns, workers)
            short = (time.process_time() - c0) / turns
            c0 = time.process_time()
            events = await _loop(pool, LONG, turns // 4, workers)
            long = (time.process_time() - c0) / (turns // 4)
        return {"short_us": short * 1e6, "long_us": long * 1e6, "events": events / (turns // 4)}

    return trio.run(main)


class _Provider:
    name = "inworld"


class _Observed:
    """What a telemetry reads of a pool (for the calls-only measurement)."""

    provider = _Provider()

    def statistics(self) -> Any:
        raise RuntimeError("not read here")

    def inspect(self) -> Any:
        raise RuntimeError("not read here")


def calls_cost(mode: str, n: int) -> float:
    """µs per context of the pool's telemetry calls for one context in ``mode``."""
    from trio_tts._core.live import LiveMetrics
    from trio_tts._core.telemetry import open_probe

    telemetry = LiveMetrics(0) if mode == "live" else _settings(mode).get("telemetry")

    async def main() -> float:
        probe = open_probe(_Observed(), [telemetry])
        closed = trio_tts.ContextState.CLOSED
        c0 = time.process_time()
        for _ in range(n):
            ctx = probe.context_queued("c", PCM)
            ctx.placed(1)
            ctx.first_audio()
            ctx.flushed()
            ctx.ended(closed, None, 64000)
        return (time.process_time() - c0) / n * 1e6

    return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000, help="short turns per repetition")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", help="write every sample to this file")
    parser.add_argument("--calls", type=int, default=20000, help="contexts for the calls-only")
    parser.add_argument("--no-calls", action="store_true")
    args = parser.parse_args()
    modes = args.modes.split(",")

    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(there,), daemon=True)
    server.start()
    url = here.recv()
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    try:
        for rep in range(args.reps):
            for i in range(len(modes)):
                mode = modes[(i + rep) % len(modes)]
                samples[mode].append(run_once(url, mode, args.turns, args.concurrency))
    finally:
        server.kill()

    def med(mode: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[mode])

    events = med(modes[0], "events")
    print(f"server: tone, 20 ms chunks, separate process; {args.concurrency} workers;"
          f" {args.turns} short + {args.turns // 4} long turns x {args.reps} repetitions;"
          f" long turn: {events:.0f} events")  # fmt: skip
    def least(mode: str, key: str) -> float:
        return min(s[key] for s in samples[mode])

    def delta(value: float, base: float) -> str:
        return f"{100 * (value / base - 1):+.1f}%"

    columns = ("short median", "short min", "long median", "long min")
    header = f"{'mode':<10}" + "".join(f"{c + ' µs/turn':>20}{'Δ off':>8}" for c in columns)
    print(header)
    print("-" * len(header))
    for mode in modes:
        row = f"{mode:<10}"
        for pick, key in ((med, "short_us"), (least, "short_us"), (med, "long_us"),
                          (least, "long_us")):  # fmt: skip
            value = pick(mode, key)
            base = pick("off", key) if "off" in samples else None
            row += f"{value:>20.0f}{delta(value, base) if base else '-':>8}"
        print(row)
    calls: dict[str, float] = {}
    if not args.no_calls:
        print(f"\ntelemetry calls alone, {args.calls} contexts: µs per context")
        for mode in modes:
            calls[mode] = statistics.median(calls_cost(mode, args.calls) for _ in range(3))
            print(f"{mode:<10}{calls[mode]:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "samples": samples, "calls": calls}, f, indent=1)


if __name__ == "__main__":
    main()
