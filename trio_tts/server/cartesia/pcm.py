"""Cartesia's raw encodings from the synthesiser's int16 PCM (pure, numpy).

* ``pcm_s16le`` — the samples as they are;
* ``pcm_f32le`` — float32 little-endian, ``sample / 32768`` (in -1..1);
* ``pcm_mulaw`` / ``pcm_alaw`` — ITU-T G.711 µ-law / A-law, one byte per sample, bit for bit
  what the classic Sun reference coder (and Python's old ``audioop.lin2ulaw`` /
  ``lin2alaw``) produces.

:func:`encode` takes whole samples; :func:`bytes_per_sample` says how the chunker must cut.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bytes_per_sample", "encode"]

#: G.711's segment ends (the Sun reference coder's tables): µ-law at 14 bits, A-law at 13.
_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def bytes_per_sample(encoding: str) -> int:
    return {"pcm_s16le": 2, "pcm_f32le": 4}.get(encoding, 1)


def _ulaw(samples: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    x = samples.astype(np.int32) >> 2  # 14 bits
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), 8159) + 0x21  # clip, then the bias (0x84 >> 2)
    seg = np.searchsorted(_ULAW_END, x, side="left")  # the first end x does not exceed
    low = np.minimum(seg, 7)
    value = np.where(seg >= 8, 0x7F, (low << 4) | ((x >> (low + 1)) & 0xF))
    return ((value ^ mask) & 0xFF).astype(np.uint8)


def _alaw(samples: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    x = samples.astype(np.int32) >> 3  # 13 bits
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    x = np.where(negative, -x - 1, x)
    seg = np.searchsorted(_ALAW_END, x, side="left")
    low = np.minimum(seg, 7)
    quant = np.where(low < 2, x >> 1, x >> low) & 0xF
    value = np.where(seg >= 8, 0x7F, (low << 4) | quant)
    return ((value ^ mask) & 0xFF).astype(np.uint8)


def encode(pcm: bytes, encoding: str) -> bytes:
    """``pcm`` (int16 little-endian mono) in ``encoding`` (one of Cartesia's raw encodings)."""
    if encoding == "pcm_s16le":
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    if encoding == "pcm_f32le":
        return (samples.astype("<f4") / np.float32(32768.0)).astype("<f4").tobytes()
    if encoding == "pcm_mulaw":
        return _ulaw(samples).tobytes()
    if encoding == "pcm_alaw":
        return _alaw(samples).tobytes()
    raise ValueError(f"unknown encoding {encoding!r}")
