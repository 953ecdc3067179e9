"""What a synthesiser produces (:class:`Speech`) and its WAV header (the voices are in
:mod:`._voices`)."""

from __future__ import annotations

import struct

import attrs

__all__ = ["Speech", "UnknownVoice", "wav_header"]


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


def wav_header(data_bytes: int, sample_rate: int, *, channels: int = 1, bits: int = 16) -> bytes:
    """The 44-byte RIFF/WAVE header of ``data_bytes`` of PCM (Inworld puts one in front of
    every ``LINEAR16`` chunk; Rime's HTTP ``audio/wav`` in front of the whole answer)."""
    block = channels * bits // 8
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels,
        sample_rate, sample_rate * block, block, bits, b"data", data_bytes,
    )  # fmt: skip
