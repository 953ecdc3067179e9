"""Trio's wait for I/O on the asyncio loop itself, not in guest mode's helper thread (epoll).

Guest mode (``trio.lowlevel.start_guest_run``) hands trio's blocking wait for I/O to a
helper thread each time trio has nothing to run: the thread wakes for the job, sleeps in
``epoll_wait``, wakes on the event, and hands the result back with
``call_soon_threadsafe``. That is three thread wake-ups and a self-pipe write per idle
period. Paced audio (a message every 20 ms) is one idle period per message.
``benchmarks/bench_guest_io.py`` measures the cost per message: about 3.5 thread switches
and +150 µs of CPU over asyncio's own reader.

Trio's epoll descriptor is itself pollable, so the host loop can do the wait. The loop
watches it (``loop.add_reader``) and the next trio deadline (``loop.call_later``), then
collects the events with one ``get_events(0)`` on the loop's thread. No helper thread,
one wake-up per message, and trio's I/O is seen in the same ``select`` as asyncio's.

**Trio internals.** Trio has no public API for this. The guest tick passes its blocking
``get_events`` to the name ``start_thread_soon`` in ``trio._core._run``; :func:`install`
wraps that name once, process-wide. The wrapper takes a job only when all of these hold:

* it is a guest run's ``get_events`` closure;
* the run's host is an engine that asked for it (its ``run_sync_soon_threadsafe`` is a
  bound method of an object with a ``host_io`` attribute set to a loop);
* the run's I/O manager waits on a ``select.epoll``.

Every other job goes to trio's own ``start_thread_soon``, unchanged: other guest runs
(Qt, another engine), ``trio.to_thread``, a trio whose layout differs. :func:`supported`
says whether this trio has the layout; where it has not, the engine runs stock guest
mode. ``tests/test_layering.py`` names this module as the one place that may touch trio's
private modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

import outcome

__all__ = ["HostIO", "install", "supported"]

_installed = False
#: A running timer up to this many seconds later than trio's deadline still serves.
_SLACK = 0.0005


def _run_module() -> Any:
    try:
        import trio._core._run as run_module
    except ImportError:  # pragma: no cover - another trio layout
        return None
    return run_module


def supported(loop: asyncio.AbstractEventLoop) -> bool:
    """This process can wait for trio's I/O on ``loop``: Linux (epoll), a loop with
    ``add_reader`` (asyncio's selector loops, uvloop), and a trio whose guest tick hands
    its wait to ``trio._core._run.start_thread_soon``."""
    if not sys.platform.startswith("linux") or not hasattr(select, "epoll"):
        return False
    run_module = _run_module()
    guest = getattr(run_module, "GuestState", None)
    tick = getattr(guest, "guest_tick", None)
    if not callable(getattr(run_module, "start_thread_soon", None)) or tick is None:
        return False
    if "start_thread_soon" not in tick.__code__.co_names:
        return False
    try:
        loop.remove_reader(-1)  # a loop without readers (Windows' proactor) raises
    except NotImplementedError:
        return False
    except (ValueError, OSError):
        pass
    return True


def install() -> None:
    """Wrap trio's ``start_thread_soon`` (once per process; idempotent). Call only when
    :func:`supported` is true."""
    global _installed
    if _installed:
        return
    run_module = _run_module()
    original: Callable[..., None] = run_module.start_thread_soon

    def start_thread_soon(
        fn: Callable[[], Any],
        deliver: Callable[[outcome.Outcome[Any]], object],
        name: str | None = None,
    ) -> None:
        job = _hosted_job(fn)
        if job is None:
            original(fn, deliver, name)
        else:
            host, io_manager, timeout = job
            host.wait(io_manager, timeout, deliver)

    run_module.start_thread_soon = start_thread_soon
    _installed = True


#: ``get_events`` code object -> the positions of its ``self`` and ``timeout`` cells: found
#: once per code object, not per wait (trio makes a new closure for every idle period).
_CELLS: dict[CodeType, tuple[int, int]] = {}


def _hosted_job(fn: Callable[[], Any]) -> tuple[HostIO, Any, float] | None:
    """``(host, io_manager, timeout)`` when ``fn`` is the wait of a guest run hosted by an
    engine that asked for it; else None (trio's thread does the job)."""
    code = getattr(fn, "__code__", None)
    closure = getattr(fn, "__closure__", None)
    if code is None or not closure:
        return None
    cells = _CELLS.get(code)
    if cells is None:
        names = code.co_freevars
        if fn.__name__ != "get_events" or "self" not in names or "timeout" not in names:
            return None
        cells = _CELLS[code] = (names.index("self"), names.index("timeout"))
    try:
        guest = closure[cells[0]].cell_contents
        timeout = closure[cells[1]].cell_contents
    except (IndexError, ValueError):  # ValueError: an empty cell
        return None
    engine = getattr(getattr(guest, "run_sync_soon_threadsafe", None), "__self__", None)
    host = getattr(engine, "host_io", None)
    io_manager = getattr(getattr(guest, "runner", None), "io_manager", None)
    if not isinstance(host, HostIO) or not isinstance(timeout, (int, float)):
        return None
    if not isinstance(getattr(io_manager, "_epoll", None), select.epoll):
        return None
    return host, io_manager, float(timeout)


class HostIO:
    """Waits for one guest run's I/O on ``loop``: trio's epoll readable or its next deadline,
    whichever comes first, then ``deliver(get_events(0))`` on the loop's thread (as the
    helper thread would have delivered ``get_events(timeout)``).

    Owned by the engine that hosts the run (its ``host_io``); :meth:`close` when the run has
    finished. The epoll descriptor stays registered with the loop between waits (no
    ``epoll_ctl`` per wait): while trio runs, its own tick collects the events, and a
    readiness seen meanwhile is ignored."""

    __slots__ = ("_deliver", "_fd", "_io", "_timer", "delivering", "loop", "waits")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Idle periods of trio waited for here (for tests and monitoring).
        self.waits = 0
        #: True while a wait's result is handed to trio (the host may run the tick at once).
        self.delivering = False
        self._fd = -1
        self._io: Any = None
        self._deliver: Callable[[outcome.Outcome[Any]], object] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def wait(
        self,
        io_manager: Any,
        timeout: float,
        deliver: Callable[[outcome.Outcome[Any]], object],
    ) -> None:
        fd: int = io_manager._epoll.fileno()
        if fd != self._fd:
            self._unregister()
            self.loop.add_reader(fd, self._ready)
            self._fd = fd
        self._io = io_manager
        self._deliver = deliver
        self.waits += 1
        when = self.loop.time() + timeout
        timer = self._timer
        if timer is not None and timer.when() > when + _SLACK:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self.loop.call_at(when, self._expired)
        # else: the running timer fires no later (at worst early: trio then finds nothing
        # due and waits again), so it serves; a keepalive's deadline keeps one timer

    @property
    def fd(self) -> int | None:
        """The descriptor the loop watches (trio's epoll), None before the first wait and
        after :meth:`close`."""
        return None if self._fd < 0 else self._fd

    def _expired(self) -> None:
        self._timer = None
        self._ready()

    def _ready(self) -> None:
        deliver, self._deliver = self._deliver, None
        if deliver is not None:
            self.delivering = True
            try:
                deliver(outcome.capture(self._io.get_events, 0))
            finally:
                self.delivering = False

    def _unregister(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError, ValueError):  # trio closed it first
                self.loop.remove_reader(fd)

    def close(self) -> None:
        """The run has finished: stop watching its descriptor and its deadline."""
        self._unregister()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deliver = self._io = None
