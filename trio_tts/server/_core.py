"""The server's configuration, statistics and shared mutable state (no I/O here)."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs
import trio

from ._faults import Faults
from ._synth import EspeakSynthesizer, Synthesizer, ToneSynthesizer

__all__ = ["ServerConfig", "ServerStatistics"]


@attrs.define(kw_only=True)
class ServerConfig:
    """How a local server behaves. Limits default to Inworld's documented ones (Cartesia's
    have their own ``cartesia_*`` fields).

    ElevenLabs' endpoints have their own context limit: ``elevenlabs_max_contexts`` per socket
    (5, ElevenLabs' documented limit; None for none). One more context is answered as
    ``elevenlabs_limit_action`` says: ``"close"`` (as ElevenLabs is reported to do: a
    ``max_active_conversations`` error naming no context, then a 1008 close that fails every
    context on the socket) or ``"context-error"`` (the error names the refused context and the
    socket stays open).

    ``synthesizer`` is ``"espeak"`` (real speech), ``"tone"`` (deterministic, free; see
    :func:`~trio_tts.server.tone_pcm`) or any :class:`~trio_tts.server.Synthesizer`.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    synthesizer: Literal["espeak", "tone"] | Synthesizer = "espeak"
    max_connections: int = 20
    max_contexts_per_connection: int = 5
    max_text_chars: int = 1000
    max_http_text_chars: int = 2000
    chunk_ms: int = 200
    inactivity_timeout: float = 600.0
    elevenlabs_max_contexts: int | None = 5
    elevenlabs_limit_action: Literal["close", "context-error"] = "close"
    retry_after: float = 1.0
    #: Cartesia (``/tts/websocket``): contexts open at once across all its connections (the
    #: plan's concurrency limit: Free 2, Pro 3, Startup 5, Scale 15; None: no limit) and on
    #: one connection (None: Cartesia documents no such limit), how long an idle context
    #: lives after its last audio, and the idle-connection timeout (5 minutes).
    cartesia_concurrency: int | None = 15
    cartesia_contexts_per_connection: int | None = None
    cartesia_context_expiry: float = 1.0
    cartesia_inactivity_timeout: float = 300.0
    faults: Faults = attrs.field(factory=Faults)

    def make_synthesizer(self) -> Synthesizer:
        if self.synthesizer == "espeak":
            return EspeakSynthesizer()
        if self.synthesizer == "tone":
            return ToneSynthesizer()
        if isinstance(self.synthesizer, str):
            raise ValueError(f"unknown synthesizer {self.synthesizer!r} (use 'espeak' or 'tone')")
        return self.synthesizer


@attrs.frozen
class ServerStatistics:
    """A snapshot of what the server has seen (``server.statistics()``).

    ``violations`` lists every time a client went over a provider limit (too many connections
    or contexts, text too long); a well-behaved pool leaves it empty. Fault-injected
    rejections are counted in ``handshakes_rejected`` but are not violations.
    ``handshake_times`` holds when each WebSocket upgrade request arrived (``trio``'s clock),
    refused or not, in order.
    """

    connections_open: int
    peak_connections: int
    connections_accepted: int
    contexts_open: int
    peak_contexts_per_connection: int
    contexts_created: int
    handshakes_rejected: dict[int, int]
    frames_sent: int
    violations: tuple[str, ...]
    handshake_times: tuple[float, ...] = ()


class Core:
    """State shared by the ASGI app, every session and the :class:`LocalServer` handle."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = config.faults
        self.synthesizer = config.make_synthesizer()
        self.connections_open = 0
        self.peak_connections = 0
        self.connections_accepted = 0
        self.contexts_open = 0
        self.peak_contexts_per_connection = 0
        self.contexts_created = 0
        self.handshakes_rejected: dict[int, int] = {}
        self.frames_sent = 0
        self.violations: list[str] = []
        self.fault_rejections = 0
        #: Upgrade requests seen (for ``handshakes`` fault predicates) and when each came.
        self.handshakes = 0
        self.handshake_times: list[float] = []
        self._faults_changed = trio.Event()
        self._connection_closed = trio.Event()
        self.sessions: set[Any] = set()  # the live sessions (_websocket.WebSocketSession)

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.faults_changed()

    def faults_changed(self) -> None:
        """Wake sessions stalled by a fault so they re-read ``faults``."""
        self._faults_changed.set()
        self._faults_changed = trio.Event()

    async def wait_faults_changed(self, *, at_most: float = math.inf) -> None:
        """Return when faults were replaced, or after ``at_most`` seconds (for in-place edits)."""
        with trio.move_on_after(at_most):
            await self._faults_changed.wait()

    def connection_closed(self) -> None:
        self.connections_open -= 1
        self._connection_closed.set()
        self._connection_closed = trio.Event()

    async def wait_connection_closed(self) -> None:
        await self._connection_closed.wait()

    def reject(self, status: int) -> None:
        self.handshakes_rejected[status] = self.handshakes_rejected.get(status, 0) + 1

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            connections_open=self.connections_open,
            peak_connections=self.peak_connections,
            connections_accepted=self.connections_accepted,
            contexts_open=self.contexts_open,
            peak_contexts_per_connection=self.peak_contexts_per_connection,
            contexts_created=self.contexts_created,
            handshakes_rejected=dict(self.handshakes_rejected),
            frames_sent=self.frames_sent,
            violations=tuple(self.violations),
            handshake_times=tuple(self.handshake_times),
        )
