"""Synthesisers: where the server's audio comes from.

Two implementations share the :class:`Synthesizer` protocol:

* :class:`EspeakSynthesizer` — real speech (eSpeak NG), computed in a worker thread so the
  trio loop keeps serving other contexts while a long text is spoken.
* :class:`ToneSynthesizer` — free and **deterministic**: the audio is the pure function
  :func:`tone_pcm` of ``(text, sample_rate)``, so a test can compute the exact bytes it must
  receive. Each character of the text gets a fixed number of samples (a pattern derived from
  its code point; whitespace is silence), and each word's timing is exactly the span of its
  characters. With ``seconds=`` every generation lasts a fixed time regardless of the text
  (the benchmarks' "firehose": ~14 s of 24 kHz audio per turn).
"""

from __future__ import annotations

import functools
import itertools
from typing import Protocol

import numpy as np
import trio

from ._speech import Speech, UnknownVoice
from ._voices import VOICES

__all__ = ["EspeakSynthesizer", "Synthesizer", "ToneSynthesizer", "tone_pcm", "tone_speech"]


class Synthesizer(Protocol):
    """Turns text into :class:`Speech`. Implementations must be safe to call concurrently."""

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        """Raises :class:`UnknownVoice` for a voice the server does not offer."""
        ...


class EspeakSynthesizer:
    """Real speech from eSpeak NG, run off the trio thread.

    eSpeak holds one global lock, so more threads would only queue; ``max_threads`` bounds how
    many trio tasks wait in threads at once. Cancelling a call waits for its thread to finish
    the text (milliseconds per sentence) rather than leaving it running.
    """

    def __init__(self, *, max_threads: int = 2) -> None:
        self._limiter = trio.CapacityLimiter(max_threads)

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        from . import _espeak

        def run() -> Speech:
            return _espeak.synthesize(
                text, voice=voice, sample_rate=sample_rate, speaking_rate=speaking_rate
            )

        # Not abandoned on cancel: a sentence takes milliseconds, and a thread left running in
        # native code while the process exits can abort it (see _espeak's module docstring).
        return await trio.to_thread.run_sync(run, limiter=self._limiter, abandon_on_cancel=False)

    def __repr__(self) -> str:
        return f"EspeakSynthesizer(threads_busy={self._limiter.borrowed_tokens})"


def _char_bounds(
    text: str, sample_rate: int, ms_per_char: float, seconds: float | None
) -> list[int]:
    """Sample index where each character starts, plus the total as the last element."""
    n = len(text)
    if seconds is None:
        per_char = round(sample_rate * ms_per_char / 1000)
        return [i * per_char for i in range(n + 1)]
    total = round(sample_rate * seconds)
    return [i * total // n if n else 0 for i in range(n + 1)]


@functools.lru_cache(maxsize=64)  # pure, and benchmarks speak the same turns again and again
def tone_pcm(
    text: str, sample_rate: int, *, ms_per_char: float = 60.0, seconds: float | None = None
) -> bytes:
    """The exact int16 LE mono audio :class:`ToneSynthesizer` produces for ``text``.

    Character ``c`` spans ``ms_per_char`` milliseconds (or ``seconds / len(text)`` when
    ``seconds`` is given) of the sawtooth-like pattern ``((ord(c)*131 + k*29) % 4096 - 2048)
    * 8`` where ``k`` is the sample's index in the whole output; whitespace is silence.
    """
    bounds = _char_bounds(text, sample_rate, ms_per_char, seconds)
    if not text or bounds[-1] == 0:
        return b""
    counts = [b - a for a, b in itertools.pairwise(bounds)]
    codes = np.asarray([0 if c.isspace() else ord(c) for c in text], dtype=np.int64)
    per_sample = np.repeat(codes, counts)
    k = np.arange(bounds[-1], dtype=np.int64)
    pcm = ((per_sample * 131 + k * 29) % 4096 - 2048) * 8
    pcm[per_sample == 0] = 0
    return pcm.astype("<i2").tobytes()


def tone_speech(
    text: str, sample_rate: int, *, ms_per_char: float = 60.0, seconds: float | None = None
) -> Speech:
    """:func:`tone_pcm` plus word timings: each word spans exactly its characters' samples."""
    bounds = _char_bounds(text, sample_rate, ms_per_char, seconds)
    words: list[tuple[str, float, float]] = []
    start: int | None = None
    for i, c in enumerate([*text, " "]):
        if not c.isspace() and start is None:
            start = i
        elif c.isspace() and start is not None:
            words.append((text[start:i], bounds[start] / sample_rate, bounds[i] / sample_rate))
            start = None
    pcm = tone_pcm(text, sample_rate, ms_per_char=ms_per_char, seconds=seconds)
    return Speech(pcm=pcm, sample_rate=sample_rate, words=words)


class ToneSynthesizer:
    """Deterministic, zero-cost audio for tests and benchmarks (see :func:`tone_pcm`).

    Example::

        synth = ToneSynthesizer()                     # 60 ms per character
        firehose = ToneSynthesizer(seconds=14.0)      # every generation lasts 14 s

    Voices are checked like the real synthesiser's, so an unknown voice still fails.
    """

    def __init__(self, *, ms_per_char: float = 60.0, seconds: float | None = None) -> None:
        self.ms_per_char = ms_per_char
        self.seconds = seconds

    async def synthesize(
        self, text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0
    ) -> Speech:
        if voice not in VOICES:
            raise UnknownVoice(f"Unknown voice: {voice}")
        await trio.lowlevel.checkpoint()
        return tone_speech(text, sample_rate, ms_per_char=self.ms_per_char, seconds=self.seconds)

    def __repr__(self) -> str:
        return f"ToneSynthesizer(ms_per_char={self.ms_per_char}, seconds={self.seconds})"
