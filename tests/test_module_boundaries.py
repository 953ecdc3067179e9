"""The local server's two protocols are peers that never import each other (the layering
rules of the whole tree — no cycles, no private access across modules — are in
``test_layering.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_tts"


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
