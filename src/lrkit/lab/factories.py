"""The guard around a user's code named on the command line ("pkg.module:function"): checked before, contained while running.

`load_factory` imports and checks a factory *without calling it* (a plain `def` of the
user's own module, no required argument but `seed`); `guarded_call` / `guarded` run
user code so that anything it raises, `SystemExit` included, is one lrkit error naming
it. The lab's problems use it; any CLI that takes a user's factory can.

Example:
    >>> try:
    ...     load_factory("builtins:exit")
    ... except LabError as e:
    ...     print(str(e)[:62])
    get_problem: parameter 'name' must name a function of your own
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

from lrkit import validate
from lrkit.errors import LabError, LrkitValueError

Error = type[LrkitValueError]


def load_factory(target: str, func: str = "get_problem", param: str = "name", error: Error = LabError) -> Callable[..., Any]:
    """The user function "pkg.module:function", imported and checked *without calling it*.

    The rule: a plain Python function (a `def`, not a builtin, a class or another
    callable object), from a module outside the standard library (refused before it
    is imported), whose parameters other than `seed` all have defaults. So `os:abort`,
    `os:system` and `builtins:exit` are refused unrun. An import that fails, raises
    or exits is one `error` naming the target.

    Example:
        >>> try:
        ...     load_factory("os:abort")
        ... except LabError as e:
        ...     print(str(e)[:76])
        get_problem: parameter 'name' must name a function of your own module, not o
    """
    module_name, _, attr = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not (all(p.isidentifier() for p in module_name.split(".")) and attr.isidentifier()):
        validate.fail(func, param, "must be 'pkg.module:function'", target, error)
    if module_name.partition(".")[0] in sys.stdlib_module_names:
        validate.fail(func, param, "must name a function of your own module, not of the standard library", target, error)
    found = guarded(
        lambda: getattr(importlib.import_module(module_name), attr),
        target,
        func,
        param,
        error,
        "must name an importable 'pkg.module:function'",
    )
    if not inspect.isfunction(found) or inspect.iscoroutinefunction(found) or inspect.isgeneratorfunction(found):
        validate.fail(func, param, f"must name a plain Python function (def), not a {type(found).__name__}", target, error)
    required = [p.name for p in inspect.signature(found).parameters.values() if _required(p)]
    if required:
        validate.fail(func, param, f"must name a function whose arguments other than 'seed' have defaults (required: {required})", target,
                      error)  # fmt: skip
    return found


def takes_seed(factory: Callable[..., Any]) -> bool:
    """Whether lrkit may pass `seed=` to the factory (by keyword).

    Example:
        >>> takes_seed(lambda seed=0: seed), takes_seed(lambda: 1)
        (True, False)
    """
    p = inspect.signature(factory).parameters.get("seed")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def _required(p: inspect.Parameter) -> bool:
    """Whether a factory's parameter needs a value lrkit does not give (lrkit passes `seed` by keyword)."""
    keyword = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    return p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not (p.name == "seed" and keyword)


def guarded_call(
    factory: Callable[..., Any], target: str, kwargs: Mapping[str, Any] | None = None, *, func: str = "get_problem", param: str = "name",
    error: Error = LabError,
) -> Any:  # fmt: skip
    """`factory(**kwargs)`, where anything it raises, `SystemExit` included, is one `error` naming `target` and what it raised.

    A KeyboardInterrupt (the user's Ctrl-C) passes through.

    Example:
        >>> try:
        ...     guarded_call(lambda: 1 / 0, "mine:make")
        ... except LabError as e:
        ...     print(e)
        get_problem: parameter 'name' must name a factory that runs (it raised ZeroDivisionError: division by zero), got 'mine:make'
    """
    return guarded(lambda: factory(**(kwargs or {})), target, func, param, error, "must name a factory that runs")


def guarded(call: Callable[[], Any], target: str, func: str, param: str, error: Error, requirement: str) -> Any:
    """`call()`, where anything the user's code raises, `SystemExit` included, is one `error`: `requirement` and what it raised.

    Example:
        >>> guarded(lambda: 2, "mine:make", "get_problem", "name", LabError, "must run")
        2
    """
    try:
        return call()
    except (Exception, SystemExit) as e:  # user code: its failure is the user's, one line
        text = f"called sys.exit({e.code!r})" if isinstance(e, SystemExit) else f"raised {type(e).__name__}: {' '.join(str(e).split())}"
    validate.fail(func, param, f"{requirement} (it {text[:300]})", target, error)
