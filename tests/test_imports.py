"""Import structure, read from the source (every import, module level or inside a function: a cycle or an
upward edge hidden there still ties the modules together):

* no import cycle, in the planner and in the whole namespace;
* the layers of docs/architecture.md: every runtime module imports from its own layer or a lower one,
  siblings of one layer stay independent, nothing installed imports the repository-only ``tools``,
  ``benchmarks`` or ``tests``;
* the stage folders import only under the namespace.

A small AST walk rather than import-linter: import-linter finds a package's modules under the package's
own folder, and three of ours live in top-level folders mapped into the namespace (pyproject's package-dir).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.util import resolve_name
from pathlib import Path

import networkx as nx
import pytest

import plan_and_render.planner

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it installs as (pyproject.toml [tool.setuptools.package-dir])
SOURCES = {"plan_and_render": "plan_and_render", "planner": "plan_and_render.planner",
           "renderer": "plan_and_render.renderer", "prompts": "plan_and_render.prompts"}
# low to high; the members of one row may not import each other (siblings stay independent)
LAYERS = [
    ["plan_and_render.errors", "plan_and_render.vocab"],  # the contract: error types, words ...
    ["plan_and_render.scene"],  # ... and the pydantic models of the plan
    ["plan_and_render.geometry"],
    ["plan_and_render.prompts"],
    ["plan_and_render.planner", "plan_and_render.renderer", "plan_and_render.scoring"],
    ["plan_and_render.app"],
]
FACADE = {"plan_and_render", "plan_and_render.__main__"}  # the package root re-exports the app lazily


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every module in the folder ``root`` that installs as ``package``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path, modules: set[str]) -> set[str]:
    """Every absolute name ``module`` imports anywhere in its source (module level, functions, classes).

    ``from pkg import name`` counts as importing the submodule ``pkg.name`` when that is one of ``modules``
    (``pkg`` is then only entered, not needed complete), else as importing ``pkg``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            names |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return names


def import_graph(root: Path, package: str) -> nx.DiGraph:
    """Module -> module it imports, for the modules of ``package`` (imports of other packages left out)."""
    modules = package_modules(root, package)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        graph.add_edges_from((module, name) for name in imported_names(module, path, set(modules))
                             if name in modules and name != module)
    return graph


def cycles_text(graph: nx.DiGraph) -> str:
    return "; ".join(" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph))


def test_planner_has_no_import_cycle():
    root = Path(plan_and_render.planner.__file__).parent
    graph = import_graph(root, "plan_and_render.planner")
    p = "plan_and_render.planner."
    assert {p + "plan", p + "edits", p + "backends.base", p + "backends.transformers_backend"} <= set(graph)
    assert graph.has_edge(p + "plan", p + "backends")  # the edges are read (make_plan builds a backend)
    assert graph.has_edge(p + "backends.transformers_backend", p + "crosscheck")  # ".." imports are read too
    assert nx.is_directed_acyclic_graph(graph), f"import cycles: {cycles_text(graph)}"


def test_the_check_sees_a_cycle_hidden_inside_a_function(tmp_path):
    """The checker itself: a cycle closed by an import inside a function, through ``from . import`` and
    a relative import two levels up, is found; without that import the package is acyclic."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\nfrom .sub import VALUE\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import json\n\ndef f():\n    from .. import a\n    return a, json\n")
    graph = import_graph(pkg, "pkg")
    assert set(graph.edges) == {("pkg.a", "pkg.sub.b"), ("pkg.a", "pkg.sub"), ("pkg.sub.b", "pkg.a")}
    assert cycles_text(graph) in ("pkg.a -> pkg.sub.b -> pkg.a", "pkg.sub.b -> pkg.a -> pkg.sub.b")
    (pkg / "sub" / "b.py").write_text("import json\n")
    assert nx.is_directed_acyclic_graph(import_graph(pkg, "pkg"))


# --------------------------------------------------------------------------
# the whole namespace: acyclic, layered
# --------------------------------------------------------------------------


def namespace_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder, package in SOURCES.items():
        modules.update(package_modules(ROOT / folder, package))
    return modules


def all_imports(module: str, path: Path) -> set[str]:
    """Every absolute name ``module`` imports, ours or not (``from plan_and_render import renderer`` is
    ``plan_and_render.renderer``)."""
    return imported_names(module, path, set(namespace_modules()))


def layer_of(name: str) -> tuple[int, str] | None:
    """(row, member) of a module: the layer member it belongs to."""
    for row, members in enumerate(LAYERS):
        for member in members:
            if name == member or name.startswith(member + "."):
                return row, member
    return None


def test_namespace_has_no_import_cycle():
    modules = namespace_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        graph.add_edges_from((module, name) for name in imported_names(module, path, set(modules))
                             if name in modules and name != module and module not in FACADE)
    assert graph.has_edge("plan_and_render.app.cli", "plan_and_render.app.chat_cli")
    assert nx.is_directed_acyclic_graph(graph), f"import cycles: {cycles_text(graph)}"


def test_every_runtime_module_is_in_a_layer():
    unplaced = [m for m in namespace_modules() if m not in FACADE and layer_of(m) is None]
    assert not unplaced, f"add these to LAYERS and docs/architecture.md: {unplaced}"


def upward_imports(modules: dict[str, Path]) -> list[str]:
    bad = []
    for name, path in modules.items():
        if name in FACADE:
            continue
        row, member = layer_of(name)
        for target in all_imports(name, path):
            if target.split(".")[0] in ("tools", "benchmarks", "tests"):
                bad.append(f"{name} imports the repository-only {target}")
                continue
            placed = layer_of(target)
            if placed is not None and (placed[0] > row or (placed[0] == row and placed[1] != member)):
                bad.append(f"{name} ({member}) imports {target} ({placed[1]})")
    return sorted(bad)


def test_imports_go_downward_only():
    modules = namespace_modules()
    assert len(modules) > 50 and "plan_and_render.planner.backends.rules" in modules  # the walk sees them all
    assert "plan_and_render.scene" in all_imports("plan_and_render.geometry.solver",
                                                 modules["plan_and_render.geometry.solver"])
    bad = upward_imports(modules)
    assert not bad, "\n".join(bad)


def test_the_layer_check_sees_an_upward_import_inside_a_function(tmp_path):
    """The checker itself: geometry importing the renderer inside a function is reported."""
    modules = namespace_modules()
    spy = tmp_path / "masks.py"
    spy.write_text(modules["plan_and_render.geometry.masks"].read_text()
                   + "\n\ndef _late():\n    from .. import renderer\n    return renderer\n")
    modules["plan_and_render.geometry.masks"] = spy
    assert upward_imports(modules) == ["plan_and_render.geometry.masks (plan_and_render.geometry) imports "
                                       "plan_and_render.renderer (plan_and_render.renderer)"]


@pytest.mark.parametrize("bare", ["planner", "renderer", "prompts"])
def test_stage_folders_only_import_under_the_namespace(bare):
    """Run from the repository root (where the folders sit on sys.path), the bare names must fail: one copy
    of each module, and no shadowing of the PyPI packages called planner, renderer or prompts."""
    proc = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and f"import plan_and_render.{bare}" in proc.stderr
    ok = subprocess.run([sys.executable, "-c", f"import plan_and_render.{bare}"], cwd=ROOT, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
