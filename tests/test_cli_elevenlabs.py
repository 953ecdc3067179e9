"""``trio-tts speak --provider elevenlabs`` and ``trio-tts voices --provider elevenlabs``: the
real console script in subprocesses, against its embedded server or ``trio-tts serve``."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from test_cli import STORY, ServeProcess, assert_one_line_error, read_wav, run

from trio_tts.cli.main import split_sentences
from trio_tts.server import tone_pcm
from trio_tts.server.elevenlabs.config import VOICE_IDS

KEYS = ("ELEVENLABS_API_KEY", "ELEVEN_API_KEY")


def el(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``trio-tts`` with no ElevenLabs key in the environment unless given."""
    blank = {k: "" for k in KEYS if k not in env}
    return run(*args, **blank, **env)


def test_speak_writes_each_sentence_from_its_own_context(tmp_path: Path) -> None:
    """Five sentences through ElevenLabs contexts four at a time: the file is exactly each
    sentence's audio in order (each context's text begins with the init message's space)."""
    source = tmp_path / "story.txt"
    source.write_text(STORY)
    out = tmp_path / "story.wav"
    result = el(
        "speak", "-f", str(source), "-o", str(out), "--provider", "elevenlabs", "--synth",
        "tone", "--sample-rate", "16000", "-j", "4", "--json", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rate, pcm = read_wav(out)
    sentences = split_sentences(STORY)
    assert rate == 16000 == summary["sample_rate"]
    assert pcm == b"".join(tone_pcm(" " + s, 16000) for s in sentences)
    assert summary["sentences"] == len(sentences)
    assert 2 <= summary["server_peak_contexts"] <= 5
    assert summary["source"] == "embedded local server (tone)"


def test_speak_over_http_one_request_per_sentence(tmp_path: Path) -> None:
    out = tmp_path / "http.wav"
    result = el("speak", STORY, "-o", str(out), "--provider", "elevenlabs", "--http",
                "--synth", "tone", "--json", "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_wav(out)[1] == b"".join(tone_pcm(s, 24000) for s in split_sentences(STORY))
    assert json.loads(result.stdout)["server_peak_contexts"] == 0  # no WebSocket context


def test_speak_over_a_url_with_the_key_from_either_variable(tmp_path: Path) -> None:
    key = "el-cli-KEY-7a8b9c"
    server = ServeProcess("--key-env", "SERVE_KEY", SERVE_KEY=key)
    try:
        out = tmp_path / "served.wav"
        for variable in KEYS:
            args = ("speak", "Over the wire.", "--provider", "elevenlabs", "-o", str(out))
            spoken = el(*args, "--url", f"{server.base_url}/v1", **{variable: key})
            assert spoken.returncode == 0, spoken.stderr
            assert read_wav(out)[1] == tone_pcm(" Over the wire.", 24000)
        listed = el("voices", "--provider", "elevenlabs", "--url", server.base_url, "--json",
                    ELEVEN_API_KEY=key)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert [v["voice_id"] for v in json.loads(listed.stdout)] == list(VOICE_IDS)
        denied = el("voices", "--provider", "elevenlabs", "--url", server.base_url)
        line = assert_one_line_error(denied, 1)
        assert "HTTP 401" in line and "Invalid API key" in line and "check the API key" in line
        assert key not in denied.stderr + listed.stdout + listed.stderr
        status, err = server.stop(signal.SIGINT)
    finally:
        server.kill()
    assert status == 0 and key not in err


def test_voices_lists_elevenlabs_voices() -> None:
    result = el("voices", "--provider", "elevenlabs")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [(r[0], r[1]) for r in rows] == [(vid, name) for vid, (name, _) in VOICE_IDS.items()]
    assert all(r[2] == "premade" for r in rows)
    english = el("voices", "--provider", "elevenlabs", "--language", "en", "--json")
    assert len(json.loads(english.stdout)) == len(VOICE_IDS)
    none = el("voices", "--provider", "elevenlabs", "--language", "xx", "--json")
    assert json.loads(none.stdout) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "1.5"], "voice_settings.speed: 1.5 is outside 0.7..1.2"),
        (["--sample-rate", "11025"], "output_format: 'pcm_11025' is not one of"),
        (["--model", "eleven_v3"], "model: 'eleven_v3' speaks ElevenLabs' text-to-dialogue"),
    ],
)
def test_usage_errors_before_any_network(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "x.wav"
    with socket.socket() as sock:  # nobody listens there: it must never be tried
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = el("speak", "Hi.", "--provider", "elevenlabs", "-o", str(out), "--url", url, *args)
    assert needle in assert_one_line_error(result, 2)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_voice_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "v.wav"
    result = el("speak", "Hi.", "--provider", "elevenlabs", "--voice", "Nobody", "-o", str(out))
    line = assert_one_line_error(result, 1)
    assert "voice_not_found" in line and "Nobody" in line
    assert list(tmp_path.iterdir()) == []


def test_a_refused_connection_says_so(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "x.wav"
    result = el("speak", "Hello.", "--provider", "elevenlabs", "-o", str(out),
                "--url", f"http://127.0.0.1:{port}")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"trio-tts: error: could not connect to 127.0.0.1:{port}: connection refused\n"
    )
    assert list(tmp_path.iterdir()) == []
