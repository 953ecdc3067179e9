"""Reaching the TCP socket behind an ASGI scope (the "drop the socket" and raw-frame faults)."""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["drop_tcp", "write_raw"]


def _find_socket(scope: dict[str, Any]) -> socket.socket | None:
    """A duplicate of the socket behind ``scope`` (the caller closes it), or None.

    ASGI has no "abort" and no raw write; we find the socket by its two addresses among the
    process's open file descriptors (Linux ``/proc/self/fd``)."""
    client, server = scope.get("client"), scope.get("server")
    if not client or not server:
        return None
    want = ((str(server[0]), int(server[1])), (str(client[0]), int(client[1])))
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.path.islink(f"/proc/self/fd/{fd}") or not os.readlink(
                f"/proc/self/fd/{fd}"
            ).startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            here, there = sock.getsockname(), sock.getpeername()
        except OSError:
            sock.close()
            continue
        if (tuple(here[:2]), tuple(there[:2])) == want:
            return sock
        sock.close()
    return None


def drop_tcp(scope: dict[str, Any]) -> None:
    """Shut down the TCP connection behind an ASGI scope without a WebSocket close frame, so
    the server's own reader sees EOF and the client an abrupt end (close code 1006)."""
    sock = _find_socket(scope)
    if sock is None:
        return
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)


def write_raw(scope: dict[str, Any], data: bytes) -> None:
    """Write ``data`` straight to the socket behind ``scope`` (a frame ASGI cannot express).

    Called between two of the server's own writes, from the session's only writer task."""
    sock = _find_socket(scope)
    if sock is None:
        return
    with sock:
        # Never change the blocking mode: the duplicate shares it with the server's socket.
        sock.send(data)
