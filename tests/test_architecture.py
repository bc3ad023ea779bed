"""docs/architecture.md is the map of the package: every module it names exists, and its floors hold.

The floors table says which package may import which: an import from a higher floor (even a lazy
one inside a function) or a circle of imports fails here, naming the modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "atso_med"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every atso_med module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a.b import c`` imports the module a.b.c when there is one, else names of a.b.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in modules else node.module for name in names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def floors() -> dict[str, int]:
    """``{path prefix: floor}`` from the page's floors table."""
    table = {}
    for floor, cells in re.findall(r"^\| (\d+) \| (.+) \|$", PAGE.read_text(), flags=re.M):
        for prefix in re.findall(r"`(atso_med/[^`]*)`", cells):
            table[prefix] = int(floor)
    return table


def floor_of(path: Path, table: dict[str, int]) -> int:
    relative = path.relative_to(REPO).as_posix()
    matches = [
        prefix for prefix in table if relative == prefix or (prefix.endswith("/") and relative.startswith(prefix))
    ]
    assert matches, f"{relative} stands on no floor of docs/architecture.md's table"
    return table[max(matches, key=len)]


def test_every_module_the_architecture_page_names_exists():
    paths = re.findall(r"`((?:atso_med|bundles)/[^`\s]+\.(?:py|json))`", PAGE.read_text())
    assert len(paths) >= 20, "the page names the module of every step"
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_no_import_runs_up_a_floor():
    modules, table = package_modules(), floors()
    upward = []
    for name, path in modules.items():
        for target in imported_modules(path, modules):
            if floor_of(modules[target], table) > floor_of(path, table):
                upward.append(f"{name} -> {target}")
    assert not upward, f"imports that run up a floor: {upward}"


def test_no_two_modules_import_each_other():
    modules = package_modules()
    graph = {name: imported_modules(path, modules) - {name} for name, path in modules.items()}
    # A package's face (__init__) re-exports its modules; a module importing its own package's
    # face is the circle to catch, so faces stay in the graph.
    circles = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, f"circles of imports: {circles}"
