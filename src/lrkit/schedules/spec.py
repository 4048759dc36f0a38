"""Specs: `from_dict` inverts `Schedule.to_dict`; `parse` reads the Python a user
would write (`"warmup(cosine(start=0.1, steps=9000), steps=1000)"`) without `eval`:
only registered factory names, literal arguments and `*` are accepted."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable
from typing import Any

from lrkit import validate
from lrkit.errors import ScheduleError, bad
from lrkit.schedules.base import MAX_DEPTH, REGISTRY, TOO_DEEP, Schedule, deepest


def build(name: str, args: list[Any], kwargs: dict[str, Any], func: str) -> Schedule:
    """Call the factory registered as `name`, checking names and arity first."""
    if not isinstance(name, str) or name not in REGISTRY:
        validate.fail(func, "type", f"must be a registered schedule ({', '.join(sorted(REGISTRY))})", name, ScheduleError)
    factory = REGISTRY[name]
    sig = inspect.signature(factory)
    params = list(sig.parameters)
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        validate.fail(func, unknown[0], f"is not a parameter of {name} ({', '.join(params)})", kwargs[unknown[0]], ScheduleError)
    given = set(params[: len(args)]) | set(kwargs)
    required = [p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty]
    missing = [p for p in required if p not in given]
    if missing:
        validate.fail(func, missing[0], f"is required by {name}({', '.join(params)})", args or kwargs, ScheduleError)
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise ScheduleError(bad(func, name, f"was called with the wrong arguments ({e})", args or kwargs)) from None
    return factory(*args, **kwargs)


def from_dict(d: dict[str, Any]) -> Schedule:
    """The schedule described by `d`, as written by `Schedule.to_dict()`.

    Example:
        >>> import lrkit
        >>> s = lrkit.warmup(lrkit.cosine(start=0.1, steps=90), steps=10)
        >>> lrkit.from_dict(s.to_dict()) == s
        True
    """
    if not isinstance(d, dict):
        validate.wrong_type("from_dict", "d", "must be a dict with a 'type' key", d, ScheduleError)
    # a schedule level is a dict, or a dict in a list (join): anything deeper would only reach a RecursionError
    levels = deepest(d, _contents, lambda v: isinstance(v, (dict, list)))
    if levels > 2 * MAX_DEPTH:
        validate.fail("from_dict", "d", TOO_DEEP, f"{levels} levels of dicts and lists", ScheduleError)
    return _from_dict(d)


def _from_dict(d: dict[str, Any]) -> Schedule:
    if "type" not in d:
        validate.fail("from_dict", "d", "must be a dict with a 'type' key", d, ScheduleError)
    kwargs = {k: _decode(v) for k, v in d.items() if k != "type"}
    return build(d["type"], [], kwargs, "from_dict")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return _from_dict(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def parse(text: str) -> Schedule:
    """The schedule written in `text`, in the same syntax as its `repr`.

    Example:
        >>> import lrkit
        >>> lrkit.parse("warmup(cosine(start=0.1, steps=9000), steps=1000)")(1000)
        0.1
        >>> s = 0.5 * lrkit.constant(0.2)
        >>> lrkit.parse(repr(s)) == s
        True
    """
    if not isinstance(text, str):
        validate.wrong_type("parse", "text", "must be a string", text, ScheduleError)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes, on Python < 3.12
        why = e.msg if isinstance(e, SyntaxError) else str(e)
        raise ScheduleError(bad("parse", "text", f"is not a valid expression ({why})", text)) from None
    except (RecursionError, MemoryError):  # the parser gives up on a hostile depth or length
        validate.fail("parse", "text", TOO_DEEP, _short(text), ScheduleError)
    levels = deepest(tree.body, ast.iter_child_nodes, lambda n: isinstance(n, (ast.Call, ast.BinOp)))
    if levels > MAX_DEPTH:  # checked before building: reading 900 nested products would hit Python's recursion limit
        validate.fail("parse", "text", TOO_DEEP, f"{levels} levels", ScheduleError)
    value = _node(tree.body, text)
    if not isinstance(value, Schedule):
        validate.fail("parse", "text", "must describe a schedule, not a plain value", text, ScheduleError)
    return value


def _contents(value: Any) -> Iterable[Any]:
    return value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()


def _short(text: str) -> str:
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _node(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Call):
        return _call(node, text)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _node(node.left, text), _node(node.right, text)
        operands_ok = all(isinstance(v, Schedule) or validate.is_number(v) for v in (left, right))
        if not operands_ok or not (isinstance(left, Schedule) or isinstance(right, Schedule)):
            validate.fail("parse", "text", "may multiply only schedules and numbers", ast.unparse(node), ScheduleError)
        return left * right
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_node(e, text) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = _literal(node.operand)
        if not validate.is_number(value):
            validate.fail("parse", "text", "may negate only numbers", ast.unparse(node), ScheduleError)
        return -value
    if isinstance(node, ast.Constant):
        return _literal(node)
    validate.fail("parse", "text", "may hold only schedule calls with literal arguments", ast.unparse(node), ScheduleError)


def _call(node: ast.Call, text: str) -> Schedule:
    if not isinstance(node.func, ast.Name):
        validate.fail("parse", "text", "may call only registered schedule names", ast.unparse(node.func), ScheduleError)
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        validate.fail("parse", "text", "may not use * or ** arguments", ast.unparse(node), ScheduleError)
    names = [k.arg for k in node.keywords]
    if len(set(names)) != len(names):  # ast.parse accepts f(a=1, a=2); a dict would keep only the last
        validate.fail("parse", "text", "may give each argument only once", ast.unparse(node), ScheduleError)
    args = [_node(a, text) for a in node.args]
    kwargs = {k.arg: _node(k.value, text) for k in node.keywords if k.arg is not None}
    return build(node.func.id, args, kwargs, "parse")


def _literal(node: ast.Constant) -> Any:
    if isinstance(node.value, (int, float, str, bool)) or node.value is None:
        return node.value
    validate.fail("parse", "text", "may hold only numbers, strings, booleans and None", node.value, ScheduleError)
