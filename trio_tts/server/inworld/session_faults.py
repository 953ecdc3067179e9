"""The context-level faults of an Inworld session: which contexts a rule selects, and when.

A mixin of :class:`~.session.InworldSession`; the connection-level faults (drop, black hole,
stall, close, bad frame) come with the shared sender (:mod:`.._websocket`). Each rule
selects contexts by ``connections(index)`` and ``when(create_index, context_id)``, and is
read from ``core.faults`` at the moment it could fire, so a change at runtime applies at once.
"""

from __future__ import annotations

from typing import Any

import trio

from .._core import Core
from .._faults import CloseAfterContexts, ContextErrorFault

__all__ = ["InworldContextFaults"]


class InworldContextFaults:
    """Fault decisions for the contexts of one connection (the session sets the fields)."""

    core: Core
    index: int

    def refused_create(self, create_index: int, context_id: str) -> ContextErrorFault | None:
        """ContextErrorFault: the rule that answers this ``create`` with an error status."""
        fault = self.core.faults.context_error
        if (
            fault is not None and not fault.after_audio and fault.connections(self.index)
            and fault.when(create_index, context_id)
        ):  # fmt: skip
            return fault
        return None

    def failed_generation(self, ctx: Any) -> ContextErrorFault | None:
        """ContextErrorFault(after_audio=True): the rule that fails this context's flush."""
        fault = self.core.faults.context_error
        if (
            fault is not None and fault.after_audio and fault.connections(self.index)
            and fault.when(ctx.index, ctx.id)
        ):  # fmt: skip
            return fault
        return None

    def close_after_create(self, creates: int) -> CloseAfterContexts | None:
        """CloseAfterContexts: the rule that closes the connection after this create."""
        close = self.core.faults.close
        if close is not None and close.connections(self.index) and creates == close.after_contexts:
            return close
        return None

    def stray_after_create(self, create_index: int, context_id: str) -> bool:
        """StrayAudio(kind="unknown"): send audio for a never-created id after this create."""
        stray = self.core.faults.stray_audio
        return (
            stray is not None and stray.kind == "unknown" and stray.connections(self.index)
            and stray.when(create_index, context_id)
        )  # fmt: skip

    def stray_after_close(self, ctx: Any) -> bool:
        """StrayAudio(kind="closed"): send audio for this context after its close."""
        stray = self.core.faults.stray_audio
        return (
            stray is not None and stray.kind == "closed" and stray.connections(self.index)
            and stray.when(ctx.index, ctx.id)
        )  # fmt: skip

    async def delay_first_audio(self, ctx: Any) -> None:
        """``first_audio_delay`` and DelayFirstAudio: hold the context's first audio."""
        faults = self.core.faults
        delay = faults.first_audio_delay
        rule = faults.delay_first_audio
        if rule is not None and rule.connections(self.index) and rule.when(ctx.index, ctx.id):
            delay = max(delay, rule.seconds)
        if delay > 0:
            await trio.sleep(delay)

    async def pace_audio(self, ctx: Any) -> None:
        """PaceAudio: wait ``interval`` before each audio frame of the selected contexts."""
        rule = self.core.faults.pace_audio
        if rule is not None and rule.connections(self.index) and rule.when(ctx.index, ctx.id):
            await trio.sleep(rule.interval)

    async def wait_while_stalled(self, ctx: Any) -> None:
        """StallContext: hold the context's next audio frame while the rule selects it."""
        while True:
            rule = self.core.faults.stall_context
            if (
                rule is None or ctx.audio_frames < rule.after_frames
                or not rule.connections(self.index) or not rule.when(ctx.index, ctx.id)
            ):  # fmt: skip
                return
            await self.core.wait_faults_changed(at_most=0.05)
