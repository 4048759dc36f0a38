"""Monotone shapes: constant, linear, polynomial, exponential, inverse-time,
inverse-sqrt, step, multistep, piecewise and cosine decay.

Each class is registered under the lower-case factory name users call; the
factory *is* the class, so there is one signature and one docstring to keep.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules.base import REGISTRY, Schedule, Steps, register

Array = npt.NDArray[np.float64]


def anneal_poly(start: float, end: float, progress: Array, power: float = 1.0) -> Array:
    """`(start - end) * (1 - p)**power + end` for progress p clipped to [0, 1]."""
    p = np.clip(progress, 0.0, 1.0)
    return (start - end) * (1.0 - p) ** power + end


def cos_height(angle: Array, half_drop: float | Array) -> Array:
    """`half_drop * (1 + cos(angle))`, written into `angle`: the one cosine interpolation of the core.

    A half-cosine anneal from `start` to `end` is `end + cos_height(pi * p, (start - end) / 2)`
    (the factor torch's `_annealing_cos` uses). Callers compute the angle in torch's order
    of operations, so the numbers equal torch's, and add `end` themselves: a caller with
    per-step arrays then holds one of them at a time. In place because it runs over
    millions of steps: no temporaries.

    Example:
        >>> cos_height(np.array([0.0, np.pi / 2, np.pi]), 0.5).round(12).tolist()
        [1.0, 0.5, 0.0]
    """
    np.cos(angle, out=angle)
    angle += 1.0
    angle *= half_drop
    return angle


def anneal_cos(start: float, end: float, progress: Array) -> Array:
    """Half cosine from `start` (p = 0) to `end` (p = 1), p clipped to [0, 1].

    Example:
        >>> anneal_cos(1.0, 0.0, np.array([0.0, 0.5, 2.0])).round(12).tolist()
        [1.0, 0.5, 0.0]
    """
    p = np.clip(progress, 0.0, 1.0)
    p *= np.pi
    p = cos_height(p, (start - end) / 2.0)
    p += end
    return p


@register("constant")
@dataclasses.dataclass(frozen=True, repr=False)
class Constant(Schedule):
    """The same value at every step.

    Example:
        >>> import lrkit
        >>> lrkit.constant(0.01)(1000)
        0.01
    """

    value: float

    def _validate(self) -> None:
        self._check("value", validate.non_negative)

    def _values(self, t: Steps) -> Array:
        return np.full(t.shape, self.value)


@register("linear")
@dataclasses.dataclass(frozen=True, repr=False)
class Linear(Schedule):
    """A straight line from `start` to `end` over `steps`, then `end`.

    Example:
        >>> import lrkit
        >>> lrkit.linear(start=0.0, end=1.0, steps=4).values(range(6)).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    start: float
    end: float
    steps: int

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._check("end", validate.non_negative)
        self._duration("steps")

    def _values(self, t: Steps) -> Array:
        return anneal_poly(self.start, self.end, t / self.steps)


@register("polynomial")
@dataclasses.dataclass(frozen=True, repr=False)
class Polynomial(Schedule):
    """`(start - end) * (1 - t/steps)**power + end`, then `end`.

    With `cycle=True` (Keras' PolynomialDecay(cycle=True)) the decay restarts instead of holding:
    step t decays over the first multiple of `steps` that is >= t, so the value jumps up after each multiple.

    Example:
        >>> import lrkit
        >>> lrkit.polynomial(start=1.0, end=0.0, steps=2, power=2.0).values([0, 1, 2, 3]).tolist()
        [1.0, 0.25, 0.0, 0.0]
    """

    start: float
    end: float
    steps: int
    power: float = 1.0
    cycle: bool = False
    quiet: ClassVar[tuple[str, ...]] = ("cycle",)

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._check("end", validate.non_negative)
        self._duration("steps")
        self._check("power", validate.positive)
        self._check("cycle", validate.flag)

    def _values(self, t: Steps) -> Array:
        if not self.cycle:
            return anneal_poly(self.start, self.end, t / self.steps, self.power)
        # Keras' cycle: the horizon is the first multiple of `steps` at or past t (steps at t = 0), in integers
        horizon = self.steps * np.maximum(1, -(-t // self.steps))
        return anneal_poly(self.start, self.end, t / horizon, self.power)


def _exponent(t: Steps, every: int, staircase: bool) -> Array:
    """Periods elapsed: whole ones (an integer division, exact at any step) with `staircase`, else fractional."""
    return (t // every).astype(np.float64) if staircase else t / every


@register("exponential")
@dataclasses.dataclass(frozen=True, repr=False)
class Exponential(Schedule):
    """`start * rate**(t/every)` (whole periods only if `staircase`), never below `floor`.

    Example:
        >>> import lrkit
        >>> lrkit.exponential(start=1.0, rate=0.5, every=2, staircase=True).values(range(5)).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    start: float
    rate: float
    every: int = 1
    staircase: bool = False
    floor: float = 0.0

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._check("rate", validate.positive)
        self._duration("every")
        self._check("staircase", validate.flag)
        self._check("floor", validate.non_negative)

    def _values(self, t: Steps) -> Array:
        with np.errstate(over="ignore", under="ignore"):
            v = self.start * np.power(self.rate, _exponent(t, self.every, self.staircase))
        return np.maximum(v, self.floor)


@register("inverse_time")
@dataclasses.dataclass(frozen=True, repr=False)
class InverseTime(Schedule):
    """`start / (1 + decay * t/every)`; with `every=1`, Keras' legacy SGD `decay`.

    Example:
        >>> import lrkit
        >>> round(lrkit.inverse_time(start=0.1, decay=0.001)(1), 8)
        0.0999001
    """

    start: float
    decay: float
    every: int = 1
    staircase: bool = False

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._check("decay", validate.non_negative)
        self._duration("every")
        self._check("staircase", validate.flag)

    def _values(self, t: Steps) -> Array:
        return self.start / (1.0 + self.decay * _exponent(t, self.every, self.staircase))


@register("inverse_sqrt")
@dataclasses.dataclass(frozen=True, repr=False)
class InverseSqrt(Schedule):
    """Linear warmup from 0 to `peak`, then `peak * sqrt(timescale / (t - warmup_steps + timescale))`.

    `timescale` defaults to `warmup_steps` (the Transformer's `rsqrt` decay, continuous at the join).

    Example:
        >>> import lrkit
        >>> s = lrkit.inverse_sqrt(peak=1.0, warmup_steps=4)
        >>> s.values([0, 2, 4, 16]).tolist()
        [0.0, 0.5, 1.0, 0.5]
    """

    peak: float
    warmup_steps: int
    timescale: int | None = None

    def _validate(self) -> None:
        self._check("peak", validate.non_negative)
        self._duration("warmup_steps", minimum=0)
        if self.timescale is not None:
            self._duration("timescale")
        elif self.warmup_steps == 0:
            validate.fail(self.name, "timescale", "must be a positive integer when warmup_steps is 0", self.timescale, ScheduleError)

    def _values(self, t: Steps) -> Array:
        ts = float(self.timescale if self.timescale is not None else self.warmup_steps)
        w = float(self.warmup_steps)
        ramp = self.peak * t / max(w, 1.0)
        decay = self.peak * np.sqrt(ts / (np.maximum(t - self.warmup_steps, 0) + ts))
        return np.where(t < self.warmup_steps, ramp, decay)


@register("step_decay")
@dataclasses.dataclass(frozen=True, repr=False)
class StepDecay(Schedule):
    """`start * factor**floor(t/every)`: drop by `factor` every `every` steps (torch's StepLR).

    Example:
        >>> import lrkit
        >>> lrkit.step_decay(start=0.1, factor=0.5, every=10)(25)
        0.025
    """

    start: float
    factor: float
    every: int

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._check("factor", validate.positive)
        self._duration("every")

    def _values(self, t: Steps) -> Array:
        return self.start * np.power(self.factor, (t // self.every).astype(np.float64))


@register("multistep")
@dataclasses.dataclass(frozen=True, repr=False)
class MultiStep(Schedule):
    """Drop by `factor` at each milestone (torch's MultiStepLR).

    Example:
        >>> import lrkit
        >>> lrkit.multistep(start=1.0, milestones=[2, 4], factor=0.1).values(range(6)).round(6).tolist()
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """

    start: float
    milestones: tuple[int, ...]
    factor: float

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._check("milestones", validate.increasing_steps)
        self._steps_in_range("milestones")
        self._check("factor", validate.positive)

    def _values(self, t: Steps) -> Array:
        drops = np.searchsorted(np.asarray(self.milestones, dtype=np.int64), t, side="right")
        return self.start * np.power(self.factor, drops)


@register("piecewise")
@dataclasses.dataclass(frozen=True, repr=False)
class Piecewise(Schedule):
    """`values[i]` on `[boundaries[i-1], boundaries[i])`: a piecewise-constant schedule.

    Example:
        >>> import lrkit
        >>> lrkit.piecewise(boundaries=[2, 3], values=[1.0, 0.5, 0.1]).values(range(4)).tolist()
        [1.0, 1.0, 0.5, 0.1]
    """

    boundaries: tuple[int, ...]
    values_: tuple[float, ...] = dataclasses.field(metadata={"name": "values"})

    def _validate(self) -> None:
        self._check("boundaries", validate.increasing_steps)
        self._steps_in_range("boundaries")
        given = validate.sequence(self.name, "values", self.values_, ScheduleError)
        vals = tuple(validate.non_negative(self.name, "values", v, ScheduleError) for v in given)
        validate.length(self.name, "values", vals, ScheduleError, len(self.boundaries) + 1, "one more than boundaries")
        self._set("values_", vals)

    def _values(self, t: Steps) -> Array:
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), t, side="right")
        return np.asarray(self.values_, dtype=np.float64)[index]

    def params(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values_}

    def __repr__(self) -> str:
        return f"piecewise(boundaries={list(self.boundaries)!r}, values={list(self.values_)!r})"


def piecewise(boundaries: list[int], values: list[float]) -> Piecewise:
    """`values[i]` on `[boundaries[i-1], boundaries[i])` (the public factory; `values` is a method name).

    Example:
        >>> import lrkit
        >>> lrkit.piecewise(boundaries=[10], values=[0.1, 0.01])(10)
        0.01
    """
    return Piecewise(boundaries, values)  # type: ignore[arg-type]


REGISTRY["piecewise"] = piecewise


@register("cosine")
@dataclasses.dataclass(frozen=True, repr=False)
class Cosine(Schedule):
    """Half cosine from `start` to `end` over `steps`, then `end` (torch's CosineAnnealingLR within its period).

    `power` raises the cosine's height above `end` to a power (optax's `exponent`):
    `end + (start - end) * (0.5 * (1 + cos(pi * t / steps)))**power`. `cycles` (None: hold `end`)
    instead runs `cycles` whole cosine waves over `steps` and goes on past them, rising again
    (the peers' convention: torch's CosineAnnealingLR is `cycles=0.5`, HF's `num_cycles`).

    Example:
        >>> import lrkit
        >>> lrkit.cosine(start=1.0, steps=2).values([0, 1, 2, 3]).round(6).tolist()
        [1.0, 0.5, 0.0, 0.0]
    """

    start: float
    steps: int
    end: float = 0.0
    cycles: float | None = None
    power: float = 1.0
    quiet: ClassVar[tuple[str, ...]] = ("cycles", "power")

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._duration("steps")
        self._check("end", validate.non_negative)
        if self.cycles is not None:
            self._check("cycles", validate.positive)
        self._check("power", validate.positive)

    def _values(self, t: Steps) -> Array:
        if self.cycles is None and self.power == 1.0:
            return anneal_cos(self.start, self.end, t / self.steps)
        p = t / self.steps
        # a held half cosine, or the peers' endless wave; the angle in HF's order ((pi * cycles * 2) * p)
        angle = np.clip(p, 0.0, 1.0) * np.pi if self.cycles is None else p * (np.pi * self.cycles * 2.0)
        height = cos_height(angle, 0.5)  # in [0, 1]: optax's 0.5 * (1 + cos), raised to `power` as optax's exponent
        if self.power != 1.0:
            height **= self.power
        height *= self.start - self.end
        height += self.end
        return height
