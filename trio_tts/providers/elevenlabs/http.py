"""ElevenLabs over HTTP (httpx, on trio): one-shot synthesis and the voice list.

* ``POST /v1/text-to-speech/{voice_id}/stream?output_format=...`` — the request
  ``livekit-plugins-elevenlabs``' ``synthesize()`` makes (:func:`request_body`, built from the
  same :class:`~trio_tts.ElevenLabsOptions` as the pool's contexts): the answer is the audio
  itself in the options' format, handed out as it arrives (raw PCM in whole samples);
* ``GET /v1/voices`` — ``TTS.list_voices()`` / the SDK's ``client.voices.get_all()``:
  ``{"voices": [{"voice_id", "name", "category", "labels", "description", ...}]}``.

::

    async with trio_tts.http.ElevenLabsHTTPClient(api_key=key) as client:
        speech = await client.synthesize("Hello from trio.", voice_id="21m00Tcm4TlvDq8ikWAM")
        for voice in await client.voices():
            print(voice.voice_id, voice.name)

The key travels only in the ``xi-api-key`` header (registered with the engine's redaction).
Errors are the pool's (:mod:`trio_tts.providers.http_common`; ElevenLabs' error body
``{"detail": {"status", "message"}}`` is read for the message: an unknown voice is
``RequestRejected(404)``), plus an answer that is not audio, or not a voice list →
:class:`~trio_tts.ProtocolError`.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import httpx
import trio

from ..._core.errors import ProtocolError
from ..._core.options import AudioEncoding
from ..http_common import (
    HTTPSession,
    SampleStream,
    Synthesis,
    check_client_args,
    check_text,
    collect,
    resolve_options,
    shorten,
)
from .options import ElevenLabsOptions
from .provider import API_KEY_VARIABLES

__all__ = [
    "DEFAULT_HTTP_URL",
    "VOICES_PATH",
    "ElevenLabsAudioStream",
    "ElevenLabsHTTPClient",
    "ElevenLabsVoice",
    "request_body",
    "synthesis_path",
]

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


def request_body(text: str, options: ElevenLabsOptions) -> dict[str, Any]:
    """The JSON body of ``POST /v1/text-to-speech/{voice_id}/stream`` (LiveKit 1.8.9's
    ``_build_synthesize_body``: ``voice_settings`` is null when unset)."""
    settings = options.voice_settings
    body: dict[str, Any] = {
        "text": text,
        "model_id": options.model,
        "voice_settings": None if settings is None else settings.to_json(),
    }
    if options.apply_text_normalization is not None:
        body["apply_text_normalization"] = options.apply_text_normalization
    if options.language is not None:
        body["language_code"] = options.language
    if options.apply_language_text_normalization is not None:
        body["apply_language_text_normalization"] = options.apply_language_text_normalization
    return body


def synthesis_path(options: ElevenLabsOptions) -> str:
    """``/text-to-speech/<voice_id>/stream?output_format=...&enable_logging=...`` (below the
    API base)."""
    voice = urllib.parse.quote(options.voice_id, safe="")
    query = urllib.parse.urlencode(
        {
            "output_format": options.output_format,
            "enable_logging": "true" if options.enable_logging else "false",
        }
    )
    return f"/text-to-speech/{voice}/stream?{query}"


class ElevenLabsAudioStream(SampleStream[ElevenLabsOptions]):
    """The audio of one synthesis request, as it arrives (``async for audio in s``):
    :class:`~trio_tts.Audio` events whose ``context_id`` is the request id. Raw PCM comes in
    whole 16-bit samples (an odd byte waits for the next piece); other formats as sent.

    Raises (from iteration):
        ConnectionLost: the connection failed or timed out mid-body.
        ProtocolError: PCM that ended in the middle of a sample.
    """

    def __init__(
        self, response: httpx.Response, request_id: str, options: ElevenLabsOptions, request: str
    ) -> None:
        width = 2 if options.encoding is AudioEncoding.PCM else 1
        super().__init__(response, request_id, options, request, width=width)


class ElevenLabsHTTPClient(trio.abc.AsyncResource):
    """A client of ElevenLabs' HTTP API (or the local speech server's): one-shot synthesis
    and the voice list.

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

    @asynccontextmanager
    async def stream(
        self, text: str, *, options: ElevenLabsOptions | None = None, **overrides: Any
    ) -> AsyncIterator[ElevenLabsAudioStream]:
        """Synthesise ``text``; the block iterates its audio as it arrives.

        Args:
            text: what to say.
            options: the request's :class:`~trio_tts.ElevenLabsOptions` (default: the
                client's); its voice, model, format, language and voice settings are used.
            **overrides: single fields to change (``voice_id="..."``).

        Raises:
            InvalidOptions: bad options or empty text, before any network I/O.
            ContextFailed: HTTP 400 (e.g. an unknown model).
            RequestRejected: any other error status (401, 404 unknown voice, 429, 5xx ...).
            ConnectionLost: the request could not be sent or the body was cut short.
            ProtocolError: the answer is not audio.
        """
        opts = resolve_options(ElevenLabsOptions, options, self.defaults, overrides)
        check_text(text)
        request = "POST /v1/text-to-speech/{voice_id}/stream"
        url = self.base_url + synthesis_path(opts)
        async with self._session.post(request, url, json=request_body(text, opts)) as response:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("audio/"):
                raise ProtocolError(f"{request}: expected audio, got {shorten(kind, 40)!r}")
            yield ElevenLabsAudioStream(response, uuid.uuid4().hex, opts, request)

    async def synthesize(
        self, text: str, *, options: ElevenLabsOptions | None = None, **overrides: Any
    ) -> Synthesis:
        """Synthesise ``text`` and return all of its audio (see :meth:`stream`)."""
        opts = resolve_options(ElevenLabsOptions, options, self.defaults, overrides)
        audio, _, first = await collect(self.stream(text, options=opts))
        return Synthesis(audio, opts.sample_rate, opts.encoding, (), first)

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
