"""``assert_quiescent(pool)``: the check every test should end with.

A pool at rest holds nothing on anybody's behalf: no context slot or quota lease, no waiter,
no connection half-way (connecting, draining, closing), no task in its nurseries beyond the
sweeper and each open connection's own sender/receiver/heartbeat. Anything else is a leak
— a slot that never came back, a move still sleeping, a spilled command still queued.
"""

from __future__ import annotations

import math

import trio

from .._core.pool import Pool

__all__ = ["assert_quiescent", "check_quiescent"]

# A connection's own long-lived tasks (each runs inside the actor's ``_guard``).
_ACTOR_TASKS = ("_guard",)
_POOL_TASKS = ("run", "_sweeper")


def check_quiescent(pool: Pool) -> list[str]:
    """Everything that keeps ``pool`` from being at rest, one line each (empty: at rest).

    Synchronous and side-effect free (it reads :meth:`Pool.inspect`);
    :func:`assert_quiescent` waits on it.
    """
    problems: list[str] = []
    snap = pool.inspect()
    slots = sum(len(c.contexts) for c in snap.connections)
    if slots:
        problems.append(f"{slots} context slot(s) in use")
    if snap.leases_held:
        problems.append(f"{snap.leases_held} quota lease(s) held")
    if snap.waiting or snap.reserved or snap.entering:
        problems.append(
            f"{snap.waiting} waiter(s), {snap.reserved} reservation(s), "
            f"{snap.entering} caller(s) entering"
        )
    if snap.contexts:
        shown = ", ".join(
            f"{c.id[:8]} {c.state.value} conn={c.connection}" for c in snap.contexts[:5]
        )
        problems.append(f"{len(snap.contexts)} context(s) not released: {shown}")
    for conn in snap.connections:
        if conn.state != "open":
            problems.append(f"connection #{conn.id} is {conn.state}")
        extra = [t for t in conn.tasks if t not in _ACTOR_TASKS]
        if extra:
            problems.append(f"connection #{conn.id} has extra tasks: {extra}")
    expected = len(snap.connections) + (0 if snap.closed else 1)
    extra = [t for t in snap.tasks if t not in _POOL_TASKS]
    if extra or len(snap.tasks) > expected:
        problems.append(
            f"pool nursery has {len(snap.tasks)} task(s) (expected {expected}): {list(snap.tasks)}"
        )
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
