"""Copy the committed benchmark results into README.md (the last step of ``make bench``).

Each block of the README between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` is
replaced by the body of ``benchmarks/results/NAME.md`` (its first heading dropped, relative
links made relative to the top of the project), so the README's tables are always the ones
of the last run, with that run's machine, date and ratios.

    .venv/bin/python benchmarks/update_readme.py [--check]

``--check`` changes nothing and exits 1 if the README is not what the results would make.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

_BLOCK = re.compile(r"(<!-- bench:([\w-]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.DOTALL)


def body(name: str) -> str:
    """The result file's text without its first heading, links rebased to the project root."""
    with open(os.path.join(RESULTS, f"{name}.md")) as f:
        text = f.read()
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join(lines).strip() + "\n"
    # "](chart.png)" in results/latest.md is "](benchmarks/results/chart.png)" from the top.
    text = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", r"](benchmarks/results/\1)", text)
    # Second-level headings of a result file become fourth-level ones inside the README.
    return re.sub(r"^## ", "#### ", text, flags=re.MULTILINE)


def render(readme: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + "\n" + body(m.group(2)) + "\n" + m.group(4), readme)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        readme = f.read()
    new = render(readme)
    if args.check:
        return 0 if new == readme else 1
    if new != readme:
        with open(path, "w") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
