"""One-shot synthesis and voice listing over Inworld's HTTP API (httpx, on trio).

Where a :class:`~trio_tts.Context` is a phone line kept open for a conversation, this module
is a letter: one request, one answer. ``POST /tts/v1/voice:stream`` answers with NDJSON, one
``{"result": {"audioContent", "timestampInfo"?}}`` line per audio chunk (or an
``{"error": ...}`` line), and :meth:`InworldHTTPClient.stream` hands each chunk to the caller
as a :class:`~trio_tts.Audio` event as soon as its line arrives, not after the body ends::

    async with trio_tts.http.InworldHTTPClient(api_key=key) as client:
        async with client.stream("Hello from trio.", voice="Ashley") as chunks:
            async for audio in chunks:
                play(audio.data)
        voices = await client.voices(language="en")

The request body is the one livekit-plugins-inworld 1.8.9 sends (``ChunkedStream``), built
from the same :class:`~trio_tts.VoiceOptions` as the pool; lines are decoded by the
WebSocket codec's decoder, and ``LINEAR16`` chunks lose their WAV header exactly as on the
WebSocket. Errors are the pool's (:mod:`trio_tts.providers.http_common`), plus:

* an ``{"error": ...}`` line mid-stream → :class:`~trio_tts.ContextFailed`;
* a line that is not Inworld JSON → :class:`~trio_tts.ProtocolError`.

The API key travels only in the ``Authorization: Basic <key>`` header; it is registered with
the engine's redaction, so no error message built here can contain it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import httpx
import msgspec
import trio

from ..._core.errors import ContextFailed, ProtocolError, redact
from ..._core.events import Audio
from ..._core.options import AudioEncoding
from ..http_common import (
    HTTPSession,
    Synthesis,
    check_client_args,
    check_text,
    collect,
    connection_lost,
    resolve_options,
    shorten,
)
from .codec import FRAME_DECODER, strip_wav_header, word_timings
from .options import VoiceOptions

__all__ = [
    "DEFAULT_HTTP_URL",
    "STREAM_PATH",
    "VOICES_PATH",
    "AudioStream",
    "HTTPClient",
    "InworldAudioStream",
    "InworldHTTPClient",
    "Voice",
    "request_body",
]

DEFAULT_HTTP_URL: Final = "https://api.inworld.ai"
STREAM_PATH: Final = "/tts/v1/voice:stream"
VOICES_PATH: Final = "/tts/v1/voices"


@attrs.frozen
class Voice:
    """One voice from ``GET /tts/v1/voices``."""

    voice_id: str
    display_name: str = ""
    description: str = ""
    languages: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""


def request_body(text: str, options: VoiceOptions) -> dict[str, Any]:
    """The JSON body of ``POST /tts/v1/voice:stream`` for ``text`` (LiveKit 1.8.9's shape)."""
    body: dict[str, Any] = {
        "text": text,
        "voiceId": options.voice,
        "modelId": options.model,
        "audioConfig": {
            "audioEncoding": options.encoding.value,
            "bitrate": options.bit_rate,
            "sampleRateHertz": options.sample_rate,
            "temperature": options.temperature,
            "speakingRate": options.speaking_rate,
        },
    }
    body.update(options.optional_fields())
    return body


class InworldAudioStream:
    """The audio of one ``voice:stream`` request, as it arrives (``async for audio in s``).

    Yields :class:`~trio_tts.Audio` events whose ``context_id`` is the request id; iteration
    ends when the response body ends.

    Raises (from iteration):
        ContextFailed: the server sent an ``{"error": ...}`` line.
        ConnectionLost: the connection failed or timed out mid-body.
        ProtocolError: a line that is not Inworld JSON.
    """

    def __init__(
        self, response: httpx.Response, request_id: str, options: VoiceOptions, request: str
    ) -> None:
        self.request_id = request_id
        self.options = options
        self._request = request
        self._lines = response.aiter_lines()
        self.audio_bytes = 0
        self.chunks = 0
        self.usage_characters = 0

    def __repr__(self) -> str:
        return f"<AudioStream {self.request_id} chunks={self.chunks} audio={self.audio_bytes}B>"

    def __aiter__(self) -> AsyncIterator[Audio]:
        return self

    async def __anext__(self) -> Audio:
        while True:
            try:
                line = await self._lines.__anext__()
            except httpx.TransportError as exc:
                raise connection_lost(self._request, exc) from None
            if not line.strip():
                continue
            audio = self._decode(line)
            if audio is not None:
                self.chunks += 1
                self.audio_bytes += len(audio.data)
                return audio

    def _decode(self, line: str) -> Audio | None:
        try:
            frame = FRAME_DECODER.decode(line)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed voice:stream line: {shorten(str(exc), 80)}") from None
        if frame.error is not None:
            raise ContextFailed(frame.error.code, redact(frame.error.message))
        result = frame.result
        if result is None:
            raise ProtocolError("voice:stream line has neither result nor error")
        if result.status is not None and result.status.code != 0:
            raise ContextFailed(result.status.code, redact(result.status.message))
        data, info = result.audioContent, result.timestampInfo
        if result.audioChunk is not None:
            data, info = result.audioChunk.audioContent, result.audioChunk.timestampInfo
        usage = result.usage or (result.audioChunk.usage if result.audioChunk else None)
        if usage is not None:
            self.usage_characters += usage.processedCharactersCount
        data = data or b""
        if self.options.encoding is AudioEncoding.LINEAR16 and data[:4] == b"RIFF":
            data = strip_wav_header(data)
        words = word_timings(info)
        if not data and not words:
            return None
        return Audio(self.request_id, data, words)


class InworldHTTPClient(trio.abc.AsyncResource):
    """A client of Inworld's HTTP TTS API (or the local speech server's).

    Args:
        api_key: the Base64 key from the Inworld portal, sent as ``Authorization: Basic``;
            ``None`` sends no credential (the local server without a key).
        base_url: ``https://api.inworld.ai`` or e.g. ``server.base_url`` of a local server.
        defaults: the :class:`~trio_tts.VoiceOptions` of requests that pass none.
        timeout: seconds for connecting and for each read (a stream may run longer).
        transport: an httpx transport (tests: ``httpx.MockTransport``).

    Raises:
        InvalidOptions: a URL that is not http(s), an empty key, a non-positive timeout.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_HTTP_URL,
        defaults: VoiceOptions | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = check_client_args(api_key, base_url, "base_url", timeout)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.defaults = defaults if defaults is not None else VoiceOptions()
        self._has_key = api_key is not None
        headers = {"Authorization": f"Basic {api_key}"} if api_key is not None else {}
        self._session = HTTPSession(headers, timeout, transport, base_url=self.base_url)

    @classmethod
    def from_env(
        cls, variable: str = "INWORLD_API_KEY", *, base_url: str = DEFAULT_HTTP_URL, **kw: Any
    ) -> InworldHTTPClient:
        """A client keyed by ``$variable`` (no credential when it is unset or empty)."""
        return cls(os.environ.get(variable) or None, base_url=base_url, **kw)

    def __repr__(self) -> str:
        key = "***" if self._has_key else "None"
        return f"InworldHTTPClient(api_key={key}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        await self._session.aclose()

    @asynccontextmanager
    async def stream(
        self, text: str, *, options: VoiceOptions | None = None, **overrides: Any
    ) -> AsyncIterator[InworldAudioStream]:
        """Synthesise ``text``; the block iterates its audio as it arrives.

        Args:
            text: what to say (the service caps one request; Inworld: 2000 characters).
            options: the request's :class:`~trio_tts.VoiceOptions` (default: the client's).
            **overrides: single fields to change (``voice="Dennis"``).

        Raises:
            InvalidOptions: bad options or empty text, before any network I/O.
            ContextFailed: HTTP 400 (e.g. unknown voice), or an error line in the body.
            RequestRejected: any other error status (401, 403, 429, 5xx ...).
            ConnectionLost: the request could not be sent or the body was cut short.
        """
        opts = resolve_options(VoiceOptions, options, self.defaults, overrides)
        check_text(text)
        request_id = uuid.uuid4().hex
        request = f"POST {STREAM_PATH}"
        async with self._session.post(
            request,
            STREAM_PATH,
            json=request_body(text, opts),
            headers={"X-Request-Id": request_id},
        ) as response:
            yield InworldAudioStream(response, request_id, opts, request)

    async def synthesize(
        self, text: str, *, options: VoiceOptions | None = None, **overrides: Any
    ) -> Synthesis:
        """Synthesise ``text`` and return all of its audio (see :meth:`stream`)."""
        opts = resolve_options(VoiceOptions, options, self.defaults, overrides)
        audio, words, first = await collect(self.stream(text, options=opts))
        return Synthesis(audio, opts.sample_rate, opts.encoding, words, first)

    async def voices(self, language: str | None = None) -> list[Voice]:
        """The voices the service offers (``GET /tts/v1/voices``), optionally one language's.

        Raises:
            RequestRejected: an error status (401 ...). ConnectionLost: no answer.
            ProtocolError: the answer is not a voice list.
        """
        request = f"GET {VOICES_PATH}"
        rows = await self.voice_rows(language)
        try:
            return [_voice(row) for row in rows]
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"{request}: unexpected answer ({shorten(str(exc), 80)})") from None

    async def voice_rows(self, language: str | None = None) -> list[dict[str, Any]]:
        """The ``voices`` of ``GET /tts/v1/voices`` as the service sent them (JSON objects,
        all their fields), optionally one language's.

        Raises:
            RequestRejected: an error status (401 ...). ConnectionLost: no answer.
            ProtocolError: the answer is not a list of objects.
        """
        request = f"GET {VOICES_PATH}"
        params = {"filter": f"language={language}"} if language else None
        response = await self._session.get(request, VOICES_PATH, params=params)
        try:
            data = response.json()
            rows = data.get("voices", []) if isinstance(data, dict) else None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError("no voice list")
            return rows
        except ValueError as exc:
            raise ProtocolError(f"{request}: unexpected answer ({shorten(str(exc), 80)})") from None


def _voice(row: Any) -> Voice:
    if not isinstance(row, dict) or not isinstance(row.get("voiceId"), str):
        raise ValueError("a voice without voiceId")

    def strings(key: str) -> tuple[str, ...]:
        value = row.get(key) or []
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return Voice(
        voice_id=row["voiceId"],
        display_name=str(row.get("displayName") or row["voiceId"]),
        description=str(row.get("description") or ""),
        languages=strings("languages"),
        tags=strings("tags"),
        source=str(row.get("source") or ""),
    )


#: The names this client had before Rime's joined it (``trio_tts.http.HTTPClient``).
HTTPClient = InworldHTTPClient
AudioStream = InworldAudioStream
