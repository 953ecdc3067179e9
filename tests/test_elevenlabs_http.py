"""ElevenLabs' voice list (``trio_tts.http.ElevenLabsHTTPClient``) against the local server, and
the pool-wide context cap (``max_contexts``) the ElevenLabs provider brings."""

from __future__ import annotations

import socket

import pytest

import trio_tts
import trio_tts.http
from trio_tts.server import ServerConfig, open_server
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
