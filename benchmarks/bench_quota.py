"""RedisQuota benchmark against a throwaway local redis-server (loopback).

    .venv/bin/python benchmarks/bench_quota.py [--seconds 3] [--json out.json]

Sections (default settings: ``lease_ttl`` 10 s; a fresh Redis first waits out its restart
guard, up to one ``lease_ttl``, before the first grant):

- **cycle**: one task, capacity 16, 3,000 *full cycles* (``acquire`` then ``release``, timed
  from one acquire's start to the next's); acquire latency alone; script calls per cycle
  (Redis ``EVALSHA`` count, heartbeats included, after every release reached Redis).
- **handoff**: two quotas (two holders, as two processes would be), capacity 1: the holder
  releases while the other waits; time from ``release()`` to the waiter's grant.
- **contended**: 4 processes × 30 tasks over capacity 16, each task looping full cycles for
  ``--seconds``: acquires per second, per client CPU-second and per CPU-second including
  Redis, script calls per cycle, cycle time p50/p99 (waiting for a slot included).
- **reclaim**: all 100 slots of a ``kill -9``ed process come back (lease TTL 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio_tts
from trio_tts.testing.redis_server import RedisServer


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def info(quota: trio_tts.RedisQuota) -> tuple[int, float]:
    """Script calls so far (EVALSHA + EVAL) and Redis CPU seconds so far."""
    stats = await quota.client.info("commandstats")
    calls = 0
    for key in ("cmdstat_evalsha", "cmdstat_eval"):
        stat = stats.get(key, {})
        calls += int(stat.get("calls", 0)) if isinstance(stat, dict) else 0
    cpu = await quota.client.info("cpu")
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def cycle(url: str, n: int = 3000) -> dict[str, float]:
    async with trio_tts.open_redis_quota(url, "bench:cycle", 16) as quota:
        for _ in range(300):  # waits out the restart guard; warms connections, script cache
            quota.release(await quota.acquire())
        await quota.flush()
        cycles, acquires = [], []
        calls0, _ = await info(quota)
        cpu0 = time.process_time()
        last = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            lease = await quota.acquire()
            acquires.append(time.perf_counter() - t0)
            quota.release(lease)
            await trio.lowlevel.checkpoint()
            now = time.perf_counter()
            cycles.append(now - last)
            last = now
        cpu = time.process_time() - cpu0
        await quota.flush()
        calls = (await info(quota))[0] - calls0
    return {
        "cycle_p50_us": pct(cycles, 0.5) * 1e6,
        "cycle_p99_us": pct(cycles, 0.99) * 1e6,
        "acquire_p50_us": pct(acquires, 0.5) * 1e6,
        "acquire_p99_us": pct(acquires, 0.99) * 1e6,
        "script_calls_per_cycle": calls / n,
        "client_cpu_us_per_cycle": cpu / n * 1e6,
    }


async def handoff(url: str, n: int = 300) -> dict[str, float]:
    async with (
        trio_tts.open_redis_quota(url, "bench:handoff", 1) as a,
        trio_tts.open_redis_quota(url, "bench:handoff", 1) as b,
    ):
        queue_key = a.redis_keys[3]
        times: list[float] = []
        held = await a.acquire()
        holder, waiter = a, b
        for _ in range(n):
            got: list[trio_tts.Lease] = []

            async def wait(q: trio_tts.RedisQuota, into: list[trio_tts.Lease]) -> None:
                into.append(await q.acquire())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait, waiter, got)
                while await a.client.zcard(queue_key) == 0:  # noqa: ASYNC110 (no script call)
                    await trio.sleep(0.0005)
                t0 = time.perf_counter()
                holder.release(held)
            times.append(time.perf_counter() - t0)
            held = got[0]
            holder, waiter = waiter, holder
        holder.release(held)
    return {"handoff_p50_us": pct(times, 0.5) * 1e6, "handoff_p99_us": pct(times, 0.99) * 1e6}


async def worker(url: str, name: str, tasks: int, seconds: float) -> None:
    async with trio_tts.open_redis_quota(url, name, 16) as quota:
        for _ in range(20):  # waits out the restart guard, if any
            quota.release(await quota.acquire())
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        cycles: list[float] = []
        cpu0 = time.process_time()
        deadline = trio.current_time() + seconds

        async def loop() -> None:
            while trio.current_time() < deadline:
                t0 = time.perf_counter()
                lease = await quota.acquire()
                await trio.lowlevel.checkpoint()
                quota.release(lease)
                cycles.append(time.perf_counter() - t0)

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(loop)
        cpu = time.process_time() - cpu0
        await quota.flush()
    print(json.dumps({"cycles": cycles, "cpu": cpu}), flush=True)


def spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def contended(url: str, seconds: float, procs: int = 4, tasks: int = 30) -> dict[str, float]:
    name = "bench:contended"
    workers = [spawn("--worker", url, name, str(tasks), str(seconds)) for _ in range(procs)]
    async with trio_tts.open_redis_quota(url, name, 16) as probe:
        calls0, redis_cpu0 = await info(probe)
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results: list[dict[str, Any]] = []
        for proc in workers:
            assert proc.stdout is not None
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            results.append(json.loads(line))
        calls, redis_cpu = await info(probe)
    for proc in workers:
        proc.wait()
    cycles = [c for r in results for c in r["cycles"]]
    client_cpu = sum(r["cpu"] for r in results)
    total_cpu = client_cpu + redis_cpu - redis_cpu0
    return {
        "processes": procs,
        "tasks": procs * tasks,
        "capacity": 16,
        "acquires_per_s": len(cycles) / seconds,
        "acquires_per_client_cpu_s": len(cycles) / client_cpu,
        "acquires_per_cpu_s_with_redis": len(cycles) / total_cpu,
        "script_calls_per_cycle": (calls - calls0) / len(cycles),
        "cycle_p50_us": pct(cycles, 0.5) * 1e6,
        "cycle_p99_us": pct(cycles, 0.99) * 1e6,
    }


async def holder(url: str, ttl: float) -> None:
    async with trio_tts.open_redis_quota(url, "bench:reclaim", 100, lease_ttl=ttl) as quota:
        for _ in range(100):
            await quota.acquire()
        print("ready", flush=True)
        await trio.sleep_forever()


async def reclaim(url: str, ttl: float) -> dict[str, float]:
    proc = spawn("--holder", url, str(ttl))
    async with trio_tts.open_redis_quota(url, "bench:reclaim", 100, lease_ttl=ttl) as quota:
        t0 = trio.current_time()
        os.kill(proc.pid, signal.SIGKILL)
        for _ in range(100):
            await quota.acquire()
        took = trio.current_time() - t0
    proc.wait()
    return {"lease_ttl_s": ttl, "reclaim_all_100_s": took}


async def main(seconds: float, out: str | None) -> None:
    server = RedisServer().start()
    try:
        results = {"cycle": await cycle(server.url)}
        results["handoff"] = await handoff(server.url)
        results["contended"] = await contended(server.url, seconds)
        results["reclaim"] = await reclaim(server.url, 2.0)
    finally:
        server.close()
    for section, values in results.items():
        print(section)
        for key, value in values.items():
            print(f"  {key:32} {value:12.2f}")
    if out:
        await trio.Path(out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        trio.run(worker, sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif sys.argv[1:2] == ["--holder"]:
        trio.run(holder, sys.argv[2], float(sys.argv[3]))
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--seconds", type=float, default=3.0)
        parser.add_argument("--json", help="also write the results to this file")
        args = parser.parse_args()
        trio.run(main, args.seconds, args.json)
