"""Fault injection for the local server: make it misbehave the ways real providers do.

A :class:`Faults` is a bag of independent fault rules, each its own small class with a trigger
(a frame count, a context count, a predicate) and an action. The server reads
``server.faults`` at every decision point, so changing it at runtime (``server.faults.stall =
Stall()`` or ``server.set_faults(Faults(...))``) affects live connections at once. Counters
(frames sent, contexts created) are per connection; connections are numbered from 0 in accept
order and the ``connections`` predicate of a rule picks which ones it applies to.

New kinds of fault are new fields holding a new rule class; composing them is having several
fields set at once.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = [
    "BadFrame",
    "CloseAfterContexts",
    "ContextErrorFault",
    "DropConnection",
    "Faults",
    "RejectHandshake",
    "Stall",
]


def _every(_index: int) -> bool:
    return True


@attrs.frozen
class DropConnection:
    """Drop the TCP connection (no close frame) once ``after_frames`` frames were sent on it."""

    after_frames: int
    connections: Callable[[int], bool] = _every


@attrs.frozen
class Stall:
    """Stop sending anything on a connection after ``after_frames`` frames; the socket stays open
    and the server keeps reading. Clearing the rule (``faults.stall = None``) resumes sending."""

    after_frames: int = 0
    connections: Callable[[int], bool] = _every


@attrs.frozen
class CloseAfterContexts:
    """Close the WebSocket with ``code`` right after the ``after_contexts``-th context was
    created on a connection (its ``contextCreated`` is sent first)."""

    after_contexts: int
    code: int = 1011
    reason: str = "internal error"
    connections: Callable[[int], bool] = _every


@attrs.frozen
class BadFrame:
    """Send one bad frame after ``after_frames`` frames on a connection: ``kind="json"`` is a
    text frame that is not JSON, ``kind="binary"`` a binary frame."""

    after_frames: int
    kind: str = "json"
    connections: Callable[[int], bool] = _every

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("json", "binary"):
            raise ValueError(f"BadFrame.kind must be 'json' or 'binary', not {self.kind!r}")


@attrs.frozen
class ContextErrorFault:
    """Answer ``create`` with an error status instead of ``contextCreated`` for the contexts
    ``when(create_index, context_id)`` selects (``create_index`` counts creates on the
    connection from 0). With ``after_audio=True`` the context is created and fails on its
    first flush instead, after ``contextCreated``."""

    when: Callable[[int, str], bool]
    code: int = 13
    message: str = "Internal error"
    after_audio: bool = False


@attrs.frozen
class RejectHandshake:
    """Refuse WebSocket upgrades with HTTP ``status`` (401, 403, 429, 503 ...); ``count`` limits
    how many (``None``: all of them while the rule is set)."""

    status: int = 503
    retry_after: float | None = None
    count: int | None = None


@attrs.define
class Faults:
    """The server's current faults; every field ``None`` (the default) means a healthy server.

    Example::

        faults = Faults(drop=DropConnection(after_frames=3), first_audio_delay=0.5)
        async with open_server(ServerConfig(faults=faults)) as server:
            server.faults.drop = None        # heal the server at runtime
    """

    drop: DropConnection | None = None
    stall: Stall | None = None
    first_audio_delay: float = 0.0
    close: CloseAfterContexts | None = None
    bad_frame: BadFrame | None = None
    context_error: ContextErrorFault | None = None
    reject: RejectHandshake | None = None
