"""The local server's Cartesia ``/tts/websocket`` with a raw WebSocket client (trio-websocket):
the handshake (both auth styles, the API version in the query or a header), contexts
multiplexed on one socket with exact tone audio and cumulative word times, flush, cancel,
expiry, errors and the concurrency limits, each checked on the server's own counters."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from trio_tts.server import LocalServer, ServerConfig, open_server, tone_pcm, tone_speech

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
    async with open_websocket_url(
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
