"""The package's layers, read from the source (every import statement, function-level ones included):

    utils -> config -> data, modeling, evaluation, checkpoint, solver -> analysis, visualization, export, inference,
      gallery, api (a re-export of the two)
      -> engine -> cli

A module imports only from its own layer or the layers before it, and no import cycle exists, between modules
or between the packages of one layer. ``reid/__init__.py`` (``reid.ReIDModel`` on first use) stands above all.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[2] / "reid"
LAYERS = [
    ("utils", "version"),
    ("config", "registry"),
    ("data", "modeling", "evaluation", "checkpoint", "solver"),
    ("analysis", "visualization", "export", "inference", "gallery", "api"),
    ("engine",),
    ("cli",),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Modules of reid that ``name`` imports (resolving relative imports and ``from pkg import module``)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "reid"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "reid":
                continue
            for alias in node.names:  # "from reid.x import module" imports that module
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return {m for m in out if m in known}


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _level(module: str) -> int:
    parts = module.split(".")
    return len(LAYERS) if len(parts) == 1 else LEVEL[parts[1]]


def test_every_package_has_a_layer():
    assert {m.split(".")[1] for m in _graph() if "." in m} <= set(LEVEL)


def test_nothing_imports_upward():
    upward = [f"{a} imports {b}" for a, deps in _graph().items() for b in deps if _level(b) > _level(a)]
    assert not upward, "\n".join(sorted(upward))


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one member (Tarjan), i.e. import cycles."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_import_cycles():
    assert not _cycles(_graph())


def test_no_package_import_cycles():
    packages: Dict[str, Set[str]] = defaultdict(set)
    for a, deps in _graph().items():
        if "." not in a:
            continue
        for b in deps:
            if "." in b and a.split(".")[1] != b.split(".")[1]:
                packages[a.split(".")[1]].add(b.split(".")[1])
    assert not _cycles(packages)


def test_data_preparation_stays_out_of_the_runtime_pipeline():
    """``reid.data.prep`` (offline tools that write datasets, e.g. from MOT ground truth) is used by the commands
    only: no module of the pipeline, the engine or the API imports it."""
    users = sorted(f"{a} imports {b}" for a, deps in _graph().items() for b in deps
                   if b.startswith("reid.data.prep") and not a.startswith(("reid.data.prep", "reid.cli.")))
    assert not users, "\n".join(users)


def _private_imports() -> List[str]:
    """``from <a reid module> import _name`` statements (relative or absolute; dunder names are not private)."""
    found = []
    for name, path in sorted(_modules().items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if not node.level and (node.module or "").split(".")[0] != "reid":
                continue
            source = "." * node.level + (node.module or "")
            found += [f"{name} (line {node.lineno}) imports {alias.name} from {source}" for alias in node.names
                      if alias.name.startswith("_") and not alias.name.endswith("__")]
    return found


def test_no_module_imports_a_private_name_of_another():
    """A name starting with ``_`` is its module's own; what two modules share gets a public name (or moves)."""
    found = _private_imports()
    assert not found, "\n".join(found)
