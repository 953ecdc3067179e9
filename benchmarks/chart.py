"""Draw ``chart.png`` from ``results.jsonl`` (runs in the benchmark venv, which has matplotlib).

    benchmarks/.venv-livekit/bin/python benchmarks/chart.py results.jsonl chart.png

Top rows: CDFs of time to first audio and of turn time per scenario (all repetitions pooled);
bottom right: client CPU per turn and turns/s, per driver and scenario.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "trio_tts": "tab:blue",
    "trio_tts/trio-websocket": "tab:green",
    "trio_tts/asyncio": "tab:cyan",
    "livekit-1.8.3": "tab:red",
    "raw": "tab:gray",
}
PANELS = [
    ("spec", 100),
    ("light", 100),
    ("paced", 100),
    ("starve", 200),
    ("chaos", 100),
    ("spec", 200),
]


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        summary = [r for r in map(json.loads, f) if r.get("summary")]
    idx = {(r["scenario"], r["concurrency"], r["driver"]): r for r in summary}
    drivers = [d for d in COLORS if any(r["driver"] == d for r in summary)]
    panels = [p for p in PANELS if any((p[0], p[1], d) in idx for d in drivers)]
    fig, axes = plt.subplots(3, 4, figsize=(20, 13))
    flat = list(axes.flat)
    for i, (scen, conc) in enumerate(panels[:5]):
        for j, (key, label) in enumerate(
            (("ttfa_samples", "time to first audio"), ("turn_samples", "turn time"))
        ):
            ax = flat[2 * i + j]
            for d in drivers:
                r = idx.get((scen, conc, d))
                if not r or not r[key]:
                    continue
                xs = r[key]
                ax.plot(xs, [(k + 1) / len(xs) for k in range(len(xs))], label=d, color=COLORS[d])
            ax.set_title(f"{scen} C={conc}: {label}")
            ax.set_xlabel("ms")
            ax.set_ylabel("fraction of turns")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    # Bars: client CPU per turn and turns/s.
    groups = [
        (s, c)
        for (s, c) in [*PANELS, ("light", 200), ("paced", 200), ("chaos", 200)]
        if any((s, c, d) in idx for d in drivers)
    ]
    width = 0.8 / max(1, len(drivers))
    for ax, key, title in (
        (flat[10], "cpu_ms_per_turn", "client CPU ms per turn"),
        (flat[11], "turns_per_s", "turns/s"),
    ):
        for k, d in enumerate(drivers):
            vals = [(idx.get((s, c, d)) or {}).get(key) or 0 for s, c in groups]
            ax.bar(
                [g + k * width for g in range(len(groups))], vals, width, label=d, color=COLORS[d]
            )
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
        ax.set_xticklabels([f"{s}\nC={c}" for s, c in groups], fontsize=7)
        ax.set_title(f"{title} (median of repetitions)")
        ax.grid(axis="y", alpha=0.3)
    flat[10].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=80)


if __name__ == "__main__":
    main()
