"""The sans-io Cartesia codec, options and provider: plain pytest, no event loop."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

import trio_tts
from trio_tts._core.backoff import FATAL_CLOSE_CODES
from trio_tts._core.events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextCreated,
    ContextError,
    FlushCompleted,
    WordTiming,
)
from trio_tts.providers.cartesia.codec import EXPIRED_MESSAGE, CartesiaCodec
from trio_tts.providers.cartesia.http import request_body
from trio_tts.providers.cartesia.options import API_VERSION, DEFAULT_VOICE, CartesiaOptions
from trio_tts.providers.cartesia.provider import CartesiaProvider

KATIE = DEFAULT_VOICE


def frames(out: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in out]


def server(kind: str, cid: str | None = "c1", **fields: Any) -> str:
    body: dict[str, Any] = {"type": kind, **fields}
    if cid is not None:
        body["context_id"] = cid
    return json.dumps(body)


def chunk(data: bytes, cid: str = "c1") -> str:
    return server("chunk", cid, data=base64.b64encode(data).decode(), done=False, status_code=206)


def opened(codec: CartesiaCodec, cid: str = "c1", text: str = "Hello. ", **options: Any) -> None:
    """``cid`` created and its first text sent (it exists on the server), the server heard."""
    assert codec.create(cid, CartesiaOptions(**options)) == []
    assert len(codec.send_text(cid, text)) == 1
    assert codec.receive(chunk(b"\x00\x00", cid)) == [
        ContextCreated(cid),
        Audio(cid, b"\x00\x00"),
    ]


# ------------------------------------------------------------------------------- options


def test_every_request_carries_the_settings_and_the_first_one_opens_the_context() -> None:
    codec = CartesiaCodec()
    opts = CartesiaOptions(
        voice="v-1", model="sonic-2", encoding="pcm_f32le", sample_rate=44100, language="fr",
        word_timestamps=True, max_buffer_delay_ms=0, use_normalized_timestamps=True,
        pronunciation_dict_id="dict-1",
    )  # fmt: skip
    assert codec.create("c1", opts) == []  # Cartesia has no create
    settings = {
        "model_id": "sonic-2",
        "voice": {"mode": "id", "id": "v-1"},
        "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100},
        "language": "fr",
        "pronunciation_dict_id": "dict-1",
        "add_timestamps": True,
        "use_normalized_timestamps": True,
        "max_buffer_delay_ms": 0,
        "context_id": "c1",
    }
    sent = frames(
        codec.send_text("c1", 'Say "hi", \u00e9t\u00e9 \U0001f600. ', flush=True)
        + codec.send_text("c1", "")  # nothing to send
        + codec.close("c1")
    )
    assert sent == [
        {**settings, "transcript": 'Say "hi", \u00e9t\u00e9 \U0001f600. ', "continue": True},
        {**settings, "transcript": "", "continue": True, "flush": True},
        {**settings, "transcript": "", "continue": False},
    ]
    assert codec.take_events() == []


def test_generation_config_and_the_http_body() -> None:
    opts = CartesiaOptions(speed=1.2, volume=0.8, emotion="Happy")
    assert opts.request_fields()["generation_config"] == {
        "speed": 1.2, "volume": 0.8, "emotion": "happy",
    }  # fmt: skip
    body = request_body("Hi.", opts)
    assert body == {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": KATIE},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        "language": "en",
        "generation_config": {"speed": 1.2, "volume": 0.8, "emotion": "happy"},
        "transcript": "Hi.",
    }  # no add_timestamps / max_buffer_delay_ms: WebSocket-only, as LiveKit's ChunkedStream
    assert "language" not in CartesiaOptions(language=None).request_fields()


@pytest.mark.parametrize(
    ("name", "encoding", "width"),
    [("pcm_s16le", "PCM", 2), ("pcm_f32le", "PCM_F32LE", 4), ("pcm_mulaw", "MULAW", 1),
     ("PCM_ALAW", "ALAW", 1)],
)  # fmt: skip
def test_encodings_by_cartesia_and_engine_names(name: str, encoding: str, width: int) -> None:
    rate = 8000 if width == 1 else 16000
    by_wire = CartesiaOptions(encoding=name, sample_rate=rate)
    by_engine = CartesiaOptions(encoding=trio_tts.AudioEncoding(encoding), sample_rate=rate)
    assert by_wire == by_engine and by_wire.encoding is trio_tts.AudioEncoding(encoding)
    assert by_wire.encoding.bytes_per_sample == width
    assert by_wire.request_fields()["output_format"]["encoding"] == name.lower()


BAD_OPTIONS = [
    ({"voice": ""}, r"^voice: must be a non-empty string$"),
    ({"model": "eleven_turbo_v2_5"}, r"^model: 'eleven_turbo_v2_5' is not a Sonic model"),
    ({"encoding": "MP3"}, r"^encoding: 'MP3' is not one of pcm_s16le, pcm_f32le, pcm_mulaw"),
    ({"encoding": "LINEAR16"}, r"^encoding: 'LINEAR16' is not one of"),
    ({"sample_rate": 32000}, r"^sample_rate: 32000 is not one of 8000, 16000, 22050, 24000, 4"),
    ({"encoding": "pcm_mulaw", "sample_rate": 16000},
     r"^sample_rate: pcm_mulaw is 8000 Hz telephony audio, not 16000$"),
    ({"language": "english"}, r"^language: 'english' is not a language Cartesia speaks"),
    ({"speed": 2.5}, r"^speed: 2.5 is outside 0.6..2.0$"),
    ({"speed": True}, r"^speed: True is outside 0.6..2.0$"),
    ({"volume": 0.1}, r"^volume: 0.1 is outside 0.5..2.0$"),
    ({"emotion": "hangry"}, r"^emotion: 'hangry' is not one of Cartesia's emotions"),
    ({"model": "sonic-2", "speed": 1.1},
     r"^speed: generation_config is read by Sonic 3 models only, not 'sonic-2'$"),
    ({"model": "sonic-turbo", "emotion": "calm"}, r"^emotion: generation_config is read by"),
    ({"word_timestamps": "yes"}, r"^word_timestamps: must be True or False$"),
    ({"max_buffer_delay_ms": 5001}, r"^max_buffer_delay_ms: 5001 is not an integer in 0..5000$"),
    ({"max_buffer_delay_ms": 1.5}, r"^max_buffer_delay_ms: 1.5 is not an integer"),
    ({"pronunciation_dict_id": ""}, r"^pronunciation_dict_id: must be a non-empty string"),
    ({"api_version": "latest"}, r"^api_version: 'latest' is not a date YYYY-MM-DD$"),
    ({"nonsense": 1}, r"^unknown option\(s\): nonsense$"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD_OPTIONS)
def test_invalid_options_are_refused_before_any_network(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=message):
        CartesiaOptions().replace(**change)


def test_sonic_3_family_reads_generation_config() -> None:
    for model in ("sonic-3", "sonic-3.5", "sonic-3-2025-10-27", "sonic-latest"):
        assert CartesiaOptions(model=model, speed=0.9).speed == 0.9
    for model in ("sonic-2", "sonic-turbo", "sonic", "sonic-2-2025-03-07"):
        assert CartesiaOptions(model=model).model == model


def test_inworld_keeps_its_own_encodings() -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=r"^encoding: PCM_F32LE is not one of"):
        trio_tts.VoiceOptions(encoding="PCM_F32LE")


# ------------------------------------------------------------------------------ provider


def test_provider_url_headers_limits_and_repr() -> None:
    provider = CartesiaProvider("k3y-secret", url="http://127.0.0.1:9", concurrency=15)
    opts = CartesiaOptions()
    url = f"ws://127.0.0.1:9/tts/websocket?cartesia_version={API_VERSION}"
    assert provider.url(opts) == provider.connection_key(opts) == url
    # Voice, model and format travel in each request: only the API version splits sockets.
    other = opts.replace(voice="v-2", model="sonic-2", encoding="pcm_mulaw", sample_rate=8000)
    assert provider.connection_key(other) == url
    assert provider.connection_key(opts.replace(api_version="2025-04-16")).endswith(
        "?cartesia_version=2025-04-16"
    )
    assert provider.headers() == [("X-API-Key", "k3y-secret")]
    assert "k3y-secret" not in repr(provider)
    assert (provider.keepalive_interval, provider.fatal_close_codes) == (None, FATAL_CLOSE_CODES)
    assert (provider.max_contexts, provider.contexts_per_connection) == (15, 15)
    assert (provider.max_session_duration, provider.cancel_expiry) == (270.0, 1.5)
    assert CartesiaProvider().url(opts).startswith("wss://api.cartesia.ai/tts/websocket?")
    assert CartesiaProvider().max_contexts == 2  # the Free plan's: every account has it
    assert CartesiaProvider(None).headers() == []
    assert CartesiaProvider().default_options() == CartesiaOptions()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x"}, r"^url: must start with ws://, wss://, http:// or https://$"),
        ({"url": "ws://h/tts/websocket?x=1"}, r"^url: must not carry a query"),
        ({"concurrency": 0}, r"^concurrency: 0 is not a positive int$"),
        ({"contexts_per_connection": True}, r"^contexts_per_connection: True is not a posit"),
        ({"cancel_expiry": 0}, r"^cancel_expiry: 0 must be a positive number$"),
        ({"max_session_duration": -1}, r"^max_session_duration: -1 must be a positive number$"),
    ],
)
def test_provider_arguments_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=message):
        CartesiaProvider(**kwargs)


def test_options_of_another_provider_are_refused() -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=r"^options: expected CartesiaOptions, got"):
        CartesiaProvider().connection_key(trio_tts.VoiceOptions())  # type: ignore[arg-type]


def test_provider_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", "sk_car_env")
    assert CartesiaProvider.from_env(concurrency=3).headers() == [("X-API-Key", "sk_car_env")]
    monkeypatch.setenv("CARTESIA_API_KEY", "")
    assert CartesiaProvider.from_env().headers() == []


# ------------------------------------------------------------------------ context lifetime


def test_before_any_text_nothing_reaches_the_server() -> None:
    codec = CartesiaCodec()
    codec.create("c1", CartesiaOptions())
    codec.create("c2", CartesiaOptions())
    codec.create("c3", CartesiaOptions())
    assert codec.flush("c1") == []
    assert codec.take_events() == [FlushCompleted("c1", timings_restart=False)]
    assert codec.close("c1") == [] and codec.cancel("c2") == []
    assert codec.take_events() == [ContextClosed("c1"), ContextClosed("c2")]
    assert codec.send_text("c3", "", flush=False) == []  # an empty text opens nothing either
    assert codec.close("c3") == [] and codec.take_events() == [ContextClosed("c3")]
    # Forgotten: later commands for them send nothing.
    assert codec.send_text("c1", "Hi.") == [] and codec.cancel("c1") == []


def test_close_ends_only_on_the_servers_done() -> None:
    codec = CartesiaCodec()
    opened(codec)
    assert len(codec.close("c1")) == 1
    assert codec.close("c1") == [] and codec.send_text("c1", "more") == []  # input ended
    assert codec.take_events() == []
    assert codec.receive(chunk(b"\x01\x02")) == [Audio("c1", b"\x01\x02")]
    assert codec.receive(server("done", done=True, status_code=200)) == [ContextClosed("c1")]
    assert codec.cancel("c1") == []  # gone


def test_cancel_sends_cancel_and_waits_for_the_server() -> None:
    codec = CartesiaCodec()
    opened(codec)
    assert frames(codec.cancel("c1")) == [{"context_id": "c1", "cancel": True}]
    assert codec.cancel("c1") == [] and codec.close("c1") == [] and codec.flush("c1") == []
    assert codec.take_events() == []  # the slot waits: for the server or the pool's expiry
    # Audio generated before the cancel still arrives (the pool drops it).
    assert codec.receive(chunk(b"\x03\x04")) == [Audio("c1", b"\x03\x04")]
    assert codec.receive(server("done", done=True)) == [ContextClosed("c1")]


def test_cancel_after_close_stops_the_generation_too() -> None:
    codec = CartesiaCodec()
    opened(codec)
    codec.close("c1")
    assert frames(codec.cancel("c1")) == [{"context_id": "c1", "cancel": True}]
    assert codec.receive(server("done", done=True)) == [ContextClosed("c1")]


def test_a_done_for_an_open_context_is_its_expiry_and_a_typed_failure() -> None:
    codec = CartesiaCodec()
    opened(codec)
    assert codec.receive(server("done", done=True, status_code=200)) == [
        ContextError("c1", None, EXPIRED_MESSAGE),
        ContextClosed("c1"),
    ]
    assert codec.expired == 1
    assert codec.send_text("c1", "too late") == []


# --------------------------------------------------------------------------------- flushes


def test_flush_done_answers_our_flushes_only() -> None:
    codec = CartesiaCodec()
    opened(codec)
    flush = codec.flush("c1")
    assert frames(flush)[0]["flush"] is True and frames(flush)[0]["transcript"] == ""
    done1 = server("flush_done", flush_done=True, flush_id=1, done=False)
    assert codec.receive(done1) == [FlushCompleted("c1", timings_restart=False)]
    assert codec.receive(done1) == []  # answers no flush of ours (e.g. buffering's own)
    assert codec.ignored_flush_dones == 1
    assert len(codec.send_text("c1", "Again.", flush=True)) == 2
    assert codec.receive(server("flush_done", flush_id=2)) == [
        FlushCompleted("c1", timings_restart=False)
    ]


def test_cartesia_word_times_are_not_rebased_after_a_flush() -> None:
    """The service's times already run on from the context's start: the Context must not add
    the audio before the flush again."""
    from trio_tts._core.context import ContextStream

    stream = ContextStream("c1", CartesiaOptions(), max_events=100, max_bytes=1 << 20)
    words = (WordTiming("Hello", 0.0, 0.5),)
    later = (WordTiming("again", 1.5, 1.9),)
    for event in (
        Audio("c1", b"\x00" * 48000, words),  # 1 s at 24 kHz s16le
        FlushCompleted("c1", timings_restart=False),
        Audio("c1", b"", later),
    ):
        assert stream.deliver(event)
    out = [stream.receive_nowait() for _ in range(3)]
    assert out[2] == Audio("c1", b"", later)  # unchanged: 1.5 s, not 2.5 s
    # An Inworld-style flush (timings restart) still adds the audio before it.
    inworld = ContextStream("c2", CartesiaOptions(), max_events=100, max_bytes=1 << 20)
    for event in (Audio("c2", b"\x00" * 48000), FlushCompleted("c2"), Audio("c2", b"", words)):
        inworld.deliver(event)
    assert [inworld.receive_nowait() for _ in range(3)][2].words[0].start == 1.0


# --------------------------------------------------------------------------------- receive


def test_chunks_and_word_timestamps() -> None:
    codec = CartesiaCodec()
    opened(codec, word_timestamps=True)
    pcm = bytes(range(256)) * 40
    assert codec.receive(chunk(pcm)) == [Audio("c1", pcm)]
    timestamps = server(
        "timestamps",
        done=False,
        status_code=206,
        flush_id=1,
        word_timestamps={"words": ["Hello", "there"], "start": [0.0, 0.42], "end": [0.4, 0.9]},
    )
    assert codec.receive(timestamps) == [
        Audio("c1", b"", (WordTiming("Hello", 0.0, 0.4), WordTiming("there", 0.42, 0.9)))
    ]
    empty = server("timestamps", word_timestamps={"words": [], "start": [], "end": []})
    assert codec.receive(empty) == []
    assert codec.receive(server("chunk", data="", done=True)) == []  # an empty last chunk
    assert codec.receive(server("phoneme_timestamps", phoneme_timestamps={})) == []
    assert codec.phoneme_frames == 1


def test_frames_for_contexts_this_codec_does_not_carry_reach_the_pool_as_strays() -> None:
    codec = CartesiaCodec()
    assert codec.receive(chunk(b"\x01\x02", "gone")) == [Audio("gone", b"\x01\x02")]
    assert codec.receive(server("done", "gone", done=True)) == [ContextClosed("gone")]
    assert codec.receive(server("flush_done", "gone")) == [
        FlushCompleted("gone", timings_restart=False)
    ]


def test_an_error_with_done_fails_the_context_and_frees_it() -> None:
    codec = CartesiaCodec()
    opened(codec)
    error = server("error", done=True, status_code=400, title="Invalid voice",
                   message="Voice x was not found", error_code="voice_not_found")  # fmt: skip
    assert codec.receive(error) == [
        ContextError("c1", 400, "Invalid voice: Voice x was not found (voice_not_found)"),
        ContextClosed("c1"),
    ]
    assert codec.send_text("c1", "more") == [] and codec.cancel("c1") == []


def test_an_error_without_done_fails_the_context_which_then_still_has_to_end() -> None:
    codec = CartesiaCodec()
    opened(codec)
    assert codec.receive(server("error", done=False, status_code=500, message="boom")) == [
        ContextError("c1", 500, "boom")
    ]
    # The pool cancels it; only the server's end (or the expiry) frees the slot.
    assert frames(codec.cancel("c1")) == [{"context_id": "c1", "cancel": True}]
    assert codec.receive(server("error", done=False, message="again")) == []
    assert codec.ignored_errors == 1
    assert codec.receive(server("error", done=True, title="Cancelled")) == [ContextClosed("c1")]


def test_errors_without_a_context_and_the_older_error_shape() -> None:
    codec = CartesiaCodec()
    assert codec.receive(server("error", None, done=True, status_code=429,
                                title="Too many requests", message="slow down")) == [
        ConnectionErrorEvent(429, "Too many requests: slow down")
    ]  # fmt: skip
    assert codec.receive(server("error", None, error="old style")) == [
        ConnectionErrorEvent(None, "old style")
    ]
    assert codec.receive(server("error", None)) == [
        ConnectionErrorEvent(None, "unspecified Cartesia error")
    ]


def test_error_messages_never_carry_the_key() -> None:
    CartesiaProvider("sk_car_TOPSECRET123")  # registers the key for redaction
    codec = CartesiaCodec()
    opened(codec)
    [error, _] = codec.receive(server("error", done=True, message="bad key sk_car_TOPSECRET123"))
    assert isinstance(error, ContextError) and "TOPSECRET" not in error.message


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x00", r"^unexpected binary frame from Cartesia$"),
        ("not json", r"^malformed Cartesia frame: "),
        ('{"context_id": "c1"}', r"^malformed Cartesia frame: Object missing required field"),
        ('{"type": "chunk", "context_id": "c1", "data": "%%%"}', r"^malformed Cartesia frame"),
        ('{"type": "chunk", "data": "AAAA"}', r"^Cartesia 'chunk' frame without context_id$"),
        ('{"type": "surprise", "context_id": "c1"}', r"^unknown Cartesia frame type 'surprise'$"),
    ],
)
def test_frames_it_cannot_decode_are_protocol_errors(frame: str | bytes, message: str) -> None:
    with pytest.raises(trio_tts.ProtocolError, match=message):
        CartesiaCodec().receive(frame)


def test_contexts_are_independent_on_one_connection() -> None:
    codec = CartesiaCodec()
    opened(codec, "a", voice="v-a")
    opened(codec, "b", voice="v-b", model="sonic-2")
    [a] = frames(codec.send_text("a", "For a."))
    [b] = frames(codec.send_text("b", "For b."))
    assert (a["voice"]["id"], a["model_id"]) == ("v-a", "sonic-3")
    assert (b["voice"]["id"], b["model_id"]) == ("v-b", "sonic-2")
    codec.close("a")
    codec.cancel("b")
    assert codec.receive(server("done", "b", done=True)) == [ContextClosed("b")]
    assert codec.receive(chunk(b"\x05\x06", "a")) == [Audio("a", b"\x05\x06")]
    assert codec.receive(server("done", "a", done=True)) == [ContextClosed("a")]
    assert repr(codec) == "<CartesiaCodec contexts=0 expired=0>"


# ------------------------------------------------------- back to back with the server's codec


@pytest.mark.parametrize(
    "options",
    [
        CartesiaOptions(),
        CartesiaOptions(encoding="pcm_mulaw", sample_rate=8000, speed=1.5, volume=2.0,
                        emotion="Calm", word_timestamps=True, max_buffer_delay_ms=0),
        CartesiaOptions(model="sonic-2", encoding="pcm_f32le", sample_rate=44100, language=None,
                        use_normalized_timestamps=False, pronunciation_dict_id="d"),
    ],
    ids=["defaults", "telephony", "f32"],
)  # fmt: skip
def test_the_servers_codec_reads_every_request_as_sent(options: CartesiaOptions) -> None:
    from trio_tts.server.cartesia import proto
    from trio_tts.server.cartesia.config import ContextConfig, context_config

    codec = CartesiaCodec()
    codec.create("c1", options)
    sent = [
        *codec.send_text("c1", "Hello there. ", flush=True),
        *codec.close("c1"),
    ]
    messages = [proto.decode_message(frame) for frame in sent]
    assert [(m.transcript, m.continue_, m.flush) for m in messages] == [  # type: ignore[union-attr]
        ("Hello there. ", True, False), ("", True, True), ("", False, False),
    ]  # fmt: skip
    config = context_config(messages[0].fields)  # type: ignore[union-attr]
    assert isinstance(config, ContextConfig), config
    assert (config.voice_id, config.model_id) == (options.voice, options.model)
    assert (config.sample_rate, config.add_timestamps) == (
        options.sample_rate, options.word_timestamps,
    )  # fmt: skip
    assert config.encoding == options.request_fields()["output_format"]["encoding"]
    codec2 = CartesiaCodec()
    codec2.create("c2", options)
    codec2.send_text("c2", "Hi.")
    assert proto.decode_message(codec2.cancel("c2")[0]) == proto.Cancel("c2")


def test_the_servers_frames_decode_to_the_engines_events() -> None:
    from trio_tts.server.cartesia import proto

    codec = CartesiaCodec()
    opened(codec)
    codec.flush("c1")
    words = [("Hello", 0.0, 0.3), ("there.", 0.36, 0.72)]
    assert codec.receive(proto.encode_chunk(b"\x07\x08", "c1", step_time=1.5, flush_id=1)) == [
        Audio("c1", b"\x07\x08")
    ]
    assert codec.receive(proto.encode_timestamps(words, 2.0, "c1", flush_id=1)) == [
        Audio("c1", b"", (WordTiming("Hello", 2.0, 2.3), WordTiming("there.", 2.36, 2.72)))
    ]
    assert codec.receive(proto.encode_flush_done("c1", 1)) == [
        FlushCompleted("c1", timings_restart=False)
    ]
    codec.close("c1")
    assert codec.receive(proto.encode_done("c1")) == [ContextClosed("c1")]
    opened(codec, "c2")
    error = proto.ProtocolError(429, "Too many requests", "slow down", "concurrency_limited")
    assert codec.receive(proto.encode_error(error, "c2")) == [
        ContextError("c2", 429, "Too many requests: slow down (concurrency_limited)"),
        ContextClosed("c2"),
    ]
    assert codec.receive(proto.encode_error(error, None)) == [
        ConnectionErrorEvent(429, "Too many requests: slow down (concurrency_limited)")
    ]
