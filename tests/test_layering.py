"""The package keeps the layering of docs/architecture.md: imports point down, and no module imports itself
through others. Every import counts, those inside functions included (an AST scan of every module)."""

from __future__ import annotations

import ast
import pathlib
import re

import volnet

SRC = pathlib.Path(volnet.__file__).parent
DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def documented_layers() -> list[list[str]]:
    """The lines of the block under ``<!-- layers: ... -->`` in docs/architecture.md, top first."""
    block = re.search(r"<!-- layers:.*?-->\s*```text\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/architecture.md has lost its block of the package's layers"
    return [line.split() for line in block.group(1).strip().splitlines()]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SRC.rglob("*.py")}


def imported_modules(name: str, source: str | None = None) -> set[str]:
    """The volnet modules ``name`` imports anywhere in its text (``from . import x`` as module ``x``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] == "volnet":
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                found.add(target)
    return {target for target in found if target in MODULES and target != name}


def unit(name: str) -> str:
    """The layer a module belongs to: its subpackage or top-level module (``volnet`` for the package)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "volnet"


def test_every_unit_of_the_package_has_a_documented_layer():
    documented = {u for line in documented_layers() for u in line}
    assert {unit(name) for name in MODULES} <= documented, sorted({unit(n) for n in MODULES} - documented)


def test_imports_point_down():
    level = {u: depth for depth, line in enumerate(documented_layers()) for u in line}
    upward = sorted(f"{name} -> {target}" for name in MODULES for target in imported_modules(name)
                    if level[unit(target)] < level[unit(name)])
    assert not upward, "imports that point up (docs/architecture.md, the package's layers):\n" + "\n".join(upward)


def test_no_module_reaches_itself_through_its_imports():
    graph = {name: imported_modules(name) for name in MODULES}
    circles = []
    for start in graph:
        seen, frontier = set(), set(graph[start])
        while frontier:
            seen |= frontier
            frontier = {t for n in frontier for t in graph[n]} - seen
        if start in seen:
            circles.append(start)
    assert not circles, f"modules on an import circle: {sorted(circles)}"


def test_no_circle_among_the_layers_units():
    edges = {u: set() for u in map(unit, MODULES)}
    for name in MODULES:
        edges[unit(name)] |= {unit(t) for t in imported_modules(name)} - {unit(name)}

    def reaches(start, target, seen=frozenset()):
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in edges[start])

    assert not [u for u in edges if reaches(u, u)]


def test_the_scan_sees_every_form_of_import_inside_functions_too():
    source = ("from ..shapes import pair\nfrom . import bundled\nimport volnet.ops.conv\n"
              "def f():\n    from .stream import FolderImages\n    from .. import layers\n")
    assert imported_modules("volnet.data.folder", source) == {
        "volnet.shapes", "volnet.data.bundled", "volnet.ops.conv", "volnet.data.stream", "volnet.layers"}


def test_every_module_does_one_job_in_at_most_450_lines():
    """A module past this has become several (docs/architecture.md); split it by job rather than raise the bar."""
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"
