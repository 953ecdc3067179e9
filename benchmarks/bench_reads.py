"""What a socket read costs by its size, for the transport's adaptive read size.

Run: ``.venv/bin/python benchmarks/bench_reads.py``. Two loopback measurements with the
plain ``socket`` module (what trio's ``receive_some`` calls):

(a) small messages, one per read (paced, real-time-shaped traffic: ~13 KB Inworld audio
    messages): CPU per read for ``recv(256 KiB)``, ``recv(64 KiB)`` and ``recv_into`` a
    reused 256 KiB buffer plus the copy out;
(b) bulk (firehose traffic): a writer thread streams 1 MiB writes, the reader's own thread
    CPU per GiB for each read size.

A read asks the allocator for a buffer of the requested size and shrinks it to what came:
above glibc's mmap threshold (128 KiB) that is an mmap/mremap/munmap per read. So
``WebSocketTransport`` reads 64 KiB after a read that found less than that waiting, and its
full ``read_size`` (256 KiB) while reads come back full.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

KIB = 1024


def small(n: int) -> dict[str, float]:
    a, b = socket.socketpair()
    msg = b"x" * 13_000
    buf = bytearray(256 * KIB)
    view = memoryview(buf)
    out: dict[str, float] = {}
    for mode in ("recv 256 KiB", "recv 64 KiB", "recv_into 256 KiB + copy"):
        cpu = time.process_time()
        for _ in range(n):
            a.send(msg)
            if mode == "recv 256 KiB":
                b.recv(256 * KIB)
            elif mode == "recv 64 KiB":
                b.recv(64 * KIB)
            else:
                bytes(view[: b.recv_into(buf)])
        # Includes the 13 KB send, the same in every row.
        out[mode] = (time.process_time() - cpu) / n * 1e6
    a.close()
    b.close()
    return out


def bulk(mib: int) -> dict[str, float]:
    total = mib * KIB * KIB
    chunk = b"x" * (KIB * KIB)
    buf = bytearray(256 * KIB)
    view = memoryview(buf)
    out: dict[str, float] = {}
    for mode in ("recv 256 KiB", "recv 64 KiB", "recv_into 256 KiB + copy"):
        a, b = socket.socketpair()

        def writer(a: socket.socket = a) -> None:
            for _ in range(mib):
                a.sendall(chunk)

        thread = threading.Thread(target=writer)
        thread.start()
        got = 0
        cpu = time.thread_time()
        while got < total:
            if mode == "recv 256 KiB":
                got += len(b.recv(256 * KIB))
            elif mode == "recv 64 KiB":
                got += len(b.recv(64 * KIB))
            else:
                got += len(bytes(view[: b.recv_into(buf)]))
        out[mode] = (time.thread_time() - cpu) * 1000 / (total / KIB**3)
        thread.join()
        a.close()
        b.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--mib", type=int, default=400)
    args = parser.parse_args()
    print("(a) one 13 KB message per read: CPU us per send + read")
    for mode, us in small(args.messages).items():
        print(f"  {mode:<26} {us:6.1f}")
    print("(b) bulk: reader CPU ms per GiB")
    for mode, ms in bulk(args.mib).items():
        print(f"  {mode:<26} {ms:6.1f}")


if __name__ == "__main__":
    main()
