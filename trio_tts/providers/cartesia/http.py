"""Cartesia's HTTP API (httpx, on trio): the voice list (``GET /voices``) and one-shot
synthesis (``POST /tts/bytes``, the path the LiveKit plugin's ``synthesize()`` takes).

::

    async with trio_tts.http.CartesiaHTTPClient(api_key=key) as client:
        voices = await client.voices(language="en")
        speech = await client.synthesize("Hello from trio.", voice=voices[0].voice_id)

Every request carries ``X-API-Key`` and ``Cartesia-Version`` (the options' ``api_version``).
``/tts/bytes`` answers with the raw audio of the options' ``output_format`` (the body is
:func:`request_body`: the WebSocket's settings without timestamps or buffering), handed out
as it arrives in whole samples. ``GET /voices`` is paged by voice id (``limit`` 100,
``starting_after``): :meth:`CartesiaHTTPClient.voices` follows the pages; Cartesia's list has
no language filter, so ``language`` is applied here.

Errors are the pool's (:mod:`trio_tts.providers.http_common`; an HTTP 400 is a
:class:`~trio_tts.ContextFailed` with code 400), plus an answer that is not what was asked
for → :class:`~trio_tts.ProtocolError`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import httpx
import trio

from ..._core.errors import ProtocolError
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
from .options import CartesiaOptions

__all__ = [
    "BYTES_PATH",
    "DEFAULT_HTTP_URL",
    "VOICES_PATH",
    "CartesiaAudioStream",
    "CartesiaHTTPClient",
    "CartesiaVoice",
    "request_body",
]

DEFAULT_HTTP_URL: Final = "https://api.cartesia.ai"
BYTES_PATH: Final = "/tts/bytes"
VOICES_PATH: Final = "/voices"
#: Pages of ``GET /voices`` followed at most (100 voices each).
_MAX_PAGES: Final = 100


@attrs.frozen
class CartesiaVoice:
    """One voice from ``GET /voices`` (the fields the CLI and callers use; ``voice_rows()``
    has them all)."""

    voice_id: str
    display_name: str = ""
    description: str = ""
    languages: tuple[str, ...] = ()
    gender: str = ""
    is_owner: bool = False


def request_body(text: str, options: CartesiaOptions) -> dict[str, Any]:
    """The JSON body of ``POST /tts/bytes`` for ``text``: the settings every WebSocket
    request carries, without the streaming-only ones (as the LiveKit plugin's
    ``ChunkedStream``)."""
    return {**options.request_fields(streaming=False), "transcript": text}


class CartesiaAudioStream(SampleStream[CartesiaOptions]):
    """The audio of one ``/tts/bytes`` request, as it arrives (``async for audio in s``):
    :class:`~trio_tts.Audio` events of whole samples of the options' encoding (a partial
    sample waits for the next piece) whose ``context_id`` is the request id.

    Raises (from iteration):
        ConnectionLost: the connection failed or timed out mid-body.
        ProtocolError: the audio ended in the middle of a sample.
    """

    def __init__(
        self, response: httpx.Response, request_id: str, options: CartesiaOptions, request: str
    ) -> None:
        width = options.encoding.bytes_per_sample
        super().__init__(response, request_id, options, request, width=width)


class CartesiaHTTPClient(trio.abc.AsyncResource):
    """A client of Cartesia's HTTP API (voices, ``/tts/bytes``), or the local server's.

    Args:
        api_key: Cartesia's key, sent as ``X-API-Key`` (``None``: no credential, for the
            local server).
        base_url: ``https://api.cartesia.ai`` or e.g. ``server.base_url`` of a local server.
        defaults: the :class:`~trio_tts.CartesiaOptions` of requests that pass none (their
            ``api_version`` is also the one ``voices()`` sends).
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
        defaults: CartesiaOptions | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = check_client_args(api_key, base_url, "base_url", timeout)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.defaults = defaults if defaults is not None else CartesiaOptions()
        self._has_key = api_key is not None
        headers = {"X-API-Key": api_key} if api_key is not None else {}
        self._session = HTTPSession(
            headers, timeout, transport, bad_request_code=400, base_url=self.base_url
        )

    @classmethod
    def from_env(
        cls, variable: str = "CARTESIA_API_KEY", *, base_url: str = DEFAULT_HTTP_URL, **kw: Any
    ) -> CartesiaHTTPClient:
        """A client keyed by ``$variable`` (no credential when it is unset or empty)."""
        return cls(os.environ.get(variable) or None, base_url=base_url, **kw)

    def __repr__(self) -> str:
        key = "***" if self._has_key else "None"
        return f"CartesiaHTTPClient(api_key={key}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        await self._session.aclose()

    @asynccontextmanager
    async def stream(
        self, text: str, *, options: CartesiaOptions | None = None, **overrides: Any
    ) -> AsyncIterator[CartesiaAudioStream]:
        """Synthesise ``text`` (``POST /tts/bytes``); the block iterates its audio as it
        arrives.

        Raises:
            InvalidOptions: bad options or empty text, before any network I/O.
            ContextFailed: HTTP 400 (code 400; e.g. an unknown voice or model).
            RequestRejected: any other error status (401, 404, 429, 5xx ...).
            ConnectionLost: the request could not be sent or the body was cut short.
            ProtocolError: the answer is not audio.
        """
        opts = resolve_options(CartesiaOptions, options, self.defaults, overrides)
        check_text(text)
        request = f"POST {BYTES_PATH}"
        request_id = uuid.uuid4().hex
        async with self._session.post(
            request,
            BYTES_PATH,
            json=request_body(text, opts),
            headers={"Cartesia-Version": opts.api_version},
        ) as response:
            kind = response.headers.get("content-type", "")
            if not kind.startswith(("audio/", "application/octet-stream")):
                raise ProtocolError(f"{request}: expected audio, got {shorten(kind, 40)!r}")
            yield CartesiaAudioStream(response, request_id, opts, request)

    async def synthesize(
        self, text: str, *, options: CartesiaOptions | None = None, **overrides: Any
    ) -> Synthesis:
        """Synthesise ``text`` and return all of its audio (see :meth:`stream`)."""
        opts = resolve_options(CartesiaOptions, options, self.defaults, overrides)
        audio, _, first = await collect(self.stream(text, options=opts))
        return Synthesis(audio, opts.sample_rate, opts.encoding, (), first)

    async def voices(self, language: str | None = None) -> list[CartesiaVoice]:
        """The voices the account may use (``GET /voices``, every page), optionally one
        language's.

        Raises:
            RequestRejected: an error status (401 ...). ConnectionLost: no answer.
            ProtocolError: the answer is not a voice list.
        """
        rows = await self.voice_rows(language)
        try:
            return [_voice(row) for row in rows]
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(
                f"GET {VOICES_PATH}: unexpected answer ({shorten(str(exc), 80)})"
            ) from None

    async def voice_rows(self, language: str | None = None) -> list[dict[str, Any]]:
        """The voices of ``GET /voices`` as the service sent them (JSON objects, all their
        fields), every page, optionally one language's (``language`` field).

        Raises:
            RequestRejected: an error status (401 ...). ConnectionLost: no answer.
            ProtocolError: the answer is not a page of voice objects, or the pages do not end.
        """
        request = f"GET {VOICES_PATH}"
        headers = {"Cartesia-Version": self.defaults.api_version}
        rows: list[dict[str, Any]] = []
        params: dict[str, str | int] = {"limit": 100}
        for _ in range(_MAX_PAGES):
            response = await self._session.get(
                request, VOICES_PATH, params=params, headers=headers
            )
            try:
                page = response.json()
                data = page.get("data") if isinstance(page, dict) else None
                if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                    raise ValueError("no voice list")
            except ValueError as exc:
                raise ProtocolError(
                    f"{request}: unexpected answer ({shorten(str(exc), 80)})"
                ) from None
            rows += data
            last = data[-1].get("id") if data else None
            if not page.get("has_more") or not isinstance(last, str):
                return [r for r in rows if language is None or r.get("language") == language]
            params = {"limit": 100, "starting_after": last}
        raise ProtocolError(f"{request}: more than {_MAX_PAGES} pages")


def _voice(row: dict[str, Any]) -> CartesiaVoice:
    if not isinstance(row.get("id"), str):
        raise ValueError("a voice without id")
    language = row.get("language")
    return CartesiaVoice(
        voice_id=row["id"],
        display_name=str(row.get("name") or row["id"]),
        description=str(row.get("description") or ""),
        languages=(language,) if isinstance(language, str) and language else (),
        gender=str(row.get("gender") or ""),
        is_owner=row.get("is_owner") is True,
    )
