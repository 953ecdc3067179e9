"""Which protocol the local server speaks, and the provider that talks to it.

One entry per protocol: the fixtures of :mod:`trio_tts.testing` are parametrised by its
name (``tts_protocol``). Rime's ``/ws3`` server is not built yet: its entry is where it goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import InworldProvider, Provider

if TYPE_CHECKING:
    from ..server import LocalServer, ServerConfig

__all__ = ["PROTOCOLS", "ProtocolNotServed", "provider_for", "server_config_for"]

#: Protocols a test may ask for (``tts_protocol``). Only Inworld is served today.
PROTOCOLS = ("inworld", "rime")


class ProtocolNotServed(NotImplementedError):
    """The local server does not speak this protocol yet (the fixtures skip the test)."""


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")
    if protocol == "rime":
        # The Rime /ws3 server is another issue; when it lands, add its ServerConfig and
        # provider (trio_tts.RimeProvider(url=server.rime_url)) here.
        raise ProtocolNotServed("the local server does not speak Rime /ws3 yet")


def server_config_for(protocol: str = "inworld") -> ServerConfig:
    """A deterministic (tone) server configuration for ``protocol``, with the provider's
    documented limits (Inworld: 20 connections, 5 contexts each)."""
    from ..server import ServerConfig

    _check(protocol)
    return ServerConfig(synthesizer="tone")


def provider_for(
    server: LocalServer, protocol: str = "inworld", *, api_key: str | None = None
) -> Provider:
    """The provider that talks to ``server`` (a TCP or in-memory one) in ``protocol``."""
    _check(protocol)
    return InworldProvider(api_key, url=server.ws_url)
