"""One Rime ``/ws3`` WebSocket connection of the local server.

Same engine as Inworld's side (the core's synthesiser, eSpeak or tone), same port, same
connection limit and faults. The voice is fixed per connection by the URL's query
(:mod:`.config`); a bad query is refused at the upgrade with HTTP 400.

What a connection does with the client's frames (:mod:`.proto`), in order; one worker
synthesises them one after another, so audio never interleaves:

* ``{"text", "contextId"?}`` is appended to the buffer; the newest ``contextId`` tags what is
  synthesised next. ``segment=bySentence`` (default) synthesises every complete sentence as
  soon as its end (``.``, ``!``, ``?`` then a space or the end of the text) arrives,
  ``immediate`` each text at once, ``never`` only on ``flush``.
* ``{"operation": "flush"}`` synthesises the buffer, then answers ``{"type": "done"}``: every
  flush gets exactly one ``done``, after all the audio it asked for.
* ``{"operation": "clear"}`` empties the buffer and abandons the synthesis in progress and the
  queued ones (their remaining chunks are never sent; flushes queued before still get their
  ``done``).
* ``{"operation": "eos"}`` synthesises the rest, answers ``done`` and closes (1000).

Audio goes out as ``chunk`` frames of ``chunk_ms``, each followed by the ``timestamps`` of the
words that start in it; times count from the first audio after the previous ``done``. Errors
are ``error`` frames and leave the connection open, as at Rime. The sender, the budget and
the connection-level faults are the shared ones (:mod:`.._websocket`); the utterance-level
faults are in :mod:`.session_faults`.

Rime carries one utterance at a time per connection, and the server's counters hold a client
to it: a context (a ``contextId``) is *open* from its first non-blank text until a ``done``
leaves nothing of it outstanding (no text buffered, no synthesis or flush queued); the
connection's end closes it too. A text of another ``contextId`` while one is open is a second
context on the connection: counted in ``peak_contexts_per_connection`` and recorded as a
violation (the limit is 1). An untagged text belongs to the open context, if any.
"""

from __future__ import annotations

import math
import re

import attrs
import trio

from .._asgi import ASGIReceive, ASGISend, Scope
from .._core import Core
from .._faults import STRAY_PCM
from .._websocket import WebSocketSession
from . import proto
from .config import MAX_TEXT_CHARS, RimeConfig, parse_query
from .session_faults import RimeContextFaults

__all__ = ["WS_PATH", "RimeSession"]

WS_PATH = "/ws3"
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*(\s+|$)")


@attrs.frozen
class _Speak:
    text: str
    context_id: str | None
    epoch: int


@attrs.frozen
class _Done:
    context_id: str | None
    eos: bool = False


class RimeSession(WebSocketSession, RimeContextFaults):
    """Serves one accepted ``/ws3`` WebSocket (see the module docstring)."""

    PATH = WS_PATH
    AUTH_SCHEME = "Bearer"

    def __init__(
        self, core: Core, index: int, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(core, index, scope, receive, send)
        config = parse_query(scope)
        assert isinstance(config, RimeConfig), "the app refuses bad queries before accepting"
        self.rime = config
        self._text = ""
        self._context_id: str | None = None
        self._open: list[str | None] = []  # the contexts open here (more than one: a violation)
        self._queued = 0  # jobs sent to the worker and not taken yet
        self._chunks = 0  # chunks of the current utterance queued (for StallContext)
        self._epoch = 0  # bumped by clear: older synthesis is abandoned
        self._utterance = 0  # utterances (runs of audio between dones) on this connection
        self._fresh = True  # no audio since the last done
        self._offset = 0.0  # seconds of audio since the last done (the timestamps' origin)
        self._jobs_in, self._jobs_out = trio.open_memory_channel[_Speak | _Done](math.inf)
        # The worker lives in the session's nursery (which exists once run() started), like
        # the sender: the reader starts it on the first frame.
        self._worker_started = False

    @staticmethod
    def refusal(scope: Scope) -> str | None:
        """Why to refuse this upgrade with HTTP 400 (a bad query), or None."""
        problem = parse_query(scope)
        return problem if isinstance(problem, str) else None

    def inactivity_frame(self) -> str:
        return proto.encode_error("closed due to inactivity")

    def closed(self) -> None:
        self.core.contexts_open -= len(self._open)
        self._open.clear()

    # -- the server's record of open contexts (see the module docstring) ------------------------

    def _opened(self, context_id: str | None) -> None:
        """A non-blank text of ``context_id`` arrived: open it unless it is open."""
        if context_id in self._open or (context_id is None and self._open):
            return
        self._open.append(context_id)
        core = self.core
        core.contexts_created += 1
        core.contexts_open += 1
        core.peak_contexts_per_connection = max(core.peak_contexts_per_connection, len(self._open))
        if len(self._open) > 1:
            core.violation(
                f"connection {self.index}: context {context_id!r} while {self._open[0]!r} is "
                "open (Rime carries one utterance at a time: limit 1)"
            )

    def _ended(self) -> None:
        """A ``done`` went out: if nothing is outstanding, no context is open any more."""
        if self._queued == 0 and not self._text.strip():
            self.core.contexts_open -= len(self._open)
            self._open.clear()

    # -- reading -------------------------------------------------------------------------------

    async def read(self) -> None:
        while (frame := await self.receive_frame()) is not None:
            if not self._worker_started:
                self._worker_started = True
                self.nursery.start_soon(self._worker)
            try:
                message = proto.decode_message(frame)
            except proto.DecodeError as exc:
                self.queue_control(proto.encode_error(str(exc)))
                continue
            self._apply(message)

    def _apply(self, message: proto.Message) -> None:
        cid = message.context_id
        if isinstance(message, proto.Text):
            text = message.text
            if len(text) > MAX_TEXT_CHARS:
                self.core.violation(
                    f"connection {self.index}: text of {len(text)} characters "
                    f"(limit {MAX_TEXT_CHARS})"
                )
                self.queue_control(proto.encode_error(f"text exceeds {MAX_TEXT_CHARS} characters"))
                return
            if text.strip():
                self._opened(cid)
            self._context_id = cid
            self._text += text
            self._segment()
        elif message.name == "flush":
            self._speak(len(self._text))
            self._queue(_Done(self._context_id))
        elif message.name == "clear":
            self._text = ""
            self._epoch += 1
        else:  # eos
            self._speak(len(self._text))
            self._queue(_Done(self._context_id, eos=True))

    def _segment(self) -> None:
        segment = self.rime.segment
        if segment == "immediate":
            self._speak(len(self._text))
        elif segment == "bySentence":
            cut = 0
            for match in _SENTENCE_END.finditer(self._text):
                cut = match.end()
            self._speak(cut)

    def _speak(self, n: int) -> None:
        text, self._text = self._text[:n], self._text[n:]
        if text.strip():
            self._queue(_Speak(text, self._context_id, self._epoch))

    def _queue(self, job: _Speak | _Done) -> None:
        self._queued += 1
        self._jobs_in.send_nowait(job)

    # -- the worker: one synthesis at a time, in order -------------------------------------------

    async def _worker(self) -> None:
        async for job in self._jobs_out:
            self._queued -= 1
            if isinstance(job, _Speak):
                if job.epoch == self._epoch:
                    await self._synthesize(job)
                continue
            self.queue_control(proto.encode_done(job.context_id))
            self._ended()
            self._offset, self._fresh = 0.0, True
            if self.stray_after_done(self._utterance - 1, job.context_id):
                self.queue_control(proto.encode_chunk(STRAY_PCM, job.context_id))
            if job.eos:
                self.queue_close(1000, "eos")
                return

    async def _synthesize(self, job: _Speak) -> None:
        cid = job.context_id or ""
        if self._fresh:  # the first synthesis since the last done: a new utterance
            self._fresh = False
            self._utterance += 1
            self._chunks = 0
            if self.stray_before(self._utterance - 1, cid):
                self.queue_control(proto.encode_chunk(STRAY_PCM, f"stray-{cid}"))
        index = self._utterance - 1
        fault = self.failed_utterance(index, cid)
        if fault is not None and not fault.after_audio:
            self.queue_control(proto.encode_error(fault.message))
            return
        config = self.rime
        try:
            speech = await self.core.synthesizer.synthesize(
                job.text, voice=config.voice, sample_rate=config.sample_rate,
                speaking_rate=config.speaking_rate,
            )  # fmt: skip
        except Exception as exc:  # the connection stays usable, as at Rime
            self.queue_control(proto.encode_error(f"synthesis failed: {exc}"))
            return
        if self._offset == 0.0:
            await self.delay_first_audio(index, cid)
        offset = self._offset
        chunks = proto.cut(speech.pcm, speech.words, config.sample_rate, self.config.chunk_ms)
        if fault is not None:  # after_audio: its first chunk, then the error (the rest is lost)
            chunks = chunks[:1]
        for pcm, words in chunks:
            await self.pace_audio(index, cid)
            await self.wait_while_stalled(index, cid, self._chunks)
            await self.acquire_audio()
            if job.epoch != self._epoch:  # cleared: the rest of this synthesis is abandoned
                self.release_audio()
                return
            self._chunks += 1
            self.queue_audio(proto.encode_chunk(pcm, job.context_id))
            if words:
                self.queue_control(proto.encode_timestamps(words, offset, job.context_id))
        if fault is not None:
            self.queue_control(proto.encode_error(fault.message))
            return
        self._offset += speech.duration
