"""Cutting one generation's audio into protocol frames (pure; no I/O)."""

from __future__ import annotations

import math

from . import _inworld_proto as proto

__all__ = ["audio_frames"]


def audio_frames(
    context_id: str | None,
    text: str,
    pcm: bytes,
    words: list[tuple[str, float, float]],
    config: proto.Create,
    chunk_ms: int,
) -> list[str]:
    """Cut one generation into frames of ``chunk_ms``; each word rides with the chunk where it
    starts. ``context_id=None`` makes HTTP ``voice:stream`` lines instead of WebSocket frames."""
    rate = config.sample_rate_hertz
    step = max(1, rate * chunk_ms // 1000) * 2
    starts = list(range(0, len(pcm), step)) or [0]
    frames: list[str] = []
    w = 0
    for n, offset in enumerate(starts):
        last = n == len(starts) - 1
        data = pcm[offset : offset + step]
        end_s = math.inf if last else (offset + step) / 2 / rate
        chunk_words: list[tuple[str, float, float]] = []
        while w < len(words) and words[w][1] < end_s:
            chunk_words.append(words[w])
            w += 1
        if config.encoding == "LINEAR16":
            data = proto.wav_header(len(data), rate) + data
        timed = chunk_words if config.word_timestamps else None
        usage = len(text) if last else None
        if context_id is None:
            frames.append(
                proto.encode_http_audio(
                    data, timed, processed_characters=usage, model_id=config.model_id
                )
            )
        else:
            frames.append(proto.encode_audio_chunk(
                context_id, data, timed, processed_characters=usage, model_id=config.model_id
            ))  # fmt: skip
    return frames
