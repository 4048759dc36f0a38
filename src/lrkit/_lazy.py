"""Lazy attributes for packages that must not import torch or matplotlib when imported."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str], subpackages: Collection[str] = ()) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `names[attr]` (a module path) or a subpackage on first access.

    Example:
        >>> getattr_ = lazy_attributes("lrkit", {"bad": "lrkit.errors"})
        >>> getattr_("bad").__name__
        'bad'
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        if name in subpackages:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
