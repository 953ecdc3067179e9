"""trio_tts.http against the local server (tone: exact bytes; eSpeak: real speech) and, where
the server cannot misbehave on demand, against httpx.MockTransport."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import trio

import trio_tts
from trio_tts.http import HTTPClient, RequestRejected, Voice, request_body
from trio_tts.server import (
    VOICES,
    EspeakSynthesizer,
    ServerConfig,
    Speech,
    open_server,
    tone_pcm,
    tone_speech,
)

TIMEOUT = 10
TEXT = "Hello there. How are you today?"


def _rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def _wav_header(n: int, rate: int) -> bytes:
    from trio_tts.server.inworld.proto import wav_header

    return wav_header(n, rate)


@pytest.mark.parametrize("encoding", ["LINEAR16", "PCM"])
@pytest.mark.parametrize("rate", [16000, 24000])
async def test_tone_stream_gives_exact_bytes_and_words(encoding: str, rate: int) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_server(ServerConfig(synthesizer="tone", chunk_ms=100)) as server,
            HTTPClient(base_url=server.base_url) as client,
        ):
            chunks: list[trio_tts.Audio] = []
            async with client.stream(
                TEXT, encoding=encoding, sample_rate=rate, timestamp_type="WORD"
            ) as stream:
                async for audio in stream:
                    chunks.append(audio)
    expected = tone_speech(TEXT, rate)
    # Headers stripped (LINEAR16) or absent (PCM): the samples are exactly the tone's.
    assert b"".join(a.data for a in chunks) == tone_pcm(TEXT, rate) == expected.pcm
    step = rate // 10 * 2  # 100 ms chunks
    assert [len(a.data) for a in chunks[:-1]] == [step] * (len(chunks) - 1)
    assert len(chunks) == -(-len(expected.pcm) // step) > 10
    words = [(w.word, w.start, w.end) for a in chunks for w in a.words]
    assert [w for w, _, _ in words] == [w for w, _, _ in expected.words]
    flat = [t for _, s, e in words for t in (s, e)]
    assert flat == pytest.approx([t for _, s, e in expected.words for t in (s, e)], abs=1e-4)
    assert {a.context_id for a in chunks} == {stream.request_id}
    assert stream.chunks == len(chunks) and stream.audio_bytes == len(expected.pcm)
    assert stream.usage_characters == len(TEXT)


async def test_synthesize_collects_everything() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_server(ServerConfig(synthesizer="tone")) as server,
            HTTPClient(base_url=server.base_url) as client,
        ):
            result = await client.synthesize(TEXT, voice="Dennis", sample_rate=22050)
    assert result.audio == tone_pcm(TEXT, 22050)
    assert result.duration == pytest.approx(len(TEXT) * 0.06, abs=1e-3)
    assert result.time_to_first_audio is not None and 0 < result.time_to_first_audio < TIMEOUT
    assert result.words == ()  # no timestamp_type asked for


async def test_espeak_stream_is_real_speech_in_many_chunks() -> None:
    text = "The quick brown fox jumps over the lazy dog, twice, for good measure."
    with trio.fail_after(TIMEOUT):
        reference = await EspeakSynthesizer().synthesize(text, voice="Ashley", sample_rate=24000)
        async with (
            open_server(ServerConfig(synthesizer="espeak")) as server,
            HTTPClient(base_url=server.base_url) as client,
        ):
            chunks = []
            async with client.stream(text, timestamp_type="WORD") as stream:
                async for audio in stream:
                    chunks.append(audio)
    pcm = b"".join(a.data for a in chunks)
    assert len(chunks) > 5  # cut at 200 ms and handed over one by one
    # eSpeak varies a few samples from call to call (its voices add random jitter).
    assert len(pcm) == pytest.approx(len(reference.pcm), rel=0.01)
    assert _rms(pcm) > 500
    words = [w for a in chunks for w in a.words]
    assert [w.word for w in words] == [w for w, _, _ in reference.words]
    starts = [w.start for w in words]
    assert starts == sorted(starts) and words[-1].end <= len(pcm) / 48000 + 1e-3


async def test_audio_is_delivered_before_the_body_ends() -> None:
    """A body that stops after its first line until the test has seen that line's audio: a
    client that waited for the whole body would never return the first chunk."""
    first, second = b"\x01\x00" * 100, b"\x02\x00" * 50
    gate = trio.Event()
    seen: list[httpx.Request] = []

    def line(pcm: bytes) -> bytes:
        data = base64.b64encode(_wav_header(len(pcm), 24000) + pcm).decode()
        return json.dumps({"result": {"audioContent": data}}).encode() + b"\n"

    async def body() -> AsyncIterator[bytes]:
        yield line(first)
        await gate.wait()
        yield line(second)

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body())

    with trio.fail_after(TIMEOUT):
        transport = httpx.MockTransport(handler)
        async with (
            HTTPClient("key-for-mock-1234", base_url="https://x.test", transport=transport) as c,
            c.stream("Hi there.", voice="Olivia", speaking_rate=1.2) as stream,
        ):
            audio = await stream.__anext__()
            assert audio.data == first
            gate.set()
            rest = [a.data async for a in stream]
    assert rest == [second]
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/tts/v1/voice:stream"
    assert request.headers["authorization"] == "Basic key-for-mock-1234"
    assert request.headers["x-request-id"] == stream.request_id
    assert json.loads(request.content) == {
        "text": "Hi there.",
        "voiceId": "Olivia",
        "modelId": "inworld-tts-1",
        "audioConfig": {
            "audioEncoding": "LINEAR16",
            "bitrate": 64000,
            "sampleRateHertz": 24000,
            "temperature": 1.0,
            "speakingRate": 1.2,
        },
    }


def test_request_body_optional_fields() -> None:
    opts = trio_tts.VoiceOptions(
        language="fr", timestamp_type="word", apply_text_normalization=False
    )
    body = request_body("Salut", opts)
    assert body["language"] == "fr"
    assert body["timestampType"] == "WORD"
    assert body["applyTextNormalization"] == "OFF"


async def test_voices_listing_and_language_filter() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_server(ServerConfig(synthesizer="tone")) as server,
            HTTPClient(base_url=server.base_url) as client,
        ):
            voices = await client.voices()
            french = await client.voices(language="fr")
    assert [v.voice_id for v in voices] == list(VOICES)
    ashley = voices[0]
    assert ashley == Voice(
        voice_id="Ashley",
        display_name="Ashley",
        description=VOICES["Ashley"].description,
        languages=("en",),
        tags=("female",),
        source="SYSTEM",
    )
    assert {v.voice_id for v in french} == {"Alain", "Hélène", "Mathieu", "Étienne"}


async def test_wrong_key_is_a_typed_401_that_never_shows_a_key() -> None:
    server_key, client_key = "server-secret-KEY-9f8e7d", "client-secret-KEY-1a2b3c"
    errors: list[RequestRejected] = []
    with trio.fail_after(TIMEOUT):
        async with open_server(ServerConfig(synthesizer="tone", api_key=server_key)) as server:
            for key in (client_key, None):
                async with HTTPClient(key, base_url=server.base_url) as client:
                    with pytest.raises(RequestRejected) as stream_error:
                        async with client.stream("Hello."):
                            pass  # pragma: no cover
                    with pytest.raises(RequestRejected) as voices_error:
                        await client.voices()
                    errors += [stream_error.value, voices_error.value]
            async with HTTPClient(server_key, base_url=server.base_url) as client:
                assert len(await client.voices()) == len(VOICES)
                assert (await client.synthesize("Hello.")).audio == tone_pcm("Hello.", 24000)
            assert "KEY" not in repr(client)
    for error in errors:
        # An HTTP refusal is its own error: no WebSocket was involved, nothing was lost.
        assert isinstance(error, trio_tts.RequestRejected | trio_tts.TTSError)
        assert not isinstance(error, trio_tts.HandshakeRejected | trio_tts.ConnectionLost)
        assert error.status == 401 and error.is_auth_error and error.grpc_code == 16
        for text in (str(error), repr(error)):
            assert server_key not in text and client_key not in text
            assert base64.b64encode(client_key.encode()).decode() not in text
    assert str(errors[0]) == (
        "POST /tts/v1/voice:stream rejected with HTTP 401:"
        " Unauthenticated: invalid or missing API key"
    )


async def test_bad_request_is_context_failed_like_the_websocket() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_server(ServerConfig(synthesizer="tone")) as server,
            HTTPClient(base_url=server.base_url) as client,
        ):
            with pytest.raises(trio_tts.ContextFailed) as info:
                await client.synthesize("Hello.", voice="Nobody")
    assert (info.value.code, info.value.message) == (3, "Unknown voice: Nobody")


class _Broken:
    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        raise RuntimeError("the synthesiser caught fire")


async def test_error_line_in_the_body_is_context_failed() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_server(ServerConfig(synthesizer=_Broken())) as server,
            HTTPClient(base_url=server.base_url) as client,
        ):
            with pytest.raises(trio_tts.ContextFailed) as info:
                async with client.stream("Hello.") as stream:
                    async for _ in stream:
                        pass  # pragma: no cover
    assert info.value.code == 13
    assert "caught fire" in info.value.message


def _mock(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("status", "body", "headers", "retry_after", "message"),
    [
        (429, b'{"error": {"code": 8, "message": "Too many requests"}}', {"retry-after": "3"},
         3.0, "Too many requests"),
        (503, b"<html>unavailable</html>", {}, None, "Service Unavailable"),
        (403, b'{"code": 7, "message": "Permission denied"}', {}, None, "Permission denied"),
    ],
)  # fmt: skip
async def test_error_statuses_are_request_rejected(
    status: int, body: bytes, headers: dict[str, str], retry_after: float | None, message: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with HTTPClient(
            base_url="https://tts.example", transport=_mock(status, body, headers)
        ) as client:
            with pytest.raises(RequestRejected) as info:
                await client.synthesize("Hello.")
    assert info.value.status == status
    assert info.value.retry_after == retry_after
    assert str(info.value).endswith(f"HTTP {status}: {message}")


async def test_malformed_line_is_a_protocol_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with HTTPClient(
            base_url="https://tts.example", transport=_mock(200, b'{"result": {"audioCont')
        ) as client:
            with pytest.raises(trio_tts.ProtocolError, match=r"^malformed voice:stream line"):
                await client.synthesize("Hello.")


async def test_refused_connection_is_connection_lost() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        async with HTTPClient(base_url=f"http://127.0.0.1:{port}") as client:
            with pytest.raises(trio_tts.ConnectionLost) as info:
                await client.voices()
            with pytest.raises(trio_tts.ConnectionLost):
                await client.synthesize("Hello.")
    assert not isinstance(info.value, trio_tts.HandshakeRejected)
    assert str(info.value).startswith("GET /tts/v1/voices failed:")


async def test_invalid_input_fails_before_any_io() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")  # pragma: no cover

    with pytest.raises(trio_tts.InvalidOptions, match="base_url"):
        HTTPClient(base_url="wss://api.inworld.ai")
    with pytest.raises(trio_tts.InvalidOptions, match="api_key"):
        HTTPClient("  ")
    async with HTTPClient(
        base_url="https://tts.example", transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(trio_tts.InvalidOptions, match="text"):
            await client.synthesize("   ")
        with pytest.raises(trio_tts.InvalidOptions, match="sample_rate"):
            await client.synthesize("Hello.", sample_rate=12345)
