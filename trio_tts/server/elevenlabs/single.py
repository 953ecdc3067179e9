"""``WS /v1/text-to-speech/{voice_id}/stream-input``: ElevenLabs' single-context socket.

The first message opens the one context; ``{"text": ""}`` ends the input: the rest is spoken,
``{"isFinal": true}`` sent and the socket closed with 1000 (the official SDK's
``convert_realtime`` returns only then). See :mod:`.session` for the rest.
"""

from __future__ import annotations

import re

from . import proto
from .config import ElevenLabsError
from .session import Context, ElevenLabsSession

__all__ = ["StreamInputSession"]


class StreamInputSession(ElevenLabsSession):
    """``/v1/text-to-speech/{voice_id}/stream-input`` (see the module docstring)."""

    PATH_PATTERN = re.compile(r"/v1/text-to-speech/(?P<voice_id>[^/]+)/stream-input")
    MULTI = False
    DEFAULT_FORMAT = "mp3_44100_128"

    def dispatch(self, message: proto.Message) -> None:
        ctx = self.contexts.get(None)
        if ctx is None:
            if self.creates:
                return  # the input already ended: the socket closes after the isFinal
            self.creates += 1
            ctx = self.create(None, message)
        elif message.has_voice_settings and message.voice_settings != ctx.voice_settings:
            raise ElevenLabsError(
                "invalid_message",
                "voice_settings field must be provided in the first message and then either "
                "be not provided or not change.",
            )
        if ctx.closing:
            return
        self.feed(ctx, message)
        if message.text == "" and not message.flush:  # the end of input
            self.close_context(ctx)

    def finished(self, ctx: Context) -> None:
        self.queue_close(1000, "")
