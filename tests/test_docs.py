"""The API reference documents every public name, each with a runnable example, as the site renders it.

Public names: lrkit's root `__all__`, and for each public subpackage (`lrkit._SUBPACKAGES`) its
`__all__`, or where it has none, the classes and functions its module defines (a package without
either, like `lrkit.presets`, stands for its public modules). The reference is the `::: path`
directives of `docs/api/*.md`; a name is documented when a directive resolves to the very object
(a module directive without `members: false` documents what the module defines). The examples
are read with griffe and the site's own extension (`docs/griffe_lrkit.py`), so a name counts
only if the site shows an Examples section with `>>>`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
griffe = pytest.importorskip("griffe")

import lrkit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^::: (\S+)\n((?:    .*\n|\n)*)", re.MULTILINE)
sys.path.insert(0, str(ROOT / "docs"))
from griffe_lrkit import LrkitDocstrings, read_docstring  # noqa: E402

# Public names whose docstring has no example yet (the lead adds them); this list must match exactly.
LACKING_EXAMPLE: frozenset[str] = frozenset()  # every public name shows an example; a name added without one fails


def _defined(module: ModuleType) -> dict[str, Any]:
    """The public classes and functions `module` itself defines (not what it imports)."""
    return {
        f"{module.__name__}.{name}": obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__
    }


def _names_of(module: ModuleType) -> dict[str, Any]:
    if hasattr(module, "__all__"):
        return {f"{module.__name__}.{name}": getattr(module, name) for name in module.__all__}
    names = _defined(module)
    if not names and hasattr(module, "__path__"):  # a package of public modules (lrkit.presets, lrkit.analysis)
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                names.update(_names_of(importlib.import_module(f"{module.__name__}.{info.name}")))
    return names


@cache
def public_names() -> dict[str, Any]:
    """Every public dotted name -> its object."""
    names = _names_of(lrkit)
    for sub in lrkit._SUBPACKAGES:
        names.update(_names_of(importlib.import_module(f"lrkit.{sub}")))
    return names


def resolve(path: str) -> Any:
    """The object a directive's dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(path)


@cache
def directives() -> dict[str, str]:
    """Every `::: path` of the API pages -> its options block."""
    found: dict[str, str] = {}
    for page in sorted(API.glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text()):
            assert match.group(1) not in found, f"{match.group(1)} is documented twice ({page.name})"
            found[match.group(1)] = match.group(2)
    return found


def documented_objects() -> list[Any]:
    objs = []
    for path, options in directives().items():
        obj = resolve(path)
        objs.append(obj)
        if inspect.ismodule(obj) and "members: false" not in options:
            objs += list(_defined(obj).values())
    return objs


def test_every_public_name_is_in_the_api_reference() -> None:
    objs = documented_objects()
    missing = sorted(name for name, obj in public_names().items() if not any(obj is o for o in objs))
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def test_every_directive_names_a_real_object() -> None:
    for path in directives():
        resolve(path)  # raises for a stale path


@cache
def _loaded() -> Any:
    extensions = griffe.load_extensions(LrkitDocstrings)
    return griffe.load("lrkit", search_paths=[str(ROOT / "src")], extensions=extensions, resolve_aliases=False)


def _has_example(path: str) -> bool:
    obj = _loaded()[path.removeprefix("lrkit.")]
    if obj.docstring is None:
        return False
    sections = obj.docstring.parse("google", warnings=False)
    return any(s.kind.value == "examples" and any(">>>" in text for _, text in s.value) for s in sections)


def _documented_paths() -> dict[str, str]:
    """Each public name -> the path of the directive (or module member) that documents it."""
    by_object: dict[int, str] = {}
    for path, options in directives().items():
        obj = resolve(path)
        by_object[id(obj)] = path
        if inspect.ismodule(obj) and "members: false" not in options:
            by_object.update({id(o): name for name, o in _defined(obj).items()})
    return {name: by_object[id(obj)] for name, obj in public_names().items() if id(obj) in by_object}


def test_every_public_name_has_an_example_on_the_site() -> None:
    lacking = {name for name, path in _documented_paths().items() if not _has_example(path)}
    new, fixed = sorted(lacking - LACKING_EXAMPLE), sorted(LACKING_EXAMPLE - lacking)
    assert lacking == LACKING_EXAMPLE, f"without an example: {new}; has one now (remove it from LACKING_EXAMPLE): {fixed}"


def test_every_api_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [p.name for p in sorted(API.glob("*.md")) if f"api/{p.name}" not in nav] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("S.\n\nExample:\n    >>> 1\n    1\n", "S.\n\nExamples:\n    >>> 1\n    1\n"),
        (
            "S.\n\nArgs:\n    a, b: what\n        more.\n    c: x\n",
            "S.\n\nArgs:\n    a: what\n        more.\n    b: what\n        more.\n    c: x\n",
        ),
        ("S.\n\nArgs:\n    a: x, y: not a group\n", "S.\n\nArgs:\n    a: x, y: not a group\n"),
    ],
)
def test_the_site_reads_examples_and_grouped_arguments(text: str, expected: str) -> None:
    assert read_docstring(text) == expected
