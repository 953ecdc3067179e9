"""Clients written the way Inworld's published examples are, against ``trio-tts serve``, and
``trio-tts speak -o`` in every format.

Inworld's own examples (inworld-ai/inworld-api-examples, ``tts/python/``) use plain
``websockets``, protobuf field names in snake_case (``context_id``, ``voice_id``,
``model_id``, ``audio_config``, ``audio_encoding``, ``sample_rate_hertz``, ``bit_rate``), put
``"flush_context": {}`` inside ``send_text`` and ask for ``OGG_OPUS`` or ``MP3``. They write
every chunk's ``audioContent`` to one file.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import ServeProcess, read_wav, run

from trio_tts.cli import split_sentences
from trio_tts.server import tone_pcm

av = pytest.importorskip("av")
websockets_sync = pytest.importorskip("websockets.sync.client")

TEXT = ["Hello from an example written for the real service.", "It should play just the same."]


def decoded(data_or_path: bytes | Path) -> tuple[str, float]:
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else str(data_or_path)
    with av.open(source) as container:
        name = container.streams.audio[0].codec_context.name
        samples = rate = 0
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return name, samples / rate


def seconds(texts: list[str], rate: int = 24000) -> float:
    return sum(len(tone_pcm(t, rate)) / 2 / rate for t in texts)


def example_client(ws_url: str, encoding: str, out: Path) -> list[dict[str, Any]]:
    """What ``example_websocket.py`` does: create, send text with flush, close, write chunks."""
    results = []
    with websockets_sync.connect(ws_url) as ws, out.open("wb") as f:
        ws.send(json.dumps({
            "context_id": "ctx-1",
            "create": {
                "voice_id": "Dennis", "model_id": "inworld-tts-1",
                "audio_config": {"audio_encoding": encoding, "sample_rate_hertz": 24000,
                                 "bit_rate": 64000, "speaking_rate": 1.0},
                "timestamp_type": "WORD", "temperature": 1.1,
            },
        }))  # fmt: skip
        for text in TEXT:
            ws.send(json.dumps({"context_id": "ctx-1",
                                "send_text": {"text": text, "flush_context": {}}}))  # fmt: skip
        ws.send(json.dumps({"context_id": "ctx-1", "close_context": {}}))
        while True:
            result = json.loads(ws.recv(timeout=30))["result"]
            assert result["status"]["code"] == 0, result
            results.append(result)
            chunk = result.get("audioChunk")
            if chunk is not None and chunk.get("audioContent"):
                f.write(base64.b64decode(chunk["audioContent"]))
            if "contextClosed" in result:
                return results


@pytest.mark.parametrize(("encoding", "codec"), [("OGG_OPUS", "opus"), ("MP3", "mp3")])
def test_an_inworld_example_client_gets_a_playable_file(
    tmp_path: Path, encoding: str, codec: str
) -> None:
    server = ServeProcess()
    try:
        ws_url = server.base_url.replace("http://", "ws://") + "/tts/v1/voice:streamBidirectional"
        out = tmp_path / f"example.{codec}"
        results = example_client(ws_url, encoding, out)
    finally:
        server.kill()
    assert "contextCreated" in results[0]
    assert sum("flushCompleted" in r for r in results) == 2
    name, duration = decoded(out)
    want = seconds(TEXT)
    assert name.startswith(codec) and want <= duration <= want * 1.10
    words = [w for r in results for w in r.get("audioChunk", {}).get("timestampInfo", {})
             .get("wordAlignment", {}).get("words", [])]  # fmt: skip
    assert words == " ".join(TEXT).split()
    usage = [r["audioChunk"]["usage"]["processedCharactersCount"] for r in results
             if "usage" in r.get("audioChunk", {})]  # fmt: skip
    assert usage == [len(t) for t in TEXT]


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".ogg", "opus"), (".mp3", "mp3"), (".flac", "flac"), (".wav", "pcm")]
)
def test_speak_picks_the_encoding_from_the_file_name(
    tmp_path: Path, suffix: str, codec: str
) -> None:  # fmt: skip
    out = tmp_path / f"speech{suffix}"
    result = run("speak", " ".join(TEXT), "--synth", "tone", "-q", "--json", "-o", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    want = seconds(TEXT)
    assert summary["duration"] == pytest.approx(want, abs=0.01)
    assert summary["sentences"] == 2 and not list(tmp_path.glob("*.part"))
    name, duration = decoded(out)
    # PCM from the service, encoded once here: no padding, and both sentences at once.
    assert name.startswith(codec) and duration == pytest.approx(want, abs=0.01)
    assert summary["peak_concurrency"] == 2
    if suffix == ".wav":
        assert read_wav(out)[1] == b"".join(tone_pcm(t, 24000) for t in TEXT)


def test_speak_compressed_over_http_and_from_rime(tmp_path: Path) -> None:
    out = tmp_path / "http.mp3"
    result = run("speak", " ".join(TEXT), "--synth", "tone", "-q", "--http", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert decoded(out) == ("mp3float", pytest.approx(seconds(TEXT), abs=0.01))
    # Longer than one voice:stream request (2000 characters): one request per piece.
    long = run("speak", "word " * 500, "--synth", "tone", "-q", "--http", "-o", str(out))
    assert long.returncode == 0, long.stderr
    assert decoded(out)[1] == pytest.approx(seconds(split_sentences("word " * 500)), abs=0.01)
    rime = run("speak", "Hi.", "--provider", "rime", "--synth", "tone", "-o", str(out))
    assert rime.returncode == 0 and decoded(out)[0].startswith("mp3"), rime.stderr
