"""One reconnect policy for the whole pool: backoff, circuit breaker, remembered rejections.

Synchronous, no I/O, time passed in (like the allocator). The pool reports every connection
outcome here and asks, before each dial, how long to wait and whether to dial at all.

* **Backoff.** Each consecutive failure (a connect error, or a connection that died before
  delivering any audio) doubles the jittered delay before the next dial, from ``base`` up to
  ``maximum``; dials made while failing are spaced by that delay, not launched at once. A
  ``Retry-After`` from the server replaces the delay, capped at ``retry_after_max``. The first
  audio on any connection resets it.
* **Circuit.** After ``threshold`` consecutive failures the circuit opens: callers fail at
  once with :class:`CircuitOpen` (carrying the last cause) until the delay has passed; then
  one trial dial is allowed (half-open) and its outcome closes or re-opens the circuit.
* **Rejections.** A 401/403, or a fatal close code right after the upgrade, is remembered
  for ``cooldown`` seconds: every call fails at once with the same status, no handshake.
"""

from __future__ import annotations

import random

from .errors import CircuitOpen, ConnectionLost, HandshakeRejected

__all__ = ["FATAL_CLOSE_CODES", "ReconnectPolicy", "fresh_error", "is_fatal"]

#: Close codes that no retry with the same credential can fix: 1008 (policy violation) and
#: the 4xxx codes providers use for authentication (4001/4003, 4401/4403).
FATAL_CLOSE_CODES = frozenset({1008, 4001, 4003, 4401, 4403})


def is_fatal(
    error: ConnectionLost, *, before_audio: bool, codes: frozenset[int] = FATAL_CLOSE_CODES
) -> bool:
    """True when ``error`` condemns the credential: HTTP 401/403, or a fatal close code (one
    of ``codes``: the provider's) on a connection that never delivered audio."""
    if isinstance(error, HandshakeRejected):
        return error.is_auth_error
    return before_audio and error.code in codes


class ReconnectPolicy:
    """The pool's reconnect state (see the module docstring). Owned by one pool."""

    def __init__(
        self,
        *,
        base: float,
        maximum: float,
        threshold: int,
        retry_after_max: float,
        cooldown: float,
    ) -> None:
        self.base = base
        self.maximum = maximum
        self.threshold = threshold
        self.retry_after_max = retry_after_max
        self.cooldown = cooldown
        self.failures = 0
        self.last_error: ConnectionLost | None = None
        self._next_dial = 0.0
        self._delay = 0.0
        self._exact = False
        self._trial = False
        self._rejected: HandshakeRejected | ConnectionLost | None = None
        self._rejected_until = 0.0

    # -- outcomes --------------------------------------------------------------------------

    def failed(self, error: ConnectionLost, now: float, *, fatal: bool = False) -> None:
        """A dial failed, or a connection died before any audio.

        Failures that arrive while the pool is already backing off (connections that died
        together, dials made before the last failure) are one round: only a failure after
        the current delay has run out raises the exponent.
        """
        self.last_error = error
        self._trial = False
        if fatal:
            self._rejected = error
            self._rejected_until = now + self.cooldown
        retry_after = getattr(error, "retry_after", None)
        if self.failures and now <= self._next_dial:
            if retry_after is not None:
                delay = min(float(retry_after), self.retry_after_max)
                self._next_dial = max(self._next_dial, now + delay)
                self._exact = True
            return
        self.failures += 1
        ceiling = min(self.maximum, self.base * 2 ** (self.failures - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        self._exact = retry_after is not None
        if retry_after is not None:
            delay = min(float(retry_after), self.retry_after_max)
        self._delay = delay
        self._next_dial = now + delay

    def succeeded(self) -> None:
        """Audio arrived on a connection: the service works; reset everything but a
        remembered rejection (that one needs a new credential or the cool-down)."""
        if self.failures:
            self.failures = 0
            self.last_error = None
            self._delay = 0.0
            self._trial = False

    def forget_rejection(self) -> None:
        self._rejected = None
        self._rejected_until = 0.0

    # -- questions -------------------------------------------------------------------------

    def refusal(self, now: float) -> ConnectionLost | None:
        """The error a new caller should get at once, or None to let it queue."""
        if self._rejected is not None:
            if now < self._rejected_until:
                return fresh_error(self._rejected)
            self.forget_rejection()
        if (
            self.failures >= self.threshold
            and self.last_error is not None
            and (now < self._next_dial or self._trial)
        ):
            return CircuitOpen(self.failures, self.last_error, max(0.0, self._next_dial - now))
        return None

    def next_dial(self, now: float) -> float:
        """When a dial asked for at ``now`` may start: at once while healthy; while failing,
        after the current delay, spread (jittered) over one more delay so a burst of dials
        does not arrive as a herd. With the circuit open, this is the one trial dial."""
        if not self.failures:
            return now
        if self.failures >= self.threshold:
            self._trial = True
        start = max(now, self._next_dial)
        # The server said when (Retry-After): dial exactly then.
        return start if self._exact else start + random.uniform(0.0, self._delay / 2)


def fresh_error(error: ConnectionLost) -> ConnectionLost:
    """A new exception with the same type and meaning: one object must not be raised in
    several tasks (their tracebacks would pile up on it)."""
    if isinstance(error, CircuitOpen):
        return CircuitOpen(error.failures, error.cause, error.retry_in)
    if isinstance(error, HandshakeRejected):
        return HandshakeRejected(error.status, error.reason, retry_after=error.retry_after)
    return ConnectionLost(str(error), code=error.code)
