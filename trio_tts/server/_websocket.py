"""One accepted WebSocket of either protocol: its sender, audio budget, watchdog and the
connection-level faults.

A protocol's session (:class:`~.inworld.session.InworldSession`,
:class:`~.rime.session.RimeSession`) subclasses :class:`WebSocketSession` and supplies the
reader, :meth:`~WebSocketSession.read`: it takes the client's frames
(:meth:`~WebSocketSession.receive_frame`), decides what they mean and queues the replies
(:meth:`~WebSocketSession.queue_control`, :meth:`~WebSocketSession.queue_audio`). What every
session shares, all in one nursery that lives exactly as long as the WebSocket:

* the **sender** is the only task that writes to the socket. It drains one FIFO of frames
  (so per-context order is kept), applies the frame-count faults (:class:`~._faults.Stall`,
  :class:`~._faults.BlackHole`, :class:`~._faults.CloseConnection`,
  :class:`~._faults.BadFrame`, :class:`~._faults.DropConnection`) and drops queued audio of
  a cancelled context. Audio frames hold a token of a per-connection budget until sent: that
  is the back-pressure from a slow client to the synthesis (control frames need none);
* the **watchdog** closes a connection that heard nothing for ``inactivity_timeout``, after
  the protocol's last word (:meth:`~WebSocketSession.inactivity_frame`);
* the protocol's own workers, started in :attr:`~WebSocketSession.nursery`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import trio

from ._asgi import ASGIReceive, ASGISend, Scope, error_body, header
from ._core import Core
from ._faults import BadFrame
from ._tcp import drop_tcp, write_raw

__all__ = ["AUDIO_BUDGET", "Outgoing", "WebSocketSession"]

#: Audio frames a connection may have queued but not sent (the back-pressure window).
AUDIO_BUDGET = 32
#: An unmasked server text frame whose payload is not UTF-8 (for the TCP "utf8" fault).
_RAW_BAD_UTF8 = b"\x81\x04\xff\xfe\xfd\xfc"


@attrs.define(eq=False)
class Outgoing:
    """One entry of the sender's queue: a frame, or a close (``close=(code, reason)``).

    ``context`` is the protocol's context the frame belongs to, if any: its queued audio is
    dropped once ``context.cancelled`` is true. ``audio`` frames hold a budget token."""

    frame: str | bytes
    context: Any = None
    audio: bool = False
    close: tuple[int, str] | None = None


class WebSocketSession:
    """Serves one accepted WebSocket until the client leaves or a fault ends it.

    Subclasses set :attr:`PATH` and :attr:`AUTH_SCHEME`, implement :meth:`read` and
    :meth:`inactivity_frame`, and may override :meth:`refusal` and :meth:`closed`."""

    #: The WebSocket path the session serves, and the ``Authorization`` scheme of its key.
    PATH: ClassVar[str]
    AUTH_SCHEME: ClassVar[str]
    #: Seconds a queued close waits for the client's own close before the session ends (0:
    #: none). A protocol whose close code the client must see after it sent more messages
    #: (ElevenLabs' 1008 refusals) sets it: otherwise unread client messages can turn the TCP
    #: close into a reset that takes the close frame with it.
    CLOSE_LINGER: ClassVar[float] = 0.0
    nursery: trio.Nursery  # set by run(): the session's tasks live in it

    def __init__(
        self, core: Core, index: int, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        self.core = core
        self.config = core.config
        self.index = index
        self.scope = scope
        self.frames_sent = 0
        self.close_sent = False  # the sender sent a close frame (nothing more goes out)
        #: Seconds without a client frame before :meth:`on_inactivity` (a protocol may take
        #: it from its query, as ElevenLabs does).
        self.inactivity_timeout = self.config.inactivity_timeout
        self.last_activity = trio.current_time()
        self._receive = receive
        self._send = send
        self._out_send, self._out_receive = trio.open_memory_channel[Outgoing](math.inf)
        self._budget = trio.Semaphore(AUDIO_BUDGET)
        # Fault state: the in-memory transport's link (None under hypercorn), a black hole,
        # a bad frame sent, and each DropConnection rule's frame count for this connection.
        self._link: Any = scope.get("trio_tts.link")
        self._blackholed = False
        self._bad_frame_sent = False
        self._drop_at: tuple[object, int] | None = None

    # -- what a protocol supplies ----------------------------------------------------------

    @staticmethod
    def refusal(scope: Scope) -> str | tuple[int, str] | None:
        """Why to refuse this upgrade (checked before accepting): a message (HTTP 400), a
        ``(status, message)``, or None."""
        return None

    @classmethod
    def authorized(cls, scope: Scope, key: str | None) -> bool:
        """Whether the upgrade may go ahead as far as the key goes (``key``: the server's, or
        None for any). By default ``Authorization: <AUTH_SCHEME> <key>``; a protocol that
        checks its key after accepting (ElevenLabs: the key may come in the first message)
        returns True and checks it itself."""
        return key is None or header(scope, b"authorization") == f"{cls.AUTH_SCHEME} {key}"

    @classmethod
    def error_body(cls, status: int, message: str) -> dict[str, Any]:
        """The JSON body of an upgrade refused with HTTP ``status`` (Google-style by default,
        as Inworld's gateway writes it)."""
        return error_body(status, message)

    async def read(self) -> None:
        """Read and apply the client's frames until it leaves (the session's own task)."""
        raise NotImplementedError

    def inactivity_frame(self) -> str:
        """The frame sent before the watchdog closes an idle connection."""
        raise NotImplementedError

    def on_inactivity(self) -> None:
        """The watchdog fired: by default :meth:`inactivity_frame`, then a 1000 close."""
        self.queue_control(self.inactivity_frame())
        self.queue_close(1000, "inactivity timeout")

    def closed(self) -> None:
        """Called once the WebSocket ended (release what the session held)."""

    def frame_sent(self, out: Outgoing) -> None:
        """Called by the sender right after ``out`` went out on the socket (not for frames a
        fault or a cancel dropped); a protocol may time things from it."""

    # -- what a protocol uses --------------------------------------------------------------

    async def receive_frame(self) -> str | bytes | None:
        """The client's next frame (text as ``str``, binary as ``bytes``); None once it left.

        Every frame counts as activity for the watchdog; frames that arrive once the
        connection is a black hole are read and dropped (nothing comes back from one)."""
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                return None
            if message["type"] != "websocket.receive":
                continue
            self.last_activity = trio.current_time()
            if self._blackholed:
                continue
            text = message.get("text")
            return text if text is not None else bytes(message.get("bytes") or b"")

    def queue_control(self, frame: str, context: Any = None) -> None:
        """Queue a frame that needs no budget (replies, errors, timestamps)."""
        self._out_send.send_nowait(Outgoing(frame, context))

    async def acquire_audio(self) -> None:
        """Wait for a budget token: at most :data:`AUDIO_BUDGET` audio frames wait unsent."""
        await self._budget.acquire()

    def release_audio(self) -> None:
        """Give back a token taken by :meth:`acquire_audio` for a frame never queued."""
        self._budget.release()

    def queue_audio(self, frame: str, context: Any = None) -> None:
        """Queue an audio frame; it holds the token taken by :meth:`acquire_audio`."""
        self._out_send.send_nowait(Outgoing(frame, context, audio=True))

    def queue_close(self, code: int, reason: str) -> None:
        """Close the WebSocket after everything already queued."""
        self._out_send.send_nowait(Outgoing("", close=(code, reason)))

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Queue a close frame after what is already queued (graceful server shutdown)."""
        self.queue_close(code, reason)

    # -- the session's life ----------------------------------------------------------------

    async def run(self) -> None:
        self.core.sessions.add(self)
        try:
            # Lives as long as the WebSocket: sender, watchdog and the protocol's workers.
            # The sender cancels it to end the session (close frame or dropped socket).
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._sender)
                nursery.start_soon(self._watchdog)
                await self.read()
                nursery.cancel_scope.cancel()
        finally:
            self.core.sessions.discard(self)
            self.closed()

    async def _sender(self) -> None:
        async for out in self._out_receive:
            if out.audio:
                self._budget.release()
                if out.context is not None and out.context.cancelled:
                    continue
            if out.close is not None:
                code, reason = out.close
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
                self.close_sent = True
                # Wait for the client's answering close (the reader sees it and ends the
                # session): a TCP close while the client's last messages are unread resets the
                # connection, and the client may lose the close frame (and its code) with it.
                await trio.sleep(self.CLOSE_LINGER)
                self.nursery.cancel_scope.cancel()
                return
            await self._stall_if_faulted()
            if await self._close_if_faulted():
                return
            await self._send({"type": "websocket.send", "text": out.frame})
            self.frames_sent += 1
            self.core.frames_sent += 1
            self.frame_sent(out)
            await self._after_send_faults()

    async def _watchdog(self) -> None:
        while True:
            await trio.sleep_until(self.last_activity + self.inactivity_timeout)
            if trio.current_time() >= self.last_activity + self.inactivity_timeout:
                self.on_inactivity()
                return

    # -- connection faults (the sender, frame by frame) ------------------------------------

    async def _close_if_faulted(self) -> bool:
        """CloseConnection: a close frame instead of the next frame. True if it closed."""
        rule = self.core.faults.close_connection
        if (
            rule is None or not rule.connections(self.index)
            or self.frames_sent < rule.after_frames
        ):  # fmt: skip
            return False
        await self._send({"type": "websocket.close", "code": rule.code, "reason": rule.reason})
        self.nursery.cancel_scope.cancel()
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
                self.nursery.cancel_scope.cancel()
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
