"""A separate OS process that uses a RedisQuota (driven by tests/test_redis_quota.py).

Usage: ``python quota_worker.py MODE REDIS_URL NAME CAPACITY [ARGS...]``; prints ``ready`` once
the quota is open, writes JSON results to stdout (one line) or to a file.

Modes:
    contend TASKS ROUNDS OUT   TASKS tasks each acquire/hold briefly/release ROUNDS times and
                               record (start, end) intervals on the shared monotonic clock.
    churn TASKS OUT            on "go" (stdin), TASKS tasks loop acquire/hold 50-500 ms/release
                               until "stop", retrying while Redis is unreachable; a hold ends
                               early when ``lost`` fires. Writes (start, end, lost) per hold
                               on the shared monotonic clock.
    once OUT                   on a line of stdin, acquire one lease, append "time PID" to
                               OUT, release.
    hold N                     acquire N leases, print ``held``, sleep (to be killed).
    queue                      start one acquire that queues, print ``queued``, sleep.
    pool WS_URL UTTERANCES     open a pool with this fleet quota as its connection quota and
                               speak UTTERANCES utterances at once; print the outcome.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import trio

import trio_tts

FAST = {"lease_ttl": 1.0, "heartbeat_interval": 0.2, "waiter_ttl": 0.5, "loss_margin": 0.1}


async def main(mode: str, url: str, name: str, capacity: int, args: list[str]) -> None:
    async with trio_tts.open_redis_quota(url, name, capacity, **FAST) as quota:  # type: ignore[arg-type]
        print("ready", flush=True)
        if mode == "contend":
            tasks, rounds, out = int(args[0]), int(args[1]), args[2]
            intervals: list[tuple[float, float]] = []

            async def worker() -> None:
                for _ in range(rounds):
                    lease = await quota.acquire()
                    start = time.monotonic()
                    await trio.sleep(random.uniform(0, 0.004))
                    intervals.append((start, time.monotonic()))
                    quota.release(lease)

            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(worker)
            write(out, json.dumps(intervals), "w")
        elif mode == "churn":
            await churn(quota, int(args[0]), args[1])
        elif mode == "once":
            await trio.to_thread.run_sync(sys.stdin.readline)  # "go": queue now
            lease = await quota.acquire()
            write(args[0], f"{time.monotonic()} {os.getpid()}\n", "a")
            await trio.sleep(0.02)
            quota.release(lease)
        elif mode == "hold":
            for _ in range(int(args[0])):
                await quota.acquire()
            print("held", flush=True)
            await trio.sleep_forever()
        elif mode == "queue":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(quota.acquire)
                while quota.statistics().waiting == 0:
                    await trio.sleep(0.01)
                print("queued", flush=True)
                await trio.sleep_forever()
        elif mode == "pool":
            await speak(quota, args[0], int(args[1]))


async def churn(quota: trio_tts.RedisQuota, tasks: int, out: str) -> None:
    holds: list[tuple[float, float, bool]] = []

    async def worker() -> None:
        while True:
            try:
                lease = await quota.acquire()
            except trio_tts.QuotaUnavailable:  # Redis is restarting: fail closed, try again
                await trio.sleep(0.02)
                continue
            start = time.monotonic()
            try:
                with trio.move_on_after(random.uniform(0.05, 0.5)):
                    await lease.lost.wait()  # stop using a lost lease at once
            finally:
                holds.append((start, time.monotonic(), lease.lost.is_set()))
                quota.release(lease)

    await trio.to_thread.run_sync(sys.stdin.readline)  # "go"
    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)
        await trio.to_thread.run_sync(sys.stdin.readline)  # "stop"
        nursery.cancel_scope.cancel()
    write(out, json.dumps(holds), "w")


def write(path: str, text: str, mode: str) -> None:
    with open(path, mode) as f:
        f.write(text)


async def speak(quota: trio_tts.RedisQuota, ws_url: str, n: int) -> None:
    provider = trio_tts.InworldProvider(None, url=ws_url)
    opts = trio_tts.VoiceOptions(encoding="PCM", sample_rate=24000)
    sizes: list[int] = []
    async with trio_tts.open_pool(
        provider, defaults=opts, connection_quota=quota, idle_timeout=0.3, sweep_interval=0.1
    ) as pool:

        async def one(i: int) -> None:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text(f"utterance {i} of process {quota.holder}.")
                await ctx.finish()
                data = [e.data async for e in ctx if isinstance(e, trio_tts.Audio)]
                sizes.append(sum(len(d) for d in data))

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        peak = pool.statistics()
    print(
        json.dumps({"done": len(sizes), "empty": sizes.count(0), "opened": peak.connections_opened})
    )


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
