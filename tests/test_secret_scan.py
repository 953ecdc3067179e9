"""Secret scan: a known key, every failure path, and the key must show up nowhere.

Each case opens a pool with the key (``Authorization: Basic <key>``) *and* the key in the
URL's query, with every logger at DEBUG (``trio-websocket``, ``websockets``, ``hypercorn``
included), makes one failure happen, and scans: every log record (message, arguments and
formatted traceback), ``str``/``repr``/traceback text of the raised exception and its
causes, contexts and group members, and the reprs of the pool, its statistics, the provider,
the options and the contexts — for the key raw, base64, URL-encoded (``quote``,
``quote_plus``), and after ``Basic `` / ``Bearer ``.
"""

from __future__ import annotations

import base64
import functools
import logging
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

import trio_tts
from trio_tts.server import (
    CloseConnection,
    ContextErrorFault,
    Faults,
    LocalServer,
    RejectHandshake,
    ServerConfig,
    open_server,
)
from trio_tts.testing import open_memory_server

KEY = "c2stU0NBTi1rZXktMTIzNDU2Nzg5OnNjYW4tc2VjcmV0+/="  # base64-ish, with URL-unsafe chars
OTHER = "b3RoZXIta2V5LWZvci10aGUtc2VydmVyOnNlY3JldA=="
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=24000)
LOGGERS = ("", "trio_tts", "trio-websocket", "trio_websocket", "websockets", "hypercorn",
           "hypercorn.error", "httpx", "httpcore", "trio_tts.server")  # fmt: skip


def forms(secret: str) -> list[str]:
    raw = [
        secret,
        base64.b64encode(secret.encode()).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    ]
    return [*raw, *(f"Basic {f}" for f in raw), *(f"Bearer {f}" for f in raw)]


def exception_texts(exc: BaseException) -> list[str]:
    seen: list[str] = []
    todo: list[BaseException | None] = [exc]
    visited: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in visited:
            continue
        visited.add(id(e))
        seen += [str(e), repr(e), "".join(traceback.format_exception(e))]
        seen += [repr(a) for a in e.args]
        todo += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            todo += list(e.exceptions)
    return seen


def assert_no_key(texts: list[str]) -> None:
    blob = "\n".join(texts)
    for form in forms(KEY):
        assert form not in blob, (
            f"the key leaked as {form[:12]}...: {blob[blob.find(form) - 200 :][:400]}"
        )


@pytest.fixture(autouse=True)
def debug_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in [*LOGGERS, *logging.Logger.manager.loggerDict]:
        logging.getLogger(name).setLevel(logging.DEBUG)


def provider(url: str) -> trio_tts.InworldProvider:
    return trio_tts.InworldProvider(KEY, url=f"{url}?key={urllib.parse.quote(KEY)}&k2={KEY}")


@asynccontextmanager
async def tcp_server(faults: Faults | None = None, api_key: str | None = KEY) -> AsyncIterator[str]:
    config = ServerConfig(synthesizer="tone", api_key=api_key, faults=faults or Faults())
    async with open_server(config) as server:
        yield server.ws_url


async def fail_once(
    url: str, *, memory: LocalServer | None = None, **settings: object
) -> list[str]:
    """Open a pool, run one turn that must fail, return every text to scan."""
    texts: list[str] = []
    prov = provider(url)
    texts += [repr(prov), str(prov), repr(PCM), str(PCM)]
    if memory is not None:
        settings["transport_factory"] = memory.connect  # type: ignore[attr-defined]
    with trio.fail_after(30):
        async with trio_tts.open_pool(
            prov,
            defaults=PCM,
            connect_attempts=2,
            **settings,  # type: ignore[arg-type]
        ) as pool:
            try:
                ctx = await pool.open_context()
                texts.append(repr(ctx))
                async with ctx:
                    await ctx.send_text("speak to fail.")
                    await ctx.finish()
                    async for _ in ctx:
                        texts.append(repr(ctx))
                raise AssertionError("the turn did not fail")
            except trio_tts.TTSError as exc:
                texts += exception_texts(exc)
            texts += [repr(pool), repr(pool.statistics()), repr(pool.inspect())]
    return texts


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), str(record.msg)]
        if record.exc_info and record.exc_info[1] is not None:
            texts += exception_texts(record.exc_info[1])
    return texts


Scenario = Callable[[], Awaitable[list[str]]]


async def _401() -> list[str]:
    async with tcp_server(api_key=OTHER) as url:
        return await fail_once(url)


async def _429() -> list[str]:
    async with tcp_server(Faults(reject=RejectHandshake(status=429, retry_after=0))) as url:
        return await fail_once(url)


async def _echo() -> list[str]:
    """A rejection whose body and headers echo the Authorization header and the query."""
    faults = Faults(reject=RejectHandshake(status=503, retry_after=0, echo=True))
    async with tcp_server(faults) as url:
        return await fail_once(url)


async def _tls() -> list[str]:
    """wss:// to a plain-text server: the TLS handshake fails."""
    async with tcp_server() as url:
        return await fail_once(url.replace("ws://", "wss://"))


async def _refused() -> list[str]:
    async with tcp_server() as url:
        pass  # the server is gone: its port refuses
    return await fail_once(url)


async def _context_error() -> list[str]:
    faults = Faults(context_error=ContextErrorFault(when=lambda i, c: True, message=f"bad {KEY}"))
    async with tcp_server(faults) as url:
        return await fail_once(url)


async def _close_reason() -> list[str]:
    faults = Faults(close_connection=CloseConnection(code=4001, reason=f"k={KEY}", after_frames=1))
    async with tcp_server(faults) as url:
        return await fail_once(url, move_attempts=1)


async def _memory_echo() -> list[str]:
    faults = Faults(reject=RejectHandshake(status=401, echo=True))
    config = ServerConfig(synthesizer="tone", api_key=KEY, faults=faults)
    async with open_memory_server(config) as server:
        return await fail_once(server.ws_url, memory=server)


async def _handshake_timeout() -> list[str]:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        texts = await fail_once(f"ws://127.0.0.1:{port}/x", handshake_timeout=0.2)
        nursery.cancel_scope.cancel()
    return texts


SCENARIOS: dict[str, Scenario] = {
    "401": _401,
    "429": _429,
    "rejection-echoes-the-key": _echo,
    "tls-error": _tls,
    "connection-refused": _refused,
    "context-error-echoes-the-key": _context_error,
    "close-reason-echoes-the-key": _close_reason,
    "memory-transport-401-echo": _memory_echo,
    "handshake-timeout": _handshake_timeout,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_the_key_appears_nowhere(name: str, caplog: pytest.LogCaptureFixture) -> None:
    texts = await SCENARIOS[name]()
    await trio.lowlevel.checkpoint()
    texts += log_texts(caplog)
    assert any(r.name.startswith("trio_tts") for r in caplog.records) or name == "401"
    assert_no_key(texts)


async def test_the_scan_would_see_a_leak(caplog: pytest.LogCaptureFixture) -> None:
    """The scanner itself works: a leaked key in any of its forms is found."""
    for form in forms(KEY):
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_key([f"... {form} ..."])
    logging.getLogger("trio_tts.test").debug("token %s", base64.b64encode(KEY.encode()).decode())
    with pytest.raises(AssertionError, match="leaked"):
        assert_no_key(log_texts(caplog))
