"""What one paced wake-up costs a trio guest run on asyncio: helper thread vs the loop's wait.

Run: ``.venv/bin/python benchmarks/bench_guest_io.py [--messages 1000] [--reps 3]``.

A writer process sends a 4,000-byte message every 4 ms on a loopback TCP socket, the shape of
paced audio (one message per wake-up). The reader, in this process, reads until EOF; the row
is its CPU (``getrusage``, both threads) and its context switches per message:

* ``asyncio`` — an ``asyncio.StreamReader``, for reference;
* ``trio`` — ``trio.run``, a trio socket;
* ``guest, helper thread`` — the same trio reader in ``bridges.asyncio_adapter``'s engine
  with ``TRIO_TTS_GUEST_IO=thread`` (stock guest mode: trio waits in a helper thread);
* ``guest, loop waits`` — the engine's default (``bridges._guest_io``: the asyncio loop
  watches trio's epoll descriptor).

Each mode runs in its own process (``--mode``), with the imports done before the count.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
from typing import Any

import _alternate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("asyncio", "trio", "guest, helper thread", "guest, loop waits")
SIZE = 4000

WRITER = """
import socket, sys, time
n, gap, size = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); data = b"x" * size; t = time.monotonic()
for _ in range(n):
    t += gap
    time.sleep(max(0.0, t - time.monotonic()))
    c.sendall(data)
c.close()
"""


def usage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw + r.ru_nivcsw


def one(mode: str, n: int, gap: float) -> dict[str, Any]:
    sys.path.insert(0, ROOT)
    import trio

    import trio_tts
    from bridges import asyncio_adapter

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(n), str(gap), str(SIZE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    port = int(writer.stdout.readline())

    async def trio_reader() -> int:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        got = 0
        with sock:
            while data := await sock.recv(65536):
                got += len(data)
        return got

    async def asyncio_reader() -> int:
        reader, writer_ = await asyncio.open_connection("127.0.0.1", port)
        got = 0
        while data := await reader.read(65536):
            got += len(data)
        writer_.close()
        return got

    async def guest() -> int:
        provider = trio_tts.InworldProvider("bench", url="ws://127.0.0.1:9")  # never dialled
        async with asyncio_adapter.AsyncioPool(provider) as pool:
            return await pool.run(trio_reader)

    cpu0, sw0 = usage()
    if mode == "asyncio":
        got = asyncio.run(asyncio_reader())
    elif mode == "trio":
        got = trio.run(trio_reader)
    else:
        asyncio_adapter._GUEST_IO = "thread" if mode == "guest, helper thread" else "loop"
        got = asyncio.run(guest())
    cpu1, sw1 = usage()
    writer.wait()
    assert got == n * SIZE, (got, n * SIZE)
    return {"mode": mode, "cpu_us": (cpu1 - cpu0) / n * 1e6, "switches": (sw1 - sw0) / n}


def main() -> None:
    args = _alternate.parse(__doc__, MODES, messages=1000, gap=0.004, reps=3)
    if args.mode:
        print(json.dumps(one(args.mode, args.messages, args.gap)))
        return
    rows = _alternate.alternate(__file__, MODES, args)
    print(
        f"{args.messages} messages of {SIZE} B, one per {args.gap * 1000:g} ms; medians of "
        f"{args.reps} runs\n\n| reader | CPU µs per message | context switches per message |"
        "\n|---|---:|---:|"
    )
    for mode, rs in rows.items():
        cpu = statistics.median(r["cpu_us"] for r in rs)
        switches = statistics.median(r["switches"] for r in rs)
        print(f"| {mode} | {cpu:.0f} | {switches:.2f} |")


if __name__ == "__main__":
    main()
