"""Test your application against a misbehaving TTS provider — deterministically and fast.

What ``trio.testing`` is to trio and ``httpx.MockTransport`` to httpx: a local speech server
you can script to fail in every way a real provider does, an in-memory transport that runs it
under ``MockClock`` with exact virtual times, pytest fixtures, and :func:`assert_quiescent`,
the check every test should end with::

    import trio_tts
    from trio_tts.server import Faults, DropConnection
    from trio_tts.testing import assert_quiescent, at

    async def test_reader_survives_a_dropped_connection(tts_memory_server, tts_memory_pool):
        tts_memory_server.faults.drop = DropConnection(after_frames=3, connections=at(0))
        with pytest.raises(trio_tts.ConnectionLost):
            await my_app.read_aloud(tts_memory_pool, "a long story ...")
        await assert_quiescent(tts_memory_pool)

Pieces:

* **Faults** — the rule classes of :mod:`trio_tts.server` (re-exported here) set on
  ``server.faults``; they compose (several at once) and trigger on predicates
  (:func:`nth`, :func:`first`, :func:`at`, :func:`every`, :func:`fraction`, ...).
* **In-memory transport** — :func:`open_memory_server` / :class:`MemoryServer`; pass
  ``transport_factory=server.connect`` to :func:`trio_tts.open_pool`.
* **Fixtures** — ``tts_server``, ``tts_memory_server``, ``tts_pool``, ``tts_memory_pool``,
  ``tts_protocol``, ``tts_server_config``, ``tts_pool_settings`` (see ``_plugin``): opt in
  with ``-p trio_tts.testing`` or ``pytest_plugins = ["trio_tts.testing"]``.
* :func:`assert_quiescent` / :func:`check_quiescent` — nothing held, nothing leaked.

Importing this module is cheap; the server (and numpy) load on first use of a server name.
:mod:`trio_tts.testing.redis_server` (a throwaway ``redis-server`` for the fleet-quota tests)
is test-only and never imported from here: import it by its full name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._predicates import always as always
from ._predicates import at as at
from ._predicates import every as every
from ._predicates import first as first
from ._predicates import fraction as fraction
from ._predicates import never as never
from ._predicates import nth as nth
from ._quiescent import assert_quiescent as assert_quiescent
from ._quiescent import check_quiescent as check_quiescent
from ._targets import PROTOCOLS as PROTOCOLS
from ._targets import provider_for as provider_for
from ._targets import server_config_for as server_config_for

if TYPE_CHECKING:
    from ..server import AcceptThenClose as AcceptThenClose
    from ..server import BadFrame as BadFrame
    from ..server import BlackHole as BlackHole
    from ..server import CloseAfterContexts as CloseAfterContexts
    from ..server import CloseConnection as CloseConnection
    from ..server import ContextErrorFault as ContextErrorFault
    from ..server import DelayFirstAudio as DelayFirstAudio
    from ..server import DropConnection as DropConnection
    from ..server import Faults as Faults
    from ..server import LocalServer as LocalServer
    from ..server import NoHandshakeAnswer as NoHandshakeAnswer
    from ..server import RejectHandshake as RejectHandshake
    from ..server import ServerConfig as ServerConfig
    from ..server import Stall as Stall
    from ..server import StallContext as StallContext
    from ..server import StrayAudio as StrayAudio
    from ..server import open_server as open_server
    from ..server import tone_pcm as tone_pcm
    from ._memory import HandshakeStatistics as HandshakeStatistics
    from ._memory import MemoryServer as MemoryServer
    from ._memory import MemoryTransport as MemoryTransport
    from ._memory import open_memory_server as open_memory_server

#: The pytest plugin's fixtures live here (pytest loads it along with this module).
pytest_plugins = ["trio_tts.testing._plugin"]

_FROM_SERVER = frozenset(
    {
        "AcceptThenClose", "BadFrame", "BlackHole", "CloseAfterContexts", "CloseConnection",
        "ContextErrorFault", "DelayFirstAudio", "DropConnection", "Faults", "LocalServer",
        "NoHandshakeAnswer", "RejectHandshake", "ServerConfig", "Stall", "StallContext",
        "StrayAudio", "open_server", "tone_pcm",
    }
)  # fmt: skip
_FROM_MEMORY = frozenset(
    {"HandshakeStatistics", "MemoryServer", "MemoryTransport", "open_memory_server"}
)


def __getattr__(name: str) -> Any:
    """Load the server-side names on first use (they need the ``server`` extra)."""
    if name in _FROM_SERVER:
        from .. import server

        return getattr(server, name)
    if name in _FROM_MEMORY:
        from . import _memory

        return getattr(_memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROTOCOLS",
    "AcceptThenClose",
    "BadFrame",
    "BlackHole",
    "CloseAfterContexts",
    "CloseConnection",
    "ContextErrorFault",
    "DelayFirstAudio",
    "DropConnection",
    "Faults",
    "HandshakeStatistics",
    "LocalServer",
    "MemoryServer",
    "MemoryTransport",
    "NoHandshakeAnswer",
    "RejectHandshake",
    "ServerConfig",
    "Stall",
    "StallContext",
    "StrayAudio",
    "always",
    "assert_quiescent",
    "at",
    "check_quiescent",
    "every",
    "first",
    "fraction",
    "never",
    "nth",
    "open_memory_server",
    "open_server",
    "provider_for",
    "server_config_for",
    "tone_pcm",
]
