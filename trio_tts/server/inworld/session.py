"""One WebSocket connection of the local server: its contexts, their synthesis, its sender.

Tasks, all in the session's nursery (it lives exactly as long as the WebSocket):

* the **reader** (the session's own task) decodes client frames and applies them to the
  context table synchronously: create/cancel and every error reply are decided here, and
  work for a context is handed to that context's worker through an unbounded channel, so
  the reader never waits on synthesis or on the socket;
* one **worker** per context buffers its text, synthesises generations and queues their
  frames; contexts are independent, so a long synthesis never holds up another context;
* the **sender** is the only task that writes to the socket. It drains one FIFO of frames
  (so per-context order is kept), applies the frame-count faults, and drops queued audio of
  a cancelled context. Audio frames hold a token of a per-connection budget until sent:
  that is the back-pressure from a slow client to the workers (control frames need none).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs
import trio

from .._codecs import COMPRESSED, StreamEncoder, synthesis_rate
from .._core import Core
from .._speech import Speech
from . import proto
from .chunks import audio_frames, closing_frame
from .config_rules import ConfigError, updated, validated
from .session_faults import SenderFaults

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*(\s+|$)")
_DEFAULT_AUTO_THRESHOLD = 250
#: A stray audio chunk: 10 ms of a constant sample, recognisable in any stream it lands in.
_STRAY_PCM = b"\x11\x11" * 160


class _ContextEnded(Exception):
    """Raised inside a context's worker when the context failed and its slot was released."""


@attrs.define(eq=False)
class _Out:
    frame: str | bytes
    context: _Context | None = None
    audio: bool = False
    close: tuple[int, str] | None = None


@attrs.define(eq=False)
class _Context:
    id: str
    config: proto.Create
    index: int
    send: trio.MemorySendChannel[tuple[str, Any]]
    receive: trio.MemoryReceiveChannel[tuple[str, Any]]
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    closing: bool = False
    cancelled: bool = False
    generations: int = 0
    buffer: str = ""
    deadline: float = math.inf
    audio_frames: int = 0
    #: The context's one compressed stream (MP3, OGG_OPUS, FLAC), from its first audio on.
    encoder: StreamEncoder | None = None


class Session(SenderFaults):
    """Serves one accepted WebSocket until the client leaves or a fault ends it."""

    def __init__(
        self, core: Core, index: int, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        self.core = core
        self.config = core.config
        self.index = index
        self.scope = scope
        self._receive = receive
        self._send = send
        self.contexts: dict[str, _Context] = {}
        self.creates = 0
        self.frames_sent = 0
        self._bad_frame_sent = False
        self._last_activity = trio.current_time()
        self._out_send, self._out_receive = trio.open_memory_channel[_Out](math.inf)
        self._budget = trio.Semaphore(32)
        # Fault state: the in-memory transport's link (None under hypercorn), a black hole,
        # and each DropConnection rule's frame count for this connection.
        self._link: Any = scope.get("trio_tts.link")
        self._blackholed = False
        self._drop_at: tuple[object, int] | None = None

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Queue a close frame after what is already queued (graceful server shutdown)."""
        self._out_send.send_nowait(_Out("", close=(code, reason)))

    async def run(self) -> None:
        self.core.sessions.add(self)
        try:
            # Lives as long as the WebSocket: sender, watchdog and one worker per context.
            # The sender cancels it to end the session (close frame or dropped socket).
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sender)
                nursery.start_soon(self._watchdog)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self.core.sessions.discard(self)
            self.core.contexts_open -= len(self.contexts)
            self.contexts.clear()

    # -- reading -------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            self._last_activity = trio.current_time()
            if self._blackholed:
                continue  # read and ignored: nothing comes back from a black hole
            text = message.get("text")
            if text is None:
                self._control(
                    proto.encode_error(3, "binary frames are not supported; send JSON text")
                )
                continue
            try:
                command = proto.decode_command(text)
            except proto.DecodeError as exc:
                if exc.context_id is not None:
                    self._control(proto.encode_status(exc.context_id, 3, str(exc)))
                else:
                    self._control(proto.encode_error(3, str(exc)))
                continue
            self._dispatch(command)

    def _control(self, frame: str, context: _Context | None = None) -> None:
        self._out_send.send_nowait(_Out(frame, context))

    def _dispatch(self, command: proto.Command) -> None:
        if isinstance(command, proto.Create):
            self._create(command)
            return
        cid = command.context_id
        ctx = self.contexts.get(cid)
        op = {
            proto.SendText: "sendText", proto.FlushContext: "flushContext",
            proto.CloseContext: "closeContext", proto.CancelContext: "cancelContext",
            proto.UpdateConfig: "updateConfig",
        }[type(command)]  # fmt: skip
        if ctx is None:
            self._control(proto.encode_status(cid, 5, f"Context {cid} not found during {op}"))
            return
        if isinstance(command, proto.CancelContext):
            self._cancel(ctx)
            return
        if ctx.closing:
            self._control(proto.encode_status(cid, 9, f"Context {cid} is closing"))
            return
        if isinstance(command, proto.SendText):
            if len(command.text) > self.config.max_text_chars:
                self.core.violation(
                    f"connection {self.index}: send_text of {len(command.text)} characters "
                    f"(limit {self.config.max_text_chars})"
                )
                self._control(proto.encode_status(
                    cid, 3, f"Text exceeds the maximum of {self.config.max_text_chars} characters"
                ))  # fmt: skip
                return
            ctx.send.send_nowait(("text", (command.text, command.flush)))
        elif isinstance(command, proto.FlushContext):
            ctx.send.send_nowait(("flush", None))
        elif isinstance(command, proto.CloseContext):
            ctx.closing = True
            ctx.send.send_nowait(("close", None))
        else:
            try:
                ctx.config = updated(
                    ctx.config, command.changes, audio_started=ctx.encoder is not None
                    or ctx.audio_frames > 0,
                )  # fmt: skip
            except ConfigError as exc:
                self._control(proto.encode_status(cid, exc.code, str(exc)))
                return
            self._control(proto.encode_context_updated(cid), ctx)

    def _create(self, command: proto.Create) -> None:
        index = self.creates
        self.creates += 1
        cid = command.context_id or f"ctx-{self.index}-{index}"
        if cid in self.contexts:
            self._control(proto.encode_status(cid, 6, f"Context {cid} already exists"))
            return
        if len(self.contexts) >= self.config.max_contexts_per_connection:
            self.core.violation(
                f"connection {self.index}: context {len(self.contexts) + 1} "
                f"(limit {self.config.max_contexts_per_connection})"
            )
            self._control(proto.encode_status(cid, 8, "Max contexts limit reached"))
            return
        try:
            config = validated(command)
        except ConfigError as exc:
            self._control(proto.encode_status(cid, exc.code, str(exc)))
            return
        fault = self.core.faults.context_error
        if (
            fault is not None and not fault.after_audio and fault.connections(self.index)
            and fault.when(index, cid)
        ):  # fmt: skip
            self._control(proto.encode_status(cid, fault.code, fault.message))
            return
        send, receive = trio.open_memory_channel[tuple[str, Any]](math.inf)
        ctx = _Context(cid, config, index, send, receive)
        self.contexts[cid] = ctx
        self.core.contexts_created += 1
        self.core.contexts_open += 1
        self.core.peak_contexts_per_connection = max(
            self.core.peak_contexts_per_connection, len(self.contexts)
        )
        self._control(proto.encode_context_created(cid, config), ctx)
        close = self.core.faults.close
        if (
            close is not None
            and close.connections(self.index)
            and self.creates == close.after_contexts
        ):
            self._out_send.send_nowait(_Out("", close=(close.code, close.reason)))
        stray = self.core.faults.stray_audio
        if (
            stray is not None and stray.kind == "unknown" and stray.connections(self.index)
            and stray.when(index, cid)
        ):  # fmt: skip
            self._control(proto.encode_audio_chunk(f"stray-{cid}", _STRAY_PCM))
        self._nursery.start_soon(self._worker, ctx)

    def _release(self, ctx: _Context) -> None:
        if self.contexts.get(ctx.id) is ctx:
            del self.contexts[ctx.id]
            self.core.contexts_open -= 1

    def _cancel(self, ctx: _Context) -> None:
        ctx.cancelled = True
        ctx.cancel_scope.cancel()
        self._release(ctx)
        self._control(proto.encode_context_closed(ctx.id))

    # -- a context's worker --------------------------------------------------------------------

    async def _worker(self, ctx: _Context) -> None:
        try:
            await self._work(ctx)
        finally:
            if ctx.encoder is not None:
                ctx.encoder.close()  # idempotent; after a cancel its bytes are dropped

    async def _work(self, ctx: _Context) -> None:
        with ctx.cancel_scope, contextlib.suppress(_ContextEnded):
            while True:
                with trio.move_on_at(ctx.deadline):
                    kind, arg = await ctx.receive.receive()
                    if kind == "text":
                        text, flush = arg
                        self._buffer(ctx, text)
                        if flush:
                            await self._generate(ctx, self._take(ctx, len(ctx.buffer)))
                        else:
                            await self._auto_flush(ctx)
                    elif kind == "flush":
                        await self._generate(ctx, self._take(ctx, len(ctx.buffer)))
                    else:  # close
                        if ctx.buffer.strip():
                            await self._generate(
                                ctx, self._take(ctx, len(ctx.buffer)), flushed=False
                            )
                        end = closing_frame(ctx.id, ctx.encoder, ctx.config.model_id)
                        if end is not None:
                            await self._budget.acquire()
                            self._out_send.send_nowait(_Out(end, ctx, audio=True))
                        self._release(ctx)
                        self._control(proto.encode_context_closed(ctx.id), ctx)
                        stray = self.core.faults.stray_audio
                        if (
                            stray is not None and stray.kind == "closed"
                            and stray.connections(self.index) and stray.when(ctx.index, ctx.id)
                        ):  # fmt: skip
                            self._control(proto.encode_audio_chunk(ctx.id, _STRAY_PCM))
                        return
                    continue
                # maxBufferDelayMs passed since the oldest buffered text arrived.
                await self._generate(ctx, self._take(ctx, len(ctx.buffer)))

    def _fail(self, ctx: _Context, code: int, message: str) -> NoReturn:
        self._release(ctx)
        self._control(proto.encode_status(ctx.id, code, message), ctx)
        raise _ContextEnded

    def _buffer(self, ctx: _Context, text: str) -> None:
        if not ctx.buffer and ctx.config.max_buffer_delay_ms:
            ctx.deadline = trio.current_time() + ctx.config.max_buffer_delay_ms / 1000
        ctx.buffer += text

    @staticmethod
    def _take(ctx: _Context, n: int) -> str:
        text, ctx.buffer = ctx.buffer[:n], ctx.buffer[n:]
        if not ctx.buffer:
            ctx.deadline = math.inf
        return text

    async def _auto_flush(self, ctx: _Context) -> None:
        """``autoMode``/``bufferCharThreshold``: once the buffer reaches the threshold, speak it
        up to its last sentence end (else its last space, else all of it)."""
        threshold = ctx.config.buffer_char_threshold
        if threshold is None and ctx.config.auto_mode:
            threshold = _DEFAULT_AUTO_THRESHOLD
        if threshold is None or len(ctx.buffer) < threshold:
            return
        cut = 0
        for match in _SENTENCE_END.finditer(ctx.buffer):
            cut = match.end()
        if cut == 0:
            cut = ctx.buffer.rfind(" ") + 1 or len(ctx.buffer)
        await self._generate(ctx, self._take(ctx, cut))

    async def _generate(self, ctx: _Context, text: str, *, flushed: bool = True) -> None:
        """Speak ``text`` as one generation (timings restart at 0), then ``flushCompleted``."""
        config = ctx.config
        if text.strip():
            ctx.generations += 1
            fault = self.core.faults.context_error
            if (
                fault is not None and fault.after_audio and fault.connections(self.index)
                and fault.when(ctx.index, ctx.id)
            ):  # fmt: skip
                self._fail(ctx, fault.code, fault.message)
            try:
                speech = await self.core.synthesizer.synthesize(
                    text, voice=config.voice_id,
                    sample_rate=synthesis_rate(config.encoding, config.sample_rate_hertz),
                    speaking_rate=config.speaking_rate,
                )  # fmt: skip
            except Exception as exc:  # a synthesiser failure fails this context only
                self._fail(ctx, 13, f"synthesis failed: {exc}")
            if ctx.generations == 1:
                await self._delay_first_audio(ctx)
            for frame in await self._frames(ctx, text, speech, drain=flushed):
                await self._stall_context_if_faulted(ctx)
                await self._budget.acquire()
                ctx.audio_frames += 1
                self._out_send.send_nowait(_Out(frame, ctx, audio=True))
        if flushed:
            self._control(proto.encode_flush_completed(ctx.id), ctx)

    async def _frames(self, ctx: _Context, text: str, speech: Speech, *, drain: bool) -> list[str]:
        """The generation's frames; compressed audio is encoded in a worker thread (about
        1-35 ms of CPU per second of audio, see :mod:`._codecs`) so other contexts go on."""
        config = ctx.config
        if config.encoding not in COMPRESSED:
            return audio_frames(
                ctx.id, text, speech.pcm, speech.words, config, self.config.chunk_ms
            )
        try:
            if ctx.encoder is None:
                ctx.encoder = StreamEncoder(
                    config.encoding, config.sample_rate_hertz, config.bit_rate
                )
            encoder = ctx.encoder
            return await trio.to_thread.run_sync(
                lambda: audio_frames(
                    ctx.id,
                    text,
                    speech.pcm,
                    speech.words,
                    config,
                    self.config.chunk_ms,
                    encoder,
                    drain=drain,
                )
            )
        except Exception as exc:  # an encoder failure fails this context only
            self._fail(ctx, 13, f"audio encoding failed: {exc}")

    # -- writing -------------------------------------------------------------------------------

    async def _sender(self) -> None:
        async for out in self._out_receive:
            if out.audio:
                self._budget.release()
                if out.context is not None and out.context.cancelled:
                    continue
            if out.close is not None:
                code, reason = out.close
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
                self._nursery.cancel_scope.cancel()
                return
            await self._stall_if_faulted()
            if await self._close_if_faulted():
                return
            await self._send({"type": "websocket.send", "text": out.frame})
            self.frames_sent += 1
            self.core.frames_sent += 1
            await self._after_send_faults()

    async def _watchdog(self) -> None:
        timeout = self.config.inactivity_timeout
        while True:
            await trio.sleep_until(self._last_activity + timeout)
            if trio.current_time() >= self._last_activity + timeout:
                self._control(proto.encode_error(10, "Paused due to inactivity"))
                self._out_send.send_nowait(_Out("", close=(1000, "inactivity timeout")))
                return
