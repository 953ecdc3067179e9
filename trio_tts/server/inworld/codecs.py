"""Inworld's compressed audio on the local server: one continuous MP3, Ogg Opus or FLAC stream
per context.

A client that asks for ``MP3``, ``OGG_OPUS`` or ``FLAC`` writes the chunks of a context to one
file, in order, and expects a file that plays. So each context (and each HTTP request) owns
one :class:`StreamEncoder`, created with its first audio, fed every generation's samples and
closed when the context closes: the chunks of all its generations concatenate into **one**
stream (one Ogg logical stream whose pages follow each other, one run of MP3 frames, one FLAC
stream). The encoders are libsndfile's (the ``soundfile`` wheels ship libopus/libogg, LAME
and libFLAC; :mod:`._sndfile` drives libsndfile), writing into memory that hands out each
new byte once.

Flushes: an encoder holds samples back (a 20 ms Opus frame and its Ogg page, LAME's MDCT
look-ahead, a 1152-sample FLAC block), but a client waiting for ``flushCompleted`` expects the
audio of everything it flushed. :meth:`StreamEncoder.drain` therefore writes just enough
silence to push every real sample out (checked on the stream itself: Ogg granule positions,
MP3 frame counts, FLAC blocks), so each flush costs a little silence (measured: ~50 ms for
Opus, ~70 ms for MP3 at 24 kHz, < 50 ms for FLAC) and the stream never has to be restarted.
A close needs no drain: closing the encoder gets every sample out.

Cost (measured, one core, 200 ms chunks): Opus ~30 ms of CPU per second of audio (libsndfile
runs libopus at complexity 10), MP3 ~22 ms at 24 kHz and ~35 ms at 44.1 kHz, FLAC ~1 ms.
The session encodes in a worker thread so the event loop keeps serving other contexts.

Closing writes the end of the stream (the Ogg end-of-stream page, LAME's last frames, FLAC's
last block). The header fields libsndfile would rewrite at close (FLAC's total-sample count
and MD5, the LAME info frame) cannot be rewritten in a stream and stay "unknown", which the
formats allow; the empty LAME info frame is dropped, so MP3 decoders do not trim LAME's
~1105-sample delay. libsndfile itself cannot read a FLAC stream of unknown length (FFmpeg,
``flac`` and browsers can).

Sample rates: Opus codes 8/12/16/24/48 kHz; any other requested rate is synthesised at 48 kHz
and recorded as the stream's original rate (decoders play Opus at 48 kHz anyway). MP3 takes
LAME's rates and refuses others with a clear error; FLAC takes any rate. ``bitRate`` sets
Opus's target bit rate and MP3's constant bit rate; FLAC is lossless and has none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _sndfile
from .._sndfile import (
    FORMAT_FLAC_16,
    FORMAT_MP3,
    FORMAT_OGG_OPUS,
    SFC_SET_BITRATE_MODE,
    SFC_SET_COMPRESSION_LEVEL,
    SFC_SET_OGG_PAGE_LATENCY_MS,
    SFC_SET_ORIGINAL_SAMPLERATE,
    SndfileStream,
)

__all__ = ["COMPRESSED", "StreamEncoder", "audio_config_problem", "synthesis_rate"]

COMPRESSED = frozenset({"MP3", "OGG_OPUS", "FLAC"})
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_BITRATE_CONSTANT = 0
#: Ogg pages close after this much audio: a page per two Opus frames (~3 kbit/s of overhead).
_OGG_PAGE_MS = 40.0
_FLAC_BLOCK = 1152  # libFLAC's block size at compression level 0 (the lowest latency)
_MAX_DRAIN_STEPS = 64


def synthesis_rate(encoding: str, sample_rate: int) -> int:
    """The rate to synthesise at for a requested ``(encoding, sample_rate)``."""
    if encoding == "OGG_OPUS" and sample_rate not in OPUS_RATES:
        return 48000
    return sample_rate


def audio_config_problem(encoding: str, sample_rate: int, bit_rate: int) -> str | None:
    """Why the server cannot produce this audio (``None``: it can)."""
    if encoding in ("LINEAR16", "PCM"):
        return None
    if encoding not in COMPRESSED:
        return (
            f"audioEncoding {encoding} is not supported by the local server "
            "(use LINEAR16, PCM, MP3, OGG_OPUS or FLAC)"
        )
    try:
        _sndfile.library()
    except OSError:  # pragma: no cover - the server extra installs it
        return f"audioEncoding {encoding} needs the soundfile package (trio-tts[server])"
    if encoding == "MP3" and sample_rate not in MP3_RATES:
        rates = ", ".join(map(str, MP3_RATES))
        return f"sampleRateHertz {sample_rate} is not an MP3 rate (one of {rates})"
    if encoding == "MP3" and not 8000 <= bit_rate <= 320000:
        return f"bitRate {bit_rate} is outside 8000..320000 for MP3"
    if encoding == "OGG_OPUS" and not 6000 <= bit_rate <= 256000:
        return f"bitRate {bit_rate} is outside 6000..256000 for OGG_OPUS"
    return None


class StreamEncoder:
    """One continuous compressed stream: :meth:`encode` samples, :meth:`drain` at a flush,
    :meth:`close` at the end. Each call returns the stream's next bytes (maybe none).

    Raises:
        ValueError: an encoding/rate/bit rate :func:`audio_config_problem` refuses.
    """

    def __init__(self, encoding: str, sample_rate: int, bit_rate: int) -> None:
        problem = audio_config_problem(encoding, sample_rate, bit_rate)
        if problem is not None or encoding not in COMPRESSED:
            raise ValueError(problem or f"{encoding} is not a compressed encoding")
        self.encoding = encoding
        self.input_rate = synthesis_rate(encoding, sample_rate)
        fmt = {"MP3": FORMAT_MP3, "OGG_OPUS": FORMAT_OGG_OPUS, "FLAC": FORMAT_FLAC_16}[encoding]
        stream = self._stream = SndfileStream(fmt, self.input_rate)
        if encoding == "OGG_OPUS":
            stream.command_double(SFC_SET_OGG_PAGE_LATENCY_MS, _OGG_PAGE_MS)
            level = min(1.0, max(0.0, 1 - (bit_rate - 6000 + 0.5) / 250000))
            stream.command_double(SFC_SET_COMPRESSION_LEVEL, level)
            if sample_rate != self.input_rate:
                stream.command_int(SFC_SET_ORIGINAL_SAMPLERATE, sample_rate)
        elif encoding == "MP3":
            stream.command_int(SFC_SET_BITRATE_MODE, _BITRATE_CONSTANT)
            low, high = (32, 320) if self.input_rate >= 32000 else (8, 160)
            if self.input_rate < 16000:
                low, high = 8, 64
            kbps = min(high, max(low, bit_rate // 1000))
            level = min(1.0, max(0.0, (high - kbps - 0.5) / (high - low)))
            stream.command_double(SFC_SET_COMPRESSION_LEVEL, level)
        else:
            stream.command_double(SFC_SET_COMPRESSION_LEVEL, 0.0)
        self._written = 0  # samples written, padding included
        self._real = 0  # samples of speech written (what a drain must get out)
        self._scan = _Scanner(encoding)
        self.closed = False

    @property
    def samples_written(self) -> int:
        """Samples given to the encoder so far at :attr:`input_rate`, drain padding included
        (where the stream's next audio starts, for a decoder)."""
        return self._written

    def _write(self, samples: np.ndarray[Any, Any]) -> None:
        if len(samples):
            self._stream.write(samples)
            self._written += len(samples)

    def _take(self) -> bytes:
        return self._scan.feed(self._stream.take())

    def encode(self, pcm: bytes) -> bytes:
        """Feed int16 LE mono samples at :attr:`input_rate`; return the new stream bytes."""
        samples = np.frombuffer(pcm, dtype="<i2")
        self._write(samples)
        self._real = self._written
        return self._take()

    def drain(self) -> bytes:
        """Write silence until every real sample is in the stream; return the new bytes."""
        out = [self._take()]
        for _ in range(_MAX_DRAIN_STEPS):
            if self._scan.covered(self.input_rate, self._written) >= self._real:
                break
            self._write(np.zeros(self._scan.step(self.input_rate, self._written), dtype="<i2"))
            out.append(self._take())
        return b"".join(out)

    def close(self) -> bytes:
        """End the stream; return its last bytes. Idempotent."""
        if self.closed:
            return b""
        self.closed = True
        return self._scan.feed(self._stream.close())


# MPEG audio layer III bit rates (kbit/s) by [MPEG-1?][index].
_MP3_KBPS = {
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
#: LAME's delay: encoder 576 + decoder 529 samples (measured: enough for every real sample).
_MP3_DELAY = 576 + 529


class _Scanner:
    """Follows the stream as it is handed out, to tell how much audio it already holds
    (``covered``), and drops LAME's empty info frame."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._buf = b""  # bytes not yet parsed (a partial page or frame)
        self._granule = 0  # Ogg: last page's granule position (48 kHz)
        self._preskip = 0
        self._frames = 0  # MP3: frames seen; FLAC: unused
        self._frame_samples = 1152
        self._first = True

    def feed(self, data: bytes) -> bytes:
        if self.encoding == "FLAC":
            return data
        self._buf += data
        if self.encoding == "OGG_OPUS":
            self._ogg()
            return data
        return self._mp3()

    def _ogg(self) -> None:
        buf = self._buf
        while len(buf) >= 27 and buf[:4] == b"OggS":
            nsegs = buf[26]
            if len(buf) < 27 + nsegs:
                break
            size = 27 + nsegs + sum(buf[27 : 27 + nsegs])
            if len(buf) < size:
                break
            body = buf[27 + nsegs : size]
            if body[:8] == b"OpusHead":
                self._preskip = int.from_bytes(body[10:12], "little")
            else:
                granule = int.from_bytes(buf[6:14], "little", signed=True)
                if granule >= 0:
                    self._granule = granule
            buf = buf[size:]
        self._buf = buf

    def _mp3(self) -> bytes:
        out = bytearray()
        buf = self._buf
        while len(buf) >= 4 and buf[0] == 0xFF and buf[1] & 0xE0 == 0xE0:
            version = (buf[1] >> 3) & 3
            mpeg1 = version == 3
            kbps = _MP3_KBPS[mpeg1][buf[2] >> 4]
            rate = _MP3_RATES.get(version, (44100, 48000, 32000))[(buf[2] >> 2) & 3]
            pad = (buf[2] >> 1) & 1
            size = (144 if mpeg1 else 72) * kbps * 1000 // rate + pad
            if size <= 4 or len(buf) < size:
                break
            frame, buf = buf[:size], buf[size:]
            self._frame_samples = 1152 if mpeg1 else 576
            if self._first and not any(frame[4:]):
                self._first = False  # LAME's info frame, never filled in a stream
                continue
            self._first = False
            self._frames += 1
            out += frame
        if len(buf) >= 4 and not (buf[0] == 0xFF and buf[1] & 0xE0 == 0xE0):
            out += buf  # not a frame (a tag): pass through untouched
            buf = b""
        self._buf = buf
        return bytes(out)

    def covered(self, rate: int, written: int) -> int:
        """Samples (at ``rate``) a decoder gets out of the stream handed out so far, of the
        ``written`` samples given to the encoder."""
        if self.encoding == "OGG_OPUS":
            return max(0, self._granule - self._preskip) * rate // 48000
        if self.encoding == "MP3":
            return max(0, self._frames * self._frame_samples - _MP3_DELAY)
        # libFLAC codes a block once it holds one sample more than the block.
        return max(0, (written - 1) // _FLAC_BLOCK * _FLAC_BLOCK)

    def step(self, rate: int, written: int) -> int:
        """How much silence to write next while draining."""
        if self.encoding == "FLAC":
            return (-written) % _FLAC_BLOCK + 1
        if self.encoding == "OGG_OPUS":
            return rate // 50  # one 20 ms Opus frame
        return self._frame_samples
