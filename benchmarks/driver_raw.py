"""Driver: the raw ceiling — the thinnest client on the same transport, no pool logic.

``trio_tts._core.transport`` (websockets' sans-io protocol over trio) and the same msgspec Inworld
codec, but no allocator, actors, replay or slot accounting: 20 connections opened up front,
worker ``w`` always uses connection ``w % 20`` behind a 5-slot semaphore, one reader task per
connection hands each audio chunk straight to the waiting worker. A lost connection fails its
open turns and is reopened.
"""

from __future__ import annotations

import os
import sys

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h
from driver_trio import OPTIONS

from trio_tts import ConnectionLost, InworldProvider, TTSError
from trio_tts._core.events import Audio, ContextClosed, ContextError
from trio_tts._core.transport import WebSocketTransport, connect


class _Open:
    __slots__ = ("done", "error", "turn")

    def __init__(self, turn: h.Turn) -> None:
        self.turn = turn
        self.done = trio.Event()
        self.error: str | None = None


class RawConnection:
    def __init__(self, url: str, provider: InworldProvider) -> None:
        self.url = url
        self.provider = provider
        self.slots = trio.Semaphore(h.CONTEXTS_PER_CONNECTION)
        self.codec = provider.new_codec()
        self.ws: WebSocketTransport | None = None
        self.ready = trio.Event()
        self.open: dict[str, _Open] = {}
        self.n = 0

    async def run(self) -> None:
        while True:
            self.codec = self.provider.new_codec()
            self.ws = await connect(self.url, self.provider.headers())
            self.ready.set()
            try:
                while True:
                    for ev in self.codec.receive(await self.ws.receive()):
                        o = self.open.get(ev.context_id)
                        if o is None:
                            continue
                        if isinstance(ev, Audio):
                            o.turn.audio(ev.data)
                        elif isinstance(ev, ContextClosed | ContextError):
                            if isinstance(ev, ContextError):
                                o.error = "ContextFailed"
                            del self.open[ev.context_id]
                            o.done.set()
            except ConnectionLost:
                self.ready = trio.Event()
                for o in self.open.values():
                    o.error = "ConnectionLost"
                    o.done.set()
                self.open.clear()

    async def turn(self, turn: h.Turn, sentences: list[str]) -> str | None:
        async with self.slots:
            await self.ready.wait()
            ws = self.ws
            assert ws is not None
            self.n += 1
            cid = f"raw{id(self)}-{self.n}"
            o = self.open[cid] = _Open(turn)
            c = self.codec
            try:
                for frame in c.create(cid, OPTIONS):
                    await ws.send(frame)
                for s in sentences:
                    for frame in c.send_text(cid, s):
                        await ws.send(frame)
                for frame in c.flush(cid) + c.close(cid):
                    await ws.send(frame)
            except ConnectionLost:
                self.open.pop(cid, None)
                return "ConnectionLost"
            await o.done.wait()
            return o.error


async def worker(run: h.Run, conns: list[RawConnection], w: int) -> None:
    conn = conns[w % len(conns)]
    n = 0
    while not run.stopping:
        turn, sentences = run.new_turn(w, n)
        n += 1
        try:
            with trio.fail_after(h.OPEN_TIMEOUT + 60):
                error = await conn.turn(turn, sentences)
        except (TTSError, trio.TooSlowError) as exc:
            run.done(turn, exc)
        else:
            run.done(turn, error)


async def clock(run: h.Run) -> None:
    await trio.sleep_until(trio.current_time() + (run.window_start - run.t0))
    run.mark_start()
    h.emit({"mark": "start"})
    await trio.sleep(run.scenario.duration)
    run.mark_end()
    h.emit({"mark": "end"})


async def main() -> None:
    args = h.parse_args()
    run = h.Run(args)
    provider = InworldProvider("bench", url=args.url)
    conns = [RawConnection(args.url, provider) for _ in range(h.MAX_CONNECTIONS)]
    async with trio.open_nursery() as outer:  # the connections' readers
        for c in conns:
            outer.start_soon(c.run)
        async with trio.open_nursery() as nursery:  # the workers and the window's clock
            nursery.start_soon(clock, run)
            for w in range(args.concurrency):
                nursery.start_soon(worker, run, conns, w)
        for c in conns:
            if c.ws is not None:
                await c.ws.aclose()
        outer.cancel_scope.cancel()
    h.emit(run.result("raw"))


if __name__ == "__main__":
    trio.run(main)
