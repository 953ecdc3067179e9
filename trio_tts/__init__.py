"""trio_tts: streaming text-to-speech over WebSockets on trio.

A supervised pool of provider WebSocket connections, each an actor in a nursery, handing out
multiplexed *contexts* (one utterance stream each) within the provider's limits::

    async with trio_tts.open_pool(trio_tts.InworldProvider(api_key=key)) as pool:
        ctx = await pool.open_context(voice="Ashley")
        async with ctx:
            await ctx.send_text("Hello from trio.")
            await ctx.finish()
            async for event in ctx:
                ...

This module is the only public surface; everything else is private.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._core.connection import TransportFactory as TransportFactory
from ._core.context import Context as Context
from ._core.context import ContextState as ContextState
from ._core.errors import CapacityTimeout as CapacityTimeout
from ._core.errors import CircuitOpen as CircuitOpen
from ._core.errors import ConnectionLost as ConnectionLost
from ._core.errors import ContextFailed as ContextFailed
from ._core.errors import HandshakeRejected as HandshakeRejected
from ._core.errors import InvalidOptions as InvalidOptions
from ._core.errors import PoolClosed as PoolClosed
from ._core.errors import ProtocolError as ProtocolError
from ._core.errors import RequestRejected as RequestRejected
from ._core.errors import SlowConsumer as SlowConsumer
from ._core.errors import TTSError as TTSError
from ._core.events import Audio as Audio
from ._core.events import FlushCompleted as FlushCompleted
from ._core.events import WordTiming as WordTiming
from ._core.options import AudioEncoding as AudioEncoding
from ._core.options import Options as Options
from ._core.options import TimestampType as TimestampType
from ._core.pool import Pool as Pool
from ._core.pool import open_pool as open_pool
from ._core.provider import ClientCodec as ClientCodec
from ._core.provider import Provider as Provider
from ._core.quota import Lease as Lease
from ._core.quota import LocalQuota as LocalQuota
from ._core.quota import Quota as Quota
from ._core.quota import QuotaStatistics as QuotaStatistics
from ._core.settings import PoolSettings as PoolSettings
from ._core.settings import PoolSettingsKwargs as PoolSettingsKwargs
from ._core.snapshot import PoolSnapshot as PoolSnapshot
from ._core.snapshot import PoolStatistics as PoolStatistics
from ._core.telemetry import ContextProbe as ContextProbe
from ._core.telemetry import HandshakeProbe as HandshakeProbe
from ._core.telemetry import PoolProbe as PoolProbe
from ._core.telemetry import Telemetry as Telemetry
from ._core.text import split_text as split_text
from .providers.cartesia.options import CartesiaOptions as CartesiaOptions
from .providers.cartesia.provider import CartesiaProvider as CartesiaProvider
from .providers.elevenlabs.options import ElevenLabsOptions as ElevenLabsOptions
from .providers.elevenlabs.options import VoiceSettings as VoiceSettings
from .providers.elevenlabs.provider import ElevenLabsProvider as ElevenLabsProvider
from .providers.inworld.options import VoiceOptions as VoiceOptions
from .providers.inworld.provider import InworldProvider as InworldProvider
from .providers.rime.options import RimeOptions as RimeOptions
from .providers.rime.provider import RimeProvider as RimeProvider

__version__ = "0.1.0"

# The fleet quota needs the optional ``redis`` extra (coredis): imported on first use.
_REDIS_NAMES = ("QuotaUnavailable", "RedisQuota", "RedisQuotaStatistics", "open_redis_quota")

if _TYPE_CHECKING:
    from .fleet.open import open_redis_quota as open_redis_quota
    from .fleet.quota import QuotaUnavailable as QuotaUnavailable
    from .fleet.quota import RedisQuota as RedisQuota
    from .fleet.quota import RedisQuotaStatistics as RedisQuotaStatistics


def __getattr__(name: str) -> object:
    if name in _REDIS_NAMES:
        from .fleet import open as _redis_open
        from .fleet import quota as _redis_quota

        return getattr(_redis_open if name == "open_redis_quota" else _redis_quota, name)
    raise AttributeError(f"module 'trio_tts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_REDIS_NAMES])
