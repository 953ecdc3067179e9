"""The server's sans-io Inworld codec: both spellings of every message, errors naming fields."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from trio_tts.server.inworld import proto

# Exactly what livekit-plugins-inworld 1.8.9 sends (camelCase, `bitrate`, autoMode on).
LIVEKIT_CREATE = {
    "create": {
        "voiceId": "Ashley",
        "modelId": "inworld-tts-1.5-max",
        "audioConfig": {
            "audioEncoding": "PCM",
            "sampleRateHertz": 24000,
            "bitrate": 64000,
            "speakingRate": 1.0,
        },
        "temperature": 1.0,
        "maxBufferDelayMs": 3000,
        "timestampTransportStrategy": "ASYNC",
        "timestampType": "WORD",
        "autoMode": True,
        "bufferCharThreshold": 250,
        "deliveryMode": "STABLE",
    },
    "contextId": "abc",
}
# The same in the proto field names Inworld's own examples use.
SNAKE_CREATE = {
    "create": {
        "voice_id": "Ashley",
        "model_id": "inworld-tts-1.5-max",
        "audio_config": {
            "audio_encoding": "PCM",
            "sample_rate_hertz": 24000,
            "bit_rate": 64000,
            "speaking_rate": 1.0,
        },
        "temperature": 1.0,
        "max_buffer_delay_ms": 3000,
        "timestamp_transport_strategy": "ASYNC",
        "timestamp_type": "WORD",
        "auto_mode": True,
        "buffer_char_threshold": 250,
        "delivery_mode": "STABLE",
    },
    "context_id": "abc",
}
EXPECTED_CREATE = proto.Create(
    context_id="abc",
    voice_id="Ashley",
    model_id="inworld-tts-1.5-max",
    audio_encoding="PCM",
    sample_rate_hertz=24000,
    bit_rate=64000,
    speaking_rate=1.0,
    temperature=1.0,
    max_buffer_delay_ms=3000,
    timestamp_transport_strategy="ASYNC",
    timestamp_type="WORD",
    auto_mode=True,
    buffer_char_threshold=250,
    delivery_mode="STABLE",
)


@pytest.mark.parametrize("frame", [LIVEKIT_CREATE, SNAKE_CREATE], ids=["camel", "snake"])
def test_create_in_both_spellings(frame: dict) -> None:  # type: ignore[type-arg]
    assert proto.decode_command(json.dumps(frame)) == EXPECTED_CREATE


def test_create_bitrate_spellings_defaults_and_unknown_fields() -> None:
    for key in ("bitrate", "bitRate", "bit_rate"):
        frame = {"create": {"voiceId": "Dennis", "audioConfig": {key: 32000}}, "contextId": "c"}
        assert proto.decode_command(json.dumps(frame)).bit_rate == 32000  # type: ignore[union-attr]
    frame = {"create": {"voiceId": "Dennis", "someFutureField": {"x": 1}}, "contextId": "c"}
    create = proto.decode_command(json.dumps(frame))
    assert create == proto.Create(context_id="c", voice_id="Dennis")
    assert isinstance(create, proto.Create)
    assert (create.encoding, create.sample_rate_hertz, create.word_timestamps) == (
        "LINEAR16",
        48000,
        False,
    )
    # enum values are case-insensitive; temperature may sit in audioConfig (HTTP form)
    frame = {
        "create": {
            "voiceId": "D",
            "audioConfig": {"audioEncoding": "linear16", "temperature": 0.7},
        },
        "contextId": "c",
    }
    create = proto.decode_command(json.dumps(frame))
    assert isinstance(create, proto.Create)
    assert (create.audio_encoding, create.temperature) == ("LINEAR16", 0.7)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"send_text": {"text": "hi"}, "contextId": "a"}, proto.SendText("a", "hi", False)),
        ({"sendText": {"text": "hi"}, "context_id": "a"}, proto.SendText("a", "hi", False)),
        (
            {"send_text": {"text": "hi", "flush_context": {}}, "context_id": "a"},
            proto.SendText("a", "hi", True),
        ),
        (
            {"sendText": {"text": "hi", "flushContext": {}}, "contextId": "a"},
            proto.SendText("a", "hi", True),
        ),
        ({"flush_context": {}, "contextId": "a"}, proto.FlushContext("a")),
        ({"flushContext": {}, "context_id": "a"}, proto.FlushContext("a")),
        ({"close_context": {}, "contextId": "a"}, proto.CloseContext("a")),
        ({"closeContext": {}, "context_id": "a"}, proto.CloseContext("a")),
        ({"cancel_context": {}, "contextId": "a"}, proto.CancelContext("a")),
        ({"cancelContext": {}, "context_id": "a"}, proto.CancelContext("a")),
        (
            {
                "update_config": {"voice_id": "Dennis", "audio_config": {"speaking_rate": 1.2}},
                "context_id": "a",
            },
            proto.UpdateConfig("a", {"voice_id": "Dennis", "speaking_rate": 1.2}),
        ),
        (
            {
                "updateConfig": {"voiceId": "Dennis", "audioConfig": {"speakingRate": 1.2}},
                "contextId": "a",
            },
            proto.UpdateConfig("a", {"voice_id": "Dennis", "speaking_rate": 1.2}),
        ),
        # the context id may also sit inside the message body
        ({"flush_context": {"context_id": "a"}}, proto.FlushContext("a")),
    ],
)
def test_other_commands_in_both_spellings(frame: dict, expected: proto.Command) -> None:  # type: ignore[type-arg]
    assert proto.decode_command(json.dumps(frame)) == expected
    assert proto.decode_command(json.dumps(frame).encode()) == expected


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            {"create": {"voiceId": 7}, "contextId": "c"},
            r"^create\.voiceId: expected string, got int$",
        ),
        (
            {
                "create": {"voice_id": "A", "audio_config": {"sample_rate_hertz": "24000"}},
                "context_id": "c",
            },
            r"^create\.audio_config\.sample_rate_hertz: expected integer, got str$",
        ),
        (
            {"create": {"voiceId": "A", "audioConfig": {"speakingRate": True}}, "contextId": "c"},
            r"^create\.audioConfig\.speakingRate: expected number, got bool$",
        ),
        (
            {"create": {"voiceId": "A", "autoMode": "yes"}, "contextId": "c"},
            r"^create\.autoMode: expected boolean, got str$",
        ),
        (
            {"create": {"voiceId": "A", "audioConfig": []}, "contextId": "c"},
            r"^create\.audioConfig: expected object, got list$",
        ),
        (
            {"create": {"voiceId": "A", "audioConfig": {"audioEncoding": "WAV"}}, "contextId": "c"},
            r"^create\.audioConfig\.audioEncoding: 'WAV' is not one of ",
        ),
        (
            {"send_text": {"text": 5}, "contextId": "c"},
            r"^send_text\.text: expected string, got int$",
        ),
        ({"send_text": {}, "contextId": "c"}, r"^send_text\.text: required$"),
        (
            {"sendText": {"text": "x", "flushContext": True}, "contextId": "c"},
            r"^sendText\.flushContext: expected object, got bool$",
        ),
        ({"send_text": {"text": "x"}, "contextId": 3}, r"^contextId: expected string, got int$"),
        ({"send_text": {"text": "x"}}, r"^contextId: required for send_text$"),
        ({"flush_context": "now", "contextId": "c"}, r"^flush_context: expected object, got str$"),
        ({"hello": {}}, r"^<frame>: no message; expected one of create, send_text"),
        (
            {"flush_context": {}, "close_context": {}, "contextId": "c"},
            r"^<frame>: several messages",
        ),
        ([1, 2], r"^<frame>: expected a JSON object, got list$"),
    ],
)
def test_wrong_types_name_the_field(frame: object, message: str) -> None:
    with pytest.raises(proto.DecodeError, match=message):
        proto.decode_command(json.dumps(frame))


def test_decode_error_keeps_context_id_and_rejects_bad_json() -> None:
    with pytest.raises(proto.DecodeError) as info:
        proto.decode_command('{"send_text": {"text": 1}, "contextId": "ctx"}')
    assert (info.value.field, info.value.context_id) == ("send_text.text", "ctx")
    with pytest.raises(proto.DecodeError, match=r"^<frame>: invalid JSON"):
        proto.decode_command('{"send_text": ')


def test_synthesize_request_as_livekit_sends_it() -> None:
    body = {
        "text": "Hello",
        "voiceId": "Ashley",
        "modelId": "inworld-tts-1.5-max",
        "audioConfig": {
            "audioEncoding": "LINEAR16",
            "bitrate": 64000,
            "sampleRateHertz": 16000,
            "temperature": 1.1,
            "speakingRate": 0.9,
        },
        "timestampType": "WORD",
        "timestampTransportStrategy": "ASYNC",
    }
    request = proto.decode_synthesize_request(json.dumps(body).encode())
    assert request.text == "Hello"
    assert request.config == proto.Create(
        voice_id="Ashley",
        model_id="inworld-tts-1.5-max",
        audio_encoding="LINEAR16",
        bit_rate=64000,
        sample_rate_hertz=16000,
        temperature=1.1,
        speaking_rate=0.9,
        timestamp_type="WORD",
        timestamp_transport_strategy="ASYNC",
    )
    with pytest.raises(proto.DecodeError, match=r"^text: required$"):
        proto.decode_synthesize_request(b'{"voiceId": "Ashley"}')


def test_encoders_match_what_livekit_parses() -> None:
    ok = {"code": 0, "message": "", "details": []}
    created = json.loads(proto.encode_context_created("c", EXPECTED_CREATE))
    assert created["result"]["contextId"] == "c"
    assert "contextCreated" in created["result"] and created["result"]["status"] == ok

    frame = json.loads(
        proto.encode_audio_chunk(
            "c", b"\x01\x02", [("hi", 0.0, 0.25)], processed_characters=2, model_id="m"
        )
    )
    chunk = frame["result"]["audioChunk"]
    assert base64.b64decode(chunk["audioContent"]) == b"\x01\x02"
    assert chunk["timestampInfo"]["wordAlignment"] == {
        "words": ["hi"],
        "wordStartTimeSeconds": [0.0],
        "wordEndTimeSeconds": [0.25],
    }
    assert chunk["usage"] == {"processedCharactersCount": 2, "modelId": "m"}
    assert (
        "timestampInfo"
        not in json.loads(proto.encode_audio_chunk("c", b""))["result"]["audioChunk"]
    )

    assert "flushCompleted" in json.loads(proto.encode_flush_completed("c"))["result"]
    assert "contextClosed" in json.loads(proto.encode_context_closed("c"))["result"]
    assert json.loads(proto.encode_status("c", 8, "Max contexts limit reached")) == {
        "result": {
            "contextId": "c",
            "status": {"code": 8, "message": "Max contexts limit reached", "details": []},
        }
    }
    assert json.loads(proto.encode_error(3, "bad")) == {
        "error": {"code": 3, "message": "bad", "details": []}
    }
    line = json.loads(proto.encode_http_audio(b"ab", [("x", 0.0, 0.1)]))
    assert set(line["result"]) == {"audioContent", "timestampInfo"}


def test_wav_header() -> None:
    header = proto.wav_header(4800, 24000)
    assert len(header) == 44
    fields = struct.unpack("<4sI4s4sIHHIIHH4sI", header)
    assert fields == (
        b"RIFF",
        36 + 4800,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        24000,
        48000,
        2,
        16,
        b"data",
        4800,
    )
