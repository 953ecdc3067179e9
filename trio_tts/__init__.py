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
from .protocols import Provider as Provider
from .protocols.inworld import InworldProvider as InworldProvider

__version__ = "0.1.0"
