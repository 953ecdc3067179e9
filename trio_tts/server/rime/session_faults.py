"""The context-level faults of a Rime session: which utterances a rule selects, and when.

A mixin of :class:`~.session.RimeSession`; the connection-level faults (drop, black hole,
stall, close, bad frame) come with the shared sender (:mod:`.._websocket`). Rime has no
contexts to create, so the rules select *utterances* — the runs of audio between two
``done`` — numbered per connection from 0: ``when(n, context_id)``, on the connections
``connections(index)`` picks, read from ``core.faults`` at the moment a rule could fire.

* ``context_error`` answers a selected utterance's synthesis with an ``error`` frame: before
  any of its audio, or with ``after_audio=True`` after its first chunk (the rest of that
  synthesis is abandoned). Rime's errors carry a message only: ``code`` is not sent.
* ``delay_first_audio`` / ``first_audio_delay`` hold its first audio; ``pace_audio`` spaces
  its chunks; ``stall_context`` holds its audio after ``after_frames`` chunks (and so its
  ``done``: one worker serves the connection in order) while the rule selects it.
* ``stray_audio`` sends a chunk tagged with an id the client never used (``"unknown"``) or
  with the utterance that just got its ``done`` (``"closed"``).
"""

from __future__ import annotations

import trio

from .._core import Core
from .._faults import ContextErrorFault

__all__ = ["RimeContextFaults"]


class RimeContextFaults:
    """Fault decisions for the utterances of one connection (the session sets ``core`` and
    ``index``, the connection's number in accept order)."""

    core: Core
    index: int

    def failed_utterance(self, utterance: int, context_id: str) -> ContextErrorFault | None:
        """ContextErrorFault: the rule that answers this synthesis with an ``error``."""
        fault = self.core.faults.context_error
        if (
            fault is not None and fault.connections(self.index)
            and fault.when(utterance, context_id)
        ):  # fmt: skip
            return fault
        return None

    def stray_before(self, utterance: int, context_id: str) -> bool:
        """StrayAudio(kind="unknown"): a chunk for an unknown id as this utterance starts."""
        stray = self.core.faults.stray_audio
        return (
            stray is not None and stray.kind == "unknown" and stray.connections(self.index)
            and stray.when(utterance, context_id)
        )  # fmt: skip

    def stray_after_done(self, utterance: int, context_id: str | None) -> bool:
        """StrayAudio(kind="closed"): a chunk for this utterance's id after its ``done``."""
        stray = self.core.faults.stray_audio
        return (
            stray is not None and stray.kind == "closed" and context_id is not None
            and stray.connections(self.index) and stray.when(utterance, context_id)
        )  # fmt: skip

    async def delay_first_audio(self, utterance: int, context_id: str) -> None:
        """``first_audio_delay`` and DelayFirstAudio: hold the utterance's first audio."""
        faults = self.core.faults
        delay = faults.first_audio_delay
        rule = faults.delay_first_audio
        if rule is not None and rule.connections(self.index) and rule.when(utterance, context_id):
            delay = max(delay, rule.seconds)
        if delay > 0:
            await trio.sleep(delay)

    async def pace_audio(self, utterance: int, context_id: str) -> None:
        """PaceAudio: wait ``interval`` before each chunk of the selected utterances."""
        rule = self.core.faults.pace_audio
        if rule is not None and rule.connections(self.index) and rule.when(utterance, context_id):
            await trio.sleep(rule.interval)

    async def wait_while_stalled(self, utterance: int, context_id: str, chunks: int) -> None:
        """StallContext: hold the utterance's next chunk (``chunks`` sent so far) while the
        rule selects it."""
        while True:
            rule = self.core.faults.stall_context
            if (
                rule is None or chunks < rule.after_frames or not rule.connections(self.index)
                or not rule.when(utterance, context_id)
            ):  # fmt: skip
                return
            await self.core.wait_faults_changed(at_most=0.05)
