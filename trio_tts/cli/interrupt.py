"""Ctrl-C for the ``trio-tts`` commands: one orderly cancellation instead of a
``KeyboardInterrupt`` raised wherever the program happens to be.

trio's own SIGINT handling raises ``KeyboardInterrupt`` in whatever task is running when the
signal lands. With the embedded server in the same process that is often one of *its* tasks:
hypercorn treats the exception as an application crash (logging a traceback and closing the
WebSocket with 1011), the client then fails with "closed by the server (code 1011)", and the
interrupt itself is swallowed. Instead, :class:`Interrupts` turns SIGINT into a flag and
:func:`run_interruptibly` turns the flag into the cancellation of the whole command, so the
server, the pool and the output file (see ``speak._part_file``) all unwind the ordinary way.

Example::

    with Interrupts() as interrupts:
        text = read_text(args)             # Ctrl-C here raises KeyboardInterrupt as usual
        with interrupts.deferred():
            status = trio.run(run_interruptibly, command, args, interrupts)
    if interrupts.seen:
        ...                                # "interrupted", exit status 130
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

import trio

__all__ = ["Interrupts", "run_interruptibly"]


class Interrupts:
    """SIGINT while a command runs: raises ``KeyboardInterrupt`` outside :meth:`deferred`
    (plain blocking code such as reading stdin), only records it inside (the trio run, which
    watches :attr:`seen` through :func:`run_interruptibly`). Outside the main thread (where
    Python delivers no signals), or when SIGINT is ignored, it does nothing.

    ``restore=False`` is for a process about to end: on exit SIGINT is ignored instead of
    restored, so a Ctrl-C during interpreter shutdown changes nothing rather than printing a
    traceback or killing the process (Python resets its own handlers to the default action
    late in shutdown, but leaves an ignored signal ignored).
    """

    def __init__(self, *, restore: bool = True) -> None:
        self.seen = False
        self._restore = restore
        self._deferred = False
        self._previous: Any = None
        self._installed = False

    @property
    def active(self) -> bool:
        """Whether SIGINT is handled here (only in the main thread, between enter and exit)."""
        return self._installed

    def __enter__(self) -> Interrupts:
        main = threading.current_thread() is threading.main_thread()
        # An ignored SIGINT (a background job, nohup) stays ignored.
        if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._restore else signal.SIG_IGN)
            self._installed = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Only record SIGINT in this block (the trio run)."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        if not self._deferred:
            raise KeyboardInterrupt


async def run_interruptibly(
    command: Callable[[Any], Awaitable[int]], args: Any, interrupts: Interrupts
) -> int:
    """Run ``command(args)``; on SIGINT, set ``interrupts.seen`` and cancel it.

    Returns the command's status, or 130 when the interrupt cancelled it. An exception the
    command raises (also while being torn down) propagates as it is; the caller checks
    ``interrupts.seen`` first."""
    if not interrupts.active:
        return await command(args)
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        work = trio.CancelScope()
        if interrupts.seen:  # SIGINT between trio.run's start and the receiver
            work.cancel()
        status = 130
        error: BaseException | None = None

        async def watch() -> None:
            async for _ in signals:
                interrupts.seen = True
                work.cancel()

        # Holds the watcher; the command runs in this task so its errors stay ungrouped.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            try:
                with work:
                    status = await command(args)
            except BaseException as exc:  # re-raised below, outside the nursery
                error = exc
            finally:
                nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return status
