"""What the small reader benchmarks (``bench_guest_io.py``, ``bench_receive.py``) share: the
same four options, and each mode run in its own process, the modes alternated, ``--reps``
rounds (a slow stretch of the machine then hits every mode alike)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


def parse(
    doc: str, modes: Sequence[str], *, messages: int, gap: float, reps: int
) -> argparse.Namespace:
    """``--mode`` (one run of one mode, in this process), ``--messages``, ``--gap``, ``--reps``."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--mode", choices=modes)
    p.add_argument("--messages", type=int, default=messages)
    p.add_argument("--gap", type=float, default=gap)
    p.add_argument("--reps", type=int, default=reps)
    return p.parse_args()


def alternate(script: str, modes: Sequence[str], args: argparse.Namespace) -> dict[str, list[Any]]:
    """Run ``script --mode M`` for every mode, ``args.reps`` rounds; each run's last line of
    output is JSON. Exits with the run's stderr if one fails."""
    rows: dict[str, list[Any]] = {m: [] for m in modes}
    for _ in range(args.reps):
        for mode in modes:
            cmd = [sys.executable, script, "--mode", mode, "--messages", str(args.messages)]
            out = subprocess.run([*cmd, "--gap", str(args.gap)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            rows[mode].append(json.loads(out.stdout.splitlines()[-1]))
    return rows
