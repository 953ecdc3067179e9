"""Fault injection for the local server: make it misbehave the ways real providers do.

A :class:`Faults` is a bag of independent fault rules, each its own small class with a trigger
(a frame count, a context count, a predicate) and an action. The server reads
``server.faults`` at every decision point, so changing it at runtime (``server.faults.stall =
Stall()`` or ``server.set_faults(Faults(...))``) affects live connections at once. Counters
(frames sent, contexts created) are per connection; connections are numbered from 0 in accept
order and the ``connections`` predicate of a rule picks which ones it applies to.

New kinds of fault are new fields holding a new rule class; composing them is having several
fields set at once. Triggers are plain predicates: ``connections(index)`` picks connections
(accept order, from 0), ``when(create_index, context_id)`` picks contexts (``create_index``
counts creates on the connection from 0; context rules also take ``connections``),
``handshakes(n)`` picks upgrade requests (every
request the server sees, from 0). ``trio_tts.testing`` has ready-made ones (``nth(3)`` is
"on the 3rd").

Faults at three levels:

* **handshake** (:class:`RejectHandshake`, :class:`AcceptThenClose`,
  :class:`NoHandshakeAnswer`) — decided by the ASGI app before or right after the upgrade;
* **connection** (:class:`DropConnection`, :class:`BlackHole`, :class:`Stall`,
  :class:`CloseConnection`, :class:`CloseAfterContexts`, :class:`BadFrame`) — decided by the
  session's sender, frame by frame;
* **context** (:class:`ContextErrorFault`, :class:`StallContext`, :class:`DelayFirstAudio`,
  :class:`StrayAudio`) — decided for the contexts a ``when`` predicate selects.

Two faults act below the WebSocket layer and are exact only on the in-memory transport of
``trio_tts.testing`` (which passes a link in the ASGI scope): a :class:`BlackHole` also stops
answering pings there (under hypercorn, hypercorn itself still answers them), and
``BadFrame(kind="utf8")`` is written as a raw frame on the TCP socket under hypercorn (ASGI
cannot send invalid UTF-8).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = [
    "STRAY_PCM",
    "AcceptThenClose",
    "BadFrame",
    "BlackHole",
    "CloseAfterContexts",
    "CloseConnection",
    "ContextErrorFault",
    "DelayFirstAudio",
    "DropConnection",
    "Faults",
    "NoHandshakeAnswer",
    "RejectHandshake",
    "Stall",
    "StallContext",
    "StrayAudio",
]

#: The audio of a :class:`StrayAudio` chunk: 10 ms of a constant sample (16 kHz int16),
#: recognisable in any stream it lands in.
STRAY_PCM = b"\x11\x11" * 160

#: The default size of ``BadFrame(kind="oversize")``: one byte over the client's default
#: ``max_message_size`` (16 MiB).
OVERSIZE = 16 * 2**20 + 1


def _every(_index: int) -> bool:
    return True


def _every_context(_index: int, _context_id: str) -> bool:
    return True


@attrs.frozen
class DropConnection:
    """Drop the TCP connection (no close frame) once ``after_frames`` frames were sent on it.

    ``after_frames`` may be a function of the connection index (``lambda n: rng.randrange(9)``:
    each connection dropped at its own random point); it is called once per connection."""

    after_frames: int | Callable[[int], int]
    connections: Callable[[int], bool] = _every


@attrs.frozen
class BlackHole:
    """After ``after_frames`` frames, the connection goes silent for good: the socket stays
    open, nothing more is sent (on the in-memory transport not even pongs), and what the
    client sends is read and ignored. The client's own close still ends the session."""

    after_frames: int = 0
    connections: Callable[[int], bool] = _every


@attrs.frozen
class CloseConnection:
    """Close the WebSocket with ``code`` and ``reason`` instead of sending frame number
    ``after_frames + 1`` (``after_frames=0``: before the first frame)."""

    code: int = 1011
    reason: str = ""
    after_frames: int = 0
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


_BAD_KINDS = ("json", "binary", "oversize", "utf8")


@attrs.frozen
class BadFrame:
    """Send one bad frame after ``after_frames`` frames on a connection: ``kind="json"`` is a
    text frame that is not JSON, ``"binary"`` a binary frame, ``"oversize"`` a text frame of
    ``size`` bytes (default: one over the client's 16 MiB limit), ``"utf8"`` a text frame
    that is not valid UTF-8."""

    after_frames: int
    kind: str = "json"
    connections: Callable[[int], bool] = _every
    size: int = OVERSIZE

    def __attrs_post_init__(self) -> None:
        if self.kind not in _BAD_KINDS:
            raise ValueError(f"BadFrame.kind must be one of {_BAD_KINDS}, not {self.kind!r}")


@attrs.frozen
class ContextErrorFault:
    """Answer ``create`` with an error status instead of ``contextCreated`` for the contexts
    ``when(create_index, context_id)`` selects (``create_index`` counts creates on the
    connection from 0). With ``after_audio=True`` the context is created and fails on its
    first flush instead, after ``contextCreated``. With ``without_context_id=True`` the error
    is a top-level ``{"error": ...}`` frame naming no context (the server still drops that
    context)."""

    when: Callable[[int, str], bool]
    code: int = 13
    message: str = "Internal error"
    after_audio: bool = False
    connections: Callable[[int], bool] = _every
    without_context_id: bool = False


@attrs.frozen
class StallContext:
    """Stop the audio of the contexts ``when`` selects after ``after_frames`` of their audio
    frames; other contexts on the connection carry on. The stalled context never answers its
    close either (the client's stale-close timer must free the slot). Clearing the rule
    resumes it."""

    when: Callable[[int, str], bool]
    after_frames: int = 0
    connections: Callable[[int], bool] = _every


@attrs.frozen
class DelayFirstAudio:
    """Hold the first audio of the contexts ``when`` selects for ``seconds``."""

    seconds: float
    when: Callable[[int, str], bool] = _every_context
    connections: Callable[[int], bool] = _every


@attrs.frozen
class StrayAudio:
    """Send audio for a context the client does not own: ``kind="unknown"`` right after a
    selected context is created, for an id never created; ``kind="closed"`` right after a
    selected context's ``contextClosed``, for that (now closed) id."""

    kind: str = "unknown"
    when: Callable[[int, str], bool] = _every_context
    connections: Callable[[int], bool] = _every

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("unknown", "closed"):
            raise ValueError(f"StrayAudio.kind must be 'unknown' or 'closed', not {self.kind!r}")


@attrs.frozen
class RejectHandshake:
    """Refuse WebSocket upgrades with HTTP ``status`` (401, 403, 429, 503 ...); ``count`` limits
    how many (``None``: all of them while the rule is set). With ``echo=True`` the response
    body and an ``x-echo`` header repeat the request's ``Authorization`` header and query
    string, as careless providers do (for secret-leak tests)."""

    status: int = 503
    retry_after: float | None = None
    count: int | None = None
    echo: bool = False


@attrs.frozen
class AcceptThenClose:
    """Accept the upgrade of the handshakes ``handshakes(n)`` selects, then close at once
    with ``code`` and ``reason`` (before any frame)."""

    code: int = 1000
    reason: str = ""
    handshakes: Callable[[int], bool] = _every


@attrs.frozen
class NoHandshakeAnswer:
    """Never answer the upgrade of the handshakes ``handshakes(n)`` selects (TCP accepted,
    no HTTP response): only the client's own handshake timeout ends the wait."""

    handshakes: Callable[[int], bool] = _every


@attrs.frozen
class PaceAudio:
    """Send the audio frames of the contexts ``when`` selects ``interval`` seconds apart: a
    long utterance that keeps streaming (never silent for longer than ``interval``)."""

    interval: float
    when: Callable[[int, str], bool] = _every_context
    connections: Callable[[int], bool] = _every


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
    blackhole: BlackHole | None = None
    pace_audio: PaceAudio | None = None
    close_connection: CloseConnection | None = None
    stall_context: StallContext | None = None
    delay_first_audio: DelayFirstAudio | None = None
    stray_audio: StrayAudio | None = None
    accept_then_close: AcceptThenClose | None = None
    no_answer: NoHandshakeAnswer | None = None
