"""A LiveKit Agents TTS plugin for Inworld, on the trio engine through the asyncio bridge.

A drop-in for ``livekit.plugins.inworld.TTS`` (1.8.9): change the import and the rest of the
agent stays as it was. The constructor takes every argument of the official one with the same
meaning (``ws_url``/``base_url`` are the service roots, ``wss://api.inworld.ai/``; a full
endpoint is accepted too), sends the same ``create`` settings, and reports the same
``label``, ``model`` and ``provider`` (so ``TTSMetrics`` match). ``stream()`` is fed by the
agent's text through a sentence tokenizer (or, for ``inworld-tts-2`` models without a
tokenizer of the caller's, forwards the text as it comes and lets the server cut sentences),
one-shot ``synthesize()`` goes over HTTP, plus ``prewarm()``, ``update_options()``,
``list_voices()``, aligned transcripts (``TimedString``) when ``timestamp_type`` is set, and
errors mapped to LiveKit's ``APIError`` family so the framework's retries and
``FallbackAdapter`` behave as with the official plugin. Where the two differ (typed,
non-retryable 4xx errors; the pool) the README's LiveKit paragraph lists it.

LiveKit runs each job in its own process. Every :class:`TTS` of a process that talks to the
same endpoint with the same key shares one :class:`~bridges.asyncio_adapter.AsyncioPool` (one
trio guest run, one pool of connections): each utterance is a pooled *context*, not a
connection. The pool opens on first use and closes when the last ``TTS`` using it is closed.

Requires the ``livekit`` extra (``pip install -e '.[livekit]'`` in a clone);
``import trio_tts`` never imports LiveKit.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp
import trio
from livekit.agents import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    tokenize,
    tts,
    utils,
)
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    TimedString,
)
from livekit.agents.utils import is_given

import trio_tts

from ._livekit_common import (
    NUM_CHANNELS,
    PooledSynthesizeStream,
    PooledTTS,
    SharedPool,
    api_errors,
    initialize,
    pool_key,
    raise_failed,
    shared_pool,
    speak,
)
from ._livekit_common import shared_pool_count as shared_pool_count
from ._livekit_common import shared_pool_keys as shared_pool_keys
from ._status import http_status
from .asyncio_adapter import AsyncioContext

if TYPE_CHECKING:  # imported when first used: streaming needs neither httpx nor TLS
    from trio_tts.http import HTTPClient

__all__ = [
    "DEFAULT_URL",
    "DEFAULT_WS_URL",
    "TTS",
    "ChunkedStream",
    "SynthesizeStream",
    "to_api_error",
    "ws_endpoint",
]

# The official plugin's defaults (livekit-plugins-inworld 1.8.9).
DEFAULT_MODEL = "inworld-tts-1.5-max"
DEFAULT_VOICE = "Ashley"
DEFAULT_SAMPLE_RATE = 24000
DEFAULT_BUFFER_CHAR_THRESHOLD = 250
DEFAULT_MAX_BUFFER_DELAY_MS = 3000
DEFAULT_TIMESTAMP_TRANSPORT_STRATEGY = "ASYNC"
#: The service roots, as the official plugin takes them.
DEFAULT_URL: Final = "https://api.inworld.ai/"
DEFAULT_WS_URL: Final = "wss://api.inworld.ai/"
#: The bidirectional endpoint's path under the root.
STREAM_PATH: Final = "/tts/v1/voice:streamBidirectional"
#: The official plugin's ``TTS.label`` (``TTSMetrics.label``, logs and traces).
LABEL: Final = "livekit.plugins.inworld.tts.TTS"

Encoding = Literal["LINEAR16", "PCM", "MP3", "OGG_OPUS", "FLAC"]
TimestampType = Literal["TIMESTAMP_TYPE_UNSPECIFIED", "WORD", "CHARACTER"]
TextNormalization = Literal["APPLY_TEXT_NORMALIZATION_UNSPECIFIED", "ON", "OFF"] | bool
DeliveryMode = Literal["DELIVERY_MODE_UNSPECIFIED", "STABLE", "BALANCED", "CREATIVE"]
TimestampTransportStrategy = Literal["TIMESTAMP_TRANSPORT_STRATEGY_UNSPECIFIED", "SYNC", "ASYNC"]

_MIME = {"MP3": "audio/mpeg", "OGG_OPUS": "audio/ogg", "FLAC": "audio/flac"}
#: Backpressure (SynthesizeStream): the speaker stops taking audio from the context while
#: this many frames (200 ms each) wait for the agent, and goes on once it read them down to
#: ``_FRAMES_LOW``; the rest waits in the pool (and, past its flow-control bound, in the
#: socket), not as LiveKit frames.
_FRAMES_HIGH = 8
_FRAMES_LOW = 4


def to_api_error(exc: trio_tts.TTSError, *, provider: str = "Inworld") -> APIError:
    """The LiveKit error for a ``trio_tts`` error; its ``retryable`` drives the retries.

    ``provider`` names the service in the message of a failed context (``"Rime"`` ...).

    ===================== ==========================================================
    ``CapacityTimeout``   ``APITimeoutError`` (retryable)
    ``HandshakeRejected`` ``APIStatusError(status)``: 401/403 final, 429/5xx retried
    ``RequestRejected``   the same, for the HTTP client's refusals
    ``ConnectionLost``    ``APIConnectionError`` (retryable; includes ``ProtocolError``)
    ``ContextFailed``     ``APIStatusError`` with the gRPC code mapped to HTTP (500 without)
    ``PoolClosed``        ``APIConnectionError(retryable=False)`` (shutting down)
    others                ``APIError(retryable=False)`` (``SlowConsumer``, options)
    ===================== ==========================================================
    """
    if isinstance(exc, trio_tts.CapacityTimeout):
        return APITimeoutError(str(exc))
    if isinstance(exc, trio_tts.HandshakeRejected | trio_tts.RequestRejected):
        return APIStatusError(str(exc), status_code=exc.status, body={"status": exc.status})
    if isinstance(exc, trio_tts.ConnectionLost):
        return APIConnectionError(str(exc))
    if isinstance(exc, trio_tts.ContextFailed):
        status = http_status(exc) or 500
        return APIStatusError(
            f"{provider} error: {exc.message}", status_code=status, body={"code": exc.code}
        )
    if isinstance(exc, trio_tts.PoolClosed):
        return APIConnectionError(str(exc), retryable=False)
    return APIError(str(exc), retryable=False)


def _mime_type(encoding: trio_tts.AudioEncoding) -> str:
    # LINEAR16 chunks arrive with their WAV header stripped: both PCM encodings are raw.
    return "audio/pcm" if encoding.is_pcm else _MIME[encoding.value]


def _timed(words: tuple[trio_tts.WordTiming, ...]) -> list[TimedString]:
    return [TimedString(w.word, start_time=w.start, end_time=w.end) for w in words]


def ws_endpoint(ws_url: str) -> str:
    """The bidirectional endpoint of ``ws_url``: a service root (``wss://api.inworld.ai/``,
    as the official plugin takes it) gets Inworld's path, as the official plugin joins it; a
    full ``.../voice:streamBidirectional`` URL stays as it is."""
    if urllib.parse.urlsplit(ws_url).path.rstrip("/").endswith(":streamBidirectional"):
        return ws_url
    return urllib.parse.urljoin(ws_url, STREAM_PATH)


def _is_inworld_host(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    return host == "inworld.ai" or host.endswith(".inworld.ai")


class TTS(PooledTTS["HTTPClient"]):
    """Inworld text-to-speech for LiveKit Agents, served by a shared trio_tts pool.

    Every argument of ``livekit.plugins.inworld.TTS`` (1.8.9) is taken, with the same
    meaning and defaults, except:

    * ``ws_url``: the service root as in the official plugin (``ws://127.0.0.1:8765/`` for
      a local server); a full ``.../tts/v1/voice:streamBidirectional`` URL works too.
    * ``base_url`` (HTTP, for :meth:`synthesize` and :meth:`list_voices`): by default the
      host of ``ws_url`` (the official plugin: always ``https://api.inworld.ai/``).
    * ``http_session``: accepted and not used; the engine makes its HTTP requests with its
      own client, in its trio run.
    * ``max_connections``: the pool's cap on WebSocket connections (default 20); the
      official plugin ignores it (one connection per TTS).
    * ``idle_connection_timeout``: accepted and not used, as in the official plugin.
    * an API key is needed only for Inworld's own hosts; invalid values raise at once
      (the official plugin sends them).
    * word timings of later generations are offset by the audio before them (the
      official plugin: by the previous word's end, which runs early by each generation's
      trailing silence).
    * a refusal the service would repeat (a bad voice, a refused key) is a final
      ``APIStatusError`` with its HTTP status, not a retryable ``APIError`` or
      ``APIConnectionError`` (:func:`to_api_error`).

    Added: ``pool_settings`` (any other :func:`trio_tts.open_pool` setting) and
    ``prefetch`` (events the bridge hands over in a row before other tasks run).

    Raises:
        ValueError: no API key for Inworld's own hosts, or an invalid option
            (:class:`trio_tts.InvalidOptions` is a ``ValueError``).
    """

    class Markup(tts.TTS.Markup):
        def _provider_key(self) -> str:
            # As the official plugin: only inworld-tts-2 understands the markup tags.
            return "inworld" if "tts-2" in self._tts.model else ""

    def __init__(
        self,
        *,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        voice: NotGivenOr[str] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        encoding: NotGivenOr[Encoding] = NOT_GIVEN,
        bit_rate: NotGivenOr[int] = NOT_GIVEN,
        sample_rate: NotGivenOr[int] = NOT_GIVEN,
        speaking_rate: NotGivenOr[float] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        language: NotGivenOr[str] = NOT_GIVEN,
        timestamp_type: NotGivenOr[TimestampType] = NOT_GIVEN,
        text_normalization: NotGivenOr[TextNormalization] = NOT_GIVEN,
        delivery_mode: NotGivenOr[DeliveryMode] = NOT_GIVEN,
        timestamp_transport_strategy: NotGivenOr[TimestampTransportStrategy] = NOT_GIVEN,
        buffer_char_threshold: NotGivenOr[int] = NOT_GIVEN,
        max_buffer_delay_ms: NotGivenOr[int] = NOT_GIVEN,
        base_url: NotGivenOr[str] = NOT_GIVEN,
        ws_url: str = DEFAULT_WS_URL,
        http_session: aiohttp.ClientSession | None = None,
        tokenizer: NotGivenOr[tokenize.SentenceTokenizer] = NOT_GIVEN,
        retain_format: NotGivenOr[bool] = NOT_GIVEN,
        max_connections: NotGivenOr[int] = NOT_GIVEN,
        idle_connection_timeout: NotGivenOr[float] = NOT_GIVEN,
        pool_settings: Mapping[str, Any] | None = None,
        prefetch: int = 8,
    ) -> None:
        del http_session, idle_connection_timeout  # not used (see above)
        if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
            raise trio_tts.InvalidOptions("ws_url: must start with ws:// or wss://")
        endpoint = ws_endpoint(ws_url)
        key = api_key if is_given(api_key) else os.getenv("INWORLD_API_KEY")
        if not key and _is_inworld_host(endpoint):
            raise ValueError(
                "Inworld API key is required, either as argument or set"
                " INWORLD_API_KEY environment variable"
            )
        opts = trio_tts.VoiceOptions(
            voice=DEFAULT_VOICE,
            model=DEFAULT_MODEL,
            encoding="PCM",
            sample_rate=DEFAULT_SAMPLE_RATE,
            auto_mode=True,
            max_buffer_delay_ms=DEFAULT_MAX_BUFFER_DELAY_MS,
            timestamp_transport_strategy=DEFAULT_TIMESTAMP_TRANSPORT_STRATEGY,
        )
        self._opts = opts.replace(
            **_changes(
                voice=voice,
                model=model,
                encoding=encoding,
                bit_rate=bit_rate,
                sample_rate=sample_rate,
                speaking_rate=speaking_rate,
                temperature=temperature,
                language=language,
                timestamp_type=timestamp_type,
                text_normalization=text_normalization,
                delivery_mode=delivery_mode,
                timestamp_transport_strategy=timestamp_transport_strategy,
                buffer_char_threshold=buffer_char_threshold,
                max_buffer_delay_ms=max_buffer_delay_ms,
            )
        )
        super().__init__(
            capabilities=tts.TTSCapabilities(
                streaming=True, aligned_transcript=self._opts.timestamp_type is not None
            ),
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
        )
        self._label = LABEL
        # Validate the endpoint and key now (InvalidOptions), not at the first utterance.
        trio_tts.InworldProvider(key or None, url=endpoint)
        self._api_key = key or None
        self._ws_url = endpoint
        # One-shot synthesis goes over HTTP to the same host unless told otherwise.
        self._base_url = base_url if is_given(base_url) else _http_url(endpoint)
        _check_http_url(self._base_url)  # now (InvalidOptions), not at the first request
        # As the official plugin: the server cuts sentences for inworld-tts-2 models unless
        # the caller chose the client-side tokenizer (or its retain_format).
        self._client_segmentation = is_given(tokenizer) or retain_format is False
        self._init_pool(
            max_connections if is_given(max_connections) else 20,
            pool_settings,
            prefetch,
            tokenizer
            if is_given(tokenizer)
            else tokenize.blingfire.SentenceTokenizer(
                retain_format=retain_format if is_given(retain_format) else True
            ),
        )

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "Inworld"

    @property
    def options(self) -> trio_tts.VoiceOptions:
        """The options the next utterance of this TTS is created with (as the official
        plugin: ``bufferCharThreshold`` 250 unless the server cuts sentences)."""
        opts = self._opts
        if self.server_segmentation:
            return opts.replace(auto_mode_strategy="SENTENCE_BOUNDARY")
        if opts.buffer_char_threshold is None:
            return opts.replace(buffer_char_threshold=DEFAULT_BUFFER_CHAR_THRESHOLD)
        return opts

    @property
    def server_segmentation(self) -> bool:
        """True when :meth:`stream` forwards the text as it comes and the server cuts it
        into sentences (``autoModeStrategy: SENTENCE_BOUNDARY``): an ``inworld-tts-2`` model
        and neither ``tokenizer`` nor ``retain_format=False`` given."""
        return not self._client_segmentation and self._opts.model.startswith("inworld-tts-2")

    def _acquire(self) -> SharedPool[HTTPClient]:
        if self._shared is None:
            url, base_url, api_key = self._ws_url, self._base_url, self._api_key
            self._shared = shared_pool(
                pool_key((url, base_url), api_key, self._pool_settings, self._prefetch),
                lambda: trio_tts.InworldProvider(api_key, url=url),
                lambda: _http_client(api_key, base_url),
                self._pool_settings,
                self._prefetch,
            )
        return self._shared

    def update_options(
        self,
        *,
        voice: NotGivenOr[str] = NOT_GIVEN,
        model: NotGivenOr[str] = NOT_GIVEN,
        encoding: NotGivenOr[Encoding] = NOT_GIVEN,
        bit_rate: NotGivenOr[int] = NOT_GIVEN,
        sample_rate: NotGivenOr[int] = NOT_GIVEN,
        speaking_rate: NotGivenOr[float] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        language: NotGivenOr[str] = NOT_GIVEN,
        timestamp_type: NotGivenOr[TimestampType] = NOT_GIVEN,
        text_normalization: NotGivenOr[TextNormalization] = NOT_GIVEN,
        delivery_mode: NotGivenOr[DeliveryMode] = NOT_GIVEN,
        timestamp_transport_strategy: NotGivenOr[TimestampTransportStrategy] = NOT_GIVEN,
        buffer_char_threshold: NotGivenOr[int] = NOT_GIVEN,
        max_buffer_delay_ms: NotGivenOr[int] = NOT_GIVEN,
    ) -> None:
        """Change the options of later utterances (streams already open keep theirs).

        Raises:
            ValueError: an invalid value (:class:`trio_tts.InvalidOptions`); nothing changes.
        """
        self._opts = self._opts.replace(
            **_changes(
                voice=voice,
                model=model,
                encoding=encoding,
                bit_rate=bit_rate,
                sample_rate=sample_rate,
                speaking_rate=speaking_rate,
                temperature=temperature,
                language=language,
                timestamp_type=timestamp_type,
                text_normalization=text_normalization,
                delivery_mode=delivery_mode,
                timestamp_transport_strategy=timestamp_transport_strategy,
                buffer_char_threshold=buffer_char_threshold,
                max_buffer_delay_ms=max_buffer_delay_ms,
            )
        )
        # The framework reads tts.sample_rate to build its audio pipeline.
        self._sample_rate = self._opts.sample_rate

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        return self._track(SynthesizeStream(tts=self, conn_options=conn_options))

    async def list_voices(self, language: str | None = None) -> list[dict[str, Any]]:
        """The voices of the account (``GET /tts/v1/voices`` at ``base_url``), as the
        service describes them, optionally one language's (ISO 639-1: ``"en"``).

        Raises:
            APIStatusError: the service refused (401 ...). APIConnectionError: no answer.
        """
        with api_errors(to_api_error, "Inworld voices request failed"):
            shared = await self.shared()
            return await shared.pool.run(partial(shared.http.voice_rows, language))


def _http_client(api_key: str | None, base_url: str) -> HTTPClient:
    from trio_tts.http import HTTPClient

    return HTTPClient(api_key, base_url=base_url)


def _check_http_url(url: object) -> None:
    """Raises: InvalidOptions: not an http(s) URL with a host (as ``HTTPClient`` checks)."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise trio_tts.InvalidOptions("base_url: must be an http:// or https:// URL with a host")


def _http_url(ws_url: str) -> str:
    scheme, rest = ws_url.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"


def _changes(**given: Any) -> dict[str, Any]:
    """LiveKit-style arguments (``NOT_GIVEN`` = unchanged) → ``VoiceOptions`` fields.

    Raises:
        InvalidOptions: a ``text_normalization`` that is neither a bool nor ``ON``/``OFF``/
            ``APPLY_TEXT_NORMALIZATION_UNSPECIFIED``.
    """
    out = {k: v for k, v in given.items() if is_given(v)}
    if out.get("timestamp_type") == "TIMESTAMP_TYPE_UNSPECIFIED":
        out["timestamp_type"] = None
    if "text_normalization" in out:
        norm = out.pop("text_normalization")
        if isinstance(norm, bool):
            out["apply_text_normalization"] = norm
        elif norm in ("ON", "OFF"):
            out["apply_text_normalization"] = norm == "ON"
        elif norm == "APPLY_TEXT_NORMALIZATION_UNSPECIFIED":
            out["apply_text_normalization"] = None
        else:
            raise trio_tts.InvalidOptions(
                f"text_normalization: {norm!r} is not a bool, ON, OFF or"
                " APPLY_TEXT_NORMALIZATION_UNSPECIFIED"
            )
    return out


class ChunkedStream(tts.ChunkedStream):
    """One-shot synthesis of a whole text over HTTP (``voice:stream``, ``trio_tts.http``),
    in the shared trio run; audio is pushed to LiveKit as each NDJSON line arrives."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        initialize(output_emitter, self._opts.sample_rate, _mime_type(self._opts.encoding))
        pcm = self._opts.encoding.is_pcm

        async def fetch() -> None:  # runs in trio; the emitter's push is synchronous
            with trio.fail_after(self._conn_options.timeout + 60):
                async with shared.http.stream(self._input_text, options=self._opts) as chunks:
                    async for audio in chunks:
                        if audio.words:
                            output_emitter.push_timed_transcript(_timed(audio.words))
                        output_emitter.push(audio.data)
                        if pcm:
                            output_emitter.flush()

        with api_errors(to_api_error, "Inworld stream failed", too_slow=True):
            shared = await self._tts.shared()
            await shared.pool.run(fetch)


class SynthesizeStream(PooledSynthesizeStream):
    """Streaming synthesis: the agent's text, split into sentences (or, when the server cuts
    sentences, as it comes), into one pooled context."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options
        self._held_ctx: AsyncioContext | None = None

    def _frames_waiting(self) -> bool:
        return self._event_ch.qsize() >= _FRAMES_HIGH

    async def __anext__(self) -> tts.SynthesizedAudio:
        event = await super().__anext__()
        ctx = self._held_ctx
        if ctx is not None and self._event_ch.qsize() <= _FRAMES_LOW:
            ctx.release()
        return event

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        mime_type = _mime_type(self._opts.encoding)
        initialize(output_emitter, self._opts.sample_rate, mime_type, stream=True)
        sentences = self._tts.sentence_tokenizer.stream()

        async def send(ctx: AsyncioContext) -> None:
            async for sentence in sentences:
                await ctx.send_text(sentence.token)
                self._mark_started()
            await ctx.flush()
            await ctx.finish()

        async def forward(ctx: AsyncioContext) -> None:
            # SENTENCE_BOUNDARY: the server buffers partial sentences until it finds an end;
            # as the official plugin, the input's end closes the context (no extra flush).
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    await ctx.flush()
                elif data:
                    await ctx.send_text(data)
                    self._mark_started()
            await ctx.finish()

        tasks: list[asyncio.Task[None]] = []
        try:
            with api_errors(to_api_error, "Inworld stream failed"):
                pool = await self._tts.pool()
                timeout = self._conn_options.timeout
                # Opens in trio while the text queues: nothing waits for an answer before
                # the text goes out; a failed opening is raised by the speaker's iteration.
                ctx = pool.start_context(options=self._opts, timeout=timeout)
                ctx.hold(self._frames_waiting)
                self._held_ctx = ctx
                async with ctx:
                    if self._opts.auto_mode_strategy == "SENTENCE_BOUNDARY":
                        tasks = [asyncio.create_task(forward(ctx))]
                    else:
                        tasks = [
                            asyncio.create_task(self._read_input(sentences)),
                            asyncio.create_task(send(ctx)),
                        ]
                    speaker = asyncio.create_task(
                        speak(ctx, output_emitter, _timed, flush_each=self._opts.encoding.is_pcm)
                    )
                    tasks.append(speaker)
                    # The speaker ends when the server confirmed the close; any failure ends
                    # all.
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                    raise_failed(speaker, *tasks[:-1])
                    await speaker
        finally:
            self._held_ctx = None
            await utils.aio.gracefully_cancel(*tasks)
            await sentences.aclose()
