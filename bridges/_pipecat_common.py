"""What the pipecat drop-ins (:mod:`bridges.pipecat`, :mod:`bridges.pipecat_rime`) share.

pipecat's own WebSocket services hold one socket each: ``run_tts`` writes to it and a receive
task routes the provider's messages into the service's *audio contexts* (pipecat's per-turn
queues of frames). Here a pipecat context is a pooled :class:`~trio_tts.Context` instead,
drawn from the process's shared :class:`~bridges.asyncio_adapter.AsyncioPool` for the
endpoint and key (:mod:`bridges._shared_pools`): ``run_tts`` opens it on the turn's first text
and sends the text; one reader task per context turns its events into the same frames and
word timestamps the provider's receive loop would append; the end of the turn finishes it,
an interruption cancels it on the server (the slot comes back when the server confirms).

:class:`PooledWebsocketTTS` is that machinery, mixed in *before* pipecat's service class so
the constructor, settings, text handling, metrics and frames stay pipecat's own, and only
the transport is replaced. :mod:`bridges._pipecat_http` does the same for the one-shot HTTP
services, on :class:`SharedPoolUser`.

Requires the ``pipecat`` extra; ``import trio_tts`` never imports pipecat.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import trio
from loguru import logger
from pipecat.frames.frames import Frame, InterruptionFrame, TTSStartedFrame, TTSStoppedFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.tts_service import TTSService, WebsocketTTSService
from pipecat.utils.errors import ErrorCategory, classify_http_status_code
from pipecat.utils.types import is_given

import trio_tts

from ._shared_pools import SharedPool, pool_key, shared_pool
from ._status import http_status
from .asyncio_adapter import AsyncioContext, AsyncioPool

__all__ = [
    "PooledWebsocketTTS",
    "SharedPoolUser",
    "category_of",
    "checked_pool_settings",
    "given",
]


def given(value: Any, default: Any = None) -> Any:
    """A setting's value, or ``default`` when it is None or pipecat's ``NOT_GIVEN``."""
    return value if value is not None and is_given(value) else default


def category_of(exc: Exception) -> ErrorCategory:
    """pipecat's category for an engine error: a refusal by its HTTP status (401 is
    permanent, as pipecat's own services classify a refused handshake), a lost or
    unreachable connection as connectivity, a failed utterance as unknown (as pipecat's own
    services report a provider's error message)."""
    if isinstance(exc, trio_tts.InvalidOptions):
        return ErrorCategory.INVALID_REQUEST
    if isinstance(exc, trio_tts.HandshakeRejected | trio_tts.RequestRejected):
        return classify_http_status_code(http_status(exc) or 0)
    if isinstance(exc, trio_tts.ConnectionLost | trio_tts.CircuitOpen):
        return ErrorCategory.CONNECTIVITY
    if isinstance(exc, trio_tts.CapacityTimeout):
        return ErrorCategory.RATE_LIMIT
    return ErrorCategory.UNKNOWN


def checked_pool_settings(
    max_connections: int, extra: Mapping[str, Any] | None, prefetch: int
) -> dict[str, Any]:
    """The shared pool's settings, checked now (a constructor error, not a failed turn).

    Raises:
        InvalidOptions: an unknown or out-of-range setting, or a bad ``prefetch``.
    """
    settings = {"max_connections": max_connections, **(extra or {})}
    trio_tts.PoolSettings.build(None, **settings)
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        raise trio_tts.InvalidOptions(f"prefetch: {prefetch!r} must be an integer >= 0")
    return settings


class _Utterance:
    """One pipecat context's pooled context and the task reading its events."""

    __slots__ = ("ctx", "finishing", "reader")

    def __init__(self, ctx: AsyncioContext[Any]) -> None:
        self.ctx = ctx
        self.reader: asyncio.Task[None] | None = None
        self.finishing = False


class SharedPoolUser(TTSService):
    """Holds this service's share of a pool from the registry: taken on first use,
    given back (the last holder closes the pool) on stop, cancel or cleanup."""

    _shared: SharedPool[Any] | None

    def _init_shared(
        self,
        endpoint: tuple[str, ...],
        api_key: str | None,
        provider: Callable[[], trio_tts.Provider[Any]],
        http: Callable[[], trio.abc.AsyncResource | None],
        settings: dict[str, Any],
        prefetch: int,
    ) -> None:
        self._pool_key = pool_key(("pipecat", *endpoint), api_key, settings, prefetch)
        self._pool_parts = (provider, http, settings, prefetch)
        self._shared = None

    @property
    def pool(self) -> AsyncioPool[Any] | None:
        """The shared pool this service draws from, once it is open (None before its
        setup and after it closed): for statistics and tests."""
        shared = self._shared
        return shared.pool if shared is not None and shared.is_open else None

    async def _shared_pool(self) -> SharedPool[Any]:
        if self._shared is None:
            provider, http, settings, prefetch = self._pool_parts
            self._shared = shared_pool(self._pool_key, provider, http, settings, prefetch)
        await self._shared.get()
        return self._shared

    async def _give_back(self) -> bool:
        """Release this service's share; True if it held one."""
        shared, self._shared = self._shared, None
        if shared is None:
            return False
        # The last holder closes the pool: that must finish even if this task is cancelled.
        await asyncio.shield(shared.release())
        return True

    async def _stop_metrics(self) -> None:
        """pipecat's ``stop_all_metrics`` (which has no return annotation)."""
        await self.stop_all_metrics()  # type: ignore[no-untyped-call]

    async def _report(self, exc: Exception, message: str) -> None:
        """An engine error as pipecat reports errors: an ErrorFrame upstream, its category
        deciding whether the service stays usable."""
        await self.push_error(error_msg=message, exception=exc, category=category_of(exc))


class PooledWebsocketTTS(WebsocketTTSService, SharedPoolUser):
    """A pipecat WebSocket TTS service whose contexts are pooled (see the module docstring).

    A subclass lists it before the provider's pipecat class, calls :meth:`_init_pool` in its
    constructor and implements :meth:`_context_options`, :meth:`_on_audio` and
    :meth:`_error_message`; :meth:`_on_closed` and :meth:`_before_send` have defaults.
    """

    #: Open a connection ahead of the first turn (pipecat's services connect in setup).
    _prewarm_on_setup = True

    def _init_pool(
        self,
        *,
        endpoint: str,
        api_key: str | None,
        provider: Callable[[], trio_tts.Provider[Any]],
        max_connections: int,
        pool_settings: Mapping[str, Any] | None,
        prefetch: int,
    ) -> None:
        """Set up this service's share of the pool for ``endpoint`` and ``api_key``.

        Raises:
            InvalidOptions: bad pool settings or ``prefetch``.
        """
        settings = checked_pool_settings(max_connections, pool_settings, prefetch)
        self._init_shared((endpoint,), api_key, provider, lambda: None, settings, prefetch)
        self._utterances: dict[str, _Utterance] = {}
        # Contexts whose pooled context failed: the rest of their turn is not sent.
        self._failed: set[str] = set()

    # -- what a provider supplies --------------------------------------------------------

    def _context_options(self) -> trio_tts.Options:
        """The options of a context opened now (current settings and sample rate).

        Raises:
            InvalidOptions: the settings are not valid options.
        """
        raise NotImplementedError

    async def _on_audio(self, context_id: str, audio: trio_tts.Audio) -> None:
        """Append ``audio`` (and its word timings) to the audio context."""
        raise NotImplementedError

    def _error_message(self, exc: trio_tts.TTSError) -> str:
        """The ErrorFrame text for ``exc``."""
        raise NotImplementedError

    def _before_send(self, context_id: str, text: str) -> None:
        """Called with each text just before it is sent."""

    async def _on_closed(self, context_id: str, *, failed: bool) -> None:
        """The server closed the context (or it ``failed``): end the audio context as the
        provider's receive loop does on its end-of-context message."""
        await self.stop_ttfb_metrics()
        await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
        await self.remove_audio_context(context_id)

    # -- connection lifetime: the shared pool instead of a socket --------------------------

    async def _connect(self) -> None:
        """Take this service's share of the pool and, as pipecat's services connect in
        setup, make sure it has a connection open (the pool's first one; errors such as a
        refused key are reported here, before the first turn)."""
        try:
            self._context_options()
            pool = (await self._shared_pool()).pool
            if self._prewarm_on_setup:
                await pool.prewarm()
        except (trio_tts.TTSError, RuntimeError) as exc:
            message = self._error_message(exc) if isinstance(exc, trio_tts.TTSError) else str(exc)
            await self._report(exc, message)
            await self._call_event_handler("on_connection_error", str(exc))
            return
        await self._call_event_handler("on_connected")

    async def _disconnect(self) -> None:
        for context_id in list(self._utterances):
            await self._cancel_utterance(context_id)
        if await self._give_back():
            await self._call_event_handler("on_disconnected")

    async def _connect_websocket(self) -> None:
        """Unused: the pool owns the connections."""

    async def _disconnect_websocket(self) -> None:
        """Unused: the pool owns the connections."""

    async def _receive_messages(self) -> None:
        """Unused: each context has its own reader."""

    # ``Any``: pipecat's own services narrow AIService's ServiceSettings to TTSSettings.
    async def _update_settings(self, delta: Any) -> dict[str, Any]:
        """Apply a settings delta to later contexts (no reconnect: the pool is shared).

        Settings that make invalid options are not applied: an ErrorFrame says why.
        """
        before = copy.deepcopy(self._settings)
        # TTSService's, not the provider's: those reconnect their own socket.
        changed = await TTSService._update_settings(self, delta)
        if changed:
            try:
                self._context_options()
            except trio_tts.InvalidOptions as exc:
                self._settings = before
                await self.push_error(
                    error_msg=f"{self}: settings not applied: {exc}",
                    exception=exc,
                    category=ErrorCategory.APPLICATION,
                )
                return {}
        return changed

    # -- contexts --------------------------------------------------------------------------

    async def pooled_run_tts(
        self, text: str, context_id: str
    ) -> AsyncGenerator[Frame | None, None]:
        """``run_tts``: send ``text`` on the pooled context of ``context_id`` (opened on its
        first text); its audio arrives through the context's reader.

        A subclass installs it as ``run_tts = traced_tts(PooledWebsocketTTS.pooled_run_tts)``:
        pipecat's ``traced_tts`` wraps the ``setup`` its class finds, so applied here it
        would hide the provider's ``setup`` (which connects) behind TTSService's.
        """
        if context_id in self._failed:
            yield None
            return
        if not self.audio_context_available(context_id):
            await self.create_audio_context(context_id)
            await self.start_ttfb_metrics()
            yield TTSStartedFrame(context_id=context_id)
        utterance = self._utterances.get(context_id)
        try:
            if utterance is None:
                utterance = await self._open(context_id)
            self._before_send(context_id, text)
            await utterance.ctx.send_text(text)
            await self.start_tts_usage_metrics(text)
        except (trio_tts.TTSError, trio.ClosedResourceError) as exc:
            self._failed.add(context_id)
            if isinstance(exc, trio_tts.TTSError) and utterance is not None:
                # The opened context failed (its server error can come before its first text
                # is sent): its reader reports that, once, and ends its audio context.
                # Reporting it here as well made two error frames and a third
                # TTSStoppedFrame.
                return
            await self._cancel_utterance(context_id)
            if isinstance(exc, trio_tts.TTSError):
                await self._report(exc, self._error_message(exc))
                await self._call_event_handler("on_connection_error", str(exc))
            else:
                logger.warning(f"{self}: context {context_id} already finished: [{text}]")
            await self._on_closed(context_id, failed=True)
            return
        yield None

    async def _open(self, context_id: str) -> _Utterance:
        pool = (await self._shared_pool()).pool
        ctx = await pool.open_context(options=self._context_options())
        utterance = self._utterances[context_id] = _Utterance(ctx)
        utterance.reader = self.create_task(self._read(context_id, utterance), name="read")
        return utterance

    async def _read(self, context_id: str, utterance: _Utterance) -> None:
        """Until the server closes the context: its events into the audio context."""
        failed = False
        try:
            async for event in utterance.ctx:
                if isinstance(event, trio_tts.Audio):
                    await self._on_audio(context_id, event)
        except trio_tts.TTSError as exc:
            failed = True
            if not utterance.finishing:  # later text of its turn is not sent
                self._failed.add(context_id)
            await self._report(exc, self._error_message(exc))
        if self._utterances.get(context_id) is utterance:
            del self._utterances[context_id]
        await utterance.ctx.aclose()
        await self._on_closed(context_id, failed=failed)

    async def _flush_utterance(self, context_id: str | None) -> None:
        utterance = self._utterances.get(context_id or "")
        if utterance is not None and not utterance.finishing:
            with contextlib.suppress(trio_tts.TTSError, trio.ClosedResourceError):
                await utterance.ctx.flush()  # a failed context: its reader reports it

    async def _finish_utterance(self, context_id: str | None) -> None:
        """No more text for ``context_id``: the server finishes its audio and closes it."""
        utterance = self._utterances.get(context_id or "")
        if utterance is not None and not utterance.finishing:
            utterance.finishing = True
            with contextlib.suppress(trio_tts.TTSError, trio.ClosedResourceError):
                await utterance.ctx.finish()
        self._failed.discard(context_id or "")

    async def _cancel_utterance(self, context_id: str) -> None:
        """Stop ``context_id`` now: its reader stops, the server cancels it and the pool
        takes the slot back when the server confirms."""
        utterance = self._utterances.pop(context_id, None)
        if utterance is None:
            return
        if utterance.reader is not None and utterance.reader is not asyncio.current_task():
            await self.cancel_task(utterance.reader)
        await utterance.ctx.aclose()

    async def _handle_interruption(
        self, frame: InterruptionFrame, direction: FrameDirection
    ) -> None:
        """pipecat's interruption (``on_audio_context_interrupted`` cancels each dropped
        context), then any pooled context left without an audio context is cancelled too."""
        await super()._handle_interruption(frame, direction)
        kept = set(self.get_audio_contexts())
        for context_id in [c for c in self._utterances if c not in kept]:
            await self._cancel_utterance(context_id)
        self._failed.intersection_update(kept)
