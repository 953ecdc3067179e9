"""Cutting one generation's audio into protocol frames (pure; no I/O).

Timestamps: ``WORD`` gives each chunk a ``wordAlignment`` of the words that start in it;
``CHARACTER`` a ``characterAlignment`` of their characters (each word's span shared evenly
among its letters; the space between two words spans the gap between them). With
``timestampTransportStrategy: ASYNC`` the audio chunks carry no timestamps: the generation's
timestamps follow its audio in one chunk without ``audioContent`` (before ``flushCompleted``).

Compressed encodings (:mod:`.codecs`) run every chunk's samples through the context's
:class:`~.codecs.StreamEncoder`; an encoder may hand out no bytes for a chunk (it is filling
a frame), and then the chunk's words wait for the next chunk that has bytes. The last chunk
drains the encoder, so a generation's audio is complete before its ``flushCompleted``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._speech import wav_header
from . import proto
from .codecs import StreamEncoder

__all__ = ["audio_frames", "timestamp_info"]

Words = Sequence[tuple[str, float, float]]


def timestamp_info(words: Words, kind: str, after: float | None = None) -> dict[str, Any]:
    """``timestampInfo`` for ``words`` as ``kind`` (``"WORD"`` or ``"CHARACTER"``).

    ``after``: the end of the generation's previous word, in an earlier chunk (CHARACTER
    alignment then starts with the space between the two)."""
    if kind != "CHARACTER":
        return {"wordAlignment": {
            "words": [w for w, _, _ in words],
            "wordStartTimeSeconds": [round(s, 4) for _, s, _ in words],
            "wordEndTimeSeconds": [round(e, 4) for _, _, e in words],
        }}  # fmt: skip
    chars: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    for i, (word, start, end) in enumerate(words):
        before = ends[-1] if i else after
        if before is not None:
            chars.append(" ")
            starts.append(round(before, 4))
            ends.append(round(max(before, start), 4))
        step = (end - start) / max(1, len(word))
        for k, c in enumerate(word):
            chars.append(c)
            starts.append(round(start + k * step, 4))
            ends.append(round(start + (k + 1) * step, 4))
    return {"characterAlignment": {
        "characters": chars, "characterStartTimeSeconds": starts, "characterEndTimeSeconds": ends,
    }}  # fmt: skip


def _frame(
    context_id: str | None,
    data: bytes | None,
    info: dict[str, Any] | None,
    usage: int | None,
    model_id: str,
) -> str:
    if context_id is None:
        return proto.encode_http_audio(
            data, info=info, processed_characters=usage, model_id=model_id
        )
    return proto.encode_audio_chunk(
        context_id, data, info=info, processed_characters=usage, model_id=model_id
    )


def audio_frames(
    context_id: str | None,
    text: str,
    pcm: bytes,
    words: list[tuple[str, float, float]],
    config: proto.Create,
    chunk_ms: int,
    encoder: StreamEncoder | None = None,
    *,
    drain: bool = True,
) -> list[str]:
    """Cut one generation into frames of ``chunk_ms``; each word rides with the chunk where it
    starts. ``context_id=None`` makes HTTP ``voice:stream`` lines instead of WebSocket frames.
    ``pcm`` is at ``encoder.input_rate`` when an encoder is given, else at the config's rate;
    ``drain=False`` when the stream closes right after (closing gets every sample out)."""
    rate = encoder.input_rate if encoder is not None else config.sample_rate_hertz
    step = max(1, rate * chunk_ms // 1000) * 2
    starts = list(range(0, len(pcm), step)) or [0]
    kind = config.timestamps
    sync = kind is not None and not config.async_timestamps
    frames: list[str] = []
    pending: list[tuple[str, float, float]] = []  # words waiting for a chunk with bytes
    previous: float | None = None  # end of the last word already sent
    w = 0
    for n, offset in enumerate(starts):
        last = n == len(starts) - 1
        data = pcm[offset : offset + step]
        end_s = math.inf if last else (offset + step) / 2 / rate
        while w < len(words) and words[w][1] < end_s:
            pending.append(words[w])
            w += 1
        if encoder is not None:
            data = encoder.encode(data) + (encoder.drain() if last and drain else b"")
            if not data and not last:
                continue
        elif config.encoding == "LINEAR16":
            data = wav_header(len(data), rate) + data
        info = timestamp_info(pending, kind, previous) if sync and kind is not None else None
        if pending:
            previous = pending[-1][2]
        usage = len(text) if last else None
        frames.append(_frame(context_id, data, info, usage, config.model_id))
        pending = []
    if kind is not None and not sync and words:
        frames.append(_frame(context_id, None, timestamp_info(words, kind), None, config.model_id))
    return frames


def closing_frame(
    context_id: str | None, encoder: StreamEncoder | None, model_id: str
) -> str | None:
    """The last bytes of a compressed stream (its end page/frames) as a frame, if any."""
    if encoder is None:
        return None
    data = encoder.close()
    return _frame(context_id, data, None, None, model_id) if data else None
