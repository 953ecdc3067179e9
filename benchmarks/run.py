"""The benchmark orchestrator: ``make bench`` runs ``.venv/bin/python benchmarks/run.py``.

For each group of scenarios that share audio length and chunking it starts the firehose
server (``bench_server.py``) in its own process, computes every turn's expected chunk CRCs
(``expected.py``), then for each scenario × concurrency runs every driver in its own process
(so ``getrusage`` sees that client alone), 3 repetitions with the driver order rotated. It
snapshots the server's CPU time (``/proc/PID/stat``) when a driver's measurement window opens
and closes, and its drop counters around each driver run.

Outputs (``benchmarks/results/``): ``results.jsonl`` (one line per driver run, then one
``"summary"`` line per scenario × concurrency × driver), ``latest.md`` (the table and the
targets, met or missed) and ``chart.png`` (drawn by ``chart.py`` in the benchmark venv).

    .venv/bin/python benchmarks/run.py [--reps 3] [--only spec,light] [--drivers trio_tts,raw]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _harness as h  # noqa: E402

LIVEKIT_PY = os.path.join(HERE, ".venv-livekit", "bin", "python")
DRIVERS: dict[str, list[str]] = {
    "trio_tts": [sys.executable, os.path.join(HERE, "driver_trio.py")],
    "trio_tts/trio-websocket": [
        sys.executable,
        os.path.join(HERE, "driver_trio.py"),
        "--transport",
        "trio-websocket",
    ],
    "trio_tts/asyncio": [sys.executable, os.path.join(HERE, "driver_asyncio.py")],
    "livekit-1.8.3": [LIVEKIT_PY, os.path.join(HERE, "driver_livekit.py")],
    "raw": [sys.executable, os.path.join(HERE, "driver_raw.py")],
    "raw-aiohttp": [LIVEKIT_PY, os.path.join(HERE, "driver_raw_aiohttp.py")],
}
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class Server:
    def __init__(self, scenario: str, kind: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "bench_server.py"),
                "--scenario",
                scenario,
                "--server",
                kind,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        hello = json.loads(self._line())
        self.url: str = hello["url"]
        self.pid: int = hello["pid"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark server exited")
        return line

    def command(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_driver(
    server: Server, driver: str, scenario: h.Scenario, conc: int, rep: int, expected: str
) -> dict[str, Any]:
    before = server.command("stats")["stats"]
    cmd = [
        *DRIVERS[driver],
        "--url",
        server.url,
        "--scenario",
        scenario.name,
        "--concurrency",
        str(conc),
        "--expected",
        expected,
        "--rep",
        str(rep),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    marks: dict[str, tuple[float, float]] = {}
    result: dict[str, Any] | None = None
    deadline = time.monotonic() + scenario.warmup + scenario.duration + 120
    for line in proc.stdout:
        msg = json.loads(line)
        if "mark" in msg:
            marks[msg["mark"]] = (time.monotonic(), proc_cpu(server.pid))
        else:
            result = msg
        if time.monotonic() > deadline:
            proc.kill()
            break
    proc.wait()
    after = server.command("stats")["stats"]
    if result is None:
        result = {
            "driver": driver,
            "scenario": scenario.name,
            "concurrency": conc,
            "rep": rep,
            "crashed": proc.returncode,
        }
    result["driver"] = driver  # e.g. "trio_tts@baseline": the same driver, other code
    if "start" in marks and "end" in marks:
        (t0, c0), (t1, c1) = marks["start"], marks["end"]
        result["server_cpu_pct"] = 100 * (c1 - c0) / (t1 - t0)
    result["server_drops"] = after["drops"] - before["drops"]
    result["server_open_at_drops"] = after["open_at_drops"] - before["open_at_drops"]
    result["server_violations"] = after["violations"] - before["violations"]
    result["server_contexts"] = after["contexts_created"] - before["contexts_created"]
    return result


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "crashed" not in r:
            groups[r["scenario"], r["concurrency"], r["driver"]].append(r)
    out = []
    for (scen, conc, driver), rs in groups.items():
        failed: dict[str, int] = defaultdict(int)
        for r in rs:
            for k, v in r["failed_total"].items():
                failed[k] += v
        integ = {k: sum(r["integrity"][k] for r in rs) for k in rs[0]["integrity"]}
        out.append(
            {
                "summary": True,
                "scenario": scen,
                "concurrency": conc,
                "driver": driver,
                "reps": len(rs),
                "turns_per_s": _median([r["turns_per_s"] for r in rs]),
                "cpu_ms_per_turn": _median([r["cpu_ms_per_turn"] for r in rs]),
                "ttfa_p50": _median([r["ttfa_ms"]["p50"] for r in rs]),
                "ttfa_p99": _median([r["ttfa_ms"]["p99"] for r in rs]),
                "turn_p50": _median([r["turn_ms"]["p50"] for r in rs]),
                "turn_p99": _median([r["turn_ms"]["p99"] for r in rs]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "rss_per_100_ctx_mb": _median([r.get("rss_per_100_ctx_mb") for r in rs]),
                "turns_total": sum(r["turns_total"] for r in rs),
                "failed": dict(failed),
                "failed_count": sum(failed.values()),
                "integrity": integ,
                "server_cpu_pct": max((r.get("server_cpu_pct") or 0) for r in rs),
                "drops": sum(r["server_drops"] for r in rs),
                "open_at_drops": sum(r["server_open_at_drops"] for r in rs),
                "violations": sum(r["server_violations"] for r in rs),
                "ttfa_samples": sorted(x for r in rs for x in r["ttfa_samples"]),
                "turn_samples": sorted(x for r in rs for x in r["turn_samples"]),
            }
        )
    return out


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | C | driver | turns/s | CPU ms/turn | TTFA p50 / p99 ms | turn p50 / p99 ms"
        " | peak RSS MB | RSS MB / 100 ctx | failed turns | integrity (lost/extra/misrouted B)"
        " | server CPU % | CPU × LiveKit · × raw aiohttp |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    idx = {(s["scenario"], s["concurrency"], s["driver"]): s for s in summary}

    def ratio(s: dict[str, Any], other: str) -> str:
        o = idx.get((s["scenario"], s["concurrency"], other))
        if s["driver"] == other or not o or not o["cpu_ms_per_turn"] or not s["cpu_ms_per_turn"]:
            return "–"
        return f"{s['cpu_ms_per_turn'] / o['cpu_ms_per_turn']:.2f}×"

    order = {d: i for i, d in enumerate(DRIVERS)}
    scen_order = {s: i for i, s in enumerate(h.SCENARIOS)}
    for s in sorted(
        summary,
        key=lambda s: (scen_order[s["scenario"]], s["concurrency"], order.get(s["driver"], 9)),
    ):
        i = s["integrity"]
        failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "0"
        if s["drops"]:
            failed += f" (drops {s['drops']}, open at drops {s['open_at_drops']})"
        integrity = (
            "ok"
            if not i["turns_bad"]
            else f"{i['turns_bad']} bad: {i['bytes_lost']}/{i['bytes_extra']}/"
            f"{i['bytes_misrouted']}"
        )
        lines.append(
            f"| {s['scenario']} | {s['concurrency']} | {s['driver']} | {_f(s['turns_per_s'])} | "
            f"{_f(s['cpu_ms_per_turn'], '{:.2f}')} | {_f(s['ttfa_p50'], '{:.0f}')} / "
            f"{_f(s['ttfa_p99'], '{:.0f}')} | {_f(s['turn_p50'], '{:.0f}')} / "
            f"{_f(s['turn_p99'], '{:.0f}')} | {_f(s['peak_rss_mb'], '{:.0f}')} | "
            f"{_f(s.get('rss_per_100_ctx_mb'))} | {failed} | "
            f"{integrity} | {_f(s['server_cpu_pct'], '{:.0f}')} | "
            f"{ratio(s, 'livekit-1.8.3')} · {ratio(s, 'raw-aiohttp')} |"
        )
    return "\n".join(lines)


def targets(summary: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    idx = {(s["scenario"], s["concurrency"], s["driver"]): s for s in summary}
    out: list[tuple[str, bool | None, str]] = []

    def get(scen: str, c: int, d: str) -> dict[str, Any] | None:
        return idx.get((scen, c, d))

    t, lk, raw = (
        get("spec", 100, "trio_tts"),
        get("spec", 100, "livekit-1.8.3"),
        get("spec", 100, "raw"),
    )
    if t and lk:
        r = t["turns_per_s"] / lk["turns_per_s"]
        out.append(
            (
                "spec C=100: turns/s ≥ 1.5× LiveKit",
                r >= 1.5,
                f"{t['turns_per_s']:.1f} vs {lk['turns_per_s']:.1f} = {r:.2f}×",
            )
        )
        r = t["cpu_ms_per_turn"] / lk["cpu_ms_per_turn"]
        out.append(
            (
                "spec C=100: CPU/turn ≤ 0.6× LiveKit",
                r <= 0.6,
                f"{t['cpu_ms_per_turn']:.2f} vs {lk['cpu_ms_per_turn']:.2f} ms = {r:.2f}×",
            )
        )
    t, lk = get("light", 100, "trio_tts"), get("light", 100, "livekit-1.8.3")
    if t and lk:
        r = t["cpu_ms_per_turn"] / lk["cpu_ms_per_turn"]
        out.append(
            (
                "light C=100: CPU/turn ≤ 0.8× LiveKit",
                r <= 0.8,
                f"{t['cpu_ms_per_turn']:.2f} vs {lk['cpu_ms_per_turn']:.2f} ms = {r:.2f}×",
            )
        )
    t, lk = get("starve", 200, "trio_tts"), get("starve", 200, "livekit-1.8.3")
    if t:
        out.append(
            (
                "starve C=200: zero failed turns",
                t["failed_count"] == 0,
                f"trio_tts {t['failed_count']} failed of {t['turns_total']}"
                + (
                    f"; LiveKit {lk['failed_count']} failed ({lk['failed']}) of {lk['turns_total']}"
                    if lk
                    else ""
                ),
            )
        )
    if t and lk and t["ttfa_p99"] and lk["ttfa_p99"]:
        # A turn that failed never got audio: counted as infinitely late, LiveKit's p99 over
        # all its turns is infinite as soon as more than 1 % of them failed.
        lk_all = math.inf if lk["failed_count"] > 0.01 * lk["turns_total"] else lk["ttfa_p99"]
        t_all = math.inf if t["failed_count"] > 0.01 * t["turns_total"] else t["ttfa_p99"]
        r = t["ttfa_p99"] / lk["ttfa_p99"]
        r_all = t_all / lk_all if lk_all != math.inf else 0.0
        out.append(
            (
                "starve C=200: TTFA p99 ≤ 0.35× LiveKit (successful turns only)",
                r <= 0.35,
                f"{t['ttfa_p99']:.0f} vs {lk['ttfa_p99']:.0f} ms = {r:.2f}×",
            )
        )
        out.append(
            (
                "starve C=200: TTFA p99 ≤ 0.35× LiveKit (failed turns count as never)",
                r_all <= 0.35,
                f"{t_all:.0f} vs {lk_all:.0f} ms = {r_all:.2f}× ({lk['failed_count']} of "
                f"{lk['turns_total']} LiveKit turns never got audio)",
            )
        )
    for c in (100, 200):
        t = get("chaos", c, "trio_tts")
        if t:
            ok = t["failed_count"] <= t["open_at_drops"]
            per = t["failed_count"] / t["drops"] if t["drops"] else 0.0
            bound = t["open_at_drops"] / t["drops"] if t["drops"] else 0.0
            lk = get("chaos", c, "livekit-1.8.3")
            lk_txt = f"; LiveKit {lk['failed_count']} failed over {lk['drops']} drops" if lk else ""
            out.append(
                (
                    f"chaos C={c}: failed turns per drop ≤ contexts open at the drop",
                    ok if t["drops"] else None,
                    f"{t['failed_count']} failed over {t['drops']} drops = {per:.2f}/drop; "
                    f"open at drops {bound:.2f}/drop{lk_txt}",
                )
            )
    out += issue19_targets(get)
    for scen in ("spec", "light"):
        t, raw = get(scen, 100, "trio_tts"), get(scen, 100, "raw")
        if t and raw:
            r = t["cpu_ms_per_turn"] / raw["cpu_ms_per_turn"]
            out.append(
                (
                    f"{scen} C=100: CPU/turn within 1.25× the raw ceiling",
                    r <= 1.25,
                    f"{t['cpu_ms_per_turn']:.2f} vs {raw['cpu_ms_per_turn']:.2f} ms = {r:.2f}×",
                )
            )
    return out


def _ratio(
    name: str, a: dict[str, Any], b: dict[str, Any], key: str, bound: float, unit: str = "ms"
) -> tuple[str, bool | None, str]:
    x, y = a[key], b[key]
    if not x or not y:
        return name, None, "no data"
    r = x / y
    return name, r <= bound, f"{x:.2f} vs {y:.2f} {unit} = {r:.2f}×"


def issue19_targets(
    get: Any,
) -> list[tuple[str, bool | None, str]]:
    """Issue 19: relative to LiveKit 1.8.3's pool AND the raw aiohttp client, same run."""
    out: list[tuple[str, bool | None, str]] = []
    for c in (100, 200):
        t, lk, ra = (
            get("spec", c, "trio_tts"),
            get("spec", c, "livekit-1.8.3"),
            get("spec", c, "raw-aiohttp"),
        )
        if t and lk:
            out.append(
                _ratio(f"spec C={c}: CPU/turn ≤ 0.5× LiveKit", t, lk, "cpu_ms_per_turn", 0.5)
            )
        if t and ra:
            out.append(
                _ratio(f"spec C={c}: CPU/turn ≤ 0.8× raw aiohttp", t, ra, "cpu_ms_per_turn", 0.8)
            )
        t, ra = get("light", c, "trio_tts"), get("light", c, "raw-aiohttp")
        if t and ra:
            out.append(
                _ratio(f"light C={c}: CPU/turn ≤ 1.0× raw aiohttp", t, ra, "cpu_ms_per_turn", 1.0)
            )
    t, ra = get("spec", 100, "trio_tts"), get("spec", 100, "raw-aiohttp")
    if t and t["ttfa_p50"] and t["ttfa_p99"]:
        r = t["ttfa_p99"] / t["ttfa_p50"]
        out.append(
            (
                "spec C=100: TTFA p99 ≤ 1.2× p50",
                r <= 1.2,
                f"{t['ttfa_p99']:.0f} / {t['ttfa_p50']:.0f} ms = {r:.2f}×",
            )
        )
        if ra and ra["ttfa_p99"]:
            out.append(_ratio("spec C=100: TTFA p99 ≤ raw aiohttp's", t, ra, "ttfa_p99", 1.0))
    t, lk, ra = (
        get("paced", 100, "trio_tts"),
        get("paced", 100, "livekit-1.8.3"),
        get("paced", 100, "raw-aiohttp"),
    )
    if t and lk:
        out.append(_ratio("paced C=100: CPU/turn ≤ 0.7× LiveKit", t, lk, "cpu_ms_per_turn", 0.7))
    if t and ra and t["ttfa_p50"] and ra["ttfa_p50"]:
        for q, bound in (("p50", 10.0), ("p99", 20.0)):
            d = t[f"ttfa_{q}"] - ra[f"ttfa_{q}"]
            out.append(
                (
                    f"paced C=100: TTFA {q} added over raw aiohttp ≤ {bound:g} ms",
                    d <= bound,
                    f"{t[f'ttfa_{q}']:.0f} − {ra[f'ttfa_{q}']:.0f} = {d:+.0f} ms",
                )
            )
    for c in (100, 200):
        t = get("spec", c, "trio_tts")
        if t and t.get("rss_per_100_ctx_mb") is not None:
            others = [
                f"{d} {x['rss_per_100_ctx_mb']:.1f}"
                for d in ("raw-aiohttp", "livekit-1.8.3")
                if (x := get("spec", c, d)) and x.get("rss_per_100_ctx_mb") is not None
            ]
            out.append(
                (
                    f"spec C={c}: RSS per 100 open contexts (reported)",
                    None,
                    f"trio_tts {t['rss_per_100_ctx_mb']:.1f} MiB"
                    + (f"; {', '.join(others)} MiB" if others else ""),
                )
            )
    return out


def markdown(summary: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Benchmark: trio_tts vs LiveKit 1.8.3's Inworld pool vs a raw client",
        "",
        f"Run {meta['date']} on {meta['cpus']} cores, {meta['reps']} repetitions (driver order "
        f"rotated), server `{meta['server']}`, {meta['elapsed']:.0f} s in all. Medians over the "
        "repetitions; failures, integrity and drops are totals; server CPU % is the highest."
        " The client and the server share the machine's cores.",
        "",
        f"Machine: {meta.get('machine', 'not recorded')}.",
        "",
        "Ratios (last column): CPU per turn of the row over LiveKit 1.8.3's and over the raw"
        " aiohttp client's, same scenario and concurrency, same run.",
        "",
        "Scenarios: "
        + "; ".join(
            f"*{s.name}* — {s.description} (window {s.duration:g} s after {s.warmup:g} s warm-up)"
            for s in h.SCENARIOS.values()
        )
        + ".",
        "",
        table(summary),
        "",
        "## Targets",
        "",
    ]
    for name, ok, text in targets(summary):
        mark = "n/a" if ok is None else ("**met**" if ok else "**missed**")
        lines.append(f"- {name}: {mark} — {text}")
    pairs = transports(summary)
    if pairs:
        lines += [
            "",
            "## Transports through the pool",
            "",
            'The pool over trio-websocket (`transport="trio-websocket"`) relative to the '
            "default (websockets sans-io), same scenario and concurrency:",
            "",
            *pairs,
        ]
    lines += ["", "![latency CDFs and CPU per turn](chart.png)", ""]
    return "\n".join(lines)


def transports(summary: list[dict[str, Any]]) -> list[str]:
    """One line per scenario × concurrency that ran both ``trio_tts`` drivers."""
    idx = {(s["scenario"], s["concurrency"], s["driver"]): s for s in summary}
    scen_order = {s: i for i, s in enumerate(h.SCENARIOS)}
    out = []
    for scen, conc in sorted({(s, c) for s, c, _ in idx}, key=lambda k: (scen_order[k[0]], k[1])):
        ws, tw = idx.get((scen, conc, "trio_tts")), idx.get((scen, conc, "trio_tts/trio-websocket"))
        if not ws or not tw or not ws["turns_per_s"] or not tw["turns_per_s"]:
            continue
        text = (
            f"- {scen} C={conc}: turns/s {tw['turns_per_s']:.1f} vs {ws['turns_per_s']:.1f} "
            f"({tw['turns_per_s'] / ws['turns_per_s']:.2f}×)"
        )
        if ws["cpu_ms_per_turn"] and tw["cpu_ms_per_turn"]:
            text += (
                f"; CPU/turn {tw['cpu_ms_per_turn']:.2f} vs {ws['cpu_ms_per_turn']:.2f} ms "
                f"({tw['cpu_ms_per_turn'] / ws['cpu_ms_per_turn']:.2f}×)"
            )
        out.append(text)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default=",".join(h.SCENARIOS))
    p.add_argument(
        "--drivers",
        default=",".join(DRIVERS),
        help="comma-separated; with --baseline, add trio_tts@baseline",
    )
    p.add_argument("--concurrency", default="", help="e.g. 100 (default: each scenario's)")
    p.add_argument("--server", choices=("lean", "local"), default="lean")
    p.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run DIR's driver_trio.py (a checkout of other code, e.g. `git worktree add"
        " DIR main`) as the driver trio_tts@baseline, for before/after in one run",
    )
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the driver runs already in results.jsonl, run only the missing ones",
    )
    args = p.parse_args()
    started = time.monotonic()
    machine = h.machine()
    if args.baseline:
        base = os.path.abspath(args.baseline)
        DRIVERS["trio_tts@baseline"] = [
            sys.executable,
            os.path.join(base, "benchmarks", "driver_trio.py"),
        ]
    drivers = [d for d in args.drivers.split(",") if d]
    if {"livekit-1.8.3", "raw-aiohttp"} & set(drivers) and not os.path.exists(LIVEKIT_PY):
        sys.exit(f"{LIVEKIT_PY} is missing: run `make bench` (it creates the LiveKit venv)")
    wanted = [h.SCENARIOS[n] for n in args.only.split(",") if n]
    groups: dict[tuple[float, int], list[h.Scenario]] = defaultdict(list)
    for s in wanted:
        groups[s.seconds, s.chunk_ms].append(s)
    os.makedirs(args.out, exist_ok=True)
    rows: list[dict[str, Any]] = []
    jsonl = os.path.join(args.out, "results.jsonl")
    if args.resume and os.path.exists(jsonl):
        with open(jsonl) as f:
            rows = [r for r in map(json.loads, f) if not r.get("summary")]
    done = {(r["scenario"], r["concurrency"], r["rep"], r["driver"]) for r in rows}
    with tempfile.TemporaryDirectory() as tmp, open(jsonl, "w") as out:
        for r in rows:
            out.write(json.dumps(r) + "\n")
        for scenarios in groups.values():
            todo = [
                (s, c, rep)
                for s in scenarios
                for c in s.concurrencies
                for rep in range(args.reps)
                if any((s.name, c, rep, d) not in done for d in drivers)
            ]
            if not todo:
                continue
            first = scenarios[0]
            expected = os.path.join(tmp, f"expected-{first.name}.json")
            subprocess.run(
                [
                    sys.executable,
                    os.path.join(HERE, "expected.py"),
                    "--scenario",
                    first.name,
                    "--out",
                    expected,
                ],
                check=True,
            )
            server = Server(first.name, args.server)
            try:
                # Prime: one discarded run of each driver, so the server builds the frames of
                # its audio config (every text at once) outside any measured window.
                prime = max(scenarios, key=lambda s: max(s.concurrencies))
                server.command(f"scenario {prime.name}")
                for driver in drivers:
                    t = time.monotonic()
                    run_driver(server, driver, prime, max(prime.concurrencies), -1, expected)
                    print(
                        f"[{time.monotonic() - started:5.0f}s] primed {driver} on {prime.name} "
                        f"({time.monotonic() - t:.1f} s, discarded)",
                        flush=True,
                    )
                for s in scenarios:
                    server.command(f"scenario {s.name}")
                    concs = (
                        [int(c) for c in args.concurrency.split(",")]
                        if args.concurrency
                        else list(s.concurrencies)
                    )
                    for conc in concs:
                        for rep in range(args.reps):
                            k = rep % len(drivers)
                            for driver in drivers[k:] + drivers[:k]:
                                if (s.name, conc, rep, driver) in done:
                                    continue
                                r = run_driver(server, driver, s, conc, rep, expected)
                                rows.append(r)
                                out.write(json.dumps(r) + "\n")
                                out.flush()
                                print(
                                    f"[{time.monotonic() - started:5.0f}s] {s.name} C={conc} "
                                    f"rep {rep} {driver}: {_f(r.get('turns_per_s'))} turns/s, "
                                    f"{_f(r.get('cpu_ms_per_turn'), '{:.2f}')} ms CPU/turn, "
                                    f"failed {r.get('failed_total')}, server "
                                    f"{_f(r.get('server_cpu_pct'), '{:.0f}')}% CPU",
                                    flush=True,
                                )
            finally:
                server.close()
        summary = summarize(rows)
        for srow in summary:
            out.write(json.dumps(srow) + "\n")
    meta = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "reps": args.reps,
        "server": args.server,
        "elapsed": time.monotonic() - started,
    }
    md = markdown(summary, meta)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    py = LIVEKIT_PY if os.path.exists(LIVEKIT_PY) else sys.executable
    subprocess.run(
        [py, os.path.join(HERE, "chart.py"), jsonl, os.path.join(args.out, "chart.png")],
        check=False,
    )
    print(md)


if __name__ == "__main__":
    main()
