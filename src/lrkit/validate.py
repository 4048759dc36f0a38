"""The one validation layer: every check of user input in lrkit goes through here.

Each validator takes the function name, the parameter, the value and the error
class of the caller's concern (`ScheduleError`, `LabError`, ...), and returns the
value converted (a float, an int, a tuple). A bad value raises that class with the
one message form of `lrkit.errors.bad`; a value of the wrong *type* raises its
`TypeError` child (`LabTypeError` for `LabError`), so it is also a `TypeError`, as
in torch. Nothing here imports torch: a tensor is recognised once torch is loaded.

Example:
    >>> from lrkit.errors import LabError
    >>> positive("Optim", "eps", 1e-8, LabError)
    1e-08
    >>> try:
    ...     probability("Optim", "momentum", 2, LabError)
    ... except LabError as e:
    ...     print(e)
    Optim: parameter 'momentum' must lie in [0, 1), got 2
"""

from __future__ import annotations

import itertools
import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from lrkit.errors import LrkitValueError, bad, type_error

Error = type[LrkitValueError]


def fail(func: str, param: str, requirement: str, value: Any, error: Error) -> NoReturn:
    """Raise `error` with the one message form (function, parameter, requirement, value).

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> try:
        ...     fail("cosine", "steps", "must be > 0", 0, ScheduleError)
        ... except ScheduleError as e:
        ...     print(e)
        cosine: parameter 'steps' must be > 0, got 0
    """
    raise error(bad(func, param, requirement, value))


def wrong_type(func: str, param: str, requirement: str, value: Any, error: Error) -> NoReturn:
    """Raise the `TypeError` child of `error` (a value of the wrong type).

    Example:
        >>> from lrkit.errors import LabError
        >>> try:
        ...     wrong_type("search_lr", "optimizer", "must be an lrkit.Optim or a name", 3, LabError)
        ... except TypeError as e:
        ...     print(type(e).__name__)
        LabTypeError
    """
    raise type_error(error)(bad(func, param, requirement, value))


def is_number(value: Any) -> bool:
    """Whether `value` is a real number (bools are not numbers here).

    Example:
        >>> is_number(1.5), is_number(True), is_number("1")
        (True, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def number(func: str, param: str, value: Any, error: Error, *, finite: bool = True) -> float:
    """A real number as a float; NaN and infinities are rejected unless `finite=False`.

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> number("constant", "value", 3, ScheduleError)
        3.0
    """
    if not is_number(value):
        wrong_type(func, param, "must be a number", value, error)
    if finite and not math.isfinite(float(value)):
        fail(func, param, "must be finite", value, error)
    return float(value)


def non_negative(func: str, param: str, value: Any, error: Error) -> float:
    """A finite number >= 0.

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> non_negative("constant", "value", 0, ScheduleError)
        0.0
    """
    v = number(func, param, value, error)
    if v < 0:
        fail(func, param, "must be >= 0", value, error)
    return v


def positive(func: str, param: str, value: Any, error: Error) -> float:
    """A finite number > 0.

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> positive("cosine", "start", 0.1, ScheduleError)
        0.1
    """
    v = number(func, param, value, error)
    if v <= 0:
        fail(func, param, "must be > 0", value, error)
    return v


def in_range(
    func: str, param: str, value: Any, error: Error, low: float, high: float, *, open_low: bool = False, open_high: bool = False
) -> float:
    """A finite number in the interval from `low` to `high` (closed unless `open_low` / `open_high`).

    Example:
        >>> from lrkit.errors import ControlError
        >>> in_range("Plateau", "factor", 0.5, ControlError, 0, 1, open_low=True, open_high=True)
        0.5
    """
    v = number(func, param, value, error)
    if v < low or v > high or (open_low and v == low) or (open_high and v == high):
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        fail(func, param, f"must lie in {interval}", value, error)
    return v


def probability(func: str, param: str, value: Any, error: Error) -> float:
    """A number in [0, 1): a momentum, a beta, a smoothing factor.

    Example:
        >>> from lrkit.errors import LabError
        >>> probability("Optim", "momentum", 0.9, LabError)
        0.9
    """
    return in_range(func, param, value, error, 0, 1, open_high=True)


def integer(func: str, param: str, value: Any, error: Error, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in [minimum, maximum]; floats, even whole ones, are rejected (counts are integers).

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> integer("cosine", "steps", 100, ScheduleError)
        100
    """
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if maximum is not None:
        kind = f"an integer in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        wrong_type(func, param, f"must be {kind}", value, error)
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        fail(func, param, f"must be {kind}", value, error)
    return int(value)


def seed(func: str, param: str, value: Any, error: Error) -> int:
    """A random seed: an integer in [0, 2**63 - 1] (what `torch.manual_seed` and numpy accept).

    Example:
        >>> from lrkit.errors import LabError
        >>> seed("Member", "seed", 3, LabError)
        3
    """
    return integer(func, param, value, error, minimum=0, maximum=2**63 - 1)


def choice(func: str, param: str, value: Any, error: Error, valid: Sequence[str]) -> str:
    """One of the names in `valid`; the message lists them.

    Example:
        >>> from lrkit.errors import ControlError
        >>> choice("Plateau", "mode", "min", ControlError, ("min", "max"))
        'min'
    """
    if not isinstance(value, str) or value not in valid:
        (fail if isinstance(value, str) else wrong_type)(func, param, f"must be one of {', '.join(map(repr, valid))}", value, error)
    return value


def flag(func: str, param: str, value: Any, error: Error) -> bool:
    """True or False (not 0, 1 or a string).

    Example:
        >>> from lrkit.errors import ControlError
        >>> flag("EarlyStopping", "restore_best", True, ControlError)
        True
    """
    if not isinstance(value, bool):
        wrong_type(func, param, "must be True or False", value, error)
    return value


def sequence(func: str, param: str, value: Any, error: Error) -> tuple[Any, ...]:
    """A list or tuple (not a string) as a tuple.

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> sequence("multistep", "milestones", [3, 6], ScheduleError)
        (3, 6)
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        wrong_type(func, param, "must be a list", value, error)
    return tuple(value)


def increasing_steps(func: str, param: str, value: Any, error: Error, *, minimum: int = 1) -> tuple[int, ...]:
    """Strictly increasing integers >= minimum (milestones, boundaries).

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> increasing_steps("multistep", "milestones", [3, 6], ScheduleError)
        (3, 6)
    """
    items = tuple(integer(func, param, v, error, minimum=minimum) for v in sequence(func, param, value, error))
    if any(b <= a for a, b in itertools.pairwise(items)):
        fail(func, param, "must be strictly increasing (sorted, no duplicates)", list(value), error)
    return items


def length(func: str, param: str, value: Sequence[Any], error: Error, expected: int, why: str) -> None:
    """Check that `value` has `expected` items (`why` says what they match).

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> length("piecewise", "values", (1, 2), ScheduleError, 2, "one more than boundaries")
    """
    if len(value) != expected:
        fail(func, param, f"must have {expected} items ({why})", list(value), error)


def is_tensor(value: Any) -> bool:
    """Whether `value` is a torch tensor, without importing torch (a tensor exists only once torch is loaded).

    Example:
        >>> is_tensor(1.0)
        False
    """
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def scalar(func: str, param: str, value: Any, error: Error, *, finite: bool = False) -> float:
    """A number or a one-element tensor (a loss, a metric) as a float; with `finite`, NaN and inf are rejected.

    A tensor is read with one `.item()`: the one device sync a loss costs.

    Example:
        >>> from lrkit.errors import ControlError
        >>> scalar("Guard.check", "loss", 0.5, ControlError)
        0.5
    """
    requirement = "must be a finite number" if finite else "must be a number or a one-element tensor"
    if is_tensor(value):
        if value.numel() != 1:
            fail(func, param, "must be a number or a one-element tensor", tuple(value.shape), error)
        out = float(value.detach().item())
    elif is_number(value):
        out = float(value)
    else:
        wrong_type(func, param, requirement, value, error)
    if finite and not math.isfinite(out):
        fail(func, param, requirement, value, error)
    return out


def instance(func: str, param: str, value: Any, error: Error, kind: type | tuple[type, ...], what: str) -> Any:
    """`value` itself when it is a `kind`; else a `TypeError` child of `error` saying it `must be {what}`.

    Example:
        >>> from lrkit.errors import ScheduleError
        >>> instance("Scheduler", "lr", 0.1, ScheduleError, float, "a float")
        0.1
    """
    if not isinstance(value, kind):
        wrong_type(func, param, f"must be {what}", value, error)
    return value
