"""OpenTelemetry metrics and traces for trio_tts pools (the ``otel`` extra:
``pip install 'trio-tts[otel]'``, which is ``opentelemetry-api`` only — the SDK and the
exporter are yours to choose and configure)::

    import trio_tts
    from trio_tts.otel import OpenTelemetry

    async with trio_tts.open_pool(provider, telemetry=OpenTelemetry()) as pool:
        ...

:class:`OpenTelemetry` uses the global meter and tracer providers unless given its own, and
may be built before they are set (the API forwards to them once they are). One object may
observe several pools; build it once per process.

What it exports (``trio_tts.`` names, seconds and bytes as units; attributes
``trio_tts.provider`` everywhere, plus ``trio_tts.model`` and ``trio_tts.encoding`` on
per-context instruments — never a URL's query, a header or a key):

* observable gauges ``trio_tts.connection.count`` (by ``trio_tts.connection.state``:
  connecting, open, draining), ``trio_tts.context.count`` (slots in use, by
  ``trio_tts.context.state``: active, closing) and ``trio_tts.pool.waiters``;
* histograms ``trio_tts.context.wait_time``, ``trio_tts.connection.handshake.duration``,
  ``trio_tts.context.time_to_first_audio``, ``trio_tts.context.duration``,
  ``trio_tts.audio.duration``;
* counters ``trio_tts.context.opened``, ``trio_tts.context.moved`` and
  ``trio_tts.context.failed`` (both by ``error.type``), ``trio_tts.connection.handshakes`` (by
  ``trio_tts.handshake.outcome``), ``trio_tts.connection.reconnects``,
  ``trio_tts.context.slow_consumer_drops``, ``trio_tts.audio.received``;
* spans ``tts.context`` (one per context, a child of the caller's current span, with the
  events ``queued``, ``placed``, ``first_audio``, ``flush_completed``, ``moved``, ``closed``)
  and ``tts.handshake`` (a child of the context whose wait started the connection, else a
  root span). A failed context's span has status ERROR and the error's class as
  ``error.type``.

The gauges read ``pool.statistics()`` when the SDK collects, which a periodic reader does on
its own thread: a read that meets the pool mid-change (a dictionary resized under it) is
retried, then skipped for that collection.
"""

from __future__ import annotations

import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import trio
from opentelemetry import metrics, trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import __version__
from ._core.context import ContextState
from ._core.errors import ConnectionLost, ContextFailed, HandshakeRejected, SlowConsumer
from ._core.options import Options
from ._core.snapshot import PoolStatistics
from ._core.telemetry import ContextProbe, HandshakeProbe, ObservedPool, PoolProbe, Telemetry

__all__ = ["OpenTelemetry"]

SCOPE: Final = "trio_tts"
PROVIDER: Final = "trio_tts.provider"
MODEL: Final = "trio_tts.model"
ENCODING: Final = "trio_tts.encoding"
ERROR_TYPE: Final = "error.type"
OUTCOME: Final = "trio_tts.handshake.outcome"
CONTEXT_OUTCOME: Final = "trio_tts.context.outcome"

#: Buckets for waits and latencies (OpenTelemetry's HTTP duration advice), in seconds.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                          7.5, 10.0)  # fmt: skip
#: Buckets for whole utterances (context lifetimes, seconds of audio).
LONG_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

Attributes = dict[str, str | int]


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _error_attributes(error: BaseException) -> Attributes:
    """What a span says about ``error`` beyond its class and message (codes, statuses)."""
    out: Attributes = {ERROR_TYPE: _error_type(error)}
    if isinstance(error, HandshakeRejected):
        out["http.response.status_code"] = error.status
    elif isinstance(error, ConnectionLost) and error.code is not None:
        out["trio_tts.websocket.close_code"] = error.code
    elif isinstance(error, ContextFailed) and error.code is not None:
        out["trio_tts.error.code"] = error.code
    return out


class OpenTelemetry(Telemetry):
    """Export OpenTelemetry metrics and traces of the pools it observes.

    Pass it as ``open_pool(..., telemetry=OpenTelemetry())`` (or to ``AsyncioPool``).

    Args:
        meter_provider: where the metrics go (default: the global meter provider).
        tracer_provider: where the spans go (default: the global tracer provider).
    """

    __slots__ = (
        "_pools",
        "audio_duration",
        "context_duration",
        "failed",
        "handshake_duration",
        "handshakes",
        "moved",
        "opened",
        "received",
        "reconnects",
        "slow_consumers",
        "tracer",
        "ttfa",
        "wait_time",
    )

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        # Weak references, replaced as a whole (never mutated): the gauges' callbacks may
        # read them on the SDK's reader thread.
        self._pools: tuple[weakref.ref[_PoolProbe], ...] = ()
        seconds = "s"
        self.wait_time = meter.create_histogram(
            "trio_tts.context.wait_time", seconds,
            "From open_context() to a slot on an open connection",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )  # fmt: skip
        self.handshake_duration = meter.create_histogram(
            "trio_tts.connection.handshake.duration", seconds,
            "One WebSocket handshake (TCP, TLS, HTTP upgrade)",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )  # fmt: skip
        self.ttfa = meter.create_histogram(
            "trio_tts.context.time_to_first_audio", seconds,
            "From open_context() to the context's first audio chunk",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )  # fmt: skip
        self.context_duration = meter.create_histogram(
            "trio_tts.context.duration", seconds,
            "From open_context() until the context's slot was released",
            explicit_bucket_boundaries_advisory=LONG_BUCKETS,
        )  # fmt: skip
        self.audio_duration = meter.create_histogram(
            "trio_tts.audio.duration", seconds,
            "Seconds of audio received per context (raw encodings)",
            explicit_bucket_boundaries_advisory=LONG_BUCKETS,
        )  # fmt: skip
        self.opened = meter.create_counter(
            "trio_tts.context.opened", "{context}", "Contexts placed on a connection"
        )
        self.moved = meter.create_counter(
            "trio_tts.context.moved", "{context}",
            "Moves of a context to another connection after its own failed before any audio",
        )  # fmt: skip
        self.failed = meter.create_counter(
            "trio_tts.context.failed", "{context}", "Contexts that ended with an error"
        )
        self.handshakes = meter.create_counter(
            "trio_tts.connection.handshakes", "{handshake}", "WebSocket handshakes, by outcome"
        )
        self.reconnects = meter.create_counter(
            "trio_tts.connection.reconnects", "{connection}",
            "Connections dialled to replace one that failed or was lost",
        )  # fmt: skip
        self.slow_consumers = meter.create_counter(
            "trio_tts.context.slow_consumer_drops", "{context}",
            "Contexts failed because their reader fell behind (SlowConsumer)",
        )  # fmt: skip
        self.received = meter.create_counter(
            "trio_tts.audio.received", "By", "Audio bytes received for contexts"
        )
        meter.create_observable_gauge(
            "trio_tts.connection.count", [self._observe_connections], "{connection}",
            "Connections of the pool, by state",
        )  # fmt: skip
        meter.create_observable_gauge(
            "trio_tts.context.count", [self._observe_contexts], "{context}",
            "Context slots in use, by state (active, closing)",
        )  # fmt: skip
        meter.create_observable_gauge(
            "trio_tts.pool.waiters", [self._observe_waiters], "{caller}",
            "Callers of open_context() waiting for a slot",
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<OpenTelemetry pools={sum(1 for r in self._pools if r() is not None)}>"

    def open(self, pool: ObservedPool) -> PoolProbe:
        probe = _PoolProbe(self, pool)
        self._pools = (*(r for r in self._pools if r() is not None), weakref.ref(probe))
        return probe

    def _forget(self, probe: _PoolProbe) -> None:
        self._pools = tuple(r for r in self._pools if r() not in (None, probe))

    # -- the gauges (possibly on the SDK's reader thread) ----------------------------------

    def _observe(
        self, rows: Callable[[PoolStatistics], Iterable[tuple[Attributes, int]]]
    ) -> list[Observation]:
        """Sum ``rows(statistics)`` over the observed pools, per attribute set."""
        totals: dict[tuple[tuple[str, str | int], ...], int] = {}
        for ref in self._pools:
            probe = ref()
            stats = None if probe is None else probe.statistics()
            if probe is None or stats is None:
                continue
            for extra, value in rows(stats):
                key = tuple(sorted({**probe.attributes, **extra}.items()))
                totals[key] = totals.get(key, 0) + value
        return [Observation(value, dict(key)) for key, value in totals.items()]

    def _observe_connections(self, options: CallbackOptions) -> Iterable[Observation]:
        state = "trio_tts.connection.state"
        return self._observe(
            lambda s: [
                ({state: "connecting"}, s.connections_connecting),
                ({state: "open"}, s.connections_open),
                ({state: "draining"}, s.connections_draining),
            ]
        )

    def _observe_contexts(self, options: CallbackOptions) -> Iterable[Observation]:
        state = "trio_tts.context.state"
        return self._observe(
            lambda s: [
                ({state: "active"}, s.contexts_in_use - s.contexts_closing),
                ({state: "closing"}, s.contexts_closing),
            ]
        )

    def _observe_waiters(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda s: [({}, s.waiting)])


class _PoolProbe(PoolProbe):
    __slots__ = ("__weakref__", "attributes", "ended", "otel", "owed", "pool")

    def __init__(self, otel: OpenTelemetry, pool: ObservedPool) -> None:
        self.otel = otel
        self.pool = pool
        self.attributes: Attributes = {PROVIDER: pool.provider.name}
        #: Connections lost and not yet replaced: the next dials are reconnects.
        self.owed = 0
        self.ended = False

    def statistics(self) -> PoolStatistics | None:
        for _ in range(3):
            try:
                return self.pool.statistics()
            except RuntimeError:  # read on another thread while the pool changed
                continue
        return None

    def context_queued(self, context_id: str, options: Options) -> ContextProbe:
        return _ContextProbe(self, context_id, options)

    def dialling(self, conn_id: int, url: str, parent: ContextProbe | None) -> HandshakeProbe:
        if self.owed:
            self.owed -= 1
            self.otel.reconnects.add(1, self.attributes)
        span_parent = parent.span if isinstance(parent, _ContextProbe) else None
        return _HandshakeProbe(self, conn_id, url, span_parent)

    def connection_ended(self, conn_id: int, error: BaseException | None) -> None:
        if error is not None and not self.ended:
            self.owed += 1

    def closed(self) -> None:
        self.ended = True
        self.otel._forget(self)


class _ContextProbe(ContextProbe):
    __slots__ = ("attributes", "bytes_per_second", "placed_once", "pool", "queued_at", "span")

    def __init__(self, pool: _PoolProbe, context_id: str, options: Options) -> None:
        self.pool = pool
        self.attributes: Attributes = {**pool.attributes, ENCODING: str(options.encoding)}
        model = getattr(options, "model", None)
        if isinstance(model, str):
            self.attributes[MODEL] = model
        self.bytes_per_second = options.encoding.bytes_per_sample * options.sample_rate
        self.queued_at = trio.current_time()
        self.placed_once = False
        # No explicit parent: the caller's current span (this runs in its task).
        self.span: Span = pool.otel.tracer.start_span(
            "tts.context",
            kind=SpanKind.CLIENT,
            attributes={
                **self.attributes,
                "trio_tts.context.id": context_id,
                "trio_tts.voice": options.voice,
                "trio_tts.sample_rate": options.sample_rate,
            },
        )
        self.span.add_event("queued")

    def placed(self, conn_id: int) -> None:
        self.span.add_event("placed", {"trio_tts.connection.id": conn_id})
        if not self.placed_once:
            self.placed_once = True
            otel = self.pool.otel
            otel.wait_time.record(trio.current_time() - self.queued_at, self.attributes)
            otel.opened.add(1, self.attributes)

    def first_audio(self) -> None:
        self.span.add_event("first_audio")
        self.pool.otel.ttfa.record(trio.current_time() - self.queued_at, self.attributes)

    def flushed(self) -> None:
        self.span.add_event("flush_completed")

    def moved(self, error: BaseException) -> None:
        why = {ERROR_TYPE: _error_type(error)}
        self.span.add_event("moved", why)
        self.pool.otel.moved.add(1, {**self.attributes, **why})

    def ended(self, state: ContextState, error: BaseException | None, audio_bytes: int) -> None:
        otel = self.pool.otel
        span = self.span
        if error is not None:
            outcome = "failed"
        elif state is ContextState.CLOSED:
            outcome = "closed"
            span.add_event("closed")
        else:
            outcome = "abandoned"  # the caller left (or stopped waiting) first
        ended: Attributes = {**self.attributes, CONTEXT_OUTCOME: outcome}
        if error is not None:
            ended[ERROR_TYPE] = _error_type(error)
            otel.failed.add(1, {**self.attributes, ERROR_TYPE: _error_type(error)})
            if isinstance(error, SlowConsumer):
                otel.slow_consumers.add(1, self.attributes)
            span.set_attributes(_error_attributes(error))
            span.set_status(Status(StatusCode.ERROR, str(error)))
        otel.context_duration.record(trio.current_time() - self.queued_at, ended)
        if audio_bytes:
            otel.received.add(audio_bytes, self.attributes)
            if self.bytes_per_second:
                otel.audio_duration.record(audio_bytes / self.bytes_per_second, self.attributes)
        span.set_attributes({CONTEXT_OUTCOME: outcome, "trio_tts.audio.bytes": audio_bytes})
        span.end()


class _HandshakeProbe(HandshakeProbe):
    __slots__ = ("attributes", "conn_id", "parent", "pool", "span", "started_at")

    def __init__(self, pool: _PoolProbe, conn_id: int, url: str, parent: Span | None) -> None:
        self.pool = pool
        self.conn_id = conn_id
        self.parent = parent
        self.span: Span | None = None
        self.started_at = 0.0
        # Where to, without the query, the path or any user info (a key may hide there).
        parts = urllib.parse.urlsplit(url)
        self.attributes: Attributes = {**pool.attributes, "trio_tts.connection.id": conn_id}
        if parts.hostname:
            self.attributes["server.address"] = parts.hostname
            port = parts.port or {"wss": 443, "https": 443, "ws": 80, "http": 80}.get(parts.scheme)
            if port is not None:
                self.attributes["server.port"] = port

    def started(self) -> None:
        self.started_at = trio.current_time()
        # The context that waited for this connection, else a root span (never the task's
        # current span: the pool's tasks inherit whatever was current when it opened).
        parent = (
            OtelContext() if self.parent is None else trace.set_span_in_context(self.parent)
        )
        self.span = self.pool.otel.tracer.start_span(
            "tts.handshake", parent, kind=SpanKind.CLIENT, attributes=self.attributes
        )

    def ended(self, error: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        self.span = None
        otel = self.pool.otel
        if error is None:
            outcome = "success"
        elif isinstance(error, HandshakeRejected):
            outcome = "rejected"
        elif isinstance(error, Exception):
            outcome = "failure"
        else:
            outcome = "cancelled"
        attributes: Mapping[str, str | int] = {**self.pool.attributes, OUTCOME: outcome}
        if outcome in ("rejected", "failure"):
            assert error is not None
            attributes = {**attributes, ERROR_TYPE: _error_type(error)}
            span.set_attributes(_error_attributes(error))
            span.set_status(Status(StatusCode.ERROR, str(error)))
        otel.handshakes.add(1, attributes)
        otel.handshake_duration.record(trio.current_time() - self.started_at, attributes)
        span.set_attribute(OUTCOME, outcome)
        span.end()
