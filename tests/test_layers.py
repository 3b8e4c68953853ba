"""The package's layers, read from the source: every import counts, inside functions and TYPE_CHECKING blocks
too (a lazy import that dodges a circle is still the circle), and no module imports by name at run time.

Lowest first: memberkit.core (the kernel) -> memberkit.schema -> memberkit.plugin and memberkit.pricing
(what plugins may use) -> memberkit.plugins.* (each imports that and its own package only) -> the
programs on top (server, CLI, migration and job runners, the test kit, the scaffold).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

FOLDERS = {"memberkit": ROOT / "memberkit", "memberkit.core": ROOT / "core", "memberkit.schema": ROOT / "schema",
           "memberkit.plugins": ROOT / "plugins"}
PUBLIC = {"memberkit.plugin", "memberkit.pricing"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            if package == "memberkit" and len(parts) > 1:
                continue  # memberkit/'s own subfolders, e.g. the scaffold's templates, are data
            found[name] = path
    return found


MODULES = modules()


def imports(name: str, path: Path) -> tuple[set[str], list[str]]:
    """The memberkit modules `name` imports (a `from package import module` counts as the module), and
    calls that import by a name computed at run time."""
    is_package = path.name == "__init__.py"
    found, dynamic = set(), []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__"):
            dynamic.append(f"{path}:{node.lineno}")
    return {m for m in found if m == "memberkit" or m.startswith("memberkit.")}, dynamic


GRAPH = {name: imports(name, path)[0] for name, path in MODULES.items()}


def layer(name: str) -> str:
    if name.startswith("memberkit.core"):
        return "core"
    if name.startswith("memberkit.schema"):
        return "schema"
    if name in PUBLIC:
        return "public"
    if name.startswith("memberkit.plugins"):
        return "plugin"
    return "top"


ALLOWED = {"core": {"core"}, "schema": {"core", "schema"}, "public": {"core", "schema", "public"},
           "top": {"core", "schema", "public", "top"}}


def test_the_source_is_found():
    assert {"memberkit.core.intake", "memberkit.schema.builder", "memberkit.plugin", "memberkit.cli",
            "memberkit.plugins.points.ledger", "memberkit.plugins.checkout"} <= set(MODULES)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, targets in GRAPH.items():
        kind = layer(name)
        for target in targets:
            if kind == "plugin":
                own = ".".join(name.split(".")[:3])
                ok = target in ("memberkit.plugin", "memberkit.plugins") or target.startswith(own)
            else:
                ok = layer(target) in ALLOWED[kind]
            if not ok:
                wrong.append(f"{name} ({kind}) imports {target} ({layer(target)})")
    assert wrong == []


def test_no_plugin_imports_another_or_anything_but_the_public_module():
    """The rule plugin authors follow, shown for the built-ins: `memberkit.plugin` and their own package."""
    for name, targets in GRAPH.items():
        if layer(name) == "plugin" and name != "memberkit.plugins":
            own = ".".join(name.split(".")[:3])
            assert {t for t in targets if not t.startswith(own)} <= {"memberkit.plugin"}, name


def test_no_import_cycle_anywhere():
    """Tarjan's strongly connected components of the module graph: each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH.get(node, ()):
            if target not in GRAPH:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in GRAPH[node]:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


# The one import by computed name: the scaffold loads the plugin package it has just written (never a
# memberkit module) to generate that package's first migration.
DYNAMIC_IMPORTS = {"memberkit.scaffold"}


def test_nothing_is_imported_by_a_name_computed_at_run_time():
    """Plugins are found by entry point, never by importlib on a module name (which would hide an edge)."""
    assert {name for name, path in MODULES.items() if imports(name, path)[1]} == DYNAMIC_IMPORTS


def test_the_checker_sees_what_it_must(tmp_path):
    """The reading above can fail: a lazy import inside a function, a TYPE_CHECKING import, a relative
    import and an import by computed name are all seen."""
    path = tmp_path / "probe.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from memberkit.schema import auth\n"
                    "def f():\n    from memberkit.core import intake\n    from . import sibling\n"
                    "    importlib.import_module('memberkit.plugins.tiering')\n")
    found, dynamic = imports("memberkit.plugins.points.probe", path)
    assert found == {"memberkit.schema.auth", "memberkit.core.intake", "memberkit.plugins.points"}
    assert dynamic == [f"{path}:7"]


def test_core_stays_under_2000_lines():
    """Core is the kernel every plugin builds on; a capability goes into a plugin, with core adding hooks."""
    core = [path for path in (ROOT / "core").rglob("*.py") if "migrations" not in path.parts]
    lines = sum(len(path.read_text().splitlines()) for path in core)
    assert lines < 2000, f"core/ has {lines} lines outside its migrations"
