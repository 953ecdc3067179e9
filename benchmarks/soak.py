"""Soak: many turns at high concurrency through the local server, with faults, bytes verified.

``make soak`` runs 100,000 turns at concurrency 100 against a local server in its own process
(so client and server each get a core), with connections dropped at random points and 1 % of
contexts failed by a server error, and reports:

* turns/s, and failed turns by type (every failure must be a typed ``TTSError``);
* bytes verified: every turn's audio is compared with the exact tone the server must send
  (``tone_pcm``) — 0 lost (a finished turn short of bytes), 0 misrouted (bytes that are not
  a prefix of the turn's own audio), 0 duplicated (more bytes than its own);
* RSS of client and server sampled every 10 s (flat after warm-up);
* at the end, slots in use (0) and :func:`trio_tts.testing.check_quiescent` (nothing held).

Connection drops: each server connection is given a random lifetime in frames (geometric,
mean ``frames_per_turn × contexts_per_connection / drop_fraction``), so about ``drop_fraction``
of the turns ride a connection that drops under them (pooled connections are long-lived:
"1 % of connections" would be a handful of drops in 100,000 turns).

Usage::

    python benchmarks/soak.py --turns 100000 --concurrency 100 [--max-seconds 900] [--json F]
    python benchmarks/soak.py --turns 2000 --in-process      # what the test suite runs

Exit status 1 if any byte was lost, misrouted or duplicated, a slot or task leaked, or a turn
ended in something else than audio or a typed error.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio

import trio_tts
from trio_tts.server import (
    ContextErrorFault,
    DropConnection,
    Faults,
    ServerConfig,
    open_server,
    tone_pcm,
)
from trio_tts.testing import assert_quiescent, check_quiescent, fraction

RATE = 24000
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=RATE)
FRAMES_PER_TURN = 9  # contextCreated + ~7 audio chunks + contextClosed, for the texts below
TURN_DEADLINE = 30.0


def text_for(n: int) -> str:
    return f"{chr(65 + n % 26)}{n} speaks a turn."


def soak_faults(drop_fraction: float, error_fraction: float, seed: int) -> Faults:
    rng = random.Random(seed)
    mean_frames = FRAMES_PER_TURN * 5 / drop_fraction if drop_fraction > 0 else math.inf

    def lifetime(_index: int) -> int:
        if math.isinf(mean_frames):
            return 2**62
        return 1 + int(rng.expovariate(1 / mean_frames))

    return Faults(
        drop=DropConnection(after_frames=lifetime) if drop_fraction > 0 else None,
        context_error=ContextErrorFault(
            when=fraction(error_fraction, seed=seed + 1), code=13, message="soak error"
        )
        if error_fraction > 0
        else None,
    )


def server_config(drop_fraction: float, error_fraction: float, seed: int) -> ServerConfig:
    return ServerConfig(synthesizer="tone", faults=soak_faults(drop_fraction, error_fraction, seed))


def rss_mib(pid: int | None = None) -> float:
    path = f"/proc/{pid or 'self'}/status"
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@attrs.define
class Report:
    turns: int = 0
    ok: int = 0
    failed: collections.Counter[str] = attrs.field(factory=collections.Counter)
    bytes_verified: int = 0
    lost: int = 0
    misrouted: int = 0
    duplicated: int = 0
    untyped: list[str] = attrs.field(factory=list)
    rss: list[tuple[float, float, float]] = attrs.field(factory=list)  # (s, client, server)
    elapsed: float = 0.0
    slots_in_use_at_end: int = -1
    quiescence_problems: list[str] = attrs.field(factory=list)
    pool: dict[str, Any] = attrs.field(factory=dict)
    server: dict[str, Any] = attrs.field(factory=dict)

    @property
    def clean(self) -> bool:
        return (
            self.lost == self.misrouted == self.duplicated == 0
            and not self.untyped
            and self.slots_in_use_at_end == 0
            and not self.quiescence_problems
            and not self.server.get("violations")
        )

    def as_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["failed"] = dict(self.failed)
        d["turns_per_second"] = self.turns / self.elapsed if self.elapsed else 0.0
        d["clean"] = self.clean
        return d

    def text(self) -> str:
        rate = self.turns / self.elapsed if self.elapsed else 0.0
        lines = [
            f"turns: {self.turns} in {self.elapsed:.1f} s = {rate:.0f} turns/s",
            f"  ok {self.ok}; failed {sum(self.failed.values())}: {dict(self.failed)}",
            f"bytes verified: {self.bytes_verified:,} — lost {self.lost}, "
            f"misrouted {self.misrouted}, duplicated {self.duplicated}",
            f"untyped failures: {len(self.untyped)} {self.untyped[:3]}",
            "RSS MiB (t s: client / server): "
            + ", ".join(f"{t:.0f}: {c:.0f}/{s:.0f}" for t, c, s in self.rss),
            f"slots in use at the end: {self.slots_in_use_at_end}; "
            f"quiescent: {not self.quiescence_problems} {self.quiescence_problems[:3]}",
            f"pool: {self.pool}",
            f"server: {self.server}",
            f"CLEAN: {self.clean}",
        ]
        return "\n".join(lines)


async def one_turn(pool: trio_tts.Pool, n: int, report: Report) -> None:
    text = text_for(n)
    expected = tone_pcm(text, RATE)
    got = bytearray()
    kind = "ok"
    with trio.move_on_after(TURN_DEADLINE) as scope:
        try:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(text)
                await ctx.finish()
                async for event in ctx:
                    if isinstance(event, trio_tts.Audio):
                        got += event.data
        except trio_tts.TTSError as exc:
            kind = type(exc).__name__
        except Exception as exc:  # anything else is a bug: counted, reported
            kind = "untyped"
            report.untyped.append(repr(exc)[:200])
    if scope.cancelled_caught:
        kind = "deadline"
    data = bytes(got)
    report.turns += 1
    if len(data) > len(expected):
        report.duplicated += 1
    elif not expected.startswith(data):
        report.misrouted += 1
    elif kind == "ok" and len(data) < len(expected):
        report.lost += 1
    else:
        report.bytes_verified += len(data)
    if kind == "ok":
        report.ok += 1
    else:
        report.failed[kind] += 1


async def drive(
    pool: trio_tts.Pool,
    *,
    turns: int,
    concurrency: int,
    max_seconds: float,
    server_pid: int | None,
    progress: bool,
) -> Report:
    report = Report()
    counter = iter(range(turns))
    start = time.monotonic()
    stop_at = start + max_seconds

    async def worker() -> None:
        for n in counter:
            if time.monotonic() >= stop_at:
                return
            await one_turn(pool, n, report)

    async def sampler() -> None:
        while True:
            report.rss.append(
                (time.monotonic() - start, rss_mib(), rss_mib(server_pid) if server_pid else 0.0)
            )
            if progress:
                rate = report.turns / max(1e-9, time.monotonic() - start)
                print(
                    f"[{time.monotonic() - start:6.0f} s] {report.turns} turns "
                    f"({rate:.0f}/s), failed {dict(report.failed)}, {pool!r}",
                    file=sys.stderr,
                    flush=True,
                )
            await trio.sleep(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler)
        async with trio.open_nursery() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        report.elapsed = time.monotonic() - start
        report.rss.append((report.elapsed, rss_mib(), rss_mib(server_pid) if server_pid else 0.0))
        nursery.cancel_scope.cancel()
    with contextlib.suppress(AssertionError):  # the report lists what is still held
        await assert_quiescent(pool, timeout=30)
    report.quiescence_problems = check_quiescent(pool)
    report.slots_in_use_at_end = pool.statistics().contexts_in_use
    report.pool = attrs.asdict(pool.statistics())
    return report


async def run_soak(
    *,
    turns: int = 100_000,
    concurrency: int = 100,
    drop_fraction: float = 0.01,
    error_fraction: float = 0.01,
    seed: int = 7,
    in_process: bool = False,
    max_seconds: float = math.inf,
    progress: bool = False,
) -> Report:
    """Run the soak and return its :class:`Report` (the test suite calls this)."""
    settings: dict[str, Any] = {"defaults": PCM, "max_connections": 20}
    if in_process:
        async with open_server(server_config(drop_fraction, error_fraction, seed)) as server:
            provider = trio_tts.InworldProvider(url=server.ws_url)
            async with trio_tts.open_pool(provider, **settings) as pool:
                report = await drive(
                    pool,
                    turns=turns,
                    concurrency=concurrency,
                    max_seconds=max_seconds,
                    server_pid=None,
                    progress=progress,
                )
            stats = server.statistics()
            report.server = {
                "connections_accepted": stats.connections_accepted,
                "peak_connections": stats.peak_connections,
                "peak_contexts_per_connection": stats.peak_contexts_per_connection,
                "contexts_created": stats.contexts_created,
                "violations": list(stats.violations),
            }
            return report
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "server.json"
        args = [
            sys.executable, __file__, "--serve", "--stats-file", str(stats_file),
            "--drop-fraction", str(drop_fraction), "--error-fraction", str(error_fraction),
            "--seed", str(seed),
        ]  # fmt: skip
        proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive_some(64)
            port = int(line)
            url = f"ws://127.0.0.1:{port}/tts/v1/voice:streamBidirectional"
            async with trio_tts.open_pool(trio_tts.InworldProvider(url=url), **settings) as pool:
                report = await drive(
                    pool,
                    turns=turns,
                    concurrency=concurrency,
                    max_seconds=max_seconds,
                    server_pid=proc.pid,
                    progress=progress,
                )
            await trio.sleep(1.5)  # the server writes its statistics every second
            stats = trio.Path(stats_file)
            report.server = json.loads(await stats.read_text()) if await stats.exists() else {}
        finally:
            proc.terminate()
            with trio.move_on_after(10):
                await proc.wait()
        return report


async def serve(stats_file: Path, drop_fraction: float, error_fraction: float, seed: int) -> None:
    async with open_server(server_config(drop_fraction, error_fraction, seed)) as server:
        print(server.port, flush=True)
        while True:
            s = server.statistics()
            await trio.Path(stats_file).write_text(
                json.dumps(
                    {
                        "connections_accepted": s.connections_accepted,
                        "peak_connections": s.peak_connections,
                        "peak_contexts_per_connection": s.peak_contexts_per_connection,
                        "contexts_created": s.contexts_created,
                        "violations": list(s.violations),
                    }
                )
            )
            await trio.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--drop-fraction", type=float, default=0.01)
    parser.add_argument("--error-fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-seconds", type=float, default=math.inf)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve, args.stats_file, args.drop_fraction, args.error_fraction, args.seed)
        return 0
    report = trio.run(
        lambda: run_soak(
            turns=args.turns,
            concurrency=args.concurrency,
            drop_fraction=args.drop_fraction,
            error_fraction=args.error_fraction,
            seed=args.seed,
            in_process=args.in_process,
            max_seconds=args.max_seconds,
            progress=True,
        )
    )
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return 0 if report.clean else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
