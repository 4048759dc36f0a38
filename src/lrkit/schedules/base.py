"""The pure core: a schedule is a frozen, picklable value mapping a step to a float.

Every concrete schedule is a frozen dataclass registered under the name a user
calls it by (`cosine`, `warmup`, ...). The base class gives all of them the same
vectorized `values`, `__call__`, `to_dict`, a `repr` that `lrkit.parse` reads
back, equality, and arithmetic (`0.1 * s`, `s1 * s2`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import ScheduleError

REGISTRY: dict[str, Callable[..., Schedule]] = {}  # spec name -> factory
"""Every schedule's spec name and its factory (what `lrkit.parse` and `lrkit.from_dict` build from).

Example:
    >>> REGISTRY["cosine"](start=1.0, steps=10)(5)
    0.5
"""
S = TypeVar("S", bound="type[Schedule]")
Steps = npt.NDArray[np.int64]
MAX_STEP = 2**63 - 1  # steps (and durations) are exact 64-bit integers, so a cycle's phase is an integer remainder
MAX_DEPTH = 100  # schedules nested deeper than this are refused (a spec, a dict or `*` chains): no RecursionError
TOO_DEEP = f"must nest at most {MAX_DEPTH} schedules within one another (spec too deeply nested)"


def register(name: str) -> Callable[[S], S]:
    """Register a schedule class under the factory name users write in specs."""

    def wrap(cls: S) -> S:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


def as_steps(steps: npt.ArrayLike, func: str = "values") -> Steps:
    """Steps as an int64 array (exact: periodic schedules take integer remainders), after checking them.

    Steps are integers in [0, MAX_STEP] (whole floats are accepted); past 2**63 - 1 a step
    is refused rather than rounded.

    Example:
        >>> as_steps([0, 2**62]).tolist()
        [0, 4611686018427387904]
    """
    arr = np.asarray(steps)
    whole_floats = arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr))) and not np.any(arr != np.floor(arr))
    if arr.dtype.kind == "O" and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in arr.flat):
        validate.fail(func, "steps", "must be <= 2**63 - 1", steps, ScheduleError)  # Python ints beyond int64
    if arr.dtype.kind not in "iu" and not whole_floats:
        validate.fail(func, "steps", "must be integers", steps, ScheduleError)
    if arr.size and arr.min() < 0:
        validate.fail(func, "steps", "must be >= 0", steps, ScheduleError)
    if arr.size and arr.dtype.kind != "i" and arr.max() >= 2.0**63:
        validate.fail(func, "steps", "must be <= 2**63 - 1", steps, ScheduleError)
    return arr.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True, repr=False)
class Schedule:
    """Base of every schedule: subclasses define fields, `_validate` and `_values`.

    Example:
        >>> import lrkit
        >>> s = lrkit.cosine(start=0.1, steps=100)
        >>> round(s(50), 6), s.values([0, 100]).tolist()
        (0.05, [0.1, 0.0])
    """

    name: ClassVar[str] = "schedule"
    positional: ClassVar[int] = 0  # leading fields written without `name=` in repr
    # fields added after a schedule shipped: `to_dict` leaves them out at their default, so the dicts
    # already saved (lab stores, specs in files) stay equal to the ones written now
    quiet: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self._validate()
        depth = nesting(self)
        if depth > MAX_DEPTH:
            validate.fail(self.name, "schedule", TOO_DEEP, f"{depth} levels", ScheduleError)

    def _validate(self) -> None:
        """Check and normalize fields (via `_set`); raise ScheduleError on bad input."""

    def _set(self, field: str, value: Any) -> None:
        object.__setattr__(self, field, value)

    def _check(self, field: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Replace `field` by what the `lrkit.validate` function `check` makes of it (raising ScheduleError)."""
        self._set(field, check(self.name, field, getattr(self, field), ScheduleError, *args, **kwargs))

    def _duration(self, field: str, minimum: int = 1, maximum: int = MAX_STEP) -> None:
        """Check a duration field: an integer >= `minimum` and <= `maximum` (it meets steps in int64 arithmetic)."""
        self._check(field, validate.integer, minimum=minimum)
        self._steps_in_range(field, maximum)

    def _steps_in_range(self, field: str, maximum: int = MAX_STEP) -> None:
        """Check that a step field (one step, or sorted milestones / boundaries) stays <= `maximum`."""
        value = getattr(self, field)
        last = value[-1] if isinstance(value, tuple) and value else value
        if isinstance(last, int) and last > maximum:
            text = "2**63 - 1" if maximum == MAX_STEP else str(maximum)
            validate.fail(self.name, field, f"must be <= {text} (steps are 64-bit integers)", value, ScheduleError)

    def _values(self, t: Steps) -> npt.NDArray[np.float64]:
        """The values at int64 steps `t` (exact integers: take remainders in integers, then go to floats)."""
        raise NotImplementedError

    def values(self, steps: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The schedule at many steps at once, vectorized (no Python loop per step).

        Example:
            >>> import lrkit
            >>> lrkit.step_decay(start=1.0, factor=0.5, every=2).values(range(5)).tolist()
            [1.0, 1.0, 0.5, 0.5, 0.25]
        """
        t = as_steps(steps, f"{self.name}.values")
        return self._at(t.reshape(-1)).reshape(t.shape)  # shapes compute on 1-D arrays (in place, where they can)

    def _at(self, t: Steps) -> npt.NDArray[np.float64]:
        """`values` on steps already checked (a combinator's inner schedule: no second pass over a million steps)."""
        out = np.asarray(self._values(t), dtype=np.float64)
        # a shape may compute a scalar (e.g. a constant); callers always get one value per step
        return out if out.shape == t.shape else np.broadcast_to(out, t.shape).copy()

    def __call__(self, step: int) -> float:
        """The schedule's value at one optimizer step (counted from 0).

        Example:
            >>> import lrkit
            >>> lrkit.linear(start=1.0, end=0.0, steps=4)(1)
            0.75
        """
        step = validate.integer(f"{self.name}.__call__", "step", step, ScheduleError, minimum=0, maximum=MAX_STEP)
        return float(self._at(np.array([step], dtype=np.int64))[0])

    def params(self) -> dict[str, Any]:
        """The fields of this schedule, by name, in declaration order.

        Example:
            >>> import lrkit
            >>> lrkit.constant(0.1).params()
            {'value': 0.1}
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that `lrkit.from_dict` turns back into an equal schedule.

        Example:
            >>> import lrkit
            >>> lrkit.constant(0.1).to_dict()
            {'type': 'constant', 'value': 0.1}
        """
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in self.quiet}
        kept = {k: v for k, v in self.params().items() if k not in defaults or v != defaults[k]}
        return {"type": self.name, **{k: _encode(v) for k, v in kept.items()}}

    def __repr__(self) -> str:
        fields = dataclasses.fields(self)
        parts = []
        for i, f in enumerate(fields):
            value = getattr(self, f.name)
            if i < self.positional:
                parts.append(_spec(value))
            elif f.default is dataclasses.MISSING or value != f.default:
                parts.append(f"{f.name}={_spec(value)}")
        return f"{self.name}({', '.join(parts)})"

    def __mul__(self, other: object) -> Schedule:
        if isinstance(other, Schedule):
            return Product(self, other)
        if validate.is_number(other):
            return Scaled(self, float(other))  # type: ignore[arg-type]
        return NotImplemented

    def __rmul__(self, other: object) -> Schedule:
        if validate.is_number(other):
            return Scaled(self, float(other))  # type: ignore[arg-type]
        return NotImplemented


def children(s: Schedule) -> list[Schedule]:
    """The schedules `s` is built from (its schedule-valued fields, in order).

    Example:
        >>> import lrkit
        >>> children(lrkit.warmup(lrkit.constant(1.0), steps=2))
        [constant(value=1.0)]
    """
    found: list[Schedule] = []
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        found.extend(v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, Schedule))
    return found


def nesting(s: Schedule) -> int:
    """How many schedules deep `s` is: 1 for a shape, 1 + the deepest child for a combinator.

    Example:
        >>> import lrkit
        >>> nesting(lrkit.constant(1.0)), nesting(lrkit.constant(1.0) * lrkit.constant(2.0) * lrkit.constant(3.0))
        (1, 3)
    """
    return deepest(s, children, lambda _: True)


def deepest(root: Any, children: Callable[[Any], Iterable[Any]], counts: Callable[[Any], bool]) -> int:
    """The most nodes that `counts` on any path down from `root`; a loop, not a recursion (the input may be hostile).

    Example:
        >>> deepest([1, [2, [3]]], lambda v: v if isinstance(v, list) else (), lambda v: isinstance(v, list))
        3
    """
    most, stack = 0, [(root, 0)]
    while stack:
        node, above = stack.pop()
        depth = above + int(counts(node))
        most = max(most, depth)
        stack.extend((child, depth) for child in children(node))
    return most


def _encode(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _spec(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_spec(v) for v in value) + "]"
    return repr(value)


def schedule_field(func: str, param: str, value: Any) -> Schedule:
    """Check that a combinator's argument is a schedule (else a ScheduleTypeError)."""
    schedule: Schedule = validate.instance(func, param, value, ScheduleError, Schedule, "an lrkit schedule")
    return schedule


@register("scale")
@dataclasses.dataclass(frozen=True, repr=False)
class Scaled(Schedule):
    """A schedule times a non-negative number; written `0.1 * s`.

    Example:
        >>> import lrkit
        >>> s = 0.5 * lrkit.constant(0.2)
        >>> s, s(3)
        (0.5 * constant(value=0.2), 0.1)
    """

    schedule: Schedule
    factor: float
    positional: ClassVar[int] = 1

    def _validate(self) -> None:
        schedule_field(self.name, "schedule", self.schedule)
        self._check("factor", validate.non_negative)

    def _values(self, t: Steps) -> npt.NDArray[np.float64]:
        return self.factor * self.schedule._at(t)

    def __repr__(self) -> str:
        return f"{self.factor!r} * {_operand(self.schedule)}"


@register("product")
@dataclasses.dataclass(frozen=True, repr=False)
class Product(Schedule):
    """The pointwise product of two schedules; written `s1 * s2`.

    Example:
        >>> import lrkit
        >>> s = lrkit.constant(0.1) * lrkit.step_decay(start=1.0, factor=0.5, every=10)
        >>> s(10)
        0.05
    """

    left: Schedule
    right: Schedule
    positional: ClassVar[int] = 2

    def _validate(self) -> None:
        schedule_field(self.name, "left", self.left)
        schedule_field(self.name, "right", self.right)

    def _values(self, t: Steps) -> npt.NDArray[np.float64]:
        return self.left._at(t) * self.right._at(t)

    def __repr__(self) -> str:
        return f"{self.left!r} * {_operand(self.right)}"


def _operand(s: Schedule) -> str:
    """Right operand of `*`, parenthesized where the grammar needs it to round-trip."""
    return f"({s!r})" if isinstance(s, (Scaled, Product)) else repr(s)


def settles(s: Schedule) -> int | None:
    """The step from which `s` holds its last value, or None when it never does (or lrkit cannot tell).

    Read from the schedule's durations, never from its values: a step decay with a long `every`
    would look settled. Tabulating adapters (`lrkit.optax.schedule`, `lrkit.keras.LearningRateSchedule`)
    end their table here. A peer's convention that rises again (`cosine(cycles=...)`, Keras'
    `polynomial(cycle=True)`) never settles; nor does a schedule this table does not know (None is safe).

    Example:
        >>> import lrkit
        >>> settles(lrkit.warmup(lrkit.cosine(start=0.1, steps=90), steps=10)), settles(lrkit.exponential(start=1.0, rate=0.9))
        (100, None)
    """
    rule = _SETTLES.get(s.name)
    return rule(s) if rule is not None else None


def _later(*parts: int | None) -> int | None:
    return None if any(p is None for p in parts) else max(p for p in parts if p is not None)


def _shifted(inner: int | None, by: int, times: int = 1) -> int | None:
    return None if inner is None else inner * times + by


_SETTLES: dict[str, Callable[[Any], int | None]] = {
    "constant": lambda s: 0,
    "linear": lambda s: s.steps,
    "polynomial": lambda s: None if s.cycle else s.steps,
    "cosine": lambda s: s.steps if s.cycles is None else None,
    "piecewise": lambda s: s.boundaries[-1] if s.boundaries else 0,
    "multistep": lambda s: s.milestones[-1] if s.milestones else 0,
    "one_cycle": lambda s: s.total_steps - 1,  # its last step already takes the final value
    "wsd": lambda s: s.total_steps,
    "warmup": lambda s: _shifted(settles(s.schedule), s.steps),
    "join": lambda s: _shifted(settles(s.schedules[-1]), s.boundaries[-1] if s.boundaries else 0),
    "clip": lambda s: settles(s.schedule),
    "scale": lambda s: settles(s.schedule),
    "product": lambda s: _later(settles(s.left), settles(s.right)),
    "per_epoch": lambda s: _shifted(settles(s.schedule), 0, s.steps_per_epoch),
}
