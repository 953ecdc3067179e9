"""The pipecat HTTP drop-ins' transport (:mod:`bridges.pipecat`, :mod:`bridges.pipecat_rime`).

pipecat's HTTP services post each sentence with their own ``aiohttp`` session. Here the
request goes through the engine's HTTP client (``trio_tts.http``) in the shared trio run: one
client (one connection pool) per endpoint and key in the process, held in the registry of
:mod:`bridges._shared_pools` like the WebSocket services' pools (whose pool never connects).
The audio crosses back to asyncio as it arrives.

Requires the ``pipecat`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

import trio_tts

from ._pipecat_common import SharedPoolUser, checked_pool_settings

__all__ = ["PooledHttpTTS"]


class PooledHttpTTS(SharedPoolUser):
    """A pipecat HTTP TTS service whose requests go through the engine's HTTP client in the
    shared trio run.

    A subclass lists it before the provider's pipecat class and calls :meth:`_init_http`.
    """

    def _init_http(
        self,
        *,
        endpoint: str,
        api_key: str | None,
        provider: Callable[[], trio_tts.Provider[Any]],
        http: Callable[[], trio.abc.AsyncResource],
        pool_settings: Mapping[str, Any] | None,
    ) -> None:
        """Set up this service's share of the client for ``endpoint`` and ``api_key``
        (``provider``: the never-connecting pool's).

        Raises:
            InvalidOptions: bad pool settings.
        """
        settings = checked_pool_settings(1, {**(pool_settings or {}), "min_connections": 0}, 0)
        self._init_shared((endpoint,), api_key, provider, http, settings, 0)

    # ``Any``: pipecat's FrameProcessor narrows BaseObject's setup argument.
    async def setup(self, setup: Any) -> None:
        """pipecat's setup, then this service's share of the client (started with the
        first service)."""
        await super().setup(setup)
        try:
            await self._shared_pool()
        except (trio_tts.TTSError, RuntimeError) as exc:
            await self._report(exc, f"{self}: {exc}")

    async def stop(self, frame: Any) -> None:
        await super().stop(frame)
        await self._give_back()

    async def cancel(self, frame: Any) -> None:
        await super().cancel(frame)
        await self._give_back()

    async def cleanup(self) -> None:
        # pipecat's cleanup() has no return annotation.
        await super().cleanup()  # type: ignore[no-untyped-call]
        await self._give_back()

    async def _http_audio(
        self,
        request: Callable[[Any], AbstractAsyncContextManager[AsyncIterator[trio_tts.Audio]]],
    ) -> AsyncGenerator[trio_tts.Audio, None]:
        """The audio of ``request(client)``, made in the trio run, as it arrives.

        Raises:
            TTSError: what the request raised (after the audio that came before it).
        """
        shared = await self._shared_pool()
        queue: asyncio.Queue[trio_tts.Audio | None] = asyncio.Queue()

        async def fetch() -> None:  # runs in trio, on this thread: put_nowait is safe
            async with request(shared.http) as chunks:
                async for audio in chunks:
                    queue.put_nowait(audio)

        task = asyncio.ensure_future(shared.pool.run(fetch))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (audio := await queue.get()) is not None:
                yield audio
            task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, trio_tts.TTSError):
                    await task
