"""Cartesia's options: how one context is synthesised (the fields of every generation request).

Cartesia has no "create": each request of a context carries all of its settings again (model,
voice, output format, language, timestamps, generation config), and they must not change
within the context. The field names mirror the official LiveKit plugin's constructor
(``model``, ``voice``, ``language``, ``encoding``, ``sample_rate``, ``speed``, ``emotion``,
``volume``, ``word_timestamps``, ``use_normalized_timestamps``, ``pronunciation_dict_id``,
``api_version``); :meth:`CartesiaOptions.request_fields` gives their wire names.

What is checked (each an :class:`~trio_tts.InvalidOptions` naming the field, before any I/O),
from Cartesia's documentation and its SDK 4.2.0 (``cartesia/types``):

* ``model``: a Sonic model id (``sonic-3``, ``sonic-3.5``, ``sonic-2``, ``sonic-turbo``,
  ``sonic-latest`` or a dated snapshot such as ``sonic-2-2025-03-07``);
* ``encoding`` × ``sample_rate``: raw ``pcm_s16le`` / ``pcm_f32le`` at 8000, 16000, 22050,
  24000, 44100 or 48000 Hz; the G.711 ones (``pcm_mulaw``, ``pcm_alaw``) only at 8000 Hz (our
  rule: G.711 is 8 kHz telephony, the rate Cartesia's output-format guide pairs them with);
* ``language``: one of the SDK's ``SupportedLanguage`` codes;
* ``speed`` (0.6..2.0), ``volume`` (0.5..2.0) and ``emotion`` (one of the SDK's ``Emotion``
  names) go in ``generation_config``, which only Sonic 3 models read: with another model they
  are refused rather than silently ignored;
* ``max_buffer_delay_ms``: 0..5000; ``api_version``: a date ``YYYY-MM-DD``.

Voice embeddings (``{"mode": "embedding"}``) are not offered: the current API version takes a
voice id only.
"""

from __future__ import annotations

import re
from typing import Any, Final

import attrs

from ..._core.errors import InvalidOptions
from ..._core.options import (
    AudioEncoding,
    check,
    check_fields,
    check_names,
    check_sample_rate,
    is_number,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_VOICE",
    "EMOTIONS",
    "ENCODINGS",
    "LANGUAGES",
    "SAMPLE_RATES",
    "CartesiaOptions",
    "to_cartesia_encoding",
]

#: The API version sent by default: the one the official SDK 4.2.0 sends.
API_VERSION: Final = "2026-08-14"
#: "Katie", the LiveKit plugin's default voice (Cartesia's quickstart voice).
DEFAULT_VOICE: Final = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
#: Cartesia's raw encodings, by the engine's names.
ENCODINGS: Final = {
    AudioEncoding.PCM: "pcm_s16le",
    AudioEncoding.PCM_F32LE: "pcm_f32le",
    AudioEncoding.MULAW: "pcm_mulaw",
    AudioEncoding.ALAW: "pcm_alaw",
}
_BY_WIRE_NAME: Final = {wire: encoding for encoding, wire in ENCODINGS.items()}
_BY_ENGINE_NAME: Final = {encoding.value: encoding for encoding in ENCODINGS}
SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 44100, 48000)
_G711: Final = (AudioEncoding.MULAW, AudioEncoding.ALAW)
#: The SDK's ``SupportedLanguage``.
LANGUAGES: Final = frozenset({
    "en", "fr", "de", "es", "pt", "zh", "ja", "hi", "it", "ko", "nl", "pl", "ru", "sv", "tr",
    "tl", "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "hu", "no",
    "vi", "bn", "th", "he", "ka", "id", "te", "gu", "kn", "ml", "mr", "pa", "or", "ur",
})  # fmt: skip
#: The SDK's ``Emotion`` (``generation_config.emotion``), lower case as the API takes them.
EMOTIONS: Final = frozenset({
    "neutral", "happy", "excited", "enthusiastic", "elated", "euphoric", "triumphant", "amazed",
    "surprised", "flirtatious", "curious", "content", "peaceful", "serene", "calm", "grateful",
    "affectionate", "trust", "sympathetic", "anticipation", "mysterious", "angry", "mad",
    "outraged", "frustrated", "agitated", "threatened", "disgusted", "contempt", "envious",
    "sarcastic", "ironic", "sad", "dejected", "melancholic", "disappointed", "hurt", "guilty",
    "bored", "tired", "rejected", "nostalgic", "wistful", "apologetic", "hesitant", "insecure",
    "confused", "resigned", "anxious", "panicked", "alarmed", "scared", "proud", "confident",
    "distant", "skeptical", "contemplative", "determined",
})  # fmt: skip
_MODEL: Final = re.compile(r"^sonic(-[a-z0-9.]+)*?(-\d{4}-\d{2}-\d{2})?$")
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def to_cartesia_encoding(value: object) -> AudioEncoding:
    """An attrs converter: Cartesia's name (``pcm_s16le``, ``pcm_f32le``, ``pcm_mulaw``,
    ``pcm_alaw``) or the engine's (:class:`~trio_tts.AudioEncoding` ``PCM``, ``PCM_F32LE``,
    ``MULAW``, ``ALAW``) as an :class:`~trio_tts.AudioEncoding`.

    Raises:
        InvalidOptions: any other value (MP3 and the rest are not on Cartesia's WebSocket).
    """
    if isinstance(value, str):
        by_name = _BY_WIRE_NAME.get(value.lower()) or _BY_ENGINE_NAME.get(value.upper())
        if by_name is not None:
            return by_name
    elif isinstance(value, AudioEncoding) and value in ENCODINGS:
        return value
    allowed = ", ".join(ENCODINGS.values())
    raise InvalidOptions(f"encoding: {value!r} is not one of {allowed}")


def _is_sonic_3(model: str) -> bool:
    """Models that read ``generation_config`` (``sonic-3``, ``sonic-3.5``, ``sonic-latest``)."""
    return model.startswith("sonic-3") or model == "sonic-latest"


@attrs.frozen(kw_only=True)
class CartesiaOptions:
    """How one Cartesia context is synthesised (the fields every generation request carries).

    Example::

        opts = CartesiaOptions(voice="f786b574-daa5-4673-aa0c-cbe3e8534c02", sample_rate=24000)
        phone = opts.replace(encoding="pcm_mulaw", sample_rate=8000, speed=1.1)

    ``None`` fields are not sent (the service's default applies).

    Raises:
        InvalidOptions: see the module docstring for every rule.
    """

    voice: str = DEFAULT_VOICE
    model: str = "sonic-3"
    #: ``output_format.encoding``: ``pcm_s16le`` (:attr:`AudioEncoding.PCM`) by default.
    encoding: AudioEncoding = attrs.field(
        default=AudioEncoding.PCM, converter=to_cartesia_encoding
    )
    sample_rate: int = 24000
    language: str | None = "en"
    #: ``generation_config.speed`` (Sonic 3): 0.6..2.0, 1.0 is normal.
    speed: float | None = None
    #: ``generation_config.volume`` (Sonic 3): 0.5..2.0.
    volume: float | None = None
    #: ``generation_config.emotion`` (Sonic 3): one of :data:`EMOTIONS` (any case).
    emotion: str | None = None
    #: ``add_timestamps``: word timings (``Audio.words``, seconds from the context's start).
    word_timestamps: bool = False
    use_normalized_timestamps: bool | None = None
    #: How long the service may buffer text before it starts a generation (0..5000 ms).
    max_buffer_delay_ms: int | None = None
    pronunciation_dict_id: str | None = None
    #: The ``cartesia_version`` the connection is opened with.
    api_version: str = API_VERSION

    def __attrs_post_init__(self) -> None:
        check_names(self, "voice", "model")
        check(
            _MODEL.match(self.model) is not None,
            "model",
            f"{self.model!r} is not a Sonic model (sonic-3, sonic-2, sonic-turbo, sonic-latest)",
        )
        check_sample_rate(self.sample_rate, SAMPLE_RATES)
        check(
            self.encoding not in _G711 or self.sample_rate == 8000,
            "sample_rate",
            f"{ENCODINGS[self.encoding]} is 8000 Hz telephony audio, not {self.sample_rate}",
        )
        check(
            self.language is None or self.language in LANGUAGES,
            "language",
            f"{self.language!r} is not a language Cartesia speaks (en, fr, de, es ...)",
        )
        for name, low, high in (("speed", 0.6, 2.0), ("volume", 0.5, 2.0)):
            value = getattr(self, name)
            check(
                value is None or (is_number(value) and low <= value <= high),
                name,
                f"{value!r} is outside {low}..{high}",
            )
        if self.emotion is not None:
            check(
                isinstance(self.emotion, str) and self.emotion.lower() in EMOTIONS,
                "emotion",
                f"{self.emotion!r} is not one of Cartesia's emotions (happy, calm, sad ...)",
            )
        generation = [n for n in ("speed", "volume", "emotion") if getattr(self, n) is not None]
        check(
            not generation or _is_sonic_3(self.model),
            generation[0] if generation else "speed",
            f"generation_config is read by Sonic 3 models only, not {self.model!r}",
        )
        check(isinstance(self.word_timestamps, bool), "word_timestamps", "must be True or False")
        check(
            self.use_normalized_timestamps is None
            or isinstance(self.use_normalized_timestamps, bool),
            "use_normalized_timestamps",
            "must be True, False or None",
        )
        delay = self.max_buffer_delay_ms
        check(
            delay is None
            or (isinstance(delay, int) and not isinstance(delay, bool) and 0 <= delay <= 5000),
            "max_buffer_delay_ms",
            f"{delay!r} is not an integer in 0..5000",
        )
        check(
            self.pronunciation_dict_id is None
            or (isinstance(self.pronunciation_dict_id, str) and bool(self.pronunciation_dict_id)),
            "pronunciation_dict_id",
            "must be a non-empty string or None",
        )
        check(
            isinstance(self.api_version, str) and _DATE.match(self.api_version) is not None,
            "api_version",
            f"{self.api_version!r} is not a date YYYY-MM-DD",
        )

    def replace(self, **changes: Any) -> CartesiaOptions:
        """Return a copy with ``changes`` applied (validated the same way).

        Raises:
            InvalidOptions: for an unknown field name or an invalid value.
        """
        check_fields(CartesiaOptions, changes)
        return attrs.evolve(self, **changes)

    def request_fields(self, *, streaming: bool = True) -> dict[str, Any]:
        """The settings of a generation request under their wire names (everything but
        ``context_id``, ``transcript``, ``continue`` and ``flush``): the same in every
        WebSocket request of a context (``streaming``) and in the HTTP ``/tts/bytes`` body,
        which has no timestamps or buffering (as the LiveKit plugin's
        ``_to_cartesia_options(streaming=...)``)."""
        fields: dict[str, Any] = {
            "model_id": self.model,
            "voice": {"mode": "id", "id": self.voice},
            "output_format": {
                "container": "raw",
                "encoding": ENCODINGS[self.encoding],
                "sample_rate": self.sample_rate,
            },
        }
        if self.language is not None:
            fields["language"] = self.language
        generation: dict[str, Any] = {}
        if self.speed is not None:
            generation["speed"] = self.speed
        if self.volume is not None:
            generation["volume"] = self.volume
        if self.emotion is not None:
            generation["emotion"] = self.emotion.lower()
        if generation:
            fields["generation_config"] = generation
        if self.pronunciation_dict_id is not None:
            fields["pronunciation_dict_id"] = self.pronunciation_dict_id
        if streaming:
            fields["add_timestamps"] = self.word_timestamps
            if self.use_normalized_timestamps is not None:
                fields["use_normalized_timestamps"] = self.use_normalized_timestamps
            if self.max_buffer_delay_ms is not None:
                fields["max_buffer_delay_ms"] = self.max_buffer_delay_ms
        return fields
