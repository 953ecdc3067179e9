"""One WebSocket, as the connection actor sees it: send text, receive messages, ping, close.

The wire work is done by the sans-io protocol of the ``websockets`` package
(:class:`websockets.client.ClientProtocol`); this module only moves its bytes over a trio
stream. Think of the protocol object as a clerk who writes letters into an out-tray and reads
letters from an in-tray: every method here either puts something in the in-tray
(``receive_data``) and collects the clerk's work (``events_received``), or drains the out-tray
onto the socket (``data_to_send``) under the write lock.

Four rules keep it correct under concurrency, cancellation and dying peers:

* Incoming bytes are turned into messages *synchronously*, right after they are read, so a
  cancellation between two awaits never loses a message: it stays buffered for the next
  :meth:`~WebSocketTransport.receive`.
* Outgoing bytes are taken from the protocol only while holding the write lock, and the holder
  drains until the out-tray is empty. :meth:`~WebSocketTransport.receive` writes automatic
  replies (pong, close) only if nobody holds the lock — otherwise the holder will write them —
  so the reader never blocks behind a writer (a peer that stops reading while it writes to
  us must not deadlock us).
* Sending and receiving end separately. A write that failed or was interrupted half-way
  (a reset connection, a cancellation) leaves the stream in an unknown state, so nothing more
  is written and every later send raises :class:`ConnectionLost` at once. But a peer that
  drops the connection has usually just said its last words — audio frames,
  ``flushCompleted``, ``contextClosed``, a close frame — and they are still in the socket.
  So :meth:`~WebSocketTransport.receive` carries on *draining*: it returns every message
  already buffered and keeps reading until EOF, a close frame, or ``drain_timeout`` seconds
  (trio's clock) after the failed write, and only then raises the write's
  :class:`ConnectionLost`. A reader already blocked when the write fails gets the same bound.
* A message over ``max_message_size`` is refused from its frame header, before its payload is
  buffered: the server gets close code 1009 (message too big) and, after the messages that
  came before it, :meth:`~WebSocketTransport.receive` raises :class:`ConnectionLost`
  (``code=1009``).

The first failure is the one reported: by sends, by :meth:`~WebSocketTransport.ping` and,
once receiving has ended, by :meth:`~WebSocketTransport.receive`.

Nothing here logs the URL, the query string or any header; the ``websockets`` protocol gets a
private, disabled logger because it would otherwise print request headers at DEBUG.
"""

from __future__ import annotations

import collections
import contextlib
import http
import logging
import math
import os
import ssl
from collections.abc import Awaitable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI, PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from .errors import (
    ConnectionLost,
    HandshakeRejected,
    InvalidOptions,
    connect_failure,
    redact,
    retry_after_seconds,
)

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Transport",
    "TransportFactory",
    "WebSocketTransport",
    "connect",
]

#: The largest message :func:`connect` accepts by default: 1 MiB. The largest real messages
#: are audio chunks of a few tens of KB at most (Inworld's base64 JSON audio frames are about
#: 13 KB), so this leaves a wide margin while a broken or hostile server can no longer make
#: each connection buffer 16 MiB.
DEFAULT_MAX_MESSAGE_SIZE = 1_048_576

#: How long :meth:`WebSocketTransport.receive` keeps reading after a write failed, for the
#: messages the server sent before it went away (seconds).
DEFAULT_DRAIN_TIMEOUT = 1.0

# A logger outside the logging hierarchy, disabled: websockets would otherwise log request
# lines (with the query) and headers (with the credential) when DEBUG is on.
_WIRE_LOGGER = logging.Logger("trio_tts.transport.wire", level=logging.CRITICAL + 1)
_WIRE_LOGGER.disabled = True
_WIRE_LOGGER.propagate = False

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

#: The read size after a read that found little waiting (see WebSocketTransport.__init__).
_SMALL_READ = 64 * 1024


class Transport(Protocol):
    """The WebSocket interface the connection actor uses (one connection, already open)."""

    async def send(self, message: str) -> None:
        """Send one text message. Raises :class:`ConnectionLost` if closed or failed."""
        ...

    async def send_many(self, messages: Sequence[str]) -> None:
        """Send text messages in order (one write where possible). Raises as ``send``."""
        ...

    async def receive(self) -> str | bytes:
        """Return the next data message; raise :class:`ConnectionLost` once the connection ends.

        After a failed send it still returns what the server sent before the connection
        died (bounded by the transport's drain timeout), then raises the send's error.
        """
        ...

    async def ping(self) -> None:
        """Send a ping and return when its pong arrives (bound it with your own timeout)."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close gracefully (bounded), then close the socket. Idempotent, never raises."""
        ...


class TransportFactory(Protocol):
    """Opens one WebSocket: :func:`connect`, or a test double (``MemoryServer.connect``).

    The pool calls it with exactly these keywords; implementations may accept more, with
    defaults (:func:`connect` also takes ``drain_timeout``, ``read_size``, ``ssl_context``).
    """

    def __call__(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        *,
        handshake_timeout: float,
        close_timeout: float,
        max_message_size: int,
    ) -> Awaitable[Transport]: ...


class WebSocketTransport:
    """A client WebSocket over a trio stream, driven by ``websockets``' sans-io protocol.

    Create it with :func:`connect`. One task at a time may call :meth:`receive`; any number of
    tasks may call :meth:`send`, :meth:`ping` and :meth:`aclose` concurrently with it. The
    pongs for :meth:`ping` (and replies to the server's pings and close frame) are processed by
    whichever task is inside :meth:`receive`, so a heartbeat only works while someone reads.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: ClientProtocol,
        *,
        host: str,
        port: int,
        close_timeout: float,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        read_size: int,
        at_frame_boundary: bool = False,
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._host = host
        self._port = port
        self._close_timeout = close_timeout
        self._drain_timeout = drain_timeout
        self._max_message_size = max_message_size
        self._read_size = read_size
        # Reads adapt to the traffic: a read of up to read_size costs an allocation that
        # large (over glibc's mmap threshold: an mmap/munmap pair, ~12 us, per read), which
        # pays off only when the socket holds that much; after a read that returned less
        # than _SMALL_READ the next asks for _SMALL_READ (2 us per 13 KB
        # message instead of 14; bulk reads keep their 256 KiB: benchmarks/bench_reads.py).
        self._small_read = min(read_size, _SMALL_READ)
        self._next_read = self._small_read
        self._write_lock = trio.Lock()
        self._messages: collections.deque[str | bytes] = collections.deque()
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        # Outstanding pings in send order: payload -> event set when its pong arrives (the
        # pong removes the entry) or when the connection fails (the entry stays).
        self._pings: dict[bytes, trio.Event] = {}
        # The first failure (write broken, receiving ended, closed): what every call raises.
        self._failure: ConnectionLost | None = None
        # Nothing more may be written: a write failed or was interrupted half-way.
        self._write_broken = False
        # Set once nothing more will be received; receive() then raises after the buffer.
        self._recv_done = trio.Event()
        # When the write broke: reading stops at this trio time (drain_timeout later).
        self._drain_deadline = math.inf
        # The reading task's current read, so a failed write can bound it; or, inside
        # reading(), the scope around the reading task's whole loop (and that task).
        self._read_scope: trio.CancelScope | None = None
        self._loop_scope: trio.CancelScope | None = None
        self._loop_task: trio.lowlevel.Task | None = None
        self._reading = False
        # Set when the reading task leaves receive(); made only when aclose() waits for that
        # (not one Event per message).
        self._reader_left: trio.Event | None = None
        self._closing = False
        # The protocol queued automatic replies (pong, close) while reading: the reader
        # writes them unless a writer holds the lock (then the writer drains them).
        self._replies_pending = False
        # The frame fast path (see _receive_frames): on while the protocol's parser has only
        # ever been given whole frames, so it stands at a frame boundary.
        self._fast = at_frame_boundary
        # Fast path: the start of a frame whose end has not arrived yet.
        self._tail = b""
        # send_nowait: the socket's descriptor for direct writes (plain TCP only: TLS needs
        # trio's SSLStream to encrypt), the bytes a direct write left over, and whether
        # anything waits for a flush (those bytes, or frames queued in the protocol).
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        self._fd = self._socket.fileno() if self._socket is not None else -1
        self._unsent = b""
        self._pending = False
        # The reader's last read emptied the socket (see _read_socket).
        self._drained = False

    @property
    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    def __repr__(self) -> str:
        if self._closing:
            state = "closed"
        elif self._recv_done.is_set():
            state = "failed"
        elif self._write_broken:
            state = "draining"
        else:
            state = self._protocol.state.name.lower()
        return f"<WebSocketTransport {self._where} {state}>"

    # ----------------------------------------------------------------------------- sending

    async def send(self, message: str) -> None:
        """Send ``message`` as one text frame; return once it was written to the socket.

        Raises:
            ConnectionLost: the connection is closing, closed or failed (also when this call
                is the one whose interrupted write broke it).
        """
        self._check_open()
        self._protocol.send_text(message.encode())
        await self._flush()

    async def send_many(self, messages: Sequence[str]) -> None:
        """Send each of ``messages`` as a text frame, in order, with one write.

        Raises:
            ConnectionLost: as :meth:`send`.
        """
        self._check_open()
        for message in messages:
            self._protocol.send_text(message.encode())
        await self._flush()

    @property
    def direct_writes(self) -> bool:
        """Can :meth:`send_nowait` write from the calling task (a plain TCP socket)?"""
        return self._fd >= 0

    @property
    def write_pending(self) -> bool:
        """Are bytes from :meth:`send_nowait` waiting for a :meth:`flush`?"""
        return self._pending

    def send_nowait(self, messages: Sequence[str]) -> None:
        """Send each of ``messages`` as a text frame, in order, from the calling task and
        without yielding: written with one non-blocking ``write`` as far as the socket
        takes them now.

        Frames go out in call order with every other send: while a task holds the write
        lock, that task writes them after its own; what the socket did not take (a full
        buffer, a TLS stream, a write error) waits and :attr:`write_pending` is true until
        a :meth:`flush` (or any send, ping or close) writes it first. A write error is
        reported by that flush. Being synchronous, the write cannot be cut by a
        cancellation: the stream is never left half-written.

        Raises:
            ConnectionLost: as :meth:`send` (nothing was queued).
        """
        self._check_open()
        protocol = self._protocol
        for message in messages:
            protocol.send_text(message.encode())
        if self._write_lock.locked():
            return  # the holder drains the protocol's out-tray before it lets go
        if self._fd < 0:
            self._pending = True
            return
        data = self._unsent + b"".join(protocol.data_to_send())
        written = 0
        with contextlib.suppress(OSError):  # full buffer, or an error the flush reports
            written = os.write(self._fd, data)
        self._unsent = data[written:]
        self._pending = bool(self._unsent)

    async def flush(self) -> None:
        """Write what :meth:`send_nowait` left waiting (nothing if nothing waits).

        Raises:
            ConnectionLost: as :meth:`send`.
        """
        if self._pending:
            await self._flush()

    async def ping(self) -> None:
        """Send a ping and wait for the matching pong.

        The pong is processed by the task inside :meth:`receive`; callers bound this with their
        own timeout (``with trio.fail_after(...)``). A pong also answers every older ping.

        Raises:
            ConnectionLost: the connection closed or failed before the pong arrived.
        """
        self._check_open()
        payload = os.urandom(4)
        event = trio.Event()
        self._pings[payload] = event
        try:
            self._protocol.send_ping(payload)
            await self._flush()
            await event.wait()
            if payload in self._pings:  # woken by a failure, not by the pong
                raise self._failure or self._closing_error()
        finally:
            self._pings.pop(payload, None)

    async def _flush(self) -> None:
        """Write everything the protocol has queued, each batch of frames with one
        ``send_all``. Raises ConnectionLost when broken.

        A free lock is taken without a trip through the scheduler: the bytes go out before
        the first yield (``send_all``'s, after its write)."""
        lock = self._write_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._write_broken:
                raise self._failure or self._closing_error()
            self._replies_pending = False
            while True:
                if self._unsent:  # left by send_nowait: it comes before anything newer
                    data, self._unsent = self._unsent, b""
                    await self._stream.send_all(data)
                chunks = self._protocol.data_to_send()
                if not chunks:
                    break
                # b"" marks the end of the stream (after a close frame).
                data = b"".join(chunks)
                if data:
                    await self._stream.send_all(data)
                if not chunks[-1] and isinstance(self._stream, trio.SocketStream):
                    await self._stream.send_eof()
            self._pending = False
        except ConnectionLost:
            raise
        except BaseException as exc:
            # The stream may be half-written: nothing more can be sent on it. What the
            # server sent before can still be read: receive() drains it.
            if isinstance(exc, _STREAM_ERRORS):
                lost = ConnectionLost(f"write to {self._where} failed")
                self._write_failed(lost)
                raise lost from exc
            self._write_failed(ConnectionLost(f"write to {self._where} was interrupted"))
            raise
        finally:
            lock.release()

    def _write_failed(self, exc: ConnectionLost) -> None:
        self._write_broken = True
        if self._failure is None:
            self._failure = exc
        if self._drain_deadline == math.inf:
            self._drain_deadline = trio.current_time() + self._drain_timeout
            if self._read_scope is not None:
                self._read_scope.deadline = self._drain_deadline
            if self._loop_scope is not None:
                self._loop_scope.deadline = self._drain_deadline
        self._wake_pings()

    # --------------------------------------------------------------------------- receiving

    async def receive(self) -> str | bytes:
        """Return the next data message (``str`` for text, ``bytes`` for binary frames).

        Fragmented messages are reassembled. Messages that arrived before the connection
        ended are returned first; then every call raises. After a failed or interrupted
        send, it keeps reading what the server had sent until EOF, a close frame or
        ``drain_timeout`` (see :func:`connect`), then raises the send's error.

        Raises:
            ConnectionLost: the server closed the connection (``code`` is its close code, or
                1006 when the TCP connection ended without a close frame), a message was over
                ``max_message_size`` (``code`` 1009), a send failed, or it was closed.
            trio.BusyResourceError: another task is already inside ``receive()``.
        """
        if self._reading:
            if not self._closing:
                raise trio.BusyResourceError("another task is already receiving")
            # aclose() is reading the server's close frame: wait for it.
            await self._recv_done.wait()
            return self._next_message()
        self._reading = True
        try:
            while not self._messages and not self._recv_done.is_set():
                await self._read_once()
        finally:
            self._reading = False
            left, self._reader_left = self._reader_left, None
            if left is not None:
                left.set()
        return self._next_message()

    def receive_nowait(self) -> str | bytes | None:
        """The next message already read (as :meth:`receive` would return it), or None when
        none is waiting: then :meth:`receive` reads, or raises. Never reads, never raises,
        not a checkpoint: for the one reading task, to take a read's batch of messages
        without a coroutine per message."""
        messages = self._messages
        return messages.popleft() if messages else None

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """For the one task that calls :meth:`receive` in a loop: one cancel scope around the
        whole loop bounds its reads (to ``drain_timeout`` after a failed send; :meth:`aclose`
        stops them) instead of one scope per read (about a sixth of a paced message's CPU in
        the reader: ``benchmarks/bench_receive.py``). When that bound ends the block,
        receiving has ended: later :meth:`receive` calls return what was read, then raise,
        without reading. Raises ``trio.BusyResourceError`` if a task is already inside."""
        if self._loop_scope is not None:
            raise trio.BusyResourceError("another task is already reading")
        with trio.CancelScope(deadline=self._drain_deadline) as scope:
            self._loop_scope = scope
            self._loop_task = trio.lowlevel.current_task()
            try:
                yield
            finally:
                self._loop_scope = self._loop_task = None
        if scope.cancelled_caught:
            self._end_receive(self._failure or self._closing_error())

    def _next_message(self) -> str | bytes:
        message = self.receive_nowait()
        if message is None:
            raise self._failure or self._closing_error()
        return message

    async def _read_once(self) -> None:
        """Read once (bounded by the drain deadline) and turn the bytes into messages."""
        data: bytes | bytearray = b""
        if self._loop_task is trio.lowlevel.current_task():
            # Inside reading(): its scope bounds this read (a cancel leaves receive()).
            if self._fd >= 0:
                data = await self._read_socket(self._next_read)
            else:
                try:  # noqa: SIM105 - the hot path: no context manager per read
                    data = await self._stream.receive_some(self._next_read)
                except _STREAM_ERRORS:
                    pass  # a reset connection, or aclose() closed the stream: like EOF
        else:
            with trio.CancelScope(deadline=self._drain_deadline) as scope:
                self._read_scope = scope
                try:
                    data = await self._stream.receive_some(self._next_read)
                except _STREAM_ERRORS:
                    pass  # a reset connection, or aclose() closed the stream: like EOF
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                # drain_timeout has passed since the write failed (or aclose() stopped us).
                self._end_receive(self._failure or self._closing_error())
                return
        self._next_read = self._read_size if len(data) >= self._small_read else self._small_read
        if data and self._fast:
            self._receive_frames(data)
        else:
            if self._tail:  # the start of a frame the end of the stream cut short
                self._protocol.receive_data(self._tail)
                self._tail = b""
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            self._process_events(self._protocol.events_received(), eof=not data)
        # Automatic replies (pong, close): write them now unless a writer holds the lock, in
        # which case it drains them after its current write. Data frames need no reply, so
        # the reader only takes the lock after a control frame or the end of receiving.
        if self._replies_pending and not self._write_lock.locked() and not self._write_broken:
            with contextlib.suppress(ConnectionLost):
                await self._flush()

    async def _read_socket(self, size: int) -> bytes:
        """``receive_some(size)`` on a plain TCP socket, for the reading task inside
        :meth:`reading`; b"" for EOF, a reset, or a socket aclose() closed.

        After a read that emptied the socket (it returned less than it asked for) the next
        one waits for the socket to be readable first, where trio's ``receive_some`` would
        try a read, get ``EAGAIN`` and then wait: a system call and a raised
        ``BlockingIOError`` less per message when messages come one at a time (real-time
        audio). Otherwise it reads at once and then yields (cancel-shielded), as trio does.
        A checkpoint either way."""
        socket = self._socket
        waited = self._drained
        if waited:
            await self._wait_readable()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            # Closed (by aclose(), also while this task waited to run): its number may be
            # another socket's by now, so never read it.
            if socket is None or socket.fileno() < 0:
                return b""
            try:
                data = os.read(self._fd, size)
                break
            except BlockingIOError:
                await self._wait_readable()
                waited = True
            except OSError:
                return b""  # a reset connection: like EOF
        self._drained = len(data) < size
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def _wait_readable(self) -> None:
        # A socket closed while this task waits: the read after it sees that.
        try:  # noqa: SIM105 - once per paced message: no context manager
            await trio.lowlevel.wait_readable(self._fd)
        except trio.ClosedResourceError:
            pass

    def _receive_frames(self, data: bytes | bytearray) -> None:
        """The frame fast path: split ``data`` (after the held-back ``_tail``) into frames
        here, deliver each whole, unfragmented, unmasked text or binary frame straight from
        the read buffer, and give websockets' protocol only what needs it: a control frame
        (ping, pong, close) is handed over whole, so its parser stays at a frame boundary.

        Anything else — a fragment, reserved bits, a masked frame, a reserved opcode, a
        frame over ``max_message_size`` (refused from its header, as the protocol does) —
        goes to the protocol with everything after it, and the fast path ends for this
        connection: from then on the protocol parses every byte, as without the fast path.
        A frame cut by the end of the read waits in ``_tail`` for the next one (at most
        ``max_message_size`` plus its header).
        """
        if self._tail:
            data = self._tail + data
            self._tail = b""
        view = memoryview(data)
        size = len(data)
        limit = self._max_message_size
        pos = 0
        while pos + 2 <= size:
            if self._recv_done.is_set():
                return  # a close frame ended receiving: the rest is discarded, as websockets
            b0 = data[pos]
            length = b1 = data[pos + 1]
            head = 2
            if length == 126:
                head = 4
                if pos + 4 > size:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 4], "big")
            elif length == 127:
                head = 10
                if pos + 10 > size:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
            # Unmasked; FIN, no reserved bit; text (1) or binary (2), or a control frame.
            if b1 & 0x80 or not (
                ((b0 == 0x81 or b0 == 0x82) and length <= limit)
                or (0x88 <= b0 <= 0x8A and length <= 125)
            ):
                self._fast = False
                self._protocol.receive_data(bytes(view[pos:]))
                self._process_events(self._protocol.events_received())
                return
            end = pos + head + length
            if end > size:
                break
            if b0 == 0x81:
                self._deliver_text(view[pos + head : end])
            elif b0 == 0x82:
                self._messages.append(bytes(view[pos + head : end]))
            else:
                self._protocol.receive_data(bytes(view[pos:end]))
                self._process_events(self._protocol.events_received())
            pos = end
        if pos < size and not self._recv_done.is_set():
            self._tail = bytes(view[pos:])

    def _process_events(self, events: Sequence[object], *, eof: bool = False) -> None:
        for event in events:
            if isinstance(event, Frame) and not self._recv_done.is_set():
                self._handle_frame(event)
        protocol = self._protocol
        if protocol.close_rcvd is not None or protocol.parser_exc is not None or eof:
            self._replies_pending = True
            self._end_receive(self._lost_from_protocol(eof=eof))

    def _handle_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._deliver(opcode, frame.data)
            else:
                self._fragment_opcode = opcode
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin and self._fragment_opcode is not None:
                data = b"".join(self._fragments)
                self._fragments = []
                self._deliver(self._fragment_opcode, data)
                self._fragment_opcode = None
        elif opcode is Opcode.PONG:
            pong = bytes(frame.data)
            if pong in self._pings:
                # A pong answers its ping and every ping sent before it.
                for payload in list(self._pings):
                    self._pings.pop(payload).set()
                    if payload == pong:
                        break
        else:  # PING: the protocol queued the pong. CLOSE: _process_events ends receiving.
            self._replies_pending = True

    def _deliver(self, opcode: Opcode, data: bytes | bytearray | memoryview) -> None:
        if opcode is Opcode.BINARY:
            self._messages.append(bytes(data))
        else:
            self._deliver_text(data)

    def _deliver_text(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._messages.append(str(data, "utf-8"))
        except UnicodeDecodeError:
            self._replies_pending = True  # the close frame below
            self._protocol.fail(1007, "invalid UTF-8")
            self._end_receive(
                ConnectionLost("server sent invalid UTF-8 in a text message", code=1007)
            )

    def _end_receive(self, exc: ConnectionLost) -> None:
        """Nothing more will be received: after the buffered messages, receive() raises the
        first failure (``exc`` unless something failed before)."""
        if self._failure is None:
            self._failure = exc
        self._recv_done.set()
        self._wake_pings()

    def _wake_pings(self) -> None:
        for event in self._pings.values():
            event.set()

    def _lost_from_protocol(self, *, eof: bool) -> ConnectionLost:
        protocol = self._protocol
        where = self._where
        if protocol.close_rcvd is not None:
            code = protocol.close_rcvd.code
            reason = redact(protocol.close_rcvd.reason)[:80]
            text = f"connection to {where} closed by the server (code {code})"
            return ConnectionLost(f"{text}: {reason}" if reason else text, code=code)
        if isinstance(protocol.parser_exc, PayloadTooBig):
            return ConnectionLost(
                f"a message from {where} is larger than max_message_size "
                f"({self._max_message_size} bytes), so the connection was closed with code "
                "1009 (message too big); max_message_size is a setting",
                code=1009,
            )
        if protocol.parser_exc is not None and not isinstance(protocol.parser_exc, EOFError):
            name = type(protocol.parser_exc).__name__
            return ConnectionLost(f"invalid WebSocket data from {where} ({name})", code=1002)
        return ConnectionLost(f"connection to {where} lost without a close frame", code=1006)

    # ----------------------------------------------------------------------------- closing

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing or self._protocol.state is not State.OPEN:
            raise self._closing_error()

    def _closing_error(self) -> ConnectionLost:
        return ConnectionLost(f"connection to {self._where} is closing")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection: send a close frame, wait at most ``close_timeout`` for the
        server's, then close the socket.

        Idempotent and safe to call while another task is inside :meth:`receive` (that task
        then raises :class:`ConnectionLost`, after the messages already buffered). After a
        failed send it closes the socket at once: no close frame can be written. Never raises
        for a dead or silent peer; honours the caller's cancellation (the socket is closed
        regardless).
        """
        if self._closing:
            return
        self._closing = True
        try:
            with trio.move_on_after(self._close_timeout):
                if not self._write_broken:
                    if self._failure is None and self._protocol.state is State.OPEN:
                        self._protocol.send_close(code, reason)
                    await self._flush()  # ours, or a 1007/1009 close the protocol queued
                    await self._wait_end_of_receive()
        except ConnectionLost:
            pass  # the close frame could not be written
        finally:
            self._end_receive(ConnectionLost(f"connection to {self._where} closed", code=code))
            if self._read_scope is not None:
                self._read_scope.cancel()
            if self._loop_scope is not None and self._loop_task is not trio.lowlevel.current_task():
                self._loop_scope.cancel()  # the reading task's loop (not this task's own)
            await trio.aclose_forcefully(self._stream)

    async def _wait_end_of_receive(self) -> None:
        """Until the server's close frame or EOF: read it here, or let the reader do it."""
        while not self._recv_done.is_set() and not self._write_broken:
            if self._reading:
                if self._reader_left is None:
                    self._reader_left = trio.Event()
                await self._reader_left.wait()
            else:
                self._reading = True
                try:
                    await self._read_once()
                finally:
                    self._reading = False


# ------------------------------------------------------------------------------- connecting


def _retry_after(response: Response) -> float | None:
    return retry_after_seconds(response.headers.get("Retry-After"))


async def connect(
    url: str,
    headers: Sequence[tuple[str, str]],
    *,
    handshake_timeout: float = 10.0,
    close_timeout: float = 2.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    read_size: int = 256 * 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> WebSocketTransport:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) with extra handshake ``headers``.

    TCP connect, TLS and the HTTP upgrade together are bounded by ``handshake_timeout``.
    Error messages name ``host:port`` only: never the path, query or headers. The first
    three keywords are the :class:`TransportFactory` contract; the rest are optional.

    Args:
        handshake_timeout: seconds for TCP connect, TLS and the upgrade together.
        close_timeout: seconds :meth:`~WebSocketTransport.aclose` waits for the server's
            close frame before closing the socket anyway.
        max_message_size: the largest message accepted, in bytes (default 1 MiB,
            :data:`DEFAULT_MAX_MESSAGE_SIZE`: real audio chunks are a few tens of KB). A
            larger one closes the connection with code 1009 and ends receiving with
            :class:`ConnectionLost`.
        drain_timeout: after a failed send, how long :meth:`~WebSocketTransport.receive`
            keeps reading what the server sent before the connection died (default 1 s).
        read_size: the most bytes read from the socket at once.
        ssl_context: for ``wss://`` (default: the system's trust store).

    Raises:
        InvalidOptions: ``url`` is not a ws/wss URL.
        HandshakeRejected: the server answered the upgrade with an HTTP status (``status``,
            ``retry_after`` from a ``Retry-After`` header).
        ConnectionLost: DNS failure, refused connection, TLS failure, an invalid handshake
            response, or the deadline passed.
    """
    try:
        wsuri = parse_uri(url)
    except InvalidURI:
        raise InvalidOptions("url: not a valid ws:// or wss:// URL") from None
    where = f"{wsuri.host}:{wsuri.port}"
    protocol = ClientProtocol(wsuri, max_size=max_message_size, logger=_WIRE_LOGGER)
    request = protocol.connect()
    for name, value in headers:
        request.headers[name] = value
    protocol.send_request(request)

    stream: trio.abc.Stream | None = None
    with trio.move_on_after(handshake_timeout):
        try:
            if wsuri.secure:
                stream = await trio.open_ssl_over_tcp_stream(
                    wsuri.host,
                    wsuri.port,
                    ssl_context=ssl_context or ssl.create_default_context(),
                    https_compatible=True,
                )
            else:
                stream = await trio.open_tcp_stream(wsuri.host, wsuri.port)
            for chunk in protocol.data_to_send():
                await stream.send_all(chunk)
            response, early = await _read_response(stream, protocol, read_size)
        except BaseException as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            if isinstance(exc, (*_STREAM_ERRORS, ssl.SSLError)):
                cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
                detail = connect_failure(cause) or type(cause).__name__
                raise ConnectionLost(f"could not connect to {where}: {detail}") from None
            raise
        if response is None or protocol.handshake_exc is not None:
            await trio.aclose_forcefully(stream)
            failure = protocol.handshake_exc
            if isinstance(failure, InvalidStatus):
                status = failure.response.status_code
                try:
                    phrase = http.HTTPStatus(status).phrase
                except ValueError:
                    phrase = ""
                raise HandshakeRejected(status, phrase, retry_after=_retry_after(failure.response))
            name = type(failure).__name__ if failure is not None else "connection closed"
            raise ConnectionLost(f"WebSocket handshake with {where} failed ({name})")
        transport = WebSocketTransport(
            stream,
            protocol,
            host=wsuri.host,
            port=wsuri.port,
            close_timeout=close_timeout,
            drain_timeout=drain_timeout,
            max_message_size=max_message_size,
            read_size=read_size,
            at_frame_boundary=True,
        )
        if early:  # frames that came in the same reads as the 101 response
            transport._receive_frames(early)
            if transport._replies_pending:  # e.g. a ping: answer it now, not after a read
                try:
                    with contextlib.suppress(ConnectionLost):
                        await transport._flush()
                except BaseException:  # cancelled here: the socket is nobody's yet
                    await trio.aclose_forcefully(stream)
                    raise
        return transport
    if stream is not None:
        await trio.aclose_forcefully(stream)
    raise ConnectionLost(f"WebSocket handshake with {where} timed out after {handshake_timeout}s")


async def _read_response(
    stream: trio.abc.Stream, protocol: ClientProtocol, read_size: int
) -> tuple[Response | None, bytes]:
    """Read until the protocol has parsed the handshake response (or failed to).

    The protocol is given a ``101`` response's head only, up to its blank line (a 101 has no
    body): the bytes after it, already frames, are returned for the transport to parse, so
    the protocol's parser starts at a frame boundary (the transport's fast path needs that).
    Any other response is given whole (its body is part of the error).

    Returns the response (``None`` if the protocol could not parse one) and those bytes.
    """
    head: bytearray | None = bytearray()  # the response so far, until its blank line
    while True:
        data = await stream.receive_some(read_size)
        early: bytes | bytearray = b""
        if not data:
            protocol.receive_eof()
        elif head is None:
            protocol.receive_data(data)
        else:
            start = len(head)
            head += data
            end = head.find(b"\r\n\r\n", max(0, start - 3))
            if end >= 0 and head.startswith(b"HTTP/1.1 101 "):
                cut = end + 4 - start
                protocol.receive_data(data[:cut])
                early = data[cut:]
            else:
                protocol.receive_data(data)
            if end >= 0:
                head = None
        events = protocol.events_received()
        if events and isinstance(events[0], Response):
            return events[0], bytes(early)
        if early:  # not parsed as a response after all: the protocol gets every byte
            protocol.receive_data(early)
            events = protocol.events_received()
            if events and isinstance(events[0], Response):
                return events[0], b""
        if protocol.handshake_exc is not None or not data:
            return None, b""


if TYPE_CHECKING:  # connect() keeps the TransportFactory contract (checked by mypy)
    _connect_is_a_factory: TransportFactory = connect
