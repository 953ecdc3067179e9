"""ElevenLabs' TTS WebSockets on the local server: what both endpoints share.

``WS /v1/text-to-speech/{voice_id}/multi-stream-input`` (:class:`~.multi.MultiStreamSession`,
what the official LiveKit plugin uses) and ``WS /v1/text-to-speech/{voice_id}/stream-input``
(:class:`~.single.StreamInputSession`, the official ``elevenlabs`` SDK's ``convert_realtime``)
subclass :class:`ElevenLabsSession`: the key, the refusals, one worker per context (its text
buffer, generations, audio format and alignment) and the inactivity timeout. The
voice, model and format come from the path and query (:mod:`.config`); messages are JSON
(:mod:`.proto`). Same engine, port, connection limit and connection faults as the other
protocols (:mod:`.._websocket`).

**Refusals come after the upgrade**, as ElevenLabs does them: an unknown voice or model, a bad
``output_format`` or query value, a bad key, a malformed message each get an error frame
``{"message", "error", "code": 1008}`` and a 1008 close (the reason repeats the message).
Only the connection limit and fault-injected rejections refuse the upgrade itself (HTTP 429,
with ElevenLabs' ``{"detail": {"status": "too_many_concurrent_requests", ...}}``).

**Key.** When the server has a key: an ``xi-api-key`` header must match it; without the header
the connection's first message must carry it (``xi_api_key``/``xi-api-key``, or
``authorization: Bearer <key>``), as ElevenLabs' schema allows. The first message authenticates
the whole connection (later contexts need no key). Otherwise ``invalid_api_key`` and 1008.

**Multi-context** (every message names its ``context_id``; a missing one is the context
``"default"``):

* a context is created by the first message naming a new id (normally
  ``{"text": " ", "voice_settings", "generation_config"?, "context_id"}``);
* text is buffered; ``"flush": true`` speaks the buffer; without it the buffer is spoken once it
  reaches the ``chunk_length_schedule`` (default ``[120, 160, 250, 290]``, one entry per
  generation) at its last sentence end or space, and with ``auto_mode=true`` every complete
  sentence at once; ``try_trigger_generation`` lowers the threshold to 50 characters;
* ``{"text": "", "context_id"}`` is a keep-alive (it only resets the inactivity timer), and
  ``{"text": "", "flush": true}`` a flush and nothing more;
* ``close_context`` speaks what is left, ends the context's compressed stream, then sends
  ``{"isFinal": true, "contextId"}`` — the only time ``isFinal`` is sent. A context counts
  against the limit until then;
* ``close_socket`` lets each context finish the flushes already asked for (unflushed text is
  not spoken, no ``isFinal``), then closes with 1000;
* audio: ``{"audio", "normalizedAlignment", "alignment", "contextId"}`` in ``chunk_ms`` pieces,
  character times in ms cumulative over the context (drain padding of mp3/opus included). The
  alignment rides with the chunk where each word starts whatever ``sync_alignment`` says, and
  both alignments are the same (no text normalisation here); ``language_code``,
  ``enable_ssml_parsing``, ``enable_logging`` and ``apply_text_normalization`` are checked and
  otherwise ignored (the voice decides the language);
* the context limit (``elevenlabs_max_contexts``, default 5) and what happens over it
  (``elevenlabs_limit_action``) are the server's settings: ``"close"`` sends ElevenLabs'
  ``max_active_conversations`` error naming no context and closes with 1008; ``"context-error"``
  names the refused context and keeps the socket (the id's later messages are ignored until its
  ``close_context``). Both count a violation;
* a failed context (fault injection, synthesis failure) gets ``{"error", "message",
  "contextId"}`` and is gone (its slot is free at once).

**Single-context**: the first message opens the one context; ``voice_settings`` may be given
only there (a different one later is ElevenLabs' 1008 "voice_settings field must be provided in
the first message ..."); ``{"text": ""}`` speaks the rest, sends ``{"isFinal": true}`` and closes
with 1000 — the SDK's call returns only at that close.

**Inactivity**: ``inactivity_timeout`` (query, default 20 s, at most 180) without a client
message sends ``input_timeout_exceeded`` and closes with 1008, as ElevenLabs does; any message
(the keep-alive included) resets it.

The context-level faults (:class:`~.._faults.ContextErrorFault`, ``StallContext``,
``DelayFirstAudio``, ``PaceAudio``, ``StrayAudio``, ``CloseAfterContexts``) select contexts by
``when(create_index, context_id)``; a ``ContextErrorFault`` fails the create (or, with
``after_audio``, the first generation) with an error frame carrying ``contextId`` unless
``without_context_id``.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any, ClassVar, NoReturn

import attrs
import trio

from .._asgi import ASGIReceive, ASGISend, Scope, header
from .._core import Core
from .._faults import STRAY_PCM
from .._websocket import WebSocketSession
from ..inworld.codecs import StreamEncoder
from ..inworld.session_faults import InworldContextFaults
from ..rime.proto import cut
from . import proto
from .config import ElevenLabsConfig, ElevenLabsError, parse_query
from .http import AUTH_HEADER, error_detail

__all__ = ["DEFAULT_SCHEDULE", "Context", "ElevenLabsSession", "close_reason"]

DEFAULT_SCHEDULE = (120, 160, 250, 290)
_TRIGGER_CHARS = 50
_SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*(\s+|$)")
_MAX_REASON_BYTES = 123
_INACTIVITY_MESSAGE = (
    "Have not received a new text input within the timeout of {s:g} seconds. Streaming input "
    "terminated. Please make sure to either feed the input in the timely manner, or to send "
    'the end of input text (empty string "") when done.'
)
_STATUS_NAMES = {401: "invalid_api_key", 404: "not_found", 429: "too_many_concurrent_requests"}


class ContextEnded(Exception):
    """Raised in a context's worker once the context failed and was released."""


@attrs.define(eq=False)
class Context:
    id: str | None
    index: int
    send: trio.MemorySendChannel[tuple[str, Any]]
    receive: trio.MemoryReceiveChannel[tuple[str, Any]]
    schedule: tuple[int, ...] = DEFAULT_SCHEDULE
    speaking_rate: float = 1.0
    voice_settings: dict[str, Any] | None = None
    buffer: str = ""
    closing: bool = False
    cancelled: bool = False  # read by the shared sender; ElevenLabs has no cancel
    generations: int = 0
    audio_frames: int = 0
    offset: float = 0.0  # seconds of audio in the context's stream so far
    last_word_end: float | None = None  # context time where its last word ended
    encoder: StreamEncoder | None = None
    done: trio.Event = attrs.field(factory=trio.Event)


def close_reason(message: str) -> str:
    """A close reason: at most 123 bytes of UTF-8."""
    data = message.encode()[:_MAX_REASON_BYTES]
    return data.decode(errors="ignore")


class ElevenLabsSession(WebSocketSession, InworldContextFaults):
    """What both ElevenLabs endpoints share (see the module docstring)."""

    PATH = "/v1/text-to-speech/{voice_id}"
    PATH_PATTERN: ClassVar[re.Pattern[str]]
    AUTH_SCHEME = "xi-api-key"
    CLOSE_LINGER = 2.0
    MULTI: ClassVar[bool]
    DEFAULT_FORMAT: ClassVar[str]

    def __init__(
        self, core: Core, index: int, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(core, index, scope, receive, send)
        match = self.PATH_PATTERN.fullmatch(scope["path"])
        assert match is not None, "the app routes only matching paths here"
        self.contexts: dict[str | None, Context] = {}
        self.creates = 0
        self._ending = False  # a fatal error or close_socket: later messages are ignored
        self._problem: ElevenLabsError | None = None
        self.el: ElevenLabsConfig | None = None
        key = self.config.api_key
        given = header(scope, AUTH_HEADER)
        #: True while the connection's first message must still bring the key.
        self._need_key = key is not None and given is None
        if key is not None and given is not None and given != key:
            self._problem = ElevenLabsError("invalid_api_key", "Invalid API key")
            return
        try:
            self.el = parse_query(scope, match["voice_id"], default_format=self.DEFAULT_FORMAT)
            self.inactivity_timeout = self.el.inactivity_timeout
        except ElevenLabsError as exc:
            self._problem = exc

    @classmethod
    def authorized(cls, scope: Scope, key: str | None) -> bool:
        return True  # checked after the upgrade (the key may come in the first message)

    @classmethod
    def error_body(cls, status: int, message: str) -> dict[str, Any]:
        return error_detail(_STATUS_NAMES.get(status, "error"), message)

    def closed(self) -> None:
        self.core.contexts_open -= len(self.contexts)
        self.contexts.clear()

    def inactivity_frame(self) -> str:
        message = _INACTIVITY_MESSAGE.format(s=self.inactivity_timeout)
        return proto.encode_error("input_timeout_exceeded", message, code=1008)

    def on_inactivity(self) -> None:
        self.queue_control(self.inactivity_frame())
        self.queue_close(1008, close_reason(_INACTIVITY_MESSAGE.format(s=self.inactivity_timeout)))

    # -- reading -------------------------------------------------------------------------------

    def fatal(self, problem: ElevenLabsError) -> None:
        """Answer ``problem`` with an error frame naming no context, then close (1008)."""
        if self._ending:
            return
        self._ending = True
        self.queue_control(proto.encode_error(problem.error, problem.message, code=problem.code))
        self.queue_close(problem.code, close_reason(problem.message))

    async def read(self) -> None:
        if self._problem is not None:
            self.fatal(self._problem)
        while (frame := await self.receive_frame()) is not None:
            if self._ending or self.close_sent:
                continue  # closing: nothing more is acted on
            try:
                message = proto.decode_message(frame)
                self._authenticate(message)
                self.dispatch(message)
            except ElevenLabsError as exc:
                self.fatal(exc)

    def _authenticate(self, message: proto.Message) -> None:
        if not self._need_key:
            return
        key = self.config.api_key
        if message.api_key != key and message.authorization != f"Bearer {key}":
            raise ElevenLabsError("invalid_api_key", "Invalid API key")
        self._need_key = False

    def dispatch(self, message: proto.Message) -> None:
        """Apply one client message (the endpoint's own rules)."""
        raise NotImplementedError

    # -- contexts ------------------------------------------------------------------------------

    def create(self, context_id: str | None, message: proto.Message) -> Context:
        """A new context (counted, its worker started) from its first message."""
        send, receive = trio.open_memory_channel[tuple[str, Any]](math.inf)
        settings = message.voice_settings or {}
        speed = settings.get("speed")
        ctx = Context(
            context_id, self.creates - 1, send, receive,
            schedule=message.chunk_length_schedule or DEFAULT_SCHEDULE,
            speaking_rate=float(speed) if speed is not None else 1.0,
            voice_settings=message.voice_settings,
        )  # fmt: skip
        self.contexts[context_id] = ctx
        self.core.contexts_created += 1
        self.core.contexts_open += 1
        self.core.peak_contexts_per_connection = max(
            self.core.peak_contexts_per_connection, len(self.contexts)
        )
        self.nursery.start_soon(self._worker, ctx)
        return ctx

    def feed(self, ctx: Context, message: proto.Message) -> None:
        """Hand a message's text, flush and close to the context's worker, in order."""
        if message.text:
            ctx.send.send_nowait(("text", (message.text, message.flush,
                                           message.try_trigger_generation)))  # fmt: skip
        elif message.flush:
            ctx.send.send_nowait(("flush", None))

    def close_context(self, ctx: Context) -> None:
        ctx.closing = True
        ctx.send.send_nowait(("close", None))

    def release(self, ctx: Context) -> None:
        if self.contexts.get(ctx.id) is ctx:
            del self.contexts[ctx.id]
            self.core.contexts_open -= 1
        ctx.done.set()

    def context_error(self, ctx_id: str | None, error: str, message: str,
                      *, with_id: bool = True) -> None:  # fmt: skip
        self.queue_control(proto.encode_error(
            error, message, context_id=ctx_id if with_id and self.MULTI else None
        ))  # fmt: skip

    def finished(self, ctx: Context) -> None:
        """After a context's ``isFinal`` (the single-context endpoint closes here)."""

    # -- a context's worker --------------------------------------------------------------------

    async def _worker(self, ctx: Context) -> None:
        try:
            with contextlib.suppress(ContextEnded):
                await self._work(ctx)
        finally:
            if ctx.encoder is not None:
                ctx.encoder.close()
            ctx.done.set()

    async def _work(self, ctx: Context) -> None:
        while True:
            kind, arg = await ctx.receive.receive()
            if kind == "text":
                text, flush, trigger = arg
                ctx.buffer += text
                if flush:
                    await self._generate(ctx, self._take(ctx, len(ctx.buffer)))
                else:
                    await self._auto(ctx, trigger)
            elif kind == "flush":
                await self._generate(ctx, self._take(ctx, len(ctx.buffer)))
            elif kind == "close":
                await self._generate(ctx, self._take(ctx, len(ctx.buffer)), drain=False)
                if ctx.encoder is not None:
                    tail = ctx.encoder.close()
                    if tail:
                        await self.acquire_audio()
                        self.queue_audio(proto.encode_audio(tail, None, ctx.id,
                                                            multi=self.MULTI), ctx)  # fmt: skip
                self.release(ctx)
                self.queue_control(proto.encode_final(ctx.id, multi=self.MULTI), ctx)
                if ctx.id is not None and self.stray_after_close(ctx):
                    self.queue_control(proto.encode_audio(STRAY_PCM, None, ctx.id, multi=True))
                self.finished(ctx)
                return
            else:  # "end" (close_socket): pending flushes are done; unflushed text is not spoken
                self.release(ctx)
                return

    @staticmethod
    def _take(ctx: Context, n: int) -> str:
        text, ctx.buffer = ctx.buffer[:n], ctx.buffer[n:]
        return text

    async def _auto(self, ctx: Context, trigger: bool) -> None:
        """Speak the buffer's complete part once the schedule (or auto_mode) says so."""
        assert self.el is not None
        cut_at = 0
        for match in _SENTENCE_END.finditer(ctx.buffer):
            cut_at = match.end()
        if self.el.auto_mode:
            if cut_at:
                await self._generate(ctx, self._take(ctx, cut_at))
            return
        threshold = ctx.schedule[min(ctx.generations, len(ctx.schedule) - 1)]
        if trigger:
            threshold = min(threshold, _TRIGGER_CHARS)
        if len(ctx.buffer.strip()) < threshold:
            return
        if not cut_at:
            cut_at = ctx.buffer.rfind(" ") + 1 or len(ctx.buffer)
        await self._generate(ctx, self._take(ctx, cut_at))

    def _fail(self, ctx: Context, error: str, message: str, *, with_id: bool = True) -> NoReturn:
        """Fail the context: an error frame (the single-context endpoint then closes, 1011)."""
        self.release(ctx)
        if self.MULTI:
            self.context_error(ctx.id, error, message, with_id=with_id)
        else:
            self.fatal(ElevenLabsError(error, message, code=1011))
        raise ContextEnded

    async def _generate(self, ctx: Context, text: str, *, drain: bool = True) -> None:
        """Speak ``text`` as one generation of ``ctx`` and queue its audio frames."""
        if not text.strip():
            return
        assert self.el is not None
        ctx.generations += 1
        fault = self.failed_generation(ctx) if ctx.id is not None else None
        if fault is not None:
            self._fail(ctx, "internal_error", fault.message, with_id=not fault.without_context_id)
        audio = self.el.audio
        try:
            speech = await self.core.synthesizer.synthesize(
                text, voice=self.el.voice, sample_rate=audio.sample_rate,
                speaking_rate=ctx.speaking_rate,
            )  # fmt: skip
        except Exception as exc:  # a synthesiser failure fails this context only
            self._fail(ctx, "synthesis_failed", f"synthesis failed: {exc}")
        if ctx.generations == 1 and ctx.id is not None:
            await self.delay_first_audio(ctx)
        pieces = cut(speech.pcm, speech.words, audio.sample_rate, self.config.chunk_ms)
        try:
            encoded = await self._encode(ctx, pieces, drain=drain)
        except Exception as exc:  # an encoder failure fails this context only
            self._fail(ctx, "encoding_failed", f"audio encoding failed: {exc}")
        base = ctx.offset
        for data, words in encoded:
            align = proto.alignment(words, base, ctx.last_word_end)
            if words:
                ctx.last_word_end = base + max(words[-1][1], words[-1][2])
            if ctx.id is not None:
                await self.pace_audio(ctx)
                await self.wait_while_stalled(ctx)
            await self.acquire_audio()
            ctx.audio_frames += 1
            self.queue_audio(proto.encode_audio(data, align, ctx.id, multi=self.MULTI), ctx)
        if ctx.encoder is not None:
            ctx.offset = ctx.encoder.samples_written / ctx.encoder.input_rate
        else:
            ctx.offset += speech.duration

    async def _encode(
        self, ctx: Context, pieces: list[tuple[bytes, list[tuple[str, float, float]]]],
        *, drain: bool,
    ) -> list[tuple[bytes, list[tuple[str, float, float]]]]:  # fmt: skip
        """The generation's audio in the connection's format; a compressed stream's words
        wait for the next piece that has bytes (the last one drains the encoder at a flush)."""
        assert self.el is not None
        audio = self.el.audio
        if audio.kind == "pcm":
            return pieces
        if audio.kind == "ulaw":
            return [(proto.mulaw(pcm), words) for pcm, words in pieces]
        encoding = audio.encoding
        assert encoding is not None
        if ctx.encoder is None:
            ctx.encoder = StreamEncoder(encoding, audio.sample_rate, audio.bit_rate)
        encoder = ctx.encoder

        def run() -> list[tuple[bytes, list[tuple[str, float, float]]]]:
            out: list[tuple[bytes, list[tuple[str, float, float]]]] = []
            pending: list[tuple[str, float, float]] = []
            for n, (pcm, words) in enumerate(pieces):
                last = n == len(pieces) - 1
                data = encoder.encode(pcm) + (encoder.drain() if last and drain else b"")
                pending.extend(words)
                if data or (last and pending):
                    out.append((data, pending))
                    pending = []
            return out

        return await trio.to_thread.run_sync(run)
