"""Import structure, read from the source: the planner package has no import cycle, counting the
imports placed inside functions (a cycle hidden there still ties the modules together)."""

from __future__ import annotations

import ast
from importlib.util import resolve_name
from pathlib import Path

import networkx as nx

import plan_and_render.planner


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
    assert graph.has_edge(p + "backends.transformers_backend", p + "plan")  # local asks the geometry stage
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
