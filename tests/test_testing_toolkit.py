"""``trio_tts.testing`` as its users see it: fixtures, faults, the in-memory transport,
predicates and ``assert_quiescent``."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_tts
import trio_tts.testing as tt
from trio_tts.server import LocalServer, tone_pcm

PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=24000)
TEXT = "Exactly these words."


@pytest.fixture
def tts_pool_settings(tts_protocol: str) -> dict[str, Any]:
    # Rime's and ElevenLabs' default options are already raw 24 kHz PCM.
    return {"defaults": PCM} if tts_protocol == "inworld" else {}


async def speak(pool: trio_tts.Pool, text: str) -> bytes:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


# -- fixtures ----------------------------------------------------------------------------------


async def test_tcp_fixtures(tts_server: LocalServer, tts_pool: trio_tts.Pool) -> None:
    assert tts_server.host == "127.0.0.1" and tts_server.port > 0
    assert await speak(tts_pool, TEXT) == tone_pcm(TEXT, 24000)
    await tt.assert_quiescent(tts_pool)
    assert tts_server.statistics().connections_accepted == 1


async def test_memory_fixtures_run_in_exact_virtual_time(
    tts_memory_server: tt.MemoryServer,
    tts_memory_pool: trio_tts.Pool,
    autojump_clock: trio.testing.MockClock,
) -> None:
    tts_memory_server.faults.delay_first_audio = tt.DelayFirstAudio(1.5)
    start = trio.current_time()
    ctx = await tts_memory_pool.open_context()
    async with ctx:
        await ctx.send_text(TEXT, flush=True)
        await ctx.__anext__()
        assert trio.current_time() - start == pytest.approx(0.005 + 1.5, abs=1e-9)
    await tt.assert_quiescent(tts_memory_pool)


@pytest.mark.parametrize("tts_protocol", tt.PROTOCOLS, indirect=True)
async def test_protocol_parametrised_fixture(
    tts_protocol: str, tts_memory_pool: trio_tts.Pool
) -> None:
    assert tts_protocol in ("inworld", "rime", "elevenlabs", "cartesia")
    assert tts_memory_pool.provider.name == tts_protocol
    # ElevenLabs' context begins with its init message's text, one space.
    spoken = " " + TEXT if tts_protocol == "elevenlabs" else TEXT
    assert await speak(tts_memory_pool, TEXT) == tone_pcm(spoken, 24000)
    await tt.assert_quiescent(tts_memory_pool)


def test_protocols_are_named() -> None:
    assert tt.PROTOCOLS == ("inworld", "rime", "elevenlabs", "cartesia")
    with pytest.raises(ValueError, match="unknown protocol 'polly'"):
        tt.server_config_for("polly")


def test_the_plugin_is_opt_in() -> None:
    """No ``pytest11`` entry point: an installed entry-point plugin makes pytest rewrite the
    asserts of every module of the distribution, in every test run of every user."""
    eps = importlib.metadata.entry_points(group="pytest11")
    assert not any(ep.value.startswith("trio_tts") for ep in eps)
    assert tt.pytest_plugins == ["trio_tts.testing._plugin"]


def test_importing_the_toolkit_is_cheap() -> None:
    code = "import trio_tts.testing, sys; print('numpy' in sys.modules, 'hypercorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


APP_TEST = """
import pytest
import trio_tts
from trio_tts.testing import DropConnection, assert_quiescent


async def speak(pool, text):
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([e.data async for e in ctx if isinstance(e, trio_tts.Audio)])


async def test_speak_gets_all_audio(tts_memory_pool):
    assert await speak(tts_memory_pool, "Hello there.")
    await assert_quiescent(tts_memory_pool)


async def test_speak_reports_a_dropped_connection(tts_memory_server, tts_memory_pool):
    tts_memory_server.faults.drop = DropConnection(after_frames=3)
    with pytest.raises(trio_tts.ConnectionLost):
        await speak(tts_memory_pool, "A story long enough to be cut in the middle.")
    await assert_quiescent(tts_memory_pool)
"""


def test_an_application_test_with_the_plugin_opted_in(tmp_path: Path) -> None:
    """An application's tests, run as a user would: ``-p trio_tts.testing``."""
    (tmp_path / "test_app.py").write_text(textwrap.dedent(APP_TEST))
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "trio", "-p", "trio_tts.testing",
            "-o", "trio_mode=true", "-p", "no:cacheprovider", str(tmp_path)]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert "2 passed" in out.stdout, out.stdout + out.stderr


# -- predicates --------------------------------------------------------------------------------


def test_predicates() -> None:
    assert [tt.nth(3)(i) for i in range(5)] == [False, False, True, False, False]
    assert [tt.first(2)(i, "ctx") for i in range(4)] == [True, True, False, False]
    assert [tt.at(0, 3)(i) for i in range(5)] == [True, False, False, True, False]
    assert [tt.every(2, offset=1)(i) for i in range(6)] == [False, True, False, True, False, True]
    assert tt.always(7) and not tt.never(7)
    half, again = tt.fraction(0.5, seed=1), tt.fraction(0.5, seed=1)
    draws = [half(i) for i in range(1000)]
    assert 400 < sum(draws) < 600
    assert draws == [again(i) for i in range(1000)]  # reproducible from its seed
    with pytest.raises(ValueError):
        tt.nth(0)


# -- the in-memory transport frame by frame ----------------------------------------------------


async def test_memory_close_codes_abort_blackhole_and_timeouts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tt.open_memory_server() as server:
        url, headers = server.ws_url, [("Authorization", "Basic k")]
        create = '{"create": {"voiceId": "Ashley"}, "contextId": "c"}'

        server.faults = tt.Faults(close_connection=tt.CloseConnection(4001, "bye", after_frames=1))
        ws = await server.connect(url, headers)
        await ws.send(create)
        assert "contextCreated" in str(await ws.receive())
        with pytest.raises(trio_tts.ConnectionLost, match=r"code 4001\): bye$") as info:
            await ws.receive()
        assert info.value.code == 4001

        server.faults = tt.Faults(drop=tt.DropConnection(after_frames=1))
        ws = await server.connect(url, headers)
        await ws.send(create)
        await ws.receive()
        with pytest.raises(trio_tts.ConnectionLost, match="without a close frame") as info:
            await ws.receive()
        assert info.value.code == 1006

        server.faults = tt.Faults(blackhole=tt.BlackHole())
        ws = await server.connect(url, headers)
        await ws.send(create)
        with trio.move_on_after(5) as silent:
            await ws.receive()  # not even contextCreated
        assert silent.cancelled_caught
        with trio.move_on_after(5) as silent:
            await ws.ping()
        assert silent.cancelled_caught  # a black hole does not even answer pings
        await ws.aclose()

        server.faults = tt.Faults(no_answer=tt.NoHandshakeAnswer())
        start = trio.current_time()
        with pytest.raises(trio_tts.ConnectionLost, match=r"timed out after 2\.5s"):
            await server.connect(url, headers, handshake_timeout=2.5)
        assert trio.current_time() - start == 2.5

        server.faults = tt.Faults(reject=tt.RejectHandshake(429, retry_after=7))
        with pytest.raises(trio_tts.HandshakeRejected) as rejected:
            await server.connect(url, headers)
        assert (rejected.value.status, rejected.value.retry_after) == (429, 7.0)

        server.faults = tt.Faults(accept_then_close=tt.AcceptThenClose(1001, "later"))
        ws = await server.connect(url, headers)
        with pytest.raises(trio_tts.ConnectionLost) as info:
            await ws.receive()
        assert info.value.code == 1001
        stats = server.handshake_statistics()
        assert stats.started == 6 and stats.in_flight == 0
        # Every session ended when its client left, the silent ones included.
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().connections_open == 0


# -- assert_quiescent --------------------------------------------------------------------------


async def test_assert_quiescent_names_what_is_held(
    tts_memory_server: tt.MemoryServer,
    tts_memory_pool: trio_tts.Pool,
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctx = await tts_memory_pool.open_context()
    with pytest.raises(AssertionError, match=r"(?s)not quiescent after 0.5 s.*1 context slot"):
        await tt.assert_quiescent(tts_memory_pool, timeout=0.5)
    await ctx.aclose()
    await tt.assert_quiescent(tts_memory_pool)

    # A context moving to another connection is a task of the pool's: not at rest.
    tts_memory_server.faults.drop = tt.DropConnection(after_frames=0, connections=tt.at(0))
    moving = await tts_memory_pool.open_context()
    await trio.testing.wait_all_tasks_blocked()
    problems = tt.check_quiescent(tts_memory_pool)
    assert problems, problems
    await moving.aclose()
    await tt.assert_quiescent(tts_memory_pool)
