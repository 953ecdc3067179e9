"""The exception hierarchy. Every error the engine raises is a :class:`TTSError`.

No message built here ever contains a credential: callers pass status codes and
server-provided text only, and :func:`redact` scrubs what a server might echo back.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

__all__ = [
    "CapacityTimeout",
    "ConnectionLost",
    "ContextFailed",
    "HandshakeRejected",
    "InvalidOptions",
    "PoolClosed",
    "ProtocolError",
    "RequestRejected",
    "SlowConsumer",
    "TTSError",
]


class TTSError(Exception):
    """Base class of every error raised by trio_tts."""


class InvalidOptions(TTSError, ValueError):
    """An option was out of range or of the wrong type. Raised before any network I/O."""


class PoolClosed(TTSError):
    """The pool (or the context's connection) was closed before the operation could run."""


class CapacityTimeout(TTSError, TimeoutError):
    """No context slot became free before the caller's deadline."""


class ConnectionLost(TTSError):
    """The WebSocket carrying a context failed (socket error, close frame, dead peer).

    Only the contexts that were on that connection see this error.

    Attributes:
        code: the WebSocket close code, when the connection ended with a close frame.
    """

    def __init__(self, message: str = "connection lost", *, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class HandshakeRejected(ConnectionLost):
    """The server refused the WebSocket upgrade with an HTTP status (401, 403, 429, 503 ...).

    Attributes:
        status: the HTTP status code.
        retry_after: seconds from a ``Retry-After`` header, when the server sent one.
    """

    def __init__(self, status: int, reason: str = "", retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        text = f"WebSocket handshake rejected with HTTP {status}"
        if reason:
            text += f": {reason}"
        super().__init__(text, code=None)

    @property
    def is_auth_error(self) -> bool:
        """True for 401/403: retrying with the same credentials cannot help."""
        return self.status in (401, 403)


class RequestRejected(TTSError):
    """A one-shot HTTP request (``trio_tts.http``) was answered with an error status (401,
    403, 429, 5xx ...).

    Not a :class:`HandshakeRejected`: no WebSocket was involved, so nothing was connected and
    nothing was lost. ``except (HandshakeRejected, RequestRejected)`` catches both refusals;
    ``status``, ``retry_after`` and ``is_auth_error`` mean the same on both.

    Attributes:
        status: the HTTP status code.
        retry_after: seconds from a ``Retry-After`` header, when the server sent one.
        grpc_code: the gRPC code from the error body, when it had one.
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        retry_after: float | None = None,
        *,
        request: str = "request",
        grpc_code: int | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.grpc_code = grpc_code
        text = f"{request} rejected with HTTP {status}"
        super().__init__(f"{text}: {reason}" if reason else text)

    @property
    def is_auth_error(self) -> bool:
        """True for 401/403: retrying with the same credentials cannot help."""
        return self.status in (401, 403)


class ContextFailed(TTSError):
    """The server reported an error status for one context.

    Attributes:
        code: the provider's status code (Inworld uses gRPC codes: 5 not found, 8 resource
            exhausted, 10 aborted ...); ``None`` where the provider has no codes.
        message: the server's message, with anything that looks like a credential removed.
    """

    def __init__(self, code: int | None, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"context failed (code {code}): {message}")


class ProtocolError(ConnectionLost):
    """The server sent a frame the codec cannot decode (malformed JSON, unknown shape)."""


class SlowConsumer(TTSError):
    """A context's consumer fell so far behind that its bounded event buffer overflowed.

    The context is cancelled on the server rather than blocking other contexts on the socket.
    """


_SECRETS: set[str] = set()
_SECRET_PATTERN: re.Pattern[str] | None = None


def register_secret(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact` removes it (and its common encodings)."""
    global _SECRET_PATTERN
    if len(secret) < 4:
        return
    forms = {
        secret,
        base64.b64encode(secret.encode()).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    _SECRETS.update(f for f in forms if f)
    _SECRET_PATTERN = re.compile("|".join(re.escape(s) for s in sorted(_SECRETS, key=len)[::-1]))


def register_api_key(api_key: str | None) -> None:
    """Check a client's ``api_key`` argument and, when there is one, :func:`register_secret` it.

    Raises:
        InvalidOptions: ``api_key`` is neither ``None`` nor a non-empty string.
    """
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidOptions("api_key: must be a non-empty string or None")
        register_secret(api_key)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret (raw, base64, URL-encoded) replaced."""
    if _SECRET_PATTERN is None:
        return text
    return _SECRET_PATTERN.sub("***", text)
