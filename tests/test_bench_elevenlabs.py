"""``benchmarks/bench_elevenlabs.py`` still runs (``make bench`` is not part of ``make test``):
the barge-in scenario with the pool and our LiveKit plugin, a 1 s window, unpaced audio, each
client in its own process against the local server, and the table it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_elevenlabs.py"


def test_barge_in_row_runs_and_reports_the_servers_counters(tmp_path: Path) -> None:
    md = tmp_path / "elevenlabs.md"
    args = ["--scenarios", "barge5", "--drivers", "pool,ours", "--window", "1", "--warmup", "1"]
    args += ["--pace", "0"]  # audio as fast as the socket takes it: many turns in 1 s
    out = subprocess.run(
        [sys.executable, str(BENCH), *args, "--md", str(md)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [(r["driver"], r["scenario"]) for r in rows] == [("pool", "barge5"), ("ours", "barge5")]
    for row in rows:
        assert row["ok"] > 0 and row["failed"] == {}, row
        assert row["ttfa_p50_ms"] > 0 and row["cpu_ms_per_turn"] > 0, row
        # The server's own counters: never a sixth context on a socket.
        assert row["server_violations"] == 0 and row["server_peak_per_socket"] <= 5, row
    table = md.read_text()
    assert "| barge5 | bridges.livekit_elevenlabs |" in table
    assert "| barge5 | trio_tts pool (trio) |" in table
