"""The trio engine, driven from asyncio: :class:`AsyncioPool` and :class:`AsyncioContext`.

An asyncio program owns its event loop (LiveKit agents run their own, possibly uvloop), so
the engine cannot call ``trio.run``. Instead it runs **as a guest** on that loop
(``trio.lowlevel.start_guest_run`` with ``run_sync_soon_threadsafe=loop.call_soon_threadsafe``):
trio's scheduler ticks as asyncio callbacks on the same thread. Trio's wait for I/O, which
guest mode does in a helper thread, is done by the asyncio loop itself on Linux
(:mod:`bridges._guest_io`: the loop watches trio's epoll descriptor; one wake-up per message
instead of three thread switches; ``TRIO_TTS_GUEST_IO=thread`` keeps guest mode's thread).
Think of two shops in one building sharing a front desk: each keeps its own queue, and a
slip passed across the desk is how work moves between them.

One trio run (an :class:`_Engine`) serves every pool on a loop; it starts with the first
``async with AsyncioPool(...)`` and finishes when the last one leaves. Where the program's
main loop is trio and asyncio code runs on a ``trio_asyncio.open_loop()`` loop, the engine
is a task of that trio run instead (started with ``trio_as_future``), and
:meth:`AsyncioPool.from_trio_pool` shares a pool the trio program already owns.

Crossing the desk:

* asyncio → trio: :meth:`_Engine.call` passes a :class:`_Call` to ``TrioToken.run_sync_soon``
  (the only way in that wakes an idle trio); trio starts a task for it in the engine's
  nursery, inside the call's own cancel scope, and the task completes an asyncio future
  directly (same thread, so no ``call_soon_threadsafe``).
* Cancellation, asyncio → trio: cancelling the awaiting asyncio task cancels the call's
  scope, so a caller waiting for a slot leaves the pool's queue at once. A value the trio
  task produced after asyncio gave up (an opened context) is cleaned up in trio.
* Cancellation, trio → asyncio: a crossing whose trio task is cancelled by trio (the engine
  shutting down, the host program cancelling) cancels the asyncio future; errors arrive as
  the same ``trio_tts`` exception types.
* Tracing: ``open_context`` carries the caller's OpenTelemetry context across, so the
  asyncio task's current span is the parent of the context's ``tts.context`` span, as it is
  in trio (:func:`_in_callers_trace`; nothing happens unless OpenTelemetry is imported).
* Commands: ``send_text``, ``flush`` and ``finish`` are queued in order and sent by one
  trio *writer* task per burst: a burst costs one crossing and waits for no answer, so the
  text goes out without a round trip per command.
* Events: no crossing, no task. ``async for event in ctx`` takes the events straight from
  the trio context's own buffer (``Context.receive_nowait``: both worlds share this thread),
  and the pool's receiver wakes a waiting consumer as it queues an event
  (``Context.on_ready``). The buffer is the trio context's, bounded there (a consumer that
  falls behind fails with ``SlowConsumer``); nothing is copied or held in between. A consumer
  that finds many events queued yields to the other asyncio tasks every ``prefetch`` events.
  ``forward(handle)`` (the LiveKit plugins') goes one step further: while nothing is queued
  and the downstream has room (``hold``), the receiver calls ``handle(event)`` itself for the
  first event of each loop callback (``Context.on_event``): no future, no task step, no loop
  pass for it — every event of paced audio; the rest of a burst goes through the task.

Example::

    async with AsyncioPool(trio_tts.InworldProvider(api_key=key)) as pool:
        ctx = await pool.open_context(voice="Ashley")
        async with ctx:
            await ctx.send_text("Hello from asyncio.")
            await ctx.finish()
            async for event in ctx:
                ...
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import outcome
import trio
from typing_extensions import TypeVar as DefaultTypeVar
from typing_extensions import Unpack

import trio_tts

from . import _guest_io

__all__ = ["AsyncioContext", "AsyncioPool"]

T = TypeVar("T")
#: The provider's options class (``AsyncioPool[RimeOptions]``), as in ``trio_tts.Pool``.
OptionsT = DefaultTypeVar("OptionsT", bound=trio_tts.Options, default=trio_tts.Options)
_Event = trio_tts.Audio | trio_tts.FlushCompleted
_NOTHING: Any = object()
#: Seconds of trio batches one asyncio callback may run (see _Engine._ticks). Measured
#: through bridges.livekit at C=20 (firehose, 3-4 runs each): TTFA p50 8-10 ms with 0.5 ms,
#: 12-18 ms with 2 ms, 12-16 with 0.2 ms, 15-20 with 0 (one batch per callback); the same
#: CPU per turn. Longer runs of trio delay LiveKit's callbacks; shorter ones split a command's
#: way to the socket over more passes of the loop.
_TICK_BUDGET = 0.0005
#: Events forward() lets the pool's receiver hand on per context in one loop callback; the
#: rest of a burst goes through forward()'s task, so the downstream's own tasks (LiveKit's
#: emitter) run between the chunks of a burst instead of after all of it. Measured
#: (LiveKit, firehose C=1, TTFA p50): no cap 5 ms, 8: 3 ms, 1: 2 ms (3 ms before forward()).
_SINK_BURST = 1
#: Commands an AsyncioContext queues before the next one waits for the writer.
_OUTBOX = 64
_FAILED = trio_tts.ContextState.FAILED
#: ``TRIO_TTS_GUEST_IO=thread``: trio waits for I/O in guest mode's helper thread, as stock
#: guest mode does; otherwise (default ``loop``) the asyncio loop waits, where it can.
_GUEST_IO = os.environ.get("TRIO_TTS_GUEST_IO", "loop")
_Command = Callable[[trio_tts.Context[Any]], Awaitable[None]]


async def _flush(ctx: trio_tts.Context[Any]) -> None:
    await ctx.flush()


async def _finish(ctx: trio_tts.Context[Any]) -> None:
    await ctx.finish()


#: States in which leaving a context asks nothing of trio.
_ENDED = frozenset({trio_tts.ContextState.CLOSED, trio_tts.ContextState.FAILED})


class _Call(Generic[T]):
    """One asyncio → trio crossing: ``await afn()`` in trio, its outcome into ``future``."""

    __slots__ = ("afn", "cleanup", "future", "scope", "shield")

    def __init__(
        self,
        afn: Callable[[], Awaitable[T]],
        future: asyncio.Future[T],
        cleanup: Callable[[T], Awaitable[object]] | None,
        shield: bool,
    ) -> None:
        self.afn = afn
        self.future = future
        self.cleanup = cleanup
        #: Run to completion even if asyncio stops waiting (closing a context).
        self.shield = shield
        # Created here, entered by the trio task: cancelling it before it is entered is legal.
        self.scope = trio.CancelScope()


class _Engine:
    """A trio run on this thread that serves one asyncio loop: a token and a nursery."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.stopping = False
        self.hosted = False
        self.token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self._ready: asyncio.Future[None] = loop.create_future()
        self._finished: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
        #: Contexts whose consumer waits for an event: woken if the run ends first.
        self.waiting: set[AsyncioContext[Any]] = set()
        self._ticking = False
        self._more_ticks: collections.deque[Callable[[], object]] = collections.deque()
        #: Counts the loop callbacks that ran trio (_ticks): forward()'s per-callback budget.
        self.ticks = 0
        self._thread = threading.get_ident()  # the loop's thread
        #: The loop that waits for trio's I/O (``_guest_io``); None: guest mode's thread.
        self.host_io: _guest_io.HostIO | None = None

    @property
    def stopped(self) -> bool:
        """The trio run has finished."""
        return self._finished.done()

    # -- lifetime (asyncio side) -----------------------------------------------------------

    @classmethod
    async def acquire(cls) -> _Engine:
        """The running loop's engine, started if needed. Pair with :meth:`release`."""
        loop = asyncio.get_running_loop()
        engine = _ENGINES.get(loop)
        while engine is not None and engine.stopping:
            await asyncio.shield(engine._finished)  # one trio run per thread at a time
            engine = _ENGINES.get(loop)
        if engine is None:
            engine = _ENGINES[loop] = cls(loop)
            engine._start()
        engine.users += 1
        try:
            await engine._started_or_finished()
            if not engine._ready.done():
                engine._finished.result().unwrap()
                raise trio_tts.PoolClosed("the trio engine stopped while starting")
        except BaseException:
            await engine.release()
            raise
        return engine

    async def _started_or_finished(self) -> None:
        futures: list[asyncio.Future[Any]] = [self._ready, self._finished]
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)

    def _start(self) -> None:
        if trio.lowlevel.in_trio_run():
            # A trio program hosting asyncio: the loop must be trio_asyncio's.
            trio_as_future = getattr(self.loop, "trio_as_future", None)
            if trio_as_future is None:
                raise RuntimeError(
                    "a trio run is active on this thread but the running asyncio loop is not "
                    "a trio_asyncio loop; run asyncio code under trio_asyncio.open_loop()"
                )
            self.hosted = True
            service: asyncio.Future[None] = trio_as_future(self._main)
            service.add_done_callback(self._service_done)
        else:
            if _GUEST_IO != "thread" and _guest_io.supported(self.loop):
                _guest_io.install()
                self.host_io = _guest_io.HostIO(self.loop)
            trio.lowlevel.start_guest_run(
                self._main,
                run_sync_soon_threadsafe=self._soon_threadsafe,
                run_sync_soon_not_threadsafe=self._soon,
                done_callback=self._guest_done,
                # asyncio and uvloop own signal.set_wakeup_fd; trio must not take it over.
                host_uses_signal_set_wakeup_fd=True,
            )

    # -- guest ticks: a few trio batches per asyncio callback ------------------------------

    def _soon_threadsafe(self, fn: Callable[[], object]) -> None:
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._ticks, fn)
        elif self.host_io is not None and self.host_io.delivering and not self._ticking:
            # Trio's I/O wait ended in a loop callback (_guest_io): its tick runs now, no
            # self-pipe write, no extra pass of the loop.
            self._ticks(fn)
        else:
            self._soon(fn)  # the loop's own thread: no self-pipe write either

    def _soon(self, fn: Callable[[], object]) -> None:
        if self._ticking:
            self._more_ticks.append(fn)  # run by _ticks once the current one returns
        else:
            self.loop.call_soon(self._ticks, fn)

    def _ticks(self, fn: Callable[[], object]) -> None:
        """Run a guest tick and the ticks it schedules, up to ``_TICK_BUDGET`` seconds.

        Each guest tick runs one batch of trio tasks; scheduled with ``call_soon`` each
        batch would wait for a whole asyncio loop iteration, and a chain of them (a command
        through the writer, the connection's sender and the socket: ~10 batches) for as many
        iterations, each long when the loop is busy. Here the batches a tick leads to run in
        the same callback, within the budget; the rest is scheduled as before."""
        self._ticking = True
        self.ticks += 1
        deadline = time.perf_counter() + _TICK_BUDGET
        more = self._more_ticks
        try:
            fn()
            while more and time.perf_counter() < deadline:
                more.popleft()()
        finally:
            self._ticking = False
            while more:
                self.loop.call_soon(self._ticks, more.popleft())

    def _guest_done(self, result: outcome.Outcome[None]) -> None:
        if self.host_io is not None:
            self.host_io.close()
        if not self._finished.done():
            self._finished.set_result(result)
        for ctx in list(self.waiting):
            ctx.run_stopped()  # they find the run stopped: PoolClosed

    def _service_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self._guest_done(outcome.Error(trio_tts.PoolClosed("the host trio run cancelled")))
        elif (exc := future.exception()) is not None:
            self._guest_done(outcome.Error(exc))
        else:
            self._guest_done(outcome.Value(None))

    async def release(self) -> None:
        """Drop one user; the last one stops the trio run and waits until it finished."""
        self.users -= 1
        if self.users > 0:
            return
        self.stopping = True
        if self.token is None:  # still starting: the stop can only be posted once it runs
            await asyncio.shield(self._started_or_finished())
        if self.token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(self._stop.set)
        try:
            result = await asyncio.shield(self._finished)
        finally:
            if _ENGINES.get(self.loop) is self and self._finished.done():
                del _ENGINES[self.loop]
        result.unwrap()

    # -- the trio side ---------------------------------------------------------------------

    async def _main(self) -> None:
        # Every crossing, context pump and pool service of this loop runs here.
        async with trio.open_nursery() as nursery:
            self.token = trio.lowlevel.current_trio_token()
            self.nursery = nursery
            self._ready.set_result(None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _spawn(self, call: _Call[Any]) -> None:
        """Runs in trio (``run_sync_soon``): start the crossing's task."""
        try:
            assert self.nursery is not None
            self.nursery.start_soon(self._run, call)
        except RuntimeError:  # the nursery closed: the engine is stopping
            if not call.future.done():
                call.future.set_exception(trio_tts.PoolClosed("the trio engine has stopped"))

    async def _run(self, call: _Call[Any]) -> None:
        future = call.future
        if future.done() and not call.shield:
            return  # asyncio gave up before the task started
        value: Any = _NOTHING
        try:
            with call.scope:
                value = await call.afn()
        except trio.Cancelled:
            if not future.done():
                future.cancel("cancelled on the trio side")
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if value is _NOTHING:  # the scope absorbed a cancel asked for by asyncio
            if not future.done():
                future.cancel()
        elif not future.done():
            future.set_result(value)
        elif call.cleanup is not None:
            await call.cleanup(value)  # asyncio stopped waiting: undo what the call made

    # -- crossings (asyncio side) ----------------------------------------------------------

    def run_sync_soon(self, fn: Callable[[], object]) -> None:
        """Run the synchronous ``fn`` in trio soon (e.g. set a ``trio.Event``)."""
        if self.token is None:
            raise trio_tts.PoolClosed("the trio engine has stopped")
        try:
            self.token.run_sync_soon(fn)
        except trio.RunFinishedError:
            raise trio_tts.PoolClosed("the trio engine has stopped") from None

    async def call(
        self,
        afn: Callable[[], Awaitable[T]],
        *,
        cleanup: Callable[[T], Awaitable[object]] | None = None,
        shield: bool = False,
    ) -> T:
        """``await afn()`` in trio and return its result here.

        Cancelling the awaiting asyncio task cancels the trio task (unless ``shield``); if
        trio produced a value anyway, ``cleanup(value)`` runs in trio.

        Raises:
            PoolClosed: the engine has stopped.
            Exception: whatever ``afn`` raised, unchanged.
        """
        future: asyncio.Future[T] = self.loop.create_future()
        call = _Call(afn, future, cleanup, shield)
        self.run_sync_soon(partial(self._spawn, call))
        try:
            return await future
        except asyncio.CancelledError:
            with contextlib.suppress(trio_tts.PoolClosed):
                if future.cancelled():
                    if not shield:
                        self.run_sync_soon(call.scope.cancel)
                elif cleanup is not None and future.exception() is None:
                    # Trio delivered just before asyncio cancelled this task (the cancel wins
                    # the wake-up): nobody will see the value, so undo it in trio.
                    self.start_soon(partial(cleanup, future.result()))
            raise

    def start_soon(self, afn: Callable[[], Awaitable[object]]) -> None:
        """Start a background trio task in the engine's nursery (no result crosses back)."""

        def spawn() -> None:
            with contextlib.suppress(RuntimeError):  # closed nursery: the engine is stopping
                assert self.nursery is not None
                self.nursery.start_soon(afn)

        self.run_sync_soon(spawn)


_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Engine] = (
    weakref.WeakKeyDictionary()
)


class AsyncioPool(Generic[OptionsT]):
    """A :class:`trio_tts.Pool` for asyncio code; the same API in asyncio terms.

    Use it as an async context manager on a running loop (asyncio's own, uvloop, or a
    ``trio_asyncio`` loop); the trio engine starts on entry and finishes on exit::

        async with AsyncioPool(trio_tts.InworldProvider(api_key=key), max_connections=20) as pool:
            ctx = await pool.open_context(voice="Ashley")

    Args:
        provider: the :class:`trio_tts.Provider` to connect to.
        settings, defaults, quota, connection_quota, context_quota, transport_factory,
            telemetry and keyword settings: as :func:`trio_tts.open_pool` (checked here,
            before any I/O).
        prefetch: how many queued events an :class:`AsyncioContext`'s consumer takes in a
            row before it lets the other asyncio tasks run (0: after every event).

    Raises:
        InvalidOptions: an unknown or out-of-range setting.
    """

    def __init__(
        self,
        provider: trio_tts.Provider[OptionsT] | None,
        settings: trio_tts.PoolSettings | None = None,
        /,
        *,
        prefetch: int = 8,
        defaults: OptionsT | None = None,
        quota: trio_tts.Quota | None = None,
        connection_quota: trio_tts.Quota | None = None,
        context_quota: trio_tts.Quota | None = None,
        transport_factory: trio_tts.TransportFactory | None = None,
        telemetry: trio_tts.Telemetry | None = None,
        **changes: Unpack[trio_tts.PoolSettingsKwargs],
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise trio_tts.InvalidOptions(f"prefetch: {prefetch!r} must be an integer >= 0")
        self._provider = provider
        self._settings = trio_tts.PoolSettings.build(settings, **changes)
        self._collaborators: dict[str, Any] = {
            "defaults": defaults,
            "quota": quota,
            "connection_quota": connection_quota,
            "context_quota": context_quota,
            "transport_factory": transport_factory,
            "telemetry": telemetry,
        }
        self._prefetch = prefetch
        self._engine: _Engine | None = None
        self._pool: trio_tts.Pool[OptionsT] | None = None
        self._owned = True
        self._stop = trio.Event()
        self._stopped = trio.Event()

    @classmethod
    def from_trio_pool(
        cls, pool: trio_tts.Pool[OptionsT], *, prefetch: int = 8
    ) -> AsyncioPool[OptionsT]:
        """Share ``pool``, opened by the trio program that hosts this asyncio code through
        ``trio_asyncio``. Leaving the ``async with`` does not close ``pool``."""
        self = cls(None, prefetch=prefetch)
        self._pool = pool
        self._owned = False
        return self

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Start the engine (if needed) and open the pool; ``async with`` calls this.

        Raises:
            InvalidOptions: a pool setting is out of range.
            RuntimeError: already open, or ``from_trio_pool`` used outside ``trio_asyncio``.
        """
        if self._engine is not None:
            raise RuntimeError("the AsyncioPool is already open")
        engine = await _Engine.acquire()
        try:
            if not self._owned and not engine.hosted:
                raise RuntimeError(
                    "AsyncioPool.from_trio_pool needs asyncio code running under trio_asyncio "
                    "in the trio run that owns the pool"
                )
            if self._owned:
                assert self._provider is not None and engine.nursery is not None
                nursery = engine.nursery
                opened: trio_tts.Pool[OptionsT] = await engine.call(
                    partial(nursery.start, self._serve), cleanup=self._cleanup_unwanted
                )
                self._pool = opened
        except BaseException:
            await engine.release()
            raise
        self._engine = engine

    async def _serve(self, *, task_status: trio.TaskStatus[trio_tts.Pool[OptionsT]]) -> None:
        assert self._provider is not None
        try:
            async with trio_tts.open_pool(
                self._provider, self._settings, **self._collaborators
            ) as pool:
                task_status.started(pool)
                await self._stop.wait()
        finally:
            self._stopped.set()

    async def _cleanup_unwanted(self, pool: trio_tts.Pool[OptionsT]) -> None:
        self._pool = pool  # the caller of open() was cancelled after the pool opened
        await self._shutdown()

    async def _shutdown(self) -> None:
        assert self._pool is not None
        await self._pool.aclose()
        self._stop.set()
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Close the pool gracefully (if this object opened it) and release the engine;
        the last pool on the loop waits until the trio run has finished. Idempotent."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            if self._owned and self._pool is not None:
                await engine.call(self._shutdown, shield=True)
        finally:
            await engine.release()

    # -- the pool API ----------------------------------------------------------------------

    def _require(self) -> tuple[_Engine, trio_tts.Pool[OptionsT]]:
        if self._engine is None or self._pool is None:
            raise trio_tts.PoolClosed("the AsyncioPool is not open")
        return self._engine, self._pool

    async def open_context(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a wait deadline, as in trio_tts)
        options: OptionsT | None = None,
        **overrides: Any,
    ) -> AsyncioContext[OptionsT]:
        """:meth:`trio_tts.Pool.open_context` from asyncio; same arguments, same errors.

        Cancelling the caller while it waits for a slot withdraws it from the pool's queue.
        """
        engine, pool = self._require()
        opening = _in_callers_trace(
            partial(pool.open_context, timeout=timeout, options=options, **overrides)
        )
        prefetch = self._prefetch

        async def open_bridged() -> AsyncioContext[OptionsT]:
            ctx = await opening()
            bridged = AsyncioContext(engine, ctx, prefetch=prefetch)
            ctx.on_ready(bridged.wake)  # in trio, before any event can be missed
            return bridged

        return await engine.call(open_bridged, cleanup=_abandon)

    def start_context(
        self,
        *,
        timeout: float | None = None,  # a wait deadline, as in trio_tts
        options: OptionsT | None = None,
        **overrides: Any,
    ) -> AsyncioContext[OptionsT]:
        """:meth:`open_context` without waiting: the context is returned at once and opens
        in trio (one crossing); commands queue meanwhile and go out as soon as it is open, so
        the text waits for no answer at all.

        What the opening meets (``CapacityTimeout``, ``HandshakeRejected``, ``PoolClosed``,
        ...) is raised by iteration and by the next command; :attr:`AsyncioContext.id` and
        ``trio_context`` raise ``RuntimeError`` until it is open. Leaving it (``aclose``)
        while it waits for a slot withdraws it from the pool's queue.

        Raises:
            InvalidOptions: bad ``overrides`` (checked here, before anything is sent).
            PoolClosed: the pool is not open.
        """
        engine, pool = self._require()
        base = options if options is not None else pool.defaults
        opts = base.replace(**overrides) if overrides else base
        opening = _in_callers_trace(partial(pool.open_context, timeout=timeout, options=opts))
        ctx = AsyncioContext(engine, None, prefetch=self._prefetch, options=opts)
        ctx.start_opening(opening)
        return ctx

    async def prewarm(self, n: int | None = None, *, options: OptionsT | None = None) -> int:
        """:meth:`trio_tts.Pool.prewarm` from asyncio."""
        engine, pool = self._require()
        return await engine.call(partial(pool.prewarm, n, options=options))

    def update_options(self, **changes: Any) -> None:
        """:meth:`trio_tts.Pool.update_options`: validated here, applied in trio before any
        later crossing from this loop.

        Raises:
            InvalidOptions: an unknown field or invalid value (nothing changes).
        """
        engine, pool = self._require()
        pool.defaults.replace(**changes)  # validate now, in the caller's frame
        engine.run_sync_soon(partial(pool.update_options, **changes))

    async def run(self, afn: Callable[[], Awaitable[T]]) -> T:
        """``await afn()`` in the pool's trio run (e.g. ``trio_tts.http``) and return its
        result; cancellation and errors cross as for every other call."""
        engine, _ = self._require()
        return await engine.call(afn)

    def statistics(self) -> trio_tts.PoolStatistics:
        """The trio pool's statistics (a plain read: both worlds share this thread)."""
        return self._require()[1].statistics()

    @property
    def defaults(self) -> OptionsT:
        return self._require()[1].defaults

    @property
    def trio_pool(self) -> trio_tts.Pool[OptionsT]:
        """The trio pool; touch it only from trio code (e.g. in :meth:`run`).

        Raises:
            PoolClosed: the AsyncioPool is not open.
        """
        return self._require()[1]

    @property
    def metrics_url(self) -> str | None:
        """:attr:`trio_tts.Pool.metrics_url`: the live view's address (``metrics_port``)."""
        return self._require()[1].metrics_url

    def __repr__(self) -> str:
        inner = repr(self._pool) if self._pool is not None else "<not open>"
        return f"<AsyncioPool {inner}>"


def _in_callers_trace(afn: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``afn``, to be run in trio under the OpenTelemetry context current here (in the asyncio
    task), so that spans it starts have the caller's current span as their parent.

    The trio task that runs a crossing inherits nothing of the asyncio task's context
    variables. Only OpenTelemetry's context is carried, not every variable (asyncio's, trio's
    and sniffio's own must stay where they are). Free when OpenTelemetry was never imported:
    then no span can be current.
    """
    otel = sys.modules.get("opentelemetry.context")
    if otel is None:
        return afn
    captured: object = otel.get_current()

    async def attached() -> T:
        token: object = otel.attach(captured)
        try:
            return await afn()
        finally:
            otel.detach(token)

    return attached


async def _abandon(ctx: AsyncioContext[Any]) -> None:
    await ctx.leave()


class AsyncioContext(Generic[OptionsT]):
    """A :class:`trio_tts.Context` for asyncio code. Create it with
    :meth:`AsyncioPool.open_context`.

    The same contract as the trio context: leaving ``async with`` early (an error, a
    cancellation, ``break``) cancels the utterance on the server and the slot comes back when
    the server confirms. Cancelling a task that only waits for the next event loses no event.
    """

    def __init__(
        self,
        engine: _Engine,
        ctx: trio_tts.Context[OptionsT] | None,
        *,
        prefetch: int,
        options: OptionsT | None = None,
    ) -> None:
        self._engine = engine
        self._ctx = ctx  # None while it opens (AsyncioPool.start_context)
        self._options = ctx.options if ctx is not None else options
        self._open_error: BaseException | None = None  # why it never opened
        self._open_scope = trio.CancelScope()
        self._left = False  # aclose()/cancel() called
        self._prefetch = prefetch
        self._taken = 0  # events taken since the consumer last let other tasks run
        self._waiters: list[asyncio.Future[None]] = []
        # Commands (send_text, flush, finish) queued for trio in order; one writer task at a
        # time sends them, so a burst of commands costs one crossing and no round trip.
        self._outbox: collections.deque[_Command] = collections.deque()
        self._writing = ctx is None  # the task that opens it sends what was queued meanwhile
        self._write_error: BaseException | None = None  # raised by the next command
        self._finishing = False  # finish() or close() queued: no more text
        self._drained: list[asyncio.Future[None]] = []  # waiters for the writer to stop
        self._full: Callable[[], bool] | None = None  # downstream backpressure (hold())
        self._held = False  # the consumer waits for release()
        self._sink: Callable[[_Event], bool] | None = None  # forward()'s, given to the context
        self._sink_tick = -1  # the engine's tick in which the sink last took events
        self._sunk = 0  # events the sink took in that tick
        self._forward_error: BaseException | None = None  # what forward()'s handler raised

    @property
    def id(self) -> str:
        """The context's id (the pool's).

        Raises:
            RuntimeError: it is still opening (:meth:`AsyncioPool.start_context`).
        """
        return self._opened().id

    @property
    def options(self) -> OptionsT:
        assert self._options is not None
        return self._options

    @property
    def state(self) -> trio_tts.ContextState:
        """The trio context's state; while it opens: ``OPEN`` (it takes text), ``FAILED``
        if the opening failed, ``ABANDONED`` if it was left first."""
        if self._ctx is not None:
            return self._ctx.state
        if self._left:
            return trio_tts.ContextState.ABANDONED
        return trio_tts.ContextState.OPEN if self._open_error is None else _FAILED

    @property
    def trio_context(self) -> trio_tts.Context[OptionsT]:
        """The trio object; touch it only from trio code.

        Raises:
            RuntimeError: it is still opening.
        """
        return self._opened()

    def _opened(self) -> trio_tts.Context[OptionsT]:
        if self._ctx is None:
            raise RuntimeError("the context is still opening (or never opened)")
        return self._ctx

    @property
    def buffered(self) -> int:
        """Events the bridge itself holds: always 0 (they wait in the trio context's own
        buffer, see ``trio_context.buffered_bytes``). For tests and monitoring."""
        return 0

    def __repr__(self) -> str:
        return f"<AsyncioContext {self._ctx if self._ctx is not None else self.state.value}>"

    # -- commands --------------------------------------------------------------------------

    async def send_text(self, text: str, *, flush: bool = False) -> None:
        """:meth:`trio_tts.Context.send_text`, queued behind the commands before it.

        Returns once queued: the commands (:meth:`send_text`, :meth:`flush`,
        :meth:`finish`) go to trio in order, a burst of them in one crossing, and none waits
        for trio's answer; it waits only while ``_OUTBOX`` commands wait to be sent.
        Cancelling the caller after this returned does not withdraw the text.

        Raises:
            InvalidOptions: ``text`` is not a string.
            ContextFailed, ConnectionLost, SlowConsumer: the context failed (a failure
                that a queued command met is raised by the next command).
            trio.ClosedResourceError: after ``finish()``, ``close()`` or ``aclose()``.
        """
        if not isinstance(text, str):
            raise trio_tts.InvalidOptions(f"text: expected str, got {type(text).__name__}")
        await self._post(lambda ctx: ctx.send_text(text, flush=flush))

    async def flush(self) -> None:
        """:meth:`trio_tts.Context.flush`, queued as :meth:`send_text` is."""
        await self._post(_flush)

    async def finish(self) -> None:
        """:meth:`trio_tts.Context.finish`, queued as :meth:`send_text` is."""
        await self._post(_finish, last=True)

    async def close(self) -> None:
        """``finish()`` and wait until the server confirmed the close."""
        self._finishing = True
        await self._drain()
        if self._ctx is None:
            raise self._write_error or trio_tts.PoolClosed("the context never opened")
        await self._engine.call(self._ctx.close)

    async def cancel(self) -> None:
        """Stop the utterance: iteration ends, the rest of its audio is dropped."""
        self._finishing = True
        if self._ctx is None:
            self._leave_opening()
            return
        await self._engine.call(self.leave, shield=True)

    async def aclose(self) -> None:
        """Leave the context (cancel it on the server unless it already closed). Never raises
        for the context's own failure; runs to completion even if the caller is cancelled."""
        self._finishing = True
        if self._ctx is None:
            self._leave_opening()  # the opening task leaves it, or withdraws from the queue
            return
        if self._ctx.state in _ENDED and not self._writing:
            return  # nothing left to do in trio: no crossing
        with contextlib.suppress(trio_tts.PoolClosed):
            await self._engine.call(self.leave, shield=True)

    def _leave_opening(self) -> None:
        if self._left or self._open_error is not None:
            return
        self._left = True
        self.wake()  # a consumer waiting for the opening: iteration ends
        with contextlib.suppress(trio_tts.PoolClosed):
            self._engine.run_sync_soon(self._open_scope.cancel)

    # -- opening without waiting (AsyncioPool.start_context) -------------------------------

    def start_opening(self, opening: Callable[[], Awaitable[trio_tts.Context[OptionsT]]]) -> None:
        """Asyncio side: open the context in a trio task (one crossing), which then sends
        the commands queued meanwhile.

        Raises:
            PoolClosed: the engine has stopped.
        """

        def spawn() -> None:
            try:
                assert self._engine.nursery is not None
                self._engine.nursery.start_soon(self._open_then_write, opening)
            except RuntimeError:  # the nursery closed: the engine is stopping
                self._opening_failed(trio_tts.PoolClosed("the trio engine has stopped"))

        self._engine.run_sync_soon(spawn)

    async def _open_then_write(
        self, opening: Callable[[], Awaitable[trio_tts.Context[OptionsT]]]
    ) -> None:
        ctx: trio_tts.Context[OptionsT] | None = None
        try:
            with self._open_scope:  # cancelled by aclose() while waiting for a slot
                ctx = await opening()
        except trio.Cancelled:
            self._opening_failed(trio_tts.PoolClosed("the pool closed before the context opened"))
            raise
        except Exception as exc:
            self._opening_failed(exc)
            return
        if ctx is None:  # left while waiting for a slot: the pool withdrew it
            self._opening_failed(trio.ClosedResourceError("the context was left"))
            return
        self._ctx = ctx
        ctx.on_ready(self.wake)
        self._give_sink(ctx)
        self.wake()
        if self._left:  # left just as it opened
            self._outbox.clear()
            self._writer_stopped(None)
            await ctx.aclose()
            return
        await self._write()

    def _opening_failed(self, error: BaseException) -> None:
        if not self._left:
            self._open_error = error
        self._writer_stopped(error)
        self.wake()

    async def leave(self) -> None:
        """Trio side of :meth:`aclose`: leave the trio context."""
        await self._opened().aclose()

    # -- the writer: commands in order, one crossing per burst --------------------------------

    async def _post(self, command: _Command, *, last: bool = False) -> None:
        if self._write_error is not None:
            raise self._write_error
        state = self.state
        if self._finishing and state is trio_tts.ContextState.OPEN:
            # finish() is queued (trio will say "finishing"), or it was left while opening.
            raise trio.ClosedResourceError("context is finishing")
        if state is not trio_tts.ContextState.OPEN:
            # Failed, closed or left: trio raises its error at once, whatever is queued.
            if self._ctx is None:  # it never opened
                raise self._open_error or trio.ClosedResourceError("context is abandoned")
            await self._engine.call(partial(command, self._ctx))
            return
        if len(self._outbox) >= _OUTBOX:
            await self._drain()
        self._outbox.append(command)
        self._finishing = last
        if not self._writing:
            self._writing = True
            try:
                self._engine.run_sync_soon(self._start_writer)
            except trio_tts.PoolClosed:
                self._writer_stopped(trio_tts.PoolClosed("the trio engine has stopped"))
                raise

    def _start_writer(self) -> None:
        """Trio side (``run_sync_soon``): start the writer task."""
        try:
            assert self._engine.nursery is not None
            self._engine.nursery.start_soon(self._write)
        except RuntimeError:  # the nursery closed: the engine is stopping
            self._writer_stopped(trio_tts.PoolClosed("the trio engine has stopped"))

    async def _write(self) -> None:
        outbox = self._outbox
        ctx = self._opened()
        error: BaseException | None = None
        try:
            while outbox:
                await outbox[0](ctx)
                outbox.popleft()
        except trio.Cancelled:
            error = trio_tts.PoolClosed("the pool closed before the command was sent")
            raise
        except Exception as exc:
            error = exc
        finally:
            self._writer_stopped(error)

    def _writer_stopped(self, error: BaseException | None) -> None:
        if error is not None:
            self._write_error = error
            self._outbox.clear()
        self._writing = False
        for waiter in self._drained:
            if not waiter.done():
                waiter.set_result(None)
        self._drained.clear()

    async def _drain(self) -> None:
        """Wait until the writer has sent everything queued (or stopped on an error), or the
        trio run has ended."""
        while self._writing and not self._engine.stopped:
            waiter: asyncio.Future[None] = self._engine.loop.create_future()
            self._drained.append(waiter)
            self._engine.waiting.add(self)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._drained.remove(waiter)
                if not self._waiters and not self._drained:
                    self._engine.waiting.discard(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- events ----------------------------------------------------------------------------

    def hold(self, full: Callable[[], bool] | None) -> None:
        """Backpressure from where the events go: while ``full()`` is true, iteration waits
        and the audio stays in the trio context's buffer, where the pool's flow control
        (``PoolSettings.context_pause_bytes``) leaves the rest in the socket. Call
        :meth:`release` when ``full()`` may have turned false. Never past half of the trio
        context's bound (``max_buffered_bytes``): a stalled downstream does not make the
        context fail with ``SlowConsumer`` sooner than without it. None: no hold."""
        self._full = full

    def release(self) -> None:
        """A consumer held by :meth:`hold` looks again (cheap when nothing is held)."""
        if self._held:
            self._held = False
            self.wake()

    def _holds(self, ctx: trio_tts.Context[Any]) -> bool:
        full = self._full
        return (
            full is not None
            and full()  # first: per event, and nearly always false
            and ctx.buffered_bytes * 2 < ctx.max_buffered_bytes
            and ctx.state is not trio_tts.ContextState.ABANDONED
            and not self._engine.stopped
        )

    async def forward(self, handle: Callable[[_Event], object]) -> None:
        """Hand every event to ``handle(event)``, in order, until the context ends (returns)
        or fails (raises its error, as iteration does).

        While nothing is queued and the downstream is not full (:meth:`hold`), ``handle``
        runs as the event arrives, inside the pool's receiver on this thread: no loop
        iteration and no task step for it. That is the first event of each loop callback
        (paced audio: every event); the rest of a burst queues in the trio context and
        this task hands it on, as ``async for`` would, so the downstream's own tasks run
        between its chunks. Under trio_asyncio this task hands every event on.
        ``handle`` must return at once (it may not await) and may run outside any asyncio
        task (in trio's receiver: ``asyncio.current_task()`` is None there); if it raises,
        forward() raises that error. One reader at a time: not while another task iterates
        this context.

        Raises:
            RuntimeError: forward() is already running for this context. What iteration
                raises (the context's error, ``PoolClosed``); what ``handle`` raised.
        """
        if self._sink is not None:
            raise RuntimeError("forward() is already running for this context")

        engine = self._engine

        def sink(event: _Event) -> bool:
            ctx = self._ctx
            if self._forward_error is not None or (ctx is not None and self._holds(ctx)):
                return False  # queued: this task hands it on once the downstream has room
            if engine.ticks != self._sink_tick:
                self._sink_tick, self._sunk = engine.ticks, 0
            elif self._sunk >= _SINK_BURST:
                return False  # a burst: the rest goes through this task, between others
            self._sunk += 1
            try:
                handle(event)
            except Exception as exc:  # raised by forward(), not into the pool's receiver
                self._forward_error = exc
                self._wake_waiters()
            return True

        self._sink = sink
        if self._ctx is not None:
            self._give_sink(self._ctx)
        try:
            async for event in self:
                handle(event)
        finally:
            self._sink = None
            if self._ctx is not None:
                self._ctx.on_event(None)
            error, self._forward_error = self._forward_error, None
        if error is not None:
            raise error

    def _give_sink(self, ctx: trio_tts.Context[Any]) -> None:
        # Not under trio_asyncio: there the loop runs in trio and iteration costs no less.
        if self._sink is not None and not self._engine.hosted:
            ctx.on_event(self._sink)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _Event:
        if self._taken >= self._prefetch:
            # A burst of queued events: let the other tasks run between bursts (as trio's own
            # iteration checkpoints), before taking the next one: a cancel here loses none.
            self._taken = 0
            await asyncio.sleep(0)
        while True:
            if self._forward_error is not None:
                raise StopAsyncIteration  # forward() raises it
            ctx = self._ctx
            if ctx is not None:
                if self._full is not None and self._holds(ctx):
                    self._held = True  # until release() (or half the buffer bound)
                else:
                    self._held = False
                    try:
                        event = ctx.receive_nowait()
                    except trio.WouldBlock:
                        pass
                    else:
                        self._taken += 1
                        return event
            elif self._open_error is not None:
                raise self._open_error
            elif self._left:
                raise StopAsyncIteration
            self._taken = 0
            if self._engine.stopped:
                raise trio_tts.PoolClosed("the trio engine stopped before the context finished")
            waiter: asyncio.Future[None] = self._engine.loop.create_future()
            self._waiters.append(waiter)
            self._engine.waiting.add(self)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if not self._waiters and not self._drained:
                    self._engine.waiting.discard(self)

    def run_stopped(self) -> None:
        """The trio run ended: whoever waits here looks again (and raises PoolClosed)."""
        self._writer_stopped(None)
        self._held = False
        self.wake()

    def wake(self) -> None:
        """Trio side (``Context.on_ready``): an event was queued or the context ended."""
        if self._held and self._ctx is not None and self._holds(self._ctx):
            return  # held by the consumer's downstream: release() wakes it
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
