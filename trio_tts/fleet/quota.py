"""A fleet-wide quota in Redis: a distributed counting semaphore of leases.

Provider limits are per account, shared by every process of a fleet; :class:`RedisQuota`
keeps the whole fleet under one capacity. The decisions live in one atomic Lua script
(:mod:`trio_tts.fleet.script`); this module is the process side of it:

- **One batched heartbeat per process** (the *keeper* task) renews every lease and queue entry
  this process holds, learns grants whose wake-up was lost, and re-asserts leases after Redis
  lost its state (a new epoch). A lease that is not renewed in time fires ``lease.lost``
  *before* Redis may hand its slot to someone else: the local deadline is the send time of
  the last successful renewal plus ``lease_ttl`` minus ``loss_margin`` — Redis set the expiry
  from its own clock, later than that send, so the local deadline always comes first.
- **Wake-ups are pushed** on a per-process pub/sub channel (the *listener* task); the heartbeat
  is only the fallback for a lost message. Nobody polls.
- **release() is synchronous**: the local accounting changes at once and the id is queued to
  the *releaser* task, which sends releases in batches (and retries; an id it cannot release
  simply expires after ``lease_ttl``).
- **When Redis is unreachable** the quota fails closed (:class:`QuotaUnavailable`), or, with
  ``fallback_share=k``, admits up to ``k`` leases of this process from a local limiter.

Open it with :func:`~trio_tts.open_redis_quota` (:mod:`trio_tts.fleet.open`), which checks
the settings and runs :meth:`RedisQuota.run` (the three tasks) for its block.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import uuid
from typing import Any

import attrs
import coredis
import coredis.exceptions
import trio

from .._core.errors import CapacityTimeout, InvalidOptions, TTSError
from .._core.quota import Lease, LocalQuota, QuotaStatistics, hold
from .script import SCRIPT

__all__ = ["QuotaUnavailable", "RedisQuota", "RedisQuotaStatistics"]

logger = logging.getLogger("trio_tts.quota")

#: What a Redis round trip raises when Redis cannot be reached (with ``trio.TooSlowError``).
UNREACHABLE = (coredis.exceptions.ConnectionError, TimeoutError, OSError)


class QuotaUnavailable(TTSError):
    """The shared quota (Redis) could not be reached and no fallback share is configured."""


@attrs.frozen
class RedisQuotaStatistics:
    """What Redis holds for the whole fleet (:meth:`RedisQuota.fleet_statistics`)."""

    capacity: int
    holders: int
    waiting: int
    epoch: str


@attrs.define(eq=False)
class _Entry:
    token: str
    lease: Lease
    state: str  # "W" queued, "H" held, "L" lost (still held locally until released)
    seen_at: float  # local send time of the last call that found it queued or renewed it
    event: trio.Event = attrs.field(factory=trio.Event)
    error: BaseException | None = None


class RedisQuota:
    """A :class:`~trio_tts.Quota` shared by every process that names the same Redis key.

    Create it with :func:`open_redis_quota`; hold a slot with ``async with
    quota.lease(timeout=...) as lease:``. ``acquire`` is FIFO across the fleet and cancel-safe;
    ``release`` is synchronous and idempotent. A sync ``try_acquire`` cannot ask Redis: it
    answers only from the fallback share while Redis is unreachable, else None
    (never over-admits) — ``await try_acquire_async()`` asks Redis (one round trip).
    """

    def __init__(
        self,
        client: coredis.Redis[str],
        name: str,
        capacity: int | None,
        *,
        lease_ttl: float,
        heartbeat_interval: float,
        waiter_ttl: float,
        loss_margin: float,
        op_timeout: float,
        fallback_share: int | None,
    ) -> None:
        self.name = name
        self.holder = uuid.uuid4().hex[:16]
        self.capacity = capacity
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        self.waiter_ttl = waiter_ttl
        self.loss_margin = loss_margin
        self.op_timeout = op_timeout
        self._client = client
        self._script = client.register_script(SCRIPT)
        base = f"trio-tts:{{{name}}}:"
        self._keys = [base + k for k in ("cap", "epoch", "leases", "queue", "qexp", "seq")]
        self.channel = f"{base}wake:{self.holder}"
        self._wake_prefix = f"{base}wake:"
        self._ids = itertools.count(1)
        self._entries: dict[str, _Entry] = {}
        self._by_lease: dict[int, _Entry] = {}
        self._fallback = LocalQuota(fallback_share) if fallback_share is not None else None
        self._fallback_leases: set[int] = set()
        self._to_release: dict[str, float] = {}
        self._release_kick = trio.Event()
        self._release_done = trio.Event()
        self._beat_kick = trio.Event()
        self.epoch = ""
        self.available = False

    # -- the Quota protocol ----------------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> Lease:  # noqa: ASYNC109
        """Wait (FIFO across the fleet) for a lease.

        Raises:
            CapacityTimeout: none within ``timeout`` seconds (0: one try, no queueing).
            QuotaUnavailable: Redis is unreachable and no fallback share is configured.
        """
        if timeout == 0:
            lease = await self.try_acquire_async()
            if lease is None:
                raise CapacityTimeout(f"quota {self.name!r}: no lease free")
            return lease
        with trio.move_on_after(math.inf if timeout is None else timeout):
            lease = await self._acquire("acquire")
            assert lease is not None
            return lease
        raise CapacityTimeout(f"quota {self.name!r}: no lease free within {timeout} s")

    def lease(self, timeout: float | None = None) -> contextlib.AbstractAsyncContextManager[Lease]:
        """Hold one lease for the block (the way to hold a slot)::

            async with quota.lease(timeout=10) as lease:
                ...  # stop using the slot when lease.lost is set

        The lease is released when the block ends, however it ends.

        Raises:
            CapacityTimeout: none within ``timeout`` seconds.
            QuotaUnavailable: Redis is unreachable and no fallback share is configured.
        """
        return hold(self, timeout)

    async def try_acquire_async(self) -> Lease | None:
        """One round trip: a lease if a slot is free and nobody queues, else None."""
        return await self._acquire("try")

    def try_acquire(self) -> Lease | None:
        if self._fallback is not None and not self.available:
            lease = self._fallback.try_acquire()
            if lease is not None:
                self._fallback_leases.add(lease.id)
            return lease
        return None

    def release(self, lease: Lease) -> None:
        """Give ``lease`` back: at once locally, to Redis by the releaser task. Idempotent."""
        if lease.released:
            return
        if lease.id in self._fallback_leases:
            self._fallback_leases.discard(lease.id)
            assert self._fallback is not None
            self._fallback.release(lease)
            return
        lease.released = True
        entry = self._by_lease.pop(lease.id, None)
        if entry is not None:
            self._forget(entry)

    def statistics(self) -> QuotaStatistics:
        """This process's view: its leases (borrowed) and queued acquires (waiting)."""
        held = sum(1 for e in self._entries.values() if e.state != "W")
        waiting = len(self._entries) - held
        if self._fallback is not None:
            fb = self._fallback.statistics()
            held, waiting = held + fb.borrowed, waiting + fb.waiting
        return QuotaStatistics(total=self.capacity or 0, borrowed=held, waiting=waiting)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<RedisQuota {self.name!r} holder={self.holder} {s.borrowed} held here,"
            f" {s.waiting} waiting here, capacity={s.total}"
            f"{'' if self.available else ' UNAVAILABLE'}>"
        )

    async def flush(self) -> None:
        """Wait until every release queued so far has reached Redis (or been given up)."""
        while self._to_release:
            await self._release_done.wait()

    @property
    def client(self) -> coredis.Redis[str]:
        """The coredis client this quota talks to Redis through."""
        return self._client

    @property
    def redis_keys(self) -> tuple[str, ...]:
        """The Redis keys holding the quota's state: capacity, epoch, leases, queue, queue
        expiries, sequence (one hash slot: ``trio-tts:{name}:...``)."""
        return tuple(self._keys)

    # -- fleet-wide ------------------------------------------------------------------------

    async def fleet_statistics(self) -> RedisQuotaStatistics:
        """Ask Redis for the fleet's holders and waiters (one round trip)."""
        reply = await self._call("stat", [])
        return RedisQuotaStatistics(
            capacity=int(reply[2]), holders=int(reply[3]), waiting=int(reply[4]), epoch=reply[1]
        )

    async def set_capacity(self, capacity: int) -> None:
        """Change the capacity stored in Redis for the whole fleet (an operator action)."""
        check_positive("capacity", capacity)
        self.capacity = capacity
        await self._call("resize", [])

    # -- internals -------------------------------------------------------------------------

    async def _call(self, op: str, args: list[str]) -> list[Any]:
        with trio.fail_after(self.op_timeout):
            reply: list[Any] = await self._script(
                keys=self._keys,
                args=[
                    op,
                    "" if self.capacity is None else str(self.capacity),
                    str(round(self.lease_ttl * 1000)),
                    str(round(self.waiter_ttl * 1000)),
                    self.epoch,
                    uuid.uuid4().hex,
                    self._wake_prefix,
                    *args,
                ],
            )
        if reply[0] == "MISMATCH":
            raise InvalidOptions(
                f"quota {self.name!r}: capacity {self.capacity} configured here but"
                f" {reply[2]} stored in Redis (change it with set_capacity)"
            )
        if reply[0] == "NOCAP":
            raise InvalidOptions(f"quota {self.name!r}: no capacity stored in Redis yet")
        if self.capacity is None:
            self.capacity = int(reply[2])
        return reply

    async def _acquire(self, op: str) -> Lease | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.available:
            return await self._fallback_acquire(op)
        lease = Lease()
        entry = _Entry(f"{self.holder}:{next(self._ids)}", lease, "W", trio.current_time())
        self._entries[entry.token] = entry
        granted = False
        try:
            with trio.CancelScope(shield=True):  # a cancel never leaves the reply unknown
                try:
                    status = (await self._call(op, [entry.token]))[0]
                except (*UNREACHABLE, trio.TooSlowError) as exc:
                    self._unreachable(exc)
                    status = "U"
            if status == "G":
                self._granted(entry, entry.seen_at)
            elif status == "N":
                del self._entries[entry.token]  # nothing in Redis to release
                lease.released = True
                return None
            elif status == "U":
                self._forget(entry)
                return await self._fallback_acquire(op)
            await entry.event.wait()
            if entry.error is not None:
                self._forget(entry)
                if isinstance(entry.error, QuotaUnavailable) and self._fallback is not None:
                    return await self._fallback_acquire(op)
                raise entry.error
            granted = True
            return lease
        finally:
            if not granted:
                lease.released = True
                self._forget(entry)

    async def _fallback_acquire(self, op: str) -> Lease | None:
        if self._fallback is None:
            raise QuotaUnavailable(f"quota {self.name!r}: Redis is unreachable")
        if op == "try":
            lease = self._fallback.try_acquire()
        else:
            lease = await self._fallback.acquire()
        if lease is not None:
            self._fallback_leases.add(lease.id)
        return lease

    def _granted(self, entry: _Entry, seen_at: float) -> None:
        if entry.state != "W":
            return
        entry.state, entry.seen_at = "H", seen_at
        self._by_lease[entry.lease.id] = entry
        entry.event.set()

    def _forget(self, entry: _Entry) -> None:
        """Drop ``entry`` locally now and have Redis forget it soon (the releaser)."""
        if self._entries.pop(entry.token, None) is None:
            return
        self._by_lease.pop(entry.lease.id, None)
        self._to_release[entry.token] = trio.current_time()
        self._release_kick.set()

    def _unreachable(self, exc: BaseException) -> None:
        if self.available:
            logger.warning("quota %r: Redis unreachable (%s)", self.name, type(exc).__name__)
        self.available = False
        error = QuotaUnavailable(f"quota {self.name!r}: Redis is unreachable")
        for entry in list(self._entries.values()):
            if entry.state == "W":
                entry.error = error
                entry.event.set()

    def _fire_losses(self) -> float:
        """Fire ``lost`` on every lease past its local deadline; return the next deadline."""
        now, nearest = trio.current_time(), math.inf
        for entry in self._entries.values():
            if entry.state == "H":
                deadline = entry.seen_at + self.lease_ttl - self.loss_margin
                if deadline <= now:
                    entry.state = "L"
                    entry.lease.lost.set()
                    logger.warning("quota %r: lease %s lost", self.name, entry.token)
                else:
                    nearest = min(nearest, deadline)
        return nearest

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the quota until cancelled (:func:`~trio_tts.open_redis_quota` runs it).

        Checks the capacity with Redis, starts the listener, releaser and keeper, renews once,
        then reports started. When cancelled it gives every lease of this process back in
        one round trip (shielded, at most ``op_timeout``), so the fleet gets them now rather
        than after ``lease_ttl``.

        Raises:
            QuotaUnavailable: Redis is unreachable at the start and no fallback share is set.
            InvalidOptions: the capacity differs from the one stored in Redis.
        """
        try:
            await self._call("stat", [])  # checks the capacity; the epoch comes with the beat
            self.available = True
        except (*UNREACHABLE, trio.TooSlowError) as exc:
            if self._fallback is None:
                raise QuotaUnavailable(f"quota {self.name!r}: Redis is unreachable") from exc
        try:
            # The three background tasks; cancelled with this task.
            async with trio.open_nursery() as nursery:
                await nursery.start(self._listener)
                nursery.start_soon(self._releaser)
                await self._beat()
                nursery.start_soon(self._keeper)
                task_status.started()
                await trio.sleep_forever()
        finally:
            await self._give_back()

    async def _give_back(self) -> None:
        tokens = list(self._entries) + list(self._to_release)
        with trio.CancelScope(shield=True), trio.move_on_after(self.op_timeout):
            if tokens and self.available:
                with contextlib.suppress(*UNREACHABLE, trio.TooSlowError):
                    await self._call("release", tokens)

    # -- background tasks ------------------------------------------------------------------

    async def _keeper(self) -> None:
        """The heartbeat: renew everything of this process in one call, then sleep."""
        while True:
            nearest = self._fire_losses()
            with trio.move_on_at(min(nearest, trio.current_time() + self.heartbeat_interval)):
                await self._beat_kick.wait()
            self._beat_kick = trio.Event()
            self._fire_losses()
            await self._beat()

    async def _beat(self) -> None:
        entries = [e for e in self._entries.values() if e.state in ("H", "W")]
        args = [x for e in entries for x in (e.state, e.token)]
        sent = trio.current_time()
        nearest = self._fire_losses()
        try:
            with trio.fail_at(min(nearest, sent + self.op_timeout)):
                reply = await self._call("beat", args)
        except (*UNREACHABLE, trio.TooSlowError) as exc:
            self._unreachable(exc)
            return
        if not self.available:
            logger.warning("quota %r: Redis reachable again", self.name)
        self.available = True
        if self.epoch and reply[1] != self.epoch:
            logger.warning("quota %r: Redis lost its state; leases re-asserted", self.name)
        self.epoch = reply[1]
        for entry, status in zip(entries, reply[3:], strict=True):
            if self._entries.get(entry.token) is not entry:
                # Released or withdrawn while the beat was in flight: it may have been
                # renewed or re-queued by this very beat, so forget it again.
                self._to_release[entry.token] = trio.current_time()
                self._release_kick.set()
            elif status == "G":
                self._granted(entry, sent)
            elif (status in ("H", "G") and entry.state == "H") or status == entry.state == "W":
                entry.seen_at = max(entry.seen_at, sent)
            elif status == "L" and entry.state == "H":
                entry.seen_at = -math.inf  # fired by _fire_losses below
        self._fire_losses()

    async def _releaser(self) -> None:
        """Send queued releases in batches; retry while they could still matter."""
        delay = 0.05
        while True:
            await self._release_kick.wait()
            self._release_kick = trio.Event()
            now = trio.current_time()
            for token, queued_at in list(self._to_release.items()):
                if now - queued_at > self.lease_ttl:
                    del self._to_release[token]  # expired in Redis by now anyway
            batch = list(self._to_release)
            if not batch:
                self._release_done.set()
                self._release_done = trio.Event()
                continue
            try:
                await self._call("release", batch)
            except (*UNREACHABLE, trio.TooSlowError):
                self._release_kick.set()
                await trio.sleep(delay)
                delay = min(delay * 2, self.heartbeat_interval)
                continue
            delay = 0.05
            for token in batch:
                self._to_release.pop(token, None)
            self._release_done.set()
            self._release_done = trio.Event()

    async def _listener(self, task_status: trio.TaskStatus[None]) -> None:
        """Pushed wake-ups: Redis publishes each grant on this process's channel."""
        started = False
        while True:
            try:
                # No retry policy of coredis's own (it retries forever): this loop retries.
                pubsub = self._client.pubsub(channels=[self.channel], retry_policy=None)
                async with pubsub:
                    if not started:
                        started = True
                        task_status.started()
                    async for message in pubsub:
                        if message["type"] == "message":
                            entry = self._entries.get(str(message["data"]))
                            if entry is not None and entry.state == "W":
                                # Queued at its last sighting, granted after: the lease
                                # expires no earlier than that sighting plus the TTL.
                                self._granted(entry, entry.seen_at)
            except Exception as exc:  # (possibly grouped by coredis's nursery)
                logger.debug("quota %r: wake channel lost (%r)", self.name, exc)
            if not started:
                started = True
                task_status.started()
            await trio.sleep(self.heartbeat_interval)


def check_positive(name: str, value: object, *, integer: bool = True) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise InvalidOptions(f"{name}: {value!r} must be a positive number")
