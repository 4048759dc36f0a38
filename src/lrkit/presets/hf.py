"""Hugging Face `transformers.optimization` schedules by their own names and arguments, as pure lrkit schedules.

HF builds each schedule as a `LambdaLR` factor times the optimizer's lr; a preset takes that lr
(`lr`) where HF takes the optimizer and returns `lr * factor(t)`. HF's cosines keep their
convention past `num_training_steps`: they rise again. `get_reduce_on_plateau_schedule` is
`lrkit.Plateau` with torch's ReduceLROnPlateau arguments.

Example:
    >>> from lrkit.presets import hf
    >>> s = hf.get_linear_schedule_with_warmup(1.0, num_warmup_steps=2, num_training_steps=6)
    >>> s.values(range(7)).tolist()
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
"""

from __future__ import annotations

from typing import Any

from lrkit import validate
from lrkit.control.plateau import Plateau
from lrkit.errors import ScheduleError
from lrkit.presets import torch as torch_presets
from lrkit.schedules import base, combinators, cycles, shapes

E = ScheduleError
WARMUP_TYPES = ("linear", "cosine", "1-sqrt")


def _warmed(schedule: base.Schedule, steps: int, start: float = 0.0) -> base.Schedule:
    """HF's linear warmup from `start` to the schedule's first value over `steps` (none when 0)."""
    return combinators.Warmup(schedule, steps, start=start) if steps > 0 else schedule


def _steps(func: str, warmup: int, training: int | None = None) -> tuple[int, int]:
    """num_warmup_steps (>= 0) and num_training_steps (> num_warmup_steps), checked."""
    w = validate.integer(func, "num_warmup_steps", warmup, E, minimum=0)
    if training is None:
        return w, w
    return w, validate.integer(func, "num_training_steps", training, E, minimum=w + 1)


def _lr(func: str, lr: float) -> float:
    checked: float = validate.non_negative(func, "lr", lr, E)
    return checked


def get_constant_schedule(lr: float) -> base.Schedule:
    """HF's get_constant_schedule: `lr` throughout.

    Example:
        >>> get_constant_schedule(0.1)(10**6)
        0.1
    """
    return shapes.Constant(_lr("get_constant_schedule", lr))


def get_constant_schedule_with_warmup(lr: float, num_warmup_steps: int) -> base.Schedule:
    """HF's get_constant_schedule_with_warmup: a linear warmup from 0, then `lr`.

    Example:
        >>> get_constant_schedule_with_warmup(1.0, 2).values(range(4)).tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    func = "get_constant_schedule_with_warmup"
    return _warmed(shapes.Constant(_lr(func, lr)), _steps(func, num_warmup_steps)[0])


def get_linear_schedule_with_warmup(lr: float, num_warmup_steps: int, num_training_steps: int) -> base.Schedule:
    """HF's get_linear_schedule_with_warmup: warmup from 0, then linearly to 0 at `num_training_steps`, then 0.

    Example:
        >>> get_linear_schedule_with_warmup(1.0, 0, 4).values(range(6)).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    func = "get_linear_schedule_with_warmup"
    w, total = _steps(func, num_warmup_steps, num_training_steps)
    return _warmed(shapes.Linear(_lr(func, lr), 0.0, total - w), w)


def get_cosine_schedule_with_warmup(lr: float, num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5) -> base.Schedule:
    """HF's get_cosine_schedule_with_warmup: warmup, then `num_cycles` cosine waves to `num_training_steps`, and on.

    Example:
        >>> get_cosine_schedule_with_warmup(1.0, 0, 2).values(range(5)).round(6).tolist()
        [1.0, 0.5, 0.0, 0.5, 1.0]
    """
    return get_cosine_with_min_lr_schedule_with_warmup(lr, num_warmup_steps, num_training_steps, num_cycles, min_lr_rate=0.0)


def get_cosine_with_hard_restarts_schedule_with_warmup(
    lr: float, num_warmup_steps: int, num_training_steps: int, num_cycles: int = 1
) -> base.Schedule:
    """HF's hard restarts: warmup, then `num_cycles` half cosines from `lr` to 0, then 0 from `num_training_steps`.

    The cycles must have whole lengths: `num_training_steps - num_warmup_steps` a multiple of `num_cycles`.

    Example:
        >>> get_cosine_with_hard_restarts_schedule_with_warmup(1.0, 0, 4, num_cycles=2).values(range(6)).round(6).tolist()
        [1.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    func = "get_cosine_with_hard_restarts_schedule_with_warmup"
    w, total = _steps(func, num_warmup_steps, num_training_steps)
    n = validate.integer(func, "num_cycles", num_cycles, E)
    if (total - w) % n:
        validate.fail(func, "num_cycles", f"must divide num_training_steps - num_warmup_steps ({total - w})", num_cycles, E)
    restarts = cycles.SGDR(_lr(func, lr), (total - w) // n)
    return _warmed(combinators.Join((restarts, shapes.Constant(0.0)), (total - w,)), w)


def get_polynomial_decay_schedule_with_warmup(
    lr: float, num_warmup_steps: int, num_training_steps: int, lr_end: float = 1e-7, power: float = 1.0
) -> base.Schedule:
    """HF's get_polynomial_decay_schedule_with_warmup: warmup, then `(lr - lr_end) * (1 - p)**power + lr_end`.

    Example:
        >>> get_polynomial_decay_schedule_with_warmup(1.0, 0, 2, lr_end=0.0).values(range(4)).tolist()
        [1.0, 0.5, 0.0, 0.0]
    """
    func = "get_polynomial_decay_schedule_with_warmup"
    w, total = _steps(func, num_warmup_steps, num_training_steps)
    lr, end = _lr(func, lr), validate.non_negative(func, "lr_end", lr_end, E)
    if not lr > end:
        validate.fail(func, "lr_end", f"must be smaller than lr ({lr})", lr_end, E)
    return _warmed(shapes.Polynomial(lr, end, total - w, power=validate.positive(func, "power", power, E)), w)


def get_inverse_sqrt_schedule(lr: float, num_warmup_steps: int, timescale: int | None = None) -> base.Schedule:
    """HF's get_inverse_sqrt_schedule: warmup, then `lr / sqrt((t - w + timescale) / timescale)`.

    `timescale` defaults to `num_warmup_steps`, or 10000 without warmup (as HF's).

    Example:
        >>> get_inverse_sqrt_schedule(1.0, 4).values([0, 2, 4, 16]).tolist()
        [0.0, 0.5, 1.0, 0.5]
    """
    func = "get_inverse_sqrt_schedule"
    w = _steps(func, num_warmup_steps)[0]
    scale = (w or 10_000) if timescale is None else validate.integer(func, "timescale", timescale, E)
    return shapes.InverseSqrt(_lr(func, lr), w, timescale=scale)


def get_wsd_schedule(
    lr: float,
    num_warmup_steps: int,
    num_decay_steps: int,
    num_training_steps: int | None = None,
    num_stable_steps: int | None = None,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0.0,
    num_cycles: float = 0.5,
) -> base.Schedule:
    """HF's get_wsd_schedule: warmup from `min_lr_ratio * lr`, stable `lr`, decay to `min_lr_ratio * lr`, held.

    The stable phase lasts `num_stable_steps` when given (HF then ignores `num_training_steps`),
    else `num_training_steps - num_warmup_steps - num_decay_steps`.

    Example:
        >>> get_wsd_schedule(1.0, 2, 2, num_stable_steps=1, decay_type="linear").values(range(7)).tolist()
        [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    func = "get_wsd_schedule"
    w = _steps(func, num_warmup_steps)[0]
    d = validate.integer(func, "num_decay_steps", num_decay_steps, E, minimum=0)
    if num_stable_steps is not None:
        stable = validate.integer(func, "num_stable_steps", num_stable_steps, E, minimum=0)
    elif num_training_steps is not None:
        stable = validate.integer(func, "num_training_steps", num_training_steps, E, minimum=w + d) - w - d
    else:
        validate.fail(func, "num_training_steps", "must be given when num_stable_steps is not", num_training_steps, E)
    lr, ratio = _lr(func, lr), validate.in_range(func, "min_lr_ratio", min_lr_ratio, E, 0.0, 1.0)
    warm = validate.choice(func, "warmup_type", warmup_type, E, WARMUP_TYPES)
    decay = validate.choice(func, "decay_type", decay_type, E, WARMUP_TYPES)
    n = validate.positive(func, "num_cycles", num_cycles, E)
    if w + stable + d == 0:
        return shapes.Constant(lr * ratio)  # HF: every step is past the decay
    return cycles.WSD(lr, w + stable + d, w, d, decay=decay, end=lr * ratio, warmup=warm, start=lr * ratio, cycles=n)


def _min_lr_rate(func: str, lr: float, min_lr: float | None, min_lr_rate: float | None) -> float:
    """HF's floor as a ratio of lr: exactly one of `min_lr`, `min_lr_rate`."""
    if (min_lr is None) == (min_lr_rate is None):
        validate.fail(func, "min_lr", "must be given, or min_lr_rate, but not both", (min_lr, min_lr_rate), E)
    if min_lr is not None:
        return validate.non_negative(func, "min_lr", min_lr, E) / lr
    return validate.in_range(func, "min_lr_rate", min_lr_rate, E, 0.0, 1.0)


def get_cosine_with_min_lr_schedule_with_warmup(
    lr: float,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
) -> base.Schedule:
    """HF's cosine with a floor: warmup from 0, then cosine waves between `lr` and `min_lr` (rising past the end).

    Example:
        >>> s = get_cosine_with_min_lr_schedule_with_warmup(1.0, 0, 2, min_lr_rate=0.5)
        >>> s.values(range(5)).round(6).tolist()
        [1.0, 0.75, 0.5, 0.75, 1.0]
    """
    func = "get_cosine_with_min_lr_schedule_with_warmup"
    w, total = _steps(func, num_warmup_steps, num_training_steps)
    lr = _lr(func, lr)
    rate = _min_lr_rate(func, lr, min_lr, min_lr_rate)
    cosine = shapes.Cosine(lr, total - w, end=lr * rate, cycles=validate.positive(func, "num_cycles", num_cycles, E))
    return _warmed(cosine, w)


def get_cosine_with_min_lr_schedule_with_warmup_lr_rate(
    lr: float,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
    warmup_lr_rate: float | None = None,
) -> base.Schedule:
    """HF's `_lr_rate` variant: the warmup reaches `lr` one step early, from `warmup_lr_rate * lr` (default `lr / w`).

    Its cosine is counted from step `num_warmup_steps - 1`, so it needs `num_warmup_steps >= 1`
    (`>= 2` with `warmup_lr_rate`): HF's cosine would otherwise start before step 0.

    Example:
        >>> s = get_cosine_with_min_lr_schedule_with_warmup_lr_rate(1.0, 2, 4, min_lr_rate=0.0)
        >>> s.values(range(6)).round(6).tolist()
        [0.5, 1.0, 0.5, 0.0, 0.5, 1.0]
    """
    func = "get_cosine_with_min_lr_schedule_with_warmup_lr_rate"
    w = validate.integer(func, "num_warmup_steps", num_warmup_steps, E, minimum=1 if warmup_lr_rate is None else 2)
    total = validate.integer(func, "num_training_steps", num_training_steps, E, minimum=w + 1)
    lr = _lr(func, lr)
    rate = _min_lr_rate(func, lr, min_lr, min_lr_rate)
    cosine = shapes.Cosine(lr, total - w, end=lr * rate, cycles=validate.positive(func, "num_cycles", num_cycles, E))
    first = lr / w if warmup_lr_rate is None else lr * validate.in_range(func, "warmup_lr_rate", warmup_lr_rate, E, 0.0, 1.0)
    return _warmed(cosine, w - 1, start=first)


def get_reduce_on_plateau_schedule(**kwargs: Any) -> Plateau:
    """HF's get_reduce_on_plateau_schedule: torch's ReduceLROnPlateau arguments, as `lrkit.Plateau`.

    Example:
        >>> get_reduce_on_plateau_schedule(factor=0.5).factor
        0.5
    """
    return torch_presets.ReduceLROnPlateau(**kwargs)
