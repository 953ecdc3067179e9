"""The API key never shows up in logs (DEBUG, every logger), exception text or reprs."""

from __future__ import annotations

import base64
import logging
import traceback
import urllib.parse

import pytest
import trio

import trio_tts
from trio_tts.server import ServerConfig, open_server

from helpers import PCM, turn

KEY = "c2stU0VDUkVULWtleS0xMjM0NTY3ODk6c2VjcmV0"  # what an Inworld Basic key looks like
WRONG = "d3Jvbmcta2V5LTk4NzY1NDMyMTpzZWNyZXQ="


def forms(secret: str) -> list[str]:
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        urllib.parse.quote(secret, safe=""),
        f"Basic {secret}",
        f"Bearer {secret}",
    ]


def exception_texts(exc: BaseException) -> str:
    seen: list[str] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None:
            continue
        seen += [str(e), repr(e), "".join(traceback.format_exception_only(type(e), e))]
        todo += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            todo += list(e.exceptions)
    return "\n".join(seen)


def assert_clean(text: str) -> None:
    for secret in (KEY, WRONG):
        for form in forms(secret):
            assert form not in text


async def test_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("", "trio_tts", "websockets", "trio-websocket", "hypercorn", "httpx"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts: list[str] = []
    async with open_server(ServerConfig(synthesizer="tone", api_key=KEY)) as server:
        good = trio_tts.InworldProvider(KEY, url=server.ws_url)
        bad = trio_tts.InworldProvider(WRONG, url=server.ws_url + "?key=" + WRONG)
        texts += [repr(good), str(good), repr(bad)]
        async with trio_tts.open_pool(good, defaults=PCM) as pool:
            assert await turn(pool, "the key stays secret.")
            ctx = await pool.open_context()
            texts += [repr(pool), repr(ctx), repr(pool.statistics())]
            await ctx.aclose()
        async with trio_tts.open_pool(bad, defaults=PCM) as pool:
            with pytest.raises(trio_tts.HandshakeRejected) as info:
                await pool.open_context()
            assert info.value.status == 401
            texts += [exception_texts(info.value), repr(pool)]
        # A connection refused at a URL carrying the key in its query.
        port = server.port
    refused = trio_tts.InworldProvider(KEY, url=f"ws://127.0.0.1:{port}/x?api_key={KEY}")
    async with trio_tts.open_pool(refused, connect_attempts=1) as pool:
        with pytest.raises(trio_tts.ConnectionLost) as lost:
            await pool.open_context()
        texts.append(exception_texts(lost.value))
    await trio.lowlevel.checkpoint()
    texts.append(caplog.text)
    texts += [r.getMessage() for r in caplog.records]
    assert any("401" in t for t in texts)  # the failure paths really ran and were reported
    assert any(r.name.startswith("trio_tts") for r in caplog.records)
    assert_clean("\n".join(texts))
