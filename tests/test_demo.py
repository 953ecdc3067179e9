"""``make demo`` (``python -m trio_tts.cli.demo``) in a subprocess: a real WAV with real speech."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import trio

from trio_tts.cli.demo import PARAGRAPH
from trio_tts.server import EspeakSynthesizer

TIMEOUT = 60


def test_demo_writes_out_demo_wav_and_reports_timings(tmp_path: Path) -> None:
    # A key in the environment must not send the demo to the real service.
    env = {**os.environ, "INWORLD_API_KEY": "not-a-real-key-for-the-demo"}
    result = subprocess.run(
        [sys.executable, "-m", "trio_tts.cli.demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    path = tmp_path / "out" / "demo.wav"
    assert result.stdout.splitlines()[0] == "wrote out/demo.wav"

    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        pcm = wav.readframes(wav.getnframes())
    duration = len(pcm) / 2 / 24000
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert float(np.sqrt(np.mean(samples**2))) > 500  # speech, not silence

    printed = re.search(r"duration\s+([\d.]+) s", result.stdout)
    assert printed is not None and float(printed.group(1)) == pytest.approx(duration, abs=0.01)
    ttfa = re.search(r"time to first audio\s+(\d+) ms", result.stdout)
    rtf = re.search(r"real-time factor\s+([\d.]+)", result.stdout)
    assert ttfa is not None and rtf is not None
    assert 0 < int(ttfa.group(1)) < 5000
    assert 0 < float(rtf.group(1)) < 1  # faster than real time

    async def reference() -> float:
        with trio.fail_after(TIMEOUT):
            speech = await EspeakSynthesizer().synthesize(
                PARAGRAPH, voice="Ashley", sample_rate=24000
            )
        return speech.duration

    assert duration == pytest.approx(trio.run(reference), rel=0.2)
