"""What every provider's options share: the :class:`Options` protocol the engine reads, the
audio enums, and the validation helpers the providers' frozen attrs classes use.

Each provider defines its own options class beside its codec
(:class:`~trio_tts.providers.inworld.options.VoiceOptions`,
:class:`~trio_tts.providers.rime.options.RimeOptions`). Every invalid value raises
:class:`~trio_tts.InvalidOptions` with a message naming the field, before anything touches the
network.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, Self, TypeVar

import attrs

from .errors import InvalidOptions

__all__ = [
    "SAMPLE_RATES",
    "AudioEncoding",
    "Options",
    "TimestampType",
    "check",
    "check_fields",
    "check_names",
    "check_sample_rate",
    "is_number",
    "to_encoding",
    "to_enum",
    "to_timestamp_type",
]

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
    #: 32-bit little-endian float PCM, no headers (Cartesia's ``pcm_f32le``).
    PCM_F32LE = "PCM_F32LE"
    #: G.711 mu-law, one byte a sample, no headers (Cartesia's ``pcm_mulaw``).
    MULAW = "MULAW"
    #: G.711 A-law, one byte a sample, no headers (Cartesia's ``pcm_alaw``).
    ALAW = "ALAW"

    @property
    def is_pcm(self) -> bool:
        """True when the audio is raw 16-bit samples once headers are removed."""
        return self in (AudioEncoding.LINEAR16, AudioEncoding.PCM)

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one (mono) sample of raw audio in this encoding; 0 for the compressed
        ones (MP3, OGG_OPUS, FLAC), whose duration the byte count does not tell."""
        return _BYTES_PER_SAMPLE.get(self, 0)


_BYTES_PER_SAMPLE = {
    AudioEncoding.LINEAR16: 2,
    AudioEncoding.PCM: 2,
    AudioEncoding.PCM_F32LE: 4,
    AudioEncoding.MULAW: 1,
    AudioEncoding.ALAW: 1,
}


class TimestampType(enum.StrEnum):
    """Which timings the server attaches to audio chunks."""

    WORD = "WORD"
    CHARACTER = "CHARACTER"


class Options(Protocol):
    """What the engine itself reads of a provider's options class.

    The pool treats options opaquely: the provider turns them into a URL, a connection key and
    ``create`` frames. Only these members are shared (a :class:`~trio_tts.Context` keeps word
    timings monotonic from the sample rate and encoding): Inworld's
    :class:`~trio_tts.VoiceOptions` and :class:`~trio_tts.RimeOptions` both have them.
    """

    @property
    def voice(self) -> str: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def encoding(self) -> AudioEncoding: ...
    def replace(self, **changes: Any) -> Self: ...


#: The sample rates both providers accept (Hz).
SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

def check(cond: bool, field: str, message: str) -> None:
    """Raise ``InvalidOptions("<field>: <message>")`` unless ``cond``."""
    if not cond:
        raise InvalidOptions(f"{field}: {message}")


def is_number(value: object) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_names(options: object, *fields: str) -> None:
    """Each of ``fields`` (voice, model ...) of ``options`` is a non-empty string."""
    for name in fields:
        value = getattr(options, name)
        check(isinstance(value, str) and bool(value.strip()), name, "must be a non-empty string")


def check_sample_rate(sample_rate: object, allowed: tuple[int, ...] = SAMPLE_RATES) -> None:
    """``sample_rate`` is an int in ``allowed``."""
    check(
        isinstance(sample_rate, int) and sample_rate in allowed,
        "sample_rate",
        f"{sample_rate!r} is not one of {', '.join(map(str, allowed))}",
    )


def to_enum(kind: type[_E], value: object) -> _E:
    """``value`` as a member of ``kind`` (case-insensitive by value)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.upper())
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in kind)
    raise InvalidOptions(f"{kind.__name__}: {value!r} is not one of {allowed}")


def to_encoding(value: object) -> AudioEncoding:
    """An attrs converter: ``value`` as an :class:`AudioEncoding`."""
    return to_enum(AudioEncoding, value)


def to_timestamp_type(value: object) -> TimestampType | None:
    """An attrs converter: ``value`` as a :class:`TimestampType` (None stays None)."""
    return None if value is None else to_enum(TimestampType, value)


def check_fields(kind: type[attrs.AttrsInstance], changes: dict[str, Any]) -> None:
    """Every key of ``changes`` names a field of the attrs class ``kind`` (``replace()``).

    Raises:
        InvalidOptions: for an unknown field name.
    """
    unknown = set(changes) - {f.name for f in attrs.fields(kind)}
    if unknown:
        raise InvalidOptions(f"unknown option(s): {', '.join(sorted(unknown))}")
