"""Sans-io provider codecs: pure functions of frames and commands, no trio, no sockets.

A :class:`Provider` describes one TTS service: its WebSocket URL and headers, its limits, its
options class, and a factory for a per-connection :class:`ClientCodec` that turns commands
into text frames and frames into typed events (:mod:`trio_tts._core.events`). The pool never asks
which provider it serves; everything provider-specific lives behind these interfaces.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

from typing_extensions import TypeVar

from .events import Event
from .options import Options

__all__ = ["AccountLimits", "ClientCodec", "OptionsT", "Provider"]


#: A provider's options class (``Pool[OptionsT]``, ``Context[OptionsT]``). Unparameterised,
#: the :class:`Options` protocol: the core names no provider.
OptionsT = TypeVar("OptionsT", bound=Options, default=Options)


class ClientCodec(Protocol):
    """The client side of one connection's protocol (one instance per WebSocket).

    Each command method returns the text frames to send, in order. ``receive`` decodes one
    frame into zero or more events and raises :class:`~trio_tts.ProtocolError` for a frame it
    cannot decode — it never skips one silently. ``options`` is the provider's options class.
    """

    def create(self, context_id: str, options: Any) -> list[str]: ...
    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]: ...
    def flush(self, context_id: str) -> list[str]: ...
    def close(self, context_id: str) -> list[str]: ...
    def cancel(self, context_id: str) -> list[str]: ...
    def receive(self, frame: str | bytes) -> list[Event]: ...

    def take_events(self) -> list[Event]:
        """Events the codec produced by itself while encoding commands, oldest first (e.g. a
        Rime utterance closed before any text was sent is finished at once, without the
        server). The connection routes them right after sending the command's frames."""
        ...

    def goodbye(self) -> list[str]:
        """Frames to send before a graceful close (Rime: ``eos``; Inworld: none). When there
        are any, the connection waits up to ``goodbye_timeout`` for the server's answer."""
        ...


class Provider(Protocol[OptionsT]):
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
    #: The pool's default ``max_session_duration`` (Rime: 300 s; None: sessions never expire).
    max_session_duration: float | None

    def default_options(self) -> OptionsT:
        """The options of contexts when the pool is given none."""
        ...

    def connection_key(self, options: OptionsT) -> Hashable:
        """Contexts whose keys are equal may share a connection (Rime: the URL's query).

        Raises:
            InvalidOptions: ``options`` are not this provider's, or ask for something its
                WebSocket cannot do. The pool calls this before any wait or I/O.
        """
        ...

    def url(self, options: OptionsT) -> str:
        """The WebSocket URL to open for a context with ``options``."""
        ...

    def headers(self) -> Sequence[tuple[str, str]]:
        """Handshake headers, including the credential."""
        ...

    def new_codec(self) -> ClientCodec:
        """A fresh codec for one new connection."""
        ...


@runtime_checkable
class AccountLimits(Protocol):
    """Limits a provider may declare beyond :class:`Provider`'s (optional: the pool looks for
    them with ``isinstance``; Cartesia has them, Inworld and Rime do not).

    Some services count contexts per *account*, not per connection, and do not always answer
    a cancel: these say how the pool stays within such limits.
    """

    #: Contexts the account may run at once: the pool's own gate (when it is given no
    #: ``quota``) holds the smaller of this and ``max_connections × contexts_per_connection``
    #: (None: no account-wide limit beyond the pool's settings).
    max_contexts: int | None
    #: Seconds after which a cancelled context the server has not confirmed counts as gone,
    #: measured from the last frame the server sent for it: the service documents that it
    #: ends such a context by then (Cartesia: 1 s after its last audio). Its slot comes back
    #: without retiring the connection. None: only the server's confirmation, or
    #: ``stale_close_timeout`` (which retires the connection), frees it.
    cancel_expiry: float | None
