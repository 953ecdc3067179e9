"""What a synthesiser produces (:class:`Speech`), its WAV header and the voices the server
offers."""

from __future__ import annotations

import struct

import attrs

__all__ = ["VOICES", "Speech", "UnknownVoice", "VoiceInfo", "wav_header"]


class UnknownVoice(ValueError):
    """The requested voice is not one the server offers."""


@attrs.frozen(repr=False)
class Speech:
    """Synthesised audio: int16 little-endian mono PCM plus word timings in seconds."""

    pcm: bytes
    sample_rate: int
    words: list[tuple[str, float, float]] = attrs.field(factory=list)

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    def __repr__(self) -> str:
        return (
            f"Speech(duration={self.duration:.3f}s, sample_rate={self.sample_rate}, "
            f"words={len(self.words)})"
        )


@attrs.frozen
class VoiceInfo:
    """One voice: its Inworld name and the eSpeak voice that speaks for it."""

    voice_id: str
    espeak_name: str
    language: str
    gender: str
    description: str


def _voices(*rows: tuple[str, str, str, str, str]) -> dict[str, VoiceInfo]:
    return {row[0]: VoiceInfo(*row) for row in rows}


#: Inworld voice names → eSpeak NG voices (``language+variant``).
VOICES: dict[str, VoiceInfo] = _voices(
    ("Ashley", "en-us+f3", "en", "female", "A warm, natural female voice"),
    ("Dennis", "en-us+m3", "en", "male", "Middle-aged man with a smooth, calm voice"),
    ("Alex", "en-us+m1", "en", "male", "Energetic and expressive mid-range male voice"),
    ("Edward", "en+m2", "en", "male", "Male with an emphatic and streetwise tone"),
    ("Olivia", "en+f2", "en", "female", "Young, British female with an upbeat tone"),
    ("Hades", "en-us+m7", "en", "male", "Commanding and gruff male voice"),
    ("Julia", "en-us+f4", "en", "female", "Quirky, high-pitched female voice"),
    ("Mark", "en-us+m4", "en", "male", "Energetic, expressive man with a rapid-fire delivery"),
    ("Priya", "en-us+f5", "en", "female", "Even-toned female voice with an Indian accent"),
    ("Diego", "es+m3", "es", "male", "Soothing, gentle Spanish-speaking male voice"),
    ("Lupita", "es+f3", "es", "female", "Vibrant Spanish-speaking female voice"),
    ("Alain", "fr+m3", "fr", "male", "Smooth French-speaking male voice"),
    ("Hélène", "fr+f3", "fr", "female", "Gentle French-speaking female voice"),
)


def wav_header(data_bytes: int, sample_rate: int, *, channels: int = 1, bits: int = 16) -> bytes:
    """The 44-byte RIFF/WAVE header of ``data_bytes`` of PCM (Inworld puts one in front of
    every ``LINEAR16`` chunk; Rime's HTTP ``audio/wav`` in front of the whole answer)."""
    block = channels * bits // 8
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels,
        sample_rate, sample_rate * block, block, bits, b"data", data_bytes,
    )  # fmt: skip
