"""The local server against plain clients (trio-websocket, httpx): protocol, limits, faults."""

from __future__ import annotations

import base64
import gc
import json
import socket
import urllib.parse
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)

from trio_tts.server import (
    BadFrame,
    CloseAfterContexts,
    ContextErrorFault,
    DropConnection,
    Faults,
    LocalServer,
    RejectHandshake,
    ServerConfig,
    Speech,
    Stall,
    ToneSynthesizer,
    open_server,
    open_server_in_thread,
    tone_pcm,
    tone_speech,
)

from helpers import open_ws

TIMEOUT = 10


def tone(**changes: Any) -> ServerConfig:
    return ServerConfig(synthesizer="tone", **changes)


@asynccontextmanager
async def client(server: LocalServer, **kwargs: Any) -> AsyncIterator[WebSocketConnection]:
    async with open_ws(server.ws_url, **kwargs) as ws:
        yield ws


async def send(ws: WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    message = await ws.get_message()
    assert isinstance(message, str)
    data: dict[str, Any] = json.loads(message)
    return data


def create(
    cid: str, *, encoding: str = "LINEAR16", rate: int = 16000, **extra: Any
) -> dict[str, Any]:
    body = {
        "voiceId": "Ashley",
        "modelId": "inworld-tts-1",
        "audioConfig": {"audioEncoding": encoding, "sampleRateHertz": rate},
        **extra,
    }
    return {"create": body, "contextId": cid}


async def until(ws: WebSocketConnection, cid: str, key: str) -> list[dict[str, Any]]:
    """Results for ``cid`` up to and including the one carrying ``key``."""
    out = []
    while True:
        result = (await recv(ws))["result"]
        if result["contextId"] != cid:
            continue
        out.append(result)
        if key in result or result["status"]["code"] != 0:
            return out


def audio_of(results: list[dict[str, Any]], *, wav: bool) -> bytes:
    pcm = b""
    for result in results:
        if "audioChunk" in result:
            data = base64.b64decode(result["audioChunk"]["audioContent"])
            if wav:
                assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
                assert int.from_bytes(data[40:44], "little") == len(data) - 44
                data = data[44:]
            pcm += data
    return pcm


def words_of(results: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    out = []
    for result in results:
        align = result.get("audioChunk", {}).get("timestampInfo", {}).get("wordAlignment")
        if align:
            out += list(
                zip(
                    align["words"],
                    align["wordStartTimeSeconds"],
                    align["wordEndTimeSeconds"],
                    strict=True,
                )
            )
    return out


def rounded(words: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    return [(w, round(s, 4), round(e, 4)) for w, s, e in words]


# -- the protocol ------------------------------------------------------------------------------


async def test_round_trip_is_exactly_tone_pcm_with_word_timings() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(chunk_ms=100)) as server, client(server) as ws:
            await send(ws, create("c1", timestampType="WORD"))
            assert "contextCreated" in (await recv(ws))["result"]
            await send(ws, {"send_text": {"text": "Hello there "}, "contextId": "c1"})
            await send(ws, {"send_text": {"text": "big world."}, "contextId": "c1"})
            await send(ws, {"flush_context": {}, "contextId": "c1"})
            first = await until(ws, "c1", "flushCompleted")
            await send(ws, {"send_text": {"text": "Bye now"}, "contextId": "c1"})
            await send(ws, {"close_context": {}, "contextId": "c1"})
            second = await until(ws, "c1", "contextClosed")

            assert audio_of(first, wav=True) == tone_pcm("Hello there big world.", 16000)
            assert audio_of(second, wav=True) == tone_pcm("Bye now", 16000)
            chunks = [r for r in first if "audioChunk" in r]
            assert all(
                len(base64.b64decode(r["audioChunk"]["audioContent"])) == 44 + 3200
                for r in chunks[:-1]
            )
            # timings restart at 0 after each flush, as at the real service
            assert words_of(first) == rounded(tone_speech("Hello there big world.", 16000).words)
            assert words_of(second) == rounded(tone_speech("Bye now", 16000).words)
            assert chunks[-1]["audioChunk"]["usage"]["processedCharactersCount"] == 22
            assert not any("flushCompleted" in r for r in second)
            stats = server.statistics()
            assert (stats.contexts_created, stats.contexts_open, stats.violations) == (1, 0, ())


async def test_snake_case_pcm_and_flush_inside_send_text() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone()) as server, client(server) as ws:
            await send(
                ws,
                {
                    "create": {
                        "voice_id": "Dennis",
                        "audio_config": {"audio_encoding": "PCM", "sample_rate_hertz": 24000},
                    },
                    "context_id": "s",
                },
            )
            assert "contextCreated" in (await recv(ws))["result"]
            await send(
                ws, {"send_text": {"text": "snake case", "flush_context": {}}, "context_id": "s"}
            )
            results = await until(ws, "s", "flushCompleted")
            assert audio_of(results, wav=False) == tone_pcm("snake case", 24000)
            assert words_of(results) == []  # no timestampType, no timings


async def test_errors_for_bad_commands_keep_the_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(max_text_chars=10)) as server, client(server) as ws:
            await send(ws, {"send_text": {"text": "x"}, "contextId": "ghost"})
            status = (await recv(ws))["result"]["status"]
            assert status == {
                "code": 5,
                "message": "Context ghost not found during sendText",
                "details": [],
            }
            await send(ws, create("mp3", encoding="MULAW"))
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 12 and "MULAW" in status["message"]
            await send(ws, {"create": {"voiceId": "Nobody"}, "contextId": "v"})
            assert (await recv(ws))["result"]["status"]["message"] == "Unknown voice: Nobody"
            await send(ws, {"create": {"voiceId": 3}, "contextId": "t"})
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3 and status["message"].startswith("create.voiceId:")
            await ws.send_message("not json")
            assert (await recv(ws))["error"]["code"] == 3
            await send(ws, create("ok"))
            await recv(ws)
            await send(ws, {"send_text": {"text": "x" * 11}, "contextId": "ok"})
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3 and "10 characters" in status["message"]
            assert server.statistics().violations == (
                "connection 0: send_text of 11 characters (limit 10)",
            )
            await send(ws, {"close_context": {}, "contextId": "ok"})
            await send(ws, {"close_context": {}, "contextId": "ok"})
            assert "contextClosed" in (await recv(ws))["result"]
            assert (await recv(ws))["result"]["status"]["code"] in (5, 9)


async def test_sixth_context_is_refused_with_code_8() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone()) as server, client(server) as ws:
            for n in range(5):
                await send(ws, create(f"c{n}"))
                assert "contextCreated" in (await recv(ws))["result"]
            await send(ws, create("c5"))
            assert (await recv(ws))["result"] == {
                "contextId": "c5",
                "status": {"code": 8, "message": "Max contexts limit reached", "details": []},
            }
            stats = server.statistics()
            assert (stats.contexts_open, stats.peak_contexts_per_connection) == (5, 5)
            assert stats.violations == ("connection 0: context 6 (limit 5)",)
            await send(ws, {"close_context": {}, "contextId": "c0"})
            assert "contextClosed" in (await recv(ws))["result"]
            await send(ws, create("c5"))  # the slot is free again
            assert "contextCreated" in (await recv(ws))["result"]


async def test_connection_over_the_cap_gets_429_with_retry_after() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(max_connections=2, retry_after=3)) as server:
            async with client(server), client(server):
                with pytest.raises(ConnectionRejected) as info:
                    async with client(server):
                        pass
                assert info.value.status_code == 429
                assert (b"retry-after", b"3") in info.value.headers
                assert server.statistics().connections_open == 2
            async with client(server):  # a slot freed up
                pass
            stats = server.statistics()
            assert stats.handshakes_rejected == {429: 1}
            assert stats.peak_connections == 2
            assert stats.violations == ("connection 3 (limit 2)",)


async def test_basic_auth() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(api_key="s3cret")) as server:
            for headers in ([], [("Authorization", "Basic wrong")]):
                with pytest.raises(ConnectionRejected) as info:
                    async with client(server, extra_headers=headers):
                        pass
                assert info.value.status_code == 401
            async with client(server, extra_headers=[("Authorization", "Basic s3cret")]) as ws:
                await send(ws, create("a"))
                assert "contextCreated" in (await recv(ws))["result"]
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                assert (await http.get("/tts/v1/voices")).status_code == 401
                ok = await http.get("/tts/v1/voices", headers={"Authorization": "Basic s3cret"})
                assert ok.status_code == 200
            assert server.statistics().handshakes_rejected == {401: 2}


async def test_bytes_after_a_refused_handshake_cost_only_that_connection() -> None:
    """A client that writes after its upgrade was refused (a frame already in flight): the
    server drops those bytes. Hypercorn alone would answer them with a second response and
    its h11 error would end the whole server; here the next client is served."""
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(api_key="s3cret")) as server:
            for _ in range(3):
                stream = await trio.open_tcp_stream(server.host, server.port)
                key = base64.b64encode(b"0123456789abcdef").decode()
                request = (
                    "GET /tts/v1/voice:streamBidirectional HTTP/1.1\r\nHost: x\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    "Authorization: Basic wrong\r\n\r\n"
                )
                await stream.send_all(request.encode())
                head = await stream.receive_some(4096)
                assert head.startswith(b"HTTP/1.1 401 ")
                await stream.send_all(b"\x81\x85abcd" + bytes(b ^ 0x61 for b in b"hello"))
                await stream.send_eof()
                while await stream.receive_some(4096):  # the server closes its side
                    pass
                await stream.aclose()
            async with client(server, extra_headers=[("Authorization", "Basic s3cret")]) as ws:
                await send(ws, create("a"))
                assert "contextCreated" in (await recv(ws))["result"]
            assert server.statistics().handshakes_rejected == {401: 3}


async def test_contexts_are_synthesised_concurrently_and_cancel_is_immediate() -> None:
    release = trio.Event()

    class Slow:
        async def synthesize(
            self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
        ) -> Speech:
            if text.startswith("slow"):
                await release.wait()
            return tone_speech(text, sample_rate)

    with trio.fail_after(TIMEOUT):
        async with open_server(ServerConfig(synthesizer=Slow())) as server, client(server) as ws:
            for cid in ("a", "b"):
                await send(ws, create(cid))
                await recv(ws)
            await send(
                ws, {"send_text": {"text": "slow words", "flush_context": {}}, "contextId": "a"}
            )
            await send(ws, {"send_text": {"text": "quick", "flush_context": {}}, "contextId": "b"})
            results = await until(ws, "b", "flushCompleted")  # while "a" is still synthesising
            assert audio_of(results, wav=True) == tone_pcm("quick", 16000)
            await send(ws, {"cancel_context": {}, "contextId": "a"})
            assert (await recv(ws))["result"]["contextId"] == "a"  # contextClosed, no audio
            release.set()
            await send(ws, {"send_text": {"text": "again", "flush_context": {}}, "contextId": "b"})
            results = await until(ws, "b", "flushCompleted")
            assert audio_of(results, wav=True) == tone_pcm("again", 16000)
            assert server.statistics().contexts_open == 1


async def test_cancel_drops_audio_already_queued() -> None:
    with trio.fail_after(TIMEOUT):
        config = ServerConfig(synthesizer=ToneSynthesizer(seconds=30.0), chunk_ms=20)
        async with open_server(config) as server, client(server) as ws:
            await send(ws, create("a"))
            await recv(ws)
            await send(ws, {"send_text": {"text": "long", "flush_context": {}}, "contextId": "a"})
            assert "audioChunk" in (await recv(ws))["result"]
            await send(ws, {"cancel_context": {}, "contextId": "a"})
            audio_after_cancel = 0
            while True:
                result = (await recv(ws))["result"]
                if "contextClosed" in result:
                    break
                audio_after_cancel += 1
            # 30 s of 20 ms chunks is 1500 frames; at most the in-flight budget slips through
            assert audio_after_cancel < 100
            assert server.statistics().frames_sent < 200


async def test_auto_mode_threshold_and_max_buffer_delay() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone()) as server, client(server) as ws:
            await send(ws, create("t", autoMode=True, bufferCharThreshold=20))
            await recv(ws)
            await send(ws, {"send_text": {"text": "One sentence here. And then"}, "contextId": "t"})
            results = await until(ws, "t", "flushCompleted")
            assert audio_of(results, wav=True) == tone_pcm("One sentence here. ", 16000)
            await send(ws, create("d", maxBufferDelayMs=150))
            await recv(ws)
            start = trio.current_time()
            await send(ws, {"send_text": {"text": "waits"}, "contextId": "d"})
            results = await until(ws, "d", "flushCompleted")
            assert trio.current_time() - start >= 0.15
            assert audio_of(results, wav=True) == tone_pcm("waits", 16000)
            await send(ws, {"close_context": {}, "contextId": "t"})
            results = await until(ws, "t", "contextClosed")
            assert audio_of(results, wav=True) == tone_pcm("And then", 16000)


async def test_inactivity_closes_the_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(inactivity_timeout=0.2)) as server, client(server) as ws:
            error = await recv(ws)
            assert error == {
                "error": {"code": 10, "message": "Paused due to inactivity", "details": []}
            }
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason.code == 1000


async def test_server_shutdown_closes_sockets_with_1001() -> None:
    with trio.fail_after(TIMEOUT):
        # The client's nursery and TCP stream outlive the server. The stream is ours to
        # close: trio-websocket's aclose() after the server's close frame may leave it open.
        async with trio.open_nursery() as nursery:
            async with open_server(tone()) as server:
                url = urllib.parse.urlsplit(server.ws_url)
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                ws = await wrap_client_stream(nursery, stream, url.netloc, url.path)
            async with stream:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1001
                await ws.aclose()


async def test_espeak_through_the_server() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(ServerConfig()) as server, client(server) as ws:
            await send(ws, create("e", encoding="PCM", rate=24000, timestampType="WORD"))
            await recv(ws)
            await send(
                ws,
                {
                    "send_text": {"text": "Real speech, from eSpeak.", "flush_context": {}},
                    "contextId": "e",
                },
            )
            results = await until(ws, "e", "flushCompleted")
            pcm = np.frombuffer(audio_of(results, wav=False), dtype="<i2").astype(float)
            assert len(pcm) > 24000 * 0.8 and np.sqrt(np.mean(pcm**2)) > 500
            assert [w for w, _, _ in words_of(results)][:2] == ["Real", "speech"]


# -- HTTP --------------------------------------------------------------------------------------


async def test_http_voice_stream_ndjson_and_voices() -> None:
    text = "Streaming over HTTP works"
    body = {
        "text": text,
        "voiceId": "Ashley",
        "modelId": "inworld-tts-1",
        "audioConfig": {"audioEncoding": "PCM", "sampleRateHertz": 22050},
        "timestampType": "WORD",
    }
    with trio.fail_after(TIMEOUT):
        async with (
            open_server(tone()) as server,
            httpx.AsyncClient(base_url=server.base_url) as http,
        ):
            pcm, words = b"", []
            async with http.stream("POST", "/tts/v1/voice:stream", json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    result = json.loads(line)["result"]
                    pcm += base64.b64decode(result["audioContent"])
                    align = result["timestampInfo"]["wordAlignment"]
                    words += list(
                        zip(
                            align["words"],
                            align["wordStartTimeSeconds"],
                            align["wordEndTimeSeconds"],
                            strict=True,
                        )
                    )
            assert pcm == tone_pcm(text, 22050)
            assert words == rounded(tone_speech(text, 22050).words)

            bad = await http.post("/tts/v1/voice:stream", json={**body, "voiceId": "Nobody"})
            assert bad.status_code == 400 and bad.json()["message"] == "Unknown voice: Nobody"

            one = await http.post("/tts/v1/voice", json={**body, "text": "one shot"})
            assert base64.b64decode(one.json()["audioContent"]) == tone_pcm("one shot", 22050)

            voices = (await http.get("/tts/v1/voices")).json()["voices"]
            assert {"Ashley", "Dennis", "Alex", "Edward", "Olivia", "Hades"} <= {
                v["voiceId"] for v in voices
            }
            assert all({"voiceId", "displayName", "languages"} <= set(v) for v in voices)
            spanish = await http.get("/tts/v1/voices", params={"filter": "language=es"})
            assert {v["voiceId"] for v in spanish.json()["voices"]} == {
                "Diego", "Lupita", "Miguel", "Rafael"
            }
            assert (await http.get("/nowhere")).status_code == 404


# -- faults ------------------------------------------------------------------------------------


async def _speak(ws: WebSocketConnection, cid: str, text: str = "some words") -> None:
    await send(ws, create(cid))
    await send(ws, {"send_text": {"text": text, "flush_context": {}}, "contextId": cid})


async def test_fault_drop_connection_after_n_frames() -> None:
    with trio.fail_after(TIMEOUT):
        faults = Faults(drop=DropConnection(after_frames=3))
        async with open_server(tone(faults=faults)) as server, client(server) as ws:
            await _speak(ws, "a")
            received = 0
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await recv(ws)
                    received += 1
            assert received == 3
            assert info.value.reason.code == 1006  # no close frame: the TCP connection dropped
            assert server.statistics().frames_sent == 3


async def test_fault_delay_first_audio() -> None:
    with trio.fail_after(TIMEOUT):
        config = tone(faults=Faults(first_audio_delay=0.3))
        async with open_server(config) as server, client(server) as ws:
            start = trio.current_time()
            await _speak(ws, "a")
            assert "contextCreated" in (await recv(ws))["result"]
            assert trio.current_time() - start < 0.3
            assert "audioChunk" in (await recv(ws))["result"]
            assert trio.current_time() - start >= 0.3
            await until(ws, "a", "flushCompleted")
            start = trio.current_time()
            await send(ws, {"send_text": {"text": "again", "flush_context": {}}, "contextId": "a"})
            await until(ws, "a", "flushCompleted")
            assert trio.current_time() - start < 0.3  # only the first audio is delayed


async def test_fault_stall_and_resume() -> None:
    with trio.fail_after(TIMEOUT):
        config = tone(faults=Faults(stall=Stall(after_frames=1)))
        async with open_server(config) as server, client(server) as ws:
            await _speak(ws, "a")
            assert "contextCreated" in (await recv(ws))["result"]
            with trio.move_on_after(0.3) as waited:
                await recv(ws)
            assert waited.cancelled_caught  # socket open, nothing sent
            server.set_faults(stall=None)
            results = await until(ws, "a", "flushCompleted")
            assert audio_of(results, wav=True) == tone_pcm("some words", 16000)


async def test_fault_close_with_code_after_n_contexts() -> None:
    with trio.fail_after(TIMEOUT):
        faults = Faults(close=CloseAfterContexts(after_contexts=2, code=1011))
        async with open_server(tone(faults=faults)) as server, client(server) as ws:
            await send(ws, create("a"))
            await send(ws, create("b"))
            assert (await recv(ws))["result"]["contextId"] == "a"
            assert (await recv(ws))["result"]["contextId"] == "b"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason.code == 1011


@pytest.mark.parametrize("kind", ["json", "binary"])
async def test_fault_bad_frame(kind: str) -> None:
    with trio.fail_after(TIMEOUT):
        faults = Faults(bad_frame=BadFrame(after_frames=1, kind=kind))
        async with open_server(tone(faults=faults)) as server, client(server) as ws:
            await send(ws, create("a"))
            assert "contextCreated" in (await recv(ws))["result"]
            bad = await ws.get_message()
            if kind == "binary":
                assert isinstance(bad, bytes)
            else:
                assert isinstance(bad, str)
                with pytest.raises(json.JSONDecodeError):
                    json.loads(bad)


async def test_fault_context_error_by_predicate() -> None:
    with trio.fail_after(TIMEOUT):
        faults = Faults(context_error=ContextErrorFault(when=lambda i, cid: i == 1, code=13))
        async with open_server(tone(faults=faults)) as server, client(server) as ws:
            for cid in ("a", "b", "c"):
                await send(ws, create(cid))
            results = [(await recv(ws))["result"] for _ in range(3)]
            assert ["contextCreated" in r for r in results] == [True, False, True]
            assert results[1]["status"] == {"code": 13, "message": "Internal error", "details": []}
            server.faults.context_error = ContextErrorFault(
                when=lambda i, cid: cid == "c", code=10, message="Aborted", after_audio=True
            )
            await send(ws, {"send_text": {"text": "boom", "flush_context": {}}, "contextId": "c"})
            assert (await recv(ws))["result"]["status"]["code"] == 10
            assert server.statistics().contexts_open == 1


async def test_fault_reject_handshakes() -> None:
    with trio.fail_after(TIMEOUT):
        faults = Faults(reject=RejectHandshake(status=503, retry_after=2, count=1))
        async with open_server(tone(faults=faults)) as server:
            with pytest.raises(ConnectionRejected) as info:
                async with client(server):
                    pass
            assert info.value.status_code == 503
            assert (b"retry-after", b"2") in info.value.headers
            async with client(server):  # count=1: the next one is accepted
                pass
            server.faults = Faults(reject=RejectHandshake(status=403))
            with pytest.raises(ConnectionRejected) as info:
                async with client(server):
                    pass
            assert info.value.status_code == 403
            stats = server.statistics()
            assert stats.handshakes_rejected == {503: 1, 403: 1}
            assert stats.violations == ()


# -- the server in a thread of its own (for asyncio and other non-trio programs) -------------


def test_open_server_in_thread_serves_for_the_block_then_stops() -> None:
    with open_server_in_thread(ServerConfig(synthesizer="tone")) as server:
        assert not trio.lowlevel.in_trio_run()
        voices = httpx.get(f"{server.base_url}/tts/v1/voices", timeout=TIMEOUT).json()["voices"]
        assert any(v["voiceId"] == "Ashley" for v in voices)
        port = server.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # stopped: nothing listens any more


def test_open_server_in_thread_reports_a_server_that_cannot_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = ServerConfig(synthesizer="tone", port=taken.getsockname()[1])
        with (
            pytest.raises(RuntimeError, match=r"^the local server failed to start$") as info,
            open_server_in_thread(config),
        ):
            pass
    assert info.value.__cause__ is not None


async def test_a_server_that_cannot_bind_leaves_no_socket_open() -> None:
    """A taken port: the bind error is raised and the socket made for it is closed, not
    left for gc (hypercorn binding by itself leaked it: a ResourceWarning at collection)."""
    with socket.socket() as taken, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = ServerConfig(synthesizer="tone", port=taken.getsockname()[1])
        with pytest.raises(BaseExceptionGroup) as info:  # from the server's nurseries
            async with open_server(config):
                pass
        assert info.group_contains(OSError, match="Address already in use")
        del info  # its traceback holds the frames that held the socket
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
