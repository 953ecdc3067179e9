"""``examples/pipecat_bot.py`` runs as documented: no keys, the local server, a WAV."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

RATE = 24000


def test_the_example_bot_speaks_into_a_wav(tmp_path: Path) -> None:
    out = tmp_path / "bot.wav"
    script = Path(__file__).parent.parent / "examples" / "pipecat_bot.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with wave.open(str(out), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        frames = wav.readframes(wav.getnframes())
    assert len(frames) / 2 / RATE > 3 and any(frames)  # seconds of (eSpeak) speech
    assert f"to {out}" in done.stdout
