"""pipecat TTS services for Rime on the trio engine: one shared pool per process.

Drop-ins for ``pipecat.services.rime.tts`` (pipecat-ai 1.14) :class:`RimeTTSService`
(``/ws3`` JSON WebSocket) and :class:`RimeHttpTTSService` (``/v1/rime-tts``), on the machinery
of :mod:`bridges.pipecat` (which re-exports both). The classes are pipecat's (subclasses):
same constructor arguments, ``Settings``/``InputParams``, text aggregation (Rime's
``spell()`` tags included), frames, interruptions, settings updates and metrics.

pipecat's ``RimeTTSService`` holds one socket per service; here every instance with the same
key and URL shares one pool. Rime fixes the voice per connection (the settings are the URL's
query), so one pooled connection carries one utterance at a time and the pool keeps a
connection per distinct set of settings; ``TTSUpdateSettingsFrame`` moves the service's next
contexts to connections of the new URL (pipecat's reconnects its socket).

Not carried over: the per-message fields of ``PRONOUNCE``/``INLINE_SPEED`` (the text
transform still applies; the fields are dropped with a warning), and settings the engine's
Rime client cannot send (``noTextNormalization``, ``saveOovs``, ``inlineSpeedAlpha``,
``reduceLatency`` on the WebSocket): they raise ``ValueError`` instead of being sent.
Parameters of the other model family, which pipecat sends and Rime ignores (``speedAlpha``
with ``coda``), are ignored with a warning.

Requires the ``pipecat`` extra; ``import trio_tts`` never imports pipecat.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import aiohttp
import pipecat.services.rime.tts as pipecat_rime
from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.utils.tracing.service_decorators import traced_tts

import trio_tts
from trio_tts.http import RimeHTTPClient
from trio_tts.providers.rime.http import DEFAULT_HTTP_URL
from trio_tts.providers.rime.options import is_mist
from trio_tts.providers.rime.provider import DEFAULT_URL

from ._pipecat_common import PooledWebsocketTTS, given
from ._pipecat_http import PooledHttpTTS

__all__ = ["RimeHttpTTSService", "RimeTTSService", "merge_words", "rime_options"]

#: The sample rate checked at construction when the pipeline decides it later.
_CHECK_RATE: Final = 24000
#: Settings pipecat sends only for one model family: (setting, engine field, mist?).
_FAMILY_FIELDS: Final = (
    ("speedAlpha", "speed_alpha", True),
    ("pauseBetweenBrackets", "pause_between_brackets", True),
    ("phonemizeBetweenBrackets", "phonemize_between_brackets", True),
    ("repetition_penalty", "repetition_penalty", False),
    ("temperature", "temperature", False),
    ("top_p", "top_p", False),
)


def rime_options(
    settings: pipecat_rime.RimeTTSSettings,
    *,
    sample_rate: int,
    websocket: bool,
    warn: bool = False,
) -> trio_tts.RimeOptions:
    """The engine's options for what pipecat's Rime services send from ``settings``.

    Raises:
        InvalidOptions: no voice, a value the engine refuses, or a setting it cannot send.
    """
    s = settings
    model = given(s.model, "")
    mist = is_mist(model)
    unsupported = ["inlineSpeedAlpha"] if not websocket else []
    if mist:
        unsupported += ["noTextNormalization"] + (["saveOovs"] if websocket else [])
    for name in unsupported:
        if given(getattr(s, name)) is not None:
            raise trio_tts.InvalidOptions(f"{name}: not supported by the trio_tts Rime client")
    fields: dict[str, Any] = {}
    for name, field, for_mist in _FAMILY_FIELDS:
        value = given(getattr(s, name))
        if value is None:
            continue
        if for_mist == mist:
            fields[field] = value
        elif warn:
            logger.warning(f"Rime {name} is not a parameter of {model!r}: ignored")
    if given(s.timeScaleFactor) is not None and not mist:
        fields["time_scale_factor"] = s.timeScaleFactor
    if given(s.reduceLatency) is not None and mist:
        if websocket:
            raise trio_tts.InvalidOptions(
                "reduceLatency: an HTTP-only option, the /ws3 WebSocket cannot honour it"
            )
        fields["reduce_latency"] = s.reduceLatency
    if websocket:
        fields["segment"] = given(s.segment, "bySentence")
    voice = given(s.voice)
    if not voice:
        raise trio_tts.InvalidOptions("voice: Rime needs a speaker (settings voice=...)")
    return trio_tts.RimeOptions(
        speaker=voice,
        model=model,
        sample_rate=sample_rate,
        language=given(s.language),
        **fields,
    )


def merge_words(words: tuple[trio_tts.WordTiming, ...]) -> list[tuple[str, float]]:
    """pipecat's Rime word times: blank words dropped, punctuation joined to the word
    before it."""
    pairs: list[tuple[str, float]] = []
    for w in words:
        if not w.word.strip():
            continue
        if not w.word.strip(",.!?") and pairs:
            pairs[-1] = (pairs[-1][0] + w.word, pairs[-1][1])
        else:
            pairs.append((w.word, w.start))
    return pairs


class RimeTTSService(PooledWebsocketTTS, pipecat_rime.RimeTTSService):
    """pipecat's ``RimeTTSService`` (``/ws3``), its contexts drawn from the process's shared
    pool for ``(api_key, url)``.

    Takes every argument of pipecat's, plus ``max_connections`` (the shared pool's cap on
    WebSockets, default 20; one utterance per connection at a time), ``pool_settings`` and
    ``prefetch`` (as :class:`bridges.pipecat.InworldTTSService`).

    Raises:
        ValueError: an invalid option (:class:`trio_tts.InvalidOptions`): an empty key, a
            URL that is not ws(s):// or carries a query, no voice, a value the engine refuses
            or a setting it cannot send (see the module docstring).
    """

    #: Rime's connections are per set of settings: nothing to warm before the first turn.
    _prewarm_on_setup = False

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str | None = None,
        url: str = DEFAULT_URL,
        model: str | None = None,
        sample_rate: int | None = None,
        params: pipecat_rime.RimeTTSService.InputParams | None = None,
        settings: pipecat_rime.RimeTTSSettings | None = None,
        text_aggregation_mode: TextAggregationMode | None = None,
        aggregate_sentences: bool | None = None,
        max_connections: int = 20,
        pool_settings: Mapping[str, Any] | None = None,
        prefetch: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key=api_key,
            voice_id=voice_id,
            url=url,
            model=model,
            sample_rate=sample_rate,
            params=params,
            settings=settings,
            text_aggregation_mode=text_aggregation_mode,
            aggregate_sentences=aggregate_sentences,
            **kwargs,
        )
        provider = trio_tts.RimeProvider(api_key, url=url)  # InvalidOptions: key, URL
        options = rime_options(
            self._settings, sample_rate=sample_rate or _CHECK_RATE, websocket=True, warn=True
        )
        provider.url(options)  # InvalidOptions: what the query cannot carry
        self._init_pool(
            endpoint=url,
            api_key=api_key,
            provider=lambda: trio_tts.RimeProvider(api_key, url=url),
            max_connections=max_connections,
            pool_settings=pool_settings,
            prefetch=prefetch,
        )

    run_tts = traced_tts(PooledWebsocketTTS.pooled_run_tts)

    def _context_options(self) -> trio_tts.RimeOptions:
        return rime_options(self._settings, sample_rate=self.sample_rate, websocket=True)

    def _error_message(self, exc: trio_tts.TTSError) -> str:
        if isinstance(exc, trio_tts.ContextFailed):
            return f"Rime error: {exc.message}"
        return f"Rime TTS error: {exc}"

    def _before_send(self, context_id: str, text: str) -> None:
        if self._extra_msg_fields:
            logger.warning(
                f"{self}: per-message fields {sorted(self._extra_msg_fields)} are not sent"
                " by the trio_tts Rime client"
            )
            self._extra_msg_fields = {}

    async def _on_audio(self, context_id: str, audio: trio_tts.Audio) -> None:
        if audio.data:
            frame = TTSAudioRawFrame(audio.data, self.sample_rate, 1, context_id=context_id)
            await self.append_to_audio_context(context_id, frame)
        # The engine keeps the timings monotonic across the context's flushes.
        if words := merge_words(audio.words):
            await self.add_word_timestamps(words, context_id=context_id)

    async def flush_audio(self, context_id: str | None = None) -> None:
        """The end of the turn (pipecat's only flush): the server speaks the rest and the
        context closes once it answered (Rime's ``done``)."""
        await self._finish_utterance(context_id or self.get_active_audio_context_id())

    async def _close_context(self, context_id: str) -> None:
        """Nothing left on the server: the pool cleared (or closed) the context."""
        await self._stop_metrics()

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Cancel the context on the server (the slot comes back when it confirms)."""
        await self._stop_metrics()
        await self._cancel_utterance(context_id)
        await TTSService.on_audio_context_interrupted(self, context_id)


class RimeHttpTTSService(PooledHttpTTS, pipecat_rime.RimeHttpTTSService):
    """pipecat's ``RimeHttpTTSService``, its requests made by the engine's HTTP client
    (``trio_tts.http.RimeHTTPClient``), one client per ``(api_key, url)`` in the process.

    Takes every argument of pipecat's with the same meaning, plus ``url`` (the endpoint;
    pipecat's is fixed at ``https://users.rime.ai/v1/rime-tts``) and ``pool_settings``.
    ``aiohttp_session`` is accepted and not used.

    Raises:
        ValueError: an invalid option (:class:`trio_tts.InvalidOptions`), as
            :class:`RimeTTSService`, or a ``url`` that is not http(s)://.
    """

    def __init__(
        self,
        *,
        api_key: str,
        voice_id: str | None = None,
        aiohttp_session: aiohttp.ClientSession | None = None,
        model: str | None = None,
        sample_rate: int | None = None,
        params: pipecat_rime.RimeHttpTTSService.InputParams | None = None,
        settings: pipecat_rime.RimeTTSSettings | None = None,
        url: str = DEFAULT_HTTP_URL,
        pool_settings: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key=api_key,
            voice_id=voice_id,
            aiohttp_session=aiohttp_session,  # type: ignore[arg-type]  # not used
            model=model,
            sample_rate=sample_rate,
            params=params,
            settings=settings,
            **kwargs,
        )
        RimeHTTPClient(api_key, url=url)  # InvalidOptions: the key, the URL
        rime_options(
            self._settings, sample_rate=sample_rate or _CHECK_RATE, websocket=False, warn=True
        )
        self._init_http(
            endpoint=url,
            api_key=api_key,
            provider=lambda: trio_tts.RimeProvider(api_key, url=_placeholder_ws(url)),
            http=lambda: RimeHTTPClient(api_key, url=url),
            pool_settings=pool_settings,
        )

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Synthesise ``text`` over HTTP; audio frames as pipecat's service yields them."""
        try:
            options = rime_options(self._settings, sample_rate=self.sample_rate, websocket=False)

            async def pcm() -> AsyncGenerator[bytes, None]:
                started = False
                stream = self._http_audio(lambda http: http.stream(text, options=options))
                async with contextlib.aclosing(stream):
                    async for audio in stream:
                        if not started:  # as pipecat's: once the service answered
                            started = True
                            await self.start_tts_usage_metrics(text)
                        yield audio.data

            frames = self._stream_audio_frames_from_iterator(
                pcm(), strip_wav_header=False, context_id=context_id
            )
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    await self.stop_ttfb_metrics()
                    yield frame
        except trio_tts.TTSError as exc:
            yield ErrorFrame(error=f"Rime TTS error: {exc}")
        finally:
            await self.stop_ttfb_metrics()


def _placeholder_ws(url: str) -> str:
    """A WebSocket URL for the HTTP service's pool, which never connects."""
    scheme, rest = url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.split('/', 1)[0]}/ws3"
