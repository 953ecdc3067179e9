"""Expected audio of every benchmark turn, as per-chunk CRC-32s (run by ``run.py``).

    .venv/bin/python benchmarks/expected.py --scenario spec --out /tmp/expected-spec.json

The server's audio is the pure function :func:`_audio.firehose_pcm` of the text; the server
cuts each generation into chunks of ``chunk_ms`` at fixed offsets (``_chunks.audio_frames``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h
from _audio import firehose_pcm


def expected_chunks(text: str, seconds: float, chunk_ms: int) -> list[list[int]]:
    pcm = firehose_pcm(text, h.RATE, seconds)
    step = max(1, h.RATE * chunk_ms // 1000) * 2
    return [
        [zlib.crc32(pcm[i : i + step]), len(pcm[i : i + step])] for i in range(0, len(pcm), step)
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True, choices=sorted(h.SCENARIOS))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    s = h.SCENARIOS[args.scenario]
    table = {t: expected_chunks(t, s.seconds, s.chunk_ms) for t in h.all_texts()}
    crcs = [c for chunks in table.values() for c, _ in chunks]
    if len(set(crcs)) != len(crcs):  # ~10 % odds among 28,000 random 960-byte chunks
        print(
            f"expected.py: {len(crcs) - len(set(crcs))} CRC collision(s) between chunks; "
            "misrouted bytes may be counted as extra for those",
            file=sys.stderr,
        )
    with open(args.out, "w") as f:
        json.dump(table, f)


if __name__ == "__main__":
    main()
