"""Tally what Ctrl-C does to ``trio-tts speak`` (embedded server) at random moments.

Not a test (pytest does not collect it): a reproduction tool. Each run starts the CLI on a
~300-sentence text, waits until the command is running (its ``.part`` file exists; with
``--early``, not even that), sleeps a random 0..``--max-delay`` s, sends SIGINT and records
the exit status, whether stderr holds a traceback, stderr's last ``trio-tts``/``terminate``
line and what became of the output file::

    .venv/bin/python tests/sigint_tally.py --runs 40
    .venv/bin/python tests/sigint_tally.py --runs 20 --early --max-delay 0.8
    .venv/bin/python tests/sigint_tally.py --runs 20 -- --http

The contract (tests/test_cli_sigint.py): status 130, "trio-tts: error: interrupted", no
traceback, the file complete or absent.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

_SCRIPT = Path(sys.executable).parent / "trio-tts"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "trio_tts.cli"]
_WORDS = [
    "the", "keeper", "climbed", "stairs", "at", "dusk", "and", "wound", "clockwork", "lit",
    "great", "lamp", "far", "out", "sea", "small", "boat", "turned", "toward", "light",
]  # fmt: skip


def _text(sentences: int, rng: random.Random) -> str:
    return " ".join(
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
        for _ in range(sentences)
    )


def _file_state(out: Path) -> str:
    part = "+.part left" if out.with_name(out.name + ".part").exists() else ""
    if not out.exists():
        return "absent" + part
    size = out.stat().st_size
    try:
        with wave.open(str(out), "rb") as wav:
            frames = wav.getnframes()
    except (wave.Error, EOFError) as exc:
        return f"invalid WAV ({exc}){part}"
    return ("complete" if size == 44 + 2 * frames > 44 else "PARTIAL") + part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--max-delay", type=float, default=1.5)
    parser.add_argument("--early", action="store_true", help="don't wait for the .part file")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("extra", nargs="*", help="more `speak` arguments (after --)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tally: collections.Counter[tuple[object, ...]] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        story = Path(tmp, "story.txt")
        story.write_text(_text(300, rng))
        for run in range(args.runs):
            out = Path(tmp, f"run{run}.wav")
            proc = subprocess.Popen(
                [*COMMAND, "speak", "-f", str(story), "-o", str(out), *args.extra],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            part = out.with_name(out.name + ".part")
            deadline = time.monotonic() + 30
            while not args.early and not part.exists() and proc.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0, args.max_delay))
            if proc.poll() is not None:
                proc.communicate()
                tally[("finished before the signal",)] += 1
                continue
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
            lines = [
                line for line in stderr.splitlines()
                if line.startswith("trio-tts") or "terminate called" in line
            ]  # fmt: skip
            last = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "HOST:PORT", lines[-1]) if lines else ""
            traceback = "traceback" if "Traceback" in stderr else "no traceback"
            tally[(proc.returncode, traceback, last, _file_state(out))] += 1
    for key, count in tally.most_common():
        print(f"{count:4d}  {' | '.join(map(str, key))}")


if __name__ == "__main__":
    main()
