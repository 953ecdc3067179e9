"""Shared fixtures: a real local server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trio_tts.server import LocalServer, ServerConfig, open_server

sys.path.insert(0, str(Path(__file__).parent))

# trio_tts.testing's fixtures (tts_server, tts_memory_pool, ...): the plugin is opt-in.
pytest_plugins = ["trio_tts.testing"]


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """A tone (deterministic audio) server with Inworld's limits."""
    async with open_server(ServerConfig(synthesizer="tone")) as srv:
        yield srv
