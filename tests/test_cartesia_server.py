"""The local server's Cartesia ``/tts/websocket`` with a raw WebSocket client (trio-websocket):
the handshake (both auth styles, the API version in the query or a header), contexts
multiplexed on one socket with exact tone audio and cumulative word times, flush, cancel,
expiry, errors and the concurrency limits, each checked on the server's own counters."""

from __future__ import annotations

import base64
import json
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected, WebSocketConnection

from trio_tts import ConnectionLost
from trio_tts.server import (
    CloseConnection,
    ContextErrorFault,
    DelayFirstAudio,
    DropConnection,
    Faults,
    LocalServer,
    PaceAudio,
    ServerConfig,
    Stall,
    StallContext,
    open_server,
    tone_pcm,
    tone_speech,
)
from trio_tts.server.cartesia.voices import CARTESIA_VOICES, voice_uuid
from trio_tts.testing import MemoryServer, MemoryTransport, nth, open_memory_server

from helpers import open_ws

KEY = "ca-test-key-7f3e"
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"  # the LiveKit plugin's default voice
RATE = 24000
#: The first request of a LiveKit-style context (whole sentences, max_buffer_delay_ms 0).
BASE: dict[str, Any] = {
    "model_id": "sonic-3",
    "voice": {"mode": "id", "id": KATIE},
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
    "language": "en",
    "add_timestamps": True,
    "max_buffer_delay_ms": 0,
}


def url_of(server: LocalServer, query: str = "?cartesia_version=2025-04-16") -> str:
    return f"ws://127.0.0.1:{server.port}/tts/websocket{query}"


@asynccontextmanager
async def connect(
    server: LocalServer, query: str = "?cartesia_version=2025-04-16",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebSocketConnection]:  # fmt: skip
    headers = [(b"X-API-Key", KEY.encode())] if headers is None else headers
    async with open_ws(
        url_of(server, query), extra_headers=headers, message_queue_size=256, connect_timeout=5
    ) as ws:
        yield ws


async def send(ws: WebSocketConnection, **fields: Any) -> None:
    await ws.send_message(json.dumps(fields))


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        message: dict[str, Any] = json.loads(await ws.get_message())
    assert "type" in message and "context_id" in message, message  # on every frame
    return message


async def until_done(ws: WebSocketConnection, *ids: str) -> dict[str, list[dict[str, Any]]]:
    """Every frame per context until each of ``ids`` got its ``done`` or ``error``."""
    frames: dict[str, list[dict[str, Any]]] = {cid: [] for cid in ids}
    open_ids = set(ids)
    while open_ids:
        message = await receive(ws)
        frames.setdefault(message["context_id"], []).append(message)
        if message["type"] in ("done", "error"):
            open_ids.discard(message["context_id"])
    return frames


def audio_of(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(f["data"]) for f in frames if f["type"] == "chunk")


def words_of(frames: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    out = []
    for f in frames:
        if f["type"] == "timestamps":
            ts = f["word_timestamps"]
            out += list(zip(ts["words"], ts["start"], ts["end"], strict=True))
    return out


@pytest.fixture
async def srv() -> AsyncIterator[LocalServer]:
    async with open_server(ServerConfig(synthesizer="tone", api_key=KEY)) as server:
        yield server


async def test_two_contexts_interleaved_on_one_socket(srv: LocalServer) -> None:
    a = ["Hello there, my friend. ", "How are you doing today? ", "I am fine. "]
    b = ["A second voice speaks. ", "It speaks at once. "]
    async with connect(srv) as ws:
        for i in range(3):  # the parts of the two contexts alternate on the wire
            await send(ws, **BASE, context_id="a", transcript=a[i], **{"continue": True})
            if i < 2:
                await send(ws, **BASE, context_id="b", transcript=b[i], **{"continue": True})
        await send(ws, **BASE, context_id="a", transcript=" ", **{"continue": False})
        await send(ws, **BASE, context_id="b", transcript=" ", **{"continue": False})
        frames = await until_done(ws, "a", "b")
    # max_buffer_delay_ms 0: every sentence is its own generation, spoken as it arrives.
    assert audio_of(frames["a"]) == b"".join(tone_pcm(t, RATE) for t in a)
    assert audio_of(frames["b"]) == b"".join(tone_pcm(t, RATE) for t in b)
    for cid, parts in (("a", a), ("b", b)):
        assert frames[cid][-1] == {"type": "done", "done": True, "status_code": 200,
                                   "context_id": cid}  # fmt: skip
        chunks = [f for f in frames[cid] if f["type"] == "chunk"]
        assert all(f["done"] is False and f["status_code"] == 206 for f in chunks)
        assert all(isinstance(f["step_time"], float) and "flush_id" not in f for f in chunks)
        # Word times count from the context's start: each sentence starts where the last ended.
        want, offset = [], 0.0
        for text in parts:
            speech = tone_speech(text, RATE)
            want += [(w, round(s + offset, 6), round(e + offset, 6)) for w, s, e in speech.words]
            offset += speech.duration
        assert words_of(frames[cid]) == want
    stats = srv.statistics()
    assert (stats.contexts_created, stats.contexts_open, stats.peak_contexts_per_connection) == (
        2, 0, 2,
    )  # fmt: skip
    assert stats.violations == ()


async def one_shot(
    ws: WebSocketConnection, cid: str, text: str, **extra: Any
) -> list[dict[str, Any]]:
    """One whole context in one request (``continue`` absent: false)."""
    await send(ws, **{**BASE, **extra}, context_id=cid, transcript=text)
    return (await until_done(ws, cid))[cid]


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?cartesia_version=2025-04-16", [(b"X-API-Key", KEY.encode())]),  # LiveKit
        ("", [(b"Authorization", f"Bearer {KEY}".encode()), (b"Cartesia-Version", b"2026-08-14")]),
        (f"?api_key={KEY}&cartesia_version=2024-11-13", []),  # a browser
        (f"?access_token={KEY}", [(b"cartesia-version", b"2025-04-16")]),
    ],
    ids=["x-api-key+query", "bearer+header", "query-key", "access-token"],
)
async def test_every_documented_way_to_authenticate_and_version(
    srv: LocalServer, query: str, headers: list[tuple[bytes, bytes]]
) -> None:
    async with connect(srv, query, headers) as ws:
        frames = await one_shot(ws, "c1", "Hello. ")
    assert audio_of(frames) == tone_pcm("Hello. ", RATE)
    assert srv.statistics().handshakes_rejected == {}


@pytest.mark.parametrize(
    ("query", "headers", "status", "message"),
    [
        ("?cartesia_version=2025-04-16", [], 401, "invalid or missing API key"),
        ("?cartesia_version=2025-04-16", [(b"X-API-Key", b"wrong")], 401, "invalid or missing"),
        ("?cartesia_version=2025-04-16", [(b"Authorization", f"Basic {KEY}".encode())], 401,
         "invalid or missing"),
        ("", [(b"X-API-Key", KEY.encode())], 400, "An API version is required"),
        ("?cartesia_version=yesterday", [(b"X-API-Key", KEY.encode())], 404,
         "No API schema exists for the requested Cartesia-Version"),
        ("?cartesia_version=2023-01-01", [(b"X-API-Key", KEY.encode())], 404, "API version"),
    ],
    ids=["no-key", "wrong-key", "wrong-scheme", "no-version", "bad-version", "too-old"],
)
async def test_upgrade_refusals_carry_cartesias_error_object(
    srv: LocalServer, query: str, headers: list[tuple[bytes, bytes]], status: int, message: str
) -> None:
    with pytest.raises(ConnectionRejected) as info:
        async with connect(srv, query, headers):
            pass
    assert info.value.status_code == status
    body = json.loads(info.value.body or b"{}")
    assert set(body) == {"error_code", "title", "message", "request_id"}
    assert message in body["message"] and KEY not in json.dumps(body)
    assert srv.statistics().handshakes_rejected == {status: 1}
    assert srv.statistics().connections_accepted == 0


async def test_query_version_wins_over_the_header(srv: LocalServer) -> None:
    headers = [(b"X-API-Key", KEY.encode()), (b"Cartesia-Version", b"not-a-date")]
    async with connect(srv, "?cartesia_version=2025-04-16", headers) as ws:
        assert audio_of(await one_shot(ws, "c", "Fine. ")) == tone_pcm("Fine. ", RATE)
    with pytest.raises(ConnectionRejected) as info:
        headers = [(b"X-API-Key", KEY.encode()), (b"Cartesia-Version", b"2025-04-16")]
        async with connect(srv, "?cartesia_version=nope", headers):
            pass
    assert info.value.status_code == 404


async def test_flush_answers_flush_done_and_tags_its_audio(srv: LocalServer) -> None:
    async with connect(srv) as ws:
        base = {**BASE, "max_buffer_delay_ms": 3000, "context_id": "f"}
        # No sentence end: nothing is spoken until the flush.
        await send(ws, **base, transcript="One two ", **{"continue": True})
        await send(ws, **base, transcript="three", flush=True, **{"continue": True})
        await send(ws, **base, transcript=" four five", flush=True, **{"continue": True})
        await send(ws, **base, transcript="", **{"continue": False})
        frames = (await until_done(ws, "f"))["f"]
    kinds = [f["type"] for f in frames]
    first, second = kinds.index("flush_done"), len(kinds) - 1 - kinds[::-1].index("flush_done")
    assert frames[first] == {"type": "flush_done", "done": False, "flush_done": True,
                             "flush_id": 1, "status_code": 206, "context_id": "f"}  # fmt: skip
    assert frames[second]["flush_id"] == 2 and kinds[-1] == "done" and second == len(kinds) - 2
    assert audio_of(frames[:first]) == tone_pcm("One two three", RATE)
    assert audio_of(frames[first:second]) == tone_pcm(" four five", RATE)
    assert {f["flush_id"] for f in frames[:first] if f["type"] in ("chunk", "timestamps")} == {1}
    assert {f["flush_id"] for f in frames[first + 1 : second]
            if f["type"] in ("chunk", "timestamps")} == {2}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "status", "code", "needle"),
    [
        ({"voice": "00000000-0000-0000-0000-000000000000"}, 404, "voice_not_found", "not found"),
        ({"voice": {"mode": "embedding", "embedding": [0.1] * 192}}, 400, "invalid_voice",
         "embedding voices are not supported"),
        ({"voice": {"mode": "id"}}, 400, "invalid_voice", "voice must be"),
        ({"model_id": "eleven_turbo_v2_5"}, 400, "invalid_model", "not a Sonic model"),
        ({"model_id": None}, 400, "invalid_model", "model_id is required"),
        ({"output_format": {"container": "mp3", "encoding": "pcm_s16le", "sample_rate": 24000}},
         400, "invalid_output_format", "container 'mp3'"),
        ({"output_format": {"container": "raw", "encoding": "pcm_u8", "sample_rate": 24000}},
         400, "invalid_output_format", "encoding 'pcm_u8'"),
        ({"output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 12345}},
         400, "invalid_output_format", "sample_rate 12345"),
        ({"language": "xx"}, 400, "invalid_request", "language 'xx'"),
        ({"max_buffer_delay_ms": 9000}, 400, "invalid_request", "max_buffer_delay_ms 9000"),
        ({"generation_config": {"speed": 5}}, 400, "invalid_request", "speed 5"),
        ({"speed": "ludicrous"}, 400, "invalid_request", "speed 'ludicrous'"),
    ],
    ids=["unknown-voice", "embedding", "voice-shape", "model", "no-model", "container",
         "encoding", "rate", "language", "delay", "gen-speed", "speed"],
)
async def test_a_bad_first_request_is_an_error_and_opens_nothing(
    srv: LocalServer, fields: dict[str, Any], status: int, code: str, needle: str
) -> None:
    async with connect(srv) as ws:
        error = (await one_shot(ws, "bad", "Hello. ", **fields))[-1]
        # The same id, asked properly, then works: nothing was left behind.
        good = await one_shot(ws, "bad", "Hello. ")
    assert error["type"] == "error" and error["done"] is True and error["context_id"] == "bad"
    assert (error["status_code"], error["error_code"]) == (status, code)
    assert needle in error["message"] and error["title"] and error["request_id"]
    assert audio_of(good) == tone_pcm("Hello. ", RATE)
    stats = srv.statistics()
    assert (stats.contexts_created, stats.contexts_open, stats.violations) == (1, 0, ())


async def test_frames_without_a_usable_context_id_get_an_error_and_the_socket_stays(
    srv: LocalServer,
) -> None:
    async with connect(srv) as ws:
        for bad in ("{not json", json.dumps([1, 2]), json.dumps({"transcript": "Hi. "}),
                    json.dumps({"context_id": 7, "transcript": "Hi. "})):  # fmt: skip
            await ws.send_message(bad)
            error = await receive(ws)
            assert (error["type"], error["context_id"]) == ("error", None)
            assert error["status_code"] == 400
        await ws.send_message(b"\x00binary")
        assert "binary frames" in (await receive(ws))["message"]
        await send(ws, **{**BASE, "add_timestamps": "yes"}, context_id="t", transcript="Hi. ")
        assert (await receive(ws))["message"] == "add_timestamps must be a boolean"
        still = await one_shot(ws, "ok", "Still here. ")
        assert audio_of(still) == tone_pcm("Still here. ", RATE)


async def test_input_after_continue_false_is_refused_and_the_context_still_finishes(
    srv: LocalServer,
) -> None:
    async with connect(srv) as ws:
        await send(ws, **BASE, context_id="c", transcript="Last words. ", **{"continue": False})
        await send(ws, **BASE, context_id="c", transcript="More? ", **{"continue": True})
        frames = (await until_done(ws, "c"))["c"]
        # The error ends the client's view; the context's own done still follows.
        while frames[-1]["type"] != "done":
            frames.append(await receive(ws))
        await send(ws, **BASE, context_id="c", transcript="Again. ")
        expired = await receive(ws)
    errors = [f for f in frames if f["type"] == "error"]
    assert [e["error_code"] for e in errors] == ["context_closed"]
    assert audio_of(frames) == tone_pcm("Last words. ", RATE)
    assert (expired["type"], expired["error_code"], expired["context_id"]) == (
        "error", "context_expired", "c",
    )  # fmt: skip
    assert srv.statistics().contexts_open == 0


# -- in memory, on virtual time: expiry, buffering delays, cancel, idle timeout, limits -------


class Memory:
    """A Cartesia client on the in-memory link (exact virtual times under the MockClock)."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport

    async def send(self, **fields: Any) -> None:
        await self.transport.send(json.dumps(fields))

    async def receive(self) -> tuple[float, dict[str, Any]]:
        """The next frame and the virtual time it arrived."""
        message: dict[str, Any] = json.loads(await self.transport.receive())
        assert "type" in message and "context_id" in message, message
        return trio.current_time(), message

    async def until(self, kind: str, cid: str) -> list[tuple[float, dict[str, Any]]]:
        """Frames until ``cid``'s frame of type ``kind`` (included)."""
        frames = []
        while True:
            at, message = await self.receive()
            frames.append((at, message))
            if message["type"] == kind and message["context_id"] == cid:
                return frames


@asynccontextmanager
async def memory(**config: Any) -> AsyncIterator[tuple[MemoryServer, Memory]]:
    settings = {"synthesizer": "tone", "api_key": KEY, **config}
    async with open_memory_server(ServerConfig(**settings)) as server:
        transport = await server.connect(
            f"{server.cartesia_url}?cartesia_version=2025-04-16", [("X-API-Key", KEY)]
        )
        try:
            yield server, Memory(transport)
        finally:
            await transport.aclose()


def last_audio(frames: list[tuple[float, dict[str, Any]]]) -> float:
    return max(at for at, f in frames if f["type"] == "chunk")


async def test_an_idle_context_expires_one_second_after_its_last_audio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory() as (server, client):
        await client.send(**BASE, context_id="c", transcript="Hello there. ", **{"continue": True})
        frames = await client.until("done", "c")
        done_at = frames[-1][0]
        assert done_at - last_audio(frames) == pytest.approx(1.0)
        done = {"type": "done", "done": True, "status_code": 200, "context_id": "c"}
        assert frames[-1][1] == done
        assert server.statistics().contexts_open == 0  # it stopped counting at its done
        # Later input for the expired context: an error, and no new context.
        await client.send(**BASE, context_id="c", transcript="Too late. ", **{"continue": True})
        _, error = await client.receive()
        assert (error["type"], error["error_code"], error["status_code"]) == (
            "error", "context_expired", 400,
        )  # fmt: skip
        assert server.statistics().contexts_created == 1


async def test_input_before_the_expiry_keeps_the_context_alive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory() as (server, client):
        base = {**BASE, "context_id": "c", "continue": True}
        await client.send(**base, transcript="First part. ")
        first = await client.until("timestamps", "c")
        await trio.sleep(0.9)  # just inside the second
        await client.send(**base, transcript="Second part. ")
        frames = await client.until("done", "c")
        assert frames[-1][0] - last_audio(frames) == pytest.approx(1.0)
        words = [w for _, f in first + frames if f["type"] == "timestamps"
                 for w in f["word_timestamps"]["words"]]  # fmt: skip
        assert words == ["First", "part.", "Second", "part."]
        assert server.statistics().contexts_created == 1


async def test_a_trailing_partial_word_waits_then_is_spoken_as_the_context_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory() as (_, client):
        start = trio.current_time()
        await client.send(**BASE, context_id="c", transcript="Hello wor", **{"continue": True})
        frames = await client.until("done", "c")
    chunks = [(at - start, f) for at, f in frames if f["type"] == "chunk"]
    spoken = [at for at, _ in chunks]
    # "Hello " at once (max_buffer_delay_ms 0, a word boundary), "wor" at the expiry (+1 s),
    # and the done one second after that audio.
    assert spoken[0] == 0 and spoken[-1] == pytest.approx(1.0)
    assert frames[-1][0] - start == pytest.approx(2.0)
    audio = b"".join(base64.b64decode(f["data"]) for _, f in chunks)
    assert audio == tone_pcm("Hello ", RATE) + tone_pcm("wor", RATE)


@pytest.mark.parametrize(
    ("delay_ms", "text", "spoken_after"),
    [
        (500, "No sentence end yet", 0.5),  # the delay passes
        (500, "A whole sentence. ", 0.0),  # a sentence end: at once
        (None, "The default delay", 3.0),  # Cartesia's default, 3000 ms
    ],
)
async def test_max_buffer_delay_holds_text_until_a_sentence_ends_or_the_delay_passes(
    autojump_clock: trio.testing.MockClock, delay_ms: int | None, text: str, spoken_after: float
) -> None:
    fields = {**BASE, "max_buffer_delay_ms": delay_ms}
    if delay_ms is None:
        del fields["max_buffer_delay_ms"]
    async with memory() as (_, client):
        start = trio.current_time()
        await client.send(**fields, context_id="c", transcript=text, **{"continue": True})
        frames = await client.until("done", "c")
    assert min(at for at, f in frames if f["type"] == "chunk") - start == pytest.approx(
        spoken_after
    )
    assert frames[-1][0] - last_audio(frames) == pytest.approx(1.0)


async def test_cancel_stops_a_context_at_once_and_frees_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    long = "This sentence is long enough to need many chunks of audio. " * 3
    async with memory(faults=Faults(pace_audio=PaceAudio(0.1, when=nth(1)))) as (server, client):
        await client.send(**BASE, context_id="a", transcript=long, **{"continue": False})
        await client.send(**BASE, context_id="b", transcript="Meanwhile. ", **{"continue": True})
        for _ in range(2):  # a's audio is paced, 0.1 s a chunk
            _, frame = await client.receive()
            while frame["context_id"] != "a" or frame["type"] != "chunk":
                _, frame = await client.receive()
        assert server.statistics().contexts_open == 2
        await client.send(cancel=True, context_id="a")
        await client.send(cancel=True, context_id="never-opened")  # does nothing
        await client.send(**BASE, context_id="b", transcript="Then done. ", **{"continue": False})
        frames = await client.until("done", "b")
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().contexts_open == 0
        await client.send(**BASE, context_id="a", transcript="Back? ")
        _, error = await client.receive()
    # Nothing for "a" after the cancel but, at most, the timestamps that left with its last
    # chunk before it: no audio, no done.
    after = [f["type"] for _, f in frames if f["context_id"] == "a"]
    assert after in ([], ["timestamps"])
    assert (error["context_id"], error["error_code"]) == ("a", "context_expired")
    stats = server.statistics()
    assert (stats.contexts_created, stats.contexts_open, stats.violations) == (2, 0, ())


async def test_an_idle_connection_is_closed_after_five_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory() as (server, client):
        start = trio.current_time()
        _, error = await client.receive()
        assert trio.current_time() - start == pytest.approx(300.0)
        assert (error["type"], error["context_id"], error["error_code"]) == (
            "error", None, "idle_timeout",
        )  # fmt: skip
        with pytest.raises(ConnectionLost) as info:
            await client.receive()
        assert info.value.code == 1000
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().connections_open == 0


async def test_the_plans_concurrency_limit_spans_connections_and_frees_at_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory(cartesia_concurrency=2) as (server, client):
        url = f"{server.cartesia_url}?cartesia_version=2025-04-16"
        other = Memory(await server.connect(url, [("Authorization", f"Bearer {KEY}")]))
        try:
            await client.send(**BASE, context_id="a", transcript="One. ", **{"continue": True})
            await other.send(**BASE, context_id="b", transcript="Two. ", **{"continue": True})
            await client.until("chunk", "a")
            await other.until("chunk", "b")
            await other.send(**BASE, context_id="c", transcript="Three. ", **{"continue": True})
            _, refused = await other.receive()
            while refused["context_id"] != "c":
                _, refused = await other.receive()
            assert {k: refused[k] for k in ("type", "status_code", "error_code", "title")} == {
                "type": "error", "status_code": 429, "error_code": "concurrency_limited",
                "title": "Too many concurrent requests",
            }  # fmt: skip
            assert refused["done"] is True
            stats = server.statistics()
            assert (stats.contexts_open, stats.contexts_created) == (2, 2)
            assert stats.violations == ("Cartesia context 3 open at once (limit 2)",)
            # "a" ends (done): its slot is free, and "c" may open.
            await client.send(**BASE, context_id="a", transcript="", **{"continue": False})
            await client.until("done", "a")
            await other.send(**BASE, context_id="c", transcript="Three. ", **{"continue": False})
            frames = await other.until("done", "c")
            assert [f["type"] for _, f in frames if f["context_id"] == "c"][-1] == "done"
            assert server.statistics().violations == stats.violations
        finally:
            await other.transport.aclose()


async def test_a_per_connection_limit_when_configured(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory(cartesia_concurrency=None, cartesia_contexts_per_connection=3) as (
        server, client,
    ):  # fmt: skip
        for i in range(4):
            await client.send(**BASE, context_id=f"c{i}", transcript="Hi. ", **{"continue": True})
        frames = await client.until("error", "c3")
        assert frames[-1][1]["error_code"] == "concurrency_limited"
        stats = server.statistics()
        assert stats.peak_contexts_per_connection == 3 and stats.contexts_created == 3
        assert stats.violations == ("connection 0: context 4 (limit 3 per connection)",)


async def test_an_injected_context_error_at_create_or_after_audio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faults = Faults(context_error=ContextErrorFault(when=nth(1), code=503, message="Overloaded"))
    async with memory(faults=faults) as (server, client):
        await client.send(**BASE, context_id="x", transcript="Hello. ")
        _, error = await client.receive()
        assert {k: error[k] for k in ("type", "context_id", "done", "status_code", "message")} == {
            "type": "error", "context_id": "x", "done": True, "status_code": 503,
            "message": "Overloaded",
        }  # fmt: skip
        assert server.statistics().contexts_created == 0
        server.faults.context_error = ContextErrorFault(when=nth(3), after_audio=True)
        await client.send(**BASE, context_id="y", transcript="Fine. ")  # create 2: fine
        await client.until("done", "y")
        await client.send(**BASE, context_id="z", transcript="One. ", **{"continue": True})
        frames = await client.until("error", "z")  # create 3: fails on its first generation
        assert frames[-1][1]["status_code"] == 500 and frames[-1][1]["done"] is True
        assert not [f for _, f in frames if f["type"] == "chunk" and f["context_id"] == "z"]
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().contexts_open == 0


@pytest.mark.parametrize("encoding", ["pcm_f32le", "pcm_mulaw", "pcm_alaw", "pcm_s16le"])
@pytest.mark.parametrize("rate", [8000, 44100])
async def test_every_raw_encoding_at_any_documented_rate(
    srv: LocalServer, encoding: str, rate: int
) -> None:
    fmt = {"container": "raw", "encoding": encoding, "sample_rate": rate}
    async with connect(srv) as ws:
        audio = audio_of(await one_shot(ws, "e", "Encoded speech. ", output_format=fmt))
    pcm = tone_pcm("Encoded speech. ", rate)
    samples = np.frombuffer(pcm, "<i2")
    if encoding == "pcm_f32le":
        got = np.frombuffer(audio, "<f4")
        assert got.shape == samples.shape and np.array_equal(got * 32768, samples.astype("<f4"))
    elif encoding == "pcm_s16le":
        assert audio == pcm
    else:  # G.711, checked against the standard library's reference coder
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
        coder = audioop.lin2ulaw if encoding == "pcm_mulaw" else audioop.lin2alaw
        assert audio == coder(pcm, 2) and len(audio) == len(samples)


async def test_get_voices_lists_every_voice_under_cartesia_ids_page_by_page(
    srv: LocalServer,
) -> None:
    headers = {"X-API-Key": KEY, "Cartesia-Version": "2025-04-16"}
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        params: dict[str, Any] = {"limit": 40}
        while True:
            page = (await http.get("/voices", params=params, headers=headers)).json()
            seen += page["data"]
            if not page["has_more"]:
                break
            params = {"limit": 40, "starting_after": page["next_page"]}
        before = {"limit": 2, "ending_before": seen[3]["id"]}
        back = (await http.get("/voices", headers=headers, params=before)).json()
        bearer = await http.get("/voices", headers={
            "Authorization": f"Bearer {KEY}", "Cartesia-Version": "2026-08-14"})  # fmt: skip
        refused = {
            "no key": await http.get("/voices", headers={"Cartesia-Version": "2025-04-16"}),
            "query key": await http.get("/voices", params={"api_key": KEY},
                                        headers={"Cartesia-Version": "2025-04-16"}),
            "no version": await http.get("/voices", headers={"X-API-Key": KEY}),
            "bad limit": await http.get("/voices", params={"limit": 0}, headers=headers),
        }  # fmt: skip
    ids = [v["id"] for v in seen]
    assert ids == list(CARTESIA_VOICES) and len(set(ids)) == len(ids)
    assert ids[:2] == [KATIE, "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"]  # LiveKit's, the SDK's
    assert voice_uuid("Dennis") in ids and all(uuid.UUID(i) for i in ids)
    assert [v["id"] for v in back["data"]] == ids[1:3]
    assert seen[0]["name"] == "Katie" and seen[0]["language"] == "en"
    assert set(seen[0]) >= {"id", "name", "description", "language", "locales", "gender",
                            "is_owner", "access", "visibility", "created_at", "tagline"}
    assert bearer.status_code == 200 and len(bearer.json()["data"]) == 10
    assert {k: r.status_code for k, r in refused.items()} == {
        "no key": 401, "query key": 401, "no version": 400, "bad limit": 400,
    }  # fmt: skip
    assert all(set(r.json()) == {"error_code", "title", "message", "request_id"}
               for r in refused.values())  # fmt: skip


async def test_every_listed_voice_speaks(srv: LocalServer) -> None:
    async with connect(srv) as ws:
        for n, vid in enumerate([KATIE, voice_uuid("Hana"), "Dennis", KATIE.upper()]):
            fields = {"voice": vid} if n % 2 else {"voice": {"id": vid}}
            assert audio_of(await one_shot(ws, f"v{n}", "Hi. ", **fields)) == tone_pcm("Hi. ", RATE)


async def test_phoneme_timestamps_when_asked(srv: LocalServer) -> None:
    async with connect(srv) as ws:
        frames = await one_shot(ws, "p", "Hi you. ", add_timestamps=False,
                                add_phoneme_timestamps=True)  # fmt: skip
    assert not [f for f in frames if f["type"] == "timestamps"]
    (stamps,) = [f["phoneme_timestamps"] for f in frames if f["type"] == "phoneme_timestamps"]
    assert stamps["phonemes"] == ["h", "i", "y", "o", "u"]
    (hi_start, hi_end), (you_start, you_end) = [
        (s, e) for _, s, e in tone_speech("Hi you. ", RATE).words
    ]
    assert stamps["start"][0] == hi_start and stamps["end"][1] == pytest.approx(hi_end)
    assert stamps["start"][2] == you_start and stamps["end"][-1] == pytest.approx(you_end)
    assert stamps["start"] == sorted(stamps["start"])


@pytest.mark.parametrize("fault", ["drop", "close", "stall"])
async def test_connection_faults_end_the_socket_and_release_its_contexts(
    autojump_clock: trio.testing.MockClock, fault: str
) -> None:
    rules = {
        "drop": Faults(drop=DropConnection(after_frames=3)),
        "close": Faults(close_connection=CloseConnection(code=1011, after_frames=3)),
        "stall": Faults(stall=Stall(after_frames=3)),
    }
    async with memory(faults=rules[fault]) as (server, client):
        for cid in ("a", "b"):
            await client.send(**BASE, context_id=cid, transcript="A long enough sentence. ",
                              **{"continue": True})  # fmt: skip
        received = 0
        with trio.move_on_after(30) as waited:
            try:
                while True:
                    await client.receive()
                    received += 1
            except ConnectionLost as exc:
                assert exc.code == {"drop": 1006, "close": 1011}[fault]
        assert received == 3
        if fault == "stall":  # silent, not closed: the contexts still count
            assert waited.cancelled_caught and server.statistics().contexts_open == 2
            server.faults.stall = None
            frames = await client.until("done", "b")
            assert frames[-1][1]["type"] == "done"
        else:
            await trio.testing.wait_all_tasks_blocked()
            stats = server.statistics()
            assert (stats.connections_open, stats.contexts_open) == (0, 0)


@pytest.mark.parametrize("hold", ["delay-first-audio", "stall-context"])
async def test_a_held_generation_is_never_cut_short_by_the_expiry(
    autojump_clock: trio.testing.MockClock, hold: str
) -> None:
    """The expiry counts from the last frame that went out; a generation held back by the
    server (a slow first audio, a stalled context) is spoken whole, then expires."""
    text = "A sentence that takes a while to arrive. "
    faults = (
        Faults(delay_first_audio=DelayFirstAudio(2.5))
        if hold == "delay-first-audio"
        else Faults(stall_context=StallContext(when=lambda *_: True, after_frames=2))
    )
    async with memory(faults=faults) as (server, client):
        fields = {**BASE, "add_timestamps": False}
        await client.send(**fields, context_id="c", transcript=text, **{"continue": True})
        if hold == "stall-context":
            frames = [await client.receive(), await client.receive()]  # two chunks, then held
            with trio.move_on_after(3.0):
                frames.append(await client.receive())
            assert len(frames) == 2 and server.statistics().contexts_open == 1
            server.faults.stall_context = None
            server.set_faults()  # wake the stalled context
        else:
            frames = []
        frames += await client.until("done", "c")
    chunks = [f for _, f in frames if f["type"] == "chunk"]
    assert b"".join(base64.b64decode(f["data"]) for f in chunks) == tone_pcm(text, RATE)
    assert frames[-1][0] - last_audio(frames) == pytest.approx(1.0)
    assert last_audio(frames) >= 2.5


async def test_a_contexts_error_is_never_overtaken_by_a_later_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A context that failed while the socket is backed up (here: stalled, its audio budget
    full of another context's frames): the client's next input for it is answered only after
    the failure itself, so the first word the client hears about it is the real error."""
    fault = ContextErrorFault(when=lambda _i, cid: cid == "x", code=503, message="Overloaded",
                              after_audio=True)  # fmt: skip
    long = "Filler speech to fill the budget of queued audio frames. " * 3
    async with memory(faults=Faults(stall=Stall(), context_error=fault)) as (server, client):
        await client.send(**BASE, context_id="filler", transcript=long)
        await client.send(**BASE, context_id="x", transcript="One. ", **{"continue": True})
        await trio.testing.wait_all_tasks_blocked()
        await client.send(**BASE, context_id="x", transcript="Two. ", **{"continue": False})
        await trio.testing.wait_all_tasks_blocked()
        server.set_faults(stall=None)
        frames = await client.until("done", "filler")
        for_x = [f for _, f in frames if f["context_id"] == "x"]
        while len(for_x) < 2:
            for_x.append((await client.receive())[1])
    assert [(f["type"], f["status_code"]) for f in for_x] == [("error", 503), ("error", 400)]
    assert for_x[0]["message"] == "Overloaded" and for_x[1]["error_code"] == "context_expired"
    assert server.statistics().contexts_open == 0
