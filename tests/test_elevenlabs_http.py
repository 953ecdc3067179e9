"""ElevenLabs' voice list (``trio_tts.http.ElevenLabsHTTPClient``) against the local server, and
the pool-wide context cap (``max_contexts``) the ElevenLabs provider brings."""

from __future__ import annotations

import socket

import pytest

import trio_tts
import trio_tts.http
from trio_tts.server import ServerConfig, open_server, tone_pcm
from trio_tts.server.elevenlabs.config import VOICE_IDS


async def test_voices_are_listed_typed_and_raw() -> None:
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.http.ElevenLabsHTTPClient(base_url=server.base_url) as client,
    ):
        voices = await client.voices()
        rows = await client.voice_rows()
    assert [(v.voice_id, v.name) for v in voices] == [
        (vid, name) for vid, (name, _) in VOICE_IDS.items()
    ]
    bella = voices[0]
    assert (bella.voice_id, bella.category) == ("hpp4J3VqNfWAUOO0d1Us", "premade")
    assert dict(bella.labels)["local_voice"] == "Ashley"
    assert bella.preview_url is None and bella.description
    assert [r["voice_id"] for r in rows] == list(VOICE_IDS)


async def test_a_wrong_key_is_a_typed_401_that_never_shows_the_key() -> None:
    key, wrong = "xi-server-KEY-111222", "xi-wrong-KEY-333444"
    async with open_server(ServerConfig(synthesizer="tone", api_key=key)) as server:
        async with trio_tts.http.ElevenLabsHTTPClient(wrong, base_url=server.base_url) as client:
            with pytest.raises(trio_tts.RequestRejected) as caught:
                await client.voices()
            assert wrong not in repr(client)
        assert (caught.value.status, caught.value.is_auth_error) == (401, True)
        assert str(caught.value) == "GET /v1/voices rejected with HTTP 401: Invalid API key"
        assert wrong not in str(caught.value) and key not in str(caught.value)
        async with trio_tts.http.ElevenLabsHTTPClient(key, base_url=server.base_url) as client:
            assert len(await client.voices()) == len(VOICE_IDS)


async def test_from_env_reads_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "xi-env-KEY-555666"
    async with open_server(ServerConfig(synthesizer="tone", api_key=key)) as server:
        for variable in ("ELEVENLABS_API_KEY", "ELEVEN_API_KEY"):
            monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
            monkeypatch.delenv("ELEVEN_API_KEY", raising=False)
            monkeypatch.setenv(variable, key)
            client = trio_tts.http.ElevenLabsHTTPClient.from_env(base_url=server.base_url)
            async with client:
                assert len(await client.voices()) == len(VOICE_IDS)


async def test_a_refused_connection_is_connection_lost() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with trio_tts.http.ElevenLabsHTTPClient(base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(trio_tts.ConnectionLost, match=r"^GET /v1/voices failed: .*refused"):
            await client.voices()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "ws://h"}, r"^base_url: must be an http:// or https:// URL with a host$"),
        ({"timeout": 0}, r"^timeout: 0 must be a positive number$"),
    ],
)
def test_bad_client_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        trio_tts.http.ElevenLabsHTTPClient(**kwargs)  # type: ignore[arg-type]


# -------------------------------------------------------------------- the pool-wide cap


async def test_the_pool_takes_its_context_cap_from_the_provider_or_the_settings() -> None:
    el = trio_tts.ElevenLabsProvider(url="ws://127.0.0.1:9")
    async with trio_tts.open_pool(el) as pool:  # no I/O until a context is asked for
        assert pool.max_contexts == pool.statistics().max_contexts == 15
        assert "contexts=0/15" in repr(pool)
    async with trio_tts.open_pool(el, max_contexts=4) as pool:
        assert pool.max_contexts == 4
    async with trio_tts.open_pool(el, max_contexts=None, max_connections=2) as pool:
        assert pool.max_contexts == 10  # no cap beyond connections × contexts
    async with trio_tts.open_pool(el, max_contexts=500, max_connections=2) as pool:
        assert pool.max_contexts == 10
    small = trio_tts.ElevenLabsProvider(url="ws://127.0.0.1:9", max_contexts=2)
    async with trio_tts.open_pool(small) as pool:
        assert pool.max_contexts == 2
    async with trio_tts.open_pool(trio_tts.InworldProvider(url="ws://127.0.0.1:9")) as pool:
        assert pool.max_contexts == 100  # Inworld: 20 connections × 5, as before
    with pytest.raises(trio_tts.InvalidOptions, match=r"^max_contexts: 0 must be a positive int"):
        trio_tts.PoolSettings(max_contexts=0)


# ------------------------------------------------------------------------ one-shot synthesis


@pytest.mark.parametrize(
    "output_format", ["pcm_24000", "pcm_16000", "ulaw_8000", "mp3_44100_128", "opus_48000_64"]
)
async def test_synthesis_streams_the_servers_audio(output_format: str) -> None:
    text = "One shot over HTTP."
    opts = trio_tts.ElevenLabsOptions(output_format=output_format)
    async with (
        open_server(ServerConfig(synthesizer="tone")) as server,
        trio_tts.http.ElevenLabsHTTPClient(base_url=server.elevenlabs_url, defaults=opts) as client,
    ):
        async with client.stream(text) as chunks:
            pieces = [audio async for audio in chunks]
        speech = await client.synthesize(text)
    audio = b"".join(a.data for a in pieces)
    assert len(pieces) > 1  # streamed as it came, not one piece
    assert (speech.sample_rate, speech.encoding) == (opts.sample_rate, opts.encoding)
    pcm = tone_pcm(text, opts.sample_rate)
    if opts.encoding is trio_tts.AudioEncoding.PCM:
        assert audio == speech.audio == pcm and all(len(a.data) % 2 == 0 for a in pieces)
        assert speech.duration == pytest.approx(len(pcm) / 2 / opts.sample_rate)
    elif opts.encoding is trio_tts.AudioEncoding.MULAW:
        assert audio == speech.audio and len(audio) == len(pcm) // 2
    elif opts.encoding is trio_tts.AudioEncoding.MP3:  # ID3 tag or an MPEG frame sync
        assert audio[:3] == b"ID3" or (audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0)
    else:  # Ogg Opus (each stream its own serial number)
        assert audio[:4] == speech.audio[:4] == b"OggS"


async def test_synthesis_options_reach_the_server() -> None:
    """The voice settings travel in the body: eSpeak speaks slower at ``speed`` 0.8."""
    text = "A sentence spoken at two speeds."
    async with (
        open_server(ServerConfig(synthesizer="espeak")) as server,
        trio_tts.http.ElevenLabsHTTPClient(base_url=server.elevenlabs_url) as client,
    ):
        slow = await client.synthesize(text, voice_settings={"speed": 0.8})
        normal = await client.synthesize(text)
    assert slow.duration > normal.duration * 1.1
    assert trio_tts.providers.elevenlabs.http.request_body(
        "Hi.", trio_tts.ElevenLabsOptions(language="de", voice_settings={"stability": 0.5})
    ) == {
        "text": "Hi.", "model_id": "eleven_turbo_v2_5", "voice_settings": {"stability": 0.5},
        "apply_text_normalization": "auto", "language_code": "de",
    }  # fmt: skip


async def test_synthesis_errors_are_typed() -> None:
    key = "xi-synth-KEY-777888"
    async with open_server(ServerConfig(synthesizer="tone", api_key=key)) as server:
        async with trio_tts.http.ElevenLabsHTTPClient(key, base_url=server.elevenlabs_url) as ok:
            with pytest.raises(trio_tts.RequestRejected) as unknown:
                await ok.synthesize("Hi.", voice_id="NoSuchVoice")
            assert unknown.value.status == 404 and "NoSuchVoice" in str(unknown.value)
            with pytest.raises(trio_tts.InvalidOptions, match=r"^text: must be a non-empty"):
                await ok.synthesize("   ")
            with pytest.raises(trio_tts.InvalidOptions, match=r"^model: 'eleven_v3' speaks"):
                await ok.synthesize("Hi.", model="eleven_v3")
        async with trio_tts.http.ElevenLabsHTTPClient(base_url=server.elevenlabs_url) as nokey:
            with pytest.raises(trio_tts.RequestRejected) as denied:
                await nokey.synthesize("Hi.")
            assert denied.value.is_auth_error and key not in str(denied.value)
