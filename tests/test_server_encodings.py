"""Compressed audio (MP3, OGG_OPUS, FLAC) and the rest of the message set, against the server.

The independent decoder is FFmpeg through PyAV (``av``, installed with livekit-agents in the
test extra); the server encodes with libsndfile (``soundfile``), so encoder and decoder are
different libraries. MP3 and Ogg files are also read back with soundfile.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
import trio
from test_server import TIMEOUT, client, create, recv, send, tone, until

import trio_tts
import trio_tts.http
from trio_tts.server import open_server, tone_pcm, tone_speech

av = pytest.importorskip("av")
soundfile = pytest.importorskip("soundfile")

# About 2.5 s each: a flush costs up to ~70 ms of padding silence (MP3 at 24 kHz); see
# trio_tts/server/inworld/codecs.py.
TEXTS = [
    "Hello there, big world, how are you today?",
    "A second sentence follows the first one here!",
    "And a third one closes the little paragraph.",
]
CODEC = {"OGG_OPUS": "opus", "MP3": "mp3", "FLAC": "flac", "LINEAR16": "pcm_s16le"}


def decoded_seconds(data: bytes, codec: str | None = None) -> float:
    """Seconds of audio FFmpeg decodes from ``data`` (every packet must decode)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        if codec is not None:
            assert stream.codec_context.name.startswith(codec)
        samples = rate = 0
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate
    return samples / rate


def chunks_of(results: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(r["audioChunk"].get("audioContent", ""))
        for r in results
        if "audioChunk" in r
    )


def expected_seconds(texts: list[str], rate: int = 24000) -> float:
    return sum(len(tone_pcm(t, rate)) / 2 / rate for t in texts)


@pytest.mark.parametrize("encoding", ["OGG_OPUS", "MP3", "FLAC", "LINEAR16", "PCM"])
async def test_a_streamed_context_concatenates_into_one_playable_file(encoding: str) -> None:
    """Three flushes and a close: the chunks, in order, are one file FFmpeg decodes to the
    synthesised duration (within 10 %); after each flushCompleted the bytes so far already
    hold all of that flush's audio (the server drains its encoder at a flush)."""
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(chunk_ms=100)) as server, client(server) as ws:
            await send(ws, create("c", encoding=encoding, rate=24000, bitrate=48000))
            assert "contextCreated" in (await recv(ws))["result"]
            stream = b""
            for n, text in enumerate(TEXTS):
                await send(ws, {"send_text": {"text": text, "flush_context": {}},
                                "context_id": "c"})  # fmt: skip
                stream += chunks_of(await until(ws, "c", "flushCompleted"))
                if encoding not in ("PCM", "LINEAR16"):
                    spoken = expected_seconds(TEXTS[: n + 1])
                    assert decoded_seconds(stream) >= spoken * 0.97
            await send(ws, {"close_context": {}, "context_id": "c"})
            stream += chunks_of(await until(ws, "c", "contextClosed"))
    want = expected_seconds(TEXTS)
    if encoding == "PCM":
        assert len(stream) / 2 / 24000 == pytest.approx(want)
        return
    if encoding == "LINEAR16":
        return  # every chunk is its own WAV (test_server covers it)
    got = decoded_seconds(stream, CODEC[encoding])
    assert want <= got <= want * 1.10
    if encoding != "FLAC":  # libsndfile needs FLAC's total length, unknown in a stream
        data, rate = soundfile.read(io.BytesIO(stream))
        assert want <= len(data) / rate <= want * 1.10


@pytest.mark.parametrize(("encoding", "rate"), [("OGG_OPUS", 22050), ("OGG_OPUS", 16000),
                                                ("MP3", 44100), ("FLAC", 8000)])  # fmt: skip
async def test_sample_rates_and_bit_rates_are_honoured(encoding: str, rate: int) -> None:
    text = "Sample rates and bit rates, as they were asked."
    for bitrate in (32000, 96000):
        with trio.fail_after(TIMEOUT):
            async with open_server(tone()) as server, client(server) as ws:
                await send(ws, {"create": {"voice_id": "Ashley", "audio_config": {
                    "audio_encoding": encoding, "sample_rate_hertz": rate, "bit_rate": bitrate,
                }}, "context_id": "r"})  # fmt: skip
                await recv(ws)
                await send(ws, {"send_text": {"text": text}, "context_id": "r"})
                await send(ws, {"close_context": {}, "context_id": "r"})
                stream = chunks_of(await until(ws, "r", "contextClosed"))
        with av.open(io.BytesIO(stream)) as container:
            ctx = container.streams.audio[0].codec_context
            # Opus always decodes at 48 kHz; its header keeps the rate that was asked for.
            assert ctx.sample_rate == (48000 if encoding == "OGG_OPUS" else rate)
        seconds = decoded_seconds(stream)
        want = len(tone_pcm(text, 8000)) / 2 / 8000
        assert want <= seconds <= want * 1.10
        kbps = len(stream) * 8 / seconds / 1000
        if encoding == "MP3":
            assert kbps == pytest.approx(bitrate / 1000, rel=0.1)
        elif encoding == "OGG_OPUS":
            assert kbps < (bitrate / 1000) * 1.3


async def test_bad_compressed_configs_are_status_errors() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone()) as server, client(server) as ws:
            await send(ws, create("m", encoding="MP3", rate=23000))
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3 and "not an MP3 rate" in status["message"]
            await send(ws, {"create": {"voiceId": "Ashley", "audioConfig": {
                "audioEncoding": "OGG_OPUS", "bitRate": 1000}}, "contextId": "o"})  # fmt: skip
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3 and "bitRate 1000" in status["message"]


async def test_http_voice_stream_snake_case_body_in_every_encoding() -> None:
    text = "Over HTTP, in snake case."
    async with (
        open_server(tone()) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        for encoding in ("OGG_OPUS", "MP3", "FLAC"):
            body = {"text": text, "voice_id": "Ashley", "model_id": "inworld-tts-1",
                    "audio_config": {"audio_encoding": encoding, "sample_rate_hertz": 24000,
                                     "bit_rate": 64000},
                    "timestamp_type": "CHARACTER", "unknown": {"ignored": 1}}  # fmt: skip
            response = await http.post("/tts/v1/voice:stream", json=body)
            assert response.status_code == 200
            lines = [json.loads(x) for x in response.text.splitlines()]
            stream = b"".join(base64.b64decode(x["result"].get("audioContent", ""))
                              for x in lines)  # fmt: skip
            want = len(tone_pcm(text, 24000)) / 2 / 24000
            assert want <= decoded_seconds(stream, CODEC[encoding]) <= want * 1.1
            chars = [c for x in lines for c in x["result"].get("timestampInfo", {})
                     .get("characterAlignment", {}).get("characters", [])]  # fmt: skip
            assert "".join(chars) == text
            one = await http.post("/tts/v1/voice", json=body)
            audio = base64.b64decode(one.json()["audioContent"])
            assert want <= decoded_seconds(audio, CODEC[encoding]) <= want * 1.1
        bad = await http.post("/tts/v1/voice:stream", json={"text": "x", "voice_id": 7})
        assert bad.status_code == 400 and "voice_id" in bad.json()["message"]


async def test_character_timestamps_and_async_transport() -> None:
    text = "Two words"
    words = tone_speech(text, 16000).words
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(chunk_ms=50)) as server, client(server) as ws:
            await send(ws, create("ch", timestamp_type="CHARACTER"))
            await recv(ws)
            await send(ws, {"send_text": {"text": text, "flush_context": {}}, "contextId": "ch"})
            results = await until(ws, "ch", "flushCompleted")
            align = [r["audioChunk"]["timestampInfo"]["characterAlignment"] for r in results
                     if "audioChunk" in r]  # fmt: skip
            chars = [c for a in align for c in a["characters"]]
            assert "".join(chars) == text
            starts = [s for a in align for s in a["characterStartTimeSeconds"]]
            assert starts == sorted(starts) and starts[0] == 0.0
            ends = [e for a in align for e in a["characterEndTimeSeconds"]]
            assert ends[-1] == pytest.approx(words[-1][2], abs=1e-4)

            await send(ws, create("as", timestampType="WORD",
                                  timestampTransportStrategy="ASYNC"))  # fmt: skip
            await recv(ws)
            await send(ws, {"send_text": {"text": text, "flush_context": {}}, "contextId": "as"})
            results = await until(ws, "as", "flushCompleted")
            chunks = [r["audioChunk"] for r in results if "audioChunk" in r]
            # The audio comes first, without timestamps; then one message of timestamps only.
            assert all("timestampInfo" not in c and c["audioContent"] for c in chunks[:-1])
            assert "audioContent" not in chunks[-1]
            assert chunks[-1]["timestampInfo"]["wordAlignment"]["words"] == ["Two", "words"]
            assert "flushCompleted" in results[-1]


async def test_update_config_changes_voice_but_not_model_or_started_audio() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone()) as server, client(server) as ws:
            await send(ws, create("u", encoding="PCM"))
            await recv(ws)
            # Before any audio the audio config may still change (snake_case here).
            await send(ws, {"update_config": {"audio_config": {"sample_rate_hertz": 8000}},
                            "context_id": "u"})  # fmt: skip
            assert "contextUpdated" in (await recv(ws))["result"]
            await send(ws, {"send_text": {"text": "abc", "flush_context": {}}, "contextId": "u"})
            pcm = chunks_of(await until(ws, "u", "flushCompleted"))
            assert pcm == tone_pcm("abc", 8000)
            await send(ws, {"updateConfig": {"voiceId": "Dennis", "speakingRate": 1.2},
                            "contextId": "u"})  # fmt: skip
            assert "contextUpdated" in (await recv(ws))["result"]
            await send(ws, {"update_config": {"model_id": "other-model"}, "context_id": "u"})
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3
            assert status["message"].startswith("modelId cannot be changed by update_config")
            await send(ws, {"updateConfig": {"audioConfig": {"audioEncoding": "MP3"}},
                            "contextId": "u"})  # fmt: skip
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3 and "after the context's audio started" in status["message"]
            await send(ws, {"update_config": {"voice_id": "Nobody"}, "context_id": "u"})
            assert (await recv(ws))["result"]["status"]["message"] == "Unknown voice: Nobody"


async def test_usage_text_limit_and_auto_mode_in_snake_case() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_server(tone(max_text_chars=40)) as server, client(server) as ws:
            await send(ws, {"create": {"voice_id": "Ashley", "auto_mode": True,
                                       "buffer_char_threshold": 10,
                                       "audio_config": {"audio_encoding": "OGG_OPUS"}},
                            "context_id": "a"})  # fmt: skip
            await recv(ws)
            await send(ws, {"send_text": {"text": "x" * 41}, "context_id": "a"})
            status = (await recv(ws))["result"]["status"]
            assert status["code"] == 3 and "40 characters" in status["message"]
            await send(ws, {"send_text": {"text": "One two. Three"}, "context_id": "a"})
            results = await until(ws, "a", "flushCompleted")  # the threshold spoke "One two. "
            usage = [r["audioChunk"]["usage"] for r in results
                     if "usage" in r.get("audioChunk", {})]  # fmt: skip
            assert usage == [{"processedCharactersCount": 9, "modelId": "inworld-tts-1"}]


async def test_pool_and_http_client_hand_out_compressed_bytes_in_order() -> None:
    async with open_server(tone()) as server:
        provider = trio_tts.InworldProvider(url=server.ws_url)
        opts = trio_tts.VoiceOptions(encoding="OGG_OPUS", sample_rate=24000,
                                     timestamp_type="WORD")  # fmt: skip
        async with trio_tts.open_pool(provider, defaults=opts) as pool:
            ctx = await pool.open_context()
            async with ctx:
                for text in TEXTS:
                    await ctx.send_text(text, flush=True)
                await ctx.finish()
                events = [ev async for ev in ctx]
        stream = b"".join(ev.data for ev in events if isinstance(ev, trio_tts.Audio))
        want = expected_seconds(TEXTS)
        assert want <= decoded_seconds(stream, "opus") <= want * 1.1
        words = [w for ev in events if isinstance(ev, trio_tts.Audio) for w in ev.words]
        assert [w.start for w in words] == sorted(w.start for w in words)  # monotonic
        async with trio_tts.http.HTTPClient(base_url=server.base_url) as http:
            for encoding, codec in (("MP3", "mp3"), ("FLAC", "flac"), ("LINEAR16", "pcm")):
                result = await http.synthesize(TEXTS[0], encoding=encoding, sample_rate=24000)
                want = expected_seconds(TEXTS[:1])
                if encoding == "LINEAR16":
                    assert result.audio == tone_pcm(TEXTS[0], 24000)  # header stripped
                else:
                    assert want <= decoded_seconds(result.audio, codec) <= want * 1.1
