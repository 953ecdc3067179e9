"""ElevenLabs: our pool vs the official LiveKit plugin's own connection handling.

    .venv/bin/python benchmarks/bench_elevenlabs.py [--window 6] [--warmup 1.5]
        [--scenarios steady5,steady20,barge5] [--drivers pool,ours,official] [--md PATH]

Three clients, each in its own process, against the same local server (``trio_tts.server``,
what ``trio-tts serve`` runs: eSpeak NG speech, ElevenLabs' limit of 5 contexts per socket
with the 1008 close, audio paced at 4x real time as a real service streams it; a fresh server
per run, so its counters are that run's):

* ``pool``     — ``trio_tts.open_pool(ElevenLabsProvider)`` on trio: the engine alone;
* ``ours``     — ``bridges.livekit_elevenlabs.TTS`` (LiveKit 1.8.9, asyncio, the shared pool);
* ``official`` — ``livekit.plugins.elevenlabs.TTS`` 1.8.9: one socket per ``TTS``, no cap.

Each driver process serves ``C`` concurrent callers from one ``TTS`` (one pool), each looping
turns (closed loop), with ``max_retry=0`` (no retry hides a failure) and a 10 s timeout:

* ``steadyC`` — a turn: push two sentences, end the input, read every frame until the end;
* ``bargeC``  — a barge-in: push two sentences, take the first frame, close the stream (the
  user interrupted), start the next turn at once (livekit/agents-js#1985).

Measured over a window after a warm-up: turns/s (that ended well in the window), CPU per such
turn (``getrusage`` of the driver process over the window / those turns), time to first audio
(from the first ``push_text``, or ``open_context`` for ``pool``, to the first audio) p50/p99,
failed turns (any error or no audio within 15 s; a steady turn whose audio length differs
from the other turns of the same text counts too), and the server's own counters: the peak
of contexts on one socket and the limit violations (a sixth context: the 1008 close).
Audio is ``pcm_24000`` (LiveKit's default mp3 would add the same decoding to both plugins).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "bench-key"
ENCODING = "pcm_24000"
TURN_TIMEOUT = 15.0
#: 200 ms chunks every 50 ms: 4x real time.
PACE = 0.05
SCENARIOS = {"steady5": ("steady", 5), "steady20": ("steady", 20), "barge5": ("barge", 5)}
DRIVERS = ("pool", "ours", "official")
LABELS = {
    "pool": "trio_tts pool (trio)",
    "ours": "bridges.livekit_elevenlabs",
    "official": "livekit-plugins-elevenlabs 1.8.9",
}


def sentences(worker: int) -> list[str]:
    """A caller's turn text (the same every turn, so its audio length is known)."""
    return [
        f"Caller number {worker} asks about the weather in the mountains today. ",
        "The forecast says it will be sunny with a light breeze in the afternoon. ",
    ]


# ======================================================================= the driver process


class Stats:
    def __init__(self, warmup: float, window: float) -> None:
        self.t0 = time.perf_counter()
        self.start = self.t0 + warmup
        self.end = self.start + window
        self.ok = 0
        self.failed: Counter[str] = Counter()
        self.ttfa: list[float] = []
        self.lengths: dict[int, Counter[int]] = {}
        self.lengths_by_turn: list[tuple[int, int]] = []
        self.cpu0 = 0.0

    def running(self) -> bool:
        return time.perf_counter() < self.end

    def record(
        self, worker: int, started: float, ttfa: float | None, length: int, error: str | None
    ) -> None:
        """One turn: a good one counts if it ended in the window, a failed one if it
        overlapped the window (a hung turn ends long after it)."""
        now = time.perf_counter()
        if error is not None or ttfa is None:
            if started < self.end and now >= self.start:
                self.failed[error or "no audio"] += 1
            return
        if not self.start <= now < self.end:
            return
        self.ok += 1
        self.ttfa.append(ttfa)
        if length >= 0:
            self.lengths.setdefault(worker, Counter())[length] += 1
            self.lengths_by_turn.append((worker, length))

    async def mark(self) -> None:
        await asyncio.sleep(max(0.0, self.start - time.perf_counter()))
        self.cpu0 = _cpu()

    def result(self, window: float) -> dict[str, Any]:
        cpu = _cpu() - self.cpu0
        # A steady turn whose audio differs from its text's usual length lost or gained audio.
        usual = {w: c.most_common(1)[0][0] for w, c in self.lengths.items()}
        mismatched = sum(1 for w, n in self.lengths_by_turn if n != usual[w])
        if mismatched:
            self.failed["AudioMismatch"] += mismatched
            self.ok -= mismatched
        ttfa = sorted(self.ttfa)
        return {
            "ok": self.ok,
            "failed": dict(self.failed),
            "turns_per_s": self.ok / window,
            "cpu_ms_per_turn": 1000 * cpu / self.ok if self.ok else None,
            "ttfa_p50_ms": 1000 * statistics.median(ttfa) if ttfa else None,
            "ttfa_p99_ms": 1000 * ttfa[min(len(ttfa) - 1, int(0.99 * len(ttfa)))] if ttfa else None,
        }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "status_code", None)
    return type(exc).__name__ + (f"({code})" if code not in (None, -1) else "")


async def livekit_driver(args: argparse.Namespace, stats: Stats, plugin: Any) -> None:
    import aiohttp
    from livekit.agents import APIConnectOptions, APIError

    conn = APIConnectOptions(max_retry=0, timeout=10)
    barge = args.kind == "barge"

    async with aiohttp.ClientSession() as session:
        tts = plugin.TTS(base_url=args.url, api_key=KEY, encoding=ENCODING, http_session=session)

        async def caller(w: int) -> None:
            while stats.running():
                stream = tts.stream(conn_options=conn)
                first: float | None = None
                length, error = 0, None
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(TURN_TIMEOUT):
                        for sentence in sentences(w):
                            stream.push_text(sentence)
                        stream.end_input()
                        async for frame in stream:
                            if first is None:
                                first = time.perf_counter() - t0
                                if barge:
                                    break
                            length += len(frame.frame.data)
                except APIError as exc:
                    error = _reason(exc)
                except TimeoutError:
                    error = "hung"
                finally:
                    await stream.aclose()
                stats.record(w, t0, first, -1 if barge else length, error)

        await asyncio.gather(stats.mark(), *(caller(w) for w in range(args.concurrency)))
        await tts.aclose()


def pool_driver(args: argparse.Namespace, stats: Stats) -> None:
    import trio

    import trio_tts

    provider = trio_tts.ElevenLabsProvider(KEY, url=args.url)
    opts = trio_tts.ElevenLabsOptions(output_format=ENCODING, auto_mode=True)
    barge = args.kind == "barge"

    async def caller(pool: trio_tts.Pool[Any], w: int) -> None:
        while stats.running():
            first: float | None = None
            length, error = 0, None
            t0 = time.perf_counter()
            try:
                with trio.fail_after(TURN_TIMEOUT):
                    async with await pool.open_context(timeout=10) as ctx:
                        for sentence in sentences(w):
                            await ctx.send_text(sentence, flush=True)
                        await ctx.finish()
                        async for event in ctx:
                            if isinstance(event, trio_tts.Audio) and event.data:
                                if first is None:
                                    first = time.perf_counter() - t0
                                    if barge:
                                        break
                                length += len(event.data)
            except trio_tts.TTSError as exc:
                error = type(exc).__name__
            except trio.TooSlowError:
                error = "hung"
            stats.record(w, t0, first, -1 if barge else length, error)

    async def main() -> None:
        async with trio_tts.open_pool(provider, defaults=opts) as pool, trio.open_nursery() as n:
            for w in range(args.concurrency):
                n.start_soon(caller, pool, w)
            await trio.sleep(max(0.0, stats.start - time.perf_counter()))
            stats.cpu0 = _cpu()

    trio.run(main)


def drive(args: argparse.Namespace) -> None:
    sys.path.insert(0, ROOT)
    # Imported before the clock starts (LiveKit's imports take seconds).
    if args.driver == "official":
        from livekit.plugins import elevenlabs as plugin
    elif args.driver == "ours":
        from bridges import livekit_elevenlabs as plugin  # type: ignore[no-redef]
    else:
        import trio_tts as plugin  # type: ignore[no-redef]
    stats = Stats(args.warmup, args.window)
    if args.driver == "pool":
        pool_driver(args, stats)
    else:
        asyncio.run(livekit_driver(args, stats, plugin))
    result = stats.result(args.window)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# ======================================================================= the orchestrator


@contextmanager
def server(pace: float = PACE) -> Any:
    """A fresh local server in a thread of this process (its own trio run); audio frames
    ``pace`` seconds apart (0: as fast as the socket takes them)."""
    import trio

    from trio_tts.server import Faults, PaceAudio, ServerConfig, open_server

    faults = Faults(pace_audio=PaceAudio(pace) if pace > 0 else None)
    config = ServerConfig(api_key=KEY, faults=faults)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with open_server(config) as srv:
            box.update(srv=srv, token=trio.lowlevel.current_trio_token(), stop=trio.Event())
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    try:
        yield (
            box["srv"],
            lambda: trio.from_thread.run_sync(box["srv"].statistics, trio_token=box["token"]),
        )
    finally:
        box["token"].run_sync_soon(box["stop"].set)
        thread.join(30)


def run_one(driver: str, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    kind, concurrency = SCENARIOS[scenario]
    with server(args.pace) as (srv, stats):
        cmd = [
            sys.executable, __file__, "--drive", driver, "--kind", kind,
            "--concurrency", str(concurrency), "--url", srv.elevenlabs_url,
            "--warmup", str(args.warmup), "--window", str(args.window),
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError(f"{driver} {scenario} failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        s = stats()
        result.update(
            driver=driver,
            scenario=scenario,
            server_peak_per_socket=s.peak_contexts_per_connection,
            server_violations=len(s.violations),
            server_connections=s.connections_accepted,
        )
        return result


def _fmt(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | client | turns/s | CPU ms/turn | TTFA p50 ms | TTFA p99 ms | failed turns"
        " | server: peak contexts/socket, 1008 closes, sockets |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        failed = sum(r["failed"].values())
        total = failed + r["ok"]
        why = ", ".join(f"{k} {v}" for k, v in sorted(r["failed"].items()))
        share = f"{failed} of {total} ({100 * failed / total:.0f}%)" if total else "0"
        lines.append(
            f"| {r['scenario']} | {LABELS[r['driver']]} | {_fmt(r['turns_per_s'], 1)}"
            f" | {_fmt(r['cpu_ms_per_turn'], 2)} | {_fmt(r['ttfa_p50_ms'])}"
            f" | {_fmt(r['ttfa_p99_ms'])} | {share}{': ' + why if why else ''}"
            f" | {r['server_peak_per_socket']}, {r['server_violations']},"
            f" {r['server_connections']} |"
        )
    return "\n".join(lines)


def _pacing(pace: float) -> str:
    return f"audio paced at {0.2 / pace:g}x real time" if pace > 0 else "audio unpaced"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drive", dest="driver", choices=DRIVERS)
    parser.add_argument("--kind", choices=("steady", "barge"))
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--url")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--md", default=os.path.join(HERE, "results", "elevenlabs.md"))
    parser.add_argument("--pace", type=float, default=PACE, help="s between audio frames")
    args = parser.parse_args()
    if args.driver:
        drive(args)
        return
    sys.path.insert(0, ROOT)
    load = os.getloadavg()[0]
    results = []
    for scenario in args.scenarios.split(","):
        for driver in args.drivers.split(","):
            result = run_one(driver, scenario, args)
            print(json.dumps(result), flush=True)
            results.append(result)
    md = table(results)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(
                "# ElevenLabs: the pool vs the official LiveKit plugin\n\n"
                f"`benchmarks/bench_elevenlabs.py`, {args.window:g} s window after"
                f" {args.warmup:g} s warm-up, {os.cpu_count()} cores (load average"
                f" {load:.1f} at the start), {ENCODING}, {_pacing(args.pace)}, one run."
                f"\n\n{md}\n"
            )


if __name__ == "__main__":
    main()
