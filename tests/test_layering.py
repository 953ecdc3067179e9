"""Layering rules over every module of ``trio_tts/`` and ``bridges/``, read from the AST.

1. **No import cycles** among project modules. Every ``import`` / ``from ... import`` counts:
   relative ones, those under ``if TYPE_CHECKING:`` and those inside functions (lazy) — a
   dependency is a dependency, however late it is resolved. A package's ``__init__``
   importing from its own subtree (re-exporting it) is not an edge. Strongly connected
   components (Tarjan) of two or more modules are the cycles.
2. **The core stands alone**: ``trio_tts._core`` imports nothing of the project outside
   ``trio_tts._core`` — not ``trio_tts`` itself, nor providers, server, cli, fleet, testing,
   bridges.
3. **No cross-module private access** ("private": one leading underscore; dunders
   ``__x__``, enum's sunder names ``_x_`` and the namedtuple API ``_replace``/``_asdict``/
   ``_fields``/``_make``/``_field_defaults`` excepted):

   a. ``from x import _name`` where ``_name`` is not a module of ``x``;
   b. importing a private *module* (a dotted path with a private part ``p._m``) from
      outside its package: ``p._m`` is private to the package ``p``, so only modules inside
      ``p`` (subpackages included) may import it — ``trio_tts/cli`` may use
      ``trio_tts._core``, but ``trio_tts/cli`` may not use ``trio_tts.server._codecs``, and
      ``bridges`` may use neither. ``--strict`` (report only) also refuses subpackages:
      then only ``p``'s own ``__init__``, the modules directly in ``p`` and those inside
      ``p._m`` may. A private top-level module of a third party (``_pytest``) counts too;
   c. ``obj._attr`` where ``obj`` is not ``self``/``cls`` and ``_attr`` is defined nowhere
      in the same module (defined: a def/class, an assigned or imported name, a parameter,
      ``self._attr = ...``/``cls._attr = ...``, a ``__slots__`` entry). ``other._x`` on an
      instance of one of the module's own classes is therefore fine.

   Access to a private name of the standard library or of a third-party package
   (``sys._getframe``, ``soundfile._ffi``) counts too; it is listed separately. The one
   exception is named in ``THIRD_PARTY_INTERNALS``, a module whose purpose is to adapt one
   third party's internals, with the reason; it may touch that third party's private names
   and no one else's, and the exception must still be needed (a test fails once it is not).

Run ``python -m tests.test_layering`` (or ``python tests/test_layering.py [--strict] [ROOT]``)
for the full report; each line is ``file:line what``; the tests show the same lists in their
assertion messages.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trio_tts", "bridges")
CORE = "trio_tts._core"
#: Underscore names that are documented public API of the standard library.
PUBLIC_UNDERSCORE = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})
#: Module -> (what of a third party's internals it may touch: the private module's or the
#: object's name, as the checker reports it; why). Keep this list short.
THIRD_PARTY_INTERNALS = {
    "bridges/_guest_io.py": (
        ("trio._core.", "io_manager._epoll"),
        "trio has no public API to let the host loop wait for a guest run's I/O; the module "
        "wraps guest mode's hand-off to its helper thread and falls back to it (see its "
        "docstring; it saves three thread switches per message under asyncio)",
    ),
}


def is_private(name: str) -> bool:
    """One leading underscore; not a dunder, not an enum sunder, not the namedtuple API."""
    if len(name) < 2 or not name.startswith("_") or name in PUBLIC_UNDERSCORE:
        return False
    if name.startswith("__") and name.endswith("__"):
        return False
    return not (name.endswith("_") and not name.startswith("__"))  # _sunder_


def within(name: str, package: str) -> bool:
    """``name`` is ``package`` or lies inside it."""
    return name == package or name.startswith(package + ".")


def parent_of(name: str) -> str:
    return name.rpartition(".")[0]


# -- the project's modules and their imports --------------------------------------------------


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str
    external: bool = False  # a private name of the standard library or a third party

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.what}"


@dataclass(frozen=True)
class Import:
    """One imported module (``name is None``) or one name from a module."""

    source: str  # the importing module
    module: str  # absolute dotted path of the module imported (from)
    name: str | None
    line: int
    kind: str  # "" (module level), "TYPE_CHECKING" or "lazy" (inside a function)

    def text(self) -> str:
        shown = self.module if self.name is None else f"from {self.module} import {self.name}"
        return f"{shown} ({self.kind})" if self.kind else shown


@dataclass
class Module:
    name: str
    path: Path
    rel: str
    is_package: bool
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)

    @property
    def package(self) -> str:
        return self.name if self.is_package else parent_of(self.name)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id.lstrip("_") == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _walk(node: ast.AST, kind: str = "") -> Iterator[tuple[ast.AST, str]]:
    """Every node below ``node`` with where it runs: "", "TYPE_CHECKING" or "lazy"."""
    for name, value in ast.iter_fields(node):
        for child in value if isinstance(value, list) else [value]:
            if not isinstance(child, ast.AST):
                continue
            inner = kind
            if isinstance(node, ast.If) and name == "body" and _is_type_checking(node.test):
                inner = kind or "TYPE_CHECKING"
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "lazy"
            yield child, inner
            yield from _walk(child, inner)


@cache
def external_module_exists(dotted: str) -> bool:
    """Whether ``dotted`` is an installed module, found on disk without importing anything
    (a package's ``__init__`` may be slow or have side effects)."""
    top, *rest = dotted.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    locations = list(spec.submodule_search_locations or [])
    for n, part in enumerate(rest):
        found_package: list[str] = []
        found_module = False
        for location in map(Path, locations):
            if (location / part).is_dir():
                found_package.append(str(location / part))
            elif (location / f"{part}.py").exists() or any(location.glob(f"{part}.*.so")):
                found_module = True
        if found_package:
            locations = found_package
        elif found_module:
            return n == len(rest) - 1
        else:
            return False
    return True


class Project:
    """The modules of ``packages`` under ``root``, parsed once."""

    def __init__(self, root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> None:
        self.root = root
        self.modules: dict[str, Module] = {}
        for package in packages:
            for path in sorted((root / package).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                is_package = parts[-1] == "__init__"
                name = ".".join(parts[:-1] if is_package else parts)
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
                rel = path.relative_to(root).as_posix()
                self.modules[name] = Module(name, path, rel, is_package, tree)
        for module in self.modules.values():
            module.imports = list(self._imports(module))

    # -- names ---------------------------------------------------------------------------

    def is_project(self, dotted: str) -> bool:
        return dotted.split(".")[0] in {m.split(".")[0] for m in self.modules}

    def is_module(self, dotted: str) -> bool:
        if self.is_project(dotted):
            return dotted in self.modules
        return external_module_exists(dotted)

    def owner(self, dotted: str) -> str | None:
        """The project module ``dotted`` names or lies in (its longest module prefix)."""
        while dotted:
            if dotted in self.modules:
                return dotted
            dotted = parent_of(dotted)
        return None

    # -- imports -------------------------------------------------------------------------

    def _imports(self, module: Module) -> Iterator[Import]:
        for node, kind in _walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module.name, alias.name, None, node.lineno, kind)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if alias.name != "*" and self.is_module(sub):
                        yield Import(module.name, sub, None, node.lineno, kind)
                    else:
                        yield Import(module.name, base, alias.name, node.lineno, kind)

    def edges(self) -> Iterator[tuple[Import, str]]:
        """Every import of one project module by another, with the module it reaches."""
        for module in self.modules.values():
            for imp in module.imports:
                target = self.owner(imp.module)
                if target is not None and target != module.name:
                    yield imp, target

    # -- rule 1: cycles ------------------------------------------------------------------

    def cycles(self) -> list[tuple[list[str], list[tuple[Import, str]]]]:
        """Each strongly connected component of two or more modules, with its edges."""
        graph: dict[str, dict[str, list[Import]]] = {m: {} for m in self.modules}
        for imp, target in self.edges():
            source = self.modules[imp.source]
            if source.is_package and within(target, source.name):
                continue  # a package re-exporting its own subtree
            graph[imp.source].setdefault(target, []).append(imp)
        found = []
        for component in tarjan({m: sorted(t) for m, t in graph.items()}):
            if len(component) > 1:
                members = set(component)
                edges = [
                    (imp, target)
                    for source in sorted(members)
                    for target, imps in sorted(graph[source].items())
                    if target in members
                    for imp in imps
                ]
                found.append((sorted(component), edges))
        return sorted(found)

    # -- rule 2: the core stands alone -----------------------------------------------------

    def core_escapes(self) -> list[Violation]:
        out = []
        for imp, target in self.edges():
            if within(imp.source, CORE) and not within(target, CORE):
                module = self.modules[imp.source]
                out.append(Violation(module.rel, imp.line, f"{imp.text()} -> {target}"))
        return sorted(out, key=_order)

    # -- rule 3: private access ------------------------------------------------------------

    def private_names(self) -> list[Violation]:
        """3a: ``from x import _name``."""
        out = []
        for module in self.modules.values():
            for imp in module.imports:
                if imp.name is not None and is_private(imp.name):
                    external = not self.is_project(imp.module)
                    out.append(Violation(module.rel, imp.line, imp.text(), external))
        return sorted(out, key=_order)

    def private_modules(self, *, strict: bool = False) -> list[Violation]:
        """3b: a private module imported from outside its package (once per statement)."""
        out: set[Violation] = set()
        for module in self.modules.values():
            for imp in module.imports:
                parts = imp.module.split(".")
                for n in range(len(parts)):
                    if not is_private(parts[n]):
                        continue
                    private = ".".join(parts[: n + 1])
                    package = parent_of(private)
                    inside = module.package == package if strict else within(module.name, package)
                    if package and (inside or within(module.name, private)):
                        continue
                    external = not self.is_project(private)
                    what = f"{imp.module} (private module {private})"
                    if imp.module == private:
                        what = f"{private} (private module)"
                    if imp.kind:
                        what += f" ({imp.kind})"
                    out.add(Violation(module.rel, imp.line, what, external))
                    break
        return sorted(out, key=_order)

    def private_attributes(self) -> list[Violation]:
        """3c: ``obj._attr`` where ``_attr`` is defined nowhere in the module."""
        defined_anywhere = set().union(*(defined_names(m.tree) for m in self.modules.values()))
        out = []
        for module in self.modules.values():
            defined = defined_names(module.tree)
            external_roots = {
                alias: imp
                for alias, imp in imported_aliases(module.tree, module.package).items()
                if not self.is_project(imp)
            }
            for node in ast.walk(module.tree):
                if not isinstance(node, ast.Attribute) or not is_private(node.attr):
                    continue
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if node.attr in defined:
                    continue
                root = owner
                while isinstance(root, ast.Attribute):
                    root = root.value
                external = (
                    isinstance(root, ast.Name) and root.id in external_roots
                ) or node.attr not in defined_anywhere
                out.append(Violation(module.rel, node.lineno, ast.unparse(node), external))
        return sorted(out, key=_order)

    def private_access(self) -> list[Violation]:
        return [*self.private_names(), *self.private_modules(), *self.private_attributes()]


def _order(v: Violation) -> tuple[str, int, str]:
    return (v.path, v.line, v.what)


def defined_names(tree: ast.AST) -> set[str]:
    """Every name the module defines: defs, classes, assigned and imported names,
    parameters, ``self.x``/``cls.x`` assignments, ``__slots__`` entries, handlers' names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return names


def imported_aliases(tree: ast.AST, package: str) -> dict[str, str]:
    """Local name -> the module (or ``module.name``) it was imported as."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                out[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package  # a relative import is always the project's
            for alias in node.names:
                out[alias.asname or alias.name] = f"{base}.{alias.name}"
    return out


def tarjan(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of ``graph`` (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(graph.get(start, []))))
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph.get(succ, []))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def shortest_cycle(members: list[str], edges: list[tuple[Import, str]]) -> list[str]:
    """One shortest cycle through the component's first member (for the report)."""
    succ: dict[str, list[str]] = {}
    for imp, target in edges:
        succ.setdefault(imp.source, []).append(target)
    start = members[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for target in sorted(set(succ.get(node, []))):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    nxt.append(target)
        frontier = nxt
    return members


# -- the report -----------------------------------------------------------------------------


def format_cycles(project: Project) -> list[str]:
    """Each cycle (its modules, one shortest loop) and every import inside it."""
    lines = []
    for members, edges in project.cycles():
        loop = " -> ".join(shortest_cycle(members, edges))
        lines.append(f"cycle of {len(members)} modules ({', '.join(members)}): {loop}")
        statements: dict[tuple[str, int, str, str], list[str]] = {}
        for imp, target in edges:
            key = (project.modules[imp.source].rel, imp.line, target, imp.kind)
            statements.setdefault(key, []).append(imp.name or imp.module)
        for (rel, line, target, kind), names in statements.items():
            how = f" ({kind})" if kind else ""
            lines.append(f"    {rel}:{line} -> {target}: {', '.join(names)}{how}")
    return lines


def _section(title: str, violations: list[Violation]) -> list[str]:
    lines = [f"{title}: {len(violations)}"]
    lines += [f"    {v}" for v in violations]
    return lines


def report(project: Project, *, strict: bool = False) -> str:
    cycles = format_cycles(project)
    access = {
        "3a from x import _name": project.private_names(),
        "3b private module from outside its package"
        + (" (--strict)" if strict else ""): project.private_modules(strict=strict),
        "3c obj._attr defined in another module": project.private_attributes(),
    }
    lines = [f"1. import cycles: {len(project.cycles())}", *[f"  {c}" for c in cycles]]
    lines += _section("2. trio_tts._core imports outside trio_tts._core", project.core_escapes())
    lines.append("3. cross-module private access")
    for title, found in access.items():
        lines += _section(f"  {title} (project)", [v for v in found if not v.external])
        lines += _section(f"  {title} (stdlib/third-party)", [v for v in found if v.external])
    return "\n".join(lines)


# -- the rules ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> Project:
    return Project()


def test_no_import_cycles(project: Project) -> None:
    cycles = format_cycles(project)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_core_imports_nothing_of_the_project_outside_the_core(project: Project) -> None:
    escapes = project.core_escapes()
    assert not escapes, "\n".join(map(str, escapes))


def _allowed(v: Violation) -> bool:
    entry = THIRD_PARTY_INTERNALS.get(v.path)
    if entry is None or not v.external:
        return False
    return v.what.startswith(entry[0])


def test_no_cross_module_private_access(project: Project) -> None:
    found = [v for v in project.private_access() if not _allowed(v)]
    assert not found, "\n".join(
        [str(v) for v in found if not v.external]
        + ["stdlib/third-party:"]
        + [str(v) for v in found if v.external]
    )


def test_each_third_party_exception_is_still_needed(project: Project) -> None:
    used = {v.path for v in project.private_access() if _allowed(v)}
    assert used == set(THIRD_PARTY_INTERNALS), (
        f"exceptions no longer needed: {sorted(set(THIRD_PARTY_INTERNALS) - used)}"
    )


# -- the checker itself, on a made-up project --------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Project:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Project(root, ("app",))


def test_checker_finds_cycles_but_not_a_package_re_exporting_its_subtree(tmp_path: Path) -> None:
    project = _write(
        tmp_path,
        {
            "app/__init__.py": "from .sub.a import A\nfrom . import b\n",
            "app/sub/__init__.py": "",
            "app/sub/a.py": "from typing import TYPE_CHECKING\nimport app\n"
            "if TYPE_CHECKING:\n    from ..b import B\nA = 1\n",
            "app/b.py": "def f():\n    from .sub import a\n",
            "app/c.py": "from . import d\n",
            "app/d.py": "import app.c\n",
        },
    )
    cycles = project.cycles()
    assert [members for members, _ in cycles] == [["app.b", "app.sub.a"], ["app.c", "app.d"]]
    kinds = {(imp.source, target, imp.kind) for imp, target in cycles[0][1]}
    assert kinds == {("app.sub.a", "app.b", "TYPE_CHECKING"), ("app.b", "app.sub.a", "lazy")}
    assert format_cycles(project)[:3] == [
        "cycle of 2 modules (app.b, app.sub.a): app.b -> app.sub.a -> app.b",
        "    app/b.py:2 -> app.sub.a: app.sub.a (lazy)",
        "    app/sub/a.py:4 -> app.b: B (TYPE_CHECKING)",
    ]


def test_checker_private_access(tmp_path: Path) -> None:
    project = _write(
        tmp_path,
        {
            "app/__init__.py": "from ._impl import thing\n_HIDDEN = 1\n",
            "app/_impl.py": "thing = 1\n_secret = 2\nclass Pool:\n    _alloc = None\n",
            "app/sub/__init__.py": "",
            "app/sub/_x.py": "",
            "app/sub/y.py": "from . import _x\nfrom ._x import *\n",  # a sibling: fine
            "app/sub/deep/__init__.py": "",
            "app/sub/deep/z.py": "from .. import _x\n",  # nested: not its package
            "app/user.py": (
                "import sys, _thread\nimport collections\nfrom . import _HIDDEN\n"
                "from ._impl import _secret\nfrom app.sub import _x\n"
                "class C:\n    __slots__ = ('_slot',)\n"
                "    def __init__(self):\n        self._mine = 1\n"
                "    def same(self, other: 'C'):\n"
                "        return other._mine, other._slot, self._theirs, cls_free._mine\n"
                "def f(pool, point):\n"
                "    pool._alloc.x = 1\n    pool._alloc = 2\n"
                "    return sys._getframe(), point._replace(x=1), pool.__dict__, C._mine\n"
            ),
        },
    )
    assert [str(v) for v in project.private_names()] == [
        "app/user.py:3 from app import _HIDDEN",
        "app/user.py:4 from app._impl import _secret",
    ]
    assert [(str(v), v.external) for v in project.private_modules()] == [
        ("app/user.py:1 _thread (private module)", True),
        ("app/user.py:5 app.sub._x (private module)", False),
    ]
    assert [str(v) for v in project.private_modules(strict=True)] == [
        "app/sub/deep/z.py:1 app.sub._x (private module)",
        "app/user.py:1 _thread (private module)",
        "app/user.py:5 app.sub._x (private module)",
    ]
    found = project.private_attributes()
    assert [(str(v), v.external) for v in found] == [
        ("app/user.py:13 pool._alloc", False),  # defined in app/_impl.py
        ("app/user.py:14 pool._alloc", False),
        ("app/user.py:15 sys._getframe", True),
    ]


def main(argv: list[str]) -> int:
    """``[--strict] [ROOT]``: print every violation; exit 1 if there is any."""
    strict = "--strict" in argv
    args = [a for a in argv[1:] if a != "--strict"]
    project = Project(Path(args[0]).resolve() if args else ROOT)
    print(report(project, strict=strict))
    found = project.core_escapes() + project.private_access()
    return 1 if project.cycles() or found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
