"""What a Rime connection (or HTTP request) asks for: speaker, model, rate, segmentation (pure).

The ``/ws3`` upgrade carries the settings in its query (``speaker``, ``modelId``,
``audioFormat=pcm``, ``samplingRate``, ``segment``, ``lang``, ``speedAlpha`` ...), the HTTP
request in its JSON body; both become one :class:`RimeConfig`, or the reason to refuse it
(HTTP 400).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import attrs

from .._asgi import Scope
from .._voices import VOICES

__all__ = ["MAX_TEXT_CHARS", "SEGMENTS", "SPEAKERS", "RimeConfig", "config_from", "parse_query"]

#: Rime's documented limit of characters per request (and per text message here).
MAX_TEXT_CHARS = 500

#: Rime speakers → the local voices that speak for them. Any other speaker is accepted too
#: (a local voice name stands for itself; anything else gets a fixed voice of its own).
SPEAKERS: dict[str, str] = {
    "astra": "Ashley",
    "lyra": "Julia",
    "celeste": "Olivia",
    "luna": "Priya",
    "cove": "Dennis",
    "orion": "Hades",
    "atlas": "Alex",
    "marsh": "Mark",
    "abbie": "Ashley",
    "allison": "Olivia",
}
SEGMENTS = ("bySentence", "immediate", "never")
_ENGLISH = sorted(v for v, info in VOICES.items() if info.language == "en")


def _voice_for(speaker: str) -> str:
    if speaker in SPEAKERS:
        return SPEAKERS[speaker]
    if speaker in VOICES:
        return speaker
    return _ENGLISH[sum(speaker.encode()) % len(_ENGLISH)]


@attrs.frozen
class RimeConfig:
    """One connection's (or request's) synthesis settings, from the query or the JSON body."""

    speaker: str
    voice: str
    model: str
    sample_rate: int
    segment: str = "bySentence"
    language: str | None = None
    speaking_rate: float = 1.0


def config_from(get: Callable[[str], Any]) -> RimeConfig | str:
    """Build a :class:`RimeConfig` from a field getter; a string is the error message."""
    speaker = get("speaker")
    if not isinstance(speaker, str) or not speaker.strip():
        return "speaker is required"
    model = get("modelId") or "arcana"
    if not isinstance(model, str):
        return "modelId must be a string"
    default_rate = 22050 if model == "mistv2" else 24000
    raw_rate = get("samplingRate")
    try:
        rate = default_rate if raw_rate in (None, "") else int(raw_rate)
    except (TypeError, ValueError):
        return f"samplingRate {raw_rate!r} is not an integer"
    if not 8000 <= rate <= 48000:
        return f"samplingRate {rate} is outside 8000..48000"
    segment = get("segment") or ("immediate" if get("immediate") in ("true", True) else None)
    segment = segment or "bySentence"
    if segment not in SEGMENTS:
        return f"segment {segment!r} is not one of {', '.join(SEGMENTS)}"
    speaking_rate = 1.0
    alpha = get("speedAlpha")
    if alpha not in (None, ""):
        try:
            speaking_rate = min(1.5, max(0.5, 1.0 / float(alpha)))
        except (TypeError, ValueError, ZeroDivisionError):
            return f"speedAlpha {alpha!r} is not a positive number"
    lang = get("lang")
    return RimeConfig(speaker, _voice_for(speaker), model, rate, segment,
                      str(lang) if lang else None, speaking_rate)  # fmt: skip


def parse_query(scope: Scope) -> RimeConfig | str:
    """The ``/ws3`` upgrade's settings, or the reason to refuse it (HTTP 400)."""
    query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    fmt = (query.get("audioFormat") or ["pcm"])[-1]
    if fmt != "pcm":
        return f"audioFormat {fmt} is not supported by the local server (use pcm)"

    def get(key: str) -> str | None:
        values = query.get(key)
        return values[-1] if values else None

    return config_from(get)
