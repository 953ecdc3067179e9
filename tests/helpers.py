"""Helpers to drive turns through a pool against the local server."""

from __future__ import annotations

import trio

import trio_tts
from trio_tts.server import LocalServer, tone_pcm

RATE = 24000


def provider_for(server: LocalServer, api_key: str | None = None) -> trio_tts.InworldProvider:
    return trio_tts.InworldProvider(api_key, url=server.ws_url)


PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=RATE, timestamp_type="WORD")


def connection_of(pool: trio_tts.Pool, ctx: trio_tts.Context) -> int | None:
    """The connection holding ``ctx``'s slot, from the pool's own introspection."""
    return next((c.connection for c in pool.inspect().contexts if c.id == ctx.id), None)


def expected(text: str) -> bytes:
    return tone_pcm(text, RATE)


async def turn(pool: trio_tts.Pool, text: str, **kwargs: object) -> bytes:
    """One whole utterance: open, send, finish, read all audio, leave."""
    ctx = await pool.open_context(**kwargs)  # type: ignore[arg-type]
    async with ctx:
        await ctx.send_text(text)
        await ctx.finish()
        return b"".join([ev.data async for ev in ctx if isinstance(ev, trio_tts.Audio)])


async def wait_quiet(pool: trio_tts.Pool, server: LocalServer | None = None) -> None:
    """Wait until no slot is held (the server confirmed every close)."""
    with trio.fail_after(30):
        while pool.statistics().contexts_in_use or pool.inspect().leases_held:
            await trio.sleep(0.01)
        if server is not None:
            while server.statistics().contexts_open:
                await trio.sleep(0.01)
