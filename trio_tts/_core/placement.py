"""The pool's record of one context (like httpcore's ``AsyncPoolRequest``): which allocator
request holds its slot, its leases, its replay log and its close bookkeeping. Only the pool
reads and writes these; the caller's :class:`~trio_tts.Context` never sees them."""

from __future__ import annotations

from collections.abc import Hashable

import attrs
import trio

from .allocator import Request
from .commands import Command
from .context import ContextStream
from .errors import ConnectionLost
from .quota import Lease
from .telemetry import NO_CONTEXT_PROBE, ContextProbe

__all__ = ["Placement", "Waiter"]


@attrs.define(eq=False)
class Waiter:
    """One task waiting for the allocator's answer (a request's ``payload``)."""

    event: trio.Event = attrs.field(factory=trio.Event)
    error: BaseException | None = None

    def wake(self, error: BaseException | None = None) -> None:
        self.error = error
        self.event.set()


@attrs.define(eq=False)
class Placement:
    """The pool's record of one context, from admission to the release of its slot."""

    stream: ContextStream
    key: Hashable
    url: str
    #: The allocator request waiting for or holding the slot (None: neither).
    request: Request | None = None
    lease: Lease | None = None
    fleet_lease: Lease | None = None
    #: Commands to replay if the connection fails before any audio; None once audio came.
    log: list[Command] | None = None
    attempts: int = 1
    #: Cancel scope of a move to another connection in progress.
    moving: trio.CancelScope | None = None
    #: The server confirmed the create (``ContextCreated``).
    created: bool = False
    #: When the close or a cancel was sent (the stale-close clock runs from the later of
    #: this and ``last_frame_at``).
    close_sent_at: float | None = None
    #: A cancel was sent after a failure or abandonment: the next close or status error for
    #: this context is its answer.
    cancel_sent: bool = False
    last_frame_at: float = 0.0
    #: Connection attempts that failed while this context waited, and the last cause.
    connect_failures: int = 0
    last_connect_error: ConnectionLost | None = None
    #: The create (and, after a move, the replay) is being sent: new commands only join
    #: the log, which the sender drains in order.
    binding: bool = False
    #: Its create was queued on its current connection (False while a task places it).
    bound: bool = False
    #: What observes it (telemetry); the no-op probe once its slot was released.
    probe: ContextProbe = NO_CONTEXT_PROBE

    @property
    def conn_id(self) -> int | None:
        return None if self.request is None else self.request.conn_id
