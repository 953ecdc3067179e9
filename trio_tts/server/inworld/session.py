"""One Inworld WebSocket connection of the local server: its contexts and their synthesis.

Tasks, all in the session's nursery (see :mod:`.._websocket` for the sender and watchdog it
shares with Rime's session):

* the **reader** (the session's own task) decodes client frames and applies them to the
  context table synchronously: create/cancel and every error reply are decided here, and
  work for a context is handed to that context's worker through an unbounded channel, so
  the reader never waits on synthesis or on the socket;
* one **worker** per context buffers its text, synthesises generations and queues their
  frames; contexts are independent, so a long synthesis never holds up another context;
* the shared **sender** writes them, holding audio to the connection's budget.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any, NoReturn

import attrs
import trio

from .._asgi import ASGIReceive, ASGISend, Scope
from .._core import Core
from .._faults import STRAY_PCM
from .._speech import Speech
from .._websocket import WebSocketSession
from . import proto
from .chunks import audio_frames, closing_frame
from .codecs import COMPRESSED, StreamEncoder, synthesis_rate
from .config_rules import ConfigError, updated, validated
from .session_faults import InworldContextFaults

__all__ = ["WS_PATH", "InworldSession"]

WS_PATH = "/tts/v1/voice:streamBidirectional"
_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*(\s+|$)")
_DEFAULT_AUTO_THRESHOLD = 250


class _ContextEnded(Exception):
    """Raised inside a context's worker when the context failed and its slot was released."""


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


class InworldSession(WebSocketSession, InworldContextFaults):
    """Serves one accepted ``voice:streamBidirectional`` WebSocket (see the module docstring)."""

    PATH = WS_PATH
    AUTH_SCHEME = "Basic"

    def __init__(
        self, core: Core, index: int, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(core, index, scope, receive, send)
        self.contexts: dict[str, _Context] = {}
        self.creates = 0

    def closed(self) -> None:
        self.core.contexts_open -= len(self.contexts)
        self.contexts.clear()

    def inactivity_frame(self) -> str:
        return proto.encode_error(10, "Paused due to inactivity")

    # -- reading -------------------------------------------------------------------------------

    async def read(self) -> None:
        while (frame := await self.receive_frame()) is not None:
            if isinstance(frame, bytes):
                self._control(
                    proto.encode_error(3, "binary frames are not supported; send JSON text")
                )
                continue
            try:
                command = proto.decode_command(frame)
            except proto.DecodeError as exc:
                if exc.context_id is not None:
                    self._control(proto.encode_status(exc.context_id, 3, str(exc)))
                else:
                    self._control(proto.encode_error(3, str(exc)))
                continue
            self._dispatch(command)

    def _control(self, frame: str, context: _Context | None = None) -> None:
        self.queue_control(frame, context)

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
        fault = self.refused_create(index, cid)
        if fault is not None:
            if fault.without_context_id:
                self._control(proto.encode_error(fault.code, fault.message))
            else:
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
        close = self.close_after_create(self.creates)
        if close is not None:
            self.queue_close(close.code, close.reason)
        if self.stray_after_create(index, cid):
            self._control(proto.encode_audio_chunk(f"stray-{cid}", STRAY_PCM))
        self.nursery.start_soon(self._worker, ctx)

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
                            await self.acquire_audio()
                            self.queue_audio(end, ctx)
                        self._release(ctx)
                        self._control(proto.encode_context_closed(ctx.id), ctx)
                        if self.stray_after_close(ctx):
                            self._control(proto.encode_audio_chunk(ctx.id, STRAY_PCM))
                        return
                    continue
                # maxBufferDelayMs passed since the oldest buffered text arrived.
                await self._generate(ctx, self._take(ctx, len(ctx.buffer)))

    def _fail(
        self, ctx: _Context, code: int, message: str, *, top_level: bool = False
    ) -> NoReturn:
        self._release(ctx)
        if top_level:
            self._control(proto.encode_error(code, message), ctx)
        else:
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
            fault = self.failed_generation(ctx)
            if fault is not None:
                self._fail(ctx, fault.code, fault.message, top_level=fault.without_context_id)
            try:
                speech = await self.core.synthesizer.synthesize(
                    text, voice=config.voice_id,
                    sample_rate=synthesis_rate(config.encoding, config.sample_rate_hertz),
                    speaking_rate=config.speaking_rate,
                )  # fmt: skip
            except Exception as exc:  # a synthesiser failure fails this context only
                self._fail(ctx, 13, f"synthesis failed: {exc}")
            if ctx.generations == 1:
                await self.delay_first_audio(ctx)
            for frame in await self._frames(ctx, text, speech, drain=flushed):
                await self.pace_audio(ctx)
                await self.wait_while_stalled(ctx)
                await self.acquire_audio()
                ctx.audio_frames += 1
                self.queue_audio(frame, ctx)
        if flushed:
            self._control(proto.encode_flush_completed(ctx.id), ctx)

    async def _frames(self, ctx: _Context, text: str, speech: Speech, *, drain: bool) -> list[str]:
        """The generation's frames; compressed audio is encoded in a worker thread (about
        1-35 ms of CPU per second of audio, see :mod:`.codecs`) so other contexts go on."""
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
