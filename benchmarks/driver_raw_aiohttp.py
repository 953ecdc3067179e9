"""Driver: the raw aiohttp client — a single-purpose asyncio client with no pooling logic.

Runs in ``benchmarks/.venv-livekit`` (aiohttp, no trio): the reference issue 19's targets are
set against, next to LiveKit 1.8.3's pool. 20 aiohttp WebSockets opened up front, worker ``w``
always uses connection ``w % 20`` behind a 5-slot semaphore; each turn sends its frames
straight from the worker (``create``, 3 ``send_text``, ``flush_context``, ``close_context``,
the JSON LiveKit sends), and one reader task per connection decodes each frame with
``json.loads`` + ``base64.b64decode`` and hands the audio to the turn (same integrity checks as
every driver). A lost connection fails its open turns and is reopened; nothing is retried.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h

CREATE = {
    "voiceId": h.VOICE,
    "modelId": "inworld-tts-1.5-max",
    "audioConfig": {
        "audioEncoding": "PCM",
        "sampleRateHertz": h.RATE,
        "bitrate": 64000,
        "speakingRate": 1.0,
    },
    "temperature": 1.0,
    "timestampType": "WORD",
}


class _Open:
    __slots__ = ("done", "error", "turn")

    def __init__(self, turn: h.Turn) -> None:
        self.turn = turn
        self.done = asyncio.get_running_loop().create_future()
        self.error: str | None = None


class RawConnection:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.slots = asyncio.Semaphore(h.CONTEXTS_PER_CONNECTION)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ready = asyncio.Event()
        self.open: dict[str, _Open] = {}
        self.n = 0

    def _end(self, o: _Open, error: str | None) -> None:
        o.error = error
        if not o.done.done():
            o.done.set_result(None)

    async def run(self) -> None:
        while True:
            try:
                self.ws = await self.session.ws_connect(
                    self.url, headers={"Authorization": "Basic bench"}
                )
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.05)
                continue
            self.ready.set()
            try:
                await self._read(self.ws)
            finally:
                self.ready = asyncio.Event()
                for o in self.open.values():
                    self._end(o, "ConnectionLost")
                self.open.clear()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return  # closed, closing or an error: the connection is gone
            result = json.loads(msg.data).get("result")
            if result is None:
                continue
            cid = result.get("contextId")
            o = self.open.get(cid)
            if o is None:
                continue
            chunk = result.get("audioChunk")
            if chunk is not None:
                content = chunk.get("audioContent")
                if content:
                    o.turn.audio(base64.b64decode(content))
                continue
            status = result.get("status")
            if status is not None and status.get("code", 0) != 0:
                del self.open[cid]
                self._end(o, "ContextFailed")
            elif "contextClosed" in result:
                del self.open[cid]
                self._end(o, None)

    async def turn(self, turn: h.Turn, sentences: list[str]) -> str | None:
        async with self.slots:
            await self.ready.wait()
            ws = self.ws
            assert ws is not None
            self.n += 1
            cid = f"raw{id(self)}-{self.n}"
            o = self.open[cid] = _Open(turn)
            try:
                await ws.send_str(json.dumps({"create": CREATE, "contextId": cid}))
                for s in sentences:
                    await ws.send_str(json.dumps({"send_text": {"text": s}, "contextId": cid}))
                await ws.send_str(json.dumps({"flush_context": {}, "contextId": cid}))
                await ws.send_str(json.dumps({"close_context": {}, "contextId": cid}))
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                self.open.pop(cid, None)
                return "ConnectionLost"
            await o.done
            return o.error


async def worker(run: h.Run, conns: list[RawConnection], w: int) -> None:
    conn = conns[w % len(conns)]
    n = 0
    while not run.stopping:
        turn, sentences = run.new_turn(w, n)
        n += 1
        try:
            error = await asyncio.wait_for(conn.turn(turn, sentences), h.OPEN_TIMEOUT + 60)
        except TimeoutError as exc:
            run.done(turn, exc)
        else:
            run.done(turn, error)


async def clock(run: h.Run) -> None:
    await asyncio.sleep(run.window_start - time.perf_counter())
    run.mark_start()
    h.emit({"mark": "start"})
    await asyncio.sleep(run.scenario.duration)
    run.mark_end()
    h.emit({"mark": "end"})


async def main() -> None:
    args = h.parse_args()
    run = h.Run(args)
    async with aiohttp.ClientSession() as session:
        conns = [RawConnection(session, args.url) for _ in range(h.MAX_CONNECTIONS)]
        readers = [asyncio.create_task(c.run()) for c in conns]
        try:
            await asyncio.gather(
                clock(run), *(worker(run, conns, w) for w in range(args.concurrency))
            )
        finally:
            for t in readers:
                t.cancel()
            for c in conns:
                if c.ws is not None:
                    await c.ws.close()
    h.emit(run.result("raw-aiohttp"))


if __name__ == "__main__":
    asyncio.run(main())
