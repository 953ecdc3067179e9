"""``assert_quiescent(pool)``: the check every test should end with.

A pool at rest holds nothing on anybody's behalf: no context slot or quota lease, no waiter,
no connection half-way (connecting, draining, closing), no task in its nurseries beyond the
sweeper and each open connection's own sender/receiver/heartbeat. Anything else is a leak
— a slot that never came back, a move still sleeping, a spilled command still queued.
"""

from __future__ import annotations

import math

import trio

from .._core.allocator import ConnState
from .._core.pool import Pool

__all__ = ["assert_quiescent", "check_quiescent"]

_ACTOR_TASKS = ("_guard",)


def _name(task: trio.lowlevel.Task) -> str:
    return task.name.rsplit(".", 1)[-1]


def check_quiescent(pool: Pool) -> list[str]:
    """Everything that keeps ``pool`` from being at rest, one line each (empty: at rest).

    Synchronous and side-effect free; :func:`assert_quiescent` waits on it.
    """
    problems: list[str] = []
    stats = pool.statistics()
    alloc = pool._alloc
    if stats.contexts_in_use:
        problems.append(f"{stats.contexts_in_use} context slot(s) in use")
    borrowed = pool._quota.statistics().borrowed
    if borrowed:
        problems.append(f"{borrowed} quota lease(s) held")
    if stats.waiting or alloc._reserved or pool._entering:
        problems.append(
            f"{stats.waiting} waiter(s), {len(alloc._reserved)} reservation(s), "
            f"{len(pool._entering)} caller(s) entering"
        )
    if pool._contexts:
        shown = ", ".join(sorted(repr(c) for c in pool._contexts)[:5])
        problems.append(f"{len(pool._contexts)} context(s) not released: {shown}")
    for conn in alloc.connections.values():
        if conn.state is not ConnState.OPEN:
            problems.append(f"connection #{conn.id} is {conn.state.value}")
    for conn_id, actor in pool._actors.items():
        if actor.state != "open":
            problems.append(f"connection actor #{conn_id} is {actor.state}")
        if actor.routes:
            problems.append(f"connection actor #{conn_id} still routes {len(actor.routes)}")
        nursery = actor._nursery
        if nursery is not None:
            extra = [_name(t) for t in nursery.child_tasks if _name(t) not in _ACTOR_TASKS]
            if extra:
                problems.append(f"connection actor #{conn_id} has extra tasks: {extra}")
    if set(pool._actors) != set(alloc.connections):
        problems.append(
            f"actors {sorted(pool._actors)} != allocator connections {sorted(alloc.connections)}"
        )
    nursery = pool._nursery
    if nursery is not None:
        names = [_name(t) for t in nursery.child_tasks]
        expected = len(pool._actors) + (0 if pool._closed.is_set() else 1)
        extra = [n for n in names if n not in ("run", "_sweeper")]
        if extra or len(names) > expected:
            problems.append(f"pool nursery has {len(names)} task(s) (expected {expected}): {names}")
    return problems


async def assert_quiescent(pool: Pool, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait (at most ``timeout`` seconds, virtual under a ``MockClock``) until ``pool`` is at
    rest, else fail with everything still held.

    Slots come back only when the server confirms a close, a moment after the caller left its
    ``async with ctx:``, so this waits rather than looking once. Give ``timeout`` more than
    the pool's ``stale_close_timeout`` to wait out a close the server never confirms.

    Example::

        async def test_my_app(tts_pool):
            await my_app.speak(tts_pool, "hello")
            await trio_tts.testing.assert_quiescent(tts_pool)

    Raises:
        AssertionError: listing what was still held at the deadline.
    """
    deadline = trio.current_time() + timeout if timeout != math.inf else math.inf
    while True:
        problems = check_quiescent(pool)
        if not problems:
            return
        if trio.current_time() >= deadline:
            raise AssertionError(
                f"pool not quiescent after {timeout:g} s: {pool!r}\n  " + "\n  ".join(problems)
            )
        with trio.move_on_at(deadline):
            await trio.sleep(0.01)
