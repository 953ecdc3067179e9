"""Clients written the way Inworld's published Python examples are (inworld-ai/
inworld-api-examples, ``tts/python/``), run against ``trio-tts serve`` with only the host
changed — not through trio_tts's own client.

Each test follows one example: ``requests`` with ``Authorization: Basic <key>`` and a JSON body
in snake_case (``voice_id``, ``model_id``, ``audio_config.audio_encoding``,
``sample_rate_hertz``; the examples mix in camelCase ``timestampType``) or in the camelCase the
API reference uses, for ``POST /tts/v1/voice`` (``example_tts.py``, ``..._timestamps.py``),
``POST /tts/v1/voice:stream`` read with ``iter_lines`` (``example_tts_stream.py``,
``..._stream_timestamps.py``, ``tts_cli.py --stream``), long text cut into requests of at most
1,600 characters sent two at a time and the MP3 answers concatenated
(``example_tts_long_input_compressed.py``), the asyncio ``websockets`` client on
``/tts/v1/voice:streamBidirectional`` with ``OGG_OPUS`` (``example_websocket.py``,
``example_tts_low_latency_ws.py``) and ``GET /tts/v1/voices``. The voices are the ones the
examples use (``Dennis``, ``Sarah``, ``Hana``, ``Jason``, ``Ashley``, ``Edward``) and then
every system voice Inworld lists. The server runs the tone synthesiser, so every duration is
known exactly; the audio is checked with decoders that are not the server's encoder (the
``wave`` module, libsndfile's Ogg/Opus and MP3 readers, an MP3 frame walker, FFmpeg).
``tests/test_inworld_examples_client.py`` has the synchronous WebSocket client.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_cli import TIMEOUT, ServeProcess

from trio_tts.server import VOICES, tone_pcm

requests = pytest.importorskip("requests")
sf = pytest.importorskip("soundfile")
av = pytest.importorskip("av")
websockets = pytest.importorskip("websockets")

KEY = "ZXhhbXBsZS1rZXk6ZXhhbXBsZS1zZWNyZXQ="  # what the examples read from INWORLD_API_KEY
HEADERS = {"Content-Type": "application/json", "Authorization": f"Basic {KEY}"}
TEXT = "Hello, adventurer! What a beautiful day, isn't it?"
MODELS = ("inworld-tts-2", "inworld-tts-1.5-max", "inworld-tts-1.5-mini", "inworld-tts-1",
          "inworld-tts-1-max")  # fmt: skip


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ServeProcess("--key", KEY)
    try:
        yield server.base_url
    finally:
        server.kill()


def request_body(
    style: str, text: str, voice: str, model: str, encoding: str, rate: int, **extra: Any
) -> dict[str, Any]:
    """A synthesis request as the examples (``snake``) or the API reference (``camel``) write
    it; ``extra`` keys are given in snake_case and spelled to match."""

    def name(snake: str) -> str:
        return snake if style == "snake" else re.sub(r"_(\w)", lambda m: m[1].upper(), snake)

    audio = {name("audio_encoding"): encoding, name("sample_rate_hertz"): rate}
    if "bit_rate" in extra:
        audio[name("bit_rate")] = extra.pop("bit_rate")
    body = {"text": text, name("voice_id"): voice, name("model_id"): model,
            name("audio_config"): audio}  # fmt: skip
    return body | {name(key): value for key, value in extra.items()}


def seconds(text: str, rate: int) -> float:
    return len(tone_pcm(text, rate)) / 2 / rate


# -- audio checks, with decoders other than the server's encoder --------------------------------

_MP3_KBPS = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 Layer III
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 and 2.5
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_frames(data: bytes) -> tuple[int, int]:
    """Walk ``data`` frame by frame as Layer III MPEG audio: every frame must start with a sync
    word exactly where the previous one ended, and the last must end with the data. Returns
    ``(sample rate, samples)``."""
    at = 0
    if data[:3] == b"ID3":  # an ID3v2 tag: 10-byte header, then a 28-bit "syncsafe" size
        at = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    rates, samples = set(), 0
    while at < len(data):
        header = int.from_bytes(data[at : at + 4], "big")
        assert header >> 21 == 0x7FF, f"lost MP3 frame sync at byte {at} of {len(data)}"
        version, layer = (header >> 19) & 3, (header >> 17) & 3
        assert layer == 1 and version != 1, f"not Layer III audio at byte {at}"
        kbps = _MP3_KBPS[3 if version == 3 else 2][(header >> 12) & 15]
        rate = _MP3_RATES[version][(header >> 10) & 3]
        per_frame = 1152 if version == 3 else 576
        at += per_frame // 8 * 1000 * kbps // rate + ((header >> 9) & 1)
        rates.add(rate)
        samples += per_frame
    assert at == len(data) and len(rates) == 1, (at, len(data), rates)
    return rates.pop(), samples


def check_audio(audio: bytes, encoding: str, rate: int, want: float) -> None:
    """``audio`` is a valid file of ``encoding`` at ``rate`` lasting ``want`` seconds (compressed:
    up to 10% more, the encoder's padding and flush silence)."""
    if encoding == "LINEAR16":
        pcm, sr = sf.read(io.BytesIO(audio), dtype="int16")
        assert sr == rate and len(pcm) == round(want * rate)
        return
    if encoding == "MP3":
        sr, samples = mp3_frames(audio)
        assert sr == rate and want <= samples / sr <= want * 1.1
        with av.open(io.BytesIO(audio)) as container:  # FFmpeg decodes every frame
            decoded = sum(f.samples for f in container.decode(audio=0))
        assert want <= decoded / rate <= want * 1.1
    info = sf.info(io.BytesIO(audio))
    kind = {"MP3": ("MP3", "MPEG_LAYER_III"), "OGG_OPUS": ("OGG", "OPUS")}[encoding]
    assert (info.format, info.subtype) == kind
    pcm, sr = sf.read(io.BytesIO(audio), dtype="int16")  # libsndfile decodes it all
    assert want <= len(pcm) / sr <= want * 1.1 + 0.05, (len(pcm) / sr, want)


# -- POST /tts/v1/voice -----------------------------------------------------------------------


@pytest.mark.parametrize("style", ["snake", "camel"])
@pytest.mark.parametrize("encoding", ["LINEAR16", "MP3", "OGG_OPUS"])
def test_voice_like_example_tts(
    base_url: str, tmp_path: Path, style: str, encoding: str
) -> None:  # fmt: skip
    body = request_body(style, TEXT, "Dennis", "inworld-tts-1.5-max", encoding, 48000,
                        timestamp_type="WORD")  # fmt: skip
    response = requests.post(f"{base_url}/tts/v1/voice", headers=HEADERS, json=body,
                             timeout=TIMEOUT)  # fmt: skip
    response.raise_for_status()
    result = response.json()
    audio = base64.b64decode(result["audioContent"])
    check_audio(audio, encoding, 48000, seconds(TEXT, 48000))
    assert result["usage"] == {"processedCharactersCount": len(TEXT),
                               "modelId": "inworld-tts-1.5-max"}  # fmt: skip
    alignment = result["timestampInfo"]["wordAlignment"]
    assert alignment["words"] == TEXT.split()
    assert alignment["wordEndTimeSeconds"][-1] == pytest.approx(seconds(TEXT, 48000), abs=0.01)
    if encoding == "LINEAR16":  # save_audio_to_file: drop the 44-byte header, write a WAV
        raw = audio[44:] if audio[:4] == b"RIFF" else audio
        with wave.open(str(tmp_path / "synthesis_output.wav"), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(48000)
            wf.writeframes(raw)
        with wave.open(str(tmp_path / "synthesis_output.wav"), "rb") as wf:
            assert wf.readframes(wf.getnframes()) == tone_pcm(TEXT, 48000)


def test_every_listed_voice_and_every_model_speaks(base_url: str) -> None:
    with requests.Session() as http:
        http.headers.update(HEADERS)
        listed = http.get(f"{base_url}/tts/v1/voices", timeout=TIMEOUT).json()["voices"]
        names = [v["voiceId"] for v in listed]
        assert names == list(VOICES) and len(names) == 113
        assert {"Sarah", "Clive", "Hana", "Jason", "Dennis", "Ashley", "Edward"} <= set(names)
        for n, voice in enumerate(names):
            model = MODELS[n % len(MODELS)]
            body = request_body("snake" if n % 2 else "camel", "Hi.", voice, model, "LINEAR16",
                                16000, delivery_mode=("STABLE", "BALANCED", "CREATIVE")[n % 3])
            response = http.post(f"{base_url}/tts/v1/voice", json=body, timeout=TIMEOUT)
            assert response.status_code == 200, (voice, response.text)
            audio = base64.b64decode(response.json()["audioContent"])
            assert audio[44:] == tone_pcm("Hi.", 16000), voice


def test_voices_list_with_language_filter(base_url: str) -> None:
    url = f"{base_url}/tts/v1/voices"
    every = requests.get(url, headers=HEADERS, timeout=TIMEOUT).json()["voices"]
    by_language: dict[str, set[str]] = {}
    for voice in every:
        assert {"voiceId", "displayName", "description", "languages", "tags"} <= set(voice)
        assert voice["isCustom"] is False and voice["description"]
        by_language.setdefault(voice["languages"][0], set()).add(voice["voiceId"])
    assert len(by_language["en"]) == 73 and len(by_language) == 15
    assert by_language["ja"] == {"Asuka", "Satoshi"}
    assert by_language["zh"] == {"Jing", "Xiaoyin", "Xinyi", "Yichen"}
    for language, names in by_language.items():
        got = requests.get(url, params={"filter": f"language={language}"}, headers=HEADERS,
                           timeout=TIMEOUT)  # fmt: skip
        assert {v["voiceId"] for v in got.json()["voices"]} == names
    regional = requests.get(url, params={"filter": "language=pt-BR"}, timeout=TIMEOUT,
                            headers=HEADERS)  # fmt: skip
    assert {v["voiceId"] for v in regional.json()["voices"]} == {"Heitor", "Maitê"}
    nothing = requests.get(url, params={"filter": "language=xx"}, headers=HEADERS,
                           timeout=TIMEOUT)  # fmt: skip
    assert nothing.status_code == 200 and nothing.json() == {"voices": []}


# -- POST /tts/v1/voice:stream ----------------------------------------------------------------


def stream_like_example(base_url: str, body: dict[str, Any]) -> tuple[list[bytes], list[Any]]:
    """``synthesize_speech_stream``: every line's audio chunk and timestamp info, in order."""
    chunks, infos = [], []
    with requests.post(f"{base_url}/tts/v1/voice:stream", headers=HEADERS, json=body,
                       stream=True, timeout=TIMEOUT) as response:  # fmt: skip
        response.raise_for_status()
        assert response.headers["content-type"] == "application/x-ndjson"
        for line in response.iter_lines(decode_unicode=True):
            if line.strip():
                result = json.loads(line)["result"]
                if "audioContent" in result:
                    chunks.append(base64.b64decode(result["audioContent"]))
                if result.get("timestampInfo"):
                    infos.append(result["timestampInfo"])
    return chunks, infos


@pytest.mark.parametrize(
    ("style", "voice", "model", "encoding", "rate", "extra"),
    [
        # example_tts_stream.py
        ("snake", "Jason", "inworld-tts-2", "MP3", 24000, {"bit_rate": 32000}),
        # example_tts_stream_timestamps.py
        ("snake", "Hana", "inworld-tts-2", "MP3", 48000, {"timestamp_type": "WORD"}),
        # tts_cli.py --stream --timestamp word (LINEAR16 at 48 kHz)
        ("snake", "Dennis", "inworld-tts-1.5-mini", "LINEAR16", 48000, {"timestamp_type": "WORD"}),
        # the API reference's camelCase, Ogg Opus, TTS-2's deliveryMode
        ("camel", "Sarah", "inworld-tts-2", "OGG_OPUS", 24000,
         {"timestamp_type": "WORD", "delivery_mode": "CREATIVE"}),
    ],
)  # fmt: skip
def test_voice_stream_ndjson_like_the_examples(
    base_url: str, style: str, voice: str, model: str, encoding: str, rate: int,
    extra: dict[str, Any],
) -> None:  # fmt: skip
    text = TEXT + " Let us walk to the harbour and watch the boats come in."
    body = request_body(style, text, voice, model, encoding, rate, **extra)
    chunks, infos = stream_like_example(base_url, body)
    want = seconds(text, rate)
    assert len(chunks) > 1  # streamed, not one piece
    if encoding == "LINEAR16":  # tts_cli's save_audio_to_file: drop each chunk's RIFF header
        pcm = b"".join(c[44:] if len(c) > 44 and c[:4] == b"RIFF" else c for c in chunks)
        assert pcm == tone_pcm(text, rate)
    else:
        check_audio(b"".join(chunks), encoding, rate, want)
    if "timestamp_type" in extra:  # print_word_breakdown
        words = [w for i in infos for w in i["wordAlignment"]["words"]]
        starts = [s for i in infos for s in i["wordAlignment"]["wordStartTimeSeconds"]]
        ends = [e for i in infos for e in i["wordAlignment"]["wordEndTimeSeconds"]]
        assert words == text.split()
        assert starts == sorted(starts) and all(s <= e for s, e in zip(starts, ends, strict=True))
        assert ends[-1] == pytest.approx(want, abs=0.01)
    else:
        assert infos == []


def test_long_input_mp3_like_example(base_url: str) -> None:
    sentence = "The tide came in slowly over the flat grey sand of the bay. "
    text = sentence * 36  # 2,160 characters: more than one request (2,000) may carry
    too_long = requests.post(f"{base_url}/tts/v1/voice", headers=HEADERS, timeout=TIMEOUT,
                             json=request_body("snake", text, "Edward", "inworld-tts-1.5-max",
                                               "MP3", 48000))  # fmt: skip
    assert too_long.status_code == 400
    assert too_long.json() == {"code": 3, "details": [],
                               "message": "Text exceeds the maximum of 2000 characters"}
    # chunk_text: cut at the last sentence end before 1,600 characters.
    pieces, rest = [], text
    while len(rest) > 1600:
        cut = rest.rfind(". ", 500, 1600) + 2
        pieces.append(rest[:cut].strip())
        rest = rest[cut:]
    pieces.append(rest.strip())
    assert len(pieces) == 2 and "".join(p + " " for p in pieces) == text

    def synthesize(piece: str) -> bytes:
        body = request_body("snake", piece, "Edward", "inworld-tts-1.5-max", "MP3", 48000)
        response = requests.post(f"{base_url}/tts/v1/voice", headers=HEADERS, json=body,
                                 timeout=TIMEOUT)  # fmt: skip
        response.raise_for_status()
        return base64.b64decode(response.json()["audioContent"])

    with ThreadPoolExecutor(max_workers=2) as pool:  # MAX_CONCURRENT_REQUESTS = 2
        segments = list(pool.map(synthesize, pieces))
    for piece, segment in zip(pieces, segments, strict=True):
        check_audio(segment, "MP3", 48000, seconds(piece, 48000))
    # combine_audio_buffers (no ffmpeg): the raw concatenation is one run of MP3 frames.
    whole = sum(seconds(p, 48000) for p in pieces)
    rate, samples = mp3_frames(b"".join(segments))
    assert rate == 48000 and whole <= samples / rate <= whole * 1.1


# -- WS /tts/v1/voice:streamBidirectional -----------------------------------------------------


async def websocket_like_example(
    ws_url: str, requests_: list[dict[str, Any]], *, wait_created: bool = False
) -> tuple[bytes, list[dict[str, Any]]]:
    """``stream_tts_with_context``: send the requests, then read until ``contextClosed``,
    collecting the audio chunks (``wait_created``: first wait for ``contextCreated``, as the
    low-latency example does)."""
    audio, results = bytearray(), []
    async with asyncio.timeout(TIMEOUT), websockets.connect(
        ws_url, additional_headers={"Authorization": f"Basic {KEY}"}
    ) as ws:
        create, *rest = requests_
        await ws.send(json.dumps(create))
        if wait_created:
            created = json.loads(await ws.recv())["result"]
            assert "contextCreated" in created, created
            results.append(created)
        for request in rest:
            await ws.send(json.dumps(request))
        async for message in ws:
            response = json.loads(message)
            assert "error" not in response, response
            result = response["result"]
            assert result["status"] == {"code": 0, "message": "", "details": []}, result
            results.append(result)
            chunk = result.get("audioChunk", {})
            if chunk.get("audioContent"):
                audio += base64.b64decode(chunk["audioContent"])
            if "contextClosed" in result:
                break
    return bytes(audio), results


def create_websocket_requests(
    context_id: str, voice_id: str, model_id: str, text: str, *, auto_mode: bool = False
) -> list[dict[str, Any]]:
    """``create_websocket_requests`` of example_websocket.py (with ``--timestamp word``)."""
    create: dict[str, Any] = {
        "voice_id": voice_id, "model_id": model_id, "timestampType": "WORD",
        "audio_config": {"audio_encoding": "OGG_OPUS", "sample_rate_hertz": 24000,
                         "bit_rate": 32000},
    }  # fmt: skip
    send_text: dict[str, Any] = {"text": text}
    if auto_mode:
        create["autoMode"] = True
    else:
        send_text["flush_context"] = {}
    return [
        {"context_id": context_id, "create": create},
        {"context_id": context_id, "send_text": send_text},
        {"context_id": context_id, "close_context": {}},
    ]


@pytest.mark.parametrize("auto_mode", [False, True])
def test_websocket_ogg_opus_like_example_websocket(
    base_url: str, tmp_path: Path, auto_mode: bool
) -> None:  # fmt: skip
    ws_url = base_url.replace("http://", "ws://") + "/tts/v1/voice:streamBidirectional"
    text = "Hello, adventurer! What a beautiful day, isn't it?..."
    sent = create_websocket_requests("ctx-1", "Ashley", "inworld-tts-1.5-mini", text,
                                     auto_mode=auto_mode)  # fmt: skip
    audio, results = asyncio.run(websocket_like_example(ws_url, sent))
    out = tmp_path / "synthesis_websocket_output.ogg"
    out.write_bytes(audio)  # save_websocket_audio_to_file
    check_audio(out.read_bytes(), "OGG_OPUS", 24000, seconds(text, 24000))
    assert "contextCreated" in results[0] and "contextClosed" in results[-1]
    words = [w for r in results
             for w in r.get("audioChunk", {}).get("timestampInfo", {})
             .get("wordAlignment", {}).get("words", [])]  # fmt: skip
    assert words == text.split()


def test_websocket_low_latency_sentences_like_example(base_url: str) -> None:
    ws_url = base_url.replace("http://", "ws://") + "/tts/v1/voice:streamBidirectional"
    text = "Life moves pretty fast. Look around once in a while, or you might miss it."
    sentences = re.findall(r"[^.!?]*[.!?]+\s*", text)
    sent: list[dict[str, Any]] = [
        {"context_id": "ctx-latency-test", "create": {
            "voice_id": "Clive", "model_id": "inworld-tts-2", "delivery_mode": "STABLE",
            "audio_config": {"audio_encoding": "OGG_OPUS", "sample_rate_hertz": 24000,
                             "bit_rate": 32000}}},
        *({"context_id": "ctx-latency-test",
           "send_text": {"text": s.strip(), "flush_context": {}}} for s in sentences),
        {"context_id": "ctx-latency-test", "close_context": {}},
    ]  # fmt: skip
    audio, results = asyncio.run(websocket_like_example(ws_url, sent, wait_created=True))
    assert sum("flushCompleted" in r for r in results) == len(sentences) == 2
    want = sum(seconds(s.strip(), 24000) for s in sentences)
    check_audio(audio, "OGG_OPUS", 24000, want)


# -- errors: Inworld's {"code", "message", "details"} everywhere --------------------------------


@pytest.mark.parametrize("path", ["/tts/v1/voice", "/tts/v1/voice:stream"])
@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"voice_id": "Nobody"}, 3, r"^Unknown voice: Nobody$"),
        ({"model_id": "inworld-tts-9"}, 3, r"^Unknown model: inworld-tts-9 \(use inworld-tts-2, "),
        ({"delivery_mode": "LOUD"}, 3, r"^request\.delivery_mode: 'LOUD' is not one of BALANCED, "),
        ({"audio_config": {"audio_encoding": "ALAW"}}, 12, r"^audioEncoding ALAW is not supp"),
        ({"voice_id": 7}, 3, r"^request\.voice_id: expected string, got int$"),
    ],
)  # fmt: skip
def test_a_bad_request_is_a_400_with_inworlds_error_body(
    base_url: str, path: str, change: dict[str, Any], code: int, message: str
) -> None:  # fmt: skip
    body = request_body("snake", TEXT, "Sarah", "inworld-tts-2", "MP3", 48000) | change
    with requests.post(f"{base_url}{path}", headers=HEADERS, json=body, stream=True,
                       timeout=TIMEOUT) as response:  # fmt: skip
        with pytest.raises(requests.exceptions.HTTPError) as raised:
            response.raise_for_status()  # the examples' error path: e.response.json()
        error_detail = raised.value.response.json()
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert set(error_detail) == {"code", "message", "details"}
    assert error_detail["code"] == code and error_detail["details"] == []
    assert re.match(message, error_detail["message"]), error_detail


def test_refusals_carry_the_error_body_too(base_url: str) -> None:
    wrong = {**HEADERS, "Authorization": "Basic bm90LXRoZS1rZXk="}
    for method, path in [("POST", "/tts/v1/voice:stream"), ("GET", "/tts/v1/voices")]:
        refused = requests.request(method, f"{base_url}{path}", headers=wrong, timeout=TIMEOUT,
                                   json=request_body("snake", "Hi.", "Sarah", "inworld-tts-1",
                                                     "MP3", 24000))  # fmt: skip
        assert refused.status_code == 401
        assert refused.json() == {"code": 16, "details": [],
                                  "message": "Unauthenticated: invalid or missing API key"}
    missing = requests.get(f"{base_url}/tts/v1/nothing", headers=HEADERS, timeout=TIMEOUT)
    assert missing.status_code == 404 and missing.json()["code"] == 5
    assert missing.json()["details"] == []
    wrong_method = requests.get(f"{base_url}/tts/v1/voice", headers=HEADERS, timeout=TIMEOUT)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == 12

    async def handshake() -> Any:
        ws_url = base_url.replace("http://", "ws://") + "/tts/v1/voice:streamBidirectional"
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with asyncio.timeout(TIMEOUT):
                await websockets.connect(ws_url, additional_headers={"Authorization": "Basic x"})
        return refused.value.response

    response = asyncio.run(handshake())
    assert response.status_code == 401
    assert json.loads(response.body) == {"code": 16, "details": [],
                                         "message": "Unauthenticated: invalid or missing API key"}


def test_a_bad_create_over_the_websocket_is_a_status_with_details(base_url: str) -> None:
    ws_url = base_url.replace("http://", "ws://") + "/tts/v1/voice:streamBidirectional"

    async def create(**fields: Any) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT), websockets.connect(
            ws_url, additional_headers={"Authorization": f"Basic {KEY}"}
        ) as ws:
            base = {"voice_id": "Hana", "model_id": "inworld-tts-2",
                    "audio_config": {"audio_encoding": "OGG_OPUS"}}  # fmt: skip
            await ws.send(json.dumps({"context_id": "c", "create": base | fields}))
            answer: dict[str, Any] = json.loads(await ws.recv())
            return answer

    unknown = asyncio.run(create(voice_id="Nobody"))["result"]["status"]
    assert unknown == {"code": 3, "message": "Unknown voice: Nobody", "details": []}
    model = asyncio.run(create(model_id="tts-0"))["result"]["status"]
    assert model["code"] == 3 and model["message"].startswith("Unknown model: tts-0")
    assert model["details"] == []
    for mode in ("STABLE", "BALANCED", "CREATIVE", "DELIVERY_MODE_UNSPECIFIED"):
        assert "contextCreated" in asyncio.run(create(deliveryMode=mode))["result"]
