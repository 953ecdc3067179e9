"""What one paced message costs the transport's reader: ``receive()`` in a loop, with one cancel
scope per read or inside ``WebSocketTransport.reading()`` (one scope for the loop, what the
connection actor does); inside ``reading()`` a TCP socket is read by the transport itself (after
a read that emptied the socket it waits before it reads: no ``EAGAIN`` read per message), or,
as for any other stream, with trio's ``receive_some``.

Run: ``.venv/bin/python benchmarks/bench_receive.py [--messages 3000] [--gap 0.002] [--reps 5]``.

A writer thread sends a ~13 KB binary WebSocket frame (an Inworld audio message's size) every
``gap`` seconds on one end of a socket pair; the reader, a ``WebSocketTransport`` on the other
end in ``trio.run``, receives until EOF. The row is the reader thread's CPU
(``time.thread_time``) per message, median over ``reps`` runs, the two modes alternated, each
run in its own process. ``--gap 0``: the writer does not pause (several frames per read).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import sys
import threading
import time

import _alternate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODES = ("scope per read", "reading(), trio's receive_some", "reading()")
PAYLOAD = 13_000


def one(mode: str, n: int, gap: float) -> float:
    sys.path.insert(0, ROOT)
    import trio
    from websockets.client import ClientProtocol
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    from trio_tts._core.errors import ConnectionLost
    from trio_tts._core.transport import WebSocketTransport

    frame = bytes([0x82, 126]) + struct.pack("!H", PAYLOAD) + b"y" * PAYLOAD
    ours, theirs = socket.socketpair()

    def writer() -> None:
        t = time.monotonic()
        for _ in range(n):
            t += gap
            time.sleep(max(0.0, t - time.monotonic()))
            theirs.sendall(frame)
        theirs.close()

    async def main() -> float:
        client = ClientProtocol(parse_uri("ws://bench.invalid/"), max_size=2**20)
        server = ServerProtocol()
        client.send_request(client.connect())
        for chunk in client.data_to_send():
            server.receive_data(chunk)
        server.send_response(server.accept(server.events_received()[0]))  # type: ignore[arg-type]
        for chunk in server.data_to_send():
            client.receive_data(chunk)
        ours.setblocking(False)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        ws = WebSocketTransport(
            stream, client, host="bench.invalid", port=80, close_timeout=1.0,
            drain_timeout=1.0, read_size=256 * 1024,
        )  # fmt: skip
        if mode == "reading(), trio's receive_some":
            ws._fd = -1  # what a stream other than a plain TCP socket gets
        got = 0

        async def loop() -> None:
            nonlocal got
            while True:
                await ws.receive()
                got += 1

        thread = threading.Thread(target=writer)
        thread.start()
        cpu = time.thread_time()
        try:
            if mode != "scope per read":
                with ws.reading():
                    await loop()
            else:
                await loop()
        except ConnectionLost:  # the writer's EOF ends the loop
            pass
        cpu = time.thread_time() - cpu
        thread.join()
        assert got == n, (got, n)
        return cpu / n * 1e6

    return trio.run(main)


def main() -> None:
    args = _alternate.parse(__doc__, MODES, messages=3000, gap=0.002, reps=5)
    if args.mode:
        print(json.dumps({"us": one(args.mode, args.messages, args.gap)}))
        return
    found = _alternate.alternate(__file__, MODES, args)
    rows = {mode: [r["us"] for r in runs] for mode, runs in found.items()}
    print(
        f"{args.messages} messages of {PAYLOAD} B, one per {args.gap * 1000:g} ms; medians of "
        f"{args.reps} runs (alternated)\n\n| reader | CPU µs per message | runs |\n|---|---:|---|"
    )
    for mode, us in rows.items():
        runs = ", ".join(f"{u:.0f}" for u in us)
        print(f"| {mode} | {statistics.median(us):.1f} | {runs} |")


if __name__ == "__main__":
    main()
