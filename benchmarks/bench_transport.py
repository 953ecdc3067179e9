"""Where the client's CPU goes per Inworld audio message (~13 KB of base64 PCM in JSON).

Run: ``.venv/bin/python benchmarks/bench_transport.py``. Prints four tables (``--only load``
prints (d) alone; ``--connections``, ``--seconds``, ``--reps`` size it; ``--md PATH`` also
writes (d) as markdown, which ``make bench`` does to ``results/transport.md``):

(a) WebSocket frame parsing of server frames: websockets' sans-io ``ClientProtocol`` vs
    ``wsproto`` (what trio-websocket uses), fed in 4 KiB and 256 KiB reads.
(b) Decoding the JSON + base64: ``json.loads`` + ``base64.b64decode`` vs a typed msgspec
    decoder (and the whole ``InworldCodec.receive``).
(c) End to end over a real loopback socket: client-process CPU and wall time per message
    for ``trio_tts._core.transport`` vs trio-websocket (defaults; 16-message queue + 256 KiB
    reads). The server is a separate process that writes pre-built frames, so the CPU
    measured is the client's alone. Each message is also decoded by ``InworldCodec``.
(d) Under load, the two ``Transport`` implementations side by side: ``connect`` (websockets
    sans-io) and ``connect_trio_websocket`` (its defaults, then trio-websocket's library
    defaults), each with 20 connections in a closed loop of turns (send one request, receive
    and decode 70 audio messages) against the same server process, in the same run,
    repetitions rotated. Reports messages/s, client CPU per message, and the latency of a
    turn's first and last message (p50/p99) over the measurement window.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

# Run from a checkout without installing: make ``trio_tts`` importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TURN_MESSAGES = 70
PCM_BYTES = 9600  # 200 ms of 24 kHz 16-bit mono -> ~12.8 KB base64


def inworld_frame(i: int) -> str:
    pcm = os.urandom(PCM_BYTES)
    return json.dumps(
        {
            "result": {
                "contextId": "ctx-1",
                "audioChunk": {
                    "audioContent": base64.b64encode(pcm).decode(),
                    "timestampInfo": {
                        "wordAlignment": {
                            "words": ["hello", "world"],
                            "wordStartTimeSeconds": [0.1 * i, 0.1 * i + 0.05],
                            "wordEndTimeSeconds": [0.1 * i + 0.04, 0.1 * i + 0.09],
                        }
                    },
                },
                "status": {"code": 0, "message": ""},
            }
        }
    )


def server_frames(n: int) -> bytes:
    from websockets.frames import Frame, Opcode

    return b"".join(
        Frame(Opcode.TEXT, inworld_frame(i).encode()).serialize(mask=False, extensions=[])
        for i in range(n)
    )


def per_call(fn: Callable[[], object], messages: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` microseconds per message for ``fn`` handling ``messages``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / messages * 1e6


# --------------------------------------------------------------------------- (a) framing


def bench_framing() -> list[tuple[str, float]]:
    import wsproto.connection
    import wsproto.events
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
    from websockets.uri import parse_uri

    n = 700
    wire = server_frames(n)

    def chunks(size: int) -> list[bytes]:
        return [wire[i : i + size] for i in range(0, len(wire), size)]

    def websockets_parse(parts: list[bytes]) -> Callable[[], object]:
        def run() -> None:
            proto = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=None)
            got = 0
            for part in parts:
                proto.receive_data(part)
                for ev in proto.events_received():
                    if isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                        str(ev.data, "utf-8")
                        got += 1
            assert got == n

        return run

    def wsproto_parse(parts: list[bytes]) -> Callable[[], object]:
        def run() -> None:
            conn = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
            got = 0
            pending: list[str] = []
            for part in parts:
                conn.receive_data(part)
                for ev in conn.events():
                    if isinstance(ev, wsproto.events.TextMessage):
                        pending.append(ev.data)
                        if ev.message_finished:
                            "".join(pending)
                            pending.clear()
                            got += 1
            assert got == n

        return run

    rows = []
    for label, size in (("4 KiB reads", 4096), ("256 KiB reads", 256 * 1024)):
        parts = chunks(size)
        rows.append((f"websockets sans-io, {label}", per_call(websockets_parse(parts), n)))
        rows.append((f"wsproto, {label}", per_call(wsproto_parse(parts), n)))
    return rows


# -------------------------------------------------------------------------- (b) decoding


def bench_decoding() -> list[tuple[str, float]]:
    import msgspec

    from trio_tts.providers.inworld.codec import FRAME_DECODER, InworldCodec

    frames = [inworld_frame(i) for i in range(200)]

    def stdlib() -> None:
        for f in frames:
            d = json.loads(f)
            base64.b64decode(d["result"]["audioChunk"]["audioContent"])

    def msgspec_untyped() -> None:
        dec = msgspec.json.Decoder()
        for f in frames:
            d = dec.decode(f)
            base64.b64decode(d["result"]["audioChunk"]["audioContent"])

    def msgspec_typed() -> None:
        for f in frames:
            FRAME_DECODER.decode(f)

    codec = InworldCodec()

    def codec_receive() -> None:
        for f in frames:
            codec.receive(f)

    rows = [
        ("json.loads + base64.b64decode", per_call(stdlib, len(frames))),
        ("msgspec untyped + base64.b64decode", per_call(msgspec_untyped, len(frames))),
        ("msgspec typed (bytes field)", per_call(msgspec_typed, len(frames))),
        ("InworldCodec.receive (typed + events)", per_call(codec_receive, len(frames))),
    ]
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:

        def with_orjson() -> None:
            for f in frames:
                d = orjson.loads(f)
                base64.b64decode(d["result"]["audioChunk"]["audioContent"])

        rows.insert(1, ("orjson.loads + base64.b64decode", per_call(with_orjson, len(frames))))
    return rows


# ----------------------------------------------------------------------- (c) end to end


async def _serve(port_out: Callable[[int], None]) -> None:
    """Server process: handshake, then for each text message "N" write N audio frames."""
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    wire = server_frames(TURN_MESSAGES)

    async def handler(stream: trio.SocketStream) -> None:
        proto = ServerProtocol(max_size=None)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            proto.receive_data(data)
            for ev in proto.events_received():
                if isinstance(ev, Request):
                    proto.send_response(proto.accept(ev))
                elif isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                    for _ in range(int(bytes(ev.data))):
                        await stream.send_all(wire)
            for chunk in proto.data_to_send():
                if chunk:
                    await stream.send_all(chunk)
                else:
                    return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port_out(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def _client_ours(url: str, turns: int) -> None:
    from trio_tts._core.transport import connect
    from trio_tts.providers.inworld.codec import InworldCodec

    codec = InworldCodec()
    ws = await connect(url, [])
    for _ in range(turns):
        await ws.send("1")
        for _ in range(TURN_MESSAGES):
            codec.receive(await ws.receive())
    await ws.aclose()


def _client_tw(queue: int, read: int) -> Callable[[str, int], Awaitable[None]]:
    async def run(url: str, turns: int) -> None:
        import trio_websocket

        from trio_tts.providers.inworld.codec import InworldCodec

        codec = InworldCodec()
        async with trio_websocket.open_websocket_url(
            url, message_queue_size=queue, receive_buffer_size=read, max_message_size=2**24
        ) as ws:
            for _ in range(turns):
                await ws.send_message("1")
                for _ in range(TURN_MESSAGES):
                    codec.receive(await ws.get_message())

    return run


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The frame-writing server in its own process; returns it and its URL."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"ws://127.0.0.1:{port}/tts"


def bench_end_to_end(turns: int = 60) -> list[tuple[str, float, float]]:
    proc, url = start_server()
    try:
        clients: list[tuple[str, Callable[[str, int], Awaitable[None]]]] = [
            ("trio_tts transport (256 KiB reads)", _client_ours),
            ("trio-websocket defaults (4 KiB, queue 1)", _client_tw(1, 4096)),
            ("trio-websocket queue 16, 256 KiB reads", _client_tw(16, 256 * 1024)),
        ]
        rows = []
        for label, client in clients:
            trio.run(client, url, 5)  # warm up
            best_cpu = best_wall = float("inf")
            for _ in range(3):
                cpu, wall = time.process_time(), time.perf_counter()
                trio.run(client, url, turns)
                msgs = turns * TURN_MESSAGES
                best_cpu = min(best_cpu, (time.process_time() - cpu) / msgs * 1e6)
                best_wall = min(best_wall, (time.perf_counter() - wall) / msgs * 1e6)
            rows.append((label, best_cpu, best_wall))
        return rows
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------ (d) under load

Opener = Callable[[str, trio.Nursery], Awaitable[Any]]


def _open_default(url: str, nursery: trio.Nursery) -> Awaitable[Any]:
    from trio_tts._core.transport import connect

    return connect(url, [])


def _open_trio_websocket(**sizes: int) -> Opener:
    def open_(url: str, nursery: trio.Nursery) -> Awaitable[Any]:
        from trio_tts._core.transport_trio_websocket import connect_trio_websocket

        return connect_trio_websocket(url, [], nursery=nursery, **sizes)

    return open_


LOAD_CLIENTS: list[tuple[str, Opener]] = [
    ("default (websockets sans-io)", _open_default),
    ("trio-websocket (queue 16, 256 KiB)", _open_trio_websocket()),
    (
        "trio-websocket (lib defaults: 1, 4 KiB)",
        _open_trio_websocket(message_queue_size=1, receive_buffer_size=4096),
    ),
]


async def _load_run(
    open_: Opener, url: str, connections: int, seconds: float, warmup: float
) -> dict[str, float]:
    from trio_tts.providers.inworld.codec import InworldCodec

    first: list[float] = []
    last: list[float] = []
    messages = 0
    measuring = stopping = False

    async def worker(ws: Any) -> None:
        nonlocal messages
        codec = InworldCodec()
        while not stopping:
            start = time.perf_counter()
            await ws.send("1")
            for k in range(TURN_MESSAGES):
                codec.receive(await ws.receive())
                if measuring:
                    messages += 1
                if k == 0:
                    first_at = time.perf_counter()
            if measuring:
                first.append(first_at - start)
                last.append(time.perf_counter() - start)

    async with trio.open_nursery() as sockets:  # trio-websocket's socket tasks
        transports = [await open_(url, sockets) for _ in range(connections)]
        async with trio.open_nursery() as workers:
            for ws in transports:
                workers.start_soon(worker, ws)
            await trio.sleep(warmup)
            measuring = True
            cpu, wall = time.process_time(), time.perf_counter()
            await trio.sleep(seconds)
            measuring, stopping = False, True
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        for ws in transports:
            await ws.aclose()

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "msgs_per_s": messages / wall,
        "cpu_us_per_msg": cpu / max(messages, 1) * 1e6,
        "first_p50": pct(first, 0.50),
        "first_p99": pct(first, 0.99),
        "turn_p50": pct(last, 0.50),
        "turn_p99": pct(last, 0.99),
    }


def bench_load(
    connections: int = 20, seconds: float = 5.0, reps: int = 3, warmup: float = 1.0
) -> list[tuple[str, dict[str, float]]]:
    """Each client ``reps`` times, order rotated; per metric the median over repetitions."""
    proc, url = start_server()
    try:
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in LOAD_CLIENTS}
        for rep in range(reps):
            order = (
                LOAD_CLIENTS[rep % len(LOAD_CLIENTS) :] + LOAD_CLIENTS[: rep % len(LOAD_CLIENTS)]
            )
            for label, open_ in order:
                runs[label].append(trio.run(_load_run, open_, url, connections, seconds, warmup))
        return [
            (label, {k: statistics.median(r[k] for r in results) for k in results[0]})
            for label, results in runs.items()
        ]
    finally:
        proc.kill()
        proc.wait()


def print_load(rows: list[tuple[str, dict[str, float]]], connections: int) -> None:
    print(
        f"\n(d) under load: {connections} connections, closed loop of {TURN_MESSAGES}-message"
        " turns (median of repetitions)"
    )
    print(
        f"    {'transport':<40} {'msgs/s':>8} {'CPU µs/msg':>10}"
        f" {'first p50/p99 ms':>17} {'turn p50/p99 ms':>17}"
    )
    for label, m in rows:
        first = f"{m['first_p50']:.1f}/{m['first_p99']:.1f}"
        whole = f"{m['turn_p50']:.1f}/{m['turn_p99']:.1f}"
        print(
            f"    {label:<40} {m['msgs_per_s']:8.0f} {m['cpu_us_per_msg']:10.1f}"
            f" {first:>17} {whole:>17}"
        )


def markdown_load(
    rows: list[tuple[str, dict[str, float]]], connections: int, seconds: float, reps: int
) -> str:
    """Section (d) as markdown (``make bench`` writes it to ``results/transport.md``)."""
    base = rows[0][1]
    lines = [
        "# Transports under load: websockets sans-io (default) vs trio-websocket",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f} at the end), `benchmarks/bench_transport.py --only load`: "
        f"{connections} connections, each a closed loop of turns (send one request, receive "
        f"and decode {TURN_MESSAGES} audio messages of ~13 KB), {seconds:g} s window after a "
        f"warm-up, median of {reps} repetitions with the order rotated. CPU is this client "
        "process's own; the server is another process.",
        "",
        "| transport | msgs/s | CPU µs/msg | CPU vs default | first message p50 / p99 ms"
        " | turn p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, m in rows:
        lines.append(
            f"| {label} | {m['msgs_per_s']:.0f} | {m['cpu_us_per_msg']:.1f} | "
            f"{m['cpu_us_per_msg'] / base['cpu_us_per_msg']:.2f}× | "
            f"{m['first_p50']:.1f} / {m['first_p99']:.1f} | "
            f"{m['turn_p50']:.1f} / {m['turn_p99']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--serve"]:

        def announce(port: int) -> None:
            print(port, flush=True)

        trio.run(_serve, announce)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", choices=["load"], help="run one section only")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--md", metavar="PATH", help="also write (d) as a markdown table")
    args = parser.parse_args()
    if args.only == "load":
        load = bench_load(args.connections, args.seconds, args.reps)
        print_load(load, args.connections)
        if args.md:
            with open(args.md, "w") as f:
                f.write(markdown_load(load, args.connections, args.seconds, args.reps))
        return
    msg_size = len(inworld_frame(0))
    print(f"Inworld audio message: {msg_size} bytes of JSON, {TURN_MESSAGES} per turn\n")
    print("(a) WebSocket frame parsing             µs/message")
    for label, us in bench_framing():
        print(f"    {label:<38} {us:7.2f}")
    print("\n(b) decoding JSON + base64              µs/message")
    for label, us in bench_decoding():
        print(f"    {label:<38} {us:7.2f}")
    print("\n(c) end to end, loopback, client CPU     CPU µs/msg   wall µs/msg   CPU ms/turn")
    rows = bench_end_to_end()
    for label, cpu, wall in rows:
        print(f"    {label:<40} {cpu:8.2f}   {wall:9.2f}   {cpu * TURN_MESSAGES / 1000:9.2f}")
    base = rows[0][1]
    print(
        "\n    CPU relative to trio_tts transport: "
        + ", ".join(f"{r[1] / base:.2f}x" for r in rows)
    )
    load = bench_load(args.connections, args.seconds, args.reps)
    print_load(load, args.connections)
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown_load(load, args.connections, args.seconds, args.reps))


if __name__ == "__main__":
    main()
