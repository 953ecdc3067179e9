"""``trio-tts speak -o FILE``: the file name picks the format, and the file is written here.

Every format is written from PCM. Whatever the file, the service is asked for 16-bit PCM,
the sentences are synthesised in parallel (``--jobs``) and the samples are encoded here, in
sentence order, into one file:

- ``.wav``: the standard library's :mod:`wave`;
- ``.flac``, ``.mp3``, ``.ogg`` / ``.opus`` / ``.oga`` (Opus in Ogg): libsndfile through
  :mod:`soundfile` (libFLAC, LAME, libopus), writing a seekable file. So at the close
  libsndfile finishes what only a whole file can have: FLAC's STREAMINFO (total samples and
  the MD5 of the audio), MP3's Xing/Info frame (frame and byte counts, seek table, LAME's
  encoder delay and padding, so players show the right duration and decoders trim to the
  sample), and Ogg's last page, whose granule position gives the exact length.

Why not ask the service for MP3/OGG_OPUS/FLAC and write its chunks: the chunks of one context
are one stream, but those of several contexts are several streams, so a file could come
from one context only (no ``--jobs``); every sentence's flush makes the encoder finish its
frame with silence (measured: 1.1 s too long for 20 sentences as Ogg, 2.6 s as MP3); and
what a header says about the whole stream stays unknown in a stream (FLAC's length and MD5,
the MP3 info frame). Mending that afterwards means decoding and encoding again, which needs
the codec library here anyway, so the audio is encoded once, here.

Cost (measured on one core, eSpeak speech at 24 kHz): FLAC ~0.3 ms of CPU per second of
audio, MP3 ~7 ms, Opus ~30 ms (libopus at complexity 10), and the PCM is 48 kB per second of
audio on the wire. A worker thread encodes each sentence as soon as it is next in line, while
later ones are synthesised.

Opus codes 8, 12, 16, 24 and 48 kHz only; an Ogg file asked for at any other rate is
synthesised at 48 kHz (the rate Opus decoders play anyway).

Example::

    fmt = output_format("story.mp3")        # "MP3"; InvalidOptions for "story.aiff"
    with open_writer(path, fmt, 24000, bit_rate=64000) as writer:
        writer.write(pcm)                   # int16 LE mono, any number of times
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from .._core.errors import InvalidOptions

__all__ = ["AudioWriter", "open_writer", "output_format", "synthesis_rate"]

#: File name suffix -> format.
SUFFIXES = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".mp3": "MP3",
    ".ogg": "OGG_OPUS",
    ".opus": "OGG_OPUS",
    ".oga": "OGG_OPUS",
}
#: format -> soundfile's (format, subtype).
_SNDFILE = {
    "FLAC": ("FLAC", "PCM_16"),
    "MP3": ("MP3", "MPEG_LAYER_III"),
    "OGG_OPUS": ("OGG", "OPUS"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def output_format(path: str | os.PathLike[str]) -> str:
    """The format a file name asks for: ``"WAV"``, ``"FLAC"``, ``"MP3"`` or ``"OGG_OPUS"``.

    Raises:
        InvalidOptions: another suffix (or none), or a compressed format without the
            ``soundfile`` package.
    """
    suffix = Path(path).suffix.lower()
    fmt = SUFFIXES.get(suffix)
    if fmt is None:
        known = ", ".join(SUFFIXES)
        what = f"{suffix!r} is not" if suffix else "no suffix: give"
        raise InvalidOptions(f"output: {what} an audio file suffix ({known})")
    if fmt != "WAV":
        try:
            import soundfile  # noqa: F401
        except (ImportError, OSError) as exc:
            raise InvalidOptions(
                f"output: writing {suffix} needs libsndfile: pip install 'trio-tts[server]'"
                f" ({type(exc).__name__}: {exc})"
            ) from None
    return fmt


def synthesis_rate(fmt: str, sample_rate: int) -> int:
    """The rate to ask the service for (and the file's rate)."""
    if fmt == "OGG_OPUS" and sample_rate not in OPUS_RATES:
        return 48000
    return sample_rate


class AudioWriter(Protocol):
    """An open output file: :meth:`write` appends int16 LE mono samples (blocking: call it
    in a worker thread, one call at a time)."""

    def write(self, pcm: bytes) -> None: ...


class _Wav:
    def __init__(self, wav: wave.Wave_write) -> None:
        self._wav = wav

    def write(self, pcm: bytes) -> None:
        self._wav.writeframesraw(pcm)


class _Sndfile:
    def __init__(self, sound: Any) -> None:
        self._sound = sound

    def write(self, pcm: bytes) -> None:
        import numpy as np

        self._sound.write(np.frombuffer(pcm, dtype="<i2"))


@contextmanager
def open_writer(
    path: str | os.PathLike[str], fmt: str, sample_rate: int, *, bit_rate: int = 64000
) -> Iterator[AudioWriter]:
    """Write ``path`` in ``fmt`` (see :func:`output_format`); the file is complete (headers
    included) when the block ends. ``bit_rate`` is MP3's constant and Opus's target bit rate.

    Raises:
        OSError: creating or writing the file; libsndfile refusing the format or rate.
    """
    if fmt == "WAV":
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            yield _Wav(wav)
        return
    import soundfile

    container, subtype = _SNDFILE[fmt]
    settings: dict[str, Any] = {}
    if fmt == "MP3":
        level = _mp3_level(sample_rate, bit_rate)
        settings = {"bitrate_mode": "CONSTANT", "compression_level": level}
    elif fmt == "OGG_OPUS":  # libsndfile maps 0..1 onto 256..6 kbit/s
        level = min(1.0, max(0.0, 1 - (bit_rate - 6000 + 0.5) / 250000))
        settings = {"compression_level": level}
    try:
        sound = soundfile.SoundFile(
            str(path), "w", samplerate=sample_rate, channels=1, format=container,
            subtype=subtype, **settings,
        )  # fmt: skip
    except soundfile.LibsndfileError as exc:
        raise OSError(f"libsndfile: {exc.error_string}") from None
    with sound:
        yield _Sndfile(sound)


def _mp3_level(sample_rate: int, bit_rate: int) -> float:
    """libsndfile's compression level for a constant ``bit_rate``: it maps 0..1 onto LAME's
    highest..lowest bit rate for the MPEG version the sample rate implies."""
    low, high = (32, 320) if sample_rate >= 32000 else (8, 160)
    if sample_rate < 16000:
        low, high = 8, 64
    kbps = min(high, max(low, bit_rate // 1000))
    return min(1.0, max(0.0, (high - kbps - 0.5) / (high - low)))
