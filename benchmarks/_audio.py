"""The benchmarks' deterministic audio: the server's tone, keyed by the whole text.

:func:`trio_tts.server.tone_pcm` gives each character a fixed pattern, so two texts that share
characters at the same offsets share whole chunks of audio, and a chunk delivered to the
wrong context could look right. :func:`firehose_pcm` XORs the tone with a keystream seeded by
a hash of the whole text: still a pure function of ``(text, rate, seconds)``, but every chunk
of every turn is different, so a CRC per chunk identifies the turn it belongs to.
"""

from __future__ import annotations

import zlib

import numpy as np

from trio_tts.server import VOICES, Speech, UnknownVoice, tone_pcm, tone_speech

__all__ = ["FirehoseSynthesizer", "firehose_pcm"]


def firehose_pcm(text: str, sample_rate: int, seconds: float) -> bytes:
    tone = np.frombuffer(tone_pcm(text, sample_rate, seconds=seconds), dtype="<u2")
    key = np.random.default_rng(zlib.crc32(text.encode())).integers(
        0, 65536, tone.size, dtype=np.uint16
    )
    return (tone ^ key).astype("<u2").tobytes()


class FirehoseSynthesizer:
    """A :class:`trio_tts.server.Synthesizer`: every generation lasts ``seconds``, audio is
    :func:`firehose_pcm`, word timings are the tone synthesiser's."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cache: dict[tuple[str, int], Speech] = {}

    def speech(self, text: str, sample_rate: int) -> Speech:
        speech = self._cache.get((text, sample_rate))
        if speech is None:
            words = tone_speech(text, sample_rate, seconds=self.seconds).words
            pcm = firehose_pcm(text, sample_rate, self.seconds)
            speech = self._cache[text, sample_rate] = Speech(pcm, sample_rate, words)
        return speech

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        if voice not in VOICES:
            raise UnknownVoice(f"Unknown voice: {voice}")
        return self.speech(text, sample_rate)
