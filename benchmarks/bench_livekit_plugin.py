"""What a LiveKit user sees: the official ``livekit-plugins-inworld`` 1.8.9 vs ``bridges.livekit``.

    .venv/bin/python benchmarks/bench_livekit_plugin.py [--reps 3] [--concurrency 1,20,50]
        [--scenarios firehose,paced] [--drivers official,ours] [--md PATH] [--hops] [--buffers]

Both plugins run in the project venv (``livekit-plugins-inworld==1.8.9`` is a test
dependency), each driver run in its own process (so ``getrusage`` and the peak RSS are that
plugin's alone), against one lean benchmark server (``bench_server.py``, another process),
3 repetitions with the driver order rotated. One ``TTS`` per process, shared by ``C``
concurrent workers (one agent process serving ``C`` sessions); each worker loops *turns*:

    async with tts.stream(conn_options=APIConnectOptions(max_retry=0, timeout=10)) as s:
        for sentence in sentences: s.push_text(sentence)    # 3 sentences
        s.flush(); s.end_input()
        async for audio in s: ...                           # every frame until the end

Measured over a window after a warm-up: time to first audio (TTFA, from the first
``push_text`` to the first frame out of the stream), CPU per turn (``getrusage`` of the whole
process over the window / turns ended in it, minus the CRC time of the integrity check; at
C=1, from the end of the turn before the window's first to the end of its last, so that
only whole turns count),
failed turns by error type, and the peak RSS. Integrity: every turn's frames must add up to
the server's audio for its text, byte for byte (one CRC-32 over the turn, LiveKit's 10 ms
end-of-segment marker allowed; a short, long or wrong turn counts as failed,
``AudioMismatch``).

Scenarios: *firehose* — ~14 s of 24 kHz PCM per turn in 0.2 s chunks (70 messages) as fast
as the socket takes it; *paced* — the server waits 150 ms, then streams at 10× real time.
The official plugin puts every context on one connection (no cap), so past 5 concurrent
contexts the server refuses some with "Max contexts limit reached", as Inworld does; those
turns count as failed (``max_retry=0``: no retry hides them) and TTFA is over the turns that
succeeded.

``--drivers`` also takes ``ours@PATH`` (or ``NAME=ours@PATH``, shown as ``NAME``):
``bridges.livekit`` and ``trio_tts`` imported from the source tree at ``PATH`` (e.g. ``git
archive main | tar -x -C /tmp/base``), for a before/after comparison in the same run.
``--hops`` adds, per driver run, the median time from the first ``push_text`` to each hop on
the way to the first frame (the text leaving the process, the first audio frame read from
the socket, handed to the bridge, out of the stream); it instruments the hot path, so its CPU
numbers are not comparable. ``--buffers`` samples, every 20 ms of the whole driver run, the
decoded audio waiting in the process: in the trio contexts' buffers (ours) and in LiveKit's
streams, as frames not yet taken by the worker (both); it reports the peak and the median of
each (where the peak RSS comes from).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import itertools
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
import zlib
from collections import Counter, defaultdict
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _harness as h  # noqa: E402

#: Our names for the two scenarios, and the server's (``_harness.SCENARIOS``).
SCENARIOS = {"firehose": "spec", "paced": "paced"}
#: (warm-up, window) seconds per scenario: enough turns at C=1 for a stable CPU per turn.
WINDOWS = {"firehose": (2.0, 6.0), "paced": (2.0, 8.0)}
#: One paced caller ends a turn every ~1.55 s: 20 s for ~13 turns (8 s: 5, +-15 % per run).
PACED_C1_WINDOW = 20.0
OPEN_TIMEOUT = 10.0
KEY = "bench-key"


# ======================================================================= the driver process


class Turn:
    __slots__ = ("cpu", "crc", "end", "error", "first", "samples", "start", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end = 0.0
        self.cpu = 0.0  # the process's CPU seconds at ``end``, minus the integrity check's
        self.error: str | None = None
        self.crc = 0
        self.samples = 0


class Driver:
    """One plugin's closed loop: C workers over one TTS, a window, one JSON line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.warmup, self.window = args.warmup, args.window
        with open(args.expected) as f:
            # text -> the turn's [crc, samples], without and with the emitter's end marker
            self.expected: dict[str, list[list[int]]] = json.load(f)
        self.turns: list[Turn] = []
        self.check_s = 0.0  # CRC time, subtracted from the CPU
        self.window_start = self.window_end = 0.0  # set once the TTS exists
        self.hops: dict[str, list[float]] = defaultdict(list)
        self.buffers: dict[str, list[int]] = {"trio": [], "livekit": []}

    async def worker(self, tts: Any, w: int, conn: Any) -> None:
        from livekit.agents import APIError

        n = 0
        while time.perf_counter() < self.window_end:
            sentences = h.turn_sentences(w, n)
            turn = Turn("".join(sentences))
            n += 1
            try:
                async with tts.stream(conn_options=conn) as stream:
                    turn.start = t0 = time.perf_counter()
                    HOPS.begin(stream, t0)
                    for sentence in sentences:
                        stream.push_text(sentence)
                    stream.flush()
                    stream.end_input()
                    async for ev in stream:
                        t = time.perf_counter()
                        if turn.first is None:
                            turn.first = t
                        data = ev.frame.data
                        turn.crc = zlib.crc32(data, turn.crc)
                        turn.samples += ev.frame.samples_per_channel
                        self.check_s += time.perf_counter() - t
                    hops = HOPS.end(stream, turn)
                    if self.window_start <= time.perf_counter() < self.window_end:
                        for hop, dt in hops.items():
                            self.hops[hop].append(dt)
            except APIError as exc:
                turn.error = f"{type(exc).__name__}: {_reason(exc)}"
            turn.end = time.perf_counter()
            turn.cpu = time.process_time() - self.check_s
            if turn.error is None and [turn.crc, turn.samples] not in self.expected[turn.text]:
                turn.error = "AudioMismatch"
            self.turns.append(turn)

    async def main(self) -> dict[str, Any]:
        from livekit.agents import APIConnectOptions
        from livekit.agents.utils import http_context

        async with http_context.open():  # as in a job: the official plugin's aiohttp session
            return await self._main(APIConnectOptions(max_retry=0, timeout=OPEN_TIMEOUT))

    async def _main(self, conn: Any) -> dict[str, Any]:
        tts = make_tts(self.args.driver, self.args.url)
        sampler = asyncio.create_task(self.sample_buffers()) if self.args.buffers else None
        self.window_start = time.perf_counter() + self.warmup  # imports are done by now
        self.window_end = self.window_start + self.window
        workers = range(self.args.concurrency)
        tasks = [asyncio.create_task(self.worker(tts, w, conn)) for w in workers]
        await asyncio.sleep(self.window_start - time.perf_counter())
        ru0, c0 = resource.getrusage(resource.RUSAGE_SELF), self.check_s
        await asyncio.sleep(self.window_end - time.perf_counter())
        ru1, c1 = resource.getrusage(resource.RUSAGE_SELF), self.check_s
        await asyncio.gather(*tasks)
        if sampler is not None:
            sampler.cancel()
        await tts.aclose()
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime) - (c1 - c0)
        switches = ru1.ru_nvcsw - ru0.ru_nvcsw  # threads handing work to each other
        window = [t for t in self.turns if self.window_start <= t.end < self.window_end]
        counted = len(window)
        if self.args.concurrency == 1:
            cpu, counted = self.turn_bounded(window)
        ok = [t for t in window if t.error is None]
        ttfa = sorted(t.first - t.start for t in ok if t.first is not None)
        return {
            "driver": self.args.label,
            "scenario": self.args.scenario,
            "concurrency": self.args.concurrency,
            "rep": self.args.rep,
            "turns": len(ok),
            "turns_window": len(window),
            "turns_per_s": len(ok) / self.window,
            "cpu_ms_per_turn": cpu * 1000 / counted if counted else None,
            "switches_per_turn": switches / len(window) if window else None,
            "ttfa_ms": {"p50": _pct(ttfa, 0.5), "p99": _pct(ttfa, 0.99), "max": _pct(ttfa, 1)},
            "failed": dict(Counter(t.error for t in window if t.error)),
            "failed_total": dict(Counter(t.error for t in self.turns if t.error)),
            "turns_total": len(self.turns),
            # C=1: each turn's own CPU (end to end), to see the spread behind the mean
            "turn_cpu_ms": [(b.cpu - a.cpu) * 1000 for a, b in itertools.pairwise(self.turns)]
            if self.args.concurrency == 1
            else [],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "hops_ms": {k: statistics.median(v) * 1000 for k, v in self.hops.items() if v},
            "buffers_mb": {
                f"{where} {stat}": fn(v) / 2**20
                for where, v in self.buffers.items()
                if any(v)
                for stat, fn in (("peak", max), ("p50", statistics.median))
            },
        }

    def turn_bounded(self, window: list[Turn]) -> tuple[float, int]:
        """C=1: the CPU from the end of the turn before the window's first to its last's end.

        One caller's turns follow each other, so the window's turns are exactly the work done
        between those two ends; a fixed window would count a part of a turn that ends outside
        it (paced: ~5.2 turns in 8 s, divided by 5 or 6 as the phase falls, +-20 %).
        """
        if not window:
            return 0.0, 0
        i = self.turns.index(window[0])
        start = self.turns[max(i - 1, 0)].cpu  # no turn before: from the first one's end
        return window[-1].cpu - start, len(window) - (i == 0)

    async def sample_buffers(self) -> None:
        """``--buffers``: the decoded audio waiting in the process, every 20 ms."""
        while True:
            await asyncio.sleep(0.02)
            trio_bytes = sum(stream.buffered_bytes for stream in list(BUFFERS.trio))
            lk_bytes = 0
            for lk_stream in list(BUFFERS.livekit):
                for ev in list(lk_stream._event_ch._queue):
                    frame = getattr(ev, "frame", None)
                    if frame is not None:
                        lk_bytes += frame.samples_per_channel * frame.num_channels * 2
            self.buffers["trio"].append(trio_bytes)
            self.buffers["livekit"].append(lk_bytes)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for known in ("Max contexts limit reached", "timed out", "no audio frames"):
        if known.lower() in text.lower():
            return known
    return text[:60]


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))] * 1000


def make_tts(driver: str, url: str) -> Any:
    root = url.split("/tts/", 1)[0] + "/"
    if driver == "official":
        from livekit.plugins import inworld

        return inworld.TTS(api_key=KEY, ws_url=root)
    from bridges import livekit

    return livekit.TTS(api_key=KEY, ws_url=root)


class _Hops:
    """``--hops``: timestamps at each hop of the first audio, per turn (off: no-ops)."""

    def __init__(self) -> None:
        self.on = False
        self.first: dict[str, dict[str, float]] = {}  # context id -> hop -> time
        self.by_stream: dict[int, float] = {}

    def begin(self, stream: Any, t0: float) -> None:
        if self.on:
            self.by_stream[id(stream)] = t0

    def mark(self, context_id: str, hop: str) -> None:
        seen = self.first.setdefault(context_id, {})
        if hop not in seen:
            seen[hop] = time.perf_counter()

    def end(self, stream: Any, turn: Turn) -> dict[str, float]:
        """Each hop's delay from the first ``push_text`` of ``turn`` (seconds)."""
        if not self.on:
            return {}
        t0 = self.by_stream.pop(id(stream))
        marks: dict[str, float] = {}
        for key in (getattr(stream, "_hop_context_id", None), *_bridge_keys(stream)):
            if key is not None:
                marks.update(self.first.pop(key, {}))
        out = {hop: t - t0 for hop, t in marks.items()}
        if turn.first is not None:
            out["frame out of the stream"] = turn.first - t0
        return out


HOPS = _Hops()


class _Buffers:
    """``--buffers``: every trio context stream and LiveKit stream of the process."""

    def __init__(self) -> None:
        self.trio: weakref.WeakSet[Any] = weakref.WeakSet()
        self.livekit: weakref.WeakSet[Any] = weakref.WeakSet()

    def track(self, driver: str) -> None:
        from livekit.agents import tts

        def tracked(cls: Any, into: weakref.WeakSet[Any]) -> None:
            init = cls.__init__

            def __init__(self: Any, *a: Any, **k: Any) -> None:
                init(self, *a, **k)
                into.add(self)

            cls.__init__ = __init__

        tracked(tts.SynthesizeStream, self.livekit)
        if driver != "official":
            from trio_tts._core import context

            tracked(context.ContextStream, self.trio)


BUFFERS = _Buffers()


def _key(actx: Any) -> str:
    """An AsyncioContext's hop key: its trio id once open, else one of its own."""
    ctx = getattr(actx, "_ctx", actx)
    return str(ctx.id) if ctx is not None else f"bridge-{id(actx)}"


def _bridge_keys(stream: Any) -> list[str | None]:
    actx = getattr(stream, "_hop_bridge", None)
    if actx is None:
        return []
    return [f"bridge-{id(actx)}", _key(actx)]


def instrument(driver: str) -> None:
    """Wrap the hot path of ``driver`` to record hop timestamps per context (``--hops``)."""
    import re

    HOPS.on = True
    cid_re = re.compile(r'"context_?[iI]d"\s*:\s*"([^"]+)"')

    def texts_out(frames: list[str]) -> None:
        for frame in frames:
            m = cid_re.search(frame)
            if m is None:
                continue
            kind = frame.split('"', 2)[1]
            HOPS.mark(m.group(1), f"{kind} written")

    if driver == "official":
        from livekit.plugins.inworld import tts as lk

        def wrap_conn(conn: Any) -> None:
            ws = conn._ws
            send_str, receive = ws.send_str, ws.receive

            async def sending(data: str, *a: Any, **k: Any) -> None:
                await send_str(data, *a, **k)
                texts_out([data])

            async def receiving(*a: Any, **k: Any) -> Any:
                msg = await receive(*a, **k)
                if isinstance(msg.data, str) and "audioChunk" in msg.data:
                    m = cid_re.search(msg.data)
                    if m:
                        HOPS.mark(m.group(1), "audio frame read")
                return msg

            ws.send_str, ws.receive = sending, receiving

        connect = lk._InworldConnection._connect

        async def _connect(self: Any) -> None:
            await connect(self)
            if self._ws is not None:
                wrap_conn(self)

        lk._InworldConnection._connect = _connect  # type: ignore[method-assign]
        create = lk._InworldConnection.create_context

        def create_context(self: Any, emitter: Any, opts: Any) -> Any:
            cid, waiter = create(self, emitter, opts)
            HOPS.mark(cid, "context registered")
            _CURRENT_STREAM.get()._hop_context_id = cid
            return cid, waiter

        lk._InworldConnection.create_context = create_context  # type: ignore[method-assign]
        run = lk.SynthesizeStream._run

        async def _run(self: Any, emitter: Any) -> None:
            _CURRENT_STREAM.set(self)
            await run(self, emitter)

        lk.SynthesizeStream._run = _run  # type: ignore[method-assign]
        for name, hop in (("send_text", "send_text queued"), ("flush_context", "flush queued")):
            method = getattr(lk._InworldConnection, name)

            def marked(self: Any, cid: str, *a: Any, _m: Any = method, _h: str = hop) -> None:
                HOPS.mark(cid, _h)
                _m(self, cid, *a)

            setattr(lk._InworldConnection, name, marked)
        return

    import trio_tts
    from bridges import asyncio_adapter, livekit
    from trio_tts._core import connection, pool

    send_many = connection.ConnectionActor._sender

    async def _sender(self: Any, transport: Any) -> None:
        inner = transport.send_many

        async def sending(frames: list[str]) -> None:
            await inner(frames)
            texts_out(frames)

        transport.send_many = sending
        await send_many(self, transport)

    connection.ConnectionActor._sender = _sender  # type: ignore[method-assign]
    route = pool.Pool.route

    def routing(self: Any, conn_id: int, event: Any) -> None:
        if isinstance(event, trio_tts.Audio):
            HOPS.mark(event.context_id, "audio decoded (trio)")
        route(self, conn_id, event)

    pool.Pool.route = routing  # type: ignore[method-assign]
    name = "wake" if hasattr(asyncio_adapter.AsyncioContext, "wake") else "_wake"  # older
    wake = getattr(asyncio_adapter.AsyncioContext, name)

    def waking(self: Any) -> None:
        HOPS.mark(_key(self), "consumer woken (trio)")
        wake(self)

    setattr(asyncio_adapter.AsyncioContext, name, waking)
    open_context = asyncio_adapter.AsyncioPool.open_context

    async def opening(self: Any, **kw: Any) -> Any:
        ctx = await open_context(self, **kw)
        HOPS.mark(ctx.id, "open_context returned (asyncio)")
        _CURRENT_STREAM.get()._hop_context_id = ctx.id
        return ctx

    asyncio_adapter.AsyncioPool.open_context = opening  # type: ignore[method-assign]
    start_context = getattr(asyncio_adapter.AsyncioPool, "start_context", None)
    if start_context is not None:

        def starting(self: Any, **kw: Any) -> Any:
            ctx = start_context(self, **kw)
            _CURRENT_STREAM.get()._hop_bridge = ctx
            return ctx

        asyncio_adapter.AsyncioPool.start_context = starting
    anext_ = asyncio_adapter.AsyncioContext.__anext__

    async def anext_marked(self: Any) -> Any:
        event = await anext_(self)
        HOPS.mark(_key(self), "event taken (asyncio)")
        return event

    asyncio_adapter.AsyncioContext.__anext__ = anext_marked  # type: ignore[method-assign]
    forward = getattr(asyncio_adapter.AsyncioContext, "forward", None)
    if forward is not None:  # the plugin hands events on as they arrive (no task step)

        async def forward_marked(self: Any, handle: Any) -> None:
            def marked(event: Any) -> None:
                HOPS.mark(_key(self), "event handed on (forward)")
                handle(event)

            await forward(self, marked)

        asyncio_adapter.AsyncioContext.forward = forward_marked
    run = livekit.SynthesizeStream._run

    async def _run(self: Any, emitter: Any) -> None:
        _CURRENT_STREAM.set(self)
        await run(self, emitter)

    livekit.SynthesizeStream._run = _run  # type: ignore[method-assign]
    for name, hop in (("send_text", "send_text called"), ("flush", "flush called")):
        method = getattr(asyncio_adapter.AsyncioContext, name)

        async def marked(self: Any, *a: Any, _m: Any = method, _h: str = hop, **k: Any) -> Any:
            HOPS.mark(_key(self), _h)
            return await _m(self, *a, **k)

        setattr(asyncio_adapter.AsyncioContext, name, marked)


_CURRENT_STREAM: contextvars.ContextVar[Any] = contextvars.ContextVar("stream")


def driver_main(args: argparse.Namespace) -> None:
    logging.disable(logging.CRITICAL)  # both plugins log each refused context; not measured
    if args.source:
        sys.path.insert(0, args.source)
    if args.hops:
        instrument(args.driver)
    if args.buffers:
        BUFFERS.track(args.driver)
    if args.source:  # the tree under test, not this one
        import bridges

        assert bridges.__file__ is not None and bridges.__file__.startswith(args.source)
    result = asyncio.run(Driver(args).main())
    sys.stdout.write(json.dumps(result) + "\n")


# ================================================================== the orchestrator


def expected_turns(path: str, concurrency: int, seconds: float) -> None:
    from _audio import firehose_pcm

    table = {}
    for w in range(concurrency):
        for v in (0, 1):
            text = h.turn_text(w, v)
            pcm = firehose_pcm(text, h.RATE, seconds)
            # LiveKit's emitter may end a segment with a 10 ms silent marker frame.
            marker = bytes(2 * h.RATE // 100)
            table[text] = [
                [zlib.crc32(pcm), len(pcm) // 2],
                [zlib.crc32(marker, zlib.crc32(pcm)), (len(pcm) + len(marker)) // 2],
            ]
    with open(path, "w") as f:
        json.dump(table, f)


def run_one(
    server: Any,
    name: str,
    scenario: str,
    conc: int,
    rep: int,
    expected: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    label, _, spec = name.rpartition("=")  # "before=ours@PATH": shown as "before"
    label = label or spec
    driver, _, source = spec.partition("@")
    warmup, window = WINDOWS[scenario]
    if scenario == "paced" and conc == 1:
        window = PACED_C1_WINDOW
    window = args.window_s or window
    cmd = [
        sys.executable, __file__, "--driver", driver, "--label", label, "--url", server.url,
        "--scenario", scenario, "--concurrency", str(conc), "--rep", str(rep),
        "--expected", expected, "--warmup", str(warmup), "--window", str(window),
    ]  # fmt: skip
    if source:
        cmd += ["--source", os.path.abspath(source)]
    if args.hops:
        cmd.append("--hops")
    if args.buffers:
        cmd.append("--buffers")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"driver": label, "scenario": scenario, "concurrency": conc, "rep": rep,
                "crashed": proc.returncode}  # fmt: skip
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "crashed" not in r:
            groups[r["scenario"], r["concurrency"], r["driver"]].append(r)
    out = []
    for (scen, conc, driver), rs in groups.items():
        failed: Counter[str] = Counter()
        for r in rs:
            failed.update(r["failed"])
        hops: dict[str, list[float]] = defaultdict(list)
        buffers: dict[str, list[float]] = defaultdict(list)
        for r in rs:
            for k, v in r.get("hops_ms", {}).items():
                hops[k].append(v)
            for k, v in r.get("buffers_mb", {}).items():
                buffers[k].append(v)

        def med(key: str, sub: str | None = None, rs: list[dict[str, Any]] = rs) -> float | None:
            vals = [r[key] if sub is None else r[key][sub] for r in rs]
            vals = [v for v in vals if v is not None]
            return statistics.median(vals) if vals else None

        out.append({
            "scenario": scen, "concurrency": conc, "driver": driver, "reps": len(rs),
            "ttfa_p50": med("ttfa_ms", "p50"), "ttfa_p99": med("ttfa_ms", "p99"),
            "cpu_ms_per_turn": med("cpu_ms_per_turn"), "turns_per_s": med("turns_per_s"),
            "switches_per_turn": med("switches_per_turn"),
            "peak_rss_mb": med("peak_rss_mb"), "turns": sum(r["turns_window"] for r in rs),
            "failed": dict(failed), "failed_count": sum(failed.values()),
            "hops_ms": {k: statistics.median(v) for k, v in hops.items()},
            "buffers_mb": {k: statistics.median(v) for k, v in buffers.items()},
        })  # fmt: skip
    return out


def _f(x: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(summary: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    drivers = list(dict.fromkeys(s["driver"] for s in summary))
    order = {d: i for i, d in enumerate(sorted(drivers, key=lambda d: d != "official"))}
    lines = [
        "# LiveKit plugin: official `livekit-plugins-inworld` 1.8.9 vs `bridges.livekit`",
        "",
        f"Run {meta['date']} on {meta['cpus']} cores (load average at start "
        f"{meta['load']}), {meta['reps']} repetitions (driver order rotated), lean server, "
        f"{meta['elapsed']:.0f} s in all. One `TTS` per process shared by C workers; a turn is"
        " 3 `push_text` sentences, `flush`, `end_input`, every frame of ~14 s of 24 kHz audio"
        " (70 messages); `max_retry=0`. Medians over the repetitions (peak RSS too); failures"
        " are totals over the windows. TTFA: first `push_text` to first frame, successful"
        " turns. Ratios: ours / official. CPU per turn counts every turn that ended in the"
        " window (C=1: from the end of the turn before it, so only whole turns; paced C=1"
        f" over {PACED_C1_WINDOW:.0f} s), failed ones too: where the official plugin's turns"
        " mostly fail at once (paced, C ≥ 20) its CPU per turn is that of a refusal, not"
        " comparable.",
        "",
        "| scenario | C | driver | TTFA p50 / p99 ms | CPU ms/turn | turns/s | peak RSS MiB"
        " | failed / turns | ratio TTFA p50 · CPU · RSS | thread switches/turn |",
        "|---|---:|---|---:|---:|---:|---:|---|---|---:|",
    ]
    idx = {(s["scenario"], s["concurrency"], s["driver"]): s for s in summary}
    for s in sorted(
        summary,
        key=lambda s: (list(SCENARIOS).index(s["scenario"]), s["concurrency"], order[s["driver"]]),
    ):
        failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "0"
        if s["failed"]:
            failed = f"{s['failed_count']} / {s['turns']} ({failed})"
        else:
            failed = f"0 / {s['turns']}"
        ratio = ""
        base = idx.get((s["scenario"], s["concurrency"], "official"))
        if base is not None and s["driver"] != "official":
            parts = []
            for key in ("ttfa_p50", "cpu_ms_per_turn", "peak_rss_mb"):
                a, b = s[key], base[key]
                parts.append("–" if not a or not b else f"{a / b:.2f}×")
            ratio = " · ".join(parts)
        lines.append(
            f"| {s['scenario']} | {s['concurrency']} | {s['driver']} | "
            f"{_f(s['ttfa_p50'])} / {_f(s['ttfa_p99'])} | {_f(s['cpu_ms_per_turn'], '{:.1f}')} | "
            f"{_f(s['turns_per_s'], '{:.1f}')} | {_f(s['peak_rss_mb'])} | {failed} | {ratio} | "
            f"{_f(s['switches_per_turn'])} |"
        )
    hop_rows = [s for s in summary if s["hops_ms"]]
    if hop_rows:
        lines += ["", "Hops (`--hops`): median ms from the first `push_text`, per turn.", ""]
        for s in hop_rows:
            hops = " → ".join(
                f"{k} {v:.1f}" for k, v in sorted(s["hops_ms"].items(), key=lambda kv: kv[1])
            )
            lines.append(f"- {s['scenario']} C={s['concurrency']} {s['driver']}: {hops}")
    buffer_rows = [s for s in summary if s.get("buffers_mb")]
    if buffer_rows:
        lines += [
            "",
            "Audio waiting in the process (`--buffers`, sampled every 20 ms of the whole run,"
            " warm-up included): MiB, peak / median.",
            "",
        ]
        for s in buffer_rows:
            b = s["buffers_mb"]
            where = "; ".join(
                f"{k} {b[k + ' peak']:.1f} / {b[k + ' p50']:.1f}"
                for k in ("trio", "livekit")
                if k + " peak" in b
            )
            lines.append(f"- {s['scenario']} C={s['concurrency']} {s['driver']}: {where}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # driver mode (one process per plugin run)
    p.add_argument("--driver", choices=("official", "ours"))
    p.add_argument("--label", default="")
    p.add_argument("--source", default="")
    p.add_argument("--url", default="")
    p.add_argument("--scenario", default="firehose", choices=sorted(SCENARIOS))
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--expected", default="")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--window", type=float, default=6.0)
    # orchestrator
    p.add_argument("--concurrency", default="1,20,50")
    p.add_argument("--scenarios", default="firehose,paced")
    p.add_argument("--drivers", default="official,ours")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--hops", action="store_true")
    p.add_argument("--buffers", action="store_true")
    p.add_argument("--window-s", type=float, default=0.0, help="override the window")
    p.add_argument("--md", default=os.path.join(HERE, "results", "livekit_plugin.md"))
    p.add_argument("--jsonl", default="")
    p.add_argument("--summarize", default="", help="only rewrite --md from this JSONL")
    args = p.parse_args()
    if args.summarize:
        with open(args.summarize) as f:
            rows = [json.loads(line) for line in f]
        metas = [json.loads(r["meta"]) for r in rows if "meta" in r]
        rows = [r for r in rows if "meta" not in r]
        meta = metas[-1] if metas else {"date": "?", "cpus": "?", "load": "?", "reps": "?"}
        meta.setdefault("elapsed", 0.0)
        with open(args.md, "w") as f:
            f.write(markdown(summarize(rows), meta))
        return
    if args.driver:
        args.concurrency = int(args.concurrency)
        args.label = args.label or args.driver
        driver_main(args)
        return
    from run import Server

    started = time.monotonic()
    load = os.getloadavg()[0]
    concs = [int(c) for c in args.concurrency.split(",")]
    drivers = args.drivers.split(",")
    rows: list[dict[str, Any]] = []
    jsonl = args.jsonl or os.path.splitext(args.md)[0] + ".jsonl"
    os.makedirs(os.path.dirname(os.path.abspath(jsonl)), exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load": f"{load:.1f}",
        "reps": args.reps,
    }
    with tempfile.TemporaryDirectory() as tmp, open(jsonl, "w") as out:
        expected = os.path.join(tmp, "expected.json")
        expected_turns(expected, max(concs), h.SCENARIOS["spec"].seconds)
        server = Server("spec", "lean")
        try:
            # Prime: one discarded run of each driver, so the server builds the frames of its
            # audio config (every text at once, bench_server.FrameCache) outside any window.
            server.command("scenario spec")
            for label in drivers:
                run_one(server, label, "firehose", max(concs), -1, expected, args)
                print(f"[{time.monotonic() - started:5.0f}s] primed {label}", flush=True)
            for scen in args.scenarios.split(","):
                server.command(f"scenario {SCENARIOS[scen]}")
                for conc in concs:
                    for rep in range(args.reps):
                        k = rep % len(drivers)
                        for label in drivers[k:] + drivers[:k]:
                            r = run_one(server, label, scen, conc, rep, expected, args)
                            rows.append(r)
                            out.write(json.dumps(r) + "\n")
                            out.flush()
                            print(
                                f"[{time.monotonic() - started:5.0f}s] {scen} C={conc} rep {rep}"
                                f" {label}: TTFA p50 {_f(r.get('ttfa_ms', {}).get('p50'))} ms,"
                                f" CPU {_f(r.get('cpu_ms_per_turn'), '{:.1f}')} ms/turn,"
                                f" RSS {_f(r.get('peak_rss_mb'))} MiB,"
                                f" failed {r.get('failed', r.get('crashed'))}",
                                flush=True,
                            )
        finally:
            server.close()
    summary = summarize(rows)
    meta["elapsed"] = time.monotonic() - started
    with open(jsonl, "a") as out:
        out.write(json.dumps({"meta": json.dumps(meta)}) + "\n")
    md = markdown(summary, meta)
    with open(args.md, "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
