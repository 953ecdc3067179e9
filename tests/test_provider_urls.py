"""``InworldProvider(url=...)``, ``RimeProvider(url=...)``, ``ElevenLabsProvider(url=...)`` and
``CartesiaProvider(url=...)`` take what ``trio-tts --url`` takes: the full WebSocket endpoint,
or the service's root as an http(s) or ws(s) URL (ElevenLabs: also its API base, ``.../v1``)."""

from __future__ import annotations

import pytest

import trio_tts
import trio_tts.http
from trio_tts.cli.common import cartesia_urls, elevenlabs_urls, rime_urls, service_urls
from trio_tts.providers.urls import websocket_url
from trio_tts.server import LocalServer, tone_pcm

BIDI = "/tts/v1/voice:streamBidirectional"

CLI_FORMS = [
    "http://127.0.0.1:8765",
    "http://127.0.0.1:8765/",
    "https://api.inworld.ai",
    "https://api.inworld.ai/",
    "ws://127.0.0.1:8765",
    "ws://127.0.0.1:8765/",
    "wss://api.inworld.ai/",
    f"ws://127.0.0.1:8765{BIDI}",
    "wss://users-ws.rime.ai/ws3",
    "wss://api.cartesia.ai/tts/websocket",
    "https://api.cartesia.ai",
]


@pytest.mark.parametrize("url", CLI_FORMS)
def test_the_providers_map_a_url_as_the_command_line_does(url: str) -> None:
    inworld = trio_tts.InworldProvider(url=url).url(trio_tts.VoiceOptions())
    assert inworld == service_urls(url)[0]
    rime = trio_tts.RimeProvider(url=url).url(trio_tts.RimeOptions())
    assert rime.split("?", 1)[0] == rime_urls(url)[0]
    cartesia = trio_tts.CartesiaProvider(url=url).url(trio_tts.CartesiaOptions())
    assert cartesia.split("?", 1)[0] == cartesia_urls(url)[0]


@pytest.mark.parametrize(
    ("url", "ws", "http"),
    [
        ("http://h:1", "ws://h:1/tts/websocket", "http://h:1"),
        ("https://api.cartesia.ai/", "wss://api.cartesia.ai/tts/websocket", "https://api.cartesia.ai"),
        ("wss://proxy.example/cartesia/ws", "wss://proxy.example/cartesia/ws", "https://proxy.example"),
    ],
)  # fmt: skip
def test_cartesia_urls(url: str, ws: str, http: str) -> None:
    provider = trio_tts.CartesiaProvider(url=url)
    assert provider.url(trio_tts.CartesiaOptions()) == f"{ws}?cartesia_version=2026-08-14"
    assert cartesia_urls(url) == (ws, http)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^url: must not carry a query"):
        trio_tts.CartesiaProvider(url=url + "?cartesia_version=2024-06-10")


EL_FORMS = [
    "http://127.0.0.1:8765",
    "http://127.0.0.1:8765/",
    "http://127.0.0.1:8765/v1",
    "https://api.elevenlabs.io/v1/",
    "ws://127.0.0.1:8765",
    "wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/multi-stream-input",
    "https://proxy.example/elevenlabs/v1",
]


@pytest.mark.parametrize("url", EL_FORMS)
def test_elevenlabs_maps_a_url_as_the_command_line_does(url: str) -> None:
    opts = trio_tts.ElevenLabsOptions(voice_id="abc")
    got = trio_tts.ElevenLabsProvider(url=url).url(opts).split("?", 1)[0]
    ws, http = elevenlabs_urls(url)
    assert got == ws.replace("{voice_id}", "abc")
    assert got.endswith("/v1/text-to-speech/abc/multi-stream-input")
    assert http.endswith("/v1") and http.split("://")[0] in ("http", "https")
    assert trio_tts.http.ElevenLabsHTTPClient(base_url=http).base_url == http


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://h:1", f"ws://h:1{BIDI}"),
        ("https://h", f"wss://h{BIDI}"),
        ("HTTPS://h/", f"wss://h{BIDI}"),
        ("wss://h/", f"wss://h{BIDI}"),
        ("https://proxy.example/inworld/bidi", "wss://proxy.example/inworld/bidi"),
        ("ws://h:1/x?region=eu", "ws://h:1/x?region=eu"),
        ("ws://h:1?region=eu", f"ws://h:1{BIDI}?region=eu"),
    ],
)
def test_inworld_urls(url: str, want: str) -> None:
    assert websocket_url(url, BIDI) == want
    assert trio_tts.InworldProvider(url=url).url(trio_tts.VoiceOptions()) == want


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://h/x", r"^url: must start with ws://, wss://, http:// or https://$"),
        ("127.0.0.1:8765", r"^url: must start with ws://, wss://, http:// or https://$"),
        ("ws:///path", r"^url: has no host$"),
        ("http://", r"^url: has no host$"),
    ],
)
def test_invalid_urls(url: str, match: str) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        trio_tts.InworldProvider(url=url)
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        trio_tts.RimeProvider(url=url)
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        trio_tts.CartesiaProvider(url=url)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^url: expected a str, got bytes$"):
        trio_tts.InworldProvider(url=b"ws://h")  # type: ignore[arg-type]


def test_rime_refuses_a_query_and_keeps_a_named_path() -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=r"^url: must not carry a query"):
        trio_tts.RimeProvider(url="http://h:1/?speaker=astra")
    url = trio_tts.RimeProvider(url="https://h/custom").url(trio_tts.RimeOptions())
    assert url.startswith("wss://h/custom?speaker=")


async def read_aloud(provider: trio_tts.Provider[trio_tts.Options], text: str) -> bytes:
    async with trio_tts.open_pool(provider) as pool:
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text(text)
            await ctx.finish()
            return b"".join([ev.data async for ev in ctx if isinstance(ev, trio_tts.Audio)])


async def test_the_local_servers_http_base_url_speaks_every_protocol(server: LocalServer) -> None:
    assert server.base_url.startswith("http://")
    text = "Hello there."
    inworld = trio_tts.InworldProvider(url=server.base_url)
    assert await read_aloud(inworld, text) == tone_pcm(text, 24000)  # type: ignore[arg-type]
    rime = trio_tts.RimeProvider(url=server.base_url)
    assert await read_aloud(rime, text) == tone_pcm(text, 24000)  # type: ignore[arg-type]
    for base in (server.base_url, f"{server.base_url}/v1"):  # the root; LiveKit's base_url
        elevenlabs = trio_tts.ElevenLabsProvider(url=base)
        spoken = await read_aloud(elevenlabs, text)  # type: ignore[arg-type]
        assert spoken == tone_pcm(" " + text, 24000)
    cartesia = trio_tts.CartesiaProvider(url=server.base_url)
    assert await read_aloud(cartesia, text) == tone_pcm(text, 24000)  # type: ignore[arg-type]
