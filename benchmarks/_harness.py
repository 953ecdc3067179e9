"""What every benchmark driver shares: the scenarios, the turn texts, the closed loop's
bookkeeping, the audio integrity check and the one JSON line a driver prints.

Standard library only: the LiveKit driver imports this from its own virtualenv, where neither
trio nor trio_tts is installed.

A *turn* is: open a context, send 3 sentences, flush, close, read all audio until the server
confirmed the close. Worker ``w`` speaks the text ``turn_text(w, n)`` on its ``n``-th turn; the
text alternates between two variants per worker, so no two contexts that can be alive at the
same time (another worker's, or this worker's previous, abandoned one) ever expect the same
audio — misrouted audio cannot go unnoticed.

Integrity: the server's audio (``_audio.firehose_pcm``) is a pure function of the text, so the
orchestrator computes, for every text, the CRC-32 of every audio chunk the server will send (it
cuts audio at fixed offsets). A driver records the CRC-32 of every chunk it receives; at the
end of each turn the received sequence is compared with the expected one: chunks of this turn
that never came are *lost*, chunks expected by another turn are *misrouted*, anything else
(duplicates, unknown bytes) is *extra*. Computing CRCs costs ~3.5 µs per 9.6 KB chunk; that
time is timed with ``perf_counter`` around each call (the drivers are single-threaded and the
CRC makes no system call) and subtracted from the client CPU reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

RATE = 24000
VOICE = "Ashley"


@dataclass(frozen=True)
class Scenario:
    name: str
    #: Seconds of audio per turn (every generation lasts this long, whatever the text).
    seconds: float
    chunk_ms: int
    #: Server delay before a context's first audio chunk.
    first_audio_delay: float = 0.0
    #: Audio is sent at this many times real time (None: as fast as the socket takes it).
    pace: float | None = None
    #: The server closes each connection with 1011 after its N-th context.
    close_after: int | None = None
    concurrencies: tuple[int, ...] = (100, 200)
    warmup: float = 1.0
    duration: float = 3.0
    description: str = ""


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "spec", 14.0, 200, description="~14 s of 24 kHz PCM per turn, 0.2 s chunks (70 msgs)"
        ),
        Scenario(
            "light", 1.4, 20, description="same 70 messages per turn, 10x fewer bytes (20 ms)"
        ),
        Scenario(
            "paced",
            14.0,
            200,
            first_audio_delay=0.15,
            pace=10.0,
            warmup=1.0,
            # Six whole turns: the callers start together, so turns end in cohorts every
            # ~1.55 s; a window that is not a whole number of them counts the CPU of a part
            # of a cohort whose turns end outside it (3.5 s: +15-20 %, varying with phase).
            duration=9.3,
            description="150 ms to first audio, then 10x real time (~1.55 s per turn)",
        ),
        Scenario(
            "starve",
            14.0,
            200,
            first_audio_delay=0.15,
            pace=3.0,
            concurrencies=(200,),
            warmup=0.0,
            duration=10.0,
            description="~4.8 s turns (14 s at 3x real time), 200 callers over 100 slots",
        ),
        Scenario(
            "chaos",
            14.0,
            200,
            close_after=50,
            duration=5.0,
            description="spec, but each connection is closed with 1011 after its 50th context",
        ),
    )
}

#: Seconds a caller may wait for a slot (LiveKit's default APIConnectOptions.timeout).
OPEN_TIMEOUT = 10.0
MAX_CONNECTIONS = 20
CONTEXTS_PER_CONNECTION = 5
MAX_WORKERS = 200


def turn_sentences(worker: int, turn: int) -> list[str]:
    """The 3 sentences of a turn (under LiveKit's 120-character auto-flush threshold)."""
    again = " again" if turn % 2 else ""
    return [
        f"Caller {worker} starts{again} now. ",
        f"Here is sentence two for {worker}. ",
        "And sentence three ends it.",
    ]


def turn_text(worker: int, turn: int) -> str:
    """What the server synthesises for the turn: the three sentences, concatenated."""
    return "".join(turn_sentences(worker, turn))


def all_texts() -> list[str]:
    return [turn_text(w, v) for w in range(MAX_WORKERS) for v in (0, 1)]


# ----------------------------------------------------------------------------- integrity


class Integrity:
    """Compares each turn's received chunks with the server's deterministic audio."""

    def __init__(self, expected: dict[str, list[list[int]]]) -> None:
        #: text -> [[crc, length], ...] in order
        self.expected = expected
        self.owner: dict[int, str] = {}
        for text, chunks in expected.items():
            for crc, _n in chunks:
                self.owner[crc] = text
        self.turns_checked = 0
        self.turns_bad = 0
        self.lost = 0
        self.extra = 0
        self.misrouted = 0
        self.reordered = 0

    @classmethod
    def load(cls, path: str) -> Integrity:
        with open(path) as f:
            return cls(json.load(f))

    def check(self, text: str, received: list[tuple[int, int]], *, complete: bool) -> None:
        """``received``: (crc, length) per chunk. ``complete``: the turn succeeded (a failed
        turn is only checked for foreign or duplicated audio, not for what it never got)."""
        self.turns_checked += 1
        want = self.expected[text]
        if (
            complete
            and len(received) == len(want)
            and all(r[0] == w[0] for r, w in zip(received, want, strict=True))
        ):
            return
        remaining = Counter(w[0] for w in want)
        lengths = {w[0]: w[1] for w in want}
        bad = False
        own_order: list[int] = []
        for crc, n in received:
            if remaining[crc] > 0:
                remaining[crc] -= 1
                own_order.append(crc)
            elif crc in self.owner and self.owner[crc] != text:
                self.misrouted += n
                bad = True
            else:
                self.extra += n
                bad = True
        if complete:
            missing = sum(lengths[c] * k for c, k in remaining.items() if k > 0)
            if missing:
                self.lost += missing
                bad = True
            if own_order != [w[0] for w in want if w[0] in set(own_order)][: len(own_order)]:
                self.reordered += 1
                bad = True
        if bad:
            self.turns_bad += 1

    def summary(self) -> dict[str, int]:
        return {
            "turns_checked": self.turns_checked,
            "turns_bad": self.turns_bad,
            "bytes_lost": self.lost,
            "bytes_extra": self.extra,
            "bytes_misrouted": self.misrouted,
            "turns_reordered": self.reordered,
        }


# ----------------------------------------------------------------------------- recording

_check_seconds = 0.0  # time spent computing CRCs (subtracted from client CPU)


class Turn:
    """One turn's timings and received chunks. Call :meth:`audio` per chunk."""

    __slots__ = ("chunks", "end", "error", "first", "start", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end: float | None = None
        self.error: str | None = None
        self.chunks: list[tuple[int, int]] = []

    def audio(self, data: bytes) -> None:
        global _check_seconds
        t = time.perf_counter()
        if self.first is None:
            self.first = t
        self.chunks.append((zlib.crc32(data), len(data)))
        _check_seconds += time.perf_counter() - t


class Run:
    """The closed loop's clock and results, shared by a driver's workers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scenario = SCENARIOS[args.scenario]
        self.integrity = Integrity.load(args.expected)
        self.turns: list[Turn] = []
        self.t0 = time.perf_counter()
        self.window_start = self.t0 + self.scenario.warmup
        self.window_end = self.window_start + self.scenario.duration
        self._ru_start: resource.struct_rusage | None = None
        self._ru_end: resource.struct_rusage | None = None
        self._check_start = 0.0
        self._check_end = 0.0
        self.extra: dict[str, Any] = {}
        # RSS before the driver opens anything, and at the window's ends (contexts open).
        self._rss_base = rss_mb()
        self._rss_window: list[float] = []

    @property
    def stopping(self) -> bool:
        """Workers start no new turn once the window closed."""
        return time.perf_counter() >= self.window_end

    def new_turn(self, worker: int, n: int) -> tuple[Turn, list[str]]:
        return Turn(turn_text(worker, n)), turn_sentences(worker, n)

    def done(self, turn: Turn, error: BaseException | str | None = None) -> None:
        turn.end = time.perf_counter()
        if error is not None:
            turn.error = error if isinstance(error, str) else type(error).__name__
        self.turns.append(turn)
        global _check_seconds
        t = time.perf_counter()
        self.integrity.check(turn.text, turn.chunks, complete=turn.error is None)
        turn.chunks = []
        _check_seconds += time.perf_counter() - t

    def mark_start(self) -> None:
        self._ru_start = resource.getrusage(resource.RUSAGE_SELF)
        self._check_start = _check_seconds
        self._rss_window.append(rss_mb())

    def mark_end(self) -> None:
        self._ru_end = resource.getrusage(resource.RUSAGE_SELF)
        self._check_end = _check_seconds
        self._rss_window.append(rss_mb())

    def result(self, driver: str) -> dict[str, Any]:
        s = self.scenario
        a, b = self._ru_start, self._ru_end
        assert a is not None and b is not None
        cpu = (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
        check = self._check_end - self._check_start
        window = [
            t
            for t in self.turns
            if t.end is not None and self.window_start <= t.end < self.window_end
        ]
        ok = [t for t in window if t.error is None]
        failed = Counter(t.error for t in window if t.error is not None)
        failed_all = Counter(t.error for t in self.turns if t.error is not None)
        ttfa = sorted((t.first - t.start) for t in ok if t.first is not None)
        ttime = sorted((t.end - t.start) for t in ok if t.end is not None)
        return {
            "driver": driver,
            "scenario": s.name,
            "concurrency": self.args.concurrency,
            "rep": self.args.rep,
            "window_s": s.duration,
            "turns": len(ok),
            "turns_per_s": len(ok) / s.duration,
            "cpu_s": cpu,
            "check_cpu_s": check,
            "cpu_ms_per_turn": (cpu - check) * 1000 / len(ok) if ok else None,
            "ttfa_ms": _summary(ttfa),
            "turn_ms": _summary(ttime),
            "ttfa_samples": _sample(ttfa),
            "turn_samples": _sample(ttime),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            # What serving the open contexts adds to the process (RSS in the window minus RSS
            # before the driver opened anything), per 100 contexts open at once.
            "rss_per_100_ctx_mb": (max(self._rss_window) - self._rss_base)
            * 100
            / self.args.concurrency,
            "failed": dict(failed),
            "failed_total": dict(failed_all),
            "turns_total": len(self.turns),
            "integrity": self.integrity.summary(),
            **self.extra,
        }


def machine() -> str:
    """One line describing where a benchmark ran: CPU model, cores, memory, kernel, Python,
    the load average when it started (other work on the machine skews wall-clock numbers)."""
    import os
    import platform

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB"
    except OSError:
        mem = "? GiB"
    return (
        f"{model}, {os.cpu_count()} cores, {mem}, Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )


def rss_mb() -> float:
    """The process's resident set size now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[i] * 1000


def _summary(xs: list[float]) -> dict[str, float | None]:
    return {
        "p50": _pct(xs, 0.50),
        "p90": _pct(xs, 0.90),
        "p99": _pct(xs, 0.99),
        "max": _pct(xs, 1.0),
    }


def _sample(xs: list[float], n: int = 200) -> list[float]:
    """Up to ``n`` evenly spaced order statistics (ms) for the CDF chart."""
    if len(xs) <= n:
        return [round(x * 1000, 3) for x in xs]
    return [round(xs[round(i * (len(xs) - 1) / (n - 1))] * 1000, 3) for i in range(n)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--url", required=True, help="ws://127.0.0.1:PORT/tts/v1/voice:streamBidirectional"
    )
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--expected", required=True, help="expected chunk CRCs (JSON)")
    p.add_argument("--rep", type=int, default=0)
    return p.parse_args(argv)


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
