"""The lean firehose server: the Inworld WebSocket protocol's benchmark subset, cheap to serve.

Why it exists: on this 2-core machine the client and the server share the CPU, and the full
``trio_tts.server`` (hypercorn's ASGI WebSocket path) spends ~10 ms of CPU per 70-message turn,
more than the clients it serves: it would be the bottleneck. This server keeps the parts of the
protocol the benchmark uses, with the local server's own codec and chunking, and serves each
audio frame as pre-built bytes (context id spliced in, WebSocket header prepended), writing
everything queued on a connection with one ``send_all``:

* ``create`` (→ ``contextCreated``; a 6th context on a connection → status 8, as the server),
  ``send_text`` (buffered; ``flush_context`` inside it flushes), ``flush_context`` (one
  generation, then ``flushCompleted``), ``close_context`` (the rest, then ``contextClosed``);
* the handshake with ``websockets``' sans-io ``ServerProtocol``; pings, close handshakes;
* faults: first-audio delay, pacing at N × real time, close with 1011 after the N-th context.

Audio and frames come from ``FirehoseSession``'s cache: byte for byte what ``trio_tts.server``
sends for the same text and config.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from trio_tts.server.inworld import proto

_LOG = logging.Logger("bench.lean", level=logging.CRITICAL + 1)


def _header(n: int) -> bytes:
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big")
    return bytes((0x81, 127)) + n.to_bytes(8, "big")


def text_frame(payload: str) -> bytes:
    data = payload.encode()
    return _header(len(data)) + data


class LeanCore:
    """Shared state: counters, the fault settings and the frame source."""

    def __init__(self, frames: Any, max_contexts: int = 5) -> None:
        self.frames = frames  # frames(config, text) -> [(head, tail)]
        self.max_contexts = max_contexts
        self.first_audio_delay = 0.0
        self.pace: float | None = None
        self.close_after: int | None = None
        self.chunk_ms = 200
        self.connections_accepted = 0
        self.connections_open = 0
        self.peak_connections = 0
        self.contexts_created = 0
        self.violations = 0
        self.open_at_drop: list[int] = []


class _Ctx:
    __slots__ = ("buffer", "config", "generations", "id", "inbox", "outbox")

    def __init__(self, cid: str, config: Any) -> None:
        self.id = cid
        self.config = config
        self.buffer = ""
        self.generations = 0
        self.outbox, self.inbox = trio.open_memory_channel[tuple[str, Any]](math.inf)


class LeanConnection:
    def __init__(self, core: LeanCore, stream: trio.SocketStream) -> None:
        self.core = core
        self.stream = stream
        self.protocol = ServerProtocol(logger=_LOG, max_size=2**24)
        self.contexts: dict[str, _Ctx] = {}
        self.creates = 0
        self.out: list[bytes] = []
        self.wake = trio.Event()
        self.closing = False

    def push(self, data: bytes) -> None:
        if not self.closing:
            self.out.append(data)
            self.wake.set()

    async def writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            while self.out:
                batch, self.out = self.out, []
                await self.stream.send_all(b"".join(batch))
            if self.closing:
                await trio.sleep(0.05)  # let the client read the close frame
                raise trio.BrokenResourceError

    async def run(self) -> None:
        core = self.core
        # Handshake.
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            self.protocol.receive_data(data)
            events = self.protocol.events_received()
            if events and isinstance(events[0], Request):
                self.protocol.send_response(self.protocol.accept(events[0]))
                await self.stream.send_all(b"".join(self.protocol.data_to_send()))
                break
        core.connections_accepted += 1
        core.connections_open += 1
        core.peak_connections = max(core.peak_connections, core.connections_open)
        try:
            async with trio.open_nursery() as nursery:  # the writer and one task per context
                self.nursery = nursery
                nursery.start_soon(self.writer)
                while True:
                    data = await self.stream.receive_some(262144)
                    if not data:
                        break
                    self.protocol.receive_data(data)
                    for ev in self.protocol.events_received():
                        if isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                            self.command(bytes(ev.data).decode())
                    if replies := self.protocol.data_to_send():
                        self.out.extend(r for r in replies if r)
                        self.wake.set()
                    if self.protocol.close_rcvd is not None:
                        break
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left (or reset the socket); so does this connection
        finally:
            core.connections_open -= 1
            await trio.aclose_forcefully(self.stream)

    def control(self, payload: str) -> None:
        self.push(text_frame(payload))

    def command(self, text: str) -> None:
        try:
            cmd = proto.decode_command(text)
        except proto.DecodeError as exc:
            self.control(proto.encode_error(3, str(exc)))
            return
        if isinstance(cmd, proto.Create):
            self.create(cmd)
            return
        ctx = self.contexts.get(cmd.context_id)
        if ctx is None:
            self.control(proto.encode_status(cmd.context_id, 5, "Context not found"))
            return
        if isinstance(cmd, proto.SendText):
            ctx.outbox.send_nowait(("text", (cmd.text, cmd.flush)))
        elif isinstance(cmd, proto.FlushContext):
            ctx.outbox.send_nowait(("flush", None))
        elif isinstance(cmd, proto.CloseContext | proto.CancelContext):
            ctx.outbox.send_nowait(("close", None))

    def create(self, cmd: Any) -> None:
        core = self.core
        self.creates += 1
        cid = cmd.context_id or f"ctx-{self.creates}"
        if len(self.contexts) >= core.max_contexts:
            core.violations += 1
            self.control(proto.encode_status(cid, 8, "Max contexts limit reached"))
            return
        ctx = _Ctx(cid, cmd)
        self.contexts[cid] = ctx
        core.contexts_created += 1
        self.control(proto.encode_context_created(cid, cmd))
        if core.close_after is not None and self.creates == core.close_after:
            core.open_at_drop.append(len(self.contexts))
            self.push(b"\x88\x02" + (1011).to_bytes(2, "big"))
            self.closing = True
            return
        self.nursery.start_soon(self.worker, ctx)

    async def worker(self, ctx: _Ctx) -> None:
        async for kind, arg in ctx.inbox:
            if kind == "text":
                text, flush = arg
                ctx.buffer += text
                if flush:
                    await self.generate(ctx)
            elif kind == "flush":
                await self.generate(ctx)
            else:
                if ctx.buffer.strip():
                    await self.generate(ctx, flushed=False)
                self.contexts.pop(ctx.id, None)
                self.control(proto.encode_context_closed(ctx.id))
                return

    async def generate(self, ctx: _Ctx, *, flushed: bool = True) -> None:
        text, ctx.buffer = ctx.buffer, ""
        core = self.core
        if text.strip():
            ctx.generations += 1
            frames = core.frames(ctx.config, text)
            if ctx.generations == 1 and core.first_audio_delay > 0:
                await trio.sleep(core.first_audio_delay)
            step = core.chunk_ms / 1000 / core.pace if core.pace else 0.0
            start = trio.current_time()
            cid = ctx.id.encode()
            for n, (head, tail) in enumerate(frames):
                if step:
                    await trio.sleep_until(start + n * step)
                self.push(_header(len(head) + len(cid) + len(tail)) + head + cid + tail)
        if flushed:
            self.control(proto.encode_flush_completed(ctx.id))


async def serve_lean(
    core: LeanCore, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        try:
            await LeanConnection(core, stream).run()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # reset during the handshake

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:  # the listener's connection handlers
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(port)
