"""ElevenLabs over HTTP (httpx, on trio): the voice list, ``GET /v1/voices``.

The same call as ``livekit-plugins-elevenlabs``' ``TTS.list_voices()`` and the official SDK's
``client.voices.get_all()``: the key travels only in the ``xi-api-key`` header (registered with
the engine's redaction), and the answer is ``{"voices": [{"voice_id", "name", "category",
"labels", "description", "preview_url", ...}]}``::

    async with trio_tts.http.ElevenLabsHTTPClient(api_key=key) as client:
        for voice in await client.voices():
            print(voice.voice_id, voice.name)

Errors are the pool's (:mod:`trio_tts.providers.http_common`; ElevenLabs' error body
``{"detail": {"status", "message"}}`` is read for the message), plus an answer that is not a
voice list → :class:`~trio_tts.ProtocolError`.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Final

import attrs
import httpx
import trio

from ..._core.errors import ProtocolError
from ..http_common import HTTPSession, check_client_args, shorten
from .options import ElevenLabsOptions
from .provider import API_KEY_VARIABLES

__all__ = ["DEFAULT_HTTP_URL", "VOICES_PATH", "ElevenLabsHTTPClient", "ElevenLabsVoice"]

#: The API base (LiveKit's ``base_url``); a root URL gets ``/v1``.
DEFAULT_HTTP_URL: Final = "https://api.elevenlabs.io/v1"
#: Below the API base.
VOICES_PATH: Final = "/voices"


@attrs.frozen
class ElevenLabsVoice:
    """One voice from ``GET /v1/voices``."""

    voice_id: str
    name: str = ""
    category: str = ""
    description: str = ""
    #: ElevenLabs' labels (``gender``, ``accent``, ``language`` ...), sorted by key.
    labels: tuple[tuple[str, str], ...] = ()
    preview_url: str | None = None


def api_base(url: object, field: str = "base_url") -> str:
    """``url`` as an API base ending in ``/v1`` (a root gets it; a path is kept).

    Raises:
        InvalidOptions: not an http(s) URL with a host.
    """
    parts = check_client_args(None, url, field, 1.0)
    path = parts.path.rstrip("/") or "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class ElevenLabsHTTPClient(trio.abc.AsyncResource):
    """A client of ElevenLabs' HTTP API (or the local speech server's): the voice list.

    Args:
        api_key: the ``xi-api-key`` (``None``: no credential, for the local server).
        base_url: the API base, ``https://api.elevenlabs.io/v1`` (LiveKit's ``base_url``) or a
            root such as a local server's ``http://127.0.0.1:8765`` (``/v1`` is added).
        defaults: the :class:`~trio_tts.ElevenLabsOptions` of this client's requests.
        timeout: seconds for connecting and for each read.
        transport: an httpx transport.

    Raises:
        InvalidOptions: a URL that is not http(s), an empty key, a non-positive timeout.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_HTTP_URL,
        defaults: ElevenLabsOptions | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        check_client_args(api_key, base_url, "base_url", timeout)
        self.base_url = api_base(base_url)
        self.defaults = defaults if defaults is not None else ElevenLabsOptions()
        self._has_key = api_key is not None
        headers = {"xi-api-key": api_key} if api_key is not None else {}
        self._session = HTTPSession(headers, timeout, transport)

    @classmethod
    def from_env(
        cls, variable: str | None = None, *, base_url: str = DEFAULT_HTTP_URL, **kw: Any
    ) -> ElevenLabsHTTPClient:
        """A client keyed by ``$variable`` (default: ``$ELEVENLABS_API_KEY``, else
        ``$ELEVEN_API_KEY``; no credential when unset or empty)."""
        names = (variable,) if variable is not None else API_KEY_VARIABLES
        key = next((os.environ[n] for n in names if os.environ.get(n)), None)
        return cls(key, base_url=base_url, **kw)

    def __repr__(self) -> str:
        key = "***" if self._has_key else "None"
        return f"ElevenLabsHTTPClient(api_key={key}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        await self._session.aclose()

    async def voices(self) -> list[ElevenLabsVoice]:
        """The account's voices (``GET /v1/voices``).

        Raises:
            RequestRejected: an error status (401 invalid key ...). ConnectionLost: no answer.
            ProtocolError: the answer is not a voice list.
        """
        rows = await self.voice_rows()
        try:
            return [_voice(row) for row in rows]
        except (ValueError, TypeError) as exc:
            raise ProtocolError(
                f"GET /v1{VOICES_PATH}: unexpected answer ({shorten(str(exc), 80)})"
            ) from None

    async def voice_rows(self) -> list[dict[str, Any]]:
        """The ``voices`` of ``GET /v1/voices`` as the service sent them (all their fields).

        Raises:
            RequestRejected: an error status. ConnectionLost: no answer.
            ProtocolError: the answer is not a list of objects.
        """
        request = f"GET /v1{VOICES_PATH}"
        response = await self._session.get(request, self.base_url + VOICES_PATH)
        try:
            data = response.json()
            rows = data.get("voices") if isinstance(data, dict) else None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError("no voice list")
            return rows
        except ValueError as exc:
            raise ProtocolError(f"{request}: unexpected answer ({shorten(str(exc), 80)})") from None


def _voice(row: dict[str, Any]) -> ElevenLabsVoice:
    voice_id = row.get("voice_id")
    if not isinstance(voice_id, str) or not voice_id:
        raise ValueError("a voice without voice_id")
    labels = row.get("labels")
    pairs = (
        tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        if isinstance(labels, dict)
        else ()
    )
    preview = row.get("preview_url")
    return ElevenLabsVoice(
        voice_id=voice_id,
        name=str(row.get("name") or voice_id),
        category=str(row.get("category") or ""),
        description=str(row.get("description") or ""),
        labels=pairs,
        preview_url=preview if isinstance(preview, str) else None,
    )
