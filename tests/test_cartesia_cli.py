"""``trio-tts speak|voices --provider cartesia``: the real console script in subprocesses, against
its embedded server or a ``trio-tts serve`` process (``--url``, ``$CARTESIA_API_KEY``)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from test_cli import ServeProcess, assert_one_line_error, read_wav, run

from trio_tts.cli.main import split_sentences
from trio_tts.server import tone_pcm
from trio_tts.server.cartesia.voices import CARTESIA_VOICES

TEXT = "The first sentence is here. A second one follows! Is there a third? Yes, the end."
KEY = "sk_car_cli-secret-5a6b7c"


def expected(text: str, rate: int = 24000) -> bytes:
    """Each sentence its own context: one synthesis each, in order."""
    return b"".join(tone_pcm(s, rate) for s in split_sentences(text))


def test_speak_with_the_embedded_server(tmp_path: Path) -> None:
    out = tmp_path / "cartesia.wav"
    result = run("speak", TEXT, "--provider", "cartesia", "--synth", "tone", "-o", str(out),
                 "--sample-rate", "16000", "--jobs", "3", "--json", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert read_wav(out) == (16000, expected(TEXT, 16000))
    assert (summary["sentences"], summary["source"]) == (4, "embedded local server (tone)")
    assert 1 <= summary["peak_concurrency"] <= 3
    assert summary["server_peak_contexts"] <= 3  # the contexts shared one connection


def test_speak_and_voices_over_a_url_with_the_key_from_the_environment(tmp_path: Path) -> None:
    server = ServeProcess("--key-env", "SERVE_KEY", SERVE_KEY=KEY)
    try:
        out = tmp_path / "served.wav"
        spoken = run("speak", TEXT, "--provider", "cartesia", "--url", server.base_url,
                     "-o", str(out), "--quiet", CARTESIA_API_KEY=KEY)  # fmt: skip
        assert spoken.returncode == 0, spoken.stderr
        assert read_wav(out) == (24000, expected(TEXT))
        listed = run("voices", "--provider", "cartesia", "--url", server.base_url, "--json",
                     CARTESIA_API_KEY=KEY)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert [v["voice_id"] for v in json.loads(listed.stdout)] == list(CARTESIA_VOICES)
        french = run("voices", "--provider", "cartesia", "--url", server.base_url,
                     "--language", "fr", CARTESIA_API_KEY=KEY)  # fmt: skip
        lines = french.stdout.splitlines()
        assert lines and all(line.split()[1] == "fr" for line in lines)
        # Another provider's key is not Cartesia's.
        denied = run("speak", "Hi.", "--provider", "cartesia", "--url", server.base_url,
                     "-o", str(tmp_path / "x.wav"), INWORLD_API_KEY=KEY)  # fmt: skip
        line = assert_one_line_error(denied, 1)
        assert "HTTP 401" in line and "check the API key" in line
        wrong = run("voices", "--provider", "cartesia", "--url", server.base_url,
                    CARTESIA_API_KEY="sk_car_wrong-000")  # fmt: skip
        assert "HTTP 401" in assert_one_line_error(wrong, 1)
        for result in (spoken, listed, french, denied, wrong):
            assert KEY not in result.stdout + result.stderr
        status, err = server.stop(signal.SIGINT)
    finally:
        server.kill()
    assert status == 0 and KEY not in err


def test_bad_cartesia_options_are_usage_errors(tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    rate = run("speak", "Hi.", "--provider", "cartesia", "--sample-rate", "32000", "-o", str(out))
    assert assert_one_line_error(rate, 2).startswith(
        "trio-tts: error: sample_rate: 32000 is not one of 8000, 16000, 22050, 24000, 44100"
    )
    model = run("speak", "Hi.", "--provider", "cartesia", "--model", "arcana", "-o", str(out))
    assert "model: 'arcana' is not a Sonic model" in assert_one_line_error(model, 2)
    no_voices = run("voices", "--provider", "rime")
    assert no_voices.returncode == 2 and "invalid choice: 'rime'" in no_voices.stderr
    assert not out.exists()
