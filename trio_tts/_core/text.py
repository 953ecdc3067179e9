"""Splitting text under a provider's per-message limit. Pure functions.

Preference order for a cut: after a sentence end (``.!?…`` and CJK stops, then whitespace),
else at whitespace, else — for a "word" longer than the limit — between two grapheme-ish
units (never between a base character and its combining marks, a ZWJ sequence or a
surrogate/variation selector). Limits count code points, as the providers do.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["split_text"]

_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’)\]]*\s+|[。！？]")
_SPACE = re.compile(r"\s+")


def _joins_previous(ch: str) -> bool:
    """True when a cut right before ``ch`` would split a user-perceived character."""
    return (
        unicodedata.combining(ch) != 0
        or ch in "\u200d\ufe0e\ufe0f"
        or "\U0001f3fb" <= ch <= "\U0001f3ff"  # skin-tone modifiers
        or unicodedata.category(ch) in ("Mn", "Me", "Mc")
    )


def _safe_cut(text: str, limit: int) -> int:
    cut = limit
    while cut > 1 and (_joins_previous(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    return cut if cut > 1 else limit


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` code points, joined they give ``text``.

    Raises:
        ValueError: if ``limit`` is smaller than 1.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pieces: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = 0
        for match in _SENTENCE_END.finditer(window):
            if match.end() <= limit:
                cut = match.end()
        if cut == 0:
            for match in _SPACE.finditer(window):
                if 0 < match.end() <= limit:
                    cut = match.end()
                elif 0 < match.start() <= limit:
                    cut = match.start()
        if cut == 0:
            cut = _safe_cut(text, limit)
        pieces.append(text[:cut])
        text = text[cut:]
    if text:
        pieces.append(text)
    return pieces
