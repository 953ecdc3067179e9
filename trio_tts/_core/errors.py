"""The exception hierarchy. Every error the engine raises is a :class:`TTSError`.

No message built here ever contains a credential: callers pass status codes and
server-provided text only, and :func:`redact` scrubs what a server might echo back.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator

import attrs

__all__ = [
    "CapacityTimeout",
    "CircuitOpen",
    "ConnectionLost",
    "ContextFailed",
    "HandshakeRejected",
    "InvalidOptions",
    "PoolClosed",
    "ProtocolError",
    "RequestRejected",
    "SlowConsumer",
    "TTSError",
    "connect_failure",
    "retry_after_seconds",
]


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header value (delta-seconds or an HTTP date) in seconds from now;
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def connect_failure(exc: BaseException) -> str | None:
    """Why a connection attempt failed, in the system's words: ``"connection refused"`` when
    it was refused, else the ``strerror`` of the errors behind ``exc`` (joined by ``"; "``);
    ``None`` when no error in the chain says.

    ``trio.open_tcp_stream`` raises a plain ``OSError("all attempts to connect to h:p
    failed")`` with no ``strerror``, caused by a group of one error per address tried; the
    reason is in that group (and httpx wraps the whole chain twice more). The chain is
    followed through ``__cause__``, else ``__context__`` (httpcore re-raises ``from None``).
    """
    reasons: dict[str, None] = {}
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        error = todo.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        strerror = getattr(error, "strerror", None)
        if isinstance(error, ConnectionRefusedError):
            reasons["connection refused"] = None
        elif isinstance(error, BaseExceptionGroup):
            todo.extend(error.exceptions)
        elif strerror:
            reasons[str(strerror)] = None
        elif error.__cause__ is not None:
            todo.append(error.__cause__)
        elif error.__context__ is not None:
            todo.append(error.__context__)
    return "; ".join(reasons) or None


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
        self.reason = reason
        self.retry_after = retry_after
        text = f"WebSocket handshake rejected with HTTP {status}"
        if reason:
            text += f": {reason}"
        super().__init__(text, code=None)

    @property
    def is_auth_error(self) -> bool:
        """True for 401/403: retrying with the same credentials cannot help."""
        return self.status in (401, 403)


class CircuitOpen(ConnectionLost):
    """Connections to the service kept failing, so the pool stopped dialling for a while.

    Raised at once (no handshake) until the backoff delay has passed.

    Attributes:
        failures: consecutive connection failures so far.
        cause: the last failure (a :class:`ConnectionLost` or :class:`HandshakeRejected`).
        retry_in: seconds until the pool will try a connection again.
    """

    def __init__(self, failures: int, cause: ConnectionLost, retry_in: float) -> None:
        self.failures = failures
        self.cause = cause
        self.retry_in = retry_in
        super().__init__(
            f"circuit open after {failures} connection failures (retry in {retry_in:.1f} s);"
            f" last: {cause}",
            code=cause.code,
        )


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


# -- secrets ---------------------------------------------------------------------------------
#
# Every client hands its API key to :func:`register_api_key`; :func:`redact` then scrubs that
# key (raw, base64, URL-encoded) from anything a server echoes back. The registry is a coat
# check: registering a secret hands in a coat (the same secret again only adds a ticket),
# :func:`unregister_secret` returns one ticket and the coat leaves with its last ticket. The
# room holds :data:`MAX_SECRETS` coats; when a new one comes in and it is full, the coat handed
# in longest ago leaves, so a process that creates clients with ever new keys and never
# releases them still holds a bounded set. The one regular expression covering them all is
# rebuilt only when :func:`redact` runs after a change, not on every registration.

#: How many distinct secrets :func:`redact` remembers at most (the most recently registered).
MAX_SECRETS = 256


@attrs.frozen
class SecretStatistics:
    """What a :class:`SecretRegistry` holds (never the secrets themselves).

    ``secrets`` distinct secrets, ``references`` registrations not yet unregistered,
    ``evicted`` secrets dropped by the capacity, ``pattern_builds`` times the pattern was
    compiled."""

    secrets: int
    references: int
    capacity: int
    evicted: int
    pattern_builds: int


def _forms(secret: str) -> set[str]:
    forms = {
        secret,
        base64.b64encode(secret.encode()).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    return {f for f in forms if f}


class SecretRegistry:
    """The secrets :meth:`redact` removes: reference-counted, at most ``capacity`` of them
    (least recently registered out first), the pattern compiled lazily. Thread-safe.

    Example::

        secrets = SecretRegistry()
        with secrets.registered("sk-123456"):
            secrets.redact("key sk-123456")   # "key ***"
        secrets.redact("key sk-123456")       # unchanged: the secret was released
    """

    def __init__(self, capacity: int = MAX_SECRETS) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._refs: OrderedDict[str, int] = OrderedDict()  # secret -> registrations, LRU first
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._stale = False  # the secrets changed since the pattern was built
        self._evicted = 0
        self._builds = 0

    def register(self, secret: str) -> None:
        """Remember ``secret`` (one more reference); secrets under 4 characters are ignored."""
        if len(secret) < 4:
            return
        with self._lock:
            count = self._refs.get(secret, 0)
            self._refs[secret] = count + 1
            self._refs.move_to_end(secret)
            if count == 0:
                self._stale = True
            while len(self._refs) > self.capacity:
                self._refs.popitem(last=False)
                self._evicted += 1

    def unregister(self, secret: str) -> None:
        """Drop one reference to ``secret``; the last one forgets it. A secret that is not
        registered (never, too short, already evicted) is ignored."""
        with self._lock:
            count = self._refs.get(secret)
            if count is None:
                return
            if count > 1:
                self._refs[secret] = count - 1
            else:
                del self._refs[secret]
                self._stale = True

    @contextlib.contextmanager
    def registered(self, secret: str) -> Iterator[None]:
        """Hold a reference to ``secret`` for the ``with`` block."""
        self.register(secret)
        try:
            yield
        finally:
            self.unregister(secret)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret (raw, base64, URL-encoded) replaced."""
        if self._stale:
            self._rebuild()
        pattern = self._pattern
        return text if pattern is None else pattern.sub("***", text)

    def _rebuild(self) -> None:
        with self._lock:
            if not self._stale:
                return
            forms: set[str] = set()
            for secret in self._refs:
                forms |= _forms(secret)
            longest_first = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, longest_first))) if forms else None
            self._stale = False
            self._builds += 1

    def statistics(self) -> SecretStatistics:
        with self._lock:
            return SecretStatistics(
                secrets=len(self._refs),
                references=sum(self._refs.values()),
                capacity=self.capacity,
                evicted=self._evicted,
                pattern_builds=self._builds,
            )

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<SecretRegistry secrets={s.secrets}/{s.capacity} references={s.references}>"


#: The process's registry, behind the module functions below.
SECRETS = SecretRegistry()


def register_secret(secret: str) -> None:
    """Remember ``secret`` so that :func:`redact` removes it (and its common encodings).

    Each call is one reference; pair it with :func:`unregister_secret` when the owner of the
    secret closes (or use :func:`registered_secret`). Unpaired calls are bounded by
    :data:`MAX_SECRETS`."""
    SECRETS.register(secret)


def unregister_secret(secret: str) -> None:
    """Give back one :func:`register_secret` reference; the last one forgets the secret."""
    SECRETS.unregister(secret)


def registered_secret(secret: str) -> contextlib.AbstractContextManager[None]:
    """``with registered_secret(key): ...`` — :func:`register_secret` for the block."""
    return SECRETS.registered(secret)


def register_api_key(api_key: str | None) -> None:
    """Check a client's ``api_key`` argument and, when there is one, :func:`register_secret` it.

    Raises:
        InvalidOptions: ``api_key`` is neither ``None`` nor a non-empty string.
    """
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidOptions("api_key: must be a non-empty string or None")
        register_secret(api_key)


def unregister_api_key(api_key: str | None) -> None:
    """Undo one :func:`register_api_key` (at the client's close); ``None`` does nothing."""
    if isinstance(api_key, str):
        unregister_secret(api_key)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret (raw, base64, URL-encoded) replaced."""
    return SECRETS.redact(text)
