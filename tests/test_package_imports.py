"""The pure core works without torch or matplotlib installed, `import lrkit` loads neither,
the pure packages import neither anywhere, and no two modules import each other."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import lrkit


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_lrkit_loads_no_heavy_module() -> None:
    done = _run(
        """
        import sys, lrkit, lrkit.lab, lrkit.landscape
        print(sorted(m for m in ("torch", "matplotlib", "sklearn") if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_schedule_core_works_without_torch_and_matplotlib() -> None:
    # None in sys.modules makes `import torch` raise ImportError, as on a machine without it
    done = _run(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["matplotlib"] = None
        import lrkit
        s = lrkit.parse("warmup(cosine(start=0.1, steps=90), steps=10)")
        print(s(10), lrkit.from_dict(s.to_dict()) == s, s.values(range(3)).tolist())
        try:
            lrkit.Scheduler
        except ImportError:
            print("no torch")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["0.1 True [0.0, 0.01, 0.02]", "no torch"]


# -- the import graph, read from the source (AST): pure layers stay pure, no two modules import each other --
SRC = pathlib.Path(lrkit.__file__).parent
PURE_PACKAGES = ("schedules", "control", "analysis", "search", "presets")
HEAVY = ("torch", "matplotlib")


def _module_name(path: pathlib.Path) -> str:
    parts = ("lrkit", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions too, except those under `if TYPE_CHECKING:` (its `else:` counts)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        yield from _imports(node)


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The names of the modules an import statement loads (`from a import b` is module `a.b` when there is one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: counted from the importing module's package
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {name for node in _imports(tree) for name in _imported(module, node) if name != module}
    return graph


def test_the_graph_sees_imports_in_functions_and_skips_type_checking_blocks() -> None:
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\ndef f():\n    import matplotlib.pyplot\n"
    assert [name for node in _imports(ast.parse(code)) for name in _imported("lrkit.plot", node)] == ["typing", "matplotlib.pyplot"]
    assert "lrkit.schedules.base" in _graph()["lrkit.schedules.shapes"]


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_packages_import_no_torch_or_matplotlib_anywhere(package: str) -> None:
    graph = _graph()
    offending = {
        module: sorted(name for name in names if name.split(".")[0] in HEAVY)
        for module, names in graph.items()
        if module.startswith(f"lrkit.{package}.") or module == f"lrkit.{package}"
    }
    assert any(m.startswith(f"lrkit.{package}") for m in graph)
    assert {m: names for m, names in offending.items() if names} == {}


def _mutual(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, names in graph.items() for b in names if a < b and a in graph.get(b, set()))


def test_no_two_modules_import_each_other() -> None:
    assert _mutual({"a": {"b", "c"}, "b": {"a"}, "c": set()}) == [("a", "b")]  # the check can fail
    assert _mutual(_graph()) == []
