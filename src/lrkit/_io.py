"""The one save/load convention of lrkit's result objects (torch-free).

Every result (the range test's, a study's, a trajectory, a search) is plain data with
`to_dict()` / `from_dict(d)`; this mixin adds the rest on top, the same everywhere:
`to_json(path=None)` returns the JSON text (and writes it when given a path),
`from_json(text)` reads it, `load(path)` reads a file. JSON has no NaN or inf:
`json_float` writes them as the text "nan", "inf", "-inf" and `read_float` reads them back exactly.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Point(JsonResult):
    ...     x: float
    ...     def to_dict(self): return {"x": json_float(self.x)}
    ...     @classmethod
    ...     def from_dict(cls, d): return cls(read_float(d["x"]))
    >>> Point.from_json(Point(float("nan")).to_json()).x
    nan
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lrkit import validate
from lrkit.errors import LrkitValueError, bad

R = TypeVar("R", bound="JsonResult")


class JsonResult:
    """`to_json` / `from_json` / `load` for a class that defines `to_dict` and `from_dict`.

    `error` is the class raised for a file that is missing or not this result's JSON.

    Example:
        >>> issubclass(JsonResult, object)
        True
    """

    error: ClassVar[type[LrkitValueError]] = LrkitValueError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        raise NotImplementedError

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text; also written to `path` (its folder created) when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return text

    @classmethod
    def from_json(cls: type[R], text: str) -> R:
        """The result from `to_json`'s text (use `load` for a file)."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            why = f"must be the JSON of a {cls.__name__} ({e})"
            raise cls.error(bad(f"{cls.__name__}.from_json", "text", why, str(text)[:40])) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """The result saved with `to_json(path)`."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise cls.error(bad(f"{cls.__name__}.load", "path", f"must be a readable file ({e.strerror})", str(path))) from None
        return cls.from_json(text)


def json_float(value: Any) -> Any:
    """A float for JSON, which has no NaN or inf: those are written as the text "nan", "inf", "-inf" (None stays None).

    Example:
        >>> json_float(float("inf")), json_float(float("nan")), json_float(2)
        ('inf', 'nan', 2.0)
    """
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def read_float(
    value: Any, none: float | None = math.nan, *, func: str = "read_float", param: str = "value",
    error: type[LrkitValueError] = LrkitValueError,
) -> Any:  # fmt: skip
    """The float that `json_float` wrote; None (how older files wrote any non-finite value) reads as `none`.

    Anything else that is not a number raises `error` naming `func` and `param` (the reader's).

    Example:
        >>> read_float("-inf"), read_float(None), read_float(0.5)
        (-inf, nan, 0.5)
    """
    if value is None:
        return none
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return validate.number(func, param, value, error, finite=False)


def json_array(values: Any) -> Any:
    """A (nested) numeric array as JSON-ready lists, each non-finite float as `json_float` writes it.

    Example:
        >>> json_array([[1.0, float("inf")]])
        [[1.0, 'inf']]
    """
    items = values.tolist() if hasattr(values, "tolist") else values
    if isinstance(items, (list, tuple)):
        return [json_array(v) for v in items]
    return json_float(items)


def read_array(values: Any) -> Any:
    """The nested lists of floats that `json_array` wrote, every cell read by `read_float`.

    Example:
        >>> read_array([[1.0, "inf"], [None, 2]])
        [[1.0, inf], [nan, 2.0]]
    """
    if isinstance(values, list):
        return [read_array(v) for v in values]
    return read_float(values)
