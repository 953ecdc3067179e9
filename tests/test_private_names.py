"""No module reaches into another's private names (DESIGN: "no module touches another's
underscore names").

Checked statically over the providers, the public HTTP shim and the LiveKit plugins:

* ``from x import _name`` of a project module is refused (``_modules`` themselves are fine:
  ``from trio_tts._core.errors import redact``);
* ``obj._attr`` is refused unless ``obj`` is ``self``/``cls`` or ``_attr`` is defined in the
  same module (a class attribute, a method, or an attribute assigned there).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = sorted(
    [
        *(ROOT / "trio_tts" / "providers").rglob("*.py"),
        ROOT / "trio_tts" / "http.py",
        *(ROOT / "bridges").glob("livekit*.py"),
        ROOT / "bridges" / "_livekit_common.py",
    ]
)
PROJECT = ("trio_tts", "bridges")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_here(tree: ast.Module) -> set[str]:
    """Underscore names this module defines: module-level names, classes and functions,
    class-body names, and attributes its ``__init__`` methods assign (``self._name = ...``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.Module | ast.ClassDef):
            for stmt in node.body:
                targets = (
                    stmt.targets
                    if isinstance(stmt, ast.Assign)
                    else [stmt.target]
                    if isinstance(stmt, ast.AnnAssign)
                    else []
                )
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            names.update(
                sub.attr
                for sub in ast.walk(node)
                if isinstance(sub, ast.Attribute)
                and isinstance(sub.ctx, ast.Store)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "self"
            )
    return {n for n in names if _private(n)}


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    here = _defined_here(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            ours = node.level > 0 or (node.module or "").split(".")[0] in PROJECT
            found += [
                f"{path.name}:{node.lineno}: from {'.' * node.level}{node.module or ''} import"
                f" {alias.name}"
                for alias in node.names
                if ours and _private(alias.name)
            ]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr not in here:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checked_files_exist() -> None:
    assert len(CHECKED) >= 12
    assert all(p.is_file() for p in CHECKED)


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_of_another_module(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_finds_both_kinds(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from trio_tts.providers.inworld.codec import _short\n"
        "from .other import _helper, public\n"
        "class A:\n"
        "    def __init__(self, b):\n"
        "        self._mine = b._theirs\n"
        "        self._mine.__class__\n"
        "        b._mine\n"
    )
    assert [v.split(": ", 1)[1] for v in violations(sample)] == [
        "from trio_tts.providers.inworld.codec import _short",
        "from .other import _helper",
        "b._theirs",
    ]
