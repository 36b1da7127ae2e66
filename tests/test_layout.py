"""The package's import graph, read from the source (lazy imports inside functions count too): no module imports
another that imports it back, and each stage package imports only the packages below it in the DAG's layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "eea_repro"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The package's modules one file imports, anywhere in it: ``from .x import y`` names x, and x.y when y is a
    module."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if not target.startswith("eea_repro"):
                continue
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("eea_repro")}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports_of(path) & set(files) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_reader_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# Lowest first: a package may import those before it, never one after it. The workflow plumbing is the floor; the
# preflight checks, which build every configured model and method while the Snakefile is read, are the roof.
LAYERS = ("workflow", "data", "models", "metrics", "methods", "explainer", "localisation", "figures", "sanity",
          "claims", "report", "bench", "preflight")


def package_of(module: str) -> str:
    return module.split(".")[1]


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    rank = {package: index for index, package in enumerate(layers)}
    return sorted(f"{module} imports {other}" for module, others in graph.items() for other in others
                  if rank[package_of(other)] > rank[package_of(module)])


def test_the_reader_finds_an_upward_import_when_there_is_one():
    assert upward_imports({"eea_repro.data.x": {"eea_repro.workflow.y"}, "eea_repro.workflow.y": set()}) == []
    assert upward_imports({"eea_repro.workflow.y": {"eea_repro.data.x"}, "eea_repro.data.x": set()}) == [
        "eea_repro.workflow.y imports eea_repro.data.x"]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "eea_repro.explainer.stage" in graph  # the reader reads, lazy imports included:
    assert "eea_repro.explainer.pretraining" in graph["eea_repro.explainer.stage"]
    assert cycles(graph) == []


def test_every_module_lives_in_a_stage_package_of_a_known_layer():
    modules = [name for name in import_graph() if name != "eea_repro"]
    assert {package_of(name) for name in modules} == set(LAYERS)
    assert all(name.count(".") >= 1 and (PACKAGE / package_of(name)).is_dir() for name in modules)


def test_no_stage_package_imports_a_higher_one():
    assert upward_imports(import_graph()) == []
