"""The server side of Rime's ``/ws3`` JSON protocol, sans-io (no sockets, no trio).

:func:`decode_message` turns one client frame into a :class:`Text` or an :class:`Operation`
(``flush``, ``clear``, ``eos``), or raises :class:`DecodeError` whose text is the ``error``
frame to answer; the ``encode_*`` functions build the server's frames; :func:`cut` splits one
synthesis into ``chunk`` frames' worth of audio, each with the words that start in it.

Frames: ``{"type": "chunk", "data": <base64 PCM>, "contextId"}``, ``{"type": "timestamps",
"word_timestamps": {"words", "start", "end"}, "contextId"}``, ``{"type": "done",
"contextId"}`` and ``{"type": "error", "message"}``.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = [
    "OPERATIONS",
    "DecodeError",
    "Message",
    "Operation",
    "Text",
    "cut",
    "decode_message",
    "encode_chunk",
    "encode_done",
    "encode_error",
    "encode_timestamps",
]

OPERATIONS = ("flush", "clear", "eos")
Words = Sequence[tuple[str, float, float]]


class DecodeError(ValueError):
    """A client frame the server answers with an ``error`` frame (the exception's text)."""


@attrs.frozen
class Text:
    """``{"text", "contextId"?}``: more text for the buffer."""

    text: str
    context_id: str | None = None


@attrs.frozen
class Operation:
    """``{"operation": "flush" | "clear" | "eos"}``."""

    name: str
    context_id: str | None = None


Message = Text | Operation


def decode_message(frame: str | bytes) -> Message:
    """One client frame (a binary frame is ``bytes``).

    Raises:
        DecodeError: not a JSON object, a field of the wrong type, an unknown operation.
    """
    if isinstance(frame, bytes):
        raise DecodeError("binary frames are not supported; send JSON text")
    try:
        data = json.loads(frame)
    except ValueError:
        raise DecodeError("malformed JSON") from None
    if not isinstance(data, dict):
        raise DecodeError("expected a JSON object")
    cid = data.get("contextId")
    if cid is not None and not isinstance(cid, str):
        raise DecodeError("contextId must be a string")
    if "text" in data:
        text = data["text"]
        if not isinstance(text, str):
            raise DecodeError("text must be a string")
        return Text(text, cid)
    operation = data.get("operation")
    if operation in OPERATIONS:
        return Operation(operation, cid)
    raise DecodeError(f"unknown message (operation {operation!r})")


def _frame(kind: str, context_id: str | None, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields, "contextId": context_id})


def encode_chunk(pcm: bytes, context_id: str | None) -> str:
    return _frame("chunk", context_id, data=base64.b64encode(pcm).decode())


def encode_timestamps(words: Words, offset: float, context_id: str | None) -> str:
    """The ``timestamps`` of ``words``, shifted by ``offset`` seconds."""
    return _frame("timestamps", context_id, word_timestamps={
        "words": [w for w, _, _ in words],
        "start": [round(s + offset, 6) for _, s, _ in words],
        "end": [round(e + offset, 6) for _, _, e in words],
    })  # fmt: skip


def encode_done(context_id: str | None) -> str:
    return _frame("done", context_id)


def encode_error(message: str) -> str:
    return json.dumps({"type": "error", "message": message})


def cut(
    pcm: bytes, words: Words, rate: int, chunk_ms: int
) -> list[tuple[bytes, list[tuple[str, float, float]]]]:
    """Cut one synthesis into chunks of ``chunk_ms``; each word rides with the chunk where it
    starts (the last chunk takes any word left)."""
    step = max(1, rate * chunk_ms // 1000) * 2
    starts = list(range(0, len(pcm), step)) or [0]
    out: list[tuple[bytes, list[tuple[str, float, float]]]] = []
    w = 0
    for n, offset in enumerate(starts):
        end_s = math.inf if n == len(starts) - 1 else (offset + step) / 2 / rate
        mine: list[tuple[str, float, float]] = []
        while w < len(words) and words[w][1] < end_s:
            mine.append(words[w])
            w += 1
        out.append((pcm[offset : offset + step], mine))
    return out
