"""Ctrl-C on ``trio-tts speak`` with the embedded server, at several points of a run.

Whenever SIGINT lands, the process must print the one line ``trio-tts: error: interrupted``,
exit with 130, show no traceback (nor hypercorn's log of one), and leave the output file
either complete or absent — never a partial file or a ``.part``. Each case waits for an
observable state of the child (a file, a socket, a blocked read) by polling with a deadline.
"""

from __future__ import annotations

import os
import platform
import signal
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

TIMEOUT = 30
_SCRIPT = Path(sys.executable).parent / "trio-tts"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "trio_tts.cli"]
_SENTENCES = (
    "The keeper climbed the stairs at dusk.",
    "He wound the clockwork, trimmed the wick and lit the great lamp!",
    "Far out at sea, a small boat turned toward the light.",
    "Would it reach the harbour before the storm?",
    "Nobody knew.",
)
# 200 sentences: seconds of synthesis, so every point below happens mid-run.
TEXT = " ".join(_SENTENCES * 40)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the child's /proc")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("INWORLD_API_KEY", "RIME_API_KEY")}


def _start(out: Path, *args: str, text: str | None = TEXT) -> subprocess.Popen[str]:
    source = ["-"] if text is None else [text]
    return subprocess.Popen(
        [*COMMAND, "speak", *source, "-o", str(out), "-q", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(),
    )  # fmt: skip


def _wait_for(proc: subprocess.Popen[str], what: str, condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail if the child exits or the deadline passes."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {TIMEOUT} s")
        time.sleep(0.002)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _tcp_established(pid: int) -> bool:
    """Whether the process holds an established TCP socket (client or server end)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        rows: list[str] = []
        for table in ("tcp", "tcp6"):
            rows += Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    except OSError:  # the process (or one of its fds) went away meanwhile
        return False
    return any(r.split()[3] == "01" and r.split()[9] in inodes for r in rows)


# read(2)'s number, for /proc/PID/syscall ("<number> <first argument> ...").
_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())


def _reading_stdin(pid: int) -> bool:
    """Whether the process is blocked in read(0, ...) — not, say, in reading the output of
    the ``ldconfig -p`` that some import runs."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[:2] == [_READ_SYSCALL, "0x0"]
    except OSError:
        return False


def _interrupt(proc: subprocess.Popen[str], out: Path) -> None:
    """SIGINT, then the contract: 130, one line, no traceback, file complete or absent."""
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Error in ASGI" not in stderr, stderr
    assert stderr.strip().splitlines() == ["trio-tts: error: interrupted"], stderr
    assert not out.with_name(out.name + ".part").exists()
    if out.exists() and out.suffix == ".wav":  # finished just before the signal: whole
        _assert_complete_wav(out)


def _assert_complete_wav(path: Path) -> None:
    data = path.read_bytes()
    riff, riff_size, wave_id = struct.unpack("<4sI4s", data[:12])
    assert (riff, wave_id, riff_size) == (b"RIFF", b"WAVE", len(data) - 8)
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44])[0] == len(data) - 44
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() * 2 == len(data) - 44 > 0


def _interrupt_when(
    tmp_path: Path, until: Callable[[subprocess.Popen[str], Path], bool], what: str,
    *args: str, text: str | None = TEXT, name: str = "out.wav",
) -> Path:  # fmt: skip
    """Start ``speak``; once ``until(proc, part_file)`` holds, interrupt it and check."""
    out = tmp_path / name
    part = out.with_name(out.name + ".part")
    proc = _start(out, *args, text=text)
    try:
        _wait_for(proc, what, lambda: until(proc, part))
        _interrupt(proc, out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out


def test_interrupt_once_the_command_has_started(tmp_path: Path) -> None:
    """Right after start: the .part file exists, the embedded server is not up yet."""
    _interrupt_when(tmp_path, lambda proc, part: _size(part) >= 0, "the .part file")


def test_interrupt_during_the_handshake(tmp_path: Path) -> None:
    """A TCP connection to the embedded server exists, (almost always) no audio yet."""
    _interrupt_when(
        tmp_path, lambda proc, part: _tcp_established(proc.pid) or _size(part) > 0,
        "a connection",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "written", "name"),
    [
        pytest.param((), 1, "out.wav", id="first-audio"),
        *(pytest.param((), n, "out.wav", id=f"after-{n}-bytes") for n in (300_000, 1_000_000)),
        pytest.param((), 2_000_000, "out.wav", id="deep-in-audio"),
        pytest.param(("--http",), 1, "out.wav", id="http"),
        pytest.param(("--provider", "rime"), 1, "out.wav", id="rime"),
        pytest.param((), 1, "out.mp3", id="mp3"),
    ],
)
def test_interrupt_while_audio_is_written(
    tmp_path: Path, args: tuple[str, ...], written: int, name: str
) -> None:
    out = _interrupt_when(
        tmp_path, lambda proc, part: _size(part) >= written, f"{written} bytes of audio", *args,
        name=name,
    )  # fmt: skip
    assert not out.exists()  # the signal came long before the last sentence


def test_interrupt_while_reading_stdin(tmp_path: Path) -> None:
    """``speak -`` with stdin open and silent: Ctrl-C ends the blocked read."""
    if _READ_SYSCALL is None or not Path("/proc/self/syscall").exists():
        pytest.skip("no /proc/PID/syscall to see the blocked read")
    out = _interrupt_when(
        tmp_path, lambda proc, part: _reading_stdin(proc.pid), "the read of stdin", text=None
    )
    assert not out.exists()
