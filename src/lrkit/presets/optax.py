"""optax's schedules by their own names and arguments, as pure lrkit schedules.

Where optax falls back silently to a constant (a non-positive `transition_steps`, a zero
`decay_rate`, a negative `transition_begin`), the preset raises instead (DESIGN.md: no silent
fall-backs). Each piece is joined on absolute steps as optax's `join_schedules` joins it.

Example:
    >>> from lrkit.presets import optax
    >>> optax.linear_schedule(1.0, 0.0, transition_steps=2, transition_begin=1).values(range(5)).tolist()
    [1.0, 1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules import base, combinators, shapes

E = ScheduleError


def _value(func: str, param: str, value: float) -> float:
    checked: float = validate.non_negative(func, param, value, E)
    return checked


def _begun(schedule: base.Schedule, begin: int, before: float) -> base.Schedule:
    """`before` until step `begin`, then the schedule counted from there (optax's transition_begin)."""
    return combinators.Join((shapes.Constant(before), schedule), (begin,)) if begin > 0 else schedule


def constant_schedule(value: float) -> base.Schedule:
    """optax's constant_schedule.

    Example:
        >>> constant_schedule(0.1)(10)
        0.1
    """
    return shapes.Constant(_value("constant_schedule", "value", value))


def polynomial_schedule(
    init_value: float, end_value: float, power: float, transition_steps: int, transition_begin: int = 0
) -> base.Schedule:
    """optax's polynomial_schedule: `init_value` until `transition_begin`, then `(I - E) * (1 - s/T)**power + E`.

    Example:
        >>> polynomial_schedule(1.0, 0.0, 2.0, transition_steps=2).values(range(4)).tolist()
        [1.0, 0.25, 0.0, 0.0]
    """
    return _polynomial("polynomial_schedule", init_value, end_value, power, transition_steps, transition_begin)


def linear_schedule(init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0) -> base.Schedule:
    """optax's linear_schedule: polynomial_schedule with power 1.

    Example:
        >>> linear_schedule(0.0, 1.0, transition_steps=4).values(range(6)).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return _polynomial("linear_schedule", init_value, end_value, 1.0, transition_steps, transition_begin)


def _polynomial(func: str, init: float, end: float, power: float, steps: int, begin: int) -> base.Schedule:
    init, end = _value(func, "init_value", init), _value(func, "end_value", end)
    steps = validate.integer(func, "transition_steps", steps, E)
    begin = validate.integer(func, "transition_begin", begin, E, minimum=0)
    return _begun(shapes.Polynomial(init, end, steps, power=validate.positive(func, "power", power, E)), begin, init)


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0) -> base.Schedule:
    """optax's cosine_decay_schedule: `init * ((1 - alpha) * (0.5 * (1 + cos(pi t/T)))**exponent + alpha)`, held.

    Example:
        >>> cosine_decay_schedule(1.0, 2, alpha=0.5).values(range(4)).round(6).tolist()
        [1.0, 0.75, 0.5, 0.5]
    """
    f = "cosine_decay_schedule"
    init, steps = _value(f, "init_value", init_value), validate.integer(f, "decay_steps", decay_steps, E)
    alpha, exponent = validate.non_negative(f, "alpha", alpha, E), validate.positive(f, "exponent", exponent, E)
    return shapes.Cosine(init, steps, end=init * alpha, power=exponent)


def warmup_cosine_decay_schedule(
    init_value: float, peak_value: float, warmup_steps: int, decay_steps: int, end_value: float = 0.0, exponent: float = 1.0
) -> base.Schedule:
    """optax's warmup_cosine_decay_schedule: linear `init -> peak` over `warmup_steps`, then a cosine to `end_value`
    by `decay_steps` (which counts the warmup).

    Example:
        >>> warmup_cosine_decay_schedule(0.0, 1.0, 2, 4).values(range(6)).round(6).tolist()
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    f = "warmup_cosine_decay_schedule"
    peak, end = _value(f, "peak_value", peak_value), _value(f, "end_value", end_value)
    w = validate.integer(f, "warmup_steps", warmup_steps, E, minimum=0)
    steps = validate.integer(f, "decay_steps", decay_steps, E, minimum=w + 1)
    cosine = shapes.Cosine(peak, steps - w, end=end, power=validate.positive(f, "exponent", exponent, E))
    return _warmed(f, init_value, peak, w, cosine)


def _warmed(func: str, init: float, peak: float, steps: int, then: base.Schedule) -> base.Schedule:
    """optax's linear_schedule(init, peak, steps) joined to `then` at `steps` (no warmup when 0)."""
    if steps == 0:
        return then
    return combinators.Join((shapes.Polynomial(_value(func, "init_value", init), peak, steps), then), (steps,))


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> base.Schedule:
    """optax's exponential_decay: `init * decay_rate**((t - begin) / transition_steps)`, bounded by `end_value`.

    Example:
        >>> exponential_decay(1.0, 1, 0.5, end_value=0.2).values(range(4)).tolist()
        [1.0, 0.5, 0.25, 0.2]
    """
    f = "exponential_decay"
    init, rate = _value(f, "init_value", init_value), validate.positive(f, "decay_rate", decay_rate, E)
    every, stair = validate.integer(f, "transition_steps", transition_steps, E), validate.flag(f, "staircase", staircase, E)
    begin = validate.integer(f, "transition_begin", transition_begin, E, minimum=0)
    decay: base.Schedule = shapes.Exponential(init, rate, every=every, staircase=stair)
    if end_value is not None:
        end = _value(f, "end_value", end_value)
        # optax bounds a decay from below and a growth (rate >= 1) from above
        decay = shapes.Exponential(init, rate, every, stair, floor=end) if rate < 1 else combinators.Clip(decay, high=end)
    return _begun(decay, begin, init)


def _sorted_scales(func: str, boundaries_and_scales: Mapping[int, float] | None) -> tuple[list[int], list[float]]:
    if boundaries_and_scales is None:
        return [], []
    items = validate.instance(func, "boundaries_and_scales", boundaries_and_scales, E, Mapping, "a dict {step: scale}")
    pairs = sorted((validate.integer(func, "boundaries_and_scales", b, E, minimum=0), s) for b, s in items.items())
    return [b for b, _ in pairs], [validate.non_negative(func, "boundaries_and_scales", s, E) for _, s in pairs]


def piecewise_constant_schedule(init_value: float, boundaries_and_scales: Mapping[int, float] | None = None) -> base.Schedule:
    """optax's piecewise_constant_schedule: from each boundary step on, the value so far times its scale.

    Example:
        >>> piecewise_constant_schedule(1.0, {2: 0.5, 3: 0.5}).values(range(5)).tolist()
        [1.0, 1.0, 0.5, 0.25, 0.25]
    """
    f = "piecewise_constant_schedule"
    bounds, scales = _sorted_scales(f, boundaries_and_scales)
    values = np.cumprod([_value(f, "init_value", init_value), *scales]).tolist()
    if bounds and bounds[0] == 0:  # a scale at step 0 applies from the start
        bounds, values = bounds[1:], values[1:]
    return shapes.piecewise(bounds, values) if bounds else shapes.Constant(values[0])


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: float, boundaries_and_scales: Mapping[int, float] | None = None
) -> base.Schedule:
    """optax's piecewise_interpolate_schedule: linear or cosine from each boundary's value to the next one's.

    Example:
        >>> piecewise_interpolate_schedule("linear", 1.0, {2: 0.5, 4: 0.0}).values(range(6)).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    f = "piecewise_interpolate_schedule"
    kind = validate.choice(f, "interpolate_type", interpolate_type, E, ("linear", "cosine"))
    bounds, scales = _sorted_scales(f, boundaries_and_scales)
    values = np.cumprod([_value(f, "init_value", init_value), *scales]).tolist()
    starts = [0, *bounds]
    pieces: list[base.Schedule] = []
    joins: list[int] = []
    for i in range(len(bounds)):
        size = starts[i + 1] - starts[i]
        if size == 0:  # a boundary at step 0: an empty interval
            continue
        a, b = values[i], values[i + 1]
        pieces.append(shapes.Linear(a, b, size) if kind == "linear" else shapes.Cosine(a, size, end=b))
        joins.append(starts[i])
    pieces.append(shapes.Constant(values[-1]))
    joins.append(starts[-1])
    return combinators.Join(tuple(pieces), tuple(joins[1:])) if len(pieces) > 1 else pieces[0]


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> base.Schedule:
    """optax's warmup_constant_schedule: linear `init -> peak` over `warmup_steps`, then `peak`.

    Example:
        >>> warmup_constant_schedule(0.0, 1.0, 2).values(range(4)).tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    return _polynomial("warmup_constant_schedule", init_value, peak_value, 1.0, warmup_steps, 0)


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> base.Schedule:
    """optax's warmup_exponential_decay_schedule: linear warmup to `peak_value`, then exponential_decay from it.

    Example:
        >>> warmup_exponential_decay_schedule(0.0, 1.0, 2, 1, 0.5).values(range(5)).tolist()
        [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    f = "warmup_exponential_decay_schedule"
    w = validate.integer(f, "warmup_steps", warmup_steps, E, minimum=0)
    decay = exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value)
    return _warmed(f, init_value, _value(f, "peak_value", peak_value), w, decay)


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> base.Schedule:
    """optax's linear_onecycle_schedule: optax's phase boundaries (`int(pct * T)`), not torch's (a step apart).

    Example:
        >>> s = linear_onecycle_schedule(100, 1.0)
        >>> round(s(0), 6), round(s(30), 6), round(s(85), 6)
        (0.04, 1.0, 0.04)
    """
    steps = validate.integer("linear_onecycle_schedule", "transition_steps", transition_steps, E)
    scales = {int(pct_start * steps): div_factor, int(pct_final * steps): 1.0 / div_factor, steps: 1.0 / final_div_factor}
    return piecewise_interpolate_schedule("linear", peak_value / div_factor, scales)


def cosine_onecycle_schedule(
    transition_steps: int, peak_value: float, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4
) -> base.Schedule:
    """optax's cosine_onecycle_schedule: cosine up to `peak_value` by `int(pct_start * T)`, then down by `T`.

    Example:
        >>> s = cosine_onecycle_schedule(100, 1.0)
        >>> round(s(0), 6), round(s(30), 6)
        (0.04, 1.0)
    """
    steps = validate.integer("cosine_onecycle_schedule", "transition_steps", transition_steps, E)
    scales = {int(pct_start * steps): div_factor, steps: 1.0 / (div_factor * final_div_factor)}
    return piecewise_interpolate_schedule("cosine", peak_value / div_factor, scales)


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, Any]]) -> base.Schedule:
    """optax's sgdr_schedule: warmup_cosine_decay_schedule(**kwargs) cycles, each `decay_steps` long, joined.

    Example:
        >>> s = sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=1, decay_steps=3)] * 2)
        >>> s.values(range(6)).round(6).tolist()
        [0.0, 1.0, 0.5, 0.0, 1.0, 0.5]
    """
    items = validate.sequence("sgdr_schedule", "cosine_kwargs", list(cosine_kwargs), E)
    if not items:
        validate.fail("sgdr_schedule", "cosine_kwargs", "must hold at least one cycle", cosine_kwargs, E)
    cycles = [warmup_cosine_decay_schedule(**kw) for kw in items]
    ends = np.cumsum([kw["decay_steps"] for kw in items]).tolist()
    return combinators.Join(tuple(cycles), tuple(ends[:-1])) if len(cycles) > 1 else cycles[0]
