"""ElevenLabs' voice listing on the local server: ``GET /v1/voices`` (``xi-api-key``).

Answers ElevenLabs' shape, ``{"voices": [{"voice_id", "name", "category", "labels",
"description", "preview_url", "settings"}]}``, listing the premade voices of
:data:`~.config.VOICE_IDS` under their ElevenLabs ids (``labels`` carry the local voice that
speaks each). A missing or wrong key (when the server has one) is HTTP 401 with ElevenLabs'
error body ``{"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}``.
"""

from __future__ import annotations

from typing import Any

from .._asgi import ASGIReceive, ASGISend, HTTPHandler, Scope, header, respond_json
from .._core import Core
from .._voices import VOICES
from .config import VOICE_IDS

__all__ = ["AUTH_HEADER", "ROUTES", "VOICES_PATH", "error_detail", "list_voices"]

VOICES_PATH = "/v1/voices"
AUTH_HEADER = b"xi-api-key"


def error_detail(status: str, message: str) -> dict[str, Any]:
    """ElevenLabs' HTTP error body."""
    return {"detail": {"status": status, "message": message}}


def _voice(voice_id: str, name: str, local: str) -> dict[str, Any]:
    info = VOICES[local]
    return {
        "voice_id": voice_id,
        "name": name,
        "category": "premade",
        "labels": {"gender": info.gender, "language": info.language, "local_voice": local},
        "description": info.description,
        "preview_url": None,
        "settings": None,
    }


async def list_voices(core: Core, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """``GET /v1/voices`` (see the module docstring)."""
    key = core.config.api_key
    if key is not None and header(scope, AUTH_HEADER) != key:
        await respond_json(send, 401, error_detail("invalid_api_key", "Invalid API key"))
        return
    voices = [_voice(vid, name, local) for vid, (name, local) in VOICE_IDS.items()]
    await respond_json(send, 200, {"voices": voices})


#: (method, path) → handler, for the app's router.
ROUTES: dict[tuple[str, str], HTTPHandler] = {("GET", VOICES_PATH): list_voices}
