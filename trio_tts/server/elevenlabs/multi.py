"""``WS /v1/text-to-speech/{voice_id}/multi-stream-input``: ElevenLabs' multi-context socket.

The message rules are in :mod:`.session`'s docstring (contexts, flushes, ``close_context`` and
its ``isFinal``, ``close_socket``, the context limit); this module decides which context a
message is for, creates contexts (the limit and the create faults) and closes the socket on
``close_socket``.
"""

from __future__ import annotations

import re

from .._asgi import ASGIReceive, ASGISend, Scope
from .._core import Core
from .._faults import STRAY_PCM
from . import proto
from .config import ElevenLabsError
from .session import Context, ElevenLabsSession

__all__ = ["DEFAULT_CONTEXT", "MultiStreamSession"]

DEFAULT_CONTEXT = "default"
_LIMIT_MESSAGE = (
    "Maximum simultaneous contexts per WebSocket connection exceeded ({n}). "
    "Please close an existing context before opening a new one."
)


class MultiStreamSession(ElevenLabsSession):
    """``/v1/text-to-speech/{voice_id}/multi-stream-input`` (see the module docstring)."""

    PATH_PATTERN = re.compile(r"/v1/text-to-speech/(?P<voice_id>[^/]+)/multi-stream-input")
    MULTI = True
    DEFAULT_FORMAT = "mp3_44100_128"

    def __init__(
        self, core: Core, index: int, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(core, index, scope, receive, send)
        self._refused: set[str] = set()  # over the limit or faulted: ignored until closed

    def dispatch(self, message: proto.Message) -> None:
        if message.close_socket:
            self._close_socket()
            return
        cid = message.context_id if message.context_id is not None else DEFAULT_CONTEXT
        if cid in self._refused:
            if message.close_context:
                self._refused.discard(cid)
            return
        ctx = self.contexts.get(cid)
        if ctx is None:
            if not message.text:  # a flush, keep-alive or close for no context
                self.context_error(cid, "context_not_found", f"Context {cid} does not exist.")
                return
            ctx = self._open(cid, message)
            if ctx is None:
                return
        elif ctx.closing:
            self.context_error(cid, "context_closing", f"Context {cid} is being closed.")
            return
        self.feed(ctx, message)
        if message.close_context:
            self.close_context(ctx)

    def _open(self, cid: str, message: proto.Message) -> Context | None:
        limit = self.config.elevenlabs_max_contexts
        index = self.creates
        self.creates += 1
        if limit is not None and len(self.contexts) >= limit:
            self.core.violation(
                f"connection {self.index}: context {len(self.contexts) + 1} (limit {limit})"
            )
            text = _LIMIT_MESSAGE.format(n=limit)
            if self.config.elevenlabs_limit_action == "close":
                self.fatal(ElevenLabsError("max_active_conversations", text))
            else:
                self._refused.add(cid)
                self.queue_control(proto.encode_error(
                    "max_active_conversations", text, code=1008, context_id=cid
                ))  # fmt: skip
            return None
        fault = self.refused_create(index, cid)
        if fault is not None:
            self._refused.add(cid)
            self.context_error(cid, "internal_error", fault.message,
                               with_id=not fault.without_context_id)  # fmt: skip
            return None
        ctx = self.create(cid, message)
        close = self.close_after_create(self.creates)
        if close is not None:
            self.queue_close(close.code, close.reason)
        if self.stray_after_create(index, cid):
            self.queue_control(proto.encode_audio(STRAY_PCM, None, f"stray-{cid}", multi=True))
        return ctx

    def _close_socket(self) -> None:
        self._ending = True
        contexts = list(self.contexts.values())
        for ctx in contexts:
            ctx.send.send_nowait(("end", None))
        self.nursery.start_soon(self._close_when_done, contexts)

    async def _close_when_done(self, contexts: list[Context]) -> None:
        for ctx in contexts:
            await ctx.done.wait()
        self.queue_close(1000, "")
