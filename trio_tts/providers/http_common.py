"""What the providers' one-shot HTTP clients share (httpx, on trio): argument checks, the
mapping of HTTP failures onto the engine's errors, and the :class:`Synthesis` result.

Each provider's client lives beside its codec (:mod:`.inworld.http`, :mod:`.rime.http`) and
holds one :class:`HTTPSession`; :mod:`trio_tts.http` is their public home. Errors are the
pool's:

* HTTP 400 (the request itself is wrong: unknown voice, text too long) →
  :class:`~trio_tts.ContextFailed` with the server's code and message, as the WebSocket
  reports the same problem;
* any other non-2xx status (401/403 credentials, 429 rate limit, 5xx) →
  :class:`~trio_tts.RequestRejected` with ``status`` and ``retry_after``;
* socket errors, timeouts and a body cut short → :class:`~trio_tts.ConnectionLost`.

No message built here contains a credential: every server-provided text goes through
:func:`~trio_tts._core.errors.redact`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, NoReturn, TypeVar

import attrs
import httpx
import trio

from .._core.errors import (
    ConnectionLost,
    ContextFailed,
    InvalidOptions,
    ProtocolError,
    RequestRejected,
    connect_failure,
    redact,
    register_api_key,
    retry_after_seconds,
)
from .._core.events import Audio, WordTiming
from .._core.options import AudioEncoding, Options

__all__ = [
    "HTTPSession",
    "SampleStream",
    "Synthesis",
    "check_client_args",
    "check_text",
    "collect",
    "connection_lost",
    "raise_for_status",
    "resolve_options",
    "shorten",
]

OptionsT = TypeVar("OptionsT", bound=Options)


@attrs.frozen(repr=False)
class Synthesis:
    """All of one request's audio (``synthesize()`` of an HTTP client)."""

    audio: bytes
    sample_rate: int
    encoding: AudioEncoding
    words: tuple[WordTiming, ...] = ()
    #: Seconds from sending the request to the first audio chunk.
    time_to_first_audio: float | None = None

    @property
    def duration(self) -> float:
        """Seconds of audio (raw encodings only; 0.0 for compressed ones)."""
        width = self.encoding.bytes_per_sample
        return len(self.audio) / width / self.sample_rate if width else 0.0

    def __repr__(self) -> str:
        return (
            f"Synthesis(bytes={len(self.audio)}, sample_rate={self.sample_rate},"
            f" duration={self.duration:.3f}s, words={len(self.words)})"
        )


def check_client_args(
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


def check_text(text: object) -> None:
    """Raises: InvalidOptions: ``text`` is not a string with something to say."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidOptions("text: must be a non-empty string")


def resolve_options(
    kind: type[OptionsT], options: OptionsT | None, defaults: OptionsT, overrides: dict[str, Any]
) -> OptionsT:
    """The options of one request: ``options`` (or the client's ``defaults``) with
    ``overrides`` applied.

    Raises:
        InvalidOptions: options of another provider, an unknown field or an invalid value.
    """
    base = options if options is not None else defaults
    if not isinstance(base, kind):
        raise InvalidOptions(f"options: expected {kind.__name__}, got {type(base).__name__}")
    return base.replace(**overrides) if overrides else base


def shorten(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters (for error messages)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def connection_lost(request: str, exc: httpx.TransportError) -> ConnectionLost:
    """The engine's error for a transport failure of ``request`` (its name, e.g. ``POST
    /tts/v1/voice:stream``)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        detail = f"timed out ({type(exc).__name__})"
    reason = connect_failure(exc) if isinstance(exc, httpx.ConnectError) else None
    if reason and reason.lower() not in detail.lower():  # "... failed: connection refused"
        detail = f"{detail}: {reason}"
    return ConnectionLost(f"{request} failed: {redact(shorten(detail))}")


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers.get("retry-after"))


def raise_for_status(
    response: httpx.Response, request: str, *, bad_request_code: int = 3
) -> NoReturn:
    """Turn an error response (body already read) into the engine's error types.

    Raises:
        ContextFailed: HTTP 400 (code ``bad_request_code`` when the body has none: Inworld's
            3, INVALID_ARGUMENT; Cartesia's clients pass 400).
        RequestRejected: any other status.
    """
    code: int | None = None
    message = response.reason_phrase
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if isinstance(data, dict):
        # Google-style {"error": {"code", "message"}}, ElevenLabs' {"detail": {"status",
        # "message"}} or the flat {"code", "message"}.
        inner = data.get("error")
        if not isinstance(inner, dict):
            inner = data.get("detail")
        err: dict[str, Any] = inner if isinstance(inner, dict) else data
        if isinstance(err.get("message"), str) and err["message"]:
            message = err["message"]
        if isinstance(err.get("code"), int) and not isinstance(err.get("code"), bool):
            code = err["code"]
    message = redact(shorten(message))
    status = response.status_code
    if status == 400:
        raise ContextFailed(code if code is not None else bad_request_code, message)
    raise RequestRejected(status, message, _retry_after(response), request=request, grpc_code=code)


async def collect(
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


class HTTPSession:
    """One httpx client whose requests fail with the engine's errors (see the module).

    ``headers`` carry the credential: they are never shown by ``repr``.
    """

    def __init__(
        self,
        headers: dict[str, str],
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        *,
        bad_request_code: int = 3,
        **client: Any,
    ) -> None:
        self._bad_request_code = bad_request_code
        self._client = httpx.AsyncClient(
            headers=headers, timeout=timeout, transport=transport, **client
        )

    def __repr__(self) -> str:
        return f"<HTTPSession closed={self._client.is_closed}>"

    async def aclose(self) -> None:
        """Close the connection pool; idempotent, and finishes even when cancelled."""
        with trio.CancelScope(shield=True):
            await self._client.aclose()

    @asynccontextmanager
    async def post(self, request: str, url: str, **kw: Any) -> AsyncIterator[httpx.Response]:
        """``POST`` to ``url`` and stream the answer: the block gets a 200 response whose
        body is still to be read (``request`` names it in error messages).

        Raises:
            ContextFailed, RequestRejected: an error status (see :func:`raise_for_status`).
            ConnectionLost: the request could not be sent or answered.
        """
        try:
            async with self._client.stream("POST", url, **kw) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise_for_status(response, request, bad_request_code=self._bad_request_code)
                yield response
        except httpx.TransportError as exc:
            raise connection_lost(request, exc) from None

    async def get(self, request: str, url: str, **kw: Any) -> httpx.Response:
        """``GET`` ``url``: a 200 response, body read.

        Raises:
            ContextFailed, RequestRejected: an error status. ConnectionLost: no answer.
        """
        try:
            response = await self._client.get(url, **kw)
        except httpx.TransportError as exc:
            raise connection_lost(request, exc) from None
        if response.status_code != 200:
            raise_for_status(response, request, bad_request_code=self._bad_request_code)
        return response


class SampleStream(Generic[OptionsT]):
    """The raw audio of one HTTP response, as it arrives (``async for audio in s``):
    :class:`~trio_tts.Audio` events of whole samples of ``width`` bytes (a partial sample
    waits for the next piece; ``width=1`` passes bytes as they come) whose ``context_id`` is
    the request id. The providers' audio streams (Rime's, ElevenLabs', Cartesia's) are this,
    each with its own width.

    Raises (from iteration):
        ConnectionLost: the connection failed or timed out mid-body.
        ProtocolError: the audio ended in the middle of a sample.
    """

    def __init__(
        self,
        response: httpx.Response,
        request_id: str,
        options: OptionsT,
        request: str,
        *,
        width: int,
    ) -> None:
        self.request_id = request_id
        self.options = options
        self._request = request
        self._width = width
        self._pieces = response.aiter_bytes()
        self._partial = b""
        self.audio_bytes = 0
        self.chunks = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.request_id} chunks={self.chunks}"
            f" audio={self.audio_bytes}B>"
        )

    def __aiter__(self) -> AsyncIterator[Audio]:
        return self

    async def __anext__(self) -> Audio:
        while True:
            try:
                piece = await self._pieces.__anext__()
            except httpx.TransportError as exc:
                raise connection_lost(self._request, exc) from None
            except StopAsyncIteration:
                if self._partial:
                    raise ProtocolError(
                        f"{self._request}: the audio ended in the middle of a sample"
                    ) from None
                raise
            data = self._partial + piece
            cut = len(data) - len(data) % self._width
            data, self._partial = data[:cut], data[cut:]
            if data:
                self.chunks += 1
                self.audio_bytes += len(data)
                return Audio(self.request_id, data)
