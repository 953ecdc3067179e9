"""A fleet-wide quota in Redis: a distributed counting semaphore of leases.

Provider limits are per account, shared by every process of a fleet; :class:`RedisQuota`
keeps the whole fleet under one capacity. The decisions live in one atomic Lua script
(:mod:`trio_tts.fleet.script`, which also explains the *restart guard*; one call of it is
:mod:`trio_tts.fleet.wire`); this module is the process side of it, in three tasks:

- **The sender** makes every request of this process: the acquires that arrived since its
  last call go together in one script call, with every release due by then. Releases are
  synchronous and wait in :class:`~trio_tts.fleet.releases.PendingReleases` for the next call
  — so a loop of acquire/release costs one round trip per cycle — unless the fleet has
  waiters: then they leave at once (or ``release_delay`` after, when nothing else is sent).
- **The keeper** is the heartbeat: one batched call renews every lease and queue entry of
  this process (and carries the releases due), learns grants whose wake-up was lost, and
  re-asserts leases after a new epoch. A lease that is not renewed in time fires
  ``lease.lost`` *before* Redis may hand its slot to someone else: the local deadline is the
  send time of the last successful renewal plus ``lease_ttl`` minus ``loss_margin`` — Redis
  set the expiry from its own clock, later than that send, so the local deadline always comes
  first (and after a restart, the guard keeps the slot free until then).
- **The listener** receives pushed wake-ups on this process's pub/sub channel, and the
  quota's *queued* channel (someone waits: send releases now). Nobody polls.
- **When Redis is unreachable** the quota fails closed (:class:`QuotaUnavailable`), or, with
  ``fallback_share=k``, admits up to ``k`` leases of this process from a local limiter.

Open it with :func:`~trio_tts.open_redis_quota` (:mod:`trio_tts.fleet.open`), which checks
the settings and runs :meth:`RedisQuota.run` for its block.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import uuid
from collections.abc import Sequence

import attrs
import coredis
import coredis.exceptions
import trio

from .._core.errors import CapacityTimeout, InvalidOptions, TTSError
from .._core.quota import Lease, LocalQuota, QuotaStatistics, hold
from .releases import PendingReleases
from .wire import UNREACHABLE, QuotaUnavailable, Reply, ScriptCaller

__all__ = ["QuotaUnavailable", "RedisQuota", "RedisQuotaStatistics"]

logger = logging.getLogger("trio_tts.quota")


@attrs.frozen
class RedisQuotaStatistics:
    """What Redis holds for the whole fleet (:meth:`RedisQuota.fleet_statistics`).

    ``restart_guard`` is how long (s) Redis still grants nothing new after a restart.
    """

    capacity: int
    holders: int
    waiting: int
    epoch: str
    restart_guard: float = 0.0


@attrs.define(eq=False)
class _Entry:
    token: str
    lease: Lease
    kind: str  # what the sender asks: "A" acquire (or queue), "T" try
    state: str  # "W" asked/queued, "H" held, "L" lost (held locally until released), "N" refused
    seen_at: float  # local send time of the last call that found it queued or renewed it
    sent: bool = False  # Redis may know it
    event: trio.Event = attrs.field(factory=trio.Event)
    error: BaseException | None = None


class RedisQuota:
    """A :class:`~trio_tts.Quota` shared by every process that names the same Redis key.

    Create it with :func:`open_redis_quota`; hold a slot with ``async with
    quota.lease(timeout=...) as lease:``. ``acquire`` is FIFO across the fleet and cancel-safe;
    ``release`` is synchronous and idempotent. A sync ``try_acquire`` cannot ask Redis: it
    answers only from the fallback share while Redis is unreachable, else None (never
    over-admits) — ``await try_acquire_async()`` asks Redis (one round trip).
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
        release_delay: float = 0.005,
    ) -> None:
        self.name = name
        self.holder = uuid.uuid4().hex[:16]
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        self.waiter_ttl = waiter_ttl
        self.loss_margin = loss_margin
        self.op_timeout = op_timeout
        self.release_delay = release_delay
        self._client = client
        self._call = ScriptCaller(
            client,
            name,
            self.holder,
            capacity,
            lease_ttl=lease_ttl,
            waiter_ttl=waiter_ttl,
            op_timeout=op_timeout,
        )
        self._ids = itertools.count(1)
        self._entries: dict[str, _Entry] = {}
        self._by_lease: dict[int, _Entry] = {}
        self._fallback = LocalQuota(fallback_share) if fallback_share is not None else None
        self._fallback_leases: set[int] = set()
        self._requests: list[_Entry] = []
        self._releases = PendingReleases(release_delay, lease_ttl)
        self._send_kick = trio.Event()
        self._settled = trio.Event()
        self._keeper_wake = trio.Event()
        self._next_beat = math.inf
        self._backoff = 0.05
        self._waiters_at = -math.inf  # the fleet had waiters (reply or queued channel) then
        self._clear_at = -math.inf  # send time of the latest call that found no waiter
        self._guard_until = -math.inf
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
            lease = await self._acquire("A")
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
        return await self._acquire("T")

    def try_acquire(self) -> Lease | None:
        if self._fallback is not None and not self.available:
            lease = self._fallback.try_acquire()
            if lease is not None:
                self._fallback_leases.add(lease.id)
            return lease
        return None

    def release(self, lease: Lease) -> None:
        """Give ``lease`` back: at once locally, to Redis with the next call (see the module
        docstring for when that is). Idempotent."""
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
        try:
            guard = self._guard_until - trio.current_time()
        except RuntimeError:  # outside trio.run
            guard = 0.0
        return (
            f"<RedisQuota {self.name!r} holder={self.holder} {s.borrowed} held here,"
            f" {s.waiting} waiting here, capacity={s.total}, {len(self._releases)} releases"
            f" pending{f', restart guard {guard:.1f} s' if guard > 0 else ''}"
            f"{'' if self.available else ' UNAVAILABLE'}>"
        )

    async def flush(self) -> None:
        """Send every release made so far now, and wait until Redis has it (or it expired)."""
        while self._releases:
            self._releases.hurry()
            self._send_kick.set()
            await self._settled.wait()

    @property
    def capacity(self) -> int | None:
        """The fleet's capacity (None until Redis told it, when opened with None)."""
        return self._call.capacity

    @property
    def channel(self) -> str:
        """This process's wake channel (Redis publishes its grants there)."""
        return self._call.wake_channel

    @property
    def round_trips(self) -> int:
        """Script calls made so far (each one round trip)."""
        return self._call.round_trips

    @property
    def client(self) -> coredis.Redis[str]:
        """The coredis client this quota talks to Redis through."""
        return self._client

    @property
    def redis_keys(self) -> tuple[str, ...]:
        """The Redis keys holding the quota's state: capacity, epoch, leases, queue, queue
        expiries, sequence, run id, restart guard (one hash slot: ``trio-tts:{name}:...``)."""
        return self._call.keys

    # -- fleet-wide ------------------------------------------------------------------------

    async def fleet_statistics(self) -> RedisQuotaStatistics:
        """Ask Redis for the fleet's holders and waiters (one round trip)."""
        reply = await self._ask("stat")
        return RedisQuotaStatistics(
            capacity=reply.capacity,
            holders=reply.holders,
            waiting=reply.waiting,
            epoch=reply.epoch,
            restart_guard=reply.guard,
        )

    async def set_capacity(self, capacity: int) -> None:
        """Change the capacity stored in Redis for the whole fleet (an operator action)."""
        check_positive("capacity", capacity)
        self._call.capacity = capacity
        await self._ask("resize")

    # -- one script call -------------------------------------------------------------------

    async def _ask(self, op: str, args: Sequence[str] = (), releases: Sequence[str] = ()) -> Reply:
        sent = trio.current_time()
        reply = await self._call(op, args, epoch=self.epoch, releases=releases)
        self._observe(op, reply, sent)
        return reply

    def _observe(self, op: str, reply: Reply, sent: float) -> None:
        """What every reply tells: fleet waiters, the restart guard, a new epoch."""
        now = trio.current_time()
        if reply.waiting > 0:
            self._waiters_at = max(self._waiters_at, sent)
        else:
            self._clear_at = max(self._clear_at, sent)
        if reply.guard > 0:
            # Received after Redis computed it: this local time is after the guard's end.
            self._guard_until = now + reply.guard
            if any(e.state == "W" for e in self._entries.values()):
                self._plan_beat(self._guard_until)  # its dispatch grants the queue
        if op != "beat" and self.epoch and reply.epoch != self.epoch:
            self._plan_beat(now)  # re-assert this process's leases at once

    def _waiters_known(self) -> bool:
        return self._waiters_at > self._clear_at or any(
            e.state == "W" for e in self._entries.values()
        )

    # -- acquiring -------------------------------------------------------------------------

    async def _acquire(self, kind: str) -> Lease | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.available:
            return await self._fallback_acquire(kind)
        lease = Lease()
        entry = _Entry(f"{self.holder}:{next(self._ids)}", lease, kind, "W", trio.current_time())
        self._entries[entry.token] = entry
        self._requests.append(entry)
        self._send_kick.set()
        granted = False
        try:
            await entry.event.wait()  # the sender's answer, a pushed grant, or an error
            if entry.error is not None:
                self._forget(entry)
                if isinstance(entry.error, QuotaUnavailable) and self._fallback is not None:
                    return await self._fallback_acquire(kind)
                raise entry.error
            if entry.state == "N":
                return None
            granted = True
            return lease
        finally:
            if not granted:
                lease.released = True
                self._forget(entry)

    async def _fallback_acquire(self, kind: str) -> Lease | None:
        if self._fallback is None:
            raise QuotaUnavailable(f"quota {self.name!r}: Redis is unreachable")
        if kind == "T":
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
        """Drop ``entry`` locally now; Redis forgets it with a later call (if it knows it)."""
        if self._entries.pop(entry.token, None) is None:
            return
        self._by_lease.pop(entry.lease.id, None)
        if entry.sent:
            self._release_later(entry.token, urgent=entry.state == "W")

    def _release_later(self, token: str, *, urgent: bool) -> None:
        # A withdrawn queue entry is urgent: at the head, it would soak up the next grant.
        self._releases.add(token, trio.current_time(), urgent=urgent)
        self._send_kick.set()

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

        Checks the capacity with Redis, starts the listener, sender and keeper, renews once,
        then reports started. When cancelled it gives every lease of this process back in
        one round trip (shielded, at most ``op_timeout``), so the fleet gets them now rather
        than after ``lease_ttl``.

        Raises:
            QuotaUnavailable: Redis is unreachable at the start and no fallback share is set.
            InvalidOptions: the capacity differs from the one stored in Redis.
        """
        try:
            await self._ask("stat")  # checks the capacity; the epoch comes with the beat
            self.available = True
        except (*UNREACHABLE, trio.TooSlowError) as exc:
            if self._fallback is None:
                raise QuotaUnavailable(f"quota {self.name!r}: Redis is unreachable") from exc
        try:
            # The three background tasks; cancelled with this task.
            async with trio.open_nursery() as nursery:
                await nursery.start(self._listener)
                nursery.start_soon(self._sender)
                await self._beat()
                nursery.start_soon(self._keeper)
                task_status.started()
                await trio.sleep_forever()
        finally:
            await self._give_back()

    async def _give_back(self) -> None:
        tokens = [t for t, e in self._entries.items() if e.sent] + self._releases.all()
        with trio.CancelScope(shield=True), trio.move_on_after(self.op_timeout):
            if tokens and self.available:
                with contextlib.suppress(*UNREACHABLE, trio.TooSlowError):
                    await self._ask("req", releases=tokens)

    # -- background tasks ------------------------------------------------------------------

    async def _sender(self) -> None:
        """Send the acquires asked since the last call in one call, with the releases due."""
        while True:
            self._send_kick = trio.Event()
            now = trio.current_time()
            if not self._requests:
                due = self._releases.due(waiters=self._waiters_known())
                if due > now:
                    with trio.move_on_at(due):
                        await self._send_kick.wait()
                    continue
            # Withdrawn before they were sent: nothing to ask.
            requests = [e for e in self._requests if self._entries.get(e.token) is e]
            self._requests.clear()
            releases = self._releases.take(now)
            if requests or releases:
                await self._send(requests, releases)
            else:
                self._settle([], delivered=True)

    async def _send(self, requests: list[_Entry], releases: list[str]) -> None:
        sent = trio.current_time()
        for entry in requests:
            entry.sent = True
        try:
            args = [x for e in requests for x in (e.kind, e.token)]
            reply = await self._ask("req", args, releases)
        except (*UNREACHABLE, trio.TooSlowError) as exc:
            self._settle(releases, delivered=False, retry_at=sent + self._backoff)
            self._backoff = min(self._backoff * 2, self.heartbeat_interval)
            self._unreachable(exc)  # fails every waiting acquire, these included
            return
        except (TTSError, coredis.exceptions.RedisError) as exc:  # e.g. the capacity changed
            self._settle(releases, delivered=False, retry_at=sent + self._backoff)
            for entry in requests:
                entry.error = exc
                entry.event.set()
            return
        self._backoff = 0.05
        self._settle(releases, delivered=True)
        for entry, status in zip(requests, reply.answers, strict=True):
            if self._entries.get(entry.token) is not entry:
                if status != "N":  # withdrawn while asked: Redis may hold it now
                    self._release_later(entry.token, urgent=True)
            elif status == "G":
                self._granted(entry, sent)
            elif status == "W":
                entry.seen_at = max(entry.seen_at, sent)
            else:  # "N": a try refused, nothing in Redis
                del self._entries[entry.token]
                entry.state = "N"
                entry.event.set()

    def _settle(self, releases: list[str], *, delivered: bool, retry_at: float = -math.inf) -> None:
        self._releases.settle(releases, delivered=delivered, retry_at=retry_at)
        self._settled.set()  # wakes flush()
        self._settled = trio.Event()

    def _plan_beat(self, at: float) -> None:
        if at < self._next_beat:
            self._next_beat = at
            self._keeper_wake.set()

    async def _keeper(self) -> None:
        """The heartbeat: renew everything of this process in one call, then sleep."""
        while True:
            nearest = self._fire_losses()
            with trio.move_on_at(min(nearest, self._next_beat)):
                await self._keeper_wake.wait()
            self._keeper_wake = trio.Event()
            if trio.current_time() >= self._next_beat:
                await self._beat()
            else:
                self._fire_losses()

    async def _beat(self) -> None:
        entries = [e for e in self._entries.values() if e.state in ("H", "W") and e.sent]
        args = [x for e in entries for x in (e.state, e.token)]
        sent = trio.current_time()
        self._next_beat = sent + self.heartbeat_interval
        nearest = self._fire_losses()
        releases = self._releases.take(sent)
        try:
            with trio.fail_at(min(nearest, sent + self.op_timeout)):
                reply = await self._ask("beat", args, releases)
        except (*UNREACHABLE, trio.TooSlowError) as exc:
            self._settle(releases, delivered=False)
            self._unreachable(exc)
            return
        self._settle(releases, delivered=True)
        if not self.available:
            logger.warning("quota %r: Redis reachable again", self.name)
        self.available = True
        if self.epoch and reply.epoch != self.epoch:
            logger.warning("quota %r: new epoch in Redis; leases re-asserted", self.name)
        self.epoch = reply.epoch
        for entry, status in zip(entries, reply.answers, strict=True):
            if self._entries.get(entry.token) is not entry:
                # Released or withdrawn while the beat was in flight: it may have been
                # renewed or re-queued by this very beat, so forget it again.
                self._release_later(entry.token, urgent=True)
            elif status == "G":
                self._granted(entry, sent)
            elif (status in ("H", "G") and entry.state == "H") or status == entry.state == "W":
                entry.seen_at = max(entry.seen_at, sent)
            elif status == "L" and entry.state == "H":
                entry.seen_at = -math.inf  # fired by _fire_losses below
        self._fire_losses()

    async def _listener(self, task_status: trio.TaskStatus[None]) -> None:
        """Pushed wake-ups: Redis publishes each process's grants on its channel, and an
        enqueue into an empty queue on the quota's *queued* channel."""
        started = False
        while True:
            try:
                # No retry policy of coredis's own (it retries forever): this loop retries.
                channels = [self._call.wake_channel, self._call.queued_channel]
                pubsub = self._client.pubsub(channels=channels, retry_policy=None)
                async with pubsub:
                    if not started:
                        started = True
                        task_status.started()
                    async for message in pubsub:
                        if message["type"] != "message":
                            continue
                        if message["channel"] == self._call.queued_channel:
                            self._waiters_at = max(self._waiters_at, trio.current_time())
                            if self._releases:
                                self._send_kick.set()
                            continue
                        for token in str(message["data"]).split():
                            entry = self._entries.get(token)
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
