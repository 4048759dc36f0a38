"""Argument checks shared by every schedule: each raises a ScheduleError naming
the function, the parameter and the value (DESIGN rule 3)."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any

from lrkit.errors import ScheduleError, bad


def number(func: str, param: str, value: Any) -> float:
    """A finite real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ScheduleError(bad(func, param, "must be a number", value))
    if not math.isfinite(float(value)):
        raise ScheduleError(bad(func, param, "must be finite", value))
    return float(value)


def non_negative(func: str, param: str, value: Any) -> float:
    v = number(func, param, value)
    if v < 0:
        raise ScheduleError(bad(func, param, "must be >= 0", value))
    return v


def positive(func: str, param: str, value: Any) -> float:
    v = number(func, param, value)
    if v <= 0:
        raise ScheduleError(bad(func, param, "must be > 0", value))
    return v


def in_range(func: str, param: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    v = number(func, param, value)
    if v > high or v < low or (open_low and v == low):
        interval = f"{'(' if open_low else '['}{low}, {high}]"
        raise ScheduleError(bad(func, param, f"must lie in {interval}", value))
    return v


def integer(func: str, param: str, value: Any, *, minimum: int = 1) -> int:
    """An integer >= minimum; floats, even whole ones, are rejected (durations are counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ScheduleError(bad(func, param, f"must be {kind}", value))
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ScheduleError(bad(func, param, f"must be {kind}", value))
    return int(value)


def choice(func: str, param: str, value: Any, valid: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ScheduleError(bad(func, param, f"must be one of {', '.join(map(repr, valid))}", value))
    return value


def flag(func: str, param: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ScheduleError(bad(func, param, "must be True or False", value))
    return value


def sequence(func: str, param: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ScheduleError(bad(func, param, "must be a list", value))
    return tuple(value)


def increasing_steps(func: str, param: str, value: Any, *, minimum: int = 1) -> tuple[int, ...]:
    """Strictly increasing integers >= minimum (milestones, boundaries)."""
    items = tuple(integer(func, param, v, minimum=minimum) for v in sequence(func, param, value))
    if any(b <= a for a, b in itertools.pairwise(items)):
        raise ScheduleError(bad(func, param, "must be strictly increasing (sorted, no duplicates)", list(value)))
    return items


def length(func: str, param: str, value: tuple[Any, ...], expected: int, why: str) -> None:
    if len(value) != expected:
        raise ScheduleError(bad(func, param, f"must have {expected} items ({why})", list(value)))
