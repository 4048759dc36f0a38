"""Keras 3 `keras.optimizers.schedules` by their own names and arguments, as pure lrkit schedules.

Keras computes in float32; these presets compute the same formulas in float64 (equal to
Keras' values at float32 rounding). `PiecewiseConstantDecay` keeps Keras' convention: a value
applies up to and including its boundary step (`step <= boundary`).

Example:
    >>> from lrkit.presets import keras
    >>> keras.PiecewiseConstantDecay([2], [1.0, 0.5]).values(range(4)).tolist()
    [1.0, 1.0, 1.0, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules import base, combinators, cycles, shapes

E = ScheduleError


def _lr(func: str, value: float, param: str = "initial_learning_rate") -> float:
    checked: float = validate.non_negative(func, param, value, E)
    return checked


def ExponentialDecay(initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False) -> base.Schedule:
    """Keras' ExponentialDecay: `initial * decay_rate**(step / decay_steps)` (whole periods with `staircase`).

    Example:
        >>> ExponentialDecay(1.0, 2, 0.5, staircase=True).values(range(5)).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    f = "ExponentialDecay"
    rate = validate.positive(f, "decay_rate", decay_rate, E)
    every, stair = validate.integer(f, "decay_steps", decay_steps, E), validate.flag(f, "staircase", staircase, E)
    return shapes.Exponential(_lr(f, initial_learning_rate), rate, every=every, staircase=stair)


def PiecewiseConstantDecay(boundaries: Sequence[int], values: Sequence[float]) -> base.Schedule:
    """Keras' PiecewiseConstantDecay: `values[0]` while `step <= boundaries[0]`, ..., `values[-1]` after the last.

    Example:
        >>> PiecewiseConstantDecay([0, 3], [1.0, 0.5, 0.1]).values(range(5)).tolist()
        [1.0, 0.5, 0.5, 0.5, 0.1]
    """
    f = "PiecewiseConstantDecay"
    bounds = validate.increasing_steps(f, "boundaries", boundaries, E, minimum=0)
    given = validate.sequence(f, "values", values, E)
    validate.length(f, "values", given, E, len(bounds) + 1, "one more than boundaries")
    return shapes.piecewise([b + 1 for b in bounds], list(given))  # Keras switches after its boundary step


def PolynomialDecay(
    initial_learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False
) -> base.Schedule:
    """Keras' PolynomialDecay; with `cycle=True` the decay restarts over the next multiple of `decay_steps`.

    Example:
        >>> PolynomialDecay(1.0, 2, end_learning_rate=0.0, cycle=True).values(range(5)).tolist()
        [1.0, 0.5, 0.0, 0.25, 0.0]
    """
    f = "PolynomialDecay"
    end = _lr(f, end_learning_rate, "end_learning_rate")
    steps, power = validate.integer(f, "decay_steps", decay_steps, E), validate.positive(f, "power", power, E)
    return shapes.Polynomial(_lr(f, initial_learning_rate), end, steps, power=power, cycle=validate.flag(f, "cycle", cycle, E))


def InverseTimeDecay(initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False) -> base.Schedule:
    """Keras' InverseTimeDecay: `initial / (1 + decay_rate * step / decay_steps)`.

    Example:
        >>> InverseTimeDecay(1.0, 1, 1.0).values(range(4)).tolist()
        [1.0, 0.5, 0.3333333333333333, 0.25]
    """
    f = "InverseTimeDecay"
    decay, every = validate.non_negative(f, "decay_rate", decay_rate, E), validate.integer(f, "decay_steps", decay_steps, E)
    return shapes.InverseTime(_lr(f, initial_learning_rate), decay, every=every, staircase=validate.flag(f, "staircase", staircase, E))


def CosineDecay(
    initial_learning_rate: float, decay_steps: int, alpha: float = 0.0, warmup_target: float | None = None, warmup_steps: int = 0
) -> base.Schedule:
    """Keras' CosineDecay: an optional linear warmup to `warmup_target`, then a cosine down to `alpha` times its peak.

    Example:
        >>> CosineDecay(0.0, 2, warmup_target=1.0, warmup_steps=2).values(range(6)).round(6).tolist()
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    f = "CosineDecay"
    initial, steps = _lr(f, initial_learning_rate), validate.integer(f, "decay_steps", decay_steps, E)
    alpha = validate.in_range(f, "alpha", alpha, E, 0.0, 1.0)
    if warmup_target is None:
        return shapes.Cosine(initial, steps, end=initial * alpha)
    target, w = _lr(f, warmup_target, "warmup_target"), validate.integer(f, "warmup_steps", warmup_steps, E, minimum=0)
    decay = shapes.Cosine(target, steps, end=target * alpha)
    return combinators.Warmup(decay, w, start=initial) if w else decay


def CosineDecayRestarts(
    initial_learning_rate: float, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0
) -> base.Schedule:
    """Keras' CosineDecayRestarts: cycles `t_mul` times longer each, over a fixed floor `alpha * initial`
    under a peak whose height above the floor shrinks by `m_mul` each restart.

    Example:
        >>> CosineDecayRestarts(1.0, 2, t_mul=1.0, m_mul=0.5).values(range(5)).round(6).tolist()
        [1.0, 0.5, 0.5, 0.25, 0.25]
    """
    f = "CosineDecayRestarts"
    initial, first = _lr(f, initial_learning_rate), validate.integer(f, "first_decay_steps", first_decay_steps, E)
    t_mul, m_mul = validate.number(f, "t_mul", t_mul, E), validate.positive(f, "m_mul", m_mul, E)
    if t_mul < 1:
        validate.fail(f, "t_mul", "must be >= 1 (cycles that shrink never end)", t_mul, E)
    alpha = validate.in_range(f, "alpha", alpha, E, 0.0, 1.0)
    return cycles.SGDR(initial, first, cycle_mult=t_mul, end=initial * alpha, peak_decay=m_mul, decay_height=True)
