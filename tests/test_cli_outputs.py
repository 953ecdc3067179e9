"""``trio-tts speak -o out.{wav,flac,mp3,ogg}``: real files, as long as the WAV of the same text.

The console script runs in subprocesses against its embedded server. The deterministic tone
synthesiser makes the WAV of a text reproducible to the sample, so every compressed file is
checked against it: decoded by libsndfile (soundfile) and by FFmpeg's decoders (PyAV), and
its headers read byte by byte (FLAC's STREAMINFO, MP3's Info frame, Ogg's last page).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from trio_tts.cli import main, split_sentences
from trio_tts.server import tone_pcm

TIMEOUT = 60
_SCRIPT = Path(sys.executable).parent / "trio-tts"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "trio_tts.cli"]
STORY = (
    "The lighthouse keeper climbed the stairs at dusk. He wound the clockwork, trimmed the"
    " wick, and lit the great lamp! Far out at sea, a small boat turned toward the light."
    " Would it reach the harbour before the storm? Nobody knew."
)
RATE = 24000
TOLERANCE = 0.050  # seconds


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("INWORLD_API_KEY", "RIME_API_KEY")}
    return subprocess.run(
        [*COMMAND, "speak", *args], capture_output=True, text=True, timeout=TIMEOUT, env=env
    )


def speak(out: Path, *args: str, text: str = STORY) -> dict[str, object]:
    """``speak`` into ``out`` with the tone synthesiser; the JSON summary."""
    result = run(text, "-o", str(out), "--synth", "tone", "--json", "-q", *args)
    assert result.returncode == 0, result.stderr
    assert not out.with_name(out.name + ".part").exists()
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def ffmpeg_seconds(path: Path) -> float:
    """The duration FFmpeg's decoders get out of ``path`` (through PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [frame for frame in container.decode(stream)]
    return sum(f.samples for f in frames) / frames[0].sample_rate


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The WAV of STORY: exactly the tone synthesiser's audio of each sentence, in order."""
    out = tmp_path_factory.mktemp("wav") / "story.wav"
    summary = speak(out, "-j", "4")
    samples = wav_samples(out)
    expected = b"".join(tone_pcm(s, RATE) for s in split_sentences(STORY))
    assert samples.tobytes() == expected
    assert summary["duration"] == pytest.approx(len(samples) / RATE)
    return samples


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".ogg", ".opus", ".wav"])
def test_every_format_is_as_long_as_the_wav(
    tmp_path: Path, reference: np.ndarray, suffix: str
) -> None:
    out = tmp_path / f"story{suffix}"
    summary = speak(out, "-j", "4")
    wav_seconds = len(reference) / RATE
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels) == (RATE, 1)
    assert abs(info.frames / RATE - wav_seconds) <= TOLERANCE, (info.frames, len(reference))
    decoded, rate = soundfile.read(str(out), dtype="int16")
    assert abs(len(decoded) / rate - wav_seconds) <= TOLERANCE
    assert abs(ffmpeg_seconds(out) - wav_seconds) <= TOLERANCE
    # The summary reports the file's true duration, and sentences ran side by side.
    assert summary["duration"] == pytest.approx(wav_seconds)
    assert summary["sample_rate"] == RATE
    assert summary["peak_concurrency"] == summary["server_peak_contexts"] == 4
    if suffix == ".flac":  # lossless: the very same samples
        assert decoded.tobytes() == reference.tobytes()


def test_flac_streaminfo_holds_the_length_and_the_md5(
    tmp_path: Path, reference: np.ndarray
) -> None:
    out = tmp_path / "story.flac"
    speak(out)
    data = out.read_bytes()
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    info = data[8:42]
    packed = int.from_bytes(info[10:18], "big")
    rate, bits, total = packed >> 44, ((packed >> 36) & 0x1F) + 1, packed & (2**36 - 1)
    assert (rate, bits, total) == (RATE, 16, len(reference))
    assert info[18:34] == hashlib.md5(reference.astype("<i2").tobytes()).digest()


# MPEG audio layer III: bit rates (kbit/s) and sample rates by version (3: MPEG-1, 2: MPEG-2).
_KBPS = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000)}


def mp3_frames(data: bytes) -> list[bytes]:
    """Every MPEG frame of ``data``, which must be frames only, back to back."""
    frames, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 4]
        assert header[0] == 0xFF and header[1] & 0xE0 == 0xE0, f"no frame at byte {pos}"
        version = (header[1] >> 3) & 3
        kbps, rate = _KBPS[version][header[2] >> 4], _RATES[version][(header[2] >> 2) & 3]
        size = (144 if version == 3 else 72) * kbps * 1000 // rate + ((header[2] >> 1) & 1)
        frames.append(data[pos : pos + size])
        pos += size
    return frames


def test_mp3_starts_with_an_info_frame_that_counts_the_frames(
    tmp_path: Path, reference: np.ndarray
) -> None:
    out = tmp_path / "story.mp3"
    speak(out)
    data = out.read_bytes()
    info, *audio = mp3_frames(data)
    at = max(info.find(b"Xing"), info.find(b"Info"))
    assert at > 0, "no Xing/Info frame"
    flags = int.from_bytes(info[at + 4 : at + 8], "big")
    assert flags & 0b111 == 0b111  # frame count, byte count and the seek table are present
    frames = int.from_bytes(info[at + 8 : at + 12], "big")
    size = int.from_bytes(info[at + 12 : at + 16], "big")
    assert (frames, size) == (len(audio), len(data))
    # LAME's gapless fields: encoder delay and padding leave exactly the WAV's samples.
    lame = info[at + 120 :]
    assert lame[:4] == b"LAME"
    delay = (lame[21] << 4) | (lame[22] >> 4)
    padding = ((lame[22] & 0x0F) << 8) | lame[23]
    samples_per_frame = 1152 if (info[1] >> 3) & 3 == 3 else 576
    assert frames * samples_per_frame - delay - padding == len(reference)
    # 64 kbit/s constant (VoiceOptions.bit_rate's default).
    assert {frame[2] >> 4 for frame in audio} == {_KBPS[2].index(64)}


def ogg_pages(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(flags, granule position, body)`` of every Ogg page of ``data``."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS", f"no page at byte {pos}"
        count = data[pos + 26]
        body_at = pos + 27 + count
        end = body_at + sum(data[pos + 27 : body_at])
        granule = int.from_bytes(data[pos + 6 : pos + 14], "little", signed=True)
        pages.append((data[pos + 5], granule, data[body_at:end]))
        pos = end
    return pages


def test_ogg_ends_with_the_exact_length(tmp_path: Path, reference: np.ndarray) -> None:
    out = tmp_path / "story.ogg"
    speak(out)
    pages = ogg_pages(out.read_bytes())
    head = pages[0][2]
    assert head[:8] == b"OpusHead" and int.from_bytes(head[12:16], "little") == RATE
    preskip = int.from_bytes(head[10:12], "little")
    flags, granule, _ = pages[-1]
    assert flags & 0x04, "the last page is not marked end-of-stream"
    assert not any(f & 0x04 for f, _, _ in pages[:-1])
    assert granule - preskip == len(reference) * 48000 // RATE  # granules count at 48 kHz


def test_speech_through_every_encoder_keeps_the_wav_length(tmp_path: Path) -> None:
    """eSpeak NG's real speech (one sentence at a time: eSpeak's output depends a little on
    the sentence before, so the order must be the same in each run)."""
    seconds = {}
    for suffix in (".wav", ".flac", ".mp3", ".ogg"):
        out = tmp_path / f"speech{suffix}"
        result = run(STORY, "-o", str(out), "-j", "1", "-q")
        assert result.returncode == 0, result.stderr
        seconds[suffix] = soundfile.info(str(out)).duration
        assert abs(ffmpeg_seconds(out) - seconds[suffix]) <= TOLERANCE
    assert all(abs(s - seconds[".wav"]) <= TOLERANCE for s in seconds.values()), seconds


def test_jobs_apply_to_compressed_output(tmp_path: Path) -> None:
    """``-j`` is how many sentences are synthesised at once: that many contexts were in
    flight, and the embedded server saw more than one open on its connection (never more
    than ``-j``). Its own peak can be lower: a context's commands leave in one write, and
    the server may finish a tone sentence (instant) before it reads the next create."""
    for jobs in (1, 2, 5):
        summary = speak(tmp_path / f"j{jobs}.mp3", "-j", str(jobs))
        assert summary["peak_concurrency"] == jobs
        peak = summary["server_peak_contexts"]
        assert isinstance(peak, int)
        assert (1 < peak <= jobs) if jobs > 1 else peak == 1


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_the_final_progress_line_is_printed_once(tmp_path: Path, suffix: str) -> None:
    result = run(STORY, "-o", str(tmp_path / f"p{suffix}"), "--synth", "tone")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("[5/5 sentences]")] == [lines[-1]]


def test_an_ogg_at_a_rate_opus_does_not_code_is_48_khz(tmp_path: Path) -> None:
    wav, ogg = tmp_path / "r.wav", tmp_path / "r.ogg"
    speak(wav, "--sample-rate", "44100")
    summary = speak(ogg, "--sample-rate", "44100")
    assert summary["sample_rate"] == soundfile.info(str(ogg)).samplerate == 48000
    assert abs(soundfile.info(str(ogg)).duration - soundfile.info(str(wav)).duration) <= TOLERANCE


def test_rime_writes_compressed_files_too(tmp_path: Path) -> None:
    wav, flac = tmp_path / "rime.wav", tmp_path / "rime.flac"
    speak(wav, "--provider", "rime", "--voice", "celeste")
    speak(flac, "--provider", "rime", "--voice", "celeste")
    assert soundfile.read(str(flac), dtype="int16")[0].tobytes() == wav_samples(wav).tobytes()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("name", ["x.aiff", "x", "x.wav.gz"])
def test_an_unknown_suffix_is_refused_before_any_network(tmp_path: Path, name: str) -> None:
    """Exit 2 with the list of suffixes; the URL (nobody listens there) is never tried."""
    out = tmp_path / name
    result = run("Hello.", "-o", str(out), "--url", f"http://127.0.0.1:{_closed_port()}")
    assert result.returncode == 2, result.stderr
    suffix = repr(out.suffix) + " is not" if out.suffix else "no suffix: give"
    assert result.stderr == (
        f"trio-tts: error: output: {suffix} an audio file suffix"
        " (.wav, .flac, .mp3, .ogg, .opus, .oga)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_compressed_output_without_libsndfile_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile: ImportError
    monkeypatch.delenv("INWORLD_API_KEY", raising=False)
    out = tmp_path / "x.mp3"
    assert main(["speak", "Hello.", "-o", str(out), "--url", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trio-tts: error: output: writing .mp3 needs libsndfile: pip install")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "could not connect to 127.0.0.1:{port}: connection refused"),
        (("--provider", "rime"), "could not connect to 127.0.0.1:{port}: connection refused"),
        (("--http",), "POST /tts/v1/voice:stream failed: all attempts to connect to"
         " 127.0.0.1:{port} failed: connection refused"),
    ],
    ids=["websocket", "rime", "http"],
)  # fmt: skip
def test_a_refused_connection_says_so(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    port = _closed_port()
    out = tmp_path / "x.mp3"
    result = run("Hello.", "-o", str(out), "--url", f"http://127.0.0.1:{port}", *args)
    assert result.returncode == 1
    assert result.stderr == f"trio-tts: error: {message.format(port=port)}\n"
    assert list(tmp_path.iterdir()) == []
