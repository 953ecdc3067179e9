"""The real ``trio-tts`` console script, run in subprocesses (no API key: embedded server)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

from trio_tts.cli.main import split_sentences
from trio_tts.server import VOICES, EspeakSynthesizer, tone_pcm

TIMEOUT = 60
_SCRIPT = Path(sys.executable).parent / "trio-tts"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "trio_tts.cli"]

STORY = """The lighthouse keeper climbed the stairs at dusk.

He wound the clockwork, trimmed the wick, and lit the great lamp! Far out at sea, a small boat
turned toward the light. Would it reach the harbour before the storm? Nobody knew."""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "INWORLD_API_KEY"}
    env.update(extra)
    return env


def run(*args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], input=input, capture_output=True, text=True, timeout=TIMEOUT,
        env=_env(**env),
    )  # fmt: skip


def read_wav(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), wav.readframes(wav.getnframes())


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def espeak_seconds(text: str, rate: int) -> float:
    async def go() -> float:
        with trio.fail_after(TIMEOUT):
            speech = await EspeakSynthesizer().synthesize(text, voice="Ashley", sample_rate=rate)
        return speech.duration

    return trio.run(go)


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trio-tts: error: "), result.stderr
    return lines[0]


def test_speak_writes_real_speech_at_the_requested_rate(tmp_path: Path) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    out = tmp_path / "nested" / "fox.wav"
    result = run("speak", text, "-o", str(out), "--sample-rate", "16000", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rate, pcm = read_wav(out)
    duration = len(pcm) / 2 / rate
    assert rate == 16000 == summary["sample_rate"]
    assert duration == pytest.approx(summary["duration"])
    assert duration == pytest.approx(espeak_seconds(text, 16000), rel=0.2)
    assert rms(pcm) > 500  # speech, not silence
    assert summary["source"] == "embedded local server (espeak)"
    assert 0 < summary["time_to_first_audio"] <= summary["elapsed"] < duration
    assert summary["real_time_factor"] == pytest.approx(summary["elapsed"] / duration)
    assert not list(tmp_path.rglob("*.part"))


def test_speak_prints_a_human_summary(tmp_path: Path) -> None:
    result = run("speak", "Short and sweet.", "-o", str(tmp_path / "s.wav"))
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()
    assert first.startswith(f"wrote {tmp_path / 's.wav'}: ")
    assert "time to first audio" in second and "real-time factor" in second


def test_speak_reads_stdin(tmp_path: Path) -> None:
    text = "Reading from standard input works too."
    out = tmp_path / "stdin.wav"
    result = run("speak", "-", "-o", str(out), "--json", "--voice", "Dennis", input=text)
    assert result.returncode == 0, result.stderr
    rate, pcm = read_wav(out)
    assert rate == 24000
    assert len(pcm) / 2 / rate == pytest.approx(espeak_seconds(text, 24000), rel=0.2)
    assert rms(pcm) > 500
    assert json.loads(result.stdout)["words"] == 6


@pytest.mark.parametrize("transport", [[], ["--http"]], ids=["websocket", "http"])
def test_file_sentences_run_concurrently_and_come_back_in_order(
    tmp_path: Path, transport: list[str]
) -> None:
    """With the deterministic tone synthesiser the file must be exactly the sentences' audio
    in order, although they were synthesised through several contexts at once."""
    source = tmp_path / "story.txt"
    source.write_text(STORY)
    out = tmp_path / "story.wav"
    result = run(
        "speak", "-f", str(source), "-o", str(out), "-j", "3", "--json", "--synth", "tone",
        *transport,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sentences = split_sentences(STORY)
    assert len(sentences) == 5
    rate, pcm = read_wav(out)
    assert pcm == b"".join(tone_pcm(s, rate) for s in sentences)
    summary = json.loads(result.stdout)
    assert summary["sentences"] == 5 and summary["peak_concurrency"] == 3
    if not transport:  # the server saw three contexts open at once on one connection
        assert summary["server_peak_contexts"] == 3
    assert "[5/5 sentences]" in result.stderr  # progress on stderr


def test_file_with_espeak_keeps_sentence_order(tmp_path: Path) -> None:
    source = tmp_path / "story.txt"
    source.write_text(STORY)
    out = tmp_path / "story.wav"
    result = run("speak", "-f", str(source), "-o", str(out), "-j", "4", "--json", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet: no progress
    summary = json.loads(result.stdout)
    rate, pcm = read_wav(out)
    assert len(pcm) / 2 / rate == pytest.approx(summary["duration"])
    assert rms(pcm) > 500
    expected = [espeak_seconds(s, rate) for s in split_sentences(STORY)]
    # Sentence lengths differ a lot (0.6 s .. 4 s); each segment matches its own sentence.
    assert summary["sentence_durations"] == pytest.approx(expected, rel=0.02)
    assert summary["duration"] == pytest.approx(espeak_seconds(STORY, rate), rel=0.2)
    assert summary["server_peak_contexts"] >= 2


def test_voices_lists_the_local_voices() -> None:
    result = run("voices", "--json")
    assert result.returncode == 0, result.stderr
    assert [v["voice_id"] for v in json.loads(result.stdout)] == list(VOICES)
    french = run("voices", "--language", "fr")
    assert french.returncode == 0, french.stderr
    assert [line.split()[0] for line in french.stdout.splitlines()] == [
        "Alain", "Hélène", "Mathieu", "Étienne"
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["speak", "x", "--sample-rate", "12345"], "sample_rate: 12345 is not one of"),
        (["speak", "x", "--rate", "3"], "speaking_rate: 3.0 is outside 0.5..1.5"),
        (["speak", "x", "--bogus"], "unrecognized arguments: --bogus"),
        (["speak"], "give the text or -f FILE"),
        (["speak", "x", "--jobs", "0"], "jobs: 0 must be an integer"),
        (["speak", "x", "--url", "ftp://nowhere"], "--url: 'ftp://nowhere' is not"),
        (["speak", "   "], "nothing to speak"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run(*args, "-o", str(tmp_path / "x.wav")) if args[0] == "speak" else run(*args)
    assert needle in assert_one_line_error(result, 2)
    assert not (tmp_path / "x.wav").exists()


def test_runtime_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = assert_one_line_error(run("speak", "-f", str(tmp_path / "nope.txt")), 1)
    assert missing.endswith(f"No such file or directory: {tmp_path / 'nope.txt'}")
    voice = assert_one_line_error(
        run("speak", "Hi.", "--voice", "Nobody", "-o", str(tmp_path / "v.wav")), 1
    )
    assert voice.endswith("Unknown voice: Nobody")
    assert not (tmp_path / "v.wav").exists() and not list(tmp_path.glob("*.part"))


class ServeProcess:
    """``trio-tts serve`` in a child process (tone synthesiser, a free port); also used by the
    examples' and the official plugin's tests."""

    def __init__(self, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [*COMMAND, "serve", "--port", "0", "--synth", "tone", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env),
        )  # fmt: skip
        line = self._readline(TIMEOUT)
        assert line.startswith("trio-tts: serving http://127.0.0.1:"), line
        self.base_url = line.split()[2]

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "serve printed nothing"
        return self.proc.stdout.readline()

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=TIMEOUT)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_clients_then_exits_cleanly(tmp_path: Path, signum: int) -> None:
    server = ServeProcess()
    try:
        response = httpx.get(f"{server.base_url}/tts/v1/voices", timeout=TIMEOUT)
        assert response.status_code == 200
        assert [v["voiceId"] for v in response.json()["voices"]] == list(VOICES)
        listed = run("voices", "--url", server.base_url, "--json")
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == len(VOICES)
        out = tmp_path / "served.wav"
        spoken = run("speak", "Over the wire.", "--url", server.base_url, "-o", str(out))
        assert spoken.returncode == 0, spoken.stderr
        assert read_wav(out)[1] == tone_pcm("Over the wire.", 24000)
        started = time.monotonic()
        status, err = server.stop(signum)
    finally:
        server.kill()
    assert status == 0, err
    assert time.monotonic() - started < 5
    assert "Traceback" not in err
    assert f"{signal.Signals(signum).name}, shutting down" in err


def test_serve_with_a_key_rejects_clients_without_it() -> None:
    key = "serve-secret-KEY-4d5e6f"
    server = ServeProcess("--key-env", "SERVE_KEY", SERVE_KEY=key)
    try:
        denied = run("voices", "--url", server.base_url)
        line = assert_one_line_error(denied, 1)
        assert "HTTP 401" in line and "check the API key" in line
        wrong = run("voices", "--url", server.base_url, INWORLD_API_KEY="wrong-KEY-000111")
        line = assert_one_line_error(wrong, 1)
        assert "wrong-KEY-000111" not in line and key not in line
        allowed = run("voices", "--url", server.base_url, "--json", INWORLD_API_KEY=key)
        assert allowed.returncode == 0, allowed.stderr
        assert key not in allowed.stdout + allowed.stderr
        status, err = server.stop(signal.SIGINT)
    finally:
        server.kill()
    assert status == 0 and key not in err


def test_unreachable_url_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("voices", "--url", f"http://127.0.0.1:{port}")
    assert "GET /tts/v1/voices failed" in assert_one_line_error(result, 1)
