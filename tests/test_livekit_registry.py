"""The LiveKit plugins' registry of shared pools is bounded and holds no credential: a pool
leaves it when its last TTS closes, a loop's pools leave it with the loop (closed or
garbage), and pools are filed under digests, never under the raw API key."""

from __future__ import annotations

import asyncio
import gc
import re
import warnings
from collections.abc import Iterator

import pytest
from test_livekit_plugin import ServerThread, make_tts, run

import trio_tts
from bridges import livekit
from bridges._livekit_common import pool_key, shared_pool, shared_pool_count, shared_pool_keys

KEY = "registry-secret-KEY-5a6b7c"
OTHER = "registry-other-KEY-8d9e0f"


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread().running() as s:
        yield s


def test_a_pool_leaves_the_registry_with_its_last_tts_and_is_filed_by_digest(
    srv: ServerThread,
) -> None:
    async def main() -> None:
        first, second, other = (
            make_tts(srv, api_key=KEY),
            make_tts(srv, api_key=KEY),
            make_tts(srv, api_key=OTHER),
        )
        for t in (first, second, other):
            await t.pool()
        assert shared_pool_count() == 2  # the two TTSes with the same key share one pool
        keys = livekit.shared_pool_keys()
        assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys), keys
        for secret in (KEY, OTHER):
            assert secret not in repr(keys)
        await first.aclose()
        assert shared_pool_count() == 2
        await second.aclose()
        assert shared_pool_count() == 1
        await other.aclose()
        assert shared_pool_count() == 0 and shared_pool_keys() == []

    run(main)  # (which also checks the registry is empty at the end)


def test_pool_keys_are_equal_for_equal_parts_and_never_show_the_credential() -> None:
    key = pool_key(("wss://tts.example/ws",), KEY, {"max_connections": 20}, 8)
    assert key == pool_key(("wss://tts.example/ws",), KEY, {"max_connections": 20}, 8)
    assert KEY not in key and re.fullmatch(r"[0-9a-f]{64}", key)
    for changed in (
        pool_key(("wss://tts.example/ws",), OTHER, {"max_connections": 20}, 8),
        pool_key(("wss://tts.example/ws",), None, {"max_connections": 20}, 8),
        pool_key(("wss://other.example/ws",), KEY, {"max_connections": 20}, 8),
        pool_key(("wss://tts.example/ws",), KEY, {"max_connections": 5}, 8),
        pool_key(("wss://tts.example/ws",), KEY, {"max_connections": 20}, 0),
    ):
        assert changed != key


async def _register() -> None:
    """File a (never opened) shared pool under the running loop."""
    shared_pool(
        pool_key(("ws://127.0.0.1:9/ws",), KEY, {}, 8),
        lambda: trio_tts.InworldProvider(KEY, url="ws://127.0.0.1:9/ws"),
        lambda: None,
        {},
        8,
    )


def test_a_closed_loop_takes_its_pools_with_it() -> None:
    loop = asyncio.SelectorEventLoop()  # explicit: trio_asyncio's import swaps the policy
    try:
        loop.run_until_complete(_register())
        assert shared_pool_count() == 1
    finally:
        loop.close()
    assert shared_pool_count() == 0


def test_a_garbage_loop_takes_its_pools_with_it() -> None:
    loop = asyncio.SelectorEventLoop()  # explicit: trio_asyncio's import swaps the policy
    loop.run_until_complete(_register())
    assert shared_pool_count() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed event loop": on purpose
        del loop
        gc.collect()
    assert shared_pool_count() == 0
