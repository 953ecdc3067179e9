"""The pool's live view (``metrics_port``) and ``trio-tts top``, which draws it: a real pool
serving its endpoint on 127.0.0.1, read over HTTP and by the real console script."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

import trio_tts
from trio_tts._core.live import percentile
from trio_tts.cli.top import endpoint_url, render
from trio_tts.otel import OpenTelemetry
from trio_tts.server import ServerConfig, open_server

PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=24000)
KEY = "dG9wLXNlY3JldC1rZXk6c2hvdWxkLW5vdC1sZWFr"
_SCRIPT = Path(sys.executable).parent / "trio-tts"
TOP = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "trio_tts.cli"]


async def turn(pool: trio_tts.Pool[trio_tts.VoiceOptions]) -> None:
    ctx = await pool.open_context()
    async with ctx:
        await ctx.send_text("Hello there.")
        await ctx.finish()
        async for _ in ctx:
            pass


@asynccontextmanager
async def busy_pool() -> AsyncIterator[trio_tts.Pool[trio_tts.VoiceOptions]]:
    """A pool (2 connections × 2 slots) after 3 turns, with 4 contexts held and 1 caller
    waiting; its provider has a key, also in the URL's query."""
    with trio.fail_after(30):
        async with (
            open_server(ServerConfig(synthesizer="tone", api_key=KEY)) as server,
            trio_tts.open_pool(
                trio_tts.InworldProvider(KEY, url=f"{server.ws_url}?key={KEY}"),
                defaults=PCM,
                max_connections=2,
                contexts_per_connection=2,
                metrics_port=0,
                telemetry=OpenTelemetry(),  # beside the live view: both observe the pool
            ) as pool,
            trio.open_nursery() as nursery,
        ):
            for _ in range(3):
                await turn(pool)
            held = [await pool.open_context() for _ in range(4)]
            nursery.start_soon(turn, pool)
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().waiting == 1
            yield pool
            for ctx in held:
                await ctx.aclose()


async def test_the_endpoint_serves_the_live_view() -> None:
    async with busy_pool() as pool, httpx.AsyncClient() as client:
        url = pool.metrics_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert KEY not in response.text and "key=" not in response.text
        doc = response.json()
        assert doc["provider"] == "inworld" and doc["closed"] is False
        stats = doc["statistics"]
        assert (stats["contexts_in_use"], stats["waiting"], stats["connections_open"]) == (4, 1, 2)
        assert stats == attrs.asdict(pool.statistics())
        assert sorted(c["contexts"] for c in doc["connections"]) == [2, 2]
        assert doc["contexts"] == {"open": 4}
        ttfa = doc["ttfa"]
        assert ttfa["count"] == 3 and ttfa["window"] == 60.0
        assert 0 < ttfa["p50"] <= ttfa["p99"]
        assert (await client.get(url + "other")).status_code == 404
        assert (await client.post(url)).status_code == 405
    assert pool.metrics_url is None  # closed with the pool
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(url)


async def test_top_once_prints_one_frame() -> None:
    async with busy_pool() as pool:
        url = pool.metrics_url
        assert url is not None
        port = url.rsplit(":", 1)[1].strip("/")
        result = await trio.run_process(
            [*TOP, "top", "--once", port], capture_stdout=True, capture_stderr=True, check=False
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == f"trio-tts top — inworld pool (open) at {url}"
    assert lines[2].startswith("connections    2 / 2     open 2  connecting 0  draining 0")
    assert lines[3].startswith("slots          4 / 4     [##############################]")
    assert lines[4] == "waiters        1"
    assert lines[5].startswith("TTFA        p50 ") and "(3 context(s) in the last 60 s)" in out
    assert lines[6].startswith("contexts    opened 7  moved 0  (open 4)")
    rows = [line.split()[:3] for line in lines[9:]]
    assert rows == [["#1", "open", "2/2"], ["#2", "open", "2/2"]]


async def test_top_redraws_until_interrupted() -> None:
    async with busy_pool() as pool:
        assert pool.metrics_url is not None
        process = await trio.lowlevel.open_process(
            [*TOP, "top", "--interval", "0.05", pool.metrics_url], stdout=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            seen = b""
            while seen.count(b"TTFA") < 2:  # two frames drawn
                seen += await process.stdout.receive_some()
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert b"\x1b" not in seen  # not a terminal: frames follow each other, no escape codes


async def test_top_reports_an_unreachable_endpoint() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there any more
    result = await trio.run_process(
        [*TOP, "top", "--once", str(port)], capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"trio-tts: error: cannot read the pool's metrics endpoint at "
        f"http://127.0.0.1:{port}/ (connection refused)\n"
    )


def test_render_draws_a_document() -> None:
    stats = {
        "connections": 2, "connections_connecting": 1, "connections_open": 1,
        "connections_draining": 0, "contexts_in_use": 3, "contexts_closing": 1, "waiting": 0,
        "max_connections": 4, "contexts_per_connection": 5, "connections_opened": 3,
        "connections_failed": 1, "contexts_opened": 42, "contexts_moved": 2,
    }  # fmt: skip
    doc: dict[str, Any] = {
        "provider": "inworld",
        "closed": False,
        "statistics": stats,
        "connections": [
            {"id": 1, "state": "open", "contexts": 3, "frames_sent": 40, "frames_received": 900},
            {"id": 3, "state": "connecting", "contexts": 0, "frames_sent": 0, "frames_received": 0},
        ],
        "contexts": {"open": 2, "finishing": 1},
        "ttfa": {"window": 60.0, "count": 40, "p50": 0.1524, "p99": 0.4101},
    }
    assert render(doc, "http://127.0.0.1:9464/").splitlines() == [
        "trio-tts top — inworld pool (open) at http://127.0.0.1:9464/",
        "",
        "connections    2 / 4     open 1  connecting 1  draining 0   (opened 3, failed 1)",
        "slots          3 / 20    [####..........................]  closing 1",
        "waiters        0",
        "TTFA        p50 152 ms  p99 410 ms  (40 context(s) in the last 60 s)",
        "contexts    opened 42  moved 2  (finishing 1, open 2)",
        "",
        "  conn  state       slots  frames in / out",
        "  #1    open         3/5        900 / 40",
        "  #3    connecting   0/5          0 / 0",
    ]
    empty = {**doc, "connections": [], "contexts": {}, "ttfa": {**doc["ttfa"], "p50": None}}
    frame = render(empty, "u")
    assert "p50 -  p99 410 ms" in frame and "(none held)" in frame
    assert frame.endswith("(no connection)")


def test_endpoint_urls() -> None:
    assert endpoint_url("9464") == "http://127.0.0.1:9464/"
    assert endpoint_url("10.0.0.2:9464") == "http://10.0.0.2:9464/"
    assert endpoint_url("http://h:1/") == "http://h:1/"


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert (percentile(ordered, 0.5), percentile(ordered, 0.99)) == (50.0, 99.0)
    assert percentile([0.2], 0.99) == 0.2 and percentile([], 0.5) is None


@pytest.mark.parametrize("port", [-1, 65536, True, "9464", 1.5])
def test_metrics_port_is_validated(port: object) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=r"^metrics_port: .* must be a port"):
        trio_tts.PoolSettings(metrics_port=port)  # type: ignore[arg-type]
