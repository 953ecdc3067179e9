"""pipecat TTS services for Inworld (and Rime) on the trio engine: one shared pool per process.

Drop-ins for ``pipecat.services.inworld.tts`` (pipecat-ai 1.14): change the import and the
pipeline stays as it was::

    from bridges.pipecat import InworldTTSService   # was: from pipecat.services.inworld.tts

    tts = InworldTTSService(api_key=key, settings=InworldTTSService.Settings(voice="Ashley"))

The classes *are* pipecat's (subclasses): the same constructor arguments, ``Settings`` and
``InputParams``, the same text aggregation, frames (``TTSStartedFrame``, ``TTSAudioRawFrame``
with the context's id, word ``TTSTextFrame`` s through ``add_word_timestamps``,
``TTSStoppedFrame``, ``ErrorFrame``), interruptions, ``TTSUpdateSettingsFrame`` and metrics
(TTFB, usage). What changes is the transport: pipecat's :class:`InworldTTSService` opens one
WebSocket per service instance, so a process serving 40 calls holds 40 sockets against an
account limit of 20. Here every instance in the process with the same key and URL (and pool
settings) draws its contexts from one :class:`~bridges.asyncio_adapter.AsyncioPool` (at most
``max_connections`` sockets, five contexts each), started with the first service and closed
with the last.
An interruption cancels the context on the server; its slot comes back when the server
confirms. :class:`InworldHttpTTSService` sends its requests through the engine's HTTP
client, shared the same way. Where the two differ from pipecat's, the README's pipecat
section lists it. Rime's services are in :mod:`bridges.pipecat_rime`, re-exported here.

Requires the ``pipecat`` extra (``pip install 'trio-tts[pipecat]'``); ``import trio_tts``
never imports pipecat.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final, Literal

import aiohttp
import pipecat.services.inworld.tts as pipecat_inworld
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame, TTSTextFrame
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.utils.text.base_text_aggregator import TextType
from pipecat.utils.tracing.service_decorators import traced_tts

import trio_tts
from trio_tts.http import DEFAULT_HTTP_URL, InworldHTTPClient

from ._pipecat_common import PooledWebsocketTTS, given
from ._pipecat_http import PooledHttpTTS
from .pipecat_rime import RimeHttpTTSService as RimeHttpTTSService
from .pipecat_rime import RimeTTSService as RimeTTSService

__all__ = [
    "InworldHttpTTSService",
    "InworldTTSService",
    "RimeHttpTTSService",
    "RimeTTSService",
    "voice_options",
]

#: pipecat's default WebSocket endpoint.
DEFAULT_URL: Final = "wss://api.inworld.ai/tts/v1/voice:streamBidirectional"
#: What pipecat sends when ``max_buffer_delay_ms``/``buffer_char_threshold`` are not given.
DEFAULT_MAX_BUFFER_DELAY_MS: Final = 3000
DEFAULT_BUFFER_CHAR_THRESHOLD: Final = 250
#: The sample rate checked at construction when the pipeline decides it later.
_CHECK_RATE: Final = 24000

_NORMALIZATION = {"ON": True, "OFF": False, "APPLY_TEXT_NORMALIZATION_UNSPECIFIED": None}


def _normalization(value: str | None) -> bool | None:
    if value is None or value in _NORMALIZATION:
        return _NORMALIZATION.get(value) if value is not None else None
    raise trio_tts.InvalidOptions(
        f"apply_text_normalization: {value!r} is not ON, OFF or"
        " APPLY_TEXT_NORMALIZATION_UNSPECIFIED"
    )


def voice_options(
    settings: pipecat_inworld.InworldTTSSettings,
    *,
    sample_rate: int,
    encoding: str,
    timestamp_transport_strategy: str | None,
    **fields: Any,
) -> trio_tts.VoiceOptions:
    """The engine's options for what pipecat's Inworld services send: ``settings`` (voice,
    model, language, speaking rate, temperature, delivery mode), raw PCM at
    ``sample_rate`` with word timestamps, plus ``fields``.

    Raises:
        InvalidOptions: a value the engine refuses (an empty voice, a speaking rate outside
            0.5–1.5, an unsupported sample rate ...) or an encoding that is not raw PCM
            (``TTSAudioRawFrame`` carries PCM).
    """
    if encoding not in ("PCM", "LINEAR16"):
        raise trio_tts.InvalidOptions(
            f"encoding: {encoding!r} is not PCM or LINEAR16 (TTSAudioRawFrame carries raw PCM)"
        )
    return trio_tts.VoiceOptions(
        voice=given(settings.voice, ""),
        model=given(settings.model, ""),
        encoding=encoding,
        sample_rate=sample_rate,
        speaking_rate=given(settings.speaking_rate, 1.0),
        temperature=given(settings.temperature, 1.0),
        language=given(settings.language),
        delivery_mode=given(settings.delivery_mode),
        timestamp_type="WORD",
        timestamp_transport_strategy=timestamp_transport_strategy,
        **fields,
    )


class InworldTTSService(PooledWebsocketTTS, pipecat_inworld.InworldTTSService):
    """pipecat's ``InworldTTSService`` (WebSocket), its contexts drawn from the process's
    shared pool for ``(api_key, url)``.

    Takes every argument of pipecat's, with the same meaning and defaults, plus:

    * ``max_connections``: the shared pool's cap on WebSockets (default 20, Inworld's
      account limit).
    * ``pool_settings``: any other :class:`trio_tts.PoolSettings` field.
    * ``prefetch``: events the bridge hands over in a row before other tasks run.

    Services with the same key, URL and these three share one pool.

    Raises:
        ValueError: an invalid option (:class:`trio_tts.InvalidOptions`): an empty key, a
            URL that is not ws(s)://, a voice/model/speaking rate/sample rate the engine
            refuses, a compressed ``encoding``, an unknown ``apply_text_normalization``.
    """

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str | None = None,
        model: str | None = None,
        url: str = DEFAULT_URL,
        sample_rate: int | None = None,
        encoding: str = "PCM",
        auto_mode: bool | None = None,
        apply_text_normalization: str | None = None,
        timestamp_transport_strategy: Literal["ASYNC", "SYNC"] | None = "ASYNC",
        params: pipecat_inworld.InworldTTSService.InputParams | None = None,
        settings: pipecat_inworld.InworldTTSSettings | None = None,
        aggregate_sentences: bool | None = None,
        text_aggregation_mode: TextAggregationMode | None = None,
        append_trailing_space: bool = True,
        max_connections: int = 20,
        pool_settings: Mapping[str, Any] | None = None,
        prefetch: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key=api_key,
            voice_id=voice_id,
            model=model,
            url=url,
            sample_rate=sample_rate,
            encoding=encoding,
            auto_mode=auto_mode,
            apply_text_normalization=apply_text_normalization,
            timestamp_transport_strategy=timestamp_transport_strategy,
            params=params,
            settings=settings,
            aggregate_sentences=aggregate_sentences,
            text_aggregation_mode=text_aggregation_mode,
            append_trailing_space=append_trailing_space,
            **kwargs,
        )
        trio_tts.InworldProvider(api_key, url=url)  # InvalidOptions: the key, the URL
        self._options_at(sample_rate or _CHECK_RATE)  # InvalidOptions: the settings
        self._init_pool(
            endpoint=url,
            api_key=api_key,
            provider=lambda: trio_tts.InworldProvider(api_key, url=url),
            max_connections=max_connections,
            pool_settings=pool_settings,
            prefetch=prefetch,
        )

    run_tts = traced_tts(PooledWebsocketTTS.pooled_run_tts)

    def _options_at(self, sample_rate: int) -> trio_tts.VoiceOptions:
        buffer = self._buffer_settings
        return voice_options(
            self._settings,
            sample_rate=sample_rate,
            encoding=self._audio_encoding,
            timestamp_transport_strategy=self._timestamp_transport_strategy,
            auto_mode=self._auto_mode,
            apply_text_normalization=_normalization(self._apply_text_normalization),
            max_buffer_delay_ms=buffer["maxBufferDelayMs"] or DEFAULT_MAX_BUFFER_DELAY_MS,
            buffer_char_threshold=buffer["bufferCharThreshold"] or DEFAULT_BUFFER_CHAR_THRESHOLD,
        )

    def _context_options(self) -> trio_tts.VoiceOptions:
        return self._options_at(self.sample_rate)

    def _error_message(self, exc: trio_tts.TTSError) -> str:
        if isinstance(exc, trio_tts.ContextFailed):
            return f"Inworld API error: {exc.message}"
        return f"Inworld TTS error: {exc}"

    # -- the provider's receive loop, per context ------------------------------------------

    def _before_send(self, context_id: str, text: str) -> None:
        # What the fallback TTSTextFrame says if no word timestamps arrive (as pipecat's).
        self._context_texts[context_id] = self._context_texts.get(context_id, "") + text

    async def _on_audio(self, context_id: str, audio: trio_tts.Audio) -> None:
        if audio.data:
            frame = TTSAudioRawFrame(audio.data, self.sample_rate, 1, context_id=context_id)
            await self.append_to_audio_context(context_id, frame)
        if audio.words:
            self._contexts_with_timestamps.add(context_id)
            # The engine keeps the timings monotonic across the context's generations.
            words = [(w.word, w.start) for w in audio.words]
            await self.add_word_timestamps(words, context_id, pre_merge_tokens=True)

    async def _on_closed(self, context_id: str, *, failed: bool) -> None:
        if failed:  # nothing was spoken: no fallback text for the conversation
            self._context_texts.pop(context_id, None)
            self._contexts_with_timestamps.discard(context_id)
        else:
            await self._maybe_push_fallback_text(context_id)
        await super()._on_closed(context_id, failed=failed)

    # -- turns -----------------------------------------------------------------------------

    async def on_turn_context_created(self, context_id: str) -> None:
        """Nothing ahead of the text: the pooled context opens with the turn's first text
        (its ``create`` goes out with it, without a round trip)."""

    async def flush_audio(self, context_id: str | None = None) -> None:
        """Synthesise the text sent so far (``flush_context``), keeping the context open."""
        await self._flush_utterance(context_id or self.get_active_audio_context_id())

    async def _close_context(self, context_id: str | None) -> None:
        """The end of the turn: the server finishes the context's audio, then closes it."""
        await self._finish_utterance(context_id)
        self._sent_context_ids.discard(context_id or "")

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Cancel the context on the server (the slot comes back when it confirms)."""
        await self._maybe_push_fallback_text(context_id)
        await self._cancel_utterance(context_id)
        await TTSService.on_audio_context_interrupted(self, context_id)


class InworldHttpTTSService(PooledHttpTTS, pipecat_inworld.InworldHttpTTSService):
    """pipecat's ``InworldHttpTTSService``, its requests made by the engine's HTTP client
    (``trio_tts.http``), one client per ``(api_key, base_url)`` in the process.

    Takes every argument of pipecat's with the same meaning, plus ``base_url`` (the HTTP
    API's root; pipecat's is fixed at ``https://api.inworld.ai``) and ``pool_settings``.
    ``aiohttp_session`` is accepted and not used. Both ``streaming`` modes read Inworld's
    streaming endpoint (``voice:stream``); with ``streaming=False`` the audio is pushed once
    complete, in pipecat's half-second frames, as pipecat does with ``voice``.

    Raises:
        ValueError: an invalid option (:class:`trio_tts.InvalidOptions`), as
            :class:`InworldTTSService`, or a ``base_url`` that is not http(s)://.
    """

    def __init__(
        self,
        *,
        api_key: str,
        aiohttp_session: aiohttp.ClientSession | None = None,
        voice_id: str | None = None,
        model: str | None = None,
        streaming: bool = True,
        sample_rate: int | None = None,
        encoding: str = "PCM",
        timestamp_transport_strategy: Literal["ASYNC", "SYNC"] | None = "ASYNC",
        params: pipecat_inworld.InworldHttpTTSService.InputParams | None = None,
        settings: pipecat_inworld.InworldTTSSettings | None = None,
        base_url: str = DEFAULT_HTTP_URL,
        pool_settings: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key=api_key,
            aiohttp_session=aiohttp_session,  # type: ignore[arg-type]  # not used
            voice_id=voice_id,
            model=model,
            streaming=streaming,
            sample_rate=sample_rate,
            encoding=encoding,
            timestamp_transport_strategy=timestamp_transport_strategy,
            params=params,
            settings=settings,
            **kwargs,
        )
        InworldHTTPClient(api_key, base_url=base_url)  # InvalidOptions: the key, the URL
        self._options_at(sample_rate or _CHECK_RATE)  # InvalidOptions: the settings
        self._init_http(
            endpoint=base_url,
            api_key=api_key,
            provider=lambda: trio_tts.InworldProvider(api_key, url=_placeholder_ws(base_url)),
            http=lambda: InworldHTTPClient(api_key, base_url=base_url),
            pool_settings=pool_settings,
        )

    def _options_at(self, sample_rate: int) -> trio_tts.VoiceOptions:
        return voice_options(
            self._settings,
            sample_rate=sample_rate,
            encoding=self._audio_encoding,
            timestamp_transport_strategy=self._timestamp_transport_strategy,
        )

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Synthesise ``text`` over HTTP; audio and word timestamps as pipecat's service
        yields them (timings continue across the turn's requests)."""
        self._current_run_had_timestamps = False
        try:
            options = self._options_at(self.sample_rate)
            chunks: list[bytes] = []
            words: list[tuple[str, float]] = []
            duration = 0.0
            stream = self._http_audio(lambda http: http.stream(text, options=options))
            async with contextlib.aclosing(stream):
                async for audio in stream:
                    if audio.words:
                        duration = max(duration, audio.words[-1].end)
                        offset = self._cumulative_time
                        words.extend((w.word, offset + w.start) for w in audio.words)
                    if not self._streaming:
                        chunks.append(audio.data)
                        continue
                    if audio.data:
                        await self.stop_ttfb_metrics()
                        yield TTSAudioRawFrame(
                            audio.data, self.sample_rate, 1, context_id=context_id
                        )
                    if words:
                        self._current_run_had_timestamps = True
                        await self.add_word_timestamps(words, context_id, pre_merge_tokens=True)
                        words = []
            if not self._streaming:
                async for frame in self._whole(b"".join(chunks), words, context_id):
                    yield frame
            self._cumulative_time += duration
            await self.start_tts_usage_metrics(text)
            await self._push_fallback_text(text, context_id)
        except trio_tts.TTSError as exc:
            yield ErrorFrame(error=f"Inworld API error: {exc}")
        finally:
            await self._stop_metrics()

    async def _whole(
        self, audio: bytes, words: list[tuple[str, float]], context_id: str
    ) -> AsyncGenerator[Frame, None]:
        """pipecat's non-streaming delivery: the words, then the audio in half seconds."""
        if words:
            self._current_run_had_timestamps = True
            await self.add_word_timestamps(words, context_id, pre_merge_tokens=True)
        size = self.chunk_size
        for start in range(0, len(audio), size):
            await self.stop_ttfb_metrics()
            yield TTSAudioRawFrame(
                audio[start : start + size], self.sample_rate, 1, context_id=context_id
            )

    async def _push_fallback_text(self, text: str, context_id: str) -> None:
        """Without word timestamps, the whole text as one TTSTextFrame (as pipecat's)."""
        text = text.rstrip()
        if self._current_run_had_timestamps or not text:
            return
        fallback = TTSTextFrame(text, text_type=TextType.SENTENCE, context_id=context_id)
        ctx = self._tts_contexts.get(context_id)
        fallback.append_to_context = ctx.append_to_context if ctx else True
        await self.push_frame(fallback)


def _placeholder_ws(base_url: str) -> str:
    """A WebSocket URL for the HTTP service's pool, which never connects."""
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.split('/', 1)[0]}/"
