"""The pytest plugin: fixtures for a local speech server and a pool wired to it.

Opt-in: ``-p trio_tts.testing`` on the command line, ``addopts = "-p trio_tts.testing"``
in the pytest configuration, or ``pytest_plugins = ["trio_tts.testing"]`` in the top
``conftest.py``. (There is deliberately no ``pytest11`` entry point: pytest rewrites the
asserts of every module of a distribution that registers one, in every test run of every
user.) Loading it imports nothing heavy: the server (and numpy) are imported when a fixture
is first used.

Fixtures (all function-scoped; the async ones need a trio test, e.g. ``trio_mode = true``):

``tts_protocol``
    ``"inworld"``; parametrise it (``indirect=True``) to run a test per protocol. Protocols
    the local server does not speak yet (Rime) skip.
``tts_server_config``
    the :class:`~trio_tts.server.ServerConfig` (tone synthesiser: exact, free audio).
    Override the fixture to change limits or set faults from the start.
``tts_server``
    a :class:`~trio_tts.server.LocalServer` on 127.0.0.1, port 0 (real sockets).
``tts_memory_server``
    a :class:`~trio_tts.testing.MemoryServer`: the same server in memory (no sockets;
    exact under ``MockClock``).
``tts_pool_settings``
    ``{}``: keyword settings for :func:`trio_tts.open_pool`; override to change them.
``tts_pool`` / ``tts_memory_pool``
    an open :class:`~trio_tts.Pool` wired to ``tts_server`` / ``tts_memory_server``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

import trio_tts

from ._targets import provider_for, server_config_for

if TYPE_CHECKING:
    from ..server import LocalServer, ServerConfig
    from ._memory import MemoryServer

__all__ = [
    "tts_memory_pool",
    "tts_memory_server",
    "tts_pool",
    "tts_pool_settings",
    "tts_protocol",
    "tts_server",
    "tts_server_config",
]


@pytest.fixture
def tts_protocol(request: pytest.FixtureRequest) -> str:
    """The protocol under test: ``"inworld"`` unless parametrised (``indirect=True``) with
    another protocol (``"rime"``, ``"elevenlabs"``, ``"cartesia"``). An unknown name raises
    ``ValueError``."""
    protocol: str = getattr(request, "param", "inworld")
    server_config_for(protocol)  # validates the name
    return protocol


@pytest.fixture
def tts_server_config(tts_protocol: str) -> ServerConfig:
    """The local server's configuration (override this fixture to change it)."""
    return server_config_for(tts_protocol)


@pytest.fixture
async def tts_server(tts_server_config: ServerConfig) -> AsyncIterator[LocalServer]:
    """A local server on 127.0.0.1, port 0 (real TCP sockets)."""
    from ..server import open_server

    async with open_server(tts_server_config) as server:
        yield server


@pytest.fixture
async def tts_memory_server(tts_server_config: ServerConfig) -> AsyncIterator[MemoryServer]:
    """The local server in memory: no sockets, deterministic under ``MockClock``."""
    from ._memory import open_memory_server

    async with open_memory_server(tts_server_config) as server:
        yield server


@pytest.fixture
def tts_pool_settings() -> dict[str, Any]:
    """Keyword settings for :func:`trio_tts.open_pool` (override to change them)."""
    return {}


@pytest.fixture
async def tts_pool(
    tts_server: LocalServer, tts_protocol: str, tts_pool_settings: dict[str, Any]
) -> AsyncIterator[trio_tts.Pool]:
    """A pool wired to ``tts_server`` over TCP."""
    provider = provider_for(tts_server, tts_protocol)
    async with trio_tts.open_pool(provider, **tts_pool_settings) as pool:
        yield pool


@pytest.fixture
async def tts_memory_pool(
    tts_memory_server: MemoryServer, tts_protocol: str, tts_pool_settings: dict[str, Any]
) -> AsyncIterator[trio_tts.Pool]:
    """A pool wired to ``tts_memory_server`` through the in-memory transport."""
    provider = provider_for(tts_memory_server, tts_protocol)
    settings = {"transport_factory": tts_memory_server.connect, **tts_pool_settings}
    async with trio_tts.open_pool(provider, **settings) as pool:
        yield pool
