"""The local server's ElevenLabs WebSockets, driven by a raw WebSocket client (trio-websocket).

What each test pins is what the official clients depend on (``../shared/PROVIDERS-wire.md``):
``isFinal`` only after ``close_context``; an empty flush does not end a context; character
times cumulative per context; ElevenLabs' error frames and 1008 closes; the 5-context limit; the
inactivity timeout and its keep-alive; the single-context endpoint closing with 1000 after its
``isFinal``. Audio comes from the tone synthesiser, so the exact bytes are known
(:func:`~trio_tts.server.tone_pcm`).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import numpy as np
import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
)

from trio_tts import ConnectionLost
from trio_tts.server import (
    VOICES,
    CloseConnection,
    ContextErrorFault,
    LocalServer,
    ServerConfig,
    open_server,
    tone_pcm,
)
from trio_tts.server.elevenlabs.config import VOICE_IDS
from trio_tts.testing import open_memory_server

from helpers import open_ws

VOICE = "hpp4J3VqNfWAUOO0d1Us"  # the LiveKit plugin's default voice
RATE = 24000


def url(server: LocalServer, query: str = "output_format=pcm_24000", *,
        voice: str = VOICE, path: str = "multi-stream-input") -> str:  # fmt: skip
    return f"ws://{server.host}:{server.port}/v1/text-to-speech/{voice}/{path}?{query}"


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(json.dumps(message))


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        data: dict[str, Any] = json.loads(await ws.get_message())
    return data


async def until_final(ws: WebSocketConnection, context_id: str | None) -> list[dict[str, Any]]:
    """Every message up to and including ``context_id``'s ``isFinal``."""
    out: list[dict[str, Any]] = []
    while True:
        message = await receive(ws)
        out.append(message)
        if message.get("isFinal") and message.get("contextId") == context_id:
            return out


async def close_code(ws: WebSocketConnection) -> tuple[list[dict[str, Any]], int | None, str]:
    """The messages left before the server's close, and the close's code and reason."""
    out: list[dict[str, Any]] = []
    with trio.fail_after(10):
        while True:
            try:
                out.append(json.loads(await ws.get_message()))
            except ConnectionClosed as exc:
                return out, exc.reason.code, exc.reason.reason or ""


def audio_of(messages: list[dict[str, Any]], context_id: str | None = None) -> bytes:
    return b"".join(
        base64.b64decode(m["audio"]) for m in messages
        if m.get("audio") and m.get("contextId") == context_id
    )  # fmt: skip


def char_times(messages: list[dict[str, Any]]) -> list[int]:
    return [t for m in messages if m.get("normalizedAlignment")
            for t in m["normalizedAlignment"]["charStartTimesMs"]]  # fmt: skip


@pytest.fixture
async def el_server() -> AsyncIterator[LocalServer]:
    async with open_server(ServerConfig(synthesizer="tone")) as srv:
        yield srv


async def wait_closed(server: LocalServer) -> None:
    with trio.fail_after(10):
        while server.statistics().connections_open:
            await trio.sleep(0.01)  # polling the server's own counter, not timing


# -- multi-stream-input --------------------------------------------------------------------------


async def test_a_context_speaks_its_flushes_and_ends_only_after_close_context(
    el_server: LocalServer,
) -> None:
    async with open_ws(url(el_server), extra_headers=[("xi-api-key", "k")]) as ws:
        await send(ws, text=" ", voice_settings={}, context_id="a")
        await send(ws, text="Hello there. ", context_id="a", flush=True)
        await send(ws, text="", context_id="a", flush=True)  # an empty flush: not the end
        # The first flush's audio arrives and the context is still open (no isFinal yet).
        first = [await receive(ws)]
        while len(audio_of(first, "a")) < len(tone_pcm(" Hello there. ", RATE)):
            first.append(await receive(ws))
        assert not any(m.get("isFinal") for m in first)
        assert el_server.statistics().contexts_open == 1
        await send(ws, text="How are you? ", context_id="a", flush=True)
        await send(ws, context_id="a", close_context=True)
        rest = await until_final(ws, "a")
    messages = first + rest
    assert [m for m in messages if m.get("isFinal")] == [{"isFinal": True, "contextId": "a"}]
    assert messages[-1] == {"isFinal": True, "contextId": "a"}
    # Two generations, one per flush; the init's " " is the first text's leading space.
    assert audio_of(messages, "a") == tone_pcm(" Hello there. ", RATE) + tone_pcm(
        "How are you? ", RATE
    )
    times = char_times(messages)
    assert times == sorted(times) and times[-1] > 780  # cumulative: 2nd generation after 1st
    chars = "".join(c for m in messages if m.get("normalizedAlignment")
                    for c in m["normalizedAlignment"]["chars"])  # fmt: skip
    assert chars == "Hello there. How are you?"
    await wait_closed(el_server)
    stats = el_server.statistics()
    assert (stats.contexts_open, stats.contexts_created, stats.violations) == (0, 1, ())


async def test_contexts_interleave_on_one_socket_each_with_its_own_audio(
    el_server: LocalServer,
) -> None:
    texts = {f"c{i}": f"Context number {i} speaks. " for i in range(5)}
    async with open_ws(url(el_server)) as ws:
        for cid in texts:
            await send(ws, text=" ", context_id=cid)
        for cid, text in texts.items():
            await send(ws, text=text, context_id=cid, flush=True)
        for cid in texts:
            await send(ws, context_id=cid, close_context=True)
        messages: list[dict[str, Any]] = []
        finals: set[str] = set()
        while len(finals) < len(texts):
            message = await receive(ws)
            messages.append(message)
            if message.get("isFinal"):
                finals.add(message["contextId"])
        assert el_server.statistics().peak_contexts_per_connection == 5
    for cid, text in texts.items():
        assert audio_of(messages, cid) == tone_pcm(" " + text, RATE)
    assert el_server.statistics().violations == ()


async def test_a_sixth_context_closes_the_socket_with_1008(el_server: LocalServer) -> None:
    async with open_ws(url(el_server)) as ws:
        for i in range(6):
            await send(ws, text=" ", context_id=f"c{i}")
        messages, code, reason = await close_code(ws)
    assert messages == [{
        "message": "Maximum simultaneous contexts per WebSocket connection exceeded (5). "
        "Please close an existing context before opening a new one.",
        "error": "max_active_conversations", "code": 1008,
    }]  # fmt: skip
    assert code == 1008 and reason.startswith("Maximum simultaneous contexts")
    await wait_closed(el_server)
    stats = el_server.statistics()
    assert stats.violations == ("connection 0: context 6 (limit 5)",)
    assert (stats.peak_contexts_per_connection, stats.contexts_open) == (5, 0)


async def test_context_error_mode_fails_only_the_sixth() -> None:
    config = ServerConfig(synthesizer="tone", elevenlabs_limit_action="context-error")
    async with open_server(config) as server, open_ws(url(server)) as ws:
        for i in range(6):
            await send(ws, text=" ", context_id=f"c{i}")
        error = await receive(ws)
        assert error["contextId"] == "c5" and error["error"] == "max_active_conversations"
        await send(ws, text="Still here. ", context_id="c5", flush=True)  # ignored: refused
        await send(ws, text="Fine. ", context_id="c0", flush=True)
        await send(ws, context_id="c0", close_context=True)
        messages = await until_final(ws, "c0")
        assert audio_of(messages, "c0") == tone_pcm(" Fine. ", RATE)
        assert not any(m.get("contextId") == "c5" for m in messages)
        # A slot freed by c0's isFinal: the refused id is usable once it was closed.
        await send(ws, context_id="c5", close_context=True)
        await send(ws, text=" ", context_id="c5")
        await send(ws, text="Now. ", context_id="c5", flush=True)
        await send(ws, context_id="c5", close_context=True)
        messages = await until_final(ws, "c5")
        assert audio_of(messages, "c5") == tone_pcm(" Now. ", RATE)
        assert server.statistics().violations == ("connection 0: context 6 (limit 5)",)


async def test_unknown_voice_model_and_format_are_refused_as_elevenlabs_does(
    el_server: LocalServer,
) -> None:
    cases = {
        url(el_server, voice="NoSuchVoice123"): (
            "voice_not_found", "A voice with voice_id NoSuchVoice123 was not found."),
        url(el_server, "model_id=eleven_nope"): (
            "model_not_found", "A model with model ID eleven_nope does not exist."),
        url(el_server, "output_format=pcm_12345"): ("invalid_output_format", None),
        url(el_server, "output_format=alaw_8000"): ("invalid_output_format", None),
        url(el_server, "inactivity_timeout=181"): ("invalid_request", None),
        url(el_server, "model_id=eleven_v3"): ("unsupported_model", None),
    }  # fmt: skip
    for target, (error, text) in cases.items():
        async with open_ws(target) as ws:
            messages, code, reason = await close_code(ws)
        assert code == 1008, target
        assert [(m["error"], m["code"]) for m in messages] == [(error, 1008)], target
        if text is not None:
            assert messages[0]["message"] == text and reason == text
    await wait_closed(el_server)
    assert el_server.statistics().contexts_created == 0


async def test_a_key_in_the_header_or_the_first_message(el_server: LocalServer) -> None:
    key = "el-secret-KEY-123"
    async with open_server(ServerConfig(synthesizer="tone", api_key=key)) as server:
        async with open_ws(url(server), extra_headers=[("xi-api-key", "wrong")]) as ws:
            messages, code, _ = await close_code(ws)
        assert code == 1008 and messages[0]["error"] == "invalid_api_key"
        assert key not in json.dumps(messages)
        async with open_ws(url(server)) as ws:  # no header, no key in the message
            await send(ws, text=" ", context_id="a")
            messages, code, _ = await close_code(ws)
        assert code == 1008 and messages[0]["error"] == "invalid_api_key"
        for auth in ({"xi_api_key": key}, {"authorization": f"Bearer {key}"}):
            async with open_ws(url(server)) as ws:
                await send(ws, text=" ", context_id="a", **auth)
                await send(ws, text="Hi. ", context_id="b")  # the connection is authenticated
                await send(ws, text="Yes. ", context_id="a", flush=True, close_context=True)
                assert audio_of(await until_final(ws, "a"), "a") == tone_pcm(" Yes. ", RATE)
        async with open_ws(url(server), extra_headers=[("xi-api-key", key)]) as ws:
            await send(ws, text="Ok. ", context_id="a", flush=True, close_context=True)
            assert audio_of(await until_final(ws, "a"), "a") == tone_pcm("Ok. ", RATE)


async def test_inactivity_closes_the_socket_and_a_keep_alive_resets_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Virtual time (the in-memory transport): 30 s of silence close the socket with 1008,
    a keep-alive ``{"text": ""}`` starts the 30 s again."""
    async with open_memory_server(ServerConfig(synthesizer="tone")) as server:
        ws = await server.connect(url(server, "output_format=pcm_24000&inactivity_timeout=30"), [])
        start = trio.current_time()
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        await trio.sleep(25)
        await ws.send(json.dumps({"text": "", "context_id": "a"}))  # the keep-alive
        await trio.sleep(25)  # 50 s after the first message: still open
        await ws.send(json.dumps({"text": "Hi. ", "context_id": "a", "flush": True}))
        messages: list[dict[str, Any]] = []
        with pytest.raises(ConnectionLost) as info:
            while True:
                messages.append(json.loads(await ws.receive()))
        assert trio.current_time() - start == pytest.approx(80, abs=0.1)
        assert info.value.code == 1008 and "Have not received a new text input" in str(info.value)
        assert audio_of(messages, "a") == tone_pcm(" Hi. ", RATE)
        assert [m["error"] for m in messages if "error" in m] == ["input_timeout_exceeded"]
        assert "30 seconds" in messages[-1]["message"]
        await ws.aclose()


async def test_close_socket_finishes_pending_flushes_then_closes(el_server: LocalServer) -> None:
    async with open_ws(url(el_server)) as ws:
        await send(ws, text=" ", context_id="a")
        await send(ws, text="Spoken. ", context_id="a", flush=True)
        await send(ws, text="Never flushed ", context_id="a")
        await send(ws, text=" ", context_id="b")
        await send(ws, close_socket=True)
        messages, code, _ = await close_code(ws)
    assert code == 1000
    assert audio_of(messages, "a") == tone_pcm(" Spoken. ", RATE)
    assert not any(m.get("isFinal") for m in messages)
    await wait_closed(el_server)
    assert el_server.statistics().contexts_open == 0


async def test_a_context_error_fault_fails_that_context_only() -> None:
    fault = ContextErrorFault(when=lambda n, cid: cid == "bad", message="boom")
    async with open_server(ServerConfig(synthesizer="tone")) as server:
        server.set_faults(context_error=fault)
        async with open_ws(url(server)) as ws:
            await send(ws, text=" ", context_id="bad")
            await send(ws, text="Good. ", context_id="ok", flush=True, close_context=True)
            first = await receive(ws)
            assert first == {"message": "boom", "error": "internal_error", "contextId": "bad"}
            assert audio_of(await until_final(ws, "ok"), "ok") == tone_pcm("Good. ", RATE)
        server.set_faults(context_error=ContextErrorFault(
            when=lambda n, cid: True, message="later", after_audio=True))  # fmt: skip
        async with open_ws(url(server)) as ws:
            await send(ws, text="Words. ", context_id="x", flush=True)
            assert await receive(ws) == {"message": "later", "error": "internal_error",
                                         "contextId": "x"}  # fmt: skip
            await wait_until(lambda: server.statistics().contexts_open == 0)


async def wait_until(predicate: Any) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.01)


# -- stream-input --------------------------------------------------------------------------------


async def test_stream_input_ends_with_is_final_and_a_1000_close(el_server: LocalServer) -> None:
    target = url(el_server, "output_format=pcm_16000", path="stream-input")
    async with open_ws(target) as ws:
        await send(ws, text=" ", try_trigger_generation=True, voice_settings=None,
                   generation_config={"chunk_length_schedule": [50]})  # fmt: skip
        for word in ["This", "is", "a", "test", "of", "the", "single", "context", "endpoint.", ""]:
            await send(ws, text=word + " ", try_trigger_generation=True)
        await send(ws, text="")
        messages, code, _ = await close_code(ws)
    assert code == 1000
    assert messages[-1] == {"isFinal": True}
    assert not any("contextId" in m for m in messages)
    audio = audio_of(messages)
    assert len(audio) > 16000 * 2  # over a second of speech at 16 kHz
    await wait_closed(el_server)
    assert el_server.statistics().contexts_open == 0


async def test_stream_input_refuses_changed_voice_settings(el_server: LocalServer) -> None:
    target = url(el_server, path="stream-input")
    async with open_ws(target) as ws:
        await send(ws, text=" ", voice_settings={"stability": 0.5, "similarity_boost": 0.5})
        await send(ws, text="Hi ", voice_settings={"stability": 0.9, "similarity_boost": 0.5})
        messages, code, _ = await close_code(ws)
    assert code == 1008
    assert messages[-1]["message"].startswith("voice_settings field must be provided")


# -- formats -------------------------------------------------------------------------------------


def decoded(data: bytes, fmt: str | None = None, **options: str) -> tuple[int, list[Any]]:
    """(sample rate, samples) of ``data``, decoded by FFmpeg (PyAV): int16 for mu-law,
    floats in [-1, 1] for MP3 and Opus."""
    with av.open(io.BytesIO(data), format=fmt, options=options) as container:
        frames = list(container.decode(audio=0))
    samples = [s for f in frames for s in f.to_ndarray().reshape(-1).tolist()]
    return frames[0].sample_rate, samples


async def speak_once(server: LocalServer, output_format: str, text: str) -> bytes:
    async with open_ws(url(server, f"output_format={output_format}")) as ws:
        await send(ws, text=" ", context_id="a")
        for sentence in text.split(". "):
            await send(ws, text=sentence + ". ", context_id="a", flush=True)
        await send(ws, context_id="a", close_context=True)
        return audio_of(await until_final(ws, "a"), "a")


@pytest.mark.parametrize(
    ("output_format", "rate", "padding"),
    [("mp3_44100_128", 44100, 0.15), ("mp3_22050_32", 22050, 0.2), ("mp3_24000_48", 24000, 0.15),
     ("opus_48000_64", 48000, 0.08)],
)  # fmt: skip
async def test_compressed_formats_are_one_stream_per_context(
    el_server: LocalServer, output_format: str, rate: int, padding: float
) -> None:
    """Two flushes, then the close: one MP3/Ogg Opus stream that FFmpeg decodes whole, as long
    as the speech plus at most ``padding`` seconds of flush padding per flush."""
    text = "One sentence here. Another one there"
    data = await speak_once(el_server, output_format, text)
    got_rate, samples = decoded(data)
    seconds = len(samples) / got_rate
    speech = (len(text) + 1 + 2) * 0.060  # the init's " " and the two ". "
    assert got_rate == rate
    assert speech <= seconds <= speech + 2 * padding + 0.1
    assert max(abs(s) for s in samples) > 0.3  # sound (the tone peaks at 0.5), not silence


async def test_ulaw_8000_is_g711_mu_law(el_server: LocalServer) -> None:
    text = "Mu law audio"
    data = await speak_once(el_server, "ulaw_8000", text)
    want = tone_pcm(" " + text + ". ", 8000)
    assert len(data) == len(want) // 2  # one byte per sample
    rate, samples = decoded(data, "mulaw", sample_rate="8000", channels="1")
    exact = np.frombuffer(want, "<i2").astype(np.int64)
    assert rate == 8000 and len(samples) == len(exact)
    # mu-law keeps about 3 % of each sample's magnitude (and zero within 8).
    error = np.abs(np.asarray(samples, dtype=np.int64) - exact)
    assert bool(np.all(error <= np.abs(exact) * 0.04 + 8))


# -- voices, limits, faults ----------------------------------------------------------------------


async def test_voices_list_in_elevenlabs_shape(el_server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=el_server.elevenlabs_url) as http:
        body = (await http.get("/voices", headers={"xi-api-key": "any"})).json()
    ids = [v["voice_id"] for v in body["voices"]]
    assert VOICE in ids and ids == list(VOICE_IDS)
    bella = body["voices"][ids.index(VOICE)]
    assert (bella["name"], bella["category"]) == ("Bella", "premade")
    assert all(v["labels"]["local_voice"] in VOICES for v in body["voices"])
    key = "voices-KEY-9"
    async with (
        open_server(ServerConfig(synthesizer="tone", api_key=key)) as server,
        httpx.AsyncClient(base_url=server.elevenlabs_url) as http,
    ):
        for headers in ({}, {"xi-api-key": "wrong"}):
            denied = await http.get("/voices", headers=headers)
            assert denied.status_code == 401
            assert denied.json() == {"detail": {"status": "invalid_api_key",
                                                "message": "Invalid API key"}}  # fmt: skip
        assert (await http.get("/voices", headers={"xi-api-key": key})).status_code == 200


async def test_a_connection_over_the_account_limit_gets_429() -> None:
    async with open_server(ServerConfig(synthesizer="tone", max_connections=1)) as server:
        async with open_ws(url(server)):
            with pytest.raises(ConnectionRejected) as info:
                async with open_ws(url(server)):
                    pass
        assert info.value.status_code == 429
        assert json.loads(info.value.body or b"")["detail"]["status"] == (
            "too_many_concurrent_requests"
        )
        stats = server.statistics()
        assert stats.handshakes_rejected == {429: 1} and stats.peak_connections == 1
        assert stats.violations == ("connection 2 (limit 1)",)


async def test_no_context_limit_when_configured_off() -> None:
    config = ServerConfig(synthesizer="tone", elevenlabs_max_contexts=None)
    async with open_server(config) as server, open_ws(url(server)) as ws:
        for i in range(8):
            await send(ws, text=" ", context_id=f"c{i}")
        for i in range(8):
            await send(ws, text=f"Number {i}. ", context_id=f"c{i}", flush=True,
                       close_context=True)  # fmt: skip
        finals = 0
        while finals < 8:
            finals += bool((await receive(ws)).get("isFinal"))
        stats = server.statistics()
        assert stats.peak_contexts_per_connection == 8 and stats.violations == ()


async def test_frame_count_faults_apply_to_elevenlabs_sockets(el_server: LocalServer) -> None:
    el_server.set_faults(close_connection=CloseConnection(code=1011, reason="boom",
                                                          after_frames=2))  # fmt: skip
    async with open_ws(url(el_server)) as ws:
        await send(ws, text="A longer sentence than two frames of audio. ", context_id="a",
                   flush=True, close_context=True)  # fmt: skip
        messages, code, reason = await close_code(ws)
    assert (len(messages), code, reason) == (2, 1011, "boom")
    await wait_closed(el_server)
    assert el_server.statistics().contexts_open == 0


async def test_http_synthesis_in_elevenlabs_shape(el_server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=el_server.elevenlabs_url) as http:
        ok = await http.post(f"/text-to-speech/{VOICE}/stream?output_format=pcm_16000",
                             json={"text": "Over HTTP.", "model_id": "eleven_flash_v2_5"})
        assert ok.status_code == 200 and ok.headers["content-type"] == "audio/pcm"
        assert ok.content == tone_pcm("Over HTTP.", 16000)
        mp3 = await http.post(f"/text-to-speech/{VOICE}", json={"text": "Over HTTP."})
        assert mp3.headers["content-type"] == "audio/mpeg"
        rate, samples = decoded(mp3.content)
        assert rate == 44100 and len(samples) / rate == pytest.approx(0.6, abs=0.1)
        missing = await http.post("/text-to-speech/Nobody/stream", json={"text": "Hi."})
        assert missing.status_code == 404
        assert missing.json()["detail"]["status"] == "voice_not_found"
        bad = await http.post(f"/text-to-speech/{VOICE}?output_format=wav", json={"text": "x"})
        assert bad.status_code == 400
        assert bad.json()["detail"]["status"] == "invalid_output_format"
        assert (await http.get(f"/text-to-speech/{VOICE}/stream")).status_code == 405
