"""The CI soak: 2,000 turns at concurrency 100 through the local server, with connections
dropped at random points and 1 % of contexts failed by the server — every byte verified.

``make soak`` runs the same code with 100,000 turns and the server in its own process.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trio_tts_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_soak_2000_turns() -> None:
    soak = load_soak()
    report = await soak.run_soak(turns=2000, concurrency=100, in_process=True)
    summary = report.text()
    assert report.turns == 2000, summary
    assert report.lost == report.misrouted == report.duplicated == 0, summary
    assert report.untyped == [], summary
    assert set(report.failed) <= {"ContextFailed", "ConnectionLost"}, summary
    # The faults really ran: ~1 % of contexts failed by the server, some connections dropped.
    assert 5 <= report.failed["ContextFailed"] <= 60, summary
    assert report.pool["connections_failed"] >= 1, summary
    assert report.ok >= 2000 * 0.95, summary
    assert report.slots_in_use_at_end == 0 and report.quiescence_problems == [], summary
    assert report.server["violations"] == [], summary
    assert report.server["peak_connections"] <= 20, summary
    assert report.server["peak_contexts_per_connection"] <= 5, summary
