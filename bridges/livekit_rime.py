"""A LiveKit Agents TTS plugin for Rime, on the trio engine through the asyncio bridge.

A drop-in for ``livekit.plugins.rime.TTS`` (1.8.9) on its ``/ws3`` and HTTP interfaces: the
same constructor arguments, the same choice of transport, the same ``label``, ``model`` and
``provider`` (so ``TTSMetrics`` match). A ``ws://``/``wss://`` ``base_url`` (or
``use_websocket=True``) means streaming: ``stream()`` sends the agent's text, split into
sentences, over Rime's JSON WebSocket, one utterance per connection (:class:`RimeProvider`),
with aligned transcripts (``TimedString``) from Rime's word timestamps. Otherwise
``synthesize()`` posts each text to ``/v1/rime-tts`` (:class:`trio_tts.http.RimeHTTPClient`).
As in the official plugin, each TTS does one of the two: ``synthesize()`` of a streaming TTS
and ``stream()`` of an HTTP one raise ``RuntimeError`` at once.

The machinery is :mod:`bridges.livekit`'s (in ``bridges._livekit_common``): every TTS of the
process with the same endpoint, key, options and settings shares one
:class:`~bridges.asyncio_adapter.AsyncioPool` (the trio engine of the loop is shared by all of
them); errors map through
:func:`bridges.livekit.to_api_error`. Rime fixes the voice per connection (the options are in
the URL), so :meth:`TTS.update_options` that changes the URL moves later utterances to
connections of the new URL and retires the old ones after their utterances
(:meth:`AsyncioPool.update_options`), as the official plugin replaces its connection pool.

Not carried over from the official plugin: Rime's v1 WebSocket (``websocket_url``; with it
``websocket_protocol`` and ``audio_format``), which the engine does not speak: the arguments
are accepted and ``websocket_url``/``audio_format`` raise ``ValueError``. ``http_session`` is
accepted and not used (the trio engine has its own HTTP client). Options of the other model
family (``temperature`` with a mist model ...) and ``reduce_latency`` on the WebSocket raise
``ValueError`` instead of being ignored.

Requires the ``livekit`` extra; ``import trio_tts`` never imports LiveKit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, Final

import aiohttp
import trio
from livekit.agents import (
    APIError,
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
from trio_tts.http import RimeHTTPClient
from trio_tts.providers.rime.http import DEFAULT_HTTP_URL
from trio_tts.providers.rime.options import ARCANA_FIELDS, MIST_FIELDS, RimeOptions, is_mist
from trio_tts.providers.rime.provider import RimeProvider

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
from .asyncio_adapter import AsyncioContext, AsyncioPool
from .livekit import to_api_error

__all__ = [
    "RIME_BASE_URL",
    "RIME_WS_BASE_URL",
    "TTS",
    "ChunkedStream",
    "SynthesizeStream",
]

RIME_BASE_URL: Final = DEFAULT_HTTP_URL
RIME_WS_BASE_URL: Final = "wss://users-ws.rime.ai"
#: The official plugin's ``TTS.label`` (``TTSMetrics.label``, logs and traces).
LABEL: Final = "livekit.plugins.rime.tts.TTS"
MODEL_CODA = "coda"
MODEL_MIST_V3 = "mistv3"
DEFAULT_MIST_VOICE = "cove"
DEFAULT_CODA_VOICE = "lyra"
CODA_MODEL_TIMEOUT = 60 * 4
MIST_MODEL_TIMEOUT = 30


def _default_sample_rate(model: str) -> int:
    # As livekit-plugins-rime 1.8.9: coda and mistv3 24 kHz, everything else 22.05 kHz.
    return 24000 if model in (MODEL_CODA, MODEL_MIST_V3) else 22050


def _default_speaker(model: str) -> str:
    if is_mist(model):
        return DEFAULT_MIST_VOICE
    return DEFAULT_CODA_VOICE if model == MODEL_CODA else "astra"


def _timeout_for_model(model: str) -> int:
    return CODA_MODEL_TIMEOUT if model == MODEL_CODA else MIST_MODEL_TIMEOUT


def _is_rime_host(host: str | None) -> bool:
    host = (host or "").rstrip(".").lower()
    return host == "rime.ai" or host.endswith(".rime.ai")


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(url: str, *, allow_custom_endpoint: bool) -> urllib.parse.SplitResult:
    """The official plugin's guard: credentials go only to Rime or a loopback address unless
    ``allow_custom_endpoint``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError("Rime base_url must be an absolute http(s):// or ws(s):// URL")
    if not (allow_custom_endpoint or _is_loopback(parts.hostname) or _is_rime_host(parts.hostname)):
        raise ValueError(
            "Rime endpoint must use a trusted Rime host; "
            "set allow_custom_endpoint=True to send credentials to another host"
        )
    return parts


def _as_websocket(url: str) -> str:
    """``url`` with a WebSocket scheme (``http`` → ``ws``, ``https`` → ``wss``), as aiohttp
    connects the official plugin's ``use_websocket=True`` to an http(s) ``base_url``."""
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(http):
            return ws + url.removeprefix(http)
    return url


def _no_v1(websocket_url: NotGivenOr[str], audio_format: NotGivenOr[str]) -> None:
    """Refuse the v1 WebSocket's arguments, with the official plugin's message for
    ``audio_format`` alone."""
    if is_given(websocket_url):
        raise ValueError(
            "websocket_url (Rime's v1 WebSocket) is not supported by bridges.livekit_rime: use"
            " base_url='wss://users-ws.rime.ai' (the /ws3 interface), or the official plugin"
        )
    if is_given(audio_format):
        raise ValueError("audio_format is only supported with the Rime v1 WebSocket interface")


def _ws_endpoint(base_url: str) -> str:
    """``<base_url>/ws3`` (the official plugin's ``_ws_url``), without the query."""
    base = base_url.rstrip("/")
    return base if base.endswith("/ws3") else f"{base}/ws3"


def _changes(**given: Any) -> dict[str, Any]:
    """LiveKit-style arguments (``NOT_GIVEN`` = unchanged) → :class:`RimeOptions` fields."""
    out = {k: v for k, v in given.items() if is_given(v)}
    if "lang" in out:
        out["language"] = out.pop("lang")
    return out


def _to_api_error(exc: trio_tts.TTSError) -> APIError:
    return to_api_error(exc, provider="Rime")


def _timed(words: tuple[trio_tts.WordTiming, ...]) -> list[TimedString]:
    # A space after each word, as the official plugin: the transcript concatenates.
    return [TimedString(f"{w.word} ", start_time=w.start, end_time=w.end) for w in words]


class TTS(PooledTTS[RimeHTTPClient | None]):
    """Rime text-to-speech for LiveKit Agents, served by a shared trio_tts pool.

    Every argument of ``livekit.plugins.rime.TTS`` (1.8.9) is taken, with the same meaning
    and defaults on the ``/ws3`` and HTTP interfaces: ``base_url`` is the HTTP endpoint
    (``https://users.rime.ai/v1/rime-tts``, a local server's ``rime_http_url``) or, as
    ``ws://``/``wss://``, the WebSocket host (``wss://users-ws.rime.ai``; ``/ws3`` is
    appended unless present), which implies streaming; ``use_websocket=True`` streams from
    ``base_url`` (an http(s) one as its ws(s) twin) or, without one, from Rime's host.
    Except:

    * ``websocket_url`` (Rime's v1 WebSocket) and ``audio_format`` (v1 only) raise
      ``ValueError``: the engine does not speak v1; ``websocket_protocol`` has no effect.
    * ``http_session``: accepted and not used; the engine makes its HTTP requests with its
      own client, in its trio run.
    * the model's parameters are checked against its family (``temperature`` with a mist
      model, ``reduce_latency`` on the WebSocket raise ``ValueError``; the official plugin
      drops them), and arcana's are sent for every non-mist model (the official plugin sends
      them for coda only).
    * an API key is needed only for Rime's own hosts.

    Added: ``max_connections`` (20), ``pool_settings`` (any other :func:`trio_tts.open_pool`
    setting) and ``prefetch``.

    Raises:
        ValueError: no API key for Rime's own hosts, an untrusted host without
            ``allow_custom_endpoint``, ``websocket_url`` or ``audio_format``, or an invalid
            option (:class:`trio_tts.InvalidOptions` is a ``ValueError``).
    """

    def __init__(
        self,
        *,
        base_url: NotGivenOr[str] = NOT_GIVEN,
        websocket_url: NotGivenOr[str] = NOT_GIVEN,
        websocket_protocol: str = "binary",
        model: NotGivenOr[str] = NOT_GIVEN,
        speaker: NotGivenOr[str] = NOT_GIVEN,
        lang: str = "eng",
        audio_format: NotGivenOr[str] = NOT_GIVEN,
        repetition_penalty: NotGivenOr[float] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        top_p: NotGivenOr[float] = NOT_GIVEN,
        max_tokens: NotGivenOr[int] = NOT_GIVEN,
        time_scale_factor: NotGivenOr[float] = NOT_GIVEN,
        speed_alpha: NotGivenOr[float] = NOT_GIVEN,
        sample_rate: NotGivenOr[int] = NOT_GIVEN,
        reduce_latency: NotGivenOr[bool] = NOT_GIVEN,
        pause_between_brackets: NotGivenOr[bool] = NOT_GIVEN,
        phonemize_between_brackets: NotGivenOr[bool] = NOT_GIVEN,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        http_session: aiohttp.ClientSession | None = None,
        use_websocket: bool = False,
        segment: NotGivenOr[str] = NOT_GIVEN,
        tokenizer: NotGivenOr[tokenize.SentenceTokenizer] = NOT_GIVEN,
        allow_custom_endpoint: bool = False,
        max_connections: int = 20,
        pool_settings: Mapping[str, Any] | None = None,
        prefetch: int = 8,
    ) -> None:
        del websocket_protocol, http_session  # no effect (see above)
        _no_v1(websocket_url, audio_format)
        if is_given(base_url):
            scheme = _check_endpoint(base_url, allow_custom_endpoint=allow_custom_endpoint).scheme
            streaming = use_websocket or scheme in ("ws", "wss")
            url = _as_websocket(base_url) if streaming else base_url
        else:
            streaming = use_websocket
            url = RIME_WS_BASE_URL if streaming else RIME_BASE_URL
        key = api_key if is_given(api_key) else os.environ.get("RIME_API_KEY")
        if not key and _is_rime_host(urllib.parse.urlsplit(url).hostname):
            raise ValueError(
                "Rime API key is required, either as argument or set RIME_API_KEY"
                " environmental variable"
            )
        resolved_model = model if is_given(model) else MODEL_CODA
        self._explicit_sample_rate = is_given(sample_rate)
        opts = RimeOptions(
            speaker=speaker if is_given(speaker) else _default_speaker(resolved_model),
            model=resolved_model,
            sample_rate=sample_rate
            if is_given(sample_rate)
            else _default_sample_rate(resolved_model),
            language=lang,
        )
        self._opts = opts.replace(
            **_changes(
                segment=segment,
                repetition_penalty=repetition_penalty,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                speed_alpha=speed_alpha,
                reduce_latency=reduce_latency,
                pause_between_brackets=pause_between_brackets,
                phonemize_between_brackets=phonemize_between_brackets,
                time_scale_factor=time_scale_factor,
            )
        )
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=streaming, aligned_transcript=streaming),
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
        )
        self._label = LABEL
        self._api_key = key or None
        self._streaming = streaming
        self._allow_custom_endpoint = allow_custom_endpoint
        self._base_url = url
        self._check_url(url, self._opts)  # validate endpoint, key and options now
        self._init_pool(
            max_connections,
            pool_settings,
            prefetch,
            tokenizer if is_given(tokenizer) else tokenize.blingfire.SentenceTokenizer(),
        )
        # Streams in flight per shared pool: they hold it open after update_options moved on.
        self._leases: dict[SharedPool[RimeHTTPClient | None], int] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    # -- endpoint and pool -------------------------------------------------------------------

    def _check_url(self, url: str, opts: RimeOptions) -> None:
        if self._streaming:
            self._provider(url).url(opts)  # InvalidOptions: e.g. reduce_latency on /ws3
        else:
            RimeHTTPClient(None, url=url)  # InvalidOptions: not an http(s) URL

    def _provider(self, url: str) -> RimeProvider:
        if not self._streaming:
            # HTTP only: the pool just hosts the HTTP client in the trio run and never
            # connects (min_connections=0, no contexts); the URL is a placeholder.
            parts = urllib.parse.urlsplit(url)
            url = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws3"
        return RimeProvider(self._api_key, url=_ws_endpoint(url))

    def _settings(self) -> dict[str, Any]:
        if self._streaming:
            # The defaults are this TTS's options: prewarm and min_connections warm its URL.
            return {**self._pool_settings, "defaults": self._opts}
        return {**self._pool_settings, "min_connections": 0}

    def _key(self) -> str:
        return pool_key(("rime", self._base_url), self._api_key, self._settings(), self._prefetch)

    def _acquire(self) -> SharedPool[RimeHTTPClient | None]:
        if self._shared is None:
            url, api_key = self._base_url, self._api_key
            self._shared = shared_pool(
                self._key(),
                lambda: self._provider(url),
                # Streaming has no HTTP endpoint (synthesize() refuses up front).
                lambda: None if self._streaming else RimeHTTPClient(api_key, url=url),
                self._settings(),
                self._prefetch,
            )
        return self._shared

    async def pool(self) -> AsyncioPool:
        """The process's shared pool for this endpoint and these options, opened on first
        use."""
        return await self._acquire().get()

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[SharedPool[RimeHTTPClient | None]]:
        """The current shared pool, held until the block ends even if ``update_options``
        moves this TTS to another one meanwhile."""
        shared = self._acquire().acquire()
        self._leases[shared] = self._leases.get(shared, 0) + 1
        try:
            yield shared
        finally:
            self._leases[shared] -= 1
            if not self._leases[shared]:
                del self._leases[shared]
            # Closing the pool (the last holder) must finish even if this task is cancelled.
            await asyncio.shield(self._release(shared))

    def _release(self, shared: SharedPool[RimeHTTPClient | None]) -> asyncio.Task[None]:
        task = asyncio.create_task(shared.release(), name="trio_tts.release_pool")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        return task

    # -- the TTS API ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "Rime"

    @property
    def options(self) -> RimeOptions:
        """The options new utterances of this TTS use."""
        return self._opts

    def update_options(
        self,
        *,
        model: NotGivenOr[str] = NOT_GIVEN,
        speaker: NotGivenOr[str] = NOT_GIVEN,
        lang: NotGivenOr[str] = NOT_GIVEN,
        repetition_penalty: NotGivenOr[float] = NOT_GIVEN,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        top_p: NotGivenOr[float] = NOT_GIVEN,
        max_tokens: NotGivenOr[int] = NOT_GIVEN,
        sample_rate: NotGivenOr[int] = NOT_GIVEN,
        speed_alpha: NotGivenOr[float] = NOT_GIVEN,
        reduce_latency: NotGivenOr[bool] = NOT_GIVEN,
        pause_between_brackets: NotGivenOr[bool] = NOT_GIVEN,
        phonemize_between_brackets: NotGivenOr[bool] = NOT_GIVEN,
        base_url: NotGivenOr[str] = NOT_GIVEN,
        audio_format: NotGivenOr[str] = NOT_GIVEN,
        time_scale_factor: NotGivenOr[float] = NOT_GIVEN,
        websocket_url: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        """Change the options of later utterances (streams already open keep theirs).

        On the WebSocket, a change of the connection URL (speaker, model, sample rate ...)
        sends later utterances to connections of the new URL; the old connections close
        after their utterances. A model of the other family drops the old family's
        parameters; without an explicit ``sample_rate`` it takes the model's default rate.

        Raises:
            ValueError: an invalid value, a ``base_url`` of the other transport, or an
                argument of the v1 WebSocket (``websocket_url``, ``audio_format``); nothing
                changes.
        """
        if is_given(websocket_url):
            raise ValueError("websocket_url can only update a TTS constructed with websocket_url")
        _no_v1(NOT_GIVEN, audio_format)
        changes = _changes(
            model=model,
            speaker=speaker,
            lang=lang,
            repetition_penalty=repetition_penalty,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            sample_rate=sample_rate,
            speed_alpha=speed_alpha,
            reduce_latency=reduce_latency,
            pause_between_brackets=pause_between_brackets,
            phonemize_between_brackets=phonemize_between_brackets,
            time_scale_factor=time_scale_factor,
        )
        old = self._opts
        if "model" in changes and is_mist(changes["model"]) != is_mist(old.model):
            for name in MIST_FIELDS if is_mist(old.model) else ARCANA_FIELDS:
                changes.setdefault(name, None)
        if changes.get("model") == "mistv2":
            changes.setdefault("time_scale_factor", None)  # mistv2 has none
        if "model" in changes and "sample_rate" not in changes and not self._explicit_sample_rate:
            changes["sample_rate"] = _default_sample_rate(changes["model"])
        new = old.replace(**changes)
        url = self._base_url
        if is_given(base_url):
            parts = _check_endpoint(base_url, allow_custom_endpoint=self._allow_custom_endpoint)
            if parts.scheme in ("ws", "wss") and not self._streaming:
                raise ValueError(
                    "base_url cannot switch between the WebSocket and HTTP interfaces;"
                    " construct another TTS"
                )
            # A streaming TTS takes an http(s) host as its ws(s) twin, as the constructor.
            url = _as_websocket(base_url) if self._streaming else base_url
        self._check_url(url, new)
        self._explicit_sample_rate = self._explicit_sample_rate or is_given(sample_rate)
        self._opts = new
        self._sample_rate = new.sample_rate  # the framework reads tts.sample_rate
        shared = self._shared
        moved = url != self._base_url
        self._base_url = url
        if shared is None or (not self._streaming and not moved):
            return  # HTTP: every request carries its options; the pool holds none
        if not moved and self._provider(url).url(new) == self._provider(url).url(old):
            return
        others = shared.users - 1 - self._leases.get(shared, 0)
        if not moved and others == 0 and shared.is_open and shared.rekey(self._key()):
            # This TTS alone uses the pool: change its defaults, which retires the
            # connections of the old URL (idle ones now, busy ones after their utterance).
            shared.pool.update_options(**changes)
        else:
            # Shared with other TTSes, still opening, or another endpoint: use the pool of
            # the new options; the old one closes when its last user (or stream) leaves.
            self._shared = None
            self._release(shared)

    def prewarm(self) -> None:
        """Open the shared pool and a connection of this TTS's URL in the background
        (nothing for HTTP synthesis, as the official plugin)."""
        if self._streaming:
            super().prewarm()

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        """One-shot synthesis over HTTP (``POST /v1/rime-tts``).

        Raises:
            RuntimeError: this TTS streams over the WebSocket (a ws(s):// ``base_url`` or
                ``use_websocket=True``): there is no HTTP endpoint to post to.
        """
        if self._streaming:
            raise RuntimeError(
                "Rime TTS one-shot synthesize requires an HTTP base_url (use_websocket=False);"
                f" this TTS streams over the WebSocket at {self._base_url!r} — use stream()"
            )
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        """Streaming synthesis over the WebSocket, one pooled connection per utterance.

        Raises:
            RuntimeError: this TTS synthesises over HTTP (construct it with a ws(s)://
                ``base_url`` or ``use_websocket=True``).
        """
        if not self._streaming:
            raise RuntimeError(
                "Rime TTS streaming requires use_websocket=True (or a ws:// or wss:// base_url)"
                " at construction time"
            )
        return self._track(SynthesizeStream(tts=self, conn_options=conn_options))

    async def _let_go(self, shared: SharedPool[RimeHTTPClient | None]) -> None:
        self._release(shared)  # streams may still hold it: aclose waits for the release

    async def aclose(self) -> None:
        """Close this TTS's streams; the last user of a shared pool closes it."""
        await super().aclose()
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)


async def _discard(task: asyncio.Task[AsyncioContext]) -> None:
    """Give up an ``open_context`` that is no longer wanted (the utterance had no text)."""
    if not task.done():
        await utils.aio.cancel_and_wait(task)  # the bridge closes a context made too late
    if task.done() and not task.cancelled() and task.exception() is None:
        await task.result().aclose()


class ChunkedStream(tts.ChunkedStream):
    """One-shot synthesis of a whole text over HTTP (``POST /v1/rime-tts``) in the shared trio
    run; audio is pushed to LiveKit as it arrives."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        initialize(output_emitter, self._opts.sample_rate, "audio/pcm")
        if not self._input_text.strip():
            return  # nothing to say: no request, no audio

        async def fetch(http: RimeHTTPClient) -> None:  # in trio; the emitter's push is sync
            with trio.fail_after(_timeout_for_model(self._opts.model)):
                async with http.stream(self._input_text, options=self._opts) as chunks:
                    async for audio in chunks:
                        output_emitter.push(audio.data)

        with api_errors(_to_api_error, "Rime HTTP request failed", too_slow=True):
            async with self._tts._lease() as shared:
                pool = await shared.get()
                assert shared.http is not None  # an HTTP TTS (synthesize() checked)
                await pool.run(partial(fetch, shared.http))


class SynthesizeStream(PooledSynthesizeStream):
    """Streaming synthesis: the agent's text, split into sentences, into one pooled Rime
    connection (one utterance: text frames, then a ``flush`` answered by ``done``)."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        initialize(output_emitter, self._opts.sample_rate, "audio/pcm", stream=True)
        sentences = self._tts.sentence_tokenizer.stream()

        async def send(ctx: AsyncioContext, first: str) -> None:
            await ctx.send_text(first + " ")  # a space between sentences, as the official
            self._mark_started()
            async for sentence in sentences:
                await ctx.send_text(sentence.token + " ")
            await ctx.finish()  # flush the rest; the server's done ends the utterance

        tasks: list[asyncio.Task[Any]] = []
        opening: asyncio.Task[AsyncioContext] | None = None
        try:
            with api_errors(_to_api_error, "Rime stream failed"):
                async with self._tts._lease() as shared:
                    try:
                        pool = await shared.get()
                        # Take a connection while the first sentence forms (a cold one connects).
                        opening = asyncio.create_task(
                            pool.open_context(
                                options=self._opts, timeout=self._conn_options.timeout
                            )
                        )
                        tasks.append(asyncio.create_task(self._read_input(sentences)))
                        waiting = asyncio.create_task(anext(aiter(sentences), None))
                        tasks.append(waiting)  # cancelled with the rest on the way out
                        # A failure to get a connection (a rejected key ...) surfaces at once, not
                        # when the first sentence is complete.
                        await asyncio.wait([waiting, opening], return_when=asyncio.FIRST_COMPLETED)
                        if opening.done() and not opening.cancelled() and opening.exception():
                            opening.result()
                        first = await waiting
                        if first is None:  # no text at all: finish now, no audio, nothing sent
                            await tasks[0]
                            return
                        ctx = await opening
                        opening = None
                        async with ctx:
                            speaker = asyncio.create_task(speak(ctx, output_emitter, _timed))
                            work = [tasks[0], asyncio.create_task(send(ctx, first.token)), speaker]
                            tasks += work[1:]
                            # The speaker ends when the server confirmed the close; any failure
                            # ends all.
                            await asyncio.wait(work, return_when=asyncio.FIRST_EXCEPTION)
                            raise_failed(speaker, *work[:2])
                            await speaker
                    finally:
                        # Before the lease ends: the pool may close with it.
                        if opening is not None:
                            await _discard(opening)
                        await utils.aio.gracefully_cancel(*tasks)
        finally:
            await sentences.aclose()
