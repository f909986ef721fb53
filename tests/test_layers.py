"""The layers of docs/architecture.md, checked on the source: every import (module level or inside a
function) of every runtime module goes to its own layer or a lower one, siblings of one layer stay
independent, and nothing installed imports the repository-only ``tools`` or ``benchmarks``.

A small AST walk rather than import-linter: import-linter finds a package's modules under the package's
own folder, and three of ours live in top-level folders mapped into the namespace (pyproject's package-dir).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it installs as (pyproject.toml [tool.setuptools.package-dir])
SOURCES = {"plan_and_render": "plan_and_render", "planner": "plan_and_render.planner",
           "renderer": "plan_and_render.renderer", "prompts": "plan_and_render.prompts"}
# low to high; modules of one row may not import each other's packages (siblings stay independent)
LAYERS = [
    ["plan_and_render.errors", "plan_and_render.vocab"],  # the contract: error types, words ...
    ["plan_and_render.scene"],  # ... and the pydantic models of the plan
    ["plan_and_render.geometry"],
    ["plan_and_render.prompts"],
    ["plan_and_render.planner", "plan_and_render.renderer"],
    ["plan_and_render.app"],
]
FACADE = {"plan_and_render", "plan_and_render.__main__"}  # the package root re-exports the app lazily


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every installed module."""
    out = {}
    for folder, package in SOURCES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = f
    return out


def imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, relative imports resolved."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def layer_of(name: str) -> tuple[int, str] | None:
    """(row, unit) of a module: the unit is the layer member it belongs to."""
    for row, units in enumerate(LAYERS):
        for unit in units:
            if name == unit or name.startswith(unit + "."):
                return row, unit
    return None


def test_every_runtime_module_is_in_a_layer():
    unplaced = [m for m in modules() if m not in FACADE and layer_of(m) is None]
    assert not unplaced, f"add these to LAYERS and docs/architecture.md: {unplaced}"


def test_imports_go_downward_only():
    known = modules()
    bad = []
    for name, path in known.items():
        if name in FACADE:
            continue
        row, unit = layer_of(name)
        for target in imports(name, path):
            if target.split(".")[0] in ("tools", "benchmarks", "tests"):
                bad.append(f"{name} imports the repository-only {target}")
                continue
            placed = layer_of(target) if target.startswith("plan_and_render") else None
            if placed is None:
                continue
            t_row, t_unit = placed
            if t_row > row or (t_row == row and t_unit != unit):
                bad.append(f"{name} ({unit}) imports {target} ({t_unit})")
    assert not bad, "\n".join(sorted(bad))


def test_the_walk_sees_what_it_checks():
    """Guard against a checker that passes because it saw nothing: known edges are found."""
    known = modules()
    assert len(known) > 50 and "plan_and_render.planner.backends.rules" in known
    assert "plan_and_render.renderer" in known and "plan_and_render.app.cli" in known
    assert "plan_and_render.errors" in imports("plan_and_render.app.cli", known["plan_and_render.app.cli"])
    assert "plan_and_render.scene" in imports("plan_and_render.geometry.solver", known["plan_and_render.geometry.solver"])


@pytest.mark.parametrize("bare", ["planner", "renderer", "prompts"])
def test_stage_folders_only_import_under_the_namespace(bare):
    """Run from the repository root (where the folders sit on sys.path), the bare names must fail: one copy
    of each module, and no shadowing of the PyPI packages called planner, renderer or prompts."""
    proc = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and f"import plan_and_render.{bare}" in proc.stderr
    ok = subprocess.run([sys.executable, "-c", f"import plan_and_render.{bare}"], cwd=ROOT, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
