"""Test-only: a throwaway ``redis-server`` on 127.0.0.1 for tests and benchmarks (no
persistence). Not part of the library's API and never imported by ``trio_tts`` or
``trio_tts.testing``: import it explicitly (``from trio_tts.testing.redis_server import
RedisServer``) where a test or benchmark needs a Redis of its own. Needs the ``redis-server``
binary (``make redis``); the rest of the package does not.

``RedisServer().start()`` runs the Debian ``redis-server`` binary on a free port in a temporary
directory; ``restart()`` keeps the port and loses the state (a crash without persistence),
``pause()``/``resume()`` freeze it (SIGSTOP/SIGCONT: a partition, as seen by the clients).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["RedisServer", "RedisServerMissing"]


class RedisServerMissing(RuntimeError):
    """``redis-server`` is not on PATH (``make redis`` installs the Debian package)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process; synchronous control, for fixtures and scripts."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing(
                "redis-server is not installed: run `make redis` (apt-get install redis-server)"
            )
        self.binary = binary
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="trio-tts-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port: every key is gone."""
        self.stop()
        self.start()

    def pause(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
