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
