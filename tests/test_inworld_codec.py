"""The Inworld codec, sans-io: exact command JSON and every server frame, no event loop."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from trio_tts._core.errors import InvalidOptions, ProtocolError
from trio_tts._core.events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextCreated,
    ContextError,
    FlushCompleted,
    Usage,
    WordTiming,
)
from trio_tts.providers.inworld.codec import InworldCodec, strip_wav_header
from trio_tts.providers.inworld.http import request_body
from trio_tts.providers.inworld.options import VoiceOptions
from trio_tts.providers.inworld.provider import InworldProvider

PCM = bytes(range(256)) * 8


def wav(samples: bytes, *, extra_chunk: bool = False) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 24000, 48000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        body += b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"  # odd size, padded
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def frame(result: dict[str, object]) -> str:
    return json.dumps({"result": result})


def audio_frame(ctx: str, data: bytes, **extra: object) -> str:
    chunk: dict[str, object] = {"audioContent": base64.b64encode(data).decode(), **extra}
    return frame({"contextId": ctx, "audioChunk": chunk})


# ------------------------------------------------------------------------------ commands


def test_create_defaults_exact_json() -> None:
    codec = InworldCodec()
    [out] = codec.create("c1", VoiceOptions())
    assert json.loads(out) == {
        "create": {
            "voiceId": "Ashley",
            "modelId": "inworld-tts-1",
            "audioConfig": {
                "audioEncoding": "LINEAR16",
                "sampleRateHertz": 24000,
                "bitrate": 64000,
                "speakingRate": 1.0,
            },
            "temperature": 1.0,
        },
        "contextId": "c1",
    }
    # Same key order as livekit-plugins-inworld.
    assert out.startswith('{"create":{"voiceId":"Ashley","modelId":"inworld-tts-1","audioConfig"')
    assert out.endswith('"contextId":"c1"}')


def test_create_optional_fields() -> None:
    opts = VoiceOptions(
        voice="Dennis",
        model="inworld-tts-1-max",
        encoding="pcm",
        sample_rate=48000,
        bit_rate=128000,
        speaking_rate=1.2,
        temperature=0.8,
        timestamp_type="word",
        language="en",
        apply_text_normalization=False,
        auto_mode=True,
        buffer_char_threshold=100,
        max_buffer_delay_ms=3000,
    )
    [out] = InworldCodec().create("ctx-2", opts)
    assert json.loads(out) == {
        "create": {
            "voiceId": "Dennis",
            "modelId": "inworld-tts-1-max",
            "audioConfig": {
                "audioEncoding": "PCM",
                "sampleRateHertz": 48000,
                "bitrate": 128000,
                "speakingRate": 1.2,
            },
            "temperature": 0.8,
            "bufferCharThreshold": 100,
            "maxBufferDelayMs": 3000,
            "language": "en",
            "timestampType": "WORD",
            "applyTextNormalization": "OFF",
            "autoMode": True,
        },
        "contextId": "ctx-2",
    }
    [on] = InworldCodec().create("x", VoiceOptions(apply_text_normalization=True))
    assert json.loads(on)["create"]["applyTextNormalization"] == "ON"


def test_create_and_http_body_carry_the_official_plugins_newer_fields() -> None:
    """livekit-plugins-inworld 1.8.9's ``deliveryMode``, ``timestampTransportStrategy`` and
    (WebSocket only) ``autoModeStrategy``: sent when set, checked against their values."""
    opts = VoiceOptions(
        delivery_mode="STABLE",
        timestamp_transport_strategy="ASYNC",
        auto_mode_strategy="SENTENCE_BOUNDARY",
    )
    [out] = InworldCodec().create("c", opts)
    create = json.loads(out)["create"]
    assert (
        create["deliveryMode"],
        create["timestampTransportStrategy"],
        create["autoModeStrategy"],
    ) == ("STABLE", "ASYNC", "SENTENCE_BOUNDARY")
    body = request_body("Hi.", opts)
    assert (body["deliveryMode"], body["timestampTransportStrategy"]) == ("STABLE", "ASYNC")
    assert "autoModeStrategy" not in body
    for name in ("delivery_mode", "timestamp_transport_strategy", "auto_mode_strategy"):
        with pytest.raises(InvalidOptions, match=f"^{name}: 'LOUD' is not one of "):
            VoiceOptions(**{name: "LOUD"})


def test_send_text_flush_close_cancel_exact_json() -> None:
    codec = InworldCodec()
    assert codec.send_text("c1", 'Hi "there" é') == [
        '{"send_text":{"text":"Hi \\"there\\" é"},"contextId":"c1"}'
    ]
    assert codec.send_text("c1", "Bye.", flush=True) == [
        '{"send_text":{"text":"Bye.","flush_context":{}},"contextId":"c1"}'
    ]
    assert codec.flush("c1") == ['{"flush_context":{},"contextId":"c1"}']
    assert codec.close("c1") == ['{"close_context":{},"contextId":"c1"}']
    assert codec.cancel("c1") == ['{"close_context":{},"contextId":"c1"}']


# -------------------------------------------------------------------------------- events


def test_lifecycle_events() -> None:
    codec = InworldCodec()
    codec.create("c1", VoiceOptions(encoding="PCM"))
    assert codec.receive(frame({"contextId": "c1", "contextCreated": {}})) == [ContextCreated("c1")]
    assert codec.receive(frame({"contextId": "c1", "flushCompleted": {}})) == [FlushCompleted("c1")]
    assert codec.receive(frame({"contextId": "c1", "contextClosed": {}})) == [ContextClosed("c1")]


def test_status_zero_is_not_an_error() -> None:
    codec = InworldCodec()
    events = codec.receive(
        frame({"contextId": "c1", "status": {"code": 0, "message": ""}, "contextCreated": {}})
    )
    assert events == [ContextCreated("c1")]
    assert codec.receive(frame({"contextId": "c1", "status": {"code": 0}})) == []


def test_status_nonzero_is_context_error() -> None:
    events = InworldCodec().receive(
        frame({"contextId": "c1", "status": {"code": 5, "message": "Context c1 not found"}})
    )
    assert events == [ContextError("c1", 5, "Context c1 not found")]


def test_status_error_without_context_id_is_connection_error() -> None:
    events = InworldCodec().receive(frame({"status": {"code": 8, "message": "Max contexts"}}))
    assert events == [ConnectionErrorEvent(8, "Max contexts")]


def test_top_level_error() -> None:
    events = InworldCodec().receive(json.dumps({"error": {"code": 10, "message": "Paused"}}))
    assert events == [ConnectionErrorEvent(10, "Paused")]


def test_server_messages_are_redacted() -> None:
    InworldProvider("sekret-key-123")
    events = InworldCodec().receive(
        json.dumps({"error": {"code": 16, "message": "bad key sekret-key-123"}})
    )
    assert events == [ConnectionErrorEvent(16, "bad key ***")]


def test_linear16_header_stripped() -> None:
    codec = InworldCodec()
    codec.create("c1", VoiceOptions(encoding="LINEAR16"))
    assert codec.receive(audio_frame("c1", wav(PCM))) == [Audio("c1", PCM)]
    assert codec.receive(audio_frame("c1", wav(PCM, extra_chunk=True))) == [Audio("c1", PCM)]
    # A LINEAR16 chunk without a header is taken as samples.
    assert codec.receive(audio_frame("c1", PCM)) == [Audio("c1", PCM)]


def test_strip_wav_header_rejects_broken_headers() -> None:
    with pytest.raises(ProtocolError, match="data chunk"):
        strip_wav_header(wav(PCM)[:36])
    with pytest.raises(ProtocolError, match="not WAVE"):
        strip_wav_header(b"RIFF\x00\x00\x00\x00AVI LIST")


def test_pcm_untouched_even_if_it_looks_like_riff() -> None:
    codec = InworldCodec()
    codec.create("c1", VoiceOptions(encoding="PCM"))
    data = wav(PCM)
    assert codec.receive(audio_frame("c1", data)) == [Audio("c1", data)]
    codec.create("c2", VoiceOptions(encoding="MP3"))
    assert codec.receive(audio_frame("c2", b"ID3\x04" + PCM)) == [Audio("c2", b"ID3\x04" + PCM)]


def test_encoding_forgotten_after_context_closed() -> None:
    codec = InworldCodec()
    codec.create("c1", VoiceOptions(encoding="PCM"))
    codec.receive(frame({"contextId": "c1", "contextClosed": {}}))
    assert repr(codec) == "<InworldCodec contexts=0>"


def test_word_timings() -> None:
    codec = InworldCodec()
    codec.create("c1", VoiceOptions(encoding="PCM"))
    info = {
        "wordAlignment": {
            "words": ["Hello", "world"],
            "wordStartTimeSeconds": [0, 0.42],
            "wordEndTimeSeconds": [0.4, 0.9],
        }
    }
    [event] = codec.receive(audio_frame("c1", PCM, timestampInfo=info))
    assert event == Audio(
        "c1", PCM, (WordTiming("Hello", 0.0, 0.4), WordTiming("world", 0.42, 0.9))
    )


def test_character_timings() -> None:
    codec = InworldCodec()
    info = {
        "characterAlignment": {
            "characters": ["H", "i"],
            "characterStartTimeSeconds": [0.0, 0.1],
            "characterEndTimeSeconds": [0.1, 0.2],
        }
    }
    [event] = codec.receive(audio_frame("c1", PCM, timestampInfo=info))
    assert isinstance(event, Audio)
    assert event.words == (WordTiming("H", 0.0, 0.1), WordTiming("i", 0.1, 0.2))


def test_timestamps_without_audio() -> None:
    info = {
        "wordAlignment": {"words": ["a"], "wordStartTimeSeconds": [0], "wordEndTimeSeconds": [1]}
    }
    chunk = {"timestampInfo": info}
    events = InworldCodec().receive(frame({"contextId": "c1", "audioChunk": chunk}))
    assert events == [Audio("c1", b"", (WordTiming("a", 0.0, 1.0),))]


def test_audio_content_directly_in_result() -> None:
    codec = InworldCodec()
    codec.create("c1", VoiceOptions())
    events = codec.receive(
        frame({"contextId": "c1", "audioContent": base64.b64encode(wav(PCM)).decode()})
    )
    assert events == [Audio("c1", PCM)]


def test_usage_and_unknown_fields_ignored() -> None:
    events = InworldCodec().receive(
        frame(
            {
                "contextId": "c1",
                "audioChunk": {"audioContent": "", "usage": {"processedCharactersCount": 7}},
                "somethingNew": {"x": 1},
            }
        )
    )
    assert events == [Audio("c1", b""), Usage("c1", 7)]
    assert InworldCodec().receive(
        frame({"contextId": "c1", "flushCompleted": {}, "usage": {"processedCharactersCount": 3}})
    ) == [Usage("c1", 3), FlushCompleted("c1")]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"result": {"contextId": "c1", "contextCreated": {}}}',  # binary frame
        "not json",
        "[]",
        "{}",
        '{"result": 5}',
        '{"result": {"contextCreated": {}}}',  # no contextId
        '{"result": {"contextId": 7, "contextCreated": {}}}',
        '{"result": {"contextId": "c1"}}',  # nothing known in it
        '{"result": {"contextId": "c1", "audioChunk": {"audioContent": "@@@not base64"}}}',
        '{"result": {"contextId": "c1", "status": {"code": "x"}}}',
        '{"error": "boom"}',
    ],
)
def test_malformed_frames_raise_protocol_error(raw: str | bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        InworldCodec().receive(raw)
    assert len(str(info.value)) < 120


def test_malformed_frame_message_does_not_echo_contents() -> None:
    secret = "x" * 500
    with pytest.raises(ProtocolError) as info:
        InworldCodec().receive('{"result": {"contextId": "c1", "audioChunk": "' + secret)
    assert secret[:100] not in str(info.value)


# ------------------------------------------------------------------------------ provider


def test_provider_headers_and_repr_hide_key() -> None:
    provider = InworldProvider("abc123==")
    assert provider.headers() == [("Authorization", "Basic abc123==")]
    assert "abc123" not in repr(provider)
    assert "api_key=***" in repr(provider)
    assert provider.connection_key(VoiceOptions()) == provider.connection_key(
        VoiceOptions(voice="Other", sample_rate=16000)
    )
    assert provider.url(VoiceOptions()) == "wss://api.inworld.ai/tts/v1/voice:streamBidirectional"
    assert provider.name == "inworld"
    assert (provider.contexts_per_connection, provider.max_text_chars) == (5, 1000)
    assert isinstance(provider.new_codec(), InworldCodec)
    assert InworldProvider().headers() == []


def test_provider_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INWORLD_API_KEY", "envkey-999")
    provider = InworldProvider.from_env(url="ws://127.0.0.1:1234/x")
    assert provider.headers() == [("Authorization", "Basic envkey-999")]
    assert provider.url(VoiceOptions()) == "ws://127.0.0.1:1234/x"
    monkeypatch.delenv("INWORLD_API_KEY")
    assert InworldProvider.from_env().headers() == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "api.inworld.ai/x"}, "^url: must start with ws://, wss://, http:// or https://$"),
        ({"url": "ws:///path"}, "^url: has no host$"),
        ({"contexts_per_connection": 0}, "^contexts_per_connection: 0 is not a positive int$"),
        ({"max_text_chars": -1}, "^max_text_chars: -1 is not a positive int$"),
        ({"api_key": ""}, "^api_key: must be a non-empty string or None$"),
    ],
)
def test_provider_invalid_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidOptions, match=match):
        InworldProvider(**kwargs)  # type: ignore[arg-type]


def test_events_are_immutable_values() -> None:
    """Events compare and hash by their fields, refuse changes, and show no audio bytes."""
    a = Audio("c1", b"\x00\x01", (WordTiming("hi", 0.0, 0.5),))
    assert a == Audio("c1", b"\x00\x01", (WordTiming("hi", 0.0, 0.5),))
    assert a != Audio("c2", b"\x00\x01", (WordTiming("hi", 0.0, 0.5),))
    assert len({a, Audio("c1", b"\x00\x01", (WordTiming("hi", 0.0, 0.5),))}) == 1
    with pytest.raises(AttributeError):
        a.data = b""  # type: ignore[misc]
    assert repr(a) == "Audio(context_id='c1', bytes=2, words=1)"
    assert repr(WordTiming("hi", 0.0, 0.5)) == "WordTiming(word='hi', start=0.0, end=0.5)"
    match a:
        case Audio(context_id, data, words):
            assert (context_id, data, words[0].word) == ("c1", b"\x00\x01", "hi")
