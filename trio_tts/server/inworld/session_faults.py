"""The faults a session applies to its contexts and, frame by frame, to its connection.

A mixin of :class:`~._session.Session`: a context's worker calls :meth:`_delay_first_audio`
and :meth:`_stall_context_if_faulted`; the sender calls :meth:`_stall_if_faulted` and
:meth:`_close_if_faulted` before each frame and :meth:`_after_send_faults` after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._core import Core
from .._faults import BadFrame
from .._tcp import drop_tcp, write_raw

__all__ = ["SenderFaults"]

#: An unmasked server text frame whose payload is not UTF-8 (for the TCP "utf8" fault).
_RAW_BAD_UTF8 = b"\x81\x04\xff\xfe\xfd\xfc"


class SenderFaults:
    """Fault state and actions of one connection's sender (the session sets the fields)."""

    core: Core
    index: int
    scope: dict[str, Any]
    frames_sent: int
    _send: Callable[[dict[str, Any]], Awaitable[None]]
    _nursery: trio.Nursery
    _link: Any
    _blackholed: bool
    _bad_frame_sent: bool
    _drop_at: tuple[object, int] | None

    # -- context faults (the context's worker) ---------------------------------------------

    async def _delay_first_audio(self, ctx: Any) -> None:
        faults = self.core.faults
        delay = faults.first_audio_delay
        rule = faults.delay_first_audio
        if rule is not None and rule.connections(self.index) and rule.when(ctx.index, ctx.id):
            delay = max(delay, rule.seconds)
        if delay > 0:
            await trio.sleep(delay)

    async def _stall_context_if_faulted(self, ctx: Any) -> None:
        while True:
            rule = self.core.faults.stall_context
            if (
                rule is None or ctx.audio_frames < rule.after_frames
                or not rule.connections(self.index) or not rule.when(ctx.index, ctx.id)
            ):  # fmt: skip
                return
            await self.core.wait_faults_changed(at_most=0.05)

    # -- connection faults (the sender) ------------------------------------------------------

    async def _close_if_faulted(self) -> bool:
        """CloseConnection: a close frame instead of the next frame. True if it closed."""
        rule = self.core.faults.close_connection
        if (
            rule is None or not rule.connections(self.index)
            or self.frames_sent < rule.after_frames
        ):  # fmt: skip
            return False
        await self._send({"type": "websocket.close", "code": rule.code, "reason": rule.reason})
        self._nursery.cancel_scope.cancel()
        return True

    async def _stall_if_faulted(self) -> None:
        while True:
            hole = self.core.faults.blackhole
            if (
                self._blackholed or (hole is not None and hole.connections(self.index)
                and self.frames_sent >= hole.after_frames)
            ):  # fmt: skip
                # For good: the sender sleeps until the client's close ends the session.
                self._blackholed = True
                if self._link is not None:
                    self._link.blackhole()
                await trio.sleep_forever()
            stall = self.core.faults.stall
            if (
                stall is None
                or not stall.connections(self.index)
                or self.frames_sent < stall.after_frames
            ):
                return
            await self.core.wait_faults_changed(at_most=0.05)

    async def _after_send_faults(self) -> None:
        faults = self.core.faults
        bad = faults.bad_frame
        if (
            bad is not None and not self._bad_frame_sent and bad.connections(self.index)
            and self.frames_sent >= bad.after_frames
        ):  # fmt: skip
            self._bad_frame_sent = True
            await self._send_bad_frame(bad)
        drop = faults.drop
        if drop is not None and drop.connections(self.index):
            if self._drop_at is None or self._drop_at[0] is not drop:
                after = drop.after_frames
                self._drop_at = (drop, after(self.index) if callable(after) else after)
            if self.frames_sent >= self._drop_at[1]:
                if self._link is not None:
                    self._link.abort()
                else:
                    drop_tcp(self.scope)
                self._nursery.cancel_scope.cancel()
                await trio.lowlevel.checkpoint()

    async def _send_bad_frame(self, bad: BadFrame) -> None:
        if bad.kind == "binary":
            await self._send({"type": "websocket.send", "bytes": b"\x00\x01binary"})
        elif bad.kind == "oversize":
            await self._send({"type": "websocket.send", "text": "x" * bad.size})
        elif bad.kind == "utf8":
            if self._link is not None:
                # The in-memory link checks UTF-8 like the wire: lone surrogates cannot encode.
                await self._send({"type": "websocket.send", "text": "\udcff\udcfe"})
            else:
                write_raw(self.scope, _RAW_BAD_UTF8)
        else:
            await self._send({"type": "websocket.send", "text": '{"result": {"contextId": '})
