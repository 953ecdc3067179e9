"""The README's trio example runs as written (real speech from the local server)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_trio_example_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text()
    section = text.split("## Example (trio)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    seconds = float(out.stdout.split()[0])
    assert seconds > 1.0  # real speech came back


def test_readme_application_test_example_passes(tmp_path: Path) -> None:
    section = README.read_text().split("## Testing your application", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "test_app.py").write_text(code.group(1))
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "trio_tts.testing", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
