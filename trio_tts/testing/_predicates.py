"""Ready-made fault triggers: predicates on an index (connection, create or handshake).

Every fault rule of :mod:`trio_tts.server` takes its trigger as a plain function —
``connections(index)``, ``when(create_index, context_id)``, ``handshakes(attempt)`` — and
these helpers build such functions. All of them look only at the first argument (the index,
counted from 0), so one helper serves every kind of trigger::

    Faults(context_error=ContextErrorFault(when=nth(3)))       # the 3rd create on a connection
    Faults(drop=DropConnection(after_frames=5, connections=first(2)))
    Faults(accept_then_close=AcceptThenClose(handshakes=always))
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["always", "at", "every", "first", "fraction", "never", "nth"]

Predicate = Callable[..., bool]


def always(*_args: object) -> bool:
    """Every time."""
    return True


def never(*_args: object) -> bool:
    """Never (a rule that is set but dormant)."""
    return False


def nth(n: int) -> Predicate:
    """Only the ``n``-th (1-based: ``nth(3)`` is "on the 3rd", index 2)."""
    if n < 1:
        raise ValueError(f"nth: {n!r} must be >= 1")
    return lambda index, *_: bool(index == n - 1)


def first(n: int) -> Predicate:
    """The first ``n`` (indices ``0 .. n-1``)."""
    return lambda index, *_: bool(index < n)


def at(*indices: int) -> Predicate:
    """Exactly these 0-based indices (``at(0)``: the first connection only)."""
    chosen = frozenset(indices)
    return lambda index, *_: index in chosen


def every(n: int, *, offset: int = 0) -> Predicate:
    """Every ``n``-th, starting at index ``offset``."""
    if n < 1:
        raise ValueError(f"every: {n!r} must be >= 1")
    return lambda index, *_: bool(index >= offset and (index - offset) % n == 0)


def fraction(p: float, *, seed: int | None = 0) -> Predicate:
    """A random ``p`` share, reproducible from ``seed`` (each call draws once)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"fraction: {p!r} is outside 0..1")
    rng = random.Random(seed)
    return lambda *_: rng.random() < p
