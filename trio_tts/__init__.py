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

from ._context import Context as Context
from ._context import ContextState as ContextState
from ._errors import CapacityTimeout as CapacityTimeout
from ._errors import ConnectionLost as ConnectionLost
from ._errors import ContextFailed as ContextFailed
from ._errors import HandshakeRejected as HandshakeRejected
from ._errors import InvalidOptions as InvalidOptions
from ._errors import PoolClosed as PoolClosed
from ._errors import ProtocolError as ProtocolError
from ._errors import SlowConsumer as SlowConsumer
from ._errors import TTSError as TTSError
from ._events import Audio as Audio
from ._events import FlushCompleted as FlushCompleted
from ._events import WordTiming as WordTiming
from ._options import AudioEncoding as AudioEncoding
from ._options import TimestampType as TimestampType
from ._options import VoiceOptions as VoiceOptions
from ._pool import Pool as Pool
from ._pool import PoolStatistics as PoolStatistics
from ._pool import open_pool as open_pool
from ._quota import Lease as Lease
from ._quota import LocalQuota as LocalQuota
from ._quota import Quota as Quota
from ._quota import QuotaStatistics as QuotaStatistics
from ._text import split_text as split_text
from .protocols import ClientCodec as ClientCodec
from .protocols import Options as Options
from .protocols import Provider as Provider
from .protocols.inworld import InworldProvider as InworldProvider
from .protocols.rime import RimeOptions as RimeOptions
from .protocols.rime import RimeProvider as RimeProvider

__version__ = "0.1.0"

# The fleet quota needs the optional ``redis`` extra (coredis): imported on first use.
_REDIS_NAMES = ("QuotaUnavailable", "RedisQuota", "RedisQuotaStatistics", "open_redis_quota")

if _TYPE_CHECKING:
    from ._redis_open import open_redis_quota as open_redis_quota
    from ._redis_quota import QuotaUnavailable as QuotaUnavailable
    from ._redis_quota import RedisQuota as RedisQuota
    from ._redis_quota import RedisQuotaStatistics as RedisQuotaStatistics


def __getattr__(name: str) -> object:
    if name in _REDIS_NAMES:
        from . import _redis_open, _redis_quota

        return getattr(_redis_open if name == "open_redis_quota" else _redis_quota, name)
    raise AttributeError(f"module 'trio_tts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_REDIS_NAMES])
