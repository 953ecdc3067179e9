"""A LiveKit Agents TTS plugin for Cartesia, on the trio engine through the asyncio bridge.

A drop-in for ``livekit.plugins.cartesia.TTS`` (1.8.9): change the import and the rest of the
agent stays as it was. The constructor takes every argument of the official one with the same
meaning and defaults (``base_url="https://api.cartesia.ai"``, ``api_version="2025-04-16"``,
``CARTESIA_API_KEY``), ``stream()`` sends each sentence of the agent's text (with a trailing
space, ``max_buffer_delay_ms: 0``) on one Cartesia *context* and ends it with
``continue: false``, and the ``label``, ``model``, ``provider``, capabilities (streaming, an
aligned transcript with ``word_timestamps``), frames and ``TimedString`` texts are the official
plugin's own (each word Cartesia times is matched back to the text sent, as it does).

Where this one is different, and why:

* **Contexts, not sockets.** The official plugin opens one WebSocket per concurrent stream (a
  ``ConnectionPool`` per ``TTS``). Here every ``TTS`` of the process with the same endpoint,
  key and settings shares one :class:`~bridges.asyncio_adapter.AsyncioPool`: streams are
  contexts multiplexed on few sockets (all of them on one by default), admitted FIFO by one gate
  sized to the account's concurrency (``concurrency``, default 2: Cartesia's Free plan; set your
  plan's: Pro 3, Startup 5, Scale 15), so the service never answers 429.
* **Errors are never swallowed.** Cartesia's error events carry ``done: true``; the official
  plugin reads ``done`` before ``type`` and ends such a stream as if it had finished (short,
  no exception). Here the stream fails with ``APIStatusError`` carrying Cartesia's
  ``status_code`` (``"Cartesia error: <title>: <message> (<error_code>)"``).
* **A slot comes back only when Cartesia is done with it.** An interrupted stream drops the
  rest of its audio. If its whole text was sent (``continue: false``), the slot comes back with
  Cartesia's ``done``; otherwise the context is cancelled on the server, which sends nothing
  back for a cancel, so the slot is counted taken until Cartesia's expiry of the context has
  passed (``cancel_expiry``, 1.5 s after its last frame) — never while Cartesia may still
  count it.
* ``synthesize()`` is one context on the same pooled WebSocket (the whole text, then
  ``continue: false``), not ``POST /tts/bytes``: it counts against the same concurrency gate and
  needs no new TLS connection; the frames are the same (no timed transcript, as over HTTP).
* **Options are checked at construction** (``ValueError``, before any network): a sample rate or
  language Cartesia does not have, ``speed``/``volume`` out of range or with a model that has no
  ``generation_config`` (the official plugin logs a warning and sends or drops them), an emotion
  that is not one of Cartesia's, an ``encoding`` other than ``pcm_s16le`` (the official plugin
  sends it and decodes the answer as 16-bit PCM anyway), a voice embedding (``list[float]``:
  Cartesia's current API takes voice ids) and the retired experimental speed names.
* An API key is required only for Cartesia's own hosts (the local server needs none).
* ``add_phoneme_timestamps`` is accepted and not requested (the official plugin asks for them
  and discards them); ``http_session`` is accepted and not used.
* A context Cartesia expires (1 s after its last audio while the input is still open: an LLM
  pausing between sentences) fails the stream with ``APIStatusError(500)``; the official plugin
  drops the rest of the reply without a word.

Added: ``concurrency`` (the plan's limit of contexts at once; the pool's gate),
``pool_settings`` (any other :func:`trio_tts.open_pool` setting) and ``prefetch``.

Requires the ``livekit`` extra; ``import trio_tts`` never imports LiveKit.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, Literal

import aiohttp
from livekit.agents import APIError, APIStatusError, LanguageCode, tokenize, tts, utils
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
    Watchdog,
    api_errors,
    initialize,
    pool_key,
    raise_failed,
    shared_pool,
)
from ._livekit_common import speak as speak_into
from .asyncio_adapter import AsyncioContext, AsyncioPool
from .livekit import to_api_error as _common_api_error

__all__ = [
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "TTS",
    "ChunkedStream",
    "SynthesizeStream",
    "TTSDefaultVoiceId",
    "TTSEncoding",
    "TTSLanguages",
    "TTSModels",
    "TTSVoiceEmotion",
    "TTSVoiceSpeed",
    "WordAligner",
    "to_api_error",
    "ws_endpoint",
]

# The official plugin's names and defaults (livekit-plugins-cartesia 1.8.9, models.py and
# constants.py), so code written against them type-checks with this import too.
TTSEncoding = Literal["pcm_s16le"]
TTSModels = Literal["sonic", "sonic-2", "sonic-lite", "sonic-preview", "sonic-turbo", "sonic-3"]
TTSLanguages = Literal[
    "en", "es", "fr", "de", "pt", "zh", "ja", "hi", "ko", "it", "nl", "pl", "ru", "sv", "tr",
    "tl", "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "hu", "no",
    "vi", "bn", "th", "he", "ka", "id", "te", "gu", "kn", "ml", "mr", "or", "pa", "ur",
]  # fmt: skip
TTSDefaultVoiceId: Final = "f786b574-daa5-4673-aa0c-cbe3e8534c02"  # Katie
TTSVoiceSpeed = Literal["fastest", "fast", "normal", "slow", "slowest"]
TTSVoiceEmotion = Literal[
    "Happy", "Excited", "Enthusiastic", "Elated", "Euphoric", "Triumphant", "Amazed",
    "Surprised", "Flirtatious", "Joking/Comedic", "Curious", "Content", "Peaceful", "Serene",
    "Calm", "Grateful", "Affectionate", "Trust", "Sympathetic", "Anticipation", "Mysterious",
    "Angry", "Mad", "Outraged", "Frustrated", "Agitated", "Threatened", "Disgusted", "Contempt",
    "Envious", "Sarcastic", "Ironic", "Sad", "Dejected", "Melancholic", "Disappointed", "Hurt",
    "Guilty", "Bored", "Tired", "Rejected", "Nostalgic", "Wistful", "Apologetic", "Hesitant",
    "Insecure", "Confused", "Resigned", "Anxious", "Panicked", "Alarmed", "Scared", "Neutral",
    "Proud", "Confident", "Distant", "Skeptical", "Contemplative", "Determined",
]  # fmt: skip
#: The API version the official plugin sends (in the WebSocket URL's query).
API_VERSION: Final = "2025-04-16"
DEFAULT_BASE_URL: Final = "https://api.cartesia.ai"
WS_PATH: Final = "/tts/websocket"
#: The official plugin's ``TTS.label`` (``TTSMetrics.label``, logs and traces).
LABEL: Final = "livekit.plugins.cartesia.tts.TTS"
#: ``synthesize()``'s bound on a whole synthesis (the official plugin's HTTP ``total=30``).
SYNTHESIZE_TIMEOUT: Final = 30.0


def to_api_error(exc: trio_tts.TTSError) -> APIError:
    """The LiveKit error for a ``trio_tts`` error, as :func:`bridges.livekit.to_api_error`,
    except that a failed context's code is Cartesia's own HTTP ``status_code`` (400 a bad
    request, 404 an unknown voice, 429 over the plan's concurrency, 5xx the service's fault;
    500 without one, e.g. a context Cartesia expired)."""
    if isinstance(exc, trio_tts.ContextFailed):
        code = exc.code
        status = code if isinstance(code, int) and 400 <= code <= 599 and code != 499 else 500
        return APIStatusError(
            f"Cartesia error: {exc.message}", status_code=status, body={"code": code}
        )
    return _common_api_error(exc, provider="Cartesia")


def _is_cartesia_host(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    return host == "cartesia.ai" or host.endswith(".cartesia.ai")


def ws_endpoint(base_url: str) -> str:
    """The context WebSocket of ``base_url``, as the official plugin derives it: ``http`` →
    ``ws`` (``https`` → ``wss``) and ``/tts/websocket`` appended (without doubling a ``/``)."""
    return base_url.replace("http", "ws", 1).rstrip("/") + WS_PATH


def _speed(value: object) -> object:
    if isinstance(value, str):
        raise trio_tts.InvalidOptions(
            f"speed: {value!r} is one of Cartesia's retired experimental speed names; pass a"
            " number in 0.6..2.0 (generation_config.speed, Sonic 3 models)"
        )
    return value


def _emotion(value: object) -> object:
    """The official plugin's ``emotion`` (a name or a list of names) → the one it sends."""
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _language(value: str | None) -> str | None:
    """As the official plugin: ``LanguageCode(value).language`` (``"en-US"`` → ``"en"``)."""
    return LanguageCode(value).language if value else None


def _changes(**given: Any) -> dict[str, Any]:
    """LiveKit-style arguments (``NOT_GIVEN`` = unchanged) → :class:`trio_tts.CartesiaOptions`
    fields.

    Raises:
        InvalidOptions: a voice embedding or a named speed.
    """
    out = {k: v for k, v in given.items() if is_given(v)}
    if "voice" in out and not isinstance(out["voice"], str):
        raise trio_tts.InvalidOptions(
            "voice: voice embeddings (a list of floats) are not supported: Cartesia's current"
            " API takes a voice id"
        )
    if "language" in out:
        out["language"] = _language(out["language"])
    if "speed" in out:
        out["speed"] = _speed(out["speed"])
    if "emotion" in out:
        out["emotion"] = _emotion(out["emotion"])
    if "use_normalized_timestamps" in out:  # the official plugin sends it only when True
        out["use_normalized_timestamps"] = True if out["use_normalized_timestamps"] else None
    return out


class WordAligner:
    """The official plugin's ``TimedString`` texts: each word Cartesia times is matched back to
    the text that was sent, so the texts concatenate to it (``"Hello"``, ``" there,"`` ...).

    Call :meth:`sent` with each text as it goes out and :meth:`word` with each timed word, in
    order. A word not found in the text sent (Cartesia normalised it: "20" read as "twenty")
    gives up matching for the rest of the stream: that word and every later one is returned
    with a space after it, as the official plugin does. One difference: the whitespace left at
    the end of a sent text goes to the next text even if that one is sent only after the words
    were timed (the official plugin drops it then: its captions lose a space, depending on
    timing).
    """

    def __init__(self) -> None:
        self._sent = deque[str]()
        self._carry = ""
        self._lost = False

    def sent(self, text: str) -> None:
        self._sent.append(self._carry + text)
        self._carry = ""

    def word(self, word: str) -> str:
        if self._lost or not self._sent:
            self._lost = True
            return f"{word} "
        text = self._sent.popleft()
        at = text.find(word)
        if at == -1:
            self._lost = True
            return f"{word} "
        cut = at + len(word)
        rest = text[cut:]
        if rest.strip():
            self._sent.appendleft(rest)
        elif rest and self._sent:
            self._sent[0] = rest + self._sent[0]
        else:
            self._carry = rest
        return text[:cut]


class TTS(PooledTTS[None]):
    """Cartesia text-to-speech for LiveKit Agents, served by a shared trio_tts pool.

    Every argument of ``livekit.plugins.cartesia.TTS`` (1.8.9) is taken, with the same meaning
    and defaults; what differs is in the module docstring. ``base_url`` is the service's root
    (``https://api.cartesia.ai``; a local server's ``base_url``). Added: ``concurrency`` (the
    account's limit of contexts at once, the pool's gate; default 2, the Free plan's),
    ``pool_settings`` (any other :func:`trio_tts.open_pool` setting, e.g. ``max_connections``
    or ``contexts_per_connection``) and ``prefetch`` (events the bridge hands over in a
    row before other tasks run).

    Raises:
        ValueError: no API key for Cartesia's own hosts, or an invalid option or URL
            (:class:`trio_tts.InvalidOptions` is a ``ValueError``).
    """

    class Markup(tts.TTS.Markup):
        def _provider_key(self) -> str:
            return "cartesia"  # as the official plugin

    def __init__(
        self,
        *,
        api_key: str | None = None,
        model: TTSModels | str = "sonic-3",
        language: str | None = "en",
        encoding: TTSEncoding = "pcm_s16le",
        voice: str | list[float] = TTSDefaultVoiceId,
        speed: TTSVoiceSpeed | float | None = None,
        emotion: TTSVoiceEmotion | str | list[TTSVoiceEmotion | str] | None = None,
        volume: float | None = None,
        sample_rate: int = 24000,
        word_timestamps: bool = True,
        add_phoneme_timestamps: bool = False,
        use_normalized_timestamps: bool = False,
        pronunciation_dict_id: str | None = None,
        http_session: aiohttp.ClientSession | None = None,
        tokenizer: NotGivenOr[tokenize.SentenceTokenizer] = NOT_GIVEN,
        text_pacing: tts.SentenceStreamPacer | bool = False,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = API_VERSION,
        concurrency: int = 2,
        pool_settings: Mapping[str, Any] | None = None,
        prefetch: int = 8,
    ) -> None:
        del http_session, add_phoneme_timestamps  # not used (see the module docstring)
        if not isinstance(base_url, str):
            raise trio_tts.InvalidOptions("base_url: must be an http(s):// or ws(s):// URL")
        endpoint = ws_endpoint(base_url)
        key = api_key or os.environ.get("CARTESIA_API_KEY")
        if not key and _is_cartesia_host(endpoint):
            raise ValueError(
                "Cartesia API key is required, either as argument or set"
                " CARTESIA_API_KEY environment variable"
            )
        if encoding != "pcm_s16le":
            raise trio_tts.InvalidOptions(
                f"encoding: {encoding!r} is not 'pcm_s16le', the only encoding LiveKit's"
                " audio/pcm frames take"
            )
        sentence_tokenizer = (
            tokenizer if is_given(tokenizer) else tokenize.blingfire.SentenceTokenizer()
        )
        self._opts = trio_tts.CartesiaOptions(
            voice=TTSDefaultVoiceId,
            model="sonic-3",
            encoding="pcm_s16le",
            sample_rate=sample_rate,
            word_timestamps=word_timestamps,
            api_version=api_version,
            # As the official plugin: whole sentences, spoken at once.
            max_buffer_delay_ms=0
            if isinstance(sentence_tokenizer, tokenize.SentenceTokenizer)
            else None,
        ).replace(
            **_changes(
                model=model,
                language=language,
                voice=voice,
                speed=speed,
                emotion=emotion,
                volume=volume,
                use_normalized_timestamps=use_normalized_timestamps,
                pronunciation_dict_id=pronunciation_dict_id,
            )
        )
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=word_timestamps),
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
        )
        self._label = LABEL
        self._api_key = key or None
        self._concurrency = concurrency
        self._ws_url = endpoint
        self._provider()  # validate the URL, key and concurrency now (InvalidOptions)
        self._stream_pacer: tts.SentenceStreamPacer | None = None
        if text_pacing is True:
            self._stream_pacer = tts.SentenceStreamPacer()
        elif isinstance(text_pacing, tts.SentenceStreamPacer):
            self._stream_pacer = text_pacing
        self._init_pool(
            trio_tts.PoolSettings().max_connections,
            pool_settings,
            prefetch,
            sentence_tokenizer,
        )

    # -- the shared pool --------------------------------------------------------------------

    def _provider(self) -> trio_tts.CartesiaProvider:
        return trio_tts.CartesiaProvider(
            self._api_key, url=self._ws_url, concurrency=self._concurrency
        )

    def _acquire(self) -> SharedPool[None]:
        if self._shared is None:
            # One pool (one gate) per account and endpoint, whatever the voices, models and
            # API versions of its TTSes: contexts of other versions get their own sockets in
            # it. Its defaults (warm sockets, prewarm) are the first TTS's options.
            key = pool_key(
                ("cartesia", self._ws_url, str(self._concurrency)),
                self._api_key,
                self._pool_settings,
                self._prefetch,
            )
            self._shared = shared_pool(
                key,
                self._provider,
                lambda: None,
                {**self._pool_settings, "defaults": self._opts},
                self._prefetch,
            )
        return self._shared

    # -- the TTS API --------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "Cartesia"

    @property
    def options(self) -> trio_tts.CartesiaOptions:
        """The options the next stream or synthesis of this TTS uses."""
        return self._opts

    @property
    def stream_pacer(self) -> tts.SentenceStreamPacer | None:
        """What paces the sentences :meth:`stream` sends (``text_pacing``), if anything."""
        return self._stream_pacer

    def update_options(
        self,
        *,
        model: NotGivenOr[TTSModels | str] = NOT_GIVEN,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        voice: NotGivenOr[str | list[float]] = NOT_GIVEN,
        speed: NotGivenOr[TTSVoiceSpeed | float] = NOT_GIVEN,
        emotion: NotGivenOr[TTSVoiceEmotion | str | list[TTSVoiceEmotion | str]] = NOT_GIVEN,
        volume: NotGivenOr[float] = NOT_GIVEN,
        pronunciation_dict_id: NotGivenOr[str] = NOT_GIVEN,
        add_phoneme_timestamps: NotGivenOr[bool] = NOT_GIVEN,
        use_normalized_timestamps: NotGivenOr[bool] = NOT_GIVEN,
        api_version: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        """Change the options of later streams and syntheses (those open keep theirs).

        A new ``api_version`` takes later contexts to sockets of that version (it is in the
        WebSocket's URL); when this TTS alone uses its shared pool, the pool's warm sockets
        move to it too.

        Raises:
            ValueError: an invalid value (:class:`trio_tts.InvalidOptions`); nothing changes.
        """
        del add_phoneme_timestamps  # not requested (see the module docstring)
        new = self._opts.replace(
            **_changes(
                model=model,
                language=language,
                voice=voice,
                speed=speed,
                emotion=emotion,
                volume=volume,
                pronunciation_dict_id=pronunciation_dict_id,
                use_normalized_timestamps=use_normalized_timestamps,
                api_version=api_version,
            )
        )
        old, self._opts = self._opts, new
        shared = self._shared
        if (
            new.api_version != old.api_version
            and shared is not None
            and shared.users == 1
            and shared.is_open
        ):
            shared.pool.update_options(api_version=new.api_version)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        return self._track(SynthesizeStream(tts=self, conn_options=conn_options))


async def _discard(task: asyncio.Task[tuple[AsyncioContext[Any], float, bool]]) -> None:
    """Give up an ``open_context`` that is no longer wanted (the stream had no text)."""
    if not task.done():
        await utils.aio.cancel_and_wait(task)  # the bridge closes a context made too late
    if task.done() and not task.cancelled() and task.exception() is None:
        await task.result()[0].aclose()


async def _acquire(
    pool: AsyncioPool[Any], opts: trio_tts.CartesiaOptions, wait: float
) -> tuple[AsyncioContext[Any], float, bool]:
    """A context of ``pool`` (waiting at most ``wait`` seconds for a slot), how long it took
    and whether its socket was open before: the
    official plugin's ``acquire_time`` (0 for a reused socket, as its ``ConnectionPool``
    reports) and ``connection_reused`` (``TTSMetrics``)."""
    # The pool's snapshot is synchronous and side-effect free: safe from this side.
    before = {c.id for c in pool.trio_pool.inspect().connections if c.state == "open"}
    started = time.perf_counter()
    ctx = await pool.open_context(options=opts, timeout=wait)
    placed = {c.id: c.connection for c in pool.trio_pool.inspect().contexts}
    reused = placed.get(ctx.id) in before
    return ctx, 0.0 if reused else time.perf_counter() - started, reused


class ChunkedStream(tts.ChunkedStream):
    """One-shot synthesis of a whole text: one context on the shared pool's WebSocket (the
    text, then ``continue: false``); audio is pushed to LiveKit as it arrives."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        # As the official plugin's HTTP request: no timestamps, no buffering.
        self._opts = tts.options.replace(
            word_timestamps=False, use_normalized_timestamps=None, max_buffer_delay_ms=None
        )

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        initialize(output_emitter, self._opts.sample_rate, "audio/pcm")
        if not self._input_text.strip():
            return  # nothing to say: no context, no audio
        with api_errors(to_api_error, "Cartesia synthesis failed"):
            pool = await self._tts.pool()
            async with asyncio.timeout(SYNTHESIZE_TIMEOUT):
                ctx = await pool.open_context(
                    options=self._opts, timeout=self._conn_options.timeout
                )
                async with ctx:
                    await ctx.send_text(self._input_text)
                    await ctx.finish()
                    async for event in ctx:
                        if isinstance(event, trio_tts.Audio) and event.data:
                            output_emitter.push(event.data)
        output_emitter.flush()


class SynthesizeStream(PooledSynthesizeStream):
    """Streaming synthesis: the agent's text, split into sentences (and paced, with
    ``text_pacing``), into one pooled Cartesia context."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        initialize(output_emitter, self._opts.sample_rate, "audio/pcm", stream=True)
        sentences: tokenize.SentenceStream = self._tts.sentence_tokenizer.stream()
        pacer = self._tts.stream_pacer
        if pacer is not None:
            sentences = pacer.wrap(sent_stream=sentences, audio_emitter=output_emitter)
        aligner = WordAligner()
        sent = asyncio.Event()  # text went out: from now on the server's silence is timed
        timeout = self._conn_options.timeout

        async def say(ctx: AsyncioContext[Any], text: str) -> None:
            aligner.sent(text)
            self._mark_started()
            await ctx.send_text(text)
            sent.set()

        async def send(ctx: AsyncioContext[Any], first: str) -> None:
            # A space after each sentence, as the official plugin sends them.
            await say(ctx, first + " ")
            async for sentence in sentences:
                await say(ctx, sentence.token + " ")
            await ctx.finish()  # continue: false; the server's done ends the stream

        async def speak(ctx: AsyncioContext[Any]) -> None:
            await sent.wait()
            # As the official plugin: no frame for the stream in ``timeout`` seconds is
            # APITimeoutError.
            watchdog = Watchdog()
            watchdog.arm(timeout)

            def timed(words: tuple[trio_tts.WordTiming, ...]) -> list[TimedString]:
                return [
                    TimedString(aligner.word(w.word), start_time=w.start, end_time=w.end)
                    for w in words
                ]

            async with watchdog.guard():
                await speak_into(
                    ctx, output_emitter, timed, heard=lambda _event: watchdog.arm(timeout)
                )

        tasks: list[asyncio.Task[Any]] = []
        opening: asyncio.Task[tuple[AsyncioContext[Any], float, bool]] | None = None
        try:
            with api_errors(to_api_error, "Cartesia stream failed"):
                try:
                    pool = await self._tts.pool()
                    # Take a slot while the first sentence forms (a cold socket connects).
                    opening = asyncio.create_task(_acquire(pool, self._opts, timeout))
                    reader = asyncio.create_task(self._read_input(sentences))
                    waiting = asyncio.create_task(anext(aiter(sentences), None))
                    tasks += [reader, waiting]  # cancelled with the rest on the way out
                    # A failure to get a slot (a refused key ...) surfaces at once, not when
                    # the first sentence is complete.
                    await asyncio.wait([waiting, opening], return_when=asyncio.FIRST_COMPLETED)
                    if opening.done() and not opening.cancelled() and opening.exception():
                        opening.result()
                    first = await waiting
                    if first is None:  # no text at all: nothing was sent, no audio
                        await reader
                        return
                    ctx, self._acquire_time, self._connection_reused = await opening
                    opening = None
                    async with ctx:
                        speaker = asyncio.create_task(speak(ctx))
                        sender = asyncio.create_task(send(ctx, first.token))
                        tasks += [sender, speaker]
                        # The speaker ends when the server's done arrived; any failure ends
                        # all.
                        await asyncio.wait(
                            [reader, sender, speaker], return_when=asyncio.FIRST_EXCEPTION
                        )
                        raise_failed(speaker, reader, sender)
                        await speaker
                finally:
                    if opening is not None:
                        await _discard(opening)
                    await utils.aio.gracefully_cancel(*tasks)
        finally:
            await sentences.aclose()
