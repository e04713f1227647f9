"""The shape of the house: tasks dispatched in one registry, the CLI imported only by itself, no import cycles."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "multihead"


def _sources() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_tasks_are_dispatched_only_by_the_registry() -> None:
    chain = re.compile(r"\btask\s*(==|!=|in\s*\()")
    offenders = [f"{path.relative_to(SRC)}:{number}: {line.strip()}"
                 for path in SRC.rglob("*.py") if path.name != "registry.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if chain.search(line)]
    assert not offenders, "dispatch on a task's name belongs in tasks/registry.py:\n" + "\n".join(offenders)


def test_only_the_cli_imports_the_cli() -> None:
    offenders = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
                 if "cli" not in path.relative_to(SRC).parts[:1] and path.name != "__main__.py"
                 and re.search(r"^\s*(from multihead\.cli|import multihead\.cli|from multihead import cli)",
                               path.read_text(), re.MULTILINE)]
    assert not offenders


def _top_level_imports(path: Path, package: str, modules: set[str]) -> set[str]:
    """Modules of the package imported when ``path`` is imported (not inside functions or TYPE_CHECKING);
    ``from pkg import submodule`` counts as importing the submodule (its package is already loaded)."""
    imported: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                submodules = {f"{inner.module}.{alias.name}" for alias in inner.names} & modules
                imported.update(submodules)
                if len(submodules) < len(inner.names):
                    imported.add(inner.module)
            elif isinstance(inner, ast.Import):
                imported.update(alias.name for alias in inner.names)
    return {name for name in imported if name == package or name.startswith(package + ".")}


def test_no_import_cycles() -> None:
    modules = _sources()
    graph = {name: {m for m in _top_level_imports(path, "multihead", set(modules)) if m in modules and m != name}
             for name, path in modules.items()}
    # a package's __init__ is imported before any of its modules: an edge module -> its own package is implicit
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycle = [*stack[stack.index(other):], other]
                package_init = all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in itertools.pairwise(cycle))
                assert package_init, "import cycle: " + " -> ".join(cycle)
            elif other not in state:
                visit(other)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_test_modules_have_unique_names() -> None:
    """Test folders are not packages, so two test modules of one name stop pytest's collection."""
    names = [path.name for path in (SRC.parents[1] / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})
