"""OpenTelemetry metrics and traces (``trio_tts.otel``), read back through the SDK's in-memory
reader and exporter after real runs against the local server: in memory under
``MockClock(autojump_threshold=0)`` where the virtual times are exact, over 127.0.0.1 for the
asyncio bridge and the secret scan."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import trio_tts
from trio_tts.otel import OpenTelemetry
from trio_tts.server import (
    CloseAfterContexts,
    DropConnection,
    Faults,
    RejectHandshake,
    ServerConfig,
    tone_pcm,
)
from trio_tts.testing import MemoryServer, assert_quiescent, at, open_memory_server

RATE = 24000
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=RATE)
TEXT = "Hello there, general Kenobi."
INWORLD = {"trio_tts.provider": "inworld"}
CONTEXT = {**INWORLD, "trio_tts.encoding": "PCM", "trio_tts.model": "inworld-tts-1"}


@attrs.define
class Otel:
    """An SDK wired to in-memory exports, and the telemetry that reports to it."""

    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    tracer_provider: TracerProvider
    telemetry: OpenTelemetry

    def metrics(self) -> dict[str, list[Any]]:
        """Every data point collected now, by metric name (with ``unit`` on each list)."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
                    self.units[metric.name] = metric.unit
        return out

    units: dict[str, str] = attrs.field(factory=dict)

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]


@pytest.fixture
def otel() -> Iterator[Otel]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    yield Otel(
        reader, spans, tracers, OpenTelemetry(meter_provider=meters, tracer_provider=tracers)
    )
    meters.shutdown()
    tracers.shutdown()


def value(points: list[Any], **attributes: object) -> Any:
    """The one point whose attributes are exactly ``attributes``: its value (a sum, a count)
    or, for a histogram, ``(count, sum)``."""
    found = [p for p in points if dict(p.attributes) == attributes]
    assert len(found) == 1, (attributes, [dict(p.attributes) for p in points])
    point = found[0]
    return (point.count, point.sum) if hasattr(point, "bucket_counts") else point.value


def events(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


@asynccontextmanager
async def memory_pool(
    server: MemoryServer, otel: Otel, **settings: Any
) -> AsyncIterator[trio_tts.Pool[trio_tts.VoiceOptions]]:
    provider = trio_tts.InworldProvider(url=server.ws_url)
    async with trio_tts.open_pool(
        provider,
        defaults=PCM,
        transport_factory=server.connect,
        telemetry=otel.telemetry,
        **settings,
    ) as pool:
        yield pool


async def speak(pool: trio_tts.Pool[trio_tts.VoiceOptions], text: str = TEXT) -> bytes:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text, flush=True)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


# -- one healthy turn: every instrument, exact virtual times -----------------------------------


async def test_a_turn_exports_its_metrics_and_a_span_under_the_callers_span(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    faults = Faults(first_audio_delay=0.25)
    app = otel.tracer_provider.get_tracer("app")
    async with (
        open_memory_server(ServerConfig(synthesizer="tone", faults=faults)) as server,
        memory_pool(server, otel) as pool,
    ):
        with app.start_as_current_span("app.reply") as caller:
            start = trio.current_time()
            audio = await speak(pool)
            took = trio.current_time() - start
        assert audio == tone_pcm(TEXT, RATE)
        await assert_quiescent(pool)
        m = otel.metrics()

    # The handshake (0.005 s in memory) is the whole wait; audio comes 0.25 s after.
    assert value(m["trio_tts.context.wait_time"], **CONTEXT) == (1, pytest.approx(0.005))
    ttfa = value(m["trio_tts.context.time_to_first_audio"], **CONTEXT)
    assert ttfa == (1, pytest.approx(0.255))
    handshake = {**INWORLD, "trio_tts.handshake.outcome": "success"}
    assert value(m["trio_tts.connection.handshake.duration"], **handshake) == (
        1,
        pytest.approx(0.005),
    )
    assert value(m["trio_tts.connection.handshakes"], **handshake) == 1
    closed = {**CONTEXT, "trio_tts.context.outcome": "closed"}
    assert value(m["trio_tts.context.duration"], **closed) == (1, pytest.approx(took))
    assert value(m["trio_tts.context.opened"], **CONTEXT) == 1
    assert value(m["trio_tts.audio.received"], **CONTEXT) == len(audio)
    seconds = len(audio) / (2 * RATE)
    assert value(m["trio_tts.audio.duration"], **CONTEXT) == (1, pytest.approx(seconds))
    absent = {"trio_tts.context.failed", "trio_tts.context.moved",
              "trio_tts.connection.reconnects", "trio_tts.context.slow_consumer_drops"}  # fmt: skip
    assert not absent & set(m)
    # At rest: one open connection, no slot in use, nobody waiting.
    state = "trio_tts.connection.state"
    assert value(m["trio_tts.connection.count"], **INWORLD, **{state: "open"}) == 1
    assert value(m["trio_tts.connection.count"], **INWORLD, **{state: "connecting"}) == 0
    active = {"trio_tts.context.state": "active"}
    assert value(m["trio_tts.context.count"], **INWORLD, **active) == 0
    assert value(m["trio_tts.pool.waiters"], **INWORLD) == 0
    seconds = ("trio_tts.context.wait_time", "trio_tts.context.time_to_first_audio",
               "trio_tts.connection.handshake.duration", "trio_tts.context.duration",
               "trio_tts.audio.duration")  # fmt: skip
    assert otel.units == {
        **dict.fromkeys(seconds, "s"),
        "trio_tts.audio.received": "By",
        "trio_tts.context.opened": "{context}",
        "trio_tts.connection.handshakes": "{handshake}",
        "trio_tts.connection.count": "{connection}",
        "trio_tts.context.count": "{context}",
        "trio_tts.pool.waiters": "{caller}",
    }

    [span] = otel.finished("tts.context")
    [handshake_span] = otel.finished("tts.handshake")
    assert span.parent is not None and span.parent.span_id == caller.get_span_context().span_id
    assert span.context.trace_id == caller.get_span_context().trace_id
    assert span.kind is trace.SpanKind.CLIENT
    assert events(span) == ["queued", "placed", "first_audio", "flush_completed", "closed"]
    assert span.events[1].attributes == {"trio_tts.connection.id": 1}
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert {k: span.attributes[k] for k in CONTEXT} == CONTEXT
    assert span.attributes["trio_tts.voice"] == "Ashley"
    assert span.attributes["trio_tts.context.outcome"] == "closed"
    assert span.attributes["trio_tts.audio.bytes"] == len(audio)
    # The handshake this context waited for is its child.
    assert handshake_span.parent is not None
    assert handshake_span.parent.span_id == span.context.span_id
    assert handshake_span.attributes is not None
    assert handshake_span.attributes["trio_tts.handshake.outcome"] == "success"
    assert handshake_span.attributes["server.address"] == "memory"


async def test_a_prewarmed_connections_handshake_is_a_root_span(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    app = otel.tracer_provider.get_tracer("app")
    async with open_memory_server() as server:
        with app.start_as_current_span("app.startup"):
            async with memory_pool(server, otel) as pool:
                assert await pool.prewarm(2) == 2
    assert [s.parent for s in otel.finished("tts.handshake")] == [None, None]


# -- the gauges while contexts hold slots and wait -----------------------------------------


async def test_gauges_show_connections_slots_and_waiters(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        open_memory_server() as server,
        memory_pool(server, otel, max_connections=1, contexts_per_connection=2) as pool,
    ):
        held = [await pool.open_context(), await pool.open_context()]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(speak, pool)  # waits: both slots are taken
            await trio.testing.wait_all_tasks_blocked()
            m = otel.metrics()
            state = "trio_tts.context.state"
            assert value(m["trio_tts.context.count"], **INWORLD, **{state: "active"}) == 2
            assert value(m["trio_tts.context.count"], **INWORLD, **{state: "closing"}) == 0
            assert value(m["trio_tts.pool.waiters"], **INWORLD) == 1
            conns = m["trio_tts.connection.count"]
            assert value(conns, **INWORLD, **{"trio_tts.connection.state": "open"}) == 1
            for ctx in held:
                await ctx.aclose()
        await assert_quiescent(pool)
        m = otel.metrics()
        assert value(m["trio_tts.pool.waiters"], **INWORLD) == 0
        abandoned = {**CONTEXT, "trio_tts.context.outcome": "abandoned"}
        assert value(m["trio_tts.context.duration"], **abandoned)[0] == 2
        assert value(m["trio_tts.context.opened"], **CONTEXT) == 3
    # A closed pool is no longer observed.
    assert "trio_tts.pool.waiters" not in otel.metrics()


async def test_two_pools_are_summed_per_attribute_set(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        open_memory_server() as server,
        memory_pool(server, otel) as one,
        memory_pool(server, otel) as two,
    ):
        await one.prewarm(2)
        await two.prewarm(1)
        conns = otel.metrics()["trio_tts.connection.count"]
        assert value(conns, **INWORLD, **{"trio_tts.connection.state": "open"}) == 3


# -- failures: a dropped connection, a moved context, a refused handshake -------------------


async def test_a_moved_context_and_its_reconnect(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    """The first connection closes with 1011 right after the create: the context moves to a
    second connection (a reconnect, dialled on its behalf) and ends well."""
    close = CloseAfterContexts(after_contexts=1, code=1011, connections=at(0))
    async with (
        open_memory_server(ServerConfig(synthesizer="tone", faults=Faults(close=close))) as server,
        memory_pool(server, otel) as pool,
    ):
        assert await speak(pool) == tone_pcm(TEXT, RATE)
        await assert_quiescent(pool)
        m = otel.metrics()
    assert value(m["trio_tts.context.moved"], **CONTEXT, **{"error.type": "ConnectionLost"}) == 1
    assert value(m["trio_tts.connection.reconnects"], **INWORLD) == 1
    success = {**INWORLD, "trio_tts.handshake.outcome": "success"}
    assert value(m["trio_tts.connection.handshakes"], **success) == 2
    assert value(m["trio_tts.context.opened"], **CONTEXT) == 1
    assert "trio_tts.context.failed" not in m
    [span] = otel.finished("tts.context")
    assert events(span) == [
        "queued", "placed", "moved", "placed", "first_audio", "flush_completed", "closed"
    ]  # fmt: skip
    assert [e.attributes for e in span.events if e.name in ("placed", "moved")] == [
        {"trio_tts.connection.id": 1},
        {"error.type": "ConnectionLost"},
        {"trio_tts.connection.id": 2},
    ]
    assert span.status.status_code is StatusCode.UNSET
    handshakes = otel.finished("tts.handshake")
    assert len(handshakes) == 2
    assert [h.parent and h.parent.span_id for h in handshakes] == [span.context.span_id] * 2


async def test_a_connection_dropped_after_audio_fails_the_context(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    drop = DropConnection(after_frames=3, connections=at(0))
    async with (
        open_memory_server(
            ServerConfig(synthesizer="tone", chunk_ms=20, faults=Faults(drop=drop))
        ) as server,
        memory_pool(server, otel) as pool,
    ):
        with pytest.raises(trio_tts.ConnectionLost):
            await speak(pool, "A long enough sentence to need many chunks of audio.")
        assert await speak(pool) == tone_pcm(TEXT, RATE)  # on a new connection
        await assert_quiescent(pool)
        m = otel.metrics()
    failed = {**CONTEXT, "error.type": "ConnectionLost"}
    assert value(m["trio_tts.context.failed"], **failed) == 1
    outcome = {"trio_tts.context.outcome": "failed"}
    assert value(m["trio_tts.context.duration"], **failed, **outcome)[0] == 1
    assert value(m["trio_tts.connection.reconnects"], **INWORLD) == 1
    assert "trio_tts.context.moved" not in m  # audio had started: no move
    lost, ok = otel.finished("tts.context")
    assert lost.status.status_code is StatusCode.ERROR
    assert lost.status.description is not None and "connection" in lost.status.description
    assert lost.attributes is not None
    assert lost.attributes["error.type"] == "ConnectionLost"
    assert lost.attributes["trio_tts.context.outcome"] == "failed"
    assert "first_audio" in events(lost) and "closed" not in events(lost)
    assert ok.status.status_code is StatusCode.UNSET


async def test_a_refused_handshake(otel: Otel, autojump_clock: trio.testing.MockClock) -> None:
    faults = Faults(reject=RejectHandshake(status=401))
    async with (
        open_memory_server(ServerConfig(synthesizer="tone", faults=faults)) as server,
        memory_pool(server, otel) as pool,
    ):
        with pytest.raises(trio_tts.HandshakeRejected):
            await pool.open_context()
        await assert_quiescent(pool)
        m = otel.metrics()
    rejected = {**INWORLD, "trio_tts.handshake.outcome": "rejected",
                "error.type": "HandshakeRejected"}  # fmt: skip
    assert value(m["trio_tts.connection.handshakes"], **rejected) == 1
    failed = {**CONTEXT, "error.type": "HandshakeRejected"}
    assert value(m["trio_tts.context.failed"], **failed) == 1
    assert "trio_tts.context.opened" not in m and "trio_tts.context.wait_time" not in m
    [handshake] = otel.finished("tts.handshake")
    [span] = otel.finished("tts.context")
    assert handshake.status.status_code is StatusCode.ERROR
    assert handshake.attributes is not None
    assert handshake.attributes["http.response.status_code"] == 401
    assert span.status.status_code is StatusCode.ERROR
    assert events(span) == ["queued"]


async def test_timeouts_fail_and_cancelled_waits_do_not(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        open_memory_server() as server,
        memory_pool(server, otel, max_connections=1, contexts_per_connection=1) as pool,
    ):
        held = await pool.open_context()
        with pytest.raises(trio_tts.CapacityTimeout):
            await pool.open_context(timeout=1.0)
        with trio.move_on_after(1.0):
            await pool.open_context()
        await held.aclose()
        await assert_quiescent(pool)
        m = otel.metrics()
    timeout = {**CONTEXT, "error.type": "CapacityTimeout"}
    assert value(m["trio_tts.context.failed"], **timeout) == 1
    outcome = "trio_tts.context.outcome"
    assert value(m["trio_tts.context.duration"], **timeout, **{outcome: "failed"}) == (
        1,
        pytest.approx(1.0),
    )
    # The cancelled wait and the held context were abandoned, not failed.
    assert value(m["trio_tts.context.duration"], **CONTEXT, **{outcome: "abandoned"})[0] == 2


async def test_a_slow_consumer_is_counted(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        open_memory_server(ServerConfig(synthesizer="tone", chunk_ms=20)) as server,
        memory_pool(server, otel, context_buffer=2) as pool,
    ):
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text(TEXT)
            with pytest.raises(trio_tts.SlowConsumer):
                await ctx.close()  # waits for the end without reading: the buffer overflows
        await assert_quiescent(pool)
        m = otel.metrics()
    assert value(m["trio_tts.context.slow_consumer_drops"], **CONTEXT) == 1
    assert value(m["trio_tts.context.failed"], **CONTEXT, **{"error.type": "SlowConsumer"}) == 1


# -- without telemetry: nothing is imported ------------------------------------------------


def test_a_pool_without_telemetry_never_imports_opentelemetry() -> None:
    code = """
import sys, trio, trio_tts
from bridges.asyncio_adapter import AsyncioPool
from trio_tts.testing import open_memory_server

async def main():
    async with open_memory_server() as server:
        provider = trio_tts.InworldProvider(url=server.ws_url)
        async with trio_tts.open_pool(provider, transport_factory=server.connect) as pool:
            ctx = await pool.open_context()
            async with ctx:
                await ctx.send_text("hi")
                await ctx.finish()
                async for _ in ctx:
                    pass
trio.run(main)
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


# -- the asyncio bridge: the asyncio caller's span is the parent -----------------------------


def test_an_asyncio_callers_span_encloses_the_context_span(otel: Otel) -> None:
    from test_asyncio_adapter import ServerThread, provider, run, turn

    from bridges.asyncio_adapter import AsyncioPool

    app = otel.tracer_provider.get_tracer("app")

    with ServerThread(ServerConfig(synthesizer="tone")).running() as srv:

        async def main() -> trace.Span:
            async with AsyncioPool(
                provider(srv), defaults=PCM, telemetry=otel.telemetry, metrics_port=0
            ) as pool:
                assert (pool.metrics_url or "").startswith("http://127.0.0.1:")
                with app.start_as_current_span("asyncio.handler") as caller:
                    audio, _ = await turn(pool, TEXT)
                    assert audio == tone_pcm(TEXT, RATE)
                audio, _ = await turn(pool, TEXT)  # outside any span
                assert audio == tone_pcm(TEXT, RATE)
            return caller

        caller: trace.Span = run(main)

    inside, outside = otel.finished("tts.context")
    [handshake] = otel.finished("tts.handshake")
    [handler] = otel.finished("asyncio.handler")
    assert inside.parent is not None
    assert inside.parent.span_id == handler.context.span_id == caller.get_span_context().span_id
    assert inside.context.trace_id == handler.context.trace_id
    assert handler.start_time is not None and inside.start_time is not None
    assert handler.end_time is not None and inside.end_time is not None
    assert handler.start_time <= inside.start_time and inside.end_time <= handler.end_time
    assert handshake.parent is not None and handshake.parent.span_id == inside.context.span_id
    assert outside.parent is None
    assert events(inside)[-1] == events(outside)[-1] == "closed"


# -- the secret scan: every exported name, attribute, event and status ----------------------


def exported_texts(otel: Otel) -> list[str]:
    """Everything the SDK would export, as JSON and as the raw attribute strings."""
    texts: list[str] = []
    data = otel.reader.get_metrics_data()
    if data is not None:
        texts.append(data.to_json())
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                texts += [metric.name, metric.description, metric.unit]
                for point in metric.data.data_points:
                    texts += [f"{k}={v}" for k, v in point.attributes.items()]
    for span in otel.spans.get_finished_spans():
        texts += [span.to_json(), span.name, str(span.status.description)]
        texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            texts += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    return texts


@pytest.mark.parametrize(
    "scenario",
    ["memory-401-echo", "503-echo", "context-error-echo", "close-reason-echo", "healthy-turn"],
)
async def test_the_key_appears_in_no_exported_metric_or_span(otel: Otel, scenario: str) -> None:
    from test_secret_scan import KEY, assert_no_key, fail_once, tcp_server
    from test_secret_scan import provider as keyed_provider

    from trio_tts.server import CloseConnection, ContextErrorFault

    tel = otel.telemetry
    if scenario == "memory-401-echo":
        faults = Faults(reject=RejectHandshake(status=401, echo=True))
        config = ServerConfig(synthesizer="tone", api_key=KEY, faults=faults)
        async with open_memory_server(config) as server:
            await fail_once(server.ws_url, memory=server, telemetry=tel)
    elif scenario == "503-echo":
        async with tcp_server(Faults(reject=RejectHandshake(503, retry_after=0, echo=True))) as url:
            await fail_once(url, telemetry=tel)
    elif scenario == "context-error-echo":
        fault = ContextErrorFault(when=lambda i, c: True, message=f"bad {KEY}")
        async with tcp_server(Faults(context_error=fault)) as url:
            await fail_once(url, telemetry=tel)
    elif scenario == "close-reason-echo":
        close = CloseConnection(code=4001, reason=f"k={KEY}", after_frames=1)
        async with tcp_server(Faults(close_connection=close)) as url:
            await fail_once(url, move_attempts=1, telemetry=tel)
    else:
        async with (
            tcp_server() as url,
            trio_tts.open_pool(keyed_provider(url), defaults=PCM, telemetry=tel) as pool,
        ):
            with trio.fail_after(30):
                assert await speak(pool) == tone_pcm(TEXT, RATE)
    texts = exported_texts(otel)
    assert otel.finished("tts.context") and any("trio_tts.context" in t for t in texts)
    assert_no_key(texts)
    if scenario != "healthy-turn":
        errors = [s for s in otel.spans.get_finished_spans() if s.status.description]
        assert errors, "a failure was exported with its (redacted) message"


def test_the_exported_text_scan_would_see_a_leak(otel: Otel) -> None:
    from test_secret_scan import KEY, assert_no_key

    span = otel.tracer_provider.get_tracer("t").start_span("leak", attributes={"x": f"a{KEY}"})
    span.end()
    with pytest.raises(AssertionError, match="leaked"):
        assert_no_key(exported_texts(otel))


# -- the interface itself: what a custom observer sees, beside OpenTelemetry -----------------


class Recorder(trio_tts.Telemetry):
    """Writes down every call, in order, with the virtual time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.calls.append((trio.current_time(), what))

    def open(self, pool: Any) -> trio_tts.PoolProbe:
        recorder = self

        class Context(trio_tts.ContextProbe):
            def placed(self, conn_id: int) -> None:
                recorder.note(f"placed {conn_id}")

            def first_audio(self) -> None:
                recorder.note("first audio")

            def flushed(self) -> None:
                recorder.note("flushed")

            def moved(self, error: BaseException) -> None:
                recorder.note(f"moved {type(error).__name__}")

            def ended(self, state: Any, error: BaseException | None, audio_bytes: int) -> None:
                recorder.note(f"ended {state.value} {error!r} {audio_bytes}")

        class Handshake(trio_tts.HandshakeProbe):
            def __init__(self, conn_id: int, parent: object) -> None:
                self.conn_id = conn_id
                self.parent = parent

            def started(self) -> None:
                recorder.note(f"handshake {self.conn_id} for {type(self.parent).__name__}")

            def ended(self, error: BaseException | None) -> None:
                recorder.note(f"handshake {self.conn_id} ended {error!r}")

        class Pool(trio_tts.PoolProbe):
            def context_queued(self, context_id: str, options: Any) -> trio_tts.ContextProbe:
                recorder.note(f"queued {options.voice}")
                return Context()

            def dialling(
                self, conn_id: int, url: str, parent: trio_tts.ContextProbe | None
            ) -> trio_tts.HandshakeProbe:
                recorder.note(f"dialling {conn_id} {url}")
                return Handshake(conn_id, parent)

            def connection_ended(self, conn_id: int, error: BaseException | None) -> None:
                recorder.note(f"connection {conn_id} ended {type(error).__name__}")

            def closed(self) -> None:
                recorder.note("closed")

        return Pool()


async def test_a_custom_telemetry_sees_a_moved_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    close = CloseAfterContexts(after_contexts=1, code=1011, connections=at(0))
    config = ServerConfig(synthesizer="tone", faults=Faults(close=close))
    async with open_memory_server(config) as server:
        provider = trio_tts.InworldProvider(url=server.ws_url)
        async with trio_tts.open_pool(
            provider,
            defaults=PCM,
            transport_factory=server.connect,
            telemetry=recorder,
            metrics_port=0,  # the live view observes the pool too: each sees its own probes
        ) as pool:
            audio = await speak(pool)
            await assert_quiescent(pool)
    url = server.ws_url
    assert [what for _, what in recorder.calls] == [
        "queued Ashley",
        f"dialling 1 {url}",
        "handshake 1 for Context",
        "handshake 1 ended None",
        "placed 1",
        "connection 1 ended ConnectionLost",
        "moved ConnectionLost",
        f"dialling 2 {url}",
        "handshake 2 for Context",
        "handshake 2 ended None",
        "placed 2",
        "first audio",
        "flushed",
        f"ended closed None {len(audio)}",
        "connection 2 ended NoneType",
        "closed",
    ]
    times = dict((what, t) for t, what in recorder.calls)
    assert times["placed 1"] == pytest.approx(0.005)  # after the in-memory handshake
