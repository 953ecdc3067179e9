"""The local server's Rime side over real TCP: ``/ws3`` back to back with the client codec,
``/v1/rime-tts`` through :class:`trio_tts.http.RimeHTTPClient`, and the official
``livekit-plugins-rime`` (unmodified) streaming through it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

import trio_tts
from trio_tts._core import transport as _transport
from trio_tts._core.events import Audio, ContextClosed, FlushCompleted
from trio_tts.http import RimeHTTPClient
from trio_tts.providers.rime.codec import RimeCodec
from trio_tts.providers.rime.options import RimeOptions
from trio_tts.providers.rime.provider import RimeProvider
from trio_tts.server import LocalServer, ServerConfig, open_server, tone_pcm

RATE = 24000


async def _receive_until_closed(transport: _transport.Transport, codec: RimeCodec) -> list[object]:
    events: list[object] = []
    while not any(isinstance(e, ContextClosed) for e in events):
        with trio.fail_after(5):
            events += codec.receive(await transport.receive())
    return events


async def test_codec_back_to_back_with_the_server_segmentation_and_timestamps(
    server: LocalServer,
) -> None:
    for segment in ("bySentence", "immediate", "never"):
        opts = RimeOptions(segment=segment)  # type: ignore[arg-type]
        url = RimeProvider(url=server.rime_url).url(opts)
        transport = await _transport.connect(url, [], handshake_timeout=5, close_timeout=2)
        codec = RimeCodec()
        try:
            codec.create("c1", opts)
            for piece in ("Hello there. How ", "are you? Fine."):
                for frame in codec.send_text("c1", piece):
                    await transport.send(frame)
            for frame in codec.close("c1"):
                await transport.send(frame)
            events = await _receive_until_closed(transport, codec)
        finally:
            await transport.aclose()
        audio = b"".join(e.data for e in events if isinstance(e, Audio))
        pieces = {
            "bySentence": ["Hello there. ", "How are you? Fine."],
            "immediate": ["Hello there. How ", "are you? Fine."],
            "never": ["Hello there. How are you? Fine."],
        }[segment]
        assert audio == b"".join(tone_pcm(p, RATE) for p in pieces), segment
        words = [w for e in events if isinstance(e, Audio) for w in e.words]
        assert [w.word for w in words] == ["Hello", "there.", "How", "are", "you?", "Fine."]
        assert [w.start for w in words] == sorted(w.start for w in words)
        assert words[2].start == pytest.approx(len("Hello there. ") * 0.06)
        assert not any(isinstance(e, FlushCompleted) for e in events)
    assert server.statistics().violations == ()


async def test_upgrade_is_refused_for_a_bad_query_or_key() -> None:
    async with open_server(ServerConfig(synthesizer="tone", api_key="k")) as srv:
        for url, headers, status in [
            (f"{srv.rime_url}?speaker=astra&audioFormat=mp3", [("Authorization", "Bearer k")], 400),
            (f"{srv.rime_url}?speaker=astra&segment=word", [("Authorization", "Bearer k")], 400),
            (f"{srv.rime_url}?speaker=astra", [("Authorization", "Basic k")], 401),
        ]:
            with pytest.raises(trio_tts.HandshakeRejected) as info:
                await _transport.connect(url, headers, handshake_timeout=5, close_timeout=2)
            assert info.value.status == status


async def test_errors_keep_the_connection_open_and_eos_closes_it(server: LocalServer) -> None:
    url = RimeProvider(url=server.rime_url).url(RimeOptions())
    transport = await _transport.connect(url, [], handshake_timeout=5, close_timeout=2)
    await transport.send('{"operation": "dance"}')
    assert json.loads(await transport.receive())["type"] == "error"
    await transport.send(json.dumps({"text": "x" * 501, "contextId": "c"}))
    assert json.loads(await transport.receive())["type"] == "error"
    await transport.send(RimeCodec().goodbye()[0])
    assert json.loads(await transport.receive())["type"] == "done"
    with pytest.raises(trio_tts.ConnectionLost) as info:
        await transport.receive()
    assert info.value.code == 1000
    await transport.aclose()


async def test_http_one_shot_synthesis(server: LocalServer) -> None:
    async with RimeHTTPClient(url=server.rime_http_url) as client:
        speech = await client.synthesize("Hello from the HTTP path.", sample_rate=16000)
        assert speech.audio == tone_pcm("Hello from the HTTP path.", 16000)
        assert speech.sample_rate == 16000
        with pytest.raises(trio_tts.InvalidOptions):
            await client.synthesize("   ")
    async with open_server(ServerConfig(synthesizer="tone", api_key="k")) as srv:
        async with RimeHTTPClient("wrong", url=srv.rime_http_url) as client:
            with pytest.raises(trio_tts.RequestRejected) as info:
                await client.synthesize("Hi.")
            assert info.value.status == 401 and info.value.is_auth_error
        async with RimeHTTPClient("k", url=srv.rime_http_url) as client:
            with pytest.raises(trio_tts.ContextFailed, match="exceeds 500"):
                await client.synthesize("x" * 501)


# ---------------------------------------------------------------- the official LiveKit plugin


@contextmanager
def server_thread(config: ServerConfig) -> Iterator[LocalServer]:
    """A local server in its own thread and trio run (the plugin runs on asyncio)."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        async with open_server(config) as srv:
            box["server"], box["token"], box["stop"] = (
                srv,
                trio.lowlevel.current_trio_token(),
                (stop := trio.Event()),
            )
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        srv = box["server"]
        assert isinstance(srv, LocalServer)
        yield srv
    finally:
        token = box["token"]
        stop = box["stop"]
        assert isinstance(token, trio.lowlevel.TrioToken) and isinstance(stop, trio.Event)
        token.run_sync_soon(stop.set)
        thread.join(10)


TEXT = "Hello there, my friend. How are you doing today? I am fine."
SENTENCES = ["Hello there, my friend.", "How are you doing today?", "I am fine."]


def _run(coro_fn: object) -> object:
    async def bounded() -> object:
        async with asyncio.timeout(30):
            return await coro_fn()  # type: ignore[operator]

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(bounded())


def test_official_livekit_rime_plugin_streams_through_the_local_server() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    rime = pytest.importorskip("livekit.plugins.rime")

    with server_thread(ServerConfig(synthesizer="tone", api_key="rime-key")) as srv:
        base = srv.rime_url.removesuffix("/ws3")

        async def main() -> tuple[bytes, list[str], bytes]:
            async with aiohttp.ClientSession() as session:
                tts = rime.TTS(base_url=base, use_websocket=True, api_key="rime-key",
                               model="arcana", speaker="astra", sample_rate=RATE,
                               http_session=session)  # fmt: skip
                streamed: list[bytes] = []
                words: list[str] = []
                for _ in range(2):  # the second stream reuses the pooled connection
                    stream = tts.stream()
                    stream.push_text(TEXT)
                    stream.end_input()
                    pcm = b""
                    async for ev in stream:
                        pcm += bytes(ev.frame.data)
                    streamed.append(pcm)
                    await stream.aclose()
                await tts.aclose()
                http = rime.TTS(
                    base_url=srv.rime_http_url, api_key="rime-key", model="arcana",
                    speaker="astra", sample_rate=RATE, http_session=session,
                )  # fmt: skip
                chunked = b""
                async for ev in http.synthesize("One shot."):
                    chunked += bytes(ev.frame.data)
                await http.aclose()
                assert streamed[0] == streamed[1]
                return streamed[0], words, chunked

        result = _run(main)
        assert isinstance(result, tuple)
        streamed, _, chunked = result
        want = b"".join(tone_pcm(s + " ", RATE) for s in SENTENCES)
        assert streamed[: len(want)] == want
        assert len(streamed) - len(want) <= RATE * 2 // 100  # at most a 10 ms end marker
        one_shot = tone_pcm("One shot.", RATE)
        assert chunked[: len(one_shot)] == one_shot
        assert srv.statistics().violations == ()


async def test_cli_speak_with_provider_rime(tmp_path: Path) -> None:
    import wave

    from trio_tts.cli.main import speak

    text = "First sentence here. Second one! And a third?"
    sentences = ["First sentence here.", "Second one!", "And a third?"]
    for use_http in (False, True):
        out = tmp_path / f"rime-{use_http}.wav"
        result = await speak(text, out, provider="rime", synthesizer="tone", use_http=use_http,
                             options=RimeOptions(speaker="celeste"), jobs=2)  # fmt: skip
        with wave.open(str(out)) as wav:
            pcm = wav.readframes(wav.getnframes())
            assert wav.getframerate() == RATE
        assert pcm == b"".join(tone_pcm(s, RATE) for s in sentences)
        assert result.sentences == 3
