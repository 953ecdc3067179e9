"""One-shot synthesis and voice listing over Inworld's HTTP API, and Rime's one-shot synthesis
(:class:`RimeHTTPClient`) — httpx, on trio.

Where a :class:`~trio_tts.Context` is a phone line kept open for a conversation, this module
is a letter: one request, one answer. ``POST /tts/v1/voice:stream`` answers with NDJSON, one
``{"result": {"audioContent", "timestampInfo"?}}`` line per audio chunk (or an
``{"error": ...}`` line), and :meth:`HTTPClient.stream` hands each chunk to the caller as a
:class:`~trio_tts.Audio` event as soon as its line arrives, not after the body ends::

    async with trio_tts.http.HTTPClient(api_key=key) as client:
        async with client.stream("Hello from trio.", voice="Ashley") as chunks:
            async for audio in chunks:
                play(audio.data)
        voices = await client.voices(language="en")

The request body is the one livekit-plugins-inworld 1.8.9 sends (``ChunkedStream``), built
from the same :class:`~trio_tts.VoiceOptions` as the pool; ``LINEAR16`` chunks lose their WAV
header exactly as on the WebSocket. Errors are the pool's:

* HTTP 400 (the request itself is wrong: unknown voice, text too long) →
  :class:`~trio_tts.ContextFailed` with the server's gRPC code and message, as the WebSocket
  reports the same problem;
* any other non-2xx status (401/403 credentials, 429 rate limit, 5xx) →
  :class:`RequestRejected`, a :class:`~trio_tts.HandshakeRejected` with ``status`` and
  ``retry_after``;
* socket errors, timeouts and a body cut short → :class:`~trio_tts.ConnectionLost`;
* an ``{"error": ...}`` line mid-stream → :class:`~trio_tts.ContextFailed`;
* a line that is not Inworld JSON → :class:`~trio_tts.ProtocolError`.

The API key travels only in the ``Authorization: Basic <key>`` header; it is registered with
the engine's redaction, so no error message built here can contain it.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Generic, NoReturn, TypeVar

import attrs
import httpx
import msgspec
import trio

from .._core.errors import (
    ConnectionLost,
    ContextFailed,
    HandshakeRejected,
    InvalidOptions,
    ProtocolError,
    redact,
    register_api_key,
)
from .._core.events import Audio, WordTiming
from .._core.options import AudioEncoding, VoiceOptions
from .inworld.protocol import _DECODER, _words, strip_wav_header
from .rime.protocol import DEFAULT_HTTP_URL as RIME_HTTP_URL
from .rime.protocol import RimeOptions, http_request_body

__all__ = [
    "DEFAULT_HTTP_URL",
    "STREAM_PATH",
    "VOICES_PATH",
    "AudioStream",
    "HTTPClient",
    "RequestRejected",
    "RimeHTTPClient",
    "Synthesis",
    "Voice",
    "request_body",
]

DEFAULT_HTTP_URL: Final = "https://api.inworld.ai"
STREAM_PATH: Final = "/tts/v1/voice:stream"
VOICES_PATH: Final = "/tts/v1/voices"


class RequestRejected(HandshakeRejected):
    """An HTTP request was answered with an error status (401, 403, 429, 5xx ...).

    A :class:`~trio_tts.HandshakeRejected`, so ``except HandshakeRejected`` and
    ``is_auth_error`` work the same for the pool and the HTTP client.

    Attributes:
        status: the HTTP status code.
        retry_after: seconds from a ``Retry-After`` header, when the server sent one.
        grpc_code: the gRPC code from the error body, when it had one.
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        retry_after: float | None = None,
        *,
        request: str = "request",
        grpc_code: int | None = None,
    ) -> None:
        super().__init__(status, reason, retry_after)
        self.grpc_code = grpc_code
        text = f"{request} rejected with HTTP {status}"
        self.args = (f"{text}: {reason}" if reason else text,)


@attrs.frozen
class Voice:
    """One voice from ``GET /tts/v1/voices``."""

    voice_id: str
    display_name: str = ""
    description: str = ""
    languages: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""


@attrs.frozen(repr=False)
class Synthesis:
    """All of one request's audio (:meth:`HTTPClient.synthesize`)."""

    audio: bytes
    sample_rate: int
    encoding: AudioEncoding
    words: tuple[WordTiming, ...] = ()
    #: Seconds from sending the request to the first audio chunk.
    time_to_first_audio: float | None = None

    @property
    def duration(self) -> float:
        """Seconds of audio (PCM encodings only; 0.0 for compressed ones)."""
        return len(self.audio) / 2 / self.sample_rate if self.encoding.is_pcm else 0.0

    def __repr__(self) -> str:
        return (
            f"Synthesis(bytes={len(self.audio)}, sample_rate={self.sample_rate},"
            f" duration={self.duration:.3f}s, words={len(self.words)})"
        )


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
    if options.language is not None:
        body["language"] = options.language
    if options.timestamp_type is not None:
        body["timestampType"] = options.timestamp_type.value
    if options.apply_text_normalization is not None:
        body["applyTextNormalization"] = "ON" if options.apply_text_normalization else "OFF"
    return body


def _check_client_args(
    api_key: str | None, url: object, field: str, timeout: object
) -> urllib.parse.SplitResult:
    """Check (and register) the key, the http(s) ``url`` (named ``field`` in errors) and the
    timeout of a client; return the URL's parts.

    Raises:
        InvalidOptions: a URL that is not http(s), an empty key, a non-positive timeout.
    """
    register_api_key(api_key)
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidOptions(f"{field}: must be an http:// or https:// URL with a host")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise InvalidOptions(f"timeout: {timeout!r} must be a positive number")
    return parts


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lost(request: str, exc: httpx.TransportError) -> ConnectionLost:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        detail = f"timed out ({type(exc).__name__})"
    return ConnectionLost(f"{request} failed: {redact(_short(detail))}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _raise_for_status(response: httpx.Response, request: str) -> NoReturn:
    """Turn an error response (body already read) into the engine's error types."""
    code: int | None = None
    message = response.reason_phrase
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if isinstance(data, dict):
        # Google-style {"error": {"code", "message"}} or the flat {"code", "message"}.
        inner = data.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else data
        if isinstance(err.get("message"), str) and err["message"]:
            message = err["message"]
        if isinstance(err.get("code"), int) and not isinstance(err.get("code"), bool):
            code = err["code"]
    message = redact(_short(message))
    status = response.status_code
    if status == 400:
        raise ContextFailed(code if code is not None else 3, message)
    raise RequestRejected(status, message, _retry_after(response), request=request, grpc_code=code)


async def _collect(
    chunks: AbstractAsyncContextManager[AsyncIterator[Audio]],
) -> tuple[bytes, tuple[WordTiming, ...], float | None]:
    """All the audio and word timings of a request's ``stream()``, and the seconds to its
    first chunk."""
    start = trio.current_time()
    first: float | None = None
    pieces: list[bytes] = []
    words: list[WordTiming] = []
    async with chunks as audios:
        async for audio in audios:
            if first is None:
                first = trio.current_time() - start
            pieces.append(audio.data)
            words.extend(audio.words)
    return b"".join(pieces), tuple(words), first


OptionsT = TypeVar("OptionsT", VoiceOptions, RimeOptions)


class _HTTPClientBase(trio.abc.AsyncResource, Generic[OptionsT]):
    """What the HTTP clients share: the httpx client, default options, ``repr`` and close."""

    _options_type: type[OptionsT]
    #: The name and the endpoint attribute shown by ``repr``.
    _repr_name: str
    _endpoint_attr: str
    defaults: OptionsT

    def _setup(
        self,
        api_key: str | None,
        headers: dict[str, str],
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        **client: Any,
    ) -> None:
        self._has_key = api_key is not None
        self._client = httpx.AsyncClient(
            headers=headers, timeout=timeout, transport=transport, **client
        )

    def __repr__(self) -> str:
        key = "***" if self._has_key else "None"
        endpoint = getattr(self, self._endpoint_attr)
        return f"{self._repr_name}(api_key={key}, {self._endpoint_attr}={endpoint!r})"

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        with trio.CancelScope(shield=True):
            await self._client.aclose()

    def _options(self, options: OptionsT | None, overrides: dict[str, Any]) -> OptionsT:
        base = options if options is not None else self.defaults
        if not isinstance(base, self._options_type):
            name = self._options_type.__name__
            raise InvalidOptions(f"options: expected {name}, got {type(base).__name__}")
        return base.replace(**overrides) if overrides else base

    @asynccontextmanager
    async def _post(self, request: str, url: str, **kw: Any) -> AsyncIterator[httpx.Response]:
        """``POST`` to ``url``: the response, its error status and transport failures
        raised as the engine's errors (``request`` names it in their messages)."""
        try:
            async with self._client.stream("POST", url, **kw) as response:
                if response.status_code != 200:
                    await response.aread()
                    _raise_for_status(response, request)
                yield response
        except httpx.TransportError as exc:
            raise _lost(request, exc) from None


def _check_text(text: object) -> None:
    if not isinstance(text, str) or not text.strip():
        raise InvalidOptions("text: must be a non-empty string")


class AudioStream:
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
                raise _lost(self._request, exc) from None
            if not line.strip():
                continue
            audio = self._decode(line)
            if audio is not None:
                self.chunks += 1
                self.audio_bytes += len(audio.data)
                return audio

    def _decode(self, line: str) -> Audio | None:
        try:
            frame = _DECODER.decode(line)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed voice:stream line: {_short(str(exc), 80)}") from None
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
        words = _words(info)
        if not data and not words:
            return None
        return Audio(self.request_id, data, words)


class HTTPClient(_HTTPClientBase[VoiceOptions]):
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

    _options_type = VoiceOptions
    _repr_name = "HTTPClient"
    _endpoint_attr = "base_url"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_HTTP_URL,
        defaults: VoiceOptions | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = _check_client_args(api_key, base_url, "base_url", timeout)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.defaults = defaults if defaults is not None else VoiceOptions()
        headers = {"Authorization": f"Basic {api_key}"} if api_key is not None else {}
        self._setup(api_key, headers, timeout, transport, base_url=self.base_url)

    @classmethod
    def from_env(
        cls, variable: str = "INWORLD_API_KEY", *, base_url: str = DEFAULT_HTTP_URL, **kw: Any
    ) -> HTTPClient:
        """A client keyed by ``$variable`` (no credential when it is unset or empty)."""
        import os

        return cls(os.environ.get(variable) or None, base_url=base_url, **kw)

    @asynccontextmanager
    async def stream(
        self, text: str, *, options: VoiceOptions | None = None, **overrides: Any
    ) -> AsyncIterator[AudioStream]:
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
        opts = self._options(options, overrides)
        _check_text(text)
        request_id = uuid.uuid4().hex
        request = f"POST {STREAM_PATH}"
        async with self._post(
            request,
            STREAM_PATH,
            json=request_body(text, opts),
            headers={"X-Request-Id": request_id},
        ) as response:
            yield AudioStream(response, request_id, opts, request)

    async def synthesize(
        self, text: str, *, options: VoiceOptions | None = None, **overrides: Any
    ) -> Synthesis:
        """Synthesise ``text`` and return all of its audio (see :meth:`stream`)."""
        opts = self._options(options, overrides)
        audio, words, first = await _collect(self.stream(text, options=opts))
        return Synthesis(audio, opts.sample_rate, opts.encoding, words, first)

    async def voices(self, language: str | None = None) -> list[Voice]:
        """The voices the service offers (``GET /tts/v1/voices``), optionally one language's.

        Raises:
            RequestRejected: an error status (401 ...). ConnectionLost: no answer.
            ProtocolError: the answer is not a voice list.
        """
        request = f"GET {VOICES_PATH}"
        params = {"filter": f"language={language}"} if language else None
        try:
            response = await self._client.get(VOICES_PATH, params=params)
        except httpx.TransportError as exc:
            raise _lost(request, exc) from None
        if response.status_code != 200:
            _raise_for_status(response, request)
        try:
            data = response.json()
            rows = data.get("voices", []) if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise ValueError("no voice list")
            return [_voice(row) for row in rows]
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"{request}: unexpected answer ({_short(str(exc), 80)})") from None


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


# ------------------------------------------------------------------------------------- Rime


class RimeHTTPClient(_HTTPClientBase[RimeOptions]):
    """A client of Rime's one-shot HTTP synthesis (``POST /v1/rime-tts``), or the local
    server's: the path livekit-plugins-rime keeps for ``use_websocket=False``.

    One request per text; the answer is raw 16-bit PCM (``Accept: audio/pcm``) at the options'
    sample rate, handed out as it arrives. The body is
    :func:`trio_tts.protocols.rime.http_request_body` (``segment`` is WebSocket-only and not
    sent; ``reduce_latency`` is honoured for ``mistv2``)::

        async with trio_tts.http.RimeHTTPClient(api_key=key) as client:
            speech = await client.synthesize("Hello from trio.", speaker="celeste")

    Errors are the pool's: 400 → :class:`~trio_tts.ContextFailed`; other error statuses →
    :class:`RequestRejected` (``status``, ``retry_after``); transport failures →
    :class:`~trio_tts.ConnectionLost`; an answer that is not audio →
    :class:`~trio_tts.ProtocolError`. The key travels only in ``Authorization: Bearer``.

    Args:
        api_key: Rime's key (``None``: no credential, for the local server).
        url: the endpoint, e.g. ``https://users.rime.ai/v1/rime-tts`` or a local server's
            ``rime_http_url``.
        defaults: the :class:`~trio_tts.RimeOptions` of requests that pass none.
        timeout: seconds for connecting and for each read.
        transport: an httpx transport (tests: ``httpx.MockTransport``).

    Raises:
        InvalidOptions: a URL that is not http(s), an empty key, a non-positive timeout.
    """

    _options_type = RimeOptions
    _repr_name = "RimeHTTPClient"
    _endpoint_attr = "url"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = RIME_HTTP_URL,
        defaults: RimeOptions | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        _check_client_args(api_key, url, "url", timeout)
        self.url = url
        self.defaults = defaults if defaults is not None else RimeOptions()
        headers = {"Accept": "audio/pcm"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._setup(api_key, headers, timeout, transport)

    @asynccontextmanager
    async def stream(
        self, text: str, *, options: RimeOptions | None = None, **overrides: Any
    ) -> AsyncIterator[AsyncIterator[Audio]]:
        """Synthesise ``text``; the block iterates its audio (:class:`~trio_tts.Audio`, whole
        16-bit samples) as it arrives.

        Raises:
            InvalidOptions: bad options or empty text, before any network I/O.
            ContextFailed, RequestRejected, ConnectionLost, ProtocolError: see the class.
        """
        opts = self._options(options, overrides)
        _check_text(text)
        request = "POST rime-tts"
        request_id = uuid.uuid4().hex
        async with self._post(request, self.url, json=http_request_body(text, opts)) as response:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("audio/"):
                raise ProtocolError(f"{request}: expected audio, got {_short(kind, 40)!r}")
            yield _rime_audio(response, request_id, request)

    async def synthesize(
        self, text: str, *, options: RimeOptions | None = None, **overrides: Any
    ) -> Synthesis:
        """Synthesise ``text`` and return all of its audio (see :meth:`stream`)."""
        opts = self._options(options, overrides)
        audio, _, first = await _collect(self.stream(text, options=opts))
        return Synthesis(audio, opts.sample_rate, AudioEncoding.PCM, (), first)


async def _rime_audio(
    response: httpx.Response, request_id: str, request: str
) -> AsyncIterator[Audio]:
    """The body's bytes as :class:`Audio` events of whole samples (an odd byte waits)."""
    odd = b""
    try:
        async for piece in response.aiter_bytes():
            data, odd = odd + piece, b""
            if len(data) % 2:
                data, odd = data[:-1], data[-1:]
            if data:
                yield Audio(request_id, data)
    except httpx.TransportError as exc:
        raise _lost(request, exc) from None
    if odd:
        raise ProtocolError(f"{request}: the audio ended in the middle of a sample")
