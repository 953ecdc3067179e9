"""The context-level faults of a Rime session: which utterances a rule selects, and when.

A mixin of :class:`~.session.RimeSession`; the connection-level faults (drop, black hole,
stall, close, bad frame) come with the shared sender (:mod:`.._websocket`). Rime has no
contexts to create, so the rules select *utterances* — the runs of audio between two
``done`` — numbered per connection from 0: ``when(n, context_id)``. ``context_error``
answers a selected utterance's synthesis with an ``error`` frame, ``delay_first_audio`` /
``first_audio_delay`` hold its first audio, and ``stray_audio`` sends a chunk tagged with an
id the client never used (``"unknown"``) or with the utterance that just got its ``done``
(``"closed"``). The rules' ``connections`` predicates are not consulted here.
"""

from __future__ import annotations

import trio

from .._core import Core
from .._faults import ContextErrorFault

__all__ = ["RimeContextFaults"]


class RimeContextFaults:
    """Fault decisions for the utterances of one connection (the session sets ``core``)."""

    core: Core

    def failed_utterance(self, utterance: int, context_id: str) -> ContextErrorFault | None:
        """ContextErrorFault: the rule that answers this synthesis with an ``error``."""
        fault = self.core.faults.context_error
        return fault if fault is not None and fault.when(utterance, context_id) else None

    def stray_before(self, utterance: int, context_id: str) -> bool:
        """StrayAudio(kind="unknown"): a chunk for an unknown id as this utterance starts."""
        stray = self.core.faults.stray_audio
        return stray is not None and stray.kind == "unknown" and stray.when(utterance, context_id)

    def stray_after_done(self, utterance: int, context_id: str | None) -> bool:
        """StrayAudio(kind="closed"): a chunk for this utterance's id after its ``done``."""
        stray = self.core.faults.stray_audio
        return (
            stray is not None and stray.kind == "closed" and context_id is not None
            and stray.when(utterance, context_id)
        )  # fmt: skip

    async def delay_first_audio(self, utterance: int, context_id: str) -> None:
        """``first_audio_delay`` and DelayFirstAudio: hold the utterance's first audio."""
        faults = self.core.faults
        delay = faults.first_audio_delay
        rule = faults.delay_first_audio
        if rule is not None and rule.when(utterance, context_id):
            delay = max(delay, rule.seconds)
        if delay > 0:
            await trio.sleep(delay)
