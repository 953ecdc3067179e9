"""One Cartesia ``/tts/websocket`` connection of the local server: its contexts and their audio.

What a connection does (the frames are in :mod:`.proto`, a new context's settings in
:mod:`.config`, the handshake in :mod:`.auth`):

* A generation request with a new ``context_id`` opens a context, after its settings were
  checked and the limits allow it; later requests on the same id add their ``transcript``
  (concatenated verbatim) and may ``flush`` or end the input (``continue: false``, also the
  default when ``continue`` is absent). Contexts are independent: any number share the socket
  and their frames interleave.
* **When audio is generated** (each generation is one synthesis; its word times continue
  where the context's previous audio ended):

  - ``max_buffer_delay_ms: 0`` (the LiveKit plugin, which sends whole sentences): at once,
    on every input, up to the last word boundary (the last whitespace, or the end of the
    buffer when it ends a sentence); a trailing partial word waits for more input;
  - ``max_buffer_delay_ms > 0`` (default 3000): up to the last sentence end as soon as one
    arrives, otherwise everything once the oldest buffered text waited that long;
  - ``flush: true``: everything buffered, then ``flush_done`` with the context's next
    ``flush_id`` (1, 2 ...); the chunks and timestamps of that generation carry the same
    ``flush_id``;
  - ``continue: false``: everything buffered, then ``done`` (``status_code`` 200), and the
    context is gone.

* **Expiry** (``cartesia_context_expiry``, Cartesia's documented 1 s): a context whose input
  was not ended expires that long after its last frame went out on the socket (or after its
  last input, if later); anything still buffered is spoken first, and audio still waiting
  for a slow client or a stalled socket holds the expiry off. The server then sends
  ``done``, as after ``continue: false`` (chosen here: Cartesia does not say what, if
  anything, it sends, and ``done`` tells a client its context no longer counts).
* A request for a context that ended on this connection (done, expired, cancelled, failed)
  gets ``error`` 400 ``context_expired`` (Cartesia: "not supported"); one for a context whose
  input was already ended gets ``error`` 400 ``context_closed`` while the context itself goes
  on to its ``done``.
* ``{"cancel": true, "context_id"}`` stops the context at once: nothing more is sent for it
  (Cartesia: "no more messages are generated for that context"), audio already queued
  included, and it stops counting. No reply (none is documented, and the SDK's ``cancel()``
  drops the context's queue without waiting). Cancelling an unknown context does nothing.
* **Limits**: a new context beyond ``cartesia_concurrency`` (contexts open at once on all
  Cartesia connections: the account's plan) or ``cartesia_contexts_per_connection`` gets
  Cartesia's documented error event, 429 ``concurrency_limited``, and is recorded as a
  violation. A context counts from its first request until its ``done`` (or ``error``) has
  been sent, or until its cancel is read. Sockets count against the server-wide
  ``max_connections`` (20 by default; Cartesia allows 10 times the plan's concurrency, so
  150 models the Scale plan); one more is refused with HTTP 429.
* **Errors** are Cartesia's error event, always ``done: true`` (its documented schema), and
  end the context. The official LiveKit plugin reads a frame with ``done: true`` as the end
  of its stream before it looks at ``type``, so it swallows these errors (its bug; trio_tts's
  drop-in does not); the server stays faithful to Cartesia.
* The connection closes after ``cartesia_inactivity_timeout`` (5 minutes) without a client
  frame, after an ``error`` frame without a context.

Tasks: the reader (the session's own task) decodes frames and decides creates, cancels and
errors synchronously; each context has a worker that buffers its text and synthesises; the
shared sender (:mod:`.._websocket`) writes. Every frame of a context but its error goes out
through the connection's audio budget, so a cancel drops all of them; the error is queued the
moment the context fails, so no later reply can overtake it. Context-level faults
(:class:`~.._faults.ContextErrorFault`, ``DelayFirstAudio``, ``StallContext``,
``PaceAudio``, ``StrayAudio``, ``CloseAfterContexts``) are decided by the same rules as for
Inworld's contexts.
"""

from __future__ import annotations

import collections
import contextlib
import math
import re
import time
from typing import Any, NoReturn

import attrs
import trio

from .._asgi import ASGIReceive, ASGISend, Scope
from .._core import Core
from .._faults import STRAY_PCM, ContextErrorFault
from .._websocket import Outgoing, WebSocketSession
from ..inworld.session_faults import InworldContextFaults
from ..rime.proto import cut
from . import auth, pcm, proto
from .config import ContextConfig, context_config

__all__ = ["WS_PATH", "CartesiaSession"]

WS_PATH = "/tts/websocket"
#: Ended context ids a connection remembers (to answer ``context_expired``).
_REMEMBERED = 10_000
_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*(\s+|$)")
_SENTENCE_AT_END = re.compile(r"[.!?…。！？][\"')\]]*$")
_WORD_END = re.compile(r"\s+")


class _ContextEnded(Exception):
    """Raised inside a context's worker once the context failed and was released."""


@attrs.frozen
class _Input:
    text: str
    flush: bool
    final: bool


#: Put in a context's inbox when the last of its queued frames went out.
_DRAINED = object()


@attrs.define(eq=False)
class _Context:
    id: str
    config: ContextConfig
    index: int
    send: trio.MemorySendChannel[object]  # _Input or _DRAINED
    receive: trio.MemoryReceiveChannel[object]
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    cancelled: bool = False
    #: ``continue: false`` was read (by the reader; the worker may still be speaking).
    input_ended: bool = False
    buffer: str = ""
    #: When the buffered text must be spoken (``max_buffer_delay_ms`` after it started).
    speak_at: float = math.inf
    #: Frames queued but not sent yet, and when the last one went out (the expiry's start).
    pending: int = 0
    last_sent: float = -math.inf
    #: The ``done`` or ``error`` that ends the context when sent; failed: it was an error.
    final_frame: str | None = None
    failed: bool = False
    offset: float = 0.0  # seconds of audio so far: the origin of the next word times
    flushes: int = 0
    generations: int = 0
    audio_frames: int = 0


def _error(status: int, code: str, title: str, message: str) -> proto.ProtocolError:
    return proto.ProtocolError(status, title, message, code)


class CartesiaSession(WebSocketSession, InworldContextFaults):
    """Serves one accepted ``/tts/websocket`` WebSocket (see the module docstring)."""

    PATH = WS_PATH
    AUTH_SCHEME = "Bearer"

    def __init__(
        self, core: Core, index: int, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(core, index, scope, receive, send)
        self.inactivity_timeout = self.config.cartesia_inactivity_timeout
        self.contexts: dict[str, _Context] = {}
        self.creates = 0
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()

    # -- the handshake (decided by the app before accepting) -----------------------------------

    @classmethod
    def authorized(cls, scope: Scope, key: str | None) -> bool:
        return key is None or auth.authorized(scope, key)

    @staticmethod
    def refusal(scope: Scope) -> str | tuple[int, str] | None:
        return auth.version_problem(scope)

    @classmethod
    def error_body(cls, status: int, message: str) -> dict[str, Any]:
        return auth.error_object(status, message)

    def inactivity_frame(self) -> str:
        seconds = f"{self.inactivity_timeout:g}"
        return proto.encode_error(_error(
            408, "idle_timeout", "Idle timeout", f"Connection idle for {seconds} s; closing"
        ), None)  # fmt: skip

    def closed(self) -> None:
        self.core.contexts_open -= len(self.contexts)
        self.contexts.clear()

    # -- reading -------------------------------------------------------------------------------

    async def read(self) -> None:
        while (frame := await self.receive_frame()) is not None:
            try:
                message = proto.decode_message(frame)
            except proto.DecodeError as exc:
                self.queue_control(proto.encode_error(exc.error, exc.context_id))
                continue
            if isinstance(message, proto.Cancel):
                self._cancel(message.context_id)
            else:
                self._generate(message)

    def _generate(self, message: proto.Generate) -> None:
        cid = message.context_id
        ctx = self.contexts.get(cid)
        if ctx is None or ctx.failed:
            if ctx is not None or cid in self._ended:
                self.queue_control(proto.encode_error(_error(
                    400, "context_expired", "Context expired",
                    f"Context {cid} has ended (done, expired, failed or cancelled);"
                    " use a new context_id",
                ), cid))  # fmt: skip
                return
            ctx = self._create(message)
            if ctx is None:
                return
        elif ctx.input_ended:
            self.queue_control(proto.encode_error(_error(
                400, "context_closed", "Context closed",
                f"Context {cid} already received continue: false",
            ), cid))  # fmt: skip
            return
        ctx.input_ended = not message.continue_
        ctx.send.send_nowait(_Input(message.transcript, message.flush, ctx.input_ended))

    def _open_contexts(self) -> int:
        """Cartesia contexts open on all of this server's connections (the account's count)."""
        return sum(len(s.contexts) for s in self.core.sessions if isinstance(s, CartesiaSession))

    def _limit_problem(self) -> str | None:
        per_connection = self.config.cartesia_contexts_per_connection
        if per_connection is not None and len(self.contexts) >= per_connection:
            return (
                f"connection {self.index}: context {len(self.contexts) + 1} "
                f"(limit {per_connection} per connection)"
            )
        concurrency = self.config.cartesia_concurrency
        open_now = self._open_contexts()
        if concurrency is not None and open_now >= concurrency:
            return f"Cartesia context {open_now + 1} open at once (limit {concurrency})"
        return None

    def _create(self, message: proto.Generate) -> _Context | None:
        cid = message.context_id
        index = self.creates
        self.creates += 1
        config = context_config(message.fields)
        if isinstance(config, proto.ProtocolError):
            self.queue_control(proto.encode_error(config, cid))
            return None
        problem = self._limit_problem()
        if problem is not None:
            self.core.violation(problem)
            self.queue_control(proto.encode_error(_error(
                429, "concurrency_limited", "Too many concurrent requests",
                "You have exceeded your plan's concurrency limit.",
            ), cid))  # fmt: skip
            return None
        fault = self.refused_create(index, cid)
        if fault is not None:
            self.queue_control(proto.encode_error(self._fault_error(fault), cid))
            return None
        send, receive = trio.open_memory_channel[object](math.inf)
        ctx = _Context(cid, config, index, send, receive)
        self.contexts[cid] = ctx
        self.core.contexts_created += 1
        self.core.contexts_open += 1
        self.core.peak_contexts_per_connection = max(
            self.core.peak_contexts_per_connection, len(self.contexts)
        )
        close = self.close_after_create(self.creates)
        if close is not None:
            self.queue_close(close.code, close.reason)
        if self.stray_after_create(index, cid):
            self.queue_control(proto.encode_chunk(STRAY_PCM, f"stray-{cid}", step_time=0.0))
        self.nursery.start_soon(self._worker, ctx)
        return ctx

    @staticmethod
    def _fault_error(fault: ContextErrorFault) -> proto.ProtocolError:
        status = fault.code if 400 <= fault.code <= 599 else 500
        return _error(status, "fault_injected", "Internal error", fault.message)

    def _release(self, ctx: _Context) -> None:
        if self.contexts.get(ctx.id) is ctx:
            del self.contexts[ctx.id]
            self.core.contexts_open -= 1
            self._ended[ctx.id] = None
            while len(self._ended) > _REMEMBERED:
                self._ended.popitem(last=False)

    def _cancel(self, cid: str) -> None:
        ctx = self.contexts.get(cid)
        if ctx is not None:
            ctx.cancelled = True  # the sender drops its queued frames
            ctx.cancel_scope.cancel()
            self._release(ctx)

    # -- a context's worker --------------------------------------------------------------------

    async def _emit(self, ctx: _Context, frame: str, *, final: bool = False) -> None:
        """Queue one of the context's frames (a cancel drops it unsent); ``final``: its
        ``done`` or ``error``, which ends the context once it is sent."""
        await self.acquire_audio()
        ctx.pending += 1
        if final:
            ctx.final_frame = frame
        self.queue_audio(frame, ctx)

    def frame_sent(self, out: Outgoing) -> None:
        ctx = out.context
        if not isinstance(ctx, _Context) or ctx.cancelled:
            return
        ctx.pending -= 1
        ctx.last_sent = trio.current_time()
        if out.frame is ctx.final_frame:  # done or error is out: the context stops counting
            self._release(ctx)
            if not ctx.failed and self.stray_after_close(ctx):
                self.queue_control(proto.encode_chunk(STRAY_PCM, ctx.id, step_time=0.0))
        elif ctx.pending == 0:
            ctx.send.send_nowait(_DRAINED)  # the worker times the expiry from now

    def _fail(self, ctx: _Context, error: proto.ProtocolError) -> NoReturn:
        """End the context with ``error`` (queued at once, so no later reply to the client
        can overtake it; it ends the context once sent, like ``done``)."""
        ctx.failed = True
        frame = proto.encode_error(error, ctx.id)
        ctx.pending += 1
        ctx.final_frame = frame
        self.queue_control(frame, ctx)
        raise _ContextEnded

    async def _worker(self, ctx: _Context) -> None:
        with ctx.cancel_scope, contextlib.suppress(_ContextEnded):
            await self._work(ctx)

    async def _work(self, ctx: _Context) -> None:
        expiry = self.config.cartesia_context_expiry
        last_input = trio.current_time()
        while True:
            if ctx.buffer and ctx.config.max_buffer_delay_ms:
                deadline = ctx.speak_at  # buffered text waits for its delay
            elif ctx.pending:
                deadline = math.inf  # audio still going out: the expiry counts from its end
            else:
                deadline = max(ctx.last_sent, last_input) + expiry
            item: object = None
            with trio.move_on_at(deadline):  # only the wait is timed, never the speaking
                item = await ctx.receive.receive()
            if item is None:
                if ctx.buffer:  # the delay passed, or a partial word is left as it expires
                    await self._speak(ctx, len(ctx.buffer))
                    continue
                await self._emit(ctx, proto.encode_done(ctx.id), final=True)  # expired
                return
            if item is _DRAINED:
                continue
            assert isinstance(item, _Input)
            last_input = trio.current_time()
            ctx.buffer += item.text
            if ctx.buffer and ctx.speak_at == math.inf and ctx.config.max_buffer_delay_ms:
                ctx.speak_at = trio.current_time() + ctx.config.max_buffer_delay_ms / 1000
            if item.final:
                await self._speak(ctx, len(ctx.buffer))
                await self._emit(ctx, proto.encode_done(ctx.id), final=True)
                return
            if item.flush:
                ctx.flushes += 1
                await self._speak(ctx, len(ctx.buffer), flush_id=ctx.flushes)
                await self._emit(ctx, proto.encode_flush_done(ctx.id, ctx.flushes))
            else:
                await self._speak(ctx, self._ready(ctx))

    @staticmethod
    def _ready(ctx: _Context) -> int:
        """How much of the buffer to speak now (see "When audio is generated")."""
        buffer = ctx.buffer
        if ctx.config.max_buffer_delay_ms == 0:
            if _SENTENCE_AT_END.search(buffer):
                return len(buffer)
            return max((m.end() for m in _WORD_END.finditer(buffer)), default=0)
        return max((m.end() for m in _SENTENCE_END.finditer(buffer)), default=0)

    async def _speak(self, ctx: _Context, n: int, *, flush_id: int | None = None) -> None:
        """Speak the first ``n`` characters of the buffer as one generation."""
        if n == 0:
            return
        text, ctx.buffer = ctx.buffer[:n], ctx.buffer[n:]
        # What is left waits its own delay, counted from now.
        ctx.speak_at = (
            trio.current_time() + ctx.config.max_buffer_delay_ms / 1000
            if ctx.buffer and ctx.config.max_buffer_delay_ms
            else math.inf
        )
        if not text.strip():
            return
        ctx.generations += 1
        config = ctx.config
        fault = self.failed_generation(ctx)
        if fault is not None:
            self._fail(ctx, self._fault_error(fault))
        started = time.perf_counter()
        try:
            speech = await self.core.synthesizer.synthesize(
                text, voice=config.voice, sample_rate=config.sample_rate,
                speaking_rate=config.speaking_rate,
            )  # fmt: skip
        except Exception as exc:  # a synthesiser failure fails this context only
            self._fail(ctx, _error(500, "internal_error", "Internal error",
                                   f"synthesis failed: {exc}"))  # fmt: skip
        step_ms = (time.perf_counter() - started) * 1000
        if ctx.generations == 1:
            await self.delay_first_audio(ctx)
        for piece, words in cut(speech.pcm, speech.words, config.sample_rate, self.config.chunk_ms):
            await self.pace_audio(ctx)
            await self.wait_while_stalled(ctx)
            ctx.audio_frames += 1
            audio = pcm.encode(piece, config.encoding)
            await self._emit(ctx, proto.encode_chunk(
                audio, ctx.id, step_time=step_ms, flush_id=flush_id
            ))  # fmt: skip
            if config.add_timestamps and words:
                frame = proto.encode_timestamps(words, ctx.offset, ctx.id, flush_id=flush_id)
                await self._emit(ctx, frame)
            if config.add_phoneme_timestamps and words:
                frame = proto.encode_phoneme_timestamps(
                    words, ctx.offset, ctx.id, flush_id=flush_id
                )
                await self._emit(ctx, frame)
        ctx.offset += speech.duration
