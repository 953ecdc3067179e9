"""Sans-io provider codecs: pure functions of frames and commands, no trio, no sockets.

A :class:`Provider` describes one TTS service: its WebSocket URL and headers, its limits, its
options class, and a factory for a per-connection :class:`ClientCodec` that turns commands
into text frames and frames into typed events (:mod:`trio_tts._core.events`). The pool never asks
which provider it serves; everything provider-specific lives behind these interfaces.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

from typing_extensions import TypeVar

from .events import Event
from .options import Options

__all__ = ["ClientCodec", "OptionsT", "Provider"]


#: A provider's options class (``Pool[OptionsT]``, ``Context[OptionsT]``). Unparameterised,
#: the :class:`Options` protocol: the core names no provider.
OptionsT = TypeVar("OptionsT", bound=Options, default=Options)


class ClientCodec(Protocol):
    """The client side of one connection's protocol (one instance per WebSocket).

    Each command method returns the text frames to send, in order. ``receive`` decodes one
    frame into zero or more events and raises :class:`~trio_tts.ProtocolError` for a frame it
    cannot decode — it never skips one silently — or :class:`~trio_tts.ConnectionLost` for a
    server error that ends the whole connection (ElevenLabs' errors naming no context): the
    connection then ends with that error. ``options`` is the provider's options class.
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

    def keepalive(self) -> list[str]:
        """Frames that keep alive the open contexts that sent nothing since the previous call
        (ElevenLabs: ``{"text": "", "context_id"}``; Inworld, Rime: none). The connection
        calls it every ``Provider.keepalive_interval``, in order with the commands."""
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
    #: The pool's default ``max_contexts``: the account's cap on contexts at once over all
    #: connections (ElevenLabs: its concurrency); None: ``max_connections`` × per connection.
    max_contexts: int | None
    #: Seconds between the connection's calls to :meth:`ClientCodec.keepalive` (None: never).
    keepalive_interval: float | None
    #: Close codes that, on a connection that never delivered audio, condemn the credential
    #: (remembered like a 401); ``backoff.FATAL_CLOSE_CODES`` unless the service uses one of
    #: them for passing trouble (ElevenLabs closes with 1008 for everything).
    fatal_close_codes: frozenset[int]
    #: Seconds after which a cancelled context the server has not confirmed counts as gone,
    #: measured from the last frame the server sent for it: the service documents that it
    #: ends such a context by then (Cartesia: 1 s after its last audio). Its slot comes back
    #: without retiring the connection. None (Inworld, Rime, ElevenLabs): only the server's
    #: confirmation, or ``stale_close_timeout`` (which retires the connection), frees it.
    cancel_expiry: float | None

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
