"""Synthesis options: frozen attrs classes validated at construction.

Every invalid value raises :class:`~trio_tts.InvalidOptions` with a message naming the
field, before anything touches the network.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import attrs

from .errors import InvalidOptions

__all__ = ["AudioEncoding", "TimestampType", "VoiceOptions"]

_E = TypeVar("_E", bound=enum.StrEnum)


class AudioEncoding(enum.StrEnum):
    """Audio encodings a context may ask for."""

    #: 16-bit little-endian PCM; Inworld prefixes every chunk with a WAV header (stripped).
    LINEAR16 = "LINEAR16"
    #: 16-bit little-endian PCM, no headers.
    PCM = "PCM"
    MP3 = "MP3"
    OGG_OPUS = "OGG_OPUS"
    FLAC = "FLAC"

    @property
    def is_pcm(self) -> bool:
        """True when the audio is raw 16-bit samples once headers are removed."""
        return self in (AudioEncoding.LINEAR16, AudioEncoding.PCM)


class TimestampType(enum.StrEnum):
    """Which timings the server attaches to audio chunks."""

    WORD = "WORD"
    CHARACTER = "CHARACTER"


def _check(cond: bool, field: str, message: str) -> None:
    if not cond:
        raise InvalidOptions(f"{field}: {message}")


def _check_names(options: object, *fields: str) -> None:
    """Each of ``fields`` (voice, model ...) of ``options`` is a non-empty string."""
    for name in fields:
        value = getattr(options, name)
        _check(isinstance(value, str) and bool(value.strip()), name, "must be a non-empty string")


def _check_sample_rate(sample_rate: object, allowed: tuple[int, ...]) -> None:
    _check(
        isinstance(sample_rate, int) and sample_rate in allowed,
        "sample_rate",
        f"{sample_rate!r} is not one of {', '.join(map(str, allowed))}",
    )


def _to_enum(kind: type[_E], value: object) -> _E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.upper())
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in kind)
    raise InvalidOptions(f"{kind.__name__}: {value!r} is not one of {allowed}")


def _to_encoding(value: object) -> AudioEncoding:
    return _to_enum(AudioEncoding, value)


def _to_timestamp_type(value: object) -> TimestampType | None:
    return None if value is None else _to_enum(TimestampType, value)


_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@attrs.frozen(kw_only=True)
class VoiceOptions:
    """How one context is synthesised (Inworld's ``create`` message).

    Example::

        opts = VoiceOptions(voice="Ashley", sample_rate=24000)
        faster = opts.replace(speaking_rate=1.2)

    Raises:
        InvalidOptions: for an empty voice/model, an unsupported sample rate, a speaking
            rate outside 0.5–1.5, a temperature outside (0, 2], or a bad enum value.
    """

    voice: str = "Ashley"
    model: str = "inworld-tts-1"
    encoding: AudioEncoding = attrs.field(default=AudioEncoding.LINEAR16, converter=_to_encoding)
    sample_rate: int = 24000
    bit_rate: int = 64000
    speaking_rate: float = 1.0
    temperature: float = 1.0
    timestamp_type: TimestampType | None = attrs.field(default=None, converter=_to_timestamp_type)
    language: str | None = None
    apply_text_normalization: bool | None = None
    auto_mode: bool | None = None
    buffer_char_threshold: int | None = None
    max_buffer_delay_ms: int | None = None

    def __attrs_post_init__(self) -> None:
        _check_names(self, "voice", "model")
        _check_sample_rate(self.sample_rate, _SAMPLE_RATES)
        _check(
            isinstance(self.bit_rate, int) and 8000 <= self.bit_rate <= 320000,
            "bit_rate",
            f"{self.bit_rate!r} is outside 8000..320000",
        )
        _check(
            isinstance(self.speaking_rate, int | float) and 0.5 <= self.speaking_rate <= 1.5,
            "speaking_rate",
            f"{self.speaking_rate!r} is outside 0.5..1.5",
        )
        _check(
            isinstance(self.temperature, int | float) and 0 < self.temperature <= 2,
            "temperature",
            f"{self.temperature!r} is outside (0, 2]",
        )
        if self.language is not None:
            _check(
                isinstance(self.language, str) and bool(self.language),
                "language",
                "must be non-empty",
            )
        if self.buffer_char_threshold is not None:
            _check(
                isinstance(self.buffer_char_threshold, int)
                and 1 <= self.buffer_char_threshold <= 1000,
                "buffer_char_threshold",
                f"{self.buffer_char_threshold!r} is outside 1..1000",
            )
        if self.max_buffer_delay_ms is not None:
            _check(
                isinstance(self.max_buffer_delay_ms, int)
                and 0 <= self.max_buffer_delay_ms <= 10000,
                "max_buffer_delay_ms",
                f"{self.max_buffer_delay_ms!r} is outside 0..10000",
            )

    def replace(self, **changes: Any) -> VoiceOptions:
        """Return a copy with ``changes`` applied (validated the same way).

        Raises:
            InvalidOptions: for an unknown field name or an invalid value.
        """
        unknown = set(changes) - {f.name for f in attrs.fields(VoiceOptions)}
        if unknown:
            raise InvalidOptions(f"unknown option(s): {', '.join(sorted(unknown))}")
        return attrs.evolve(self, **changes)
