"""The local server's voices under Cartesia-style ids, and their listing (``GET /voices``).

Cartesia names voices by UUID. Every local voice (:data:`~.._voices.VOICES`) gets a stable
one, ``uuid5(NAMESPACE, name)``, and a few of Cartesia's own public voices that clients use
as defaults are known too, each spoken by a local voice:

=====================================  ===============================  ============
Cartesia voice id                      where it comes from              spoken by
=====================================  ===============================  ============
``f786b574-daa5-4673-aa0c-cbe3e8534c02``  "Katie": the LiveKit plugin's    ``Ashley``
                                       default (and Cartesia's
                                       quickstart voice)
``6ccbfb76-1fc6-48f7-b71d-91ac6298247b``  "Tessa": the ``cartesia`` SDK's  ``Claire``
                                       fallback in ``no_more_inputs()``
``a0e99841-438c-4a64-b679-ae501e7d6091``  "Barbershop Man": the SDK's old  ``Dennis``
                                       README example
=====================================  ===============================  ============

A local voice's own name (``"Dennis"``) is accepted as an id as well (handy in tests); the
listing shows only UUIDs.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from .._voices import VOICES

__all__ = ["CARTESIA_VOICES", "NAMESPACE", "CartesiaVoice", "listing", "local_voice", "voice_uuid"]

#: The namespace of the local voices' uuid5 ids.
NAMESPACE = uuid.UUID("6d1f0c3e-2b7a-5c39-9e0f-7472696f2d74")
#: The creation date every local voice reports.
_CREATED = "2026-01-01T00:00:00Z"


@attrs.frozen
class CartesiaVoice:
    """One listed voice: its Cartesia id and name and the local voice that speaks it."""

    id: str
    name: str
    local: str
    description: str


def voice_uuid(name: str) -> str:
    """The Cartesia-style id of the local voice ``name``."""
    return str(uuid.uuid5(NAMESPACE, name))


#: Cartesia's public voices that official clients use as defaults (see the module docstring).
_PUBLIC = (
    CartesiaVoice("f786b574-daa5-4673-aa0c-cbe3e8534c02", "Katie", "Ashley",
                  "Cartesia's Katie, spoken by the local voice Ashley"),
    CartesiaVoice("6ccbfb76-1fc6-48f7-b71d-91ac6298247b", "Tessa", "Claire",
                  "Cartesia's Tessa, spoken by the local voice Claire"),
    CartesiaVoice("a0e99841-438c-4a64-b679-ae501e7d6091", "Barbershop Man", "Dennis",
                  "Cartesia's Barbershop Man, spoken by the local voice Dennis"),
)  # fmt: skip

#: Cartesia voice id → voice, in listing order: the public ones, then every local voice.
CARTESIA_VOICES: dict[str, CartesiaVoice] = {
    **{v.id: v for v in _PUBLIC},
    **{
        voice_uuid(name): CartesiaVoice(voice_uuid(name), name, name, info.description)
        for name, info in VOICES.items()
    },
}


def local_voice(voice_id: str) -> str | None:
    """The local voice that speaks ``voice_id`` (a Cartesia id or a local name), or None."""
    known = CARTESIA_VOICES.get(voice_id.lower())
    if known is not None:
        return known.local
    return voice_id if voice_id in VOICES else None


def _entry(voice: CartesiaVoice) -> dict[str, Any]:
    info = VOICES[voice.local]
    region = {"en": "US", "de": "DE", "fr": "FR", "es": "ES", "pt": "BR", "zh": "CN"}
    locale = f"{info.language}-{region.get(info.language, info.language.upper())}"
    return {
        "id": voice.id,
        "name": voice.name,
        "description": voice.description,
        "tagline": "",
        "language": info.language,
        "locales": [{"locale": locale, "is_native": True}],
        "gender": "feminine" if info.gender == "female" else "masculine",
        "is_owner": False,
        "access": "public",
        "visibility": "all",
        "created_at": _CREATED,
    }


def listing(
    *, limit: int = 10, starting_after: str | None = None, ending_before: str | None = None,
    language: str | None = None, query: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One page of ``GET /voices``: ``{"data": [...], "has_more", "next_page"}``, paged by
    voice id as Cartesia does (``starting_after`` / ``ending_before`` an id of the list)."""
    voices = [
        v for v in CARTESIA_VOICES.values()
        if (language is None or VOICES[v.local].language == language)
        and (query is None or query.lower() in f"{v.id} {v.name} {v.description}".lower())
    ]  # fmt: skip
    ids = [v.id for v in voices]
    if starting_after is not None:
        start = ids.index(starting_after) + 1 if starting_after in ids else len(ids)
        page = voices[start : start + limit]
        more = start + limit < len(voices)
    elif ending_before is not None:
        end = ids.index(ending_before) if ending_before in ids else 0
        page = voices[max(0, end - limit) : end]
        more = end - limit > 0
    else:
        page = voices[:limit]
        more = limit < len(voices)
    return {
        "data": [_entry(v) for v in page],
        "has_more": more,
        "next_page": page[-1].id if more and page else None,
    }
