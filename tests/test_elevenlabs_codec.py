"""The sans-io ElevenLabs codec, options and provider: plain pytest, no event loop."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any, get_args

import pytest

import trio_tts
from trio_tts._core.events import Audio, ContextClosed, ContextError, WordTiming
from trio_tts.providers.elevenlabs.codec import ElevenLabsCodec
from trio_tts.providers.elevenlabs.options import (
    OUTPUT_FORMATS,
    ElevenLabsOptions,
    OutputFormat,
    VoiceSettings,
    parse_output_format,
)
from trio_tts.providers.elevenlabs.provider import DEFAULT_URL, ElevenLabsProvider

MULTI = "/v1/text-to-speech/{voice_id}/multi-stream-input"


def frames(out: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in out]


def server_frame(cid: str | None = "c1", **fields: Any) -> str:
    if "audio" in fields and isinstance(fields["audio"], bytes):
        fields["audio"] = base64.b64encode(fields["audio"]).decode()
    if cid is not None:
        fields["contextId"] = cid
    return json.dumps(fields)


def alignment(text: str, start_ms: float, per_char_ms: float = 10.0) -> dict[str, Any]:
    n = len(text)
    return {
        "chars": list(text),
        "charStartTimesMs": [start_ms + i * per_char_ms for i in range(n)],
        "charDurationsMs": [per_char_ms] * n,
    }


# ------------------------------------------------------------------------------ options


def test_the_output_format_gives_encoding_and_sample_rate() -> None:
    assert set(OUTPUT_FORMATS) == set(get_args(OutputFormat))
    for name, (encoding, rate, _) in OUTPUT_FORMATS.items():
        opts = ElevenLabsOptions(output_format=name)
        assert (opts.encoding, opts.sample_rate) == (encoding, rate)
        assert name.split("_")[1] == str(rate)
    assert parse_output_format("pcm_16000") == (trio_tts.AudioEncoding.PCM, 16000, None)
    assert parse_output_format("mp3_44100_128") == (trio_tts.AudioEncoding.MP3, 44100, 128)
    assert parse_output_format("opus_48000_64")[0] is trio_tts.AudioEncoding.OGG_OPUS
    assert parse_output_format("ulaw_8000") == (trio_tts.AudioEncoding.MULAW, 8000, None)
    opts = ElevenLabsOptions()
    assert (opts.voice, opts.encoding, opts.sample_rate) == (
        "hpp4J3VqNfWAUOO0d1Us", trio_tts.AudioEncoding.PCM, 24000
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model": "eleven_v3"}, r"^model: 'eleven_v3' speaks ElevenLabs' text-to-dialogue"),
        ({"model": "eleven_v4_turbo"}, r"^model: 'eleven_v4_turbo' speaks ElevenLabs' text-to-"),
        ({"model": "sonic-3"}, r"^model: 'sonic-3' is not one of eleven_flash_v2_5, "),
        ({"voice_id": " "}, r"^voice_id: must be a non-empty string$"),
        ({"output_format": "pcm_11025"}, r"^output_format: 'pcm_11025' is not one of pcm_8000"),
        ({"output_format": "mp3_8000_32"}, r"^output_format: 'mp3_8000_32' is not one of "),
        ({"output_format": 24000}, r"^output_format: 24000 is not one of "),
        ({"language": "english"}, r"^language: 'english' is not an ISO 639-1 code"),
        ({"model": "eleven_multilingual_v2", "language": "de"},
         r"^language: model 'eleven_multilingual_v2' takes no language_code \(only "),
        ({"apply_text_normalization": "on"},
         r"^apply_text_normalization: cannot be 'on' with model 'eleven_turbo_v2_5'$"),
        ({"apply_text_normalization": "maybe"}, r"^apply_text_normalization: 'maybe' is not"),
        ({"inactivity_timeout": 181}, r"^inactivity_timeout: 181 is not an integer in 1\.\.180"),
        ({"inactivity_timeout": 0}, r"^inactivity_timeout: 0 is not an integer in 1\.\.180"),
        ({"inactivity_timeout": 20.5}, r"^inactivity_timeout: 20\.5 is not an integer"),
        ({"voice_settings": {"stability": 1.5}},
         r"^voice_settings\.stability: 1\.5 is outside 0\.\.1$"),
        ({"voice_settings": {"speed": 1.3}},
         r"^voice_settings\.speed: 1\.3 is outside 0\.7\.\.1\.2$"),
        ({"voice_settings": {"speed": True}}, r"^voice_settings\.speed: True is outside"),
        ({"voice_settings": {"pitch": 1}}, r"^voice_settings: unknown field\(s\) pitch$"),
        ({"voice_settings": 0.5}, r"^voice_settings: expected VoiceSettings, got float$"),
        ({"voice_settings": {"use_speaker_boost": 1}},
         r"^voice_settings\.use_speaker_boost: must be a bool or None$"),
        ({"chunk_length_schedule": [40]}, r"^chunk_length_schedule: \(40,\) is not 1\.\.4 sizes"),
        ({"chunk_length_schedule": [50] * 5}, r"^chunk_length_schedule: .* is not 1\.\.4 sizes"),
        ({"pronunciation_dictionary_locators": [("id",)]},
         r"^pronunciation_dictionary_locators: must be 1\.\.3 \(pronunciation_dictionary_id"),
        ({"preferred_alignment": "both"}, r"^preferred_alignment: 'both' is not 'normalized'"),
        ({"auto_mode": "yes"}, r"^auto_mode: must be a bool or None$"),
        ({"sync_alignment": None}, r"^sync_alignment: must be True or False$"),
        ({"stability": 0.5}, r"^unknown option\(s\): stability$"),
    ],
)  # fmt: skip
def test_invalid_options_are_refused_with_the_field_named(
    changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        ElevenLabsOptions().replace(**changes)


def test_options_are_frozen_hashable_and_take_mappings() -> None:
    opts = ElevenLabsOptions(
        voice_settings={"stability": 0.4, "use_speaker_boost": True},
        chunk_length_schedule=[50, 120],
        pronunciation_dictionary_locators=[["dict", "v1"]],
    )
    assert opts.voice_settings == VoiceSettings(stability=0.4, use_speaker_boost=True)
    assert opts.chunk_length_schedule == (50, 120)
    assert opts.pronunciation_dictionary_locators == (("dict", "v1"),)
    assert hash(opts) == hash(opts.replace())
    assert opts.context_fields() == {
        "voice_settings": {"stability": 0.4, "use_speaker_boost": True},
        "generation_config": {"chunk_length_schedule": [50, 120]},
        "pronunciation_dictionary_locators": [
            {"pronunciation_dictionary_id": "dict", "version_id": "v1"}
        ],
    }
    assert ElevenLabsOptions().context_fields() == {"voice_settings": {}}


def test_language_goes_with_the_v2_5_models() -> None:
    for model in ("eleven_turbo_v2_5", "eleven_flash_v2_5"):
        assert ElevenLabsOptions(model=model, language="de").query()["language_code"] == "de"


# ----------------------------------------------------------------------------- provider


def test_the_url_carries_the_voice_and_the_connection_options() -> None:
    provider = ElevenLabsProvider("xi-s3cret", url="http://127.0.0.1:9")
    opts = ElevenLabsOptions(
        voice_id="21m00Tcm4TlvDq8ikWAM", model="eleven_flash_v2_5", output_format="pcm_16000",
        language="en", auto_mode=True, inactivity_timeout=60, enable_logging=False,
        apply_language_text_normalization=True,
    )  # fmt: skip
    split = urllib.parse.urlsplit(provider.url(opts))
    assert (split.scheme, split.netloc) == ("ws", "127.0.0.1:9")
    assert split.path == "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/multi-stream-input"
    assert urllib.parse.parse_qsl(split.query) == [
        ("model_id", "eleven_flash_v2_5"), ("output_format", "pcm_16000"),
        ("language_code", "en"), ("enable_ssml_parsing", "false"),
        ("enable_logging", "false"), ("inactivity_timeout", "60"),
        ("apply_text_normalization", "auto"), ("apply_language_text_normalization", "true"),
        ("sync_alignment", "true"), ("auto_mode", "true"),
    ]  # fmt: skip
    assert provider.headers() == [("xi-api-key", "xi-s3cret")]
    assert "xi-s3cret" not in repr(provider)
    assert ElevenLabsProvider().headers() == []


def test_contexts_differing_only_in_per_context_settings_share_a_connection() -> None:
    provider = ElevenLabsProvider()
    base = ElevenLabsOptions()
    key = provider.connection_key(base)
    assert provider.connection_key(base.replace(voice_settings={"speed": 1.1})) == key
    assert provider.connection_key(base.replace(chunk_length_schedule=(50,))) == key
    assert provider.connection_key(base.replace(preferred_alignment="original")) == key
    for other in (
        {"voice_id": "other"}, {"model": "eleven_flash_v2_5"}, {"output_format": "pcm_16000"},
        {"language": "en"}, {"inactivity_timeout": 60}, {"auto_mode": True},
    ):  # fmt: skip
        assert provider.connection_key(base.replace(**other)) != key, other


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://127.0.0.1:9", "ws://127.0.0.1:9" + MULTI),
        ("http://127.0.0.1:9/", "ws://127.0.0.1:9" + MULTI),
        ("http://127.0.0.1:9/v1", "ws://127.0.0.1:9" + MULTI),  # LiveKit's base_url form
        ("https://api.elevenlabs.io/v1/", "wss://api.elevenlabs.io" + MULTI),
        ("wss://api.elevenlabs.io", "wss://api.elevenlabs.io" + MULTI),
        ("https://proxy.example/el/v1", "wss://proxy.example/el/v1/text-to-speech/{voice_id}"
         "/multi-stream-input"),
        ("ws://h:1/custom/{voice_id}/x", "ws://h:1/custom/{voice_id}/x"),
        (DEFAULT_URL, DEFAULT_URL),
    ],
)  # fmt: skip
def test_a_base_url_becomes_the_endpoint(url: str, want: str) -> None:
    provider = ElevenLabsProvider(url=url)
    got = provider.url(ElevenLabsOptions(voice_id="v1ce"))
    assert got.split("?", 1)[0] == want.replace("{voice_id}", "v1ce")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "ftp://h"}, r"^url: must start with ws://, wss://, http:// or https://$"),
        ({"url": "http://"}, r"^url: has no host$"),
        ({"url": "ws://h/v1?model_id=x"}, r"^url: must not carry a query \(the options make it\)$"),
        ({"contexts_per_connection": 0}, r"^contexts_per_connection: 0 is not a positive int$"),
        ({"max_contexts": 0}, r"^max_contexts: 0 is not a positive int or None$"),
        ({"keepalive_interval": 0}, r"^keepalive_interval: 0 must be positive or None$"),
        ({"max_text_chars": True}, r"^max_text_chars: True is not a positive int$"),
    ],
)  # fmt: skip
def test_bad_provider_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=match):
        ElevenLabsProvider(**kwargs)


def test_an_inactivity_timeout_keep_alives_cannot_honour_is_refused() -> None:
    provider = ElevenLabsProvider(keepalive_interval=10)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^inactivity_timeout: 20 s is not longer"):
        provider.connection_key(ElevenLabsOptions(inactivity_timeout=20))
    assert provider.connection_key(ElevenLabsOptions(inactivity_timeout=21))
    assert ElevenLabsProvider(keepalive_interval=None).url(ElevenLabsOptions(inactivity_timeout=1))
    with pytest.raises(trio_tts.InvalidOptions, match=r"^options: expected ElevenLabsOptions"):
        provider.url(trio_tts.VoiceOptions())  # type: ignore[arg-type]


def test_from_env_reads_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    monkeypatch.delenv("ELEVEN_API_KEY", raising=False)
    assert ElevenLabsProvider.from_env().headers() == []
    monkeypatch.setenv("ELEVEN_API_KEY", "lk-key")
    assert ElevenLabsProvider.from_env().headers() == [("xi-api-key", "lk-key")]
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sdk-key")
    assert ElevenLabsProvider.from_env(max_contexts=3).headers() == [("xi-api-key", "sdk-key")]
    assert ElevenLabsProvider.from_env(max_contexts=3).max_contexts == 3


def test_the_provider_declares_elevenlabs_limits() -> None:
    provider = ElevenLabsProvider()
    assert (provider.name, provider.contexts_per_connection, provider.max_contexts) == (
        "elevenlabs", 5, 15
    )  # fmt: skip
    assert provider.keepalive_interval == 5.0
    assert 1008 not in provider.fatal_close_codes  # ElevenLabs closes with 1008 for anything
    assert 1008 in trio_tts.InworldProvider().fatal_close_codes
    assert trio_tts.InworldProvider().keepalive_interval is None


# ------------------------------------------------------------------------ codec: commands


def test_create_is_the_context_init_message() -> None:
    codec = ElevenLabsCodec()
    opts = ElevenLabsOptions(voice_settings=VoiceSettings(stability=0.5, speed=1.1),
                             chunk_length_schedule=(50, 90))  # fmt: skip
    assert frames(codec.create("c1", opts)) == [
        {
            "text": " ",
            "voice_settings": {"stability": 0.5, "speed": 1.1},
            "generation_config": {"chunk_length_schedule": [50, 90]},
            "context_id": "c1",
        }
    ]
    assert frames(codec.create("c2", ElevenLabsOptions())) == [
        {"text": " ", "voice_settings": {}, "context_id": "c2"}
    ]


def test_text_flush_close_and_cancel() -> None:
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions())
    # Verbatim: the server concatenates, a piece may end inside a word.
    assert frames(codec.send_text("c1", "Hel")) == [{"text": "Hel", "context_id": "c1"}]
    # A flushed piece ends a phrase: the trailing space ElevenLabs wants is added.
    assert frames(codec.send_text("c1", "lo there.", flush=True)) == [
        {"text": "lo there. ", "context_id": "c1", "flush": True}
    ]
    assert frames(codec.send_text("c1", "Again. ", flush=True))[0]["text"] == "Again. "
    assert codec.send_text("c1", "") == []  # an empty text would be a keep-alive
    assert frames(codec.flush("c1")) == [{"text": "", "context_id": "c1", "flush": True}]
    # close: a flush first (close_context alone drops unflushed text), then close_context.
    assert frames(codec.close("c1")) == [
        {"text": "", "context_id": "c1", "flush": True},
        {"context_id": "c1", "close_context": True},
    ]
    assert codec.close("c1") == codec.cancel("c1") == codec.send_text("c1", "late") == []
    codec.create("c2", ElevenLabsOptions())
    assert frames(codec.cancel("c2")) == [{"context_id": "c2", "close_context": True}]
    assert codec.cancel("c2") == codec.flush("c2") == []
    assert codec.send_text("unknown", "x") == codec.cancel("unknown") == []
    assert frames(codec.goodbye()) == [{"close_socket": True}]
    assert codec.take_events() == []


def test_keepalive_goes_to_open_contexts_silent_for_a_whole_round() -> None:
    codec = ElevenLabsCodec()
    codec.create("a", ElevenLabsOptions())
    codec.create("b", ElevenLabsOptions())
    assert codec.keepalive() == []  # both sent their init since the last round
    codec.send_text("a", "Hello ")
    assert frames(codec.keepalive()) == [{"text": "", "context_id": "b"}]
    assert frames(codec.keepalive()) == [
        {"text": "", "context_id": "a"}, {"text": "", "context_id": "b"}
    ]  # fmt: skip
    codec.close("a")  # closing: no keep-alive may follow its close_context
    codec.receive(server_frame("b", isFinal=True))  # gone
    assert codec.keepalive() == []
    assert codec.keepalives_sent == 3


# -------------------------------------------------------------------- codec: server frames


def test_audio_is_decoded_once_and_routed_by_context() -> None:
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions(sync_alignment=False))
    events = codec.receive(server_frame("c1", audio=b"\x01\x02\x03\x04"))
    assert events == [Audio("c1", b"\x01\x02\x03\x04")]
    # snake_case spellings (seen on the wire) are read too.
    events = codec.receive(json.dumps({"audio": base64.b64encode(b"zz").decode(),
                                       "context_id": "c1"}))  # fmt: skip
    assert events == [Audio("c1", b"zz")]
    assert codec.receive(json.dumps({"is_final": True, "context_id": "c1"})) == [
        ContextClosed("c1")
    ]
    # After isFinal the context is forgotten; a late frame still decodes (the pool drops it).
    assert codec.receive(server_frame("c1", audio=b"\x00\x00")) == [Audio("c1", b"\x00\x00")]
    assert codec.receive(server_frame("c1", audio=None, isFinal=None)) == []


def test_words_are_cumulative_and_cross_frames() -> None:
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions())
    pcm = b"\x00\x00" * 2400  # 0.1 s at 24 kHz
    first = codec.receive(
        server_frame("c1", audio=pcm, normalizedAlignment=alignment("Hello wo", 0.0))
    )
    assert first == [Audio("c1", pcm, (WordTiming("Hello", 0.0, 0.05),))]
    # Cumulative times (LiveKit's reading): the word begun in the first frame ends here.
    second = codec.receive(
        server_frame("c1", audio=pcm, normalizedAlignment=alignment("rld. Bye", 80.0))
    )
    assert second[0].words == (WordTiming("world.", 0.06, 0.12),)  # type: ignore[union-attr]
    last = codec.receive(server_frame("c1", isFinal=True))
    assert last == [Audio("c1", b"", (WordTiming("Bye", 0.13, 0.16),)), ContextClosed("c1")]


def test_chunk_relative_timings_are_made_cumulative() -> None:
    """ElevenLabs' schema calls the times relative to each chunk: they restart at 0, and the
    codec offsets them by the audio before the chunk (exact for PCM)."""
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions(output_format="pcm_16000"))
    half_second = b"\x00\x00" * 8000
    codec.receive(server_frame("c1", audio=half_second, normalizedAlignment=alignment("One ", 0)))
    events = codec.receive(
        server_frame("c1", audio=half_second, normalizedAlignment=alignment("two ", 0))
    )
    assert events[0].words == (WordTiming("two", 0.5, 0.53),)  # type: ignore[union-attr]
    # An alignment with no audio and no finished word: nothing to deliver yet.
    assert codec.receive(server_frame("c1", normalizedAlignment=alignment("three", 5))) == []
    assert codec.receive(server_frame("c1", isFinal=True))[0].words == (  # type: ignore[union-attr]
        WordTiming("three", 1.005, 1.055),
    )


def test_the_original_alignment_when_preferred() -> None:
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions(preferred_alignment="original"))
    frame = server_frame(
        "c1", audio=b"\x00\x00", normalizedAlignment=alignment("two ", 0),
        alignment=alignment("2 ", 0),
    )  # fmt: skip
    assert codec.receive(frame)[0].words == (WordTiming("2", 0.0, 0.01),)  # type: ignore[union-attr]


def test_errors_with_a_context_fail_it_and_without_one_end_the_connection() -> None:
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions())
    error = server_frame("c1", error="internal_error", message="boom", code=1011)
    # ElevenLabs drops a context it reports failed: the error is also its end.
    assert codec.receive(error) == [
        ContextError("c1", 1011, "internal_error: boom"), ContextClosed("c1")
    ]  # fmt: skip
    assert codec.cancel("c1") == []  # forgotten: nothing more is sent for it
    # An error for a context the codec does not carry (e.g. the answer to a close of an
    # unknown one) is only routed: the pool counts it as a stray.
    missing = server_frame("gone", error="context_not_found", message="unknown")
    assert codec.receive(missing) == [ContextError("gone", None, "context_not_found: unknown")]
    busy = server_frame(
        None, error="max_active_conversations", code=1008,
        message="Maximum simultaneous contexts per WebSocket connection exceeded (5).",
    )  # fmt: skip
    with pytest.raises(trio_tts.ConnectionLost) as caught:
        codec.receive(busy)
    assert not isinstance(caught.value, trio_tts.ProtocolError)
    assert caught.value.code == 1008
    assert str(caught.value) == (
        "ElevenLabs error (code 1008): max_active_conversations: Maximum simultaneous contexts"
        " per WebSocket connection exceeded (5)."
    )


def test_error_messages_never_carry_the_key() -> None:
    ElevenLabsProvider("xi-key-0123456789")  # registers the key for redaction
    codec = ElevenLabsCodec()
    frame = server_frame("c1", error="invalid_api_key", message="bad key xi-key-0123456789")
    (event,) = codec.receive(frame)
    assert isinstance(event, ContextError) and "xi-key-0123456789" not in event.message


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"\x00", r"^unexpected binary frame from ElevenLabs$"),
        ("{not json", r"^malformed ElevenLabs frame: "),
        ("[1, 2]", r"^malformed ElevenLabs frame: "),
        ('{"audio": "***", "contextId": "c1"}', r"^malformed ElevenLabs frame: "),
        ('{"audio": "AAAA"}', r"^ElevenLabs frame without contextId$"),
        ('{"contextId": "c1", "status": "ok"}', r"^ElevenLabs frame with no known content$"),
        (server_frame("c1", normalizedAlignment={"chars": ["a", "b"], "charStartTimesMs": [0],
                                                  "charDurationsMs": [1, 1]}),
         r"^ElevenLabs alignment has 2 chars, 1 start times and 2 durations$"),
    ],
)  # fmt: skip
def test_frames_the_codec_cannot_read_are_protocol_errors(frame: str | bytes, match: str) -> None:
    codec = ElevenLabsCodec()
    codec.create("c1", ElevenLabsOptions())
    with pytest.raises(trio_tts.ProtocolError, match=match):
        codec.receive(frame)
