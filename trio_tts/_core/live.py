"""The pool's live view: one JSON document — its statistics, its connections, its contexts by
state and its recent time to first audio — served over HTTP on 127.0.0.1 when the pool's
``metrics_port`` setting is set (``trio-tts top`` draws it).

A :class:`LiveMetrics` is a :class:`~trio_tts._core.telemetry.Telemetry` that remembers one
number per context: the time from ``open_context()`` to its first audio, for the last
:data:`WINDOW` seconds (at most :data:`MAX_SAMPLES`); everything else in the document is read
from ``pool.statistics()`` and ``pool.inspect()`` when a request comes. The document names the
provider and nothing about its URL or credentials. ``GET /`` answers the document; anything
else a 404. The listener and its requests live in their own nursery, beside the pool's.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import attrs
import trio

from .options import Options
from .telemetry import ContextProbe, ObservedPool, PoolProbe, Telemetry

__all__ = ["MAX_SAMPLES", "WINDOW", "LiveMetrics", "percentile"]

logger = logging.getLogger("trio_tts.live")

#: Seconds of time-to-first-audio samples the document summarises.
WINDOW = 60.0
MAX_SAMPLES = 4096
_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 5.0


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of the sorted ``ordered``; None if empty."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class _Queued(ContextProbe):
    __slots__ = ("samples", "since")

    def __init__(self, samples: collections.deque[tuple[float, float]]) -> None:
        self.samples = samples
        self.since = trio.current_time()

    def first_audio(self) -> None:
        now = trio.current_time()
        self.samples.append((now, now - self.since))


class _Samples(PoolProbe):
    __slots__ = ("samples",)

    def __init__(self, samples: collections.deque[tuple[float, float]]) -> None:
        self.samples = samples

    def context_queued(self, context_id: str, options: Options) -> ContextProbe:
        return _Queued(self.samples)


class LiveMetrics(Telemetry):
    """The live view of one pool, served on ``127.0.0.1:port`` (0: a free port) while
    :meth:`serving` is entered."""

    __slots__ = ("_pool", "_samples", "port", "url")

    def __init__(self, port: int) -> None:
        self.port = port
        #: ``http://127.0.0.1:<port>/`` while serving, else None.
        self.url: str | None = None
        self._pool: ObservedPool | None = None
        self._samples: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=MAX_SAMPLES
        )

    def open(self, pool: ObservedPool) -> PoolProbe:
        self._pool = pool
        return _Samples(self._samples)

    def document(self) -> dict[str, Any]:
        """The live view as JSON-ready data (see the module docstring)."""
        pool = self._pool
        assert pool is not None
        now = trio.current_time()
        recent = sorted(ttfa for at, ttfa in self._samples if now - at <= WINDOW)
        snap = pool.inspect()
        states: dict[str, int] = {}
        for ctx in snap.contexts:
            state = "moving" if ctx.moving else ctx.state.value
            states[state] = states.get(state, 0) + 1
        return {
            "provider": pool.provider.name,
            "closed": snap.closed,
            "statistics": attrs.asdict(pool.statistics()),
            "connections": [
                {
                    "id": c.id,
                    "state": c.state,
                    "contexts": len(c.contexts),
                    "frames_sent": c.frames_sent,
                    "frames_received": c.frames_received,
                }
                for c in snap.connections
            ],
            "contexts": states,
            "ttfa": {
                "window": WINDOW,
                "count": len(recent),
                "p50": percentile(recent, 0.5),
                "p99": percentile(recent, 0.99),
            },
        }

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Serve the document on 127.0.0.1 for the block.

        Raises:
            OSError: the port cannot be bound (e.g. in use).
        """
        async with trio.open_nursery() as nursery:  # the listener and one task per request
            serve = partial(trio.serve_tcp, self._answer, self.port, host="127.0.0.1")
            listeners: list[trio.SocketListener] = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}/"
            try:
                yield
            finally:
                self.url = None
                nursery.cancel_scope.cancel()

    async def _answer(self, stream: trio.SocketStream) -> None:
        # A failing request must never reach the nursery beside the pool's.
        try:
            async with stream:
                request = b""
                with trio.move_on_after(_REQUEST_TIMEOUT):
                    while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        request += chunk
                await stream.send_all(self._response(request))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            logger.exception("metrics endpoint: internal error")

    def _response(self, request: bytes) -> bytes:
        words = request.split(b"\r\n", 1)[0].split()
        path = words[1].split(b"?", 1)[0] if len(words) >= 2 else b""
        if len(words) < 2 or words[0] != b"GET":
            status, body = "405 Method Not Allowed", b'{"error": "GET only"}'
        elif path != b"/":
            status, body = "404 Not Found", b'{"error": "not found; GET /"}'
        else:
            status, body = "200 OK", json.dumps(self.document()).encode()
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body
