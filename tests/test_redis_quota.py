"""RedisQuota against a real redis-server on 127.0.0.1, contended by several OS processes.

The session starts its own ``redis-server`` (the Debian package; ``make redis`` installs it).
If it is missing these tests fail — they never skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.fleet.releases import PendingReleases
from trio_tts.server import ServerConfig, open_server
from trio_tts.testing.redis_server import RedisServer, RedisServerMissing

from helpers import PCM, expected, provider_for, turn

WORKER = str(Path(__file__).with_name("quota_worker.py"))
FAST = {"lease_ttl": 1.0, "heartbeat_interval": 0.2, "waiter_ttl": 0.5, "loss_margin": 0.1}


def _server() -> RedisServer:
    try:
        return RedisServer().start()
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    srv = _server()
    yield srv
    srv.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test alone (it gets restarted or frozen)."""
    srv = _server()
    yield srv
    srv.close()


def qname() -> str:
    return f"test:{uuid.uuid4().hex[:8]}"


class Worker:
    """A quota_worker.py process; its stdout is read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    @classmethod
    async def start(cls, *args: object) -> Worker:
        process = await trio.lowlevel.open_process(
            [sys.executable, WORKER, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        worker = cls(process)
        assert await worker.readline() == "ready"
        return worker

    async def readline(self) -> str:
        assert self.process.stdout is not None
        with trio.fail_after(20):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"worker exited: {self.process.returncode}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    @classmethod
    async def start_many(cls, n: int, *args: object) -> list[Worker]:
        """Start ``n`` workers at once (an interpreter takes a while to start)."""
        workers: list[Worker] = []
        async with trio.open_nursery() as nursery:
            for _ in range(n):

                async def one() -> None:
                    workers.append(await cls.start(*args))

                nursery.start_soon(one)
        return workers

    async def go(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"go\n")

    async def stop(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"stop\n")

    async def wait(self) -> None:
        with trio.fail_after(30):
            assert await self.process.wait() == 0

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = peak = 0
    for _, delta in events:  # at equal times an end (-1) sorts before a start (+1)
        now += delta
        peak = max(peak, now)
    return peak


async def until(predicate_async: object, limit: float = 5.0) -> None:
    with trio.fail_after(limit):
        while not await predicate_async():  # type: ignore[operator]
            await trio.sleep(0.01)


# -- several processes, one quota ----------------------------------------------------------


async def test_never_more_holders_than_capacity_across_processes(
    redis: RedisServer, tmp_path: Path
) -> None:
    """4 processes × 6 tasks × 15 rounds on capacity 3: audited from recorded intervals."""
    name = qname()
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    async with trio.open_nursery() as nursery:
        for out in outs:

            async def run(out: Path = out) -> None:
                await (await Worker.start("contend", redis.url, name, 3, 6, 15, out)).wait()

            nursery.start_soon(run)
    intervals = [tuple(iv) for out in outs for iv in json.loads(out.read_text())]
    assert len(intervals) == 4 * 6 * 15
    assert max_overlap(intervals) == 3  # full use, never over  # type: ignore[arg-type]
    async with trio_tts.open_redis_quota(redis.url, name, 3, **FAST) as quota:  # type: ignore[arg-type]
        stats = await quota.fleet_statistics()
        assert (stats.holders, stats.waiting) == (0, 0)


async def test_fifo_order_across_processes(redis: RedisServer, tmp_path: Path) -> None:
    name, out = qname(), tmp_path / "grants.txt"
    async with trio_tts.open_redis_quota(redis.url, name, 1, **FAST) as quota:  # type: ignore[arg-type]
        held = await quota.acquire()
        workers = await Worker.start_many(4, "once", redis.url, name, 1, out)
        for i, worker in enumerate(workers):
            await worker.go()

            async def queued(n: int = i + 1) -> bool:
                return (await quota.fleet_statistics()).waiting == n

            await until(queued)
        quota.release(held)
        for worker in workers:
            await worker.wait()
    labels = [line.split()[1] for line in out.read_text().splitlines()]
    assert labels == [str(w.process.pid) for w in workers]


async def test_cancel_and_timeout_leave_no_holder(redis: RedisServer) -> None:
    name = qname()
    async with trio_tts.open_redis_quota(redis.url, name, 2, **FAST) as quota:  # type: ignore[arg-type]
        a, b = await quota.acquire(), await quota.acquire()
        with pytest.raises(trio_tts.CapacityTimeout, match=r"no lease free within 0.1 s$"):
            await quota.acquire(timeout=0.1)
        assert await quota.try_acquire_async() is None
        with pytest.raises(trio_tts.CapacityTimeout):
            await quota.acquire(timeout=0)
        # Waiters cancelled while queued, and one cancelled in the same instant its grant lands.
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(quota.acquire)
            await until(lambda: _true_when(quota.statistics().waiting == 5))
            quota.release(a)
            nursery.cancel_scope.cancel()
        await quota.flush()
        assert quota.statistics().borrowed == 1
        stats = await quota.fleet_statistics()
        assert (stats.holders, stats.waiting) == (1, 0)
        quota.release(b)
        quota.release(b)  # idempotent
        await quota.flush()
        stats = await quota.fleet_statistics()
        assert (stats.holders, stats.waiting) == (0, 0)
        assert quota.statistics() == trio_tts.QuotaStatistics(total=2, borrowed=0, waiting=0)


async def _true_when(value: bool) -> bool:
    return value


def fleet_waiting(quota: trio_tts.RedisQuota, n: int) -> object:
    """A predicate for :func:`until`: Redis counts ``n`` waiters (every call first purges
    the expired ones)."""

    async def check() -> bool:
        return (await quota.fleet_statistics()).waiting == n

    return check


async def test_kill_9_of_a_holder_returns_its_slots_within_the_ttl(redis: RedisServer) -> None:
    name = qname()
    worker = await Worker.start("hold", redis.url, name, 2, 2)
    assert await worker.readline() == "held"
    async with trio_tts.open_redis_quota(redis.url, name, 2, **FAST) as quota:  # type: ignore[arg-type]
        assert await quota.try_acquire_async() is None
        start = trio.current_time()
        worker.kill9()
        first, second = await quota.acquire(timeout=3), await quota.acquire(timeout=3)
        reclaim = trio.current_time() - start
        assert reclaim <= FAST["lease_ttl"] + FAST["heartbeat_interval"] + 0.1
        quota.release(first)
        quota.release(second)
    await worker.process.wait()


async def test_a_dead_processs_queue_entries_soak_up_no_grant(redis: RedisServer) -> None:
    name = qname()
    async with trio_tts.open_redis_quota(redis.url, name, 1, **FAST) as quota:  # type: ignore[arg-type]
        held = await quota.acquire()
        worker = await Worker.start("queue", redis.url, name, 1)
        assert await worker.readline() == "queued"
        await until(fleet_waiting(quota, 1))  # its ticket reached Redis
        worker.kill9()
        await worker.process.wait()
        # Nobody renews the ticket now: it expires within waiter_ttl.
        await until(fleet_waiting(quota, 0))
        quota.release(held)
        # Had the dead waiter been granted, this would wait out its lease TTL (1 s).
        again = await quota.acquire(timeout=0.3)
        quota.release(again)


# -- round trips and releases ----------------------------------------------------------------


async def test_a_full_cycle_costs_one_round_trip(redis: RedisServer) -> None:
    """Each acquire carries the release before it: n cycles, n + 1 script calls instead of 2n
    (a heartbeat every 6 s: none meanwhile)."""
    name = qname()
    async with (
        trio_tts.open_redis_quota(redis.url, name, 2, **FAST) as probe,  # type: ignore[arg-type]
        trio_tts.open_redis_quota(redis.url, name, 2, lease_ttl=30) as quota,
    ):
        quota.release(await quota.acquire(timeout=3))  # (after the guard of a young Redis)
        await quota.flush()
        before, n = quota.round_trips, 100
        for _ in range(n):
            quota.release(await quota.acquire())
        await quota.flush()
        assert quota.round_trips - before == n + 1
        assert (await probe.fleet_statistics()).holders == 0


async def test_a_release_reaches_a_waiting_process_at_once(redis: RedisServer) -> None:
    """The holder's release_delay (30 s) and heartbeat (6 s) are far away, but the waiter's
    enqueue into the empty queue was announced on the quota's queued channel: the release
    leaves at once."""
    name = qname()
    async with (
        trio_tts.open_redis_quota(redis.url, name, 1, **FAST) as waiter,  # type: ignore[arg-type]
        trio_tts.open_redis_quota(redis.url, name, 1, lease_ttl=30, release_delay=30) as holder,
    ):
        lease = await holder.acquire(timeout=3)
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                with trio.fail_after(2):
                    waiter.release(await waiter.acquire())

            nursery.start_soon(wait)
            await until(fleet_waiting(waiter, 1))
            holder.release(lease)


async def test_a_release_nobody_waits_for_rides_on_the_next_call(redis: RedisServer) -> None:
    name = qname()
    async with (
        trio_tts.open_redis_quota(redis.url, name, 2, **FAST) as probe,  # type: ignore[arg-type]
        trio_tts.open_redis_quota(redis.url, name, 2, lease_ttl=30, release_delay=30) as quota,
        trio_tts.open_redis_quota(redis.url, name, 2, lease_ttl=30, release_delay=0.05) as brisk,
    ):
        quota.release(await quota.acquire(timeout=3))  # (after the guard of a young Redis)
        await quota.flush()
        quota.release(await quota.acquire())
        assert quota.statistics().borrowed == 0
        assert (await probe.fleet_statistics()).holders == 1  # not sent yet
        before = quota.round_trips
        again = await quota.acquire()
        assert quota.round_trips == before + 1
        assert (await probe.fleet_statistics()).holders == 1  # the first one left with it
        quota.release(again)
        await quota.flush()
        assert (await probe.fleet_statistics()).holders == 0
        # With nothing to ride on, a release leaves after release_delay.
        brisk.release(await brisk.acquire())

        async def gone() -> bool:
            return (await probe.fleet_statistics()).holders == 0

        await until(gone, limit=1)


async def test_hold_a_slot_with_async_with_lease(redis: RedisServer) -> None:
    async with trio_tts.open_redis_quota(redis.url, qname(), 1, **FAST) as quota:  # type: ignore[arg-type]
        async with quota.lease(timeout=3) as lease:
            assert quota.statistics().borrowed == 1
            with pytest.raises(trio_tts.CapacityTimeout):
                async with quota.lease(timeout=0.05):
                    pass
        assert lease.released and quota.statistics().borrowed == 0
        await quota.flush()
        assert (await quota.fleet_statistics()).holders == 0
    local = trio_tts.LocalQuota(1)
    with pytest.raises(KeyError):
        async with local.lease() as lease:
            assert local.statistics().borrowed == 1
            raise KeyError
    assert local.statistics().borrowed == 0


def test_pending_releases_are_due_at_once_only_when_someone_waits() -> None:
    pending = PendingReleases(delay=0.005, horizon=1.0)
    assert pending.due(waiters=False) == float("inf")
    pending.add("h:1", 10.0)
    pending.add("h:2", 10.002)
    assert pending.due(waiters=False) == 10.005
    assert pending.due(waiters=True) == float("-inf")
    assert pending.take(10.003) == ["h:1", "h:2"] and len(pending) == 2  # in flight
    pending.settle(["h:1", "h:2"], delivered=False, retry_at=10.05)
    assert pending.due(waiters=False) == 10.05  # urgent, after the backoff
    assert pending.take(11.001) == ["h:2"]  # h:1 has expired in Redis by now
    pending.settle(["h:2"], delivered=True)
    assert len(pending) == 0
    pending.add("h:3", 12.0, urgent=True)  # a withdrawn queue entry
    assert pending.due(waiters=False) == float("-inf")


# -- Redis failures --------------------------------------------------------------------------


async def test_after_a_restart_nothing_new_is_granted_for_one_lease_ttl(
    own_redis: RedisServer,
) -> None:
    """Redis restarts without persistence: the two leases held are re-asserted by the next
    heartbeat (never lost), and the free slot goes to nobody until one lease TTL after the
    restart — the time every old holder has to re-assert or report its lease lost."""
    async with trio_tts.open_redis_quota(own_redis.url, qname(), 3, **FAST) as quota:  # type: ignore[arg-type]
        # (A Redis up for less than lease_ttl holds back its first grants too.)
        leases = [await quota.acquire(timeout=3), await quota.acquire(timeout=3)]
        epoch = (await quota.fleet_statistics()).epoch
        restarting = trio.current_time()  # the new instance sees its first call after this
        own_redis.restart()
        assert await quota.try_acquire_async() is None  # a slot is free, but guarded
        stats = await quota.fleet_statistics()
        assert stats.epoch != epoch
        assert 0 < stats.restart_guard <= FAST["lease_ttl"]

        async def reasserted() -> bool:
            return (await quota.fleet_statistics()).holders == 2

        await until(reasserted)
        third = await quota.acquire(timeout=3)
        assert trio.current_time() - restarting >= FAST["lease_ttl"] - 0.01
        assert not any(lease.lost.is_set() for lease in leases)
        stats = await quota.fleet_statistics()
        assert (stats.capacity, stats.holders, stats.restart_guard) == (3, 3, 0)
        for lease in [*leases, third]:
            quota.release(lease)


async def test_a_restart_under_load_never_admits_more_than_the_capacity(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """4 processes × 8 tasks churn over capacity 16 (holds of 50–500 ms) while redis-server
    is killed and restarted on the same port, its state lost. Audited from every hold on the
    shared monotonic clock (a hold ends when released or when ``lost`` fires): never more
    than 16 at any instant, the old holders re-assert, and the fleet churns again."""
    name, capacity = qname(), 16
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    workers = [await Worker.start("churn", own_redis.url, name, capacity, 8, out) for out in outs]
    async with trio_tts.open_redis_quota(own_redis.url, name, capacity, **FAST) as quota:  # type: ignore[arg-type]
        for worker in workers:
            await worker.go()

        async def churning() -> bool:  # 48 queue tickets drawn from this instance, all taken
            stats = await quota.fleet_statistics()
            tickets = int(await quota.client.get(quota.redis_keys[5]) or 0)
            return tickets >= 48 and stats.holders == capacity and stats.waiting > 0

        await until(churning)
        epoch = (await quota.fleet_statistics()).epoch
        killed = time.monotonic()
        own_redis.restart()
        restarted = time.monotonic()

        async def churning_again() -> bool:  # on the new instance, after its guard
            stats = await quota.fleet_statistics()
            return stats.epoch != epoch and stats.restart_guard == 0 and await churning()

        await until(churning_again)
        for worker in workers:
            await worker.stop()
        for worker in workers:
            await worker.wait()
    holds = [tuple(h) for out in outs for h in json.loads(out.read_text())]
    assert max_overlap([(h[0], h[1]) for h in holds]) == capacity
    spanning = [h for h in holds if h[0] < killed and h[1] > restarted]
    assert any(not lost for _, _, lost in spanning)  # held across the restart: re-asserted
    assert any(start > restarted for start, _, _ in holds)  # granted by the new instance


async def test_state_written_by_another_instance_starts_a_guarded_epoch(
    redis: RedisServer,
) -> None:
    """A failover to a replica, or a restart from a stale dump: the state is there, but the
    run id stored with it is another server's. Leases Redis knows keep renewing; nothing new
    is granted for one lease TTL (a grant of the old instance may be missing here)."""
    async with trio_tts.open_redis_quota(redis.url, qname(), 2, **FAST) as quota:  # type: ignore[arg-type]
        lease = await quota.acquire(timeout=3)
        epoch = (await quota.fleet_statistics()).epoch
        start = trio.current_time()
        await quota.client.set(quota.redis_keys[6], "0" * 40)  # the run id of another server
        assert await quota.try_acquire_async() is None
        stats = await quota.fleet_statistics()
        assert stats.epoch != epoch and stats.holders == 1 and stats.restart_guard > 0
        second = await quota.acquire(timeout=3)
        assert trio.current_time() - start >= FAST["lease_ttl"] - 0.01
        assert not lease.lost.is_set()
        quota.release(lease)
        quota.release(second)


async def test_a_new_quota_on_a_redis_up_longer_than_the_ttl_has_no_guard(
    redis: RedisServer,
) -> None:
    """Nobody can hold a lease of an older instance once Redis has been up for a lease TTL
    (uptime is whole seconds: one more)."""
    async with trio_tts.open_redis_quota(redis.url, qname(), 1, **FAST) as first:  # type: ignore[arg-type]

        async def up() -> bool:
            return int((await first.client.info("server"))["uptime_in_seconds"]) >= 2

        await until(up)
        async with trio_tts.open_redis_quota(redis.url, qname(), 1, **FAST) as quota:  # type: ignore[arg-type]
            assert (await quota.fleet_statistics()).restart_guard == 0
            lease = await quota.try_acquire_async()
            assert lease is not None
            quota.release(lease)


async def test_lost_state_with_the_slots_taken_reports_the_leases_lost(
    own_redis: RedisServer,
) -> None:
    name = qname()
    async with trio_tts.open_redis_quota(own_redis.url, name, 2, **FAST) as quota:  # type: ignore[arg-type]
        leases = [await quota.acquire(), await quota.acquire()]
        # Atomically: the state is lost and another process takes every slot first.
        await quota.client.eval(
            "for _, k in ipairs(KEYS) do redis.call('DEL', k) end "
            "redis.call('SET', KEYS[1], 2) redis.call('SET', KEYS[2], 'new') "
            "local t = redis.call('TIME') "
            "redis.call('ZADD', KEYS[3], t[1] * 1000 + 60000, 'other:1', t[1] * 1000 + 60000,"
            " 'other:2') return 1",
            keys=list(quota.redis_keys),
        )
        with trio.fail_after(1):
            for lease in leases:
                await lease.lost.wait()
        stats = await quota.fleet_statistics()
        assert (stats.holders, stats.epoch) == (2, "new")
        assert quota.statistics().borrowed == 2  # held until the holder releases them
        for lease in leases:
            quota.release(lease)


async def test_frozen_redis_fires_lost_before_the_slot_can_move(own_redis: RedisServer) -> None:
    """No renewal: ``lost`` fires within lease_ttl - loss_margin of the last renewal, i.e.
    before Redis's own expiry; meanwhile acquire fails closed; the quota recovers."""
    async with trio_tts.open_redis_quota(own_redis.url, qname(), 1, **FAST) as quota:  # type: ignore[arg-type]
        lease = await quota.acquire()
        own_redis.pause()
        paused_at = trio.current_time()
        try:
            with pytest.raises(trio_tts.QuotaUnavailable, match=r"unreachable$"):
                await quota.acquire()
            with trio.fail_after(2):
                await lease.lost.wait()
            lost_after = trio.current_time() - paused_at
            assert lost_after <= FAST["lease_ttl"] - FAST["loss_margin"] + 0.05
            assert repr(quota).endswith("UNAVAILABLE>")
        finally:
            own_redis.resume()
        quota.release(lease)
        with trio.fail_after(3):
            while not quota.available:
                await trio.sleep(0.05)
        quota.release(await quota.acquire(timeout=2))


async def test_unreachable_redis_fails_closed_or_falls_back_to_a_static_share() -> None:
    url = f"redis://127.0.0.1:{RedisServer().port}/0"  # nothing listens there
    with pytest.raises(trio_tts.QuotaUnavailable):
        async with trio_tts.open_redis_quota(url, "x", 5, **FAST):  # type: ignore[arg-type]
            pass
    async with trio_tts.open_redis_quota(url, "x", 5, fallback_share=1, **FAST) as quota:
        lease = await quota.acquire()
        assert quota.try_acquire() is None
        with pytest.raises(trio_tts.CapacityTimeout):
            await quota.acquire(timeout=0.05)
        assert quota.statistics().borrowed == 1
        quota.release(lease)
        again = quota.try_acquire()
        assert again is not None
        quota.release(again)


async def test_capacity_is_stored_in_redis(redis: RedisServer) -> None:
    name = qname()
    async with trio_tts.open_redis_quota(redis.url, name, 3, **FAST) as quota:  # type: ignore[arg-type]
        with pytest.raises(
            trio_tts.InvalidOptions,
            match=r"capacity 5 configured here but 3 stored in Redis",
        ):
            async with trio_tts.open_redis_quota(redis.url, name, 5, **FAST):  # type: ignore[arg-type]
                pass
        async with trio_tts.open_redis_quota(redis.url, name, None, **FAST) as adopted:  # type: ignore[arg-type]
            assert adopted.capacity == 3
        await quota.set_capacity(5)
        async with trio_tts.open_redis_quota(redis.url, name, 5, **FAST) as resized:  # type: ignore[arg-type]
            assert (await resized.fleet_statistics()).capacity == 5


# -- the pool ----------------------------------------------------------------------------------


async def test_four_processes_never_open_more_than_the_fleet_cap(redis: RedisServer) -> None:
    """4 processes × 30 concurrent utterances, a fleet cap of 20 connections."""
    name = qname()
    async with open_server(ServerConfig(synthesizer="tone")) as server:
        workers = await Worker.start_many(4, "pool", redis.url, name, 20, server.ws_url, 30)
        results = [json.loads(await w.readline()) for w in workers]
        for worker in workers:
            await worker.wait()
        stats = server.statistics()
    assert [r["done"] for r in results] == [30] * 4
    assert [r["empty"] for r in results] == [0] * 4
    assert stats.peak_connections <= 20
    assert stats.violations == ()


async def test_pool_connection_and_context_quotas_in_process() -> None:
    """Local quotas through the same wiring: caps hold; a lost connection lease retires
    the connection after its current utterance."""

    class Revocable(trio_tts.LocalQuota):
        """A local quota that remembers its leases, so the test can revoke one (``lost``)."""

        def __init__(self, total: int) -> None:
            super().__init__(total)
            self.held: list[trio_tts.Lease] = []

        async def acquire(self, timeout: float | None = None) -> trio_tts.Lease:  # noqa: ASYNC109
            lease = await super().acquire(timeout)
            self.held.append(lease)
            return lease

    conns, contexts = Revocable(1), trio_tts.LocalQuota(2)
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.open_pool(
            provider_for(server),
            defaults=PCM,
            max_connections=3,
            connection_quota=conns,
            context_quota=contexts,
        ) as pool,
    ):
        texts = [f"sentence number {i}." for i in range(8)]
        async with trio.open_nursery() as nursery:
            for text in texts:

                async def speak(text: str = text) -> None:
                    assert await turn(pool, text) == expected(text)
                    assert contexts.statistics().borrowed <= 2

                nursery.start_soon(speak)
        assert server.statistics().peak_connections == 1
        ctx = await pool.open_context()
        conns.held[-1].lost.set()  # the quota revokes the open connection's lease
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().connections_draining == 1
        async with ctx:  # the current utterance still finishes on the retired connection
            await ctx.send_text("still spoken.")
            await ctx.finish()
            audio = b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])
        assert audio == expected("still spoken.")
        assert await turn(pool, "on a new socket.") == expected("on a new socket.")
        assert pool.statistics().connections_opened == 2
        assert server.statistics().peak_connections == 1
