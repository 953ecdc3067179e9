"""Module boundaries the code keeps: no module reaches into another's private names, and the
local server's two protocols are peers that never import each other.

"Private" means a leading underscore (dunders excepted). A module may use its own private
names, through ``self``/``cls`` or any object, but may not ``from x import _name`` a name
``x`` defines, nor read ``obj._name`` when ``_name`` is defined in another module (a
third-party library's included).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "trio_tts"
CHECKED = ["server", "cli", "fleet", "testing", "_core/errors.py"]
#: Known offenders owned elsewhere (the pool's internals are read by the quiescence check).
EXEMPT = {"testing/_quiescent.py"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):  # its parent is a module, not a package
        return False


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defined(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    defined = _defined(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                if _private(alias.name) and not _is_module(f"{base}.{alias.name}"):
                    found.append(f"{path.name}:{node.lineno}: from {base} import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr not in defined:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def _files() -> list[Path]:
    files: list[Path] = []
    for entry in CHECKED:
        target = PACKAGE / entry
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return [f for f in files if f.relative_to(PACKAGE).as_posix() not in EXEMPT]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_reaches_into_another_modules_private_names(path: Path) -> None:
    assert _violations(path) == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
            out.update("." * node.level + (node.module or "") + "." + a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize(("peer", "other"), [("inworld", "rime"), ("rime", "inworld")])
def test_the_servers_protocols_are_peers(peer: str, other: str) -> None:
    server = PACKAGE / "server"
    for path in sorted((server / peer).glob("*.py")):
        assert not [i for i in _imports(path) if other in i.split(".")], path.name
    names = {p.stem for p in (server / peer).glob("*.py")}
    assert {"session", "session_faults", "proto", "http"} <= names


def test_shared_server_modules_know_neither_protocol_except_the_router() -> None:
    for path in sorted((PACKAGE / "server").glob("_*.py")):
        if path.name in ("_app.py", "_server.py"):  # the router and the addresses
            continue
        mentions = [i for i in _imports(path) if {"inworld", "rime"} & set(i.split("."))]
        assert mentions == [], path.name
