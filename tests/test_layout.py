"""The package's layout: one direction through the stages, no cycles, no private names across modules, no PyMC upstream.

Read from the source (every import, lazy ones inside functions included), so
a violation fails here before it becomes a tangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bayesmlm"

# What each stage may not import: the stages after it (DESIGN.md, "Pipeline").
LATER = {
    "spec": {"design", "build", "sample", "fastpath", "results", "predict", "comparison", "plots", "report", "app", "model"},
    "design": {"build", "sample", "fastpath", "results", "predict", "comparison", "plots", "report", "app", "model"},
    "build": {"sample", "fastpath", "results", "predict", "comparison", "plots", "report", "app", "model"},
    "sample": {"fastpath", "results", "predict", "comparison", "plots", "report", "app", "model"},
    "fastpath": {"results", "predict", "comparison", "plots", "report", "app", "model"},
    "frequentist_engine": {"build", "sample", "fastpath", "results", "predict", "comparison", "plots", "report", "app",
                           "model"},
    "plots": {"report", "app", "model"},
    "report": {"app", "model"},
}
# Modules that must never import PyMC or PyTensor, not even through another module of the package.
NO_PYMC = ("bayesmlm.spec", "bayesmlm.design", "bayesmlm.schema", "bayesmlm.errors", "bayesmlm.datasets",
           "bayesmlm.fastpath.stats", "bayesmlm.fastpath.readers", "bayesmlm.fastpath.crossed_stats",
           "bayesmlm.fastpath.cell_readers", "bayesmlm.results.format", "bayesmlm.frequentist_engine")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module imported, names taken from it) for every import statement of a file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if node.module is None:  # from . import x: x is a module of the package
                out += [(f"{module}.{a.name}", ()) for a in node.names]
            else:
                out.append((module, tuple(a.name for a in node.names)))
    return out


GRAPH = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _internal(module: str) -> list[str]:
    return [m for m, _ in GRAPH[module] if m.startswith("bayesmlm") and m in GRAPH]


def test_the_graph_was_read():
    assert {"bayesmlm.spec.formula", "bayesmlm.design.matrices", "bayesmlm.fastpath.kernels", "bayesmlm.app.cli"} <= set(GRAPH)
    assert "bayesmlm.design.matrices" in _internal("bayesmlm.build.full")


@pytest.mark.parametrize("stage", sorted(LATER))
def test_no_stage_imports_a_later_one(stage):
    bad = [(m, t) for m in GRAPH if _stage(m) == stage for t in _internal(m) if _stage(t) in LATER[stage]]
    assert not bad, f"{stage} reaches down the chain: {bad}"


def test_no_import_cycles():
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in _internal(m):
            if state.get(t) == "open":
                cycles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in GRAPH:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_private_name_is_imported_from_another_module():
    bad = [(m, t, n) for m, imports in GRAPH.items() for t, names in imports if t.startswith("bayesmlm")
           for n in names if n.startswith("_") and not n.startswith("__")]
    bad += [(m, t) for m, imports in GRAPH.items() for t, _ in imports
            if t.startswith("bayesmlm") and any(p.startswith("_") and p != "__init__" for p in t.split("."))]
    assert not bad, bad


@pytest.mark.parametrize("top", NO_PYMC)
def test_no_pymc_upstream(top):
    seen, todo = set(), [m for m in GRAPH if m == top or m.startswith(top + ".")]
    assert todo, top
    external = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        external |= {t.split(".")[0] for t, _ in GRAPH[m] if not t.startswith("bayesmlm")}
        # the package's own __init__ composes everything; only the modules named are followed
        todo += [t for t in _internal(m) if t != "bayesmlm"]
    assert not external & {"pymc", "pytensor", "numba", "nutpie"}, (top, sorted(external & {"pymc", "pytensor"}))
