"""One call of the quota's Lua script: its arguments, and its reply parsed (:class:`Reply`).

:class:`ScriptCaller` knows a quota's keys, channels and settings, and nothing of leases: the
quota (:mod:`trio_tts.fleet.quota`) decides what to ask and what a reply means for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs
import coredis
import coredis.exceptions
import trio

from .._core.errors import InvalidOptions, TTSError
from .script import HEADER, KEY_NAMES, SCRIPT

__all__ = ["UNREACHABLE", "QuotaUnavailable", "Reply", "ScriptCaller"]

#: What a Redis round trip raises when Redis cannot be reached (with ``trio.TooSlowError``).
UNREACHABLE = (coredis.exceptions.ConnectionError, TimeoutError, OSError)


class QuotaUnavailable(TTSError):
    """The shared quota (Redis) could not be reached and no fallback share is configured."""


@attrs.frozen
class Reply:
    """What every reply says about the fleet, then one answer per id asked about."""

    epoch: str
    capacity: int
    holders: int
    waiting: int
    guard: float  # seconds until the restart guard ends (0: none)
    answers: tuple[str, ...]


class ScriptCaller:
    """Calls the script for the quota ``name`` on behalf of the process ``holder``."""

    def __init__(
        self,
        client: coredis.Redis[str],
        name: str,
        holder: str,
        capacity: int | None,
        *,
        lease_ttl: float,
        waiter_ttl: float,
        op_timeout: float,
    ) -> None:
        self.name = name
        self.capacity = capacity  # None: adopt the stored one
        self.op_timeout = op_timeout
        #: Script calls made so far (each one round trip).
        self.round_trips = 0
        self._script = client.register_script(SCRIPT)
        base = f"trio-tts:{{{name}}}:"
        self.keys = tuple(base + k for k in KEY_NAMES)
        self.wake_channel = f"{base}wake:{holder}"
        self.queued_channel = f"{base}queued"
        self._wake_prefix = f"{base}wake:"
        self._ttls = (str(round(lease_ttl * 1000)), str(round(waiter_ttl * 1000)))
        self._nonces = (f"{holder}.{n}" for n in itertools.count(1))

    async def __call__(
        self, op: str, args: Sequence[str], *, epoch: str, releases: Sequence[str] = ()
    ) -> Reply:
        """One round trip (at most ``op_timeout``: ``trio.TooSlowError``).

        Raises:
            InvalidOptions: the capacity stored in Redis differs, or none is stored yet.
        """
        with trio.fail_after(self.op_timeout):
            self.round_trips += 1
            reply: list[Any] = await self._script(
                keys=self.keys,
                args=[
                    op,
                    "" if self.capacity is None else str(self.capacity),
                    *self._ttls,
                    epoch,
                    next(self._nonces),
                    self._wake_prefix,
                    self.queued_channel,
                    str(len(releases)),
                    *releases,
                    *args,
                ],
            )
        if reply[0] == "MISMATCH":
            raise InvalidOptions(
                f"quota {self.name!r}: capacity {self.capacity} configured here but"
                f" {reply[2]} stored in Redis"
            )
        if reply[0] == "NOCAP":
            raise InvalidOptions(f"quota {self.name!r}: no capacity stored in Redis yet")
        if self.capacity is None:
            self.capacity = int(reply[2])
        return Reply(
            epoch=reply[1],
            capacity=int(reply[2]),
            holders=int(reply[3]),
            waiting=int(reply[4]),
            guard=int(reply[5]) / 1000,
            answers=tuple(reply[HEADER:]),
        )
