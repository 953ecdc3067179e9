"""The README runs as written.

Every ```python block is a complete program: each runs in a subprocess of its own, in an empty
directory, with no API key in the environment, and must succeed and print what the table
below expects (real speech from the local server). A block of pytest tests runs under pytest
with the ```ini configuration the README shows before it. A block that cannot run on its own
must say why in an HTML comment right before it (``<!-- not runnable: reason -->``); it is
then skipped with that reason, and only the blocks listed in ``NOT_RUNNABLE`` may be.

The ```sh blocks are checked where it is cheap: every ``trio-tts`` subcommand and option they
use exists (``--help``), every ``make`` target is in the Makefile, and every ``pip install``
in the README names extras that exist (the package is not on PyPI: ``-e '.[extra]'``).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from trio_tts.testing.redis_server import RedisServer, RedisServerMissing

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    heading: str  # the nearest heading above it, without the #s
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    not_runnable: str | None  # the reason in a <!-- not runnable: ... --> right before it

    @property
    def is_pytest(self) -> bool:
        return bool(names_of_tests(self.code))


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    heading, comment = "", None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            lang, start, body = line[3:].strip(), i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(heading, lang, "\n".join(body) + "\n", start, comment))
            comment = None
        elif line.startswith("#"):
            heading, comment = line.lstrip("#").strip(), None
        elif m := re.fullmatch(r"<!--\s*not runnable:\s*(.*?)\s*-->", line.strip()):
            comment = m.group(1)
        elif line.strip():
            comment = None  # the marker must be right before the block (blank lines aside)
        i += 1
    return blocks


def names_of_tests(code: str) -> list[str]:
    tree = ast.parse(code)
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test")
    ]


BLOCKS = readme_blocks(README.read_text())


def block_id(block: Block) -> str:
    same = [b for b in BLOCKS if b.lang == block.lang and b.heading == block.heading]
    return f"{block.heading} [{same.index(block) + 1}]"


PYTHON = [b for b in BLOCKS if b.lang == "python"]


@dataclass(frozen=True)
class Expect:
    """What a block's stdout must be (a regex, matched in full against the stripped output);
    a ``seconds`` group must be at least ``min_seconds`` (real speech came back)."""

    stdout: str
    min_seconds: float = 0.5
    redis: bool = False  # needs a Redis: the test starts one and sets $REDIS_URL


EXPECT = {
    "Example (trio) [1]": Expect(r"(?P<seconds>\d+\.\d\d) s of audio", min_seconds=1.0),
    "Using trio_tts from asyncio (and LiveKit Agents) [1]": Expect(
        r"(?P<seconds>\d+\.\d\d) s of audio: Hello from asyncio"
    ),
    "Using trio_tts from asyncio (and LiveKit Agents) [2]": Expect(
        r"\d+ frames, (?P<seconds>\d+\.\d\d) s of audio at 24000 Hz"
    ),
    "LiveKit Agents: Cartesia [1]": Expect(
        r"3 streams on 1 socket, (?P<seconds>\d+\.\d\d) s of audio", min_seconds=3.0
    ),
    "Providers [1]": Expect(
        r"(?P<seconds>\d+\.\d\d) s of audio: Hello from ElevenLabs through a shared socket",
        min_seconds=1.0,
    ),
    "Providers [2]": Expect(
        r"(?P<seconds>\d+\.\d\d) s of audio, \d\d? words, in order: True", min_seconds=1.0
    ),
    "LiveKit ElevenLabs drop-in [1]": Expect(
        r"8 overlapping turns, (?P<seconds>\d+\.\d\d) s of audio, 2 sockets", min_seconds=8.0
    ),
    "pipecat [1]": Expect(r"a pipecat InworldTTSService: True"),
    "Running a fleet [1]": Expect(
        r"(?P<seconds>\d+\.\d\d) s of audio; QuotaStatistics\(total=20, borrowed=1, waiting=0\)",
        min_seconds=1.0,
        redis=True,
    ),
}
#: Blocks the README marks ``<!-- not runnable: ... -->``, by id. Keep this empty.
NOT_RUNNABLE: dict[str, str] = {}


def test_every_python_block_is_accounted_for() -> None:
    assert PYTHON, "the README has no python blocks?"
    ids = [block_id(b) for b in PYTHON]
    marked = {block_id(b): b.not_runnable for b in PYTHON if b.not_runnable is not None}
    assert marked == NOT_RUNNABLE, "a <!-- not runnable --> marker was added or removed"
    plain = {i for b, i in zip(PYTHON, ids, strict=True) if not b.is_pytest}
    assert plain - NOT_RUNNABLE.keys() == EXPECT.keys(), "say what each program must print"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without credentials or a Redis URL: the README promises neither."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("REDIS_URL", None)
    return env | extra


@contextmanager
def redis_url() -> Iterator[str]:
    try:
        server = RedisServer().start()
    except RedisServerMissing as exc:  # `make redis`; like test_redis_quota, never a skip
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.url
    finally:
        server.close()


@pytest.mark.parametrize("block", [b for b in PYTHON if not b.is_pytest], ids=block_id)
def test_python_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    if block.not_runnable is not None:
        pytest.skip(f"README line {block.line}: not runnable: {block.not_runnable}")
    expect = EXPECT[block_id(block)]
    script = tmp_path / "example.py"
    script.write_text(block.code)
    with redis_url() if expect.redis else nullcontext(None) as url:
        env = clean_env() if url is None else clean_env(REDIS_URL=url)
        out = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert out.returncode == 0, f"README line {block.line}:\n{out.stdout}{out.stderr}"
    match = re.fullmatch(expect.stdout, out.stdout.strip())
    assert match is not None, f"README line {block.line} printed {out.stdout!r}"
    if "seconds" in match.groupdict():  # a block that speaks: real speech came back
        assert float(match.group("seconds")) >= expect.min_seconds


@pytest.mark.parametrize("block", [b for b in PYTHON if b.is_pytest], ids=block_id)
def test_pytest_block_passes_with_the_config_it_states(block: Block, tmp_path: Path) -> None:
    if block.not_runnable is not None:
        pytest.skip(f"README line {block.line}: not runnable: {block.not_runnable}")
    configs = [
        b for b in BLOCKS if b.lang == "ini" and b.heading == block.heading and b.line < block.line
    ]
    assert configs, f"README line {block.line}: no ```ini pytest configuration before it"
    assert "trio_mode = true" in configs[-1].code  # async tests need pytest-trio's trio mode
    (tmp_path / "pytest.ini").write_text(configs[-1].code)
    (tmp_path / "test_app.py").write_text(block.code)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(names_of_tests(block.code))} passed" in out.stdout, out.stdout


# -------------------------------------------------------------------------------- shell


def shell_commands() -> list[tuple[int, list[str]]]:
    """``(README line, argv)`` of every command in a ```sh block: leading ``VAR=...`` and
    whatever follows a pipe, ``&&``, ``;``, ``&`` or a redirection dropped."""
    commands = []
    for block in (b for b in BLOCKS if b.lang == "sh"):
        for offset, line in enumerate(block.code.splitlines()):
            argv = shlex.split(line, comments=True)
            for i, word in enumerate(argv):  # the first command of a pipeline or list
                if word in ("|", "||", "&&", ";", "&", ">", ">>", "<"):
                    del argv[i:]
                    break
            while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
                argv.pop(0)
            if argv:
                commands.append((block.line + 1 + offset, argv))
    return commands


def cli_help(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "trio_tts.cli", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return out.stdout


def test_shell_blocks_name_commands_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    venv = re.search(r"^VENV := (\S+)$", makefile, re.M)
    commands = shell_commands()
    assert commands
    subcommands = re.search(r"\{([a-z,-]+)\}", cli_help())
    assert subcommands is not None
    for line, argv in commands:
        program, *args = argv
        if program == "make":
            for target in args:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), (line, target)
        elif program == ".":  # sourcing the virtualenv `make` creates
            assert venv is not None and args == [f"{venv.group(1)}/bin/activate"], line
        elif program == "trio-tts":
            words = [a for a in args if not a.startswith("-")]
            if not words:
                continue
            assert words[0] in subcommands.group(1).split(","), (line, words[0])
            usage = cli_help(words[0])
            for option in (a for a in args if a.startswith("-")):
                assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", usage), (line, option)
        else:
            pytest.fail(f"README line {line}: no check for {program!r}: add one here")


def test_pip_installs_name_extras_that_exist() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installs = re.findall(r"pip install ([^`\n]+)", README.read_text())
    assert installs
    for install in installs:
        for word in shlex.split(install):
            if m := re.fullmatch(r"\.\[([a-z,]+)\]", word):
                assert set(m.group(1).split(",")) <= extras.keys(), install
            else:  # the package itself is not on PyPI: only `-e .[...]` and published tools
                assert word in ("-e", "pytest-trio"), install


def test_benchmark_tables_are_the_committed_results() -> None:
    """Each ``<!-- bench:NAME -->`` block of the README is ``benchmarks/results/NAME.md`` as
    ``benchmarks/update_readme.py`` (the last step of ``make bench``) copies it: the README
    shows the last committed run, not numbers typed by hand."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import update_readme
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    text = README.read_text()
    names = re.findall(r"<!-- bench:([\w-]+) -->", text)
    assert names, "the README has no benchmark block"
    for name in names:
        assert (ROOT / "benchmarks" / "results" / f"{name}.md").exists(), name
    assert update_readme.render(text) == text, "run benchmarks/update_readme.py"
