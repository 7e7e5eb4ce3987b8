"""The package's import contract: imports run one way, from the command line down to weights.

Every ``import dwscli.…`` in the package (at module level, inside functions, or for type
checking only: each is a dependency) is read from the source and mapped to its layer. A module
may import its own layer's package and any layer below it; an import upward, or across two
packages that are declared independent (``nn`` and ``data``), fails this test with the list of
offending lines. The layers and why they are ordered so are described in docs/design.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dwscli"

#: Top to bottom. Packages in one tuple are independent: neither may import the other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("api",),
    ("compare",),
    ("train",),
    ("processors",),
    ("nn", "data", "images", "paths"),
    ("weights",),
    ("runtime", "schema", "examples", "image_edits"),
    ("safe_yaml",),  # YAML reading with size limits
    ("limits",),  # the limits on what an input file may ask for
    ("errors",),
    ("",),  # dwscli/__init__.py: the version, nothing else
)

LEVEL = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_path(module: str) -> Path | None:
    """The source file of a dwscli module, or None when ``module`` is not one."""
    base = PACKAGE.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_package(module: str) -> str:
    """``dwscli.nn.layers`` -> ``nn``; ``dwscli`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every dwscli import in one source file, absolute or relative."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # ``from dwscli.train import card`` imports the module dwscli.train.card
            names = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [name for name in names if module_path(name) is not None]
            found += [(node.lineno, name) for name in submodules]
            if len(submodules) < len(names):
                found.append((node.lineno, target))
    return [(line, target) for line, target in found if target.split(".")[0] == "dwscli"]


def package_edges() -> list[tuple[str, str, str]]:
    """``(importer package, imported package, "file:line")`` for imports between packages."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = top_package(module_name(path))
        for line, target in imported_modules(path):
            imported = top_package(target)
            if imported != source:
                edges.append((source, imported, f"{path.relative_to(PACKAGE.parent)}:{line}"))
    return edges


def test_every_package_has_a_layer() -> None:
    packages = {top_package(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert packages - set(LEVEL) == set(), "add the new package to LAYERS (and docs/design.md)"


def test_imports_only_go_down() -> None:
    wrong = [
        f"{where}: dwscli.{source or '__init__'} imports dwscli.{target or '__init__'}"
        for source, target, where in package_edges()
        if LEVEL.get(target, -1) <= LEVEL.get(source, -1)
    ]
    assert wrong == [], "imports against the layer order:\n" + "\n".join(wrong)


def module_cycles() -> list[list[str]]:
    """Import cycles between modules (strongly connected groups of more than one module)."""
    graph = {
        module_name(path): {t for _, t in imported_modules(path) if module_path(t) is not None}
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    assert module_cycles() == []


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [("nn", "processors", False), ("nn", "data", False), ("cli", "api", True)],
)
def test_the_rule_itself(source: str, target: str, expected: bool) -> None:
    """The check would catch what it is meant to catch (an upward or sideways import)."""
    assert (LEVEL[target] > LEVEL[source]) is expected
