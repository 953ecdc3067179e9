"""RedisQuota benchmark against a throwaway local redis-server (loopback).

    .venv/bin/python benchmarks/bench_quota.py [--seconds 3]

Reports: uncontended acquire latency p50/p99 and Redis round trips per acquire; release
latency (the synchronous call, and until Redis has it); throughput of 4 processes × 50 tasks
over capacity 100; reclaim time after ``kill -9`` of a process holding every lease.
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

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio_tts
from trio_tts.testing.redis_server import RedisServer


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def commandstat(quota: trio_tts.RedisQuota) -> int:
    info = await quota.client.info("commandstats")
    stat = info.get("cmdstat_evalsha", {})
    return int(stat.get("calls", 0)) if isinstance(stat, dict) else 0


async def latency(url: str, n: int = 3000) -> dict[str, float]:
    async with trio_tts.open_redis_quota(url, "bench:latency", 1_000_000) as quota:
        for _ in range(200):  # warm up connections and the script cache
            quota.release(await quota.acquire())
        await quota.flush()
        times, leases = [], []
        calls0 = await commandstat(quota)
        for _ in range(n):
            t0 = time.perf_counter()
            leases.append(await quota.acquire())
            times.append(time.perf_counter() - t0)
        calls = await commandstat(quota) - calls0  # heartbeats included (a few)
        rel, flushed = [], []
        for lease in leases[:1000]:
            t0 = time.perf_counter()
            quota.release(lease)
            rel.append(time.perf_counter() - t0)
            await quota.flush()
            flushed.append(time.perf_counter() - t0)
        for lease in leases[1000:]:
            quota.release(lease)
    return {
        "acquire_p50_us": pct(times, 0.5) * 1e6,
        "acquire_p99_us": pct(times, 0.99) * 1e6,
        "round_trips_per_acquire": calls / n,
        "release_sync_p50_us": pct(rel, 0.5) * 1e6,
        "release_until_redis_p50_us": pct(flushed, 0.5) * 1e6,
        "release_until_redis_p99_us": pct(flushed, 0.99) * 1e6,
    }


async def worker(url: str, name: str, tasks: int, seconds: float) -> None:
    async with trio_tts.open_redis_quota(url, name, 100) as quota:
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        count = 0
        deadline = trio.current_time() + seconds

        async def loop() -> None:
            nonlocal count
            while trio.current_time() < deadline:
                lease = await quota.acquire()
                count += 1
                await trio.lowlevel.checkpoint()
                quota.release(lease)

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(loop)
    print(json.dumps({"acquires": count}), flush=True)


def spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def throughput(url: str, seconds: float) -> dict[str, float]:
    procs = [spawn("--worker", url, "bench:throughput", "50", str(seconds)) for _ in range(4)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    total = 0
    for proc in procs:
        assert proc.stdout is not None
        total += json.loads(proc.stdout.readline())["acquires"]
        proc.wait()
    return {"acquires_per_s": total / seconds, "processes": 4, "tasks": 200, "capacity": 100}


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


async def main(seconds: float) -> None:
    server = RedisServer().start()
    try:
        results = {"latency": await latency(server.url)}
        results["throughput"] = throughput(server.url, seconds)
        results["reclaim"] = await reclaim(server.url, 2.0)
    finally:
        server.close()
    for section, values in results.items():
        print(section)
        for key, value in values.items():
            print(f"  {key:32} {value:12.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        trio.run(worker, sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif sys.argv[1:2] == ["--holder"]:
        trio.run(holder, sys.argv[2], float(sys.argv[3]))
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--seconds", type=float, default=3.0)
        trio.run(main, parser.parse_args().seconds)
