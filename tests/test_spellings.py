"""Both spellings (protobuf JSON names and proto field names) round-trip through every message.

Every frame is written once in camelCase (what LiveKit sends) and converted mechanically to
snake_case (what Inworld's examples send): the server must decode both to the same command,
and a whole conversation in either spelling must get byte-identical answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

import trio
from test_server import TIMEOUT, client, recv, send, tone

from trio_tts import VoiceOptions
from trio_tts.providers.inworld.codec import InworldCodec
from trio_tts.server import open_server
from trio_tts.server.inworld import proto


def snake(value: Any) -> Any:
    """``{"sampleRateHertz": 1}`` → ``{"sample_rate_hertz": 1}``, recursively
    (``bitrate``, LiveKit's own spelling, becomes the proto's ``bit_rate``)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = "bit_rate" if key == "bitrate" else re.sub(r"(?<!^)([A-Z])", r"_\1", key)
            out[name.lower()] = snake(item)
        return out
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value


FULL_CREATE = {
    "voiceId": "Dennis", "modelId": "inworld-tts-1",
    "audioConfig": {"audioEncoding": "OGG_OPUS", "sampleRateHertz": 48000, "bitRate": 96000,
                    "speakingRate": 1.1, "temperature": 0.9},
    "temperature": 0.8, "timestampType": "CHARACTER", "language": "en", "autoMode": True,
    "bufferCharThreshold": 50, "maxBufferDelayMs": 300, "applyTextNormalization": "ON",
    "deliveryMode": "STABLE", "timestampTransportStrategy": "ASYNC",
    "autoModeStrategy": "SENTENCE",
}  # fmt: skip
MESSAGES: list[dict[str, Any]] = [
    {"create": FULL_CREATE, "contextId": "c"},
    {"sendText": {"text": "hi", "flushContext": {}}, "contextId": "c"},
    {"sendText": {"text": "hi"}, "contextId": "c"},
    {"flushContext": {}, "contextId": "c"},
    {"updateConfig": {"voiceId": "Ashley", "audioConfig": {"speakingRate": 1.2},
                      "timestampType": "WORD", "bufferCharThreshold": 20}, "contextId": "c"},
    {"closeContext": {}, "contextId": "c"},
    {"cancelContext": {}, "contextId": "c"},
]  # fmt: skip


def test_every_message_decodes_the_same_in_both_spellings() -> None:
    for message in MESSAGES:
        camel, snake_case = json.dumps(message), json.dumps(snake(message))
        assert "_" in snake_case and camel != snake_case
        assert proto.decode_command(camel) == proto.decode_command(snake_case)
    create = proto.decode_command(json.dumps(snake(MESSAGES[0])))
    assert isinstance(create, proto.Create)
    assert (create.bit_rate, create.timestamps, create.async_timestamps) == (96000, "CHARACTER",
                                                                             True)  # fmt: skip


def test_the_client_codecs_frames_decode_in_both_spellings() -> None:
    codec = InworldCodec()
    options = VoiceOptions(voice="Dennis", encoding="MP3", sample_rate=44100, bit_rate=128000,
                           timestamp_type="WORD", auto_mode=True,
                           buffer_char_threshold=40)  # fmt: skip
    frames = [*codec.create("k", options), *codec.send_text("k", "a b", flush=True),
              *codec.flush("k"), *codec.close("k")]  # fmt: skip
    for frame in frames:
        again = json.dumps(snake(json.loads(frame)))
        assert proto.decode_command(frame) == proto.decode_command(again)
    create = proto.decode_command(frames[0])
    assert isinstance(create, proto.Create)
    assert (create.encoding, create.sample_rate_hertz, create.bit_rate) == ("MP3", 44100, 128000)
    # ... and the server's answers decode in the client codec.
    events = codec.receive(proto.encode_context_created("k", create))
    events += codec.receive(proto.encode_audio_chunk("k", b"\xff\xfb", [("a", 0.0, 0.1)]))
    events += codec.receive(proto.encode_audio_chunk("k", None, info={"characterAlignment": {
        "characters": ["b"], "characterStartTimeSeconds": [0.1],
        "characterEndTimeSeconds": [0.2]}}))  # fmt: skip
    assert [type(e).__name__ for e in events] == ["ContextCreated", "Audio", "Audio"]
    assert events[1].data == b"\xff\xfb"  # type: ignore[union-attr]  # MP3: untouched bytes
    assert [w.word for w in events[2].words] == ["b"]  # type: ignore[union-attr]


async def conversation(spell: Any) -> list[str]:
    """One conversation covering every message type; the server's answers, in order."""
    # FLAC: its bytes are deterministic (an Ogg stream has a random serial number).
    audio = dict(FULL_CREATE["audioConfig"], audioEncoding="FLAC")
    create = dict(FULL_CREATE, audioConfig=audio, timestampTransportStrategy="SYNC",
                  autoMode=False)  # fmt: skip
    steps: list[dict[str, Any]] = [
        {"create": create, "contextId": "c"},
        {"sendText": {"text": "One two"}, "contextId": "c"},
        {"flushContext": {}, "contextId": "c"},
        {"updateConfig": {"voiceId": "Ashley", "timestampType": "WORD"}, "contextId": "c"},
        {"sendText": {"text": "three four", "flushContext": {}}, "contextId": "c"},
        {"closeContext": {}, "contextId": "c"},
        {"create": {"voiceId": "Ashley"}, "contextId": "d"},
        {"cancelContext": {}, "contextId": "d"},
    ]
    ends = ["contextCreated", None, "flushCompleted", "contextUpdated", "flushCompleted",
            "contextClosed", "contextCreated", "contextClosed"]  # fmt: skip
    answers = []
    with trio.fail_after(TIMEOUT):
        async with open_server(tone()) as server, client(server) as ws:
            for step, end in zip(steps, ends, strict=True):
                await send(ws, spell(step))
                while end is not None:
                    answer = await recv(ws)
                    answers.append(json.dumps(answer, sort_keys=True))
                    assert answer["result"]["status"]["code"] == 0, answer
                    if end in answer["result"]:
                        break
    return answers


async def test_a_conversation_gets_identical_answers_in_both_spellings() -> None:
    camel = await conversation(lambda m: m)
    snake_case = await conversation(snake)
    assert camel == snake_case
    assert sum('"audioChunk"' in a for a in camel) >= 3
