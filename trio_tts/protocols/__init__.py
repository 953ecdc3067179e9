"""Sans-io provider codecs: pure functions of frames and commands, no trio, no sockets.

A :class:`Provider` describes one TTS service: its WebSocket URL and headers, its limits, and
a factory for a per-connection :class:`ClientCodec` that turns commands into text frames and
frames into typed events (:mod:`trio_tts._events`). The pool never asks which provider it
serves; everything provider-specific lives behind these two interfaces.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

from .._events import Event
from .._options import VoiceOptions

__all__ = ["ClientCodec", "Provider"]


class ClientCodec(Protocol):
    """The client side of one connection's protocol (one instance per WebSocket).

    Each command method returns the text frames to send, in order. ``receive`` decodes one
    frame into zero or more events and raises :class:`~trio_tts.ProtocolError` for a frame it
    cannot decode — it never skips one silently.
    """

    def create(self, context_id: str, options: VoiceOptions) -> list[str]: ...
    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]: ...
    def flush(self, context_id: str) -> list[str]: ...
    def close(self, context_id: str) -> list[str]: ...
    def cancel(self, context_id: str) -> list[str]: ...
    def receive(self, frame: str | bytes) -> list[Event]: ...


class Provider(Protocol):
    """What the pool needs to know about a TTS service.

    ``headers`` carries the credential: callers must never log or format it. ``repr`` of a
    provider never shows it.
    """

    #: Short name for logs and errors ("inworld", "rime").
    name: str
    #: Contexts the service allows on one connection at once.
    contexts_per_connection: int
    #: Longest text one ``send_text`` command may carry.
    max_text_chars: int

    def connection_key(self, options: VoiceOptions) -> Hashable:
        """Contexts whose keys are equal may share a connection (Rime: the URL's query)."""
        ...

    def url(self, options: VoiceOptions) -> str:
        """The WebSocket URL to open for a context with ``options``."""
        ...

    def headers(self) -> Sequence[tuple[str, str]]:
        """Handshake headers, including the credential."""
        ...

    def new_codec(self) -> ClientCodec:
        """A fresh codec for one new connection."""
        ...
