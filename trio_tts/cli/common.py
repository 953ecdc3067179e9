"""What the ``trio-tts`` commands share: sentences, service URLs, where the audio comes from
(:class:`Target`, :func:`endpoints`), the progress line and how an error ends a command
(:func:`explain_error`)."""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TextIO

import attrs

from .._core.errors import HandshakeRejected, InvalidOptions, RequestRejected, TTSError
from .._core.text import split_text
from ..providers.cartesia.http import DEFAULT_HTTP_URL as CARTESIA_HTTP_URL
from ..providers.cartesia.provider import DEFAULT_URL as CARTESIA_URL
from ..providers.cartesia.provider import WS_PATH as CARTESIA_WS_PATH
from ..providers.elevenlabs.http import DEFAULT_HTTP_URL as ELEVENLABS_HTTP_URL
from ..providers.elevenlabs.provider import DEFAULT_URL as ELEVENLABS_URL
from ..providers.rime.http import DEFAULT_HTTP_URL as RIME_HTTP_URL
from ..providers.rime.provider import DEFAULT_URL as RIME_URL

if TYPE_CHECKING:
    from ..server import LocalServer

__all__ = [
    "Progress",
    "Target",
    "cartesia_urls",
    "elevenlabs_urls",
    "endpoints",
    "explain_error",
    "provider_urls",
    "rime_urls",
    "service_urls",
    "split_sentences",
]

_WS_PATH = "/tts/v1/voice:streamBidirectional"
_PIECE_CHARS = 1000  # Inworld's limit per send_text; also well under voice:stream's 2000
_SENTENCE = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


# ------------------------------------------------------------------------------ text and URLs


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` into sentences (each at most 1000 characters), whitespace collapsed.

    Example::

        split_sentences("Hi there.  How are\\nyou? Fine!")
        # ['Hi there.', 'How are you?', 'Fine!']
    """
    flat = " ".join(text.split())
    pieces: list[str] = []
    for sentence in _SENTENCE.split(flat):
        for piece in split_text(sentence, _PIECE_CHARS):
            if piece.strip():
                pieces.append(piece.strip())
    return pieces


def _split_url(url: str) -> tuple[urllib.parse.SplitResult, bool]:
    """``(parts, secure)`` of a ``--url`` given as http(s):// or ws(s)://.

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise InvalidOptions(f"--url: {url!r} is not an http(s):// or ws(s):// URL with a host")
    return parts, parts.scheme in ("https", "wss")


def service_urls(url: str) -> tuple[str, str]:
    """``(websocket_url, http_base_url)`` for a ``--url`` given in either form.

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    parts, secure = _split_url(url)
    path = parts.path if parts.scheme.startswith("ws") and parts.path not in ("", "/") else _WS_PATH
    ws = f"{'wss' if secure else 'ws'}://{parts.netloc}{path}"
    return ws, f"{'https' if secure else 'http'}://{parts.netloc}"


def rime_urls(url: str) -> tuple[str, str]:
    """``(websocket_url, http_url)`` of Rime for a ``--url`` given in either form: the
    WebSocket is ``/ws3`` (unless the ws(s) URL names a path), the HTTP endpoint
    ``/v1/rime-tts`` (unless the http(s) URL names a path).

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    if url in (RIME_URL, RIME_HTTP_URL):
        return RIME_URL, RIME_HTTP_URL
    parts, secure = _split_url(url)
    named = parts.path not in ("", "/")
    ws_path = parts.path if named and parts.scheme.startswith("ws") else "/ws3"
    http_path = parts.path if named and parts.scheme.startswith("http") else "/v1/rime-tts"
    return (
        f"{'wss' if secure else 'ws'}://{parts.netloc}{ws_path}",
        f"{'https' if secure else 'http'}://{parts.netloc}{http_path}",
    )


def elevenlabs_urls(url: str) -> tuple[str, str]:
    """``(websocket_url, http_api_base)`` of ElevenLabs for a ``--url`` given in either form:
    the service's root (``/v1`` is added), an API base (``http://127.0.0.1:8765/v1``) or the
    WebSocket endpoint template (``.../text-to-speech/{voice_id}/multi-stream-input``, whose
    HTTP side is then the root's ``/v1``).

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    if url in (ELEVENLABS_URL, ELEVENLABS_HTTP_URL):
        return ELEVENLABS_URL, ELEVENLABS_HTTP_URL
    parts, secure = _split_url(url)
    path = parts.path.rstrip("/")
    endpoint = "{voice_id}" in path or "/text-to-speech/" in path
    base = "/v1" if endpoint or not path else path
    ws_path = path if endpoint else base + "/text-to-speech/{voice_id}/multi-stream-input"
    return (
        f"{'wss' if secure else 'ws'}://{parts.netloc}{ws_path}",
        f"{'https' if secure else 'http'}://{parts.netloc}{base}",
    )


def cartesia_urls(url: str) -> tuple[str, str]:
    """``(websocket_url, http_base_url)`` of Cartesia for a ``--url`` given in either form: the
    WebSocket is ``/tts/websocket`` (unless the ws(s) URL names a path), the HTTP API is the
    root (``/voices``, ``/tts/bytes``).

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    if url in (CARTESIA_URL, CARTESIA_HTTP_URL):
        return CARTESIA_URL, CARTESIA_HTTP_URL
    parts, secure = _split_url(url)
    named = parts.scheme.startswith("ws") and parts.path not in ("", "/")
    ws = f"{'wss' if secure else 'ws'}://{parts.netloc}{parts.path if named else CARTESIA_WS_PATH}"
    return ws, f"{'https' if secure else 'http'}://{parts.netloc}"


#: Per provider: its ``--url`` → ``(websocket_url, http_url)``.
_URLS = {
    "inworld": service_urls,
    "rime": rime_urls,
    "elevenlabs": elevenlabs_urls,
    "cartesia": cartesia_urls,
}


def provider_urls(provider: str, url: str) -> tuple[str, str]:
    """``(websocket_url, http_url)`` of ``provider`` for a ``--url`` given in either form.

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    return _URLS[provider](url)


# ------------------------------------------------------------------------- where audio comes from


@attrs.frozen
class Target:
    """Where the audio comes from: a URL (with an optional key) or an embedded server."""

    url: str | None
    api_key: str | None
    synthesizer: str = "espeak"
    provider: str = "inworld"

    def describe(self) -> str:
        if self.url is None:
            return f"embedded local server ({self.synthesizer})"
        return urllib.parse.urlsplit(self.url).netloc


@asynccontextmanager
async def endpoints(target: Target) -> AsyncIterator[tuple[str, str, LocalServer | None]]:
    """Yield ``(ws_url, http_base, server)``, running an embedded local server for the block
    when ``target`` has no URL (``server`` is ``None`` otherwise)."""
    if target.url is not None:
        yield (*provider_urls(target.provider, target.url), None)
        return
    from ..server import ServerConfig, open_server

    config = ServerConfig(synthesizer="tone" if target.synthesizer == "tone" else "espeak")
    async with open_server(config) as server:
        local = {
            "inworld": (server.ws_url, server.base_url),
            "rime": (server.rime_url, server.rime_http_url),
            "elevenlabs": elevenlabs_urls(server.elevenlabs_url),
            "cartesia": (server.cartesia_url, server.base_url),
        }
        yield (*local[target.provider], server)


# ------------------------------------------------------------------------------------ progress


class Progress:
    """Progress on stderr: one redrawn line on a terminal, else at most a line a second."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.audio = 0.0
        self._tty = stream is not None and stream.isatty()
        self._last = -math.inf
        self._start = time.monotonic()
        self._finished = False

    def restart(self) -> None:
        self._start = time.monotonic()

    def update(self, done: int, audio: float, *, final: bool = False) -> None:
        """Record progress; draw it when due. The last line is drawn once, by the ``final``
        update (not by an ordinary update that happens to reach the total first)."""
        self.done, self.audio = done, audio
        if self.stream is None or self._finished:
            return
        now = time.monotonic()
        if not final and (done >= self.total or now - self._last < (0.1 if self._tty else 1.0)):
            return
        self._finished = final
        self._last = now
        line = (
            f"[{done}/{self.total} sentences] {audio:.1f} s of audio in {now - self._start:.1f} s"
        )
        if self._tty:
            self.stream.write(f"\r{line}" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def explain_error(exc: BaseException) -> tuple[int, str]:
    """The exit status and one-line message for an error that ended a command (2 for
    invalid options, 130 after Ctrl-C, else 1; an empty message says nothing to print)."""
    leaves = _leaves(exc)
    if any(isinstance(e, KeyboardInterrupt) for e in leaves):
        return 130, "interrupted"  # not the errors the interrupt caused on its way out
    chosen = next((e for e in leaves if isinstance(e, TTSError)), None) or next(
        (e for e in leaves if isinstance(e, OSError)), leaves[0]
    )
    if isinstance(chosen, BrokenPipeError):
        return 1, ""  # stdout went away (``trio-tts voices | head``): nothing to say
    if isinstance(chosen, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(chosen, InvalidOptions):
        return 2, str(chosen)
    if isinstance(chosen, HandshakeRejected | RequestRejected) and chosen.is_auth_error:
        return 1, f"{chosen} (check the API key)"
    if isinstance(chosen, TTSError):
        return 1, str(chosen)
    if isinstance(chosen, OSError):
        where = f": {chosen.filename}" if chosen.filename else ""
        return 1, f"{chosen.strerror or chosen}{where}"
    return 1, f"internal error: {type(chosen).__name__}: {chosen} (--debug shows the traceback)"
