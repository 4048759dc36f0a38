"""torch.optim.lr_scheduler's schedulers by their own names and arguments, as pure lrkit schedules.

Each function takes the base lr where torch takes the optimizer (`StepLR(lr, step_size,
gamma=0.1)`) and returns the schedule torch's scheduler writes into `group["lr"]`, stepped
once per optimizer step from step 0. `CosineAnnealingLR` keeps torch's convention past
`T_max`: the cosine rises again. `OneCycleLR` and `CyclicLR` also cycle momentum in torch;
`OneCycleLR_momentum` / `CyclicLR_momentum` take the same arguments and return that
momentum schedule, for `lrkit.Scheduler(opt, lr=..., momentum=...)`. `ReduceLROnPlateau`
is `lrkit.Plateau` with the same arguments.

Example:
    >>> from lrkit.presets import torch as presets
    >>> kw = dict(max_lr=0.1, total_steps=1000)
    >>> lr, momentum = presets.OneCycleLR(**kw), presets.OneCycleLR_momentum(**kw)
    >>> round(lr(0), 6), round(momentum(0), 6), round(momentum(299), 6)
    (0.004, 0.95, 0.85)
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrkit import validate
from lrkit.control.plateau import Plateau
from lrkit.errors import ScheduleError
from lrkit.schedules import base, combinators, cycles, shapes

E = ScheduleError


def StepLR(lr: float, step_size: int, gamma: float = 0.1) -> base.Schedule:
    """torch's StepLR: `lr * gamma**(t // step_size)`.

    Example:
        >>> StepLR(0.1, step_size=2, gamma=0.5).values(range(5)).tolist()
        [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    gamma = validate.positive("StepLR", "gamma", gamma, E)
    return shapes.StepDecay(_lr("StepLR", lr), gamma, validate.integer("StepLR", "step_size", step_size, E))


def MultiStepLR(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> base.Schedule:
    """torch's MultiStepLR: times `gamma` at each milestone (a repeated milestone counts each time, as in torch).

    Example:
        >>> MultiStepLR(1.0, milestones=[2, 4], gamma=0.5).values(range(6)).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    lr, gamma = _lr("MultiStepLR", lr), validate.positive("MultiStepLR", "gamma", gamma, E)
    items = validate.sequence("MultiStepLR", "milestones", milestones, E)
    counts = collections.Counter(validate.integer("MultiStepLR", "milestones", m, E, minimum=0) for m in items)
    at_zero = counts.pop(0, 0)  # a milestone 0 applies from the first step on
    start = lr * gamma**at_zero
    steps = sorted(counts)
    if all(counts[m] == 1 for m in steps):
        return shapes.MultiStep(start, tuple(steps), gamma) if steps else shapes.Constant(start)
    drops = list(itertools.accumulate(counts[m] for m in steps))
    return shapes.Piecewise(tuple(steps), (start, *(start * gamma**k for k in drops)))


def ExponentialLR(lr: float, gamma: float) -> base.Schedule:
    """torch's ExponentialLR: `lr * gamma**t`.

    Example:
        >>> ExponentialLR(1.0, gamma=0.5)(3)
        0.125
    """
    return shapes.Exponential(_lr("ExponentialLR", lr), validate.positive("ExponentialLR", "gamma", gamma, E))


def CosineAnnealingLR(lr: float, T_max: int, eta_min: float = 0.0) -> base.Schedule:
    """torch's CosineAnnealingLR, also past `T_max`, where torch's cosine rises back to `lr` by `2 * T_max`.

    Example:
        >>> CosineAnnealingLR(1.0, T_max=2).values(range(5)).round(6).tolist()
        [1.0, 0.5, 0.0, 0.5, 1.0]
    """
    t_max = validate.integer("CosineAnnealingLR", "T_max", T_max, E)
    eta_min = validate.non_negative("CosineAnnealingLR", "eta_min", eta_min, E)
    return shapes.Cosine(_lr("CosineAnnealingLR", lr), t_max, end=eta_min, cycles=0.5)


def CosineAnnealingWarmRestarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> base.Schedule:
    """torch's CosineAnnealingWarmRestarts: cycles of `T_0 * T_mult**i` steps from `lr` down to `eta_min`.

    Example:
        >>> CosineAnnealingWarmRestarts(1.0, T_0=2).values(range(5)).round(6).tolist()
        [1.0, 0.5, 1.0, 0.5, 1.0]
    """
    func = "CosineAnnealingWarmRestarts"
    t_0, t_mult = validate.integer(func, "T_0", T_0, E), validate.integer(func, "T_mult", T_mult, E)
    return cycles.SGDR(_lr(func, lr), t_0, cycle_mult=t_mult, end=validate.non_negative(func, "eta_min", eta_min, E))


def PolynomialLR(lr: float, total_iters: int = 5, power: float = 1.0) -> base.Schedule:
    """torch's PolynomialLR: `lr * (1 - t/total_iters)**power`, then 0.

    Example:
        >>> PolynomialLR(1.0, total_iters=4).values(range(6)).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    iters = validate.integer("PolynomialLR", "total_iters", total_iters, E)
    return shapes.Polynomial(_lr("PolynomialLR", lr), 0.0, iters, power=validate.positive("PolynomialLR", "power", power, E))


def LinearLR(lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5) -> base.Schedule:
    """torch's LinearLR: from `lr * start_factor` to `lr * end_factor` over `total_iters` steps.

    Example:
        >>> LinearLR(1.0, start_factor=0.5, total_iters=2).values(range(4)).tolist()
        [0.5, 0.75, 1.0, 1.0]
    """
    lr = _lr("LinearLR", lr)
    start = validate.in_range("LinearLR", "start_factor", start_factor, E, 0.0, 1.0, open_low=True)
    end = validate.in_range("LinearLR", "end_factor", end_factor, E, 0.0, 1.0)
    return shapes.Linear(lr * start, lr * end, validate.integer("LinearLR", "total_iters", total_iters, E))


def ConstantLR(lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> base.Schedule:
    """torch's ConstantLR: `lr * factor` for `total_iters` steps, then `lr`.

    Example:
        >>> ConstantLR(1.0, factor=0.5, total_iters=2).values(range(4)).tolist()
        [0.5, 0.5, 1.0, 1.0]
    """
    lr, factor = _lr("ConstantLR", lr), validate.in_range("ConstantLR", "factor", factor, E, 0.0, 1.0)
    return shapes.Piecewise((validate.integer("ConstantLR", "total_iters", total_iters, E),), (lr * factor, lr))


def SequentialLR(schedulers: Sequence[base.Schedule], milestones: Sequence[int]) -> base.Schedule:
    """torch's SequentialLR: scheduler `i` from `milestones[i-1]` on, counting from 0 there (lrkit's join).

    Example:
        >>> s = SequentialLR([ConstantLR(1.0, factor=0.5, total_iters=9), ExponentialLR(1.0, 0.5)], milestones=[2])
        >>> s.values(range(5)).tolist()
        [0.5, 0.5, 1.0, 0.5, 0.25]
    """
    return combinators.Join(tuple(schedulers), tuple(milestones))  # type: ignore[arg-type]


def ChainedScheduler(schedulers: Sequence[base.Schedule], lr: float) -> base.Schedule:
    """torch's ChainedScheduler over one optimizer of base lr `lr`: the product of the schedulers' factors.

    torch multiplies the lr by each scheduler's step factor in turn, so chaining the chainable
    schedulers (StepLR, MultiStepLR, ExponentialLR, LinearLR, ConstantLR, PolynomialLR,
    CosineAnnealingLR with eta_min=0 up to T_max: past it torch adds a step instead of
    multiplying) gives `lr * prod(s(t) / lr)`; each preset must be built with the same `lr`.

    Example:
        >>> s = ChainedScheduler([ConstantLR(1.0, factor=0.5, total_iters=2), ExponentialLR(1.0, 0.5)], lr=1.0)
        >>> s.values(range(4)).tolist()
        [0.5, 0.25, 0.25, 0.125]
    """
    items = validate.sequence("ChainedScheduler", "schedulers", schedulers, E)
    if not items:
        validate.fail("ChainedScheduler", "schedulers", "must hold at least one schedule", schedulers, E)
    for s in items:
        base.schedule_field("ChainedScheduler", "schedulers", s)
    lr = validate.positive("ChainedScheduler", "lr", lr, E)
    chained: base.Schedule = items[0]
    for s in items[1:]:
        chained = chained * s
    return chained if len(items) == 1 else (1.0 / lr) ** (len(items) - 1) * chained


CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def CyclicLR(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: None = None,
    scale_mode: str = "cycle",
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> base.Schedule:
    """torch's CyclicLR: the lr rises from `base_lr` to `max_lr` over `step_size_up` steps, falls over `step_size_down`.

    A custom `scale_fn` (a callable) is not a pure, serializable schedule: it is refused;
    `mode` picks torch's three built-in ones. The momentum arguments are those of
    `CyclicLR_momentum`, accepted here so one set of arguments builds both.

    Example:
        >>> CyclicLR(0.1, 0.5, step_size_up=2).values(range(5)).round(6).tolist()
        [0.1, 0.3, 0.5, 0.3, 0.1]
    """
    up, down, mode = _cyclic_args(step_size_up, step_size_down, mode, scale_fn, scale_mode)
    lo, hi = _lr("CyclicLR", base_lr, "base_lr"), validate.non_negative("CyclicLR", "max_lr", max_lr, E)
    return cycles.Cyclic(lo, hi, up, mode=mode, gamma=gamma, half_cycle_down=down if down != up else None)


def CyclicLR_momentum(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: None = None,
    scale_mode: str = "cycle",
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> base.Schedule:
    """The momentum torch's CyclicLR cycles (same arguments): from `max_momentum` down to `base_momentum` and back.

    Refused when `cycle_momentum` is False: torch then leaves momentum alone.

    Example:
        >>> CyclicLR_momentum(0.1, 0.5, step_size_up=2).values(range(5)).round(6).tolist()
        [0.9, 0.85, 0.8, 0.85, 0.9]
    """
    if validate.flag("CyclicLR_momentum", "cycle_momentum", cycle_momentum, E) is False:
        validate.fail("CyclicLR_momentum", "cycle_momentum", "must be True (torch cycles no momentum otherwise)", cycle_momentum, E)
    up, down, mode = _cyclic_args(step_size_up, step_size_down, mode, scale_fn, scale_mode)
    lo = validate.non_negative("CyclicLR_momentum", "base_momentum", base_momentum, E)
    hi = validate.non_negative("CyclicLR_momentum", "max_momentum", max_momentum, E)
    return cycles.Cyclic(lo, hi, up, mode=mode, gamma=gamma, half_cycle_down=down if down != up else None, inverted=True)


def _cyclic_args(up: int, down: int | None, mode: str, scale_fn: Any, scale_mode: str) -> tuple[int, int, str]:
    """CyclicLR's step sizes and mode, checked; scale_mode must be the one torch's `mode` implies."""
    if scale_fn is not None:
        validate.fail("CyclicLR", "scale_fn", "must be None (a callable is not a pure, serializable schedule; use mode)", scale_fn, E)
    mode = validate.choice("CyclicLR", "mode", mode, E, CYCLIC_MODES)
    implied = "iterations" if mode == "exp_range" else "cycle"
    if scale_mode != "cycle" and scale_mode != implied:  # torch ignores scale_mode without scale_fn
        validate.fail("CyclicLR", "scale_mode", "must be 'cycle' or 'iterations'", scale_mode, E)
    up = validate.integer("CyclicLR", "step_size_up", up, E)
    return up, up if down is None else validate.integer("CyclicLR", "step_size_down", down, E), mode


def OneCycleLR(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> base.Schedule:
    """torch's OneCycleLR (`total_steps`, or `epochs * steps_per_epoch`); past `total_steps` the last value holds.

    torch raises for a step past `total_steps`; lrkit holds the last value there. The momentum
    arguments are those of `OneCycleLR_momentum`.

    Example:
        >>> s = OneCycleLR(1.0, total_steps=100)
        >>> round(s(0), 6), round(s(29), 6)
        (0.04, 1.0)
    """
    total = _one_cycle_steps(total_steps, epochs, steps_per_epoch)
    anneal = validate.choice("OneCycleLR", "anneal_strategy", anneal_strategy, E, ("cos", "linear"))
    return cycles.OneCycle(_lr("OneCycleLR", max_lr, "max_lr"), total, pct_start, div_factor, final_div_factor, anneal, three_phase)


def OneCycleLR_momentum(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> base.Schedule:
    """The momentum torch's OneCycleLR cycles (same arguments): `max_momentum` down to `base_momentum` and back.

    It is a 1cycle with the momenta in the lr's places: it starts at `peak / div_factor`
    with `peak = base_momentum` and `div_factor = base_momentum / max_momentum`, and ends
    where it started (`final_div_factor = 1`). Refused when `cycle_momentum` is False.

    Example:
        >>> m = OneCycleLR_momentum(1.0, total_steps=100)
        >>> round(m(0), 6), round(m(29), 6), round(m(99), 6)
        (0.95, 0.85, 0.95)
    """
    if validate.flag("OneCycleLR_momentum", "cycle_momentum", cycle_momentum, E) is False:
        validate.fail("OneCycleLR_momentum", "cycle_momentum", "must be True (torch cycles no momentum otherwise)", cycle_momentum, E)
    total = _one_cycle_steps(total_steps, epochs, steps_per_epoch)
    anneal = validate.choice("OneCycleLR", "anneal_strategy", anneal_strategy, E, ("cos", "linear"))
    low = validate.positive("OneCycleLR_momentum", "base_momentum", base_momentum, E)
    high = validate.positive("OneCycleLR_momentum", "max_momentum", max_momentum, E)
    return cycles.OneCycle(low, total, pct_start, low / high, 1.0, anneal, three_phase)


def _one_cycle_steps(total_steps: int | None, epochs: int | None, steps_per_epoch: int | None) -> int:
    """OneCycleLR's length: `total_steps`, else `epochs * steps_per_epoch` (as torch reads them)."""
    if total_steps is not None:
        return validate.integer("OneCycleLR", "total_steps", total_steps, E, minimum=2)
    if epochs is None or steps_per_epoch is None:
        validate.fail("OneCycleLR", "total_steps", "must be given, or epochs and steps_per_epoch", total_steps, E)
    return validate.integer("OneCycleLR", "epochs", epochs, E) * validate.integer("OneCycleLR", "steps_per_epoch", steps_per_epoch, E)


def ReduceLROnPlateau(
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
    eps: float = 1e-8,
) -> Plateau:
    """torch's ReduceLROnPlateau as `lrkit.Plateau` (the same rule and arguments; one `min_lr` for all groups).

    Example:
        >>> ReduceLROnPlateau(patience=2).patience
        2
    """
    if isinstance(min_lr, (list, tuple, np.ndarray)):
        validate.fail("ReduceLROnPlateau", "min_lr", "must be one number (lrkit scales all groups alike)", min_lr, E)
    return Plateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps=eps)


def _lr(func: str, value: Any, param: str = "lr") -> float:
    """The base lr the preset takes in place of torch's optimizer."""
    checked: float = validate.non_negative(func, param, value, E)
    return checked
