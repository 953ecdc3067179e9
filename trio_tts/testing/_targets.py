"""Which protocol the local server speaks, and the provider that talks to it.

One entry per protocol: the fixtures of :mod:`trio_tts.testing` are parametrised by its
name (``tts_protocol``): Inworld's bidirectional protocol, Rime's ``/ws3``, ElevenLabs'
``multi-stream-input`` and Cartesia's ``/tts/websocket``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import CartesiaProvider, ElevenLabsProvider, InworldProvider, Provider, RimeProvider

if TYPE_CHECKING:
    from ..server import LocalServer, ServerConfig

__all__ = ["PROTOCOLS", "provider_for", "server_config_for"]

#: Protocols a test may ask for (``tts_protocol``); the local server speaks them all.
PROTOCOLS = ("inworld", "rime", "elevenlabs", "cartesia")
#: The account concurrency the Cartesia provider and server share here (Cartesia's Scale plan:
#: 15 contexts at once, the local server's default).
CARTESIA_CONCURRENCY = 15


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")


def server_config_for(protocol: str = "inworld") -> ServerConfig:
    """A deterministic (tone) server configuration for ``protocol``, with the provider's
    documented limits (Inworld: 20 connections, 5 contexts each; ElevenLabs: 5 contexts per
    connection, a sixth closes the socket with 1008; Cartesia: 15 contexts at once for the
    account)."""
    from ..server import ServerConfig

    _check(protocol)
    return ServerConfig(synthesizer="tone")


def provider_for(
    server: LocalServer, protocol: str = "inworld", *, api_key: str | None = None
) -> Provider[Any]:
    """The provider that talks to ``server`` (a TCP or in-memory one) in ``protocol``."""
    _check(protocol)
    if protocol == "rime":
        return RimeProvider(api_key, url=server.rime_url)
    if protocol == "elevenlabs":
        return ElevenLabsProvider(api_key, url=server.elevenlabs_url)
    if protocol == "cartesia":
        return CartesiaProvider(api_key, url=server.cartesia_url, concurrency=CARTESIA_CONCURRENCY)
    return InworldProvider(api_key, url=server.ws_url)
