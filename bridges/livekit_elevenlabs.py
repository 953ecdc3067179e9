"""A LiveKit Agents TTS plugin for ElevenLabs, on the trio engine through the asyncio bridge.

A drop-in for ``livekit.plugins.elevenlabs.TTS`` (1.8.9): change the import and the rest of the
agent stays as it was. The constructor takes every argument of the official one with the same
defaults (``voice_id``, ``voice_settings``, ``model``, ``encoding``, ``base_url``,
``api_key``/``ELEVEN_API_KEY``, ``inactivity_timeout``, ``auto_mode``, ``word_tokenizer``,
``chunk_length_schedule``, ``sync_alignment``, ``preferred_alignment``, ``language`` ...);
``stream()`` speaks on ElevenLabs' multi-context WebSocket (``multi-stream-input``) with the
same messages (the context's init packet, one ``"<sentence> "`` with ``flush`` per token in
``auto_mode``, then ``{"text": "", "flush": true}`` and ``close_context``), the same audio
(``audio/pcm``, ``audio/mp3``, ``audio/opus``), the same ``TimedString`` words (each word with
its trailing space, from its first character to the next word's first character), the same
``label``/``model``/``provider`` (so ``TTSMetrics`` match) and errors of the same classes.
``synthesize()`` posts the text to ``{base_url}/text-to-speech/{voice_id}/stream`` as the
official plugin does (:class:`trio_tts.http.ElevenLabsHTTPClient`, in the shared trio run).

What is better than the official plugin (which puts every stream of a ``TTS`` on one socket
with no cap, see :mod:`trio_tts.providers.elevenlabs.provider`):

* **No sixth context on a socket.** Every ``TTS`` of the process with the same key,
  ``base_url`` and limits (whatever its voice, model or format) draws contexts from one
  shared :class:`~bridges.asyncio_adapter.AsyncioPool`: at most 5 contexts per socket
  (ElevenLabs' limit) and ``max_contexts`` (the account's concurrency, default 15) over all
  sockets, FIFO-fair. A sixth overlapping turn waits for a slot or gets
  another socket; it never gets the socket closed with 1008 ``max_active_conversations``,
  which fails the five turns already speaking (what the official plugin does).
* **Exact capacity under barge-ins** (livekit/agents-js#1985): an interrupted turn's context
  counts until the server's ``isFinal`` confirms it gone, not until the caller leaves, so a
  burst of interruptions never puts a sixth context on a socket.
* A context is opened only once there is text: an interrupted turn that had none costs no
  context (the official plugin opens and closes one).
* Invalid options raise ``ValueError`` (:class:`trio_tts.InvalidOptions`) in the constructor
  or ``update_options``: an unknown model, an unsupported ``encoding`` (``ulaw_8000``, which
  LiveKit cannot decode), a ``language`` on a model that takes none, ``apply_text_normalization
  ="on"`` on a ``*_v2_5`` model, a ``chunk_length_schedule`` outside 50..500 ... (the official
  plugin sends them and the turn fails).
* ``list_voices()`` raises ``APIStatusError`` for a refused key (the official plugin: a
  ``KeyError`` on the error body).
* A refused one-shot synthesis (an unknown voice, a bad key) is an ``APIStatusError`` with the
  HTTP status, as in the official plugin; ours also says what the service said.

Differences, all deliberate:

* ``streaming_latency`` (the deprecated ``optimize_streaming_latency`` of one-shot synthesis)
  is accepted and not sent. A blank text is not sent either (no request, no audio).
* The text-to-dialogue models (``eleven_v3*``, ``eleven_v4*``: another protocol) are refused
  with ``ValueError``; use the official plugin for them.
* An API key is needed only for ElevenLabs' own hosts (``*.elevenlabs.io``).
* ``http_session`` is accepted and not used: the engine has its own HTTP client.
* Silence limits as the official plugin's: once text was sent, the server must answer with
  audio within ``conn_options.timeout``, and after the end of input every audio message must
  follow the last within it, until ``isFinal``: else :class:`StreamTimeoutError`, both the
  ``APIStatusError`` the official plugin raises then and an ``APITimeoutError``. A slot must
  be free within it too (``APITimeoutError``).

Added: ``max_connections`` (20), ``max_contexts`` (the account's concurrency), ``pool_settings``
(any other :func:`trio_tts.open_pool` setting) and ``prefetch``.

Requires the ``livekit`` extra; ``import trio_tts`` never imports LiveKit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import urllib.parse
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal

import aiohttp
import trio
from livekit.agents import (
    LanguageCode,
    tokenize,
    tts,
    utils,
)
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)
from livekit.agents.utils import is_given

import trio_tts
from trio_tts.http import ElevenLabsHTTPClient
from trio_tts.providers.elevenlabs.options import DIALOGUE_MODEL_PREFIXES
from trio_tts.providers.elevenlabs.provider import DEFAULT_CONCURRENCY

from ._livekit_common import (
    NUM_CHANNELS,
    PooledTTS,
    SharedPool,
    api_errors,
    pool_key,
    raise_failed,
    shared_pool,
)
from ._livekit_elevenlabs_io import (
    Silence,
    StreamTimeoutError,
    http_api_error,
    open_timed,
    speak,
    to_api_error,
)
from .asyncio_adapter import AsyncioContext, AsyncioPool

__all__ = [
    "API_BASE_URL_V1",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_VOICE_ID",
    "TTS",
    "ChunkedStream",
    "PronunciationDictionaryLocator",
    "StreamTimeoutError",
    "SynthesizeStream",
    "TTSEncoding",
    "TTSModels",
    "Voice",
    "VoiceSettings",
    "to_api_error",
]

logger = logging.getLogger("bridges.livekit_elevenlabs")

# The official plugin's names and defaults (livekit-plugins-elevenlabs 1.8.9).
DEFAULT_VOICE_ID: Final = "hpp4J3VqNfWAUOO0d1Us"
API_BASE_URL_V1: Final = "https://api.elevenlabs.io/v1"
WS_INACTIVITY_TIMEOUT: Final = 180
DEFAULT_MODEL: Final = "eleven_turbo_v2_5"
DEFAULT_ENCODING: Final = "mp3_22050_32"
#: The official plugin's ``TTS.label`` (``TTSMetrics.label``, logs and traces).
LABEL: Final = "livekit.plugins.elevenlabs.tts.TTS"
#: How often the pool sends ElevenLabs' keep-alive to a silent context (at most; a third of
#: a shorter ``inactivity_timeout``).
KEEPALIVE_INTERVAL: Final = 5.0
#: The longest a one-shot synthesis may take (the official plugin's ``ClientTimeout(total=30)``).
HTTP_TIMEOUT: Final = 30.0

TTSModels = Literal[
    "eleven_monolingual_v1", "eleven_multilingual_v1", "eleven_multilingual_v2",
    "eleven_turbo_v2", "eleven_turbo_v2_5", "eleven_flash_v2_5", "eleven_flash_v2",
    "eleven_v3", "eleven_v3_conversational", "eleven_v4", "eleven_v4_turbo",
]  # fmt: skip
TTSEncoding = Literal[
    "mp3_22050_32", "mp3_24000_48", "mp3_44100", "mp3_44100_32", "mp3_44100_64",
    "mp3_44100_96", "mp3_44100_128", "mp3_44100_192",
    "opus_48000_32", "opus_48000_64", "opus_48000_96", "opus_48000_128", "opus_48000_192",
    "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_32000", "pcm_44100", "pcm_48000",
]  # fmt: skip
_MIME: Final = {"mp3": "audio/mp3", "opus": "audio/opus", "pcm": "audio/pcm"}
#: Languages whose ``original`` alignment the official plugin prefers.
_ORIGINAL_ALIGNMENT_LANGUAGES: Final = frozenset({"ja", "ko", "zh"})
# SSML tags the official plugin sends whole (their words are gathered until the tag ends).
_XML_START: Final = ("<phoneme", "<break")
_XML_END: Final = ("</phoneme>", "/>")


@dataclass
class VoiceSettings:
    """The official plugin's ``VoiceSettings`` (the official class is accepted too)."""

    stability: float  # [0.0 - 1.0]
    similarity_boost: float  # [0.0 - 1.0]
    style: NotGivenOr[float] = NOT_GIVEN  # [0.0 - 1.0]
    speed: NotGivenOr[float] = NOT_GIVEN  # [0.7 - 1.2]
    use_speaker_boost: NotGivenOr[bool] = NOT_GIVEN


@dataclass
class Voice:
    """One voice of :meth:`TTS.list_voices`, as the official plugin returns it."""

    id: str
    name: str
    category: str


@dataclass
class PronunciationDictionaryLocator:
    """The official plugin's ``PronunciationDictionaryLocator`` (the official class is
    accepted too)."""

    pronunciation_dictionary_id: str
    version_id: str


def _mime_type(encoding: str) -> str:
    return _MIME[encoding.split("_", 1)[0]]


def _is_elevenlabs_host(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    return host == "elevenlabs.io" or host.endswith(".elevenlabs.io")


def _as_dict(value: object, name: str) -> dict[str, Any]:
    """A dataclass (ours or the official plugin's) as a dict of its given fields."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise trio_tts.InvalidOptions(f"{name}: expected a dataclass, got {type(value).__name__}")
    return {k: v for k, v in dataclasses.asdict(value).items() if is_given(v) and v is not None}


def _locator(value: object) -> tuple[str, str]:
    """A pronunciation dictionary locator (ours or the official plugin's) as ``(id,
    version)``."""
    fields = _as_dict(value, "pronunciation_dictionary_locators")
    try:
        return fields["pronunciation_dictionary_id"], fields["version_id"]
    except KeyError as exc:
        raise trio_tts.InvalidOptions(
            f"pronunciation_dictionary_locators: missing {exc.args[0]}"
        ) from None


@dataclass
class _LKOptions:
    """The official plugin's options as given (``NOT_GIVEN`` kept): what :meth:`build` turns
    into the engine's :class:`trio_tts.ElevenLabsOptions`."""

    voice_id: str
    voice_settings: NotGivenOr[Any]
    model: str
    encoding: str
    language: NotGivenOr[LanguageCode]
    inactivity_timeout: int
    auto_mode: bool
    apply_text_normalization: Literal["auto", "on", "off"]
    apply_language_text_normalization: NotGivenOr[bool]
    enable_ssml_parsing: bool
    enable_logging: bool
    chunk_length_schedule: NotGivenOr[list[int]]
    sync_alignment: bool
    preferred_alignment: NotGivenOr[Literal["normalized", "original"]]
    pronunciation_dictionary_locators: NotGivenOr[list[Any]]

    def build(self) -> trio_tts.ElevenLabsOptions:
        """The engine's options (validated).

        Raises:
            InvalidOptions: a text-to-dialogue model, an encoding LiveKit cannot decode, or
                any value :class:`trio_tts.ElevenLabsOptions` refuses.
        """
        if not isinstance(self.model, str) or self.model.startswith(DIALOGUE_MODEL_PREFIXES):
            raise trio_tts.InvalidOptions(
                f"model: {self.model!r} speaks ElevenLabs' text-to-dialogue protocol, which"
                " bridges.livekit_elevenlabs does not; use livekit.plugins.elevenlabs for it"
            )
        if not isinstance(self.encoding, str) or self.encoding.split("_", 1)[0] not in _MIME:
            raise trio_tts.InvalidOptions(
                f"encoding: {self.encoding!r} is not an mp3_*, opus_* or pcm_* format"
            )
        if is_given(self.preferred_alignment):
            preferred = self.preferred_alignment
        elif is_given(self.language) and self.language.language in _ORIGINAL_ALIGNMENT_LANGUAGES:
            preferred = "original"
        else:
            preferred = "normalized"
        settings = (
            _as_dict(self.voice_settings, "voice_settings")
            if is_given(self.voice_settings)
            else None
        )
        locators = (
            [_locator(loc) for loc in self.pronunciation_dictionary_locators]
            if is_given(self.pronunciation_dictionary_locators)
            else None
        )
        return trio_tts.ElevenLabsOptions(
            voice_id=self.voice_id,
            model=self.model,
            output_format=self.encoding,
            language=self.language.language if is_given(self.language) else None,
            voice_settings=settings,
            apply_text_normalization=self.apply_text_normalization,
            apply_language_text_normalization=self.apply_language_text_normalization
            if is_given(self.apply_language_text_normalization)
            else None,
            enable_ssml_parsing=self.enable_ssml_parsing,
            enable_logging=self.enable_logging,
            inactivity_timeout=self.inactivity_timeout,
            sync_alignment=self.sync_alignment,
            auto_mode=self.auto_mode,
            chunk_length_schedule=self.chunk_length_schedule
            if is_given(self.chunk_length_schedule)
            else None,
            pronunciation_dictionary_locators=locators,
            preferred_alignment=preferred,
        )


class TTS(PooledTTS[ElevenLabsHTTPClient]):
    """ElevenLabs text-to-speech for LiveKit Agents, served by a shared trio_tts pool.

    Every argument of ``livekit.plugins.elevenlabs.TTS`` (1.8.9), with the same meaning and
    defaults; the module docstring lists where the behaviour differs. ``base_url`` is the API
    base, ``https://api.elevenlabs.io/v1`` (a local server's ``http://127.0.0.1:P/v1``).

    Added: ``max_connections`` (the pool's WebSocket cap, 20), ``max_contexts`` (contexts at
    once over all sockets: the account's concurrency, :data:`DEFAULT_CONCURRENCY`; None: only
    5 per socket), ``pool_settings`` (any other :func:`trio_tts.open_pool` setting) and
    ``prefetch`` (events the bridge hands over in a row before other tasks run).

    Raises:
        ValueError: no API key for ElevenLabs' own hosts, or an invalid option
            (:class:`trio_tts.InvalidOptions` is a ``ValueError``).
    """

    def __init__(
        self,
        *,
        voice_id: str = DEFAULT_VOICE_ID,
        voice_settings: NotGivenOr[VoiceSettings] = NOT_GIVEN,
        model: TTSModels | str = DEFAULT_MODEL,
        encoding: NotGivenOr[TTSEncoding] = NOT_GIVEN,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        base_url: NotGivenOr[str] = NOT_GIVEN,
        streaming_latency: NotGivenOr[int] = NOT_GIVEN,
        inactivity_timeout: int = WS_INACTIVITY_TIMEOUT,
        auto_mode: NotGivenOr[bool] = NOT_GIVEN,
        apply_text_normalization: Literal["auto", "off", "on"] = "auto",
        apply_language_text_normalization: NotGivenOr[bool] = NOT_GIVEN,
        word_tokenizer: NotGivenOr[tokenize.WordTokenizer | tokenize.SentenceTokenizer] = NOT_GIVEN,
        enable_ssml_parsing: bool = False,
        enable_logging: bool = True,
        chunk_length_schedule: NotGivenOr[list[int]] = NOT_GIVEN,
        http_session: aiohttp.ClientSession | None = None,
        language: NotGivenOr[str] = NOT_GIVEN,
        sync_alignment: bool = True,
        preferred_alignment: NotGivenOr[Literal["normalized", "original"]] = NOT_GIVEN,
        pronunciation_dictionary_locators: NotGivenOr[
            list[PronunciationDictionaryLocator]
        ] = NOT_GIVEN,
        max_connections: int = 20,
        max_contexts: int | None = DEFAULT_CONCURRENCY,
        pool_settings: Mapping[str, Any] | None = None,
        prefetch: int = 8,
    ) -> None:
        del streaming_latency, http_session  # no effect (see the module docstring)
        resolved_encoding = encoding if is_given(encoding) else DEFAULT_ENCODING
        if not is_given(auto_mode):
            auto_mode = not is_given(chunk_length_schedule)
        if not is_given(word_tokenizer):
            word_tokenizer = (
                tokenize.blingfire.SentenceTokenizer()
                if auto_mode
                else tokenize.basic.WordTokenizer(ignore_punctuation=False)
            )
        elif auto_mode and not isinstance(word_tokenizer, tokenize.SentenceTokenizer):
            logger.warning(
                "auto_mode is enabled, it expects full sentences or phrases, "
                "please provide a SentenceTokenizer instead of a WordTokenizer."
            )
        self._lk = _LKOptions(
            voice_id=voice_id,
            voice_settings=voice_settings,
            model=model,
            encoding=resolved_encoding,
            language=LanguageCode(language) if is_given(language) else NOT_GIVEN,
            inactivity_timeout=inactivity_timeout,
            auto_mode=auto_mode,
            apply_text_normalization=apply_text_normalization,
            apply_language_text_normalization=apply_language_text_normalization,
            enable_ssml_parsing=enable_ssml_parsing,
            enable_logging=enable_logging,
            chunk_length_schedule=chunk_length_schedule,
            sync_alignment=sync_alignment,
            preferred_alignment=preferred_alignment,
            pronunciation_dictionary_locators=pronunciation_dictionary_locators,
        )
        self._opts = self._lk.build()
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=sync_alignment),
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
        )
        self._label = LABEL
        url = base_url if is_given(base_url) else API_BASE_URL_V1
        key = api_key if is_given(api_key) else os.environ.get("ELEVEN_API_KEY")
        if not key and _is_elevenlabs_host(url):
            raise ValueError(
                "ElevenLabs API key is required, either as argument or set ELEVEN_API_KEY"
                " environmental variable"
            )
        self._api_key = key or None
        self._base_url = url
        self._word_tokenizer = word_tokenizer
        # A third of a short inactivity timeout: a context never goes silent that long.
        self._keepalive = min(KEEPALIVE_INTERVAL, inactivity_timeout / 3)
        self._max_contexts = max_contexts
        self._warm: trio_tts.ElevenLabsOptions | None = None  # see is_cold()
        # Validate the endpoint, limits and key now (InvalidOptions), not at the first turn.
        self._provider().url(self._opts)
        ElevenLabsHTTPClient(None, base_url=url)
        self._init_pool(
            max_connections,
            pool_settings,
            prefetch,
            # Unused: streams cut text with word_tokenizer (a sentence or a word tokenizer).
            word_tokenizer
            if isinstance(word_tokenizer, tokenize.SentenceTokenizer)
            else tokenize.blingfire.SentenceTokenizer(),
        )

    # -- the shared pool ---------------------------------------------------------------------

    def _provider(self) -> trio_tts.ElevenLabsProvider:
        return trio_tts.ElevenLabsProvider(
            self._api_key,
            url=self._base_url,
            max_contexts=self._max_contexts,
            keepalive_interval=self._keepalive,
        )

    def _acquire(self) -> SharedPool[ElevenLabsHTTPClient]:
        if self._shared is None:
            url, api_key = self._base_url, self._api_key
            # One pool per endpoint, key and limits, whatever the voice or format: contexts
            # of every TTS of the process count against the same account concurrency.
            endpoint = ("elevenlabs", url, repr(self._max_contexts), repr(self._keepalive))
            provider = self._provider()
            self._shared = shared_pool(
                pool_key(endpoint, api_key, self._pool_settings, self._prefetch),
                lambda: provider,
                lambda: ElevenLabsHTTPClient(api_key, base_url=url),
                {**self._pool_settings, "defaults": self._opts},
                self._prefetch,
            )
        return self._shared

    async def _prewarm(self) -> None:
        # A connection for this TTS's URL (voice, model, format), which may not be the
        # shared pool's default one.
        try:
            pool = await self.pool()
            await pool.prewarm(options=self._opts)
        except trio_tts.TTSError as exc:
            logger.warning("ElevenLabs prewarm failed: %s", exc)

    def is_cold(self, pool: AsyncioPool[Any], opts: trio_tts.ElevenLabsOptions) -> bool:
        """Whether a stream of ``opts`` should warm a socket first: not when the last
        context of this TTS had these very options and the pool has an open socket (a
        check without a crossing into trio)."""
        return not (self._warm is opts and pool.statistics().connections_open)

    def warmed(self, opts: trio_tts.ElevenLabsOptions) -> None:
        """A context of ``opts`` just got a socket."""
        self._warm = opts

    # -- the TTS API ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "ElevenLabs"

    @property
    def options(self) -> trio_tts.ElevenLabsOptions:
        """The options the next utterance of this TTS uses."""
        return self._opts

    @property
    def word_tokenizer(self) -> tokenize.WordTokenizer | tokenize.SentenceTokenizer:
        """What cuts the agent's text for :meth:`stream` (sentences in ``auto_mode``)."""
        return self._word_tokenizer

    def update_options(
        self,
        *,
        voice_id: NotGivenOr[str] = NOT_GIVEN,
        voice_settings: NotGivenOr[VoiceSettings] = NOT_GIVEN,
        model: NotGivenOr[TTSModels | str] = NOT_GIVEN,
        language: NotGivenOr[str] = NOT_GIVEN,
        pronunciation_dictionary_locators: NotGivenOr[
            list[PronunciationDictionaryLocator]
        ] = NOT_GIVEN,
    ) -> None:
        """Change the options of later utterances (streams already open keep theirs); later
        utterances of another voice or model go to sockets of their URL, in the same pool.

        Raises:
            ValueError: an invalid value (:class:`trio_tts.InvalidOptions`); nothing changes.
        """
        changes: dict[str, Any] = {}
        if is_given(voice_id):
            changes["voice_id"] = voice_id
        if is_given(voice_settings):
            changes["voice_settings"] = voice_settings
        if is_given(model):
            changes["model"] = model
        if is_given(language):
            changes["language"] = LanguageCode(language)
        if is_given(pronunciation_dictionary_locators):
            changes["pronunciation_dictionary_locators"] = pronunciation_dictionary_locators
        lk = dataclasses.replace(self._lk, **changes)
        opts = lk.build()
        self._provider().url(opts)
        self._lk, self._opts = lk, opts

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        """One-shot synthesis of ``text`` over HTTP (``POST .../text-to-speech/{voice_id}/
        stream``)."""
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SynthesizeStream:
        """Streaming synthesis: the agent's text, cut by ``word_tokenizer``, into one pooled
        context."""
        return self._track(SynthesizeStream(tts=self, conn_options=conn_options))

    async def list_voices(self) -> list[Voice]:
        """The account's voices (``GET {base_url}/voices``).

        Raises:
            APIStatusError: the service refused (401 ...). APIConnectionError: no answer.
        """
        with api_errors(to_api_error, "ElevenLabs voices request failed"):
            shared = await self.shared()
            rows = await shared.pool.run(shared.http.voice_rows)
        return [
            Voice(id=row["voice_id"], name=row.get("name", ""), category=row.get("category", ""))
            for row in rows
        ]


class ChunkedStream(tts.ChunkedStream):
    """One-shot synthesis over HTTP, as the official plugin: ``POST {base_url}/text-to-speech/
    {voice_id}/stream`` (:class:`trio_tts.http.ElevenLabsHTTPClient`, in the shared trio
    run), its audio pushed as it arrives; at most 30 s in all."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
            mime_type=_mime_type(self._opts.output_format),
        )
        if not self._input_text.strip():
            return  # nothing to say: no request, no audio

        async def fetch(http: ElevenLabsHTTPClient) -> None:  # in trio; push is synchronous
            with trio.fail_after(HTTP_TIMEOUT):
                async with http.stream(self._input_text, options=self._opts) as chunks:
                    async for audio in chunks:
                        output_emitter.push(audio.data)

        with api_errors(http_api_error, "ElevenLabs request failed", too_slow=True):
            shared = await self._tts.shared()
            await shared.pool.run(partial(fetch, shared.http))
        output_emitter.flush()


class SynthesizeStream(tts.SynthesizeStream):
    """Streaming synthesis: the agent's text, cut by the TTS's ``word_tokenizer``, into one
    pooled ElevenLabs context, opened when the first piece of text is ready."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = tts.options
        self._tokenizer = tts.word_tokenizer

    async def _read_input(self, tokens: tokenize.SentenceStream | tokenize.WordStream) -> None:
        async for data in self._input_ch:
            if isinstance(data, self._FlushSentinel):
                tokens.flush()
            else:
                tokens.push_text(data)
        tokens.end_input()

    async def _texts(
        self, tokens: tokenize.SentenceStream | tokenize.WordStream
    ) -> AsyncGenerator[str, None]:
        """What the official plugin sends per token: its text and a space (SSML tags
        gathered whole when ``enable_ssml_parsing``)."""
        xml: list[str] = []
        async for data in tokens:
            text = data.token
            if (self._opts.enable_ssml_parsing and text.startswith(_XML_START)) or xml:
                xml.append(text)
                if not any(text.find(end) > -1 for end in _XML_END):
                    continue
                tokenizer = self._tokenizer
                text = (
                    tokenizer.format_words(xml)
                    if isinstance(tokenizer, tokenize.WordTokenizer)
                    else " ".join(xml)
                )
                xml = []
            yield f"{text} "
        if xml:
            logger.warning("ElevenLabs stream ended with incomplete xml content")

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid()
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=self._opts.sample_rate,
            num_channels=NUM_CHANNELS,
            stream=True,
            mime_type=_mime_type(self._opts.output_format),
        )
        output_emitter.start_segment(segment_id=request_id)
        tokens = self._tokenizer.stream()
        texts = self._texts(tokens)
        flush = isinstance(self._tokenizer, tokenize.SentenceTokenizer) and bool(
            self._opts.auto_mode
        )
        silence = Silence(self._conn_options.timeout)

        async def send(ctx: AsyncioContext[Any], first: str) -> None:
            await ctx.send_text(first, flush=flush)
            silence.sent()
            self._mark_started()
            async for text in texts:
                await ctx.send_text(text, flush=flush)
                silence.sent()
                self._mark_started()
            await ctx.finish()  # {"text": "", "flush": true}, then close_context
            silence.sent(last=True)

        tasks: list[asyncio.Task[Any]] = []
        try:
            with api_errors(to_api_error, "ElevenLabs stream failed"):
                pool = await self._tts.pool()
                reader = asyncio.create_task(self._read_input(tokens))
                waiting = asyncio.create_task(anext(texts, None))
                tasks += [reader, waiting]
                if self._tts.is_cold(pool, self._opts):
                    # As the official plugin connects at once: a socket for this URL while
                    # the first text forms, and a refused key fails the turn now.
                    warm = asyncio.create_task(pool.prewarm(options=self._opts))
                    tasks.append(warm)
                    await asyncio.wait([warm, waiting], return_when=asyncio.FIRST_COMPLETED)
                    raise_failed(warm)
                first = await waiting
                if first is None:  # no text at all: no context, no audio
                    await reader
                    return
                timeout = self._conn_options.timeout
                ctx, self._acquire_time, self._connection_reused = await open_timed(
                    pool, self._opts, timeout
                )
                self._tts.warmed(self._opts)
                async with ctx:
                    speaker = asyncio.create_task(
                        speak(ctx, output_emitter, silence, timed=self._opts.sync_alignment)
                    )
                    work = [reader, asyncio.create_task(send(ctx, first)), speaker]
                    tasks += work[1:]
                    # The speaker ends at the server's isFinal; any failure ends all.
                    await asyncio.wait(work, return_when=asyncio.FIRST_EXCEPTION)
                    raise_failed(speaker, *work[:2])
                    await speaker
        finally:
            await utils.aio.gracefully_cancel(*tasks)
            for task in tasks:  # a late failure (the prewarm's ...) is not this turn's
                if task.done() and not task.cancelled():
                    task.exception()
            output_emitter.end_segment()
            await texts.aclose()
            await tokens.aclose()
