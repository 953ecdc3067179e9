"""Dropping a TCP connection under an ASGI server (the "drop the socket" fault)."""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["drop_tcp"]


def drop_tcp(scope: dict[str, Any]) -> None:
    """Shut down the TCP connection behind an ASGI scope without a WebSocket close frame.

    ASGI has no "abort"; we find the socket by its two addresses among the process's open
    file descriptors (Linux ``/proc/self/fd``) and ``shutdown()`` it, so the server's own
    reader sees EOF and the client an abrupt end (close code 1006).
    """
    client, server = scope.get("client"), scope.get("server")
    if not client or not server:
        return
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
        with sock:
            try:
                here, there = sock.getsockname(), sock.getpeername()
            except OSError:
                continue
            if (tuple(here[:2]), tuple(there[:2])) == want:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.shutdown(socket.SHUT_RDWR)
                return
