"""Rime's one-shot synthesis (``POST /v1/rime-tts``) over HTTP (httpx, on trio): the path
livekit-plugins-rime keeps for ``use_websocket=False``.

One request per text; the answer is raw 16-bit PCM (``Accept: audio/pcm``) at the options'
sample rate, handed out as it arrives. The body is :func:`request_body` (``segment`` is
WebSocket-only and not sent; ``reduce_latency`` is honoured for ``mistv2``)::

    async with trio_tts.http.RimeHTTPClient(api_key=key) as client:
        speech = await client.synthesize("Hello from trio.", speaker="celeste")

Errors are the pool's (:mod:`trio_tts.providers.http_common`), plus an answer that is not
audio → :class:`~trio_tts.ProtocolError`. The key travels only in ``Authorization: Bearer``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

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
from .options import RimeOptions, model_params

__all__ = ["DEFAULT_HTTP_URL", "RimeAudioStream", "RimeHTTPClient", "request_body"]

DEFAULT_HTTP_URL: Final = "https://users.rime.ai/v1/rime-tts"


def request_body(text: str, options: RimeOptions) -> dict[str, object]:
    """The JSON body of Rime's one-shot ``POST /v1/rime-tts`` (the seed's ``ChunkedStream``).

    ``segment`` is WebSocket-only and not sent; ``reduce_latency`` is sent for ``mistv2``.
    """
    body: dict[str, object] = {
        "speaker": options.speaker,
        "text": text,
        "modelId": options.model,
        **model_params(options),
        "samplingRate": options.sample_rate,
    }
    if options.model == "mistv2" and options.reduce_latency is not None:
        body["reduceLatency"] = options.reduce_latency
    return body


class RimeAudioStream(SampleStream[RimeOptions]):
    """The audio of one ``rime-tts`` request, as it arrives (``async for audio in s``):
    :class:`~trio_tts.Audio` events of whole 16-bit samples (an odd byte waits for the next
    piece) whose ``context_id`` is the request id.

    Raises (from iteration):
        ConnectionLost: the connection failed or timed out mid-body.
        ProtocolError: the audio ended in the middle of a sample.
    """

    def __init__(
        self, response: httpx.Response, request_id: str, options: RimeOptions, request: str
    ) -> None:
        super().__init__(response, request_id, options, request, width=2)


class RimeHTTPClient(trio.abc.AsyncResource):
    """A client of Rime's one-shot HTTP synthesis (``POST /v1/rime-tts``), or the local
    server's.

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

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = DEFAULT_HTTP_URL,
        defaults: RimeOptions | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        check_client_args(api_key, url, "url", timeout)
        self.url = url
        self.defaults = defaults if defaults is not None else RimeOptions()
        self._has_key = api_key is not None
        headers = {"Accept": "audio/pcm"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._session = HTTPSession(headers, timeout, transport)

    @classmethod
    def from_env(
        cls, variable: str = "RIME_API_KEY", *, url: str = DEFAULT_HTTP_URL, **kw: Any
    ) -> RimeHTTPClient:
        """A client keyed by ``$variable`` (no credential when it is unset or empty)."""
        return cls(os.environ.get(variable) or None, url=url, **kw)

    def __repr__(self) -> str:
        key = "***" if self._has_key else "None"
        return f"RimeHTTPClient(api_key={key}, url={self.url!r})"

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        await self._session.aclose()

    @asynccontextmanager
    async def stream(
        self, text: str, *, options: RimeOptions | None = None, **overrides: Any
    ) -> AsyncIterator[RimeAudioStream]:
        """Synthesise ``text``; the block iterates its audio as it arrives.

        Raises:
            InvalidOptions: bad options or empty text, before any network I/O.
            ContextFailed: HTTP 400.
            RequestRejected: any other error status (401, 403, 429, 5xx ...).
            ConnectionLost: the request could not be sent or the body was cut short.
            ProtocolError: the answer is not audio.
        """
        opts = resolve_options(RimeOptions, options, self.defaults, overrides)
        check_text(text)
        request = "POST rime-tts"
        request_id = uuid.uuid4().hex
        async with self._session.post(request, self.url, json=request_body(text, opts)) as response:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("audio/"):
                raise ProtocolError(f"{request}: expected audio, got {shorten(kind, 40)!r}")
            yield RimeAudioStream(response, request_id, opts, request)

    async def synthesize(
        self, text: str, *, options: RimeOptions | None = None, **overrides: Any
    ) -> Synthesis:
        """Synthesise ``text`` and return all of its audio (see :meth:`stream`)."""
        opts = resolve_options(RimeOptions, options, self.defaults, overrides)
        audio, _, first = await collect(self.stream(text, options=opts))
        return Synthesis(audio, opts.sample_rate, AudioEncoding.PCM, (), first)
