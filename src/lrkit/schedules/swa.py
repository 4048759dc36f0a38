"""Stochastic weight averaging, the pure parts: the SWA lr schedule and the plan of which steps enter the average.

`swa_schedule` is torch's `SWALR` taking over from a main schedule, as one pure schedule;
`Averaging` says when (and how: a running mean or an EMA) the weights are averaged. The
torch helper (`lrkit.torch.swa`) and the lab's population (`lrkit.lab.averaging`) both read it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules.base import MAX_STEP, Schedule, Steps, as_steps, register, schedule_field
from lrkit.schedules.shapes import anneal_cos, anneal_poly

Array = npt.NDArray[np.float64]
ANNEALS = ("cos", "linear")
KINDS = ("swa", "ema")


@register("swa_schedule")
@dataclasses.dataclass(frozen=True, repr=False)
class SWASchedule(Schedule):
    """`schedule` until `swa_start`, then an anneal from `schedule(swa_start)` to `swa_lr` over `anneal_steps`.

    For `t >= swa_start` the value is `swa_lr * a + schedule(swa_start) * (1 - a)` with
    `a = anneal(min(1, (t - swa_start) / anneal_steps))`, where the cos anneal is `(1 - cos(pi x)) / 2`
    and the linear one is `x` (`anneal_steps=0`: `swa_lr` from `swa_start` on). This is the lr of
    torch's `SWALR(optimizer, swa_lr, anneal_epochs=anneal_steps, anneal_strategy=anneal)` built at
    `swa_start` (when it takes over from the main scheduler) and stepped once per optimizer step.

    Example:
        >>> import lrkit
        >>> s = lrkit.schedules.swa_schedule(lrkit.constant(0.1), swa_start=2, swa_lr=0.02, anneal_steps=2, anneal="linear")
        >>> [round(v, 6) for v in s.values(range(6)).tolist()]
        [0.1, 0.1, 0.1, 0.06, 0.02, 0.02]
    """

    schedule: Schedule
    swa_start: int
    swa_lr: float
    anneal_steps: int
    anneal: str = "cos"
    positional: ClassVar[int] = 1

    def _validate(self) -> None:
        schedule_field(self.name, "schedule", self.schedule)
        self._duration("swa_start", minimum=0)
        self._check("swa_lr", validate.non_negative)
        self._duration("anneal_steps", minimum=0)
        self._check("anneal", validate.choice, ANNEALS)

    def _values(self, t: Steps) -> Array:
        before = t < self.swa_start
        out = np.empty(t.shape)
        out[before] = self.schedule._at(t[before])
        after = t[~before] - self.swa_start
        # anneal_steps = 0 is SWALR's jump to swa_lr at once: progress 1 from swa_start on
        progress = after / self.anneal_steps if self.anneal_steps else np.ones(after.shape)
        base = self.schedule(self.swa_start)
        out[~before] = anneal_cos(base, self.swa_lr, progress) if self.anneal == "cos" else anneal_poly(base, self.swa_lr, progress)
        return out


@dataclasses.dataclass(frozen=True)
class Averaging:
    """Which optimizer steps' weights enter an average, and how: SWA's running mean or an EMA.

    The weights after optimizer step `t` (counted from 0) enter when `t >= start` and
    `(t - start) % every == 0`. The first entry copies the weights (as `AveragedModel` does);
    later ones move the average by `1 / (n + 1)` (kind "swa", n entries so far) or by
    `1 - decay` (kind "ema", torch's `get_ema_multi_avg_fn(decay)`).

    Args:
        kind: "swa" (an equal-weight running mean) or "ema" (an exponential moving average).
        start: the first step whose weights enter.
        every: steps between entries (SWA's classic: once per epoch, at the lowest lr of a cycle).
        decay: the EMA's decay per entry, in [0, 1] (used by kind "ema" only).

    Example:
        >>> plan = Averaging(start=3, every=2)
        >>> plan.due(np.arange(8)).tolist()
        [False, False, False, True, False, True, False, True]
    """

    kind: str = "swa"
    start: int = 0
    every: int = 1
    decay: float = 0.999

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", validate.choice("Averaging", "kind", self.kind, ScheduleError, KINDS))
        object.__setattr__(self, "start", validate.integer("Averaging", "start", self.start, ScheduleError, minimum=0, maximum=MAX_STEP))
        object.__setattr__(self, "every", validate.integer("Averaging", "every", self.every, ScheduleError, maximum=MAX_STEP))
        object.__setattr__(self, "decay", validate.in_range("Averaging", "decay", self.decay, ScheduleError, 0.0, 1.0))

    def due(self, steps: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether the weights after each of `steps` enter the average.

        Example:
            >>> Averaging(kind="ema", decay=0.9).due([0, 1]).tolist()
            [True, True]
        """
        t = as_steps(steps, "Averaging.due")
        return np.asarray((t >= self.start) & ((t - self.start) % self.every == 0))

    def weights(self, entries: npt.ArrayLike) -> Array:
        """How far entry number `n` (from 0) moves the average towards the weights: 1 for the first, then 1/(n+1) or 1 - decay.

        Example:
            >>> Averaging().weights([0, 1, 3]).tolist(), Averaging(kind="ema", decay=0.75).weights([0, 1]).tolist()
            ([1.0, 0.5, 0.25], [1.0, 0.25])
        """
        n = np.asarray(entries, dtype=np.float64)
        return entry_weights(n, np.full(n.shape, self.kind == "ema"), np.full(n.shape, self.decay))


def entry_weights(entries: Array, ema: npt.NDArray[np.bool_], decay: Array) -> Array:
    """`Averaging.weights` for many averages at once (one plan per element): the lerp weight of each one's next entry.

    Example:
        >>> entry_weights(np.array([0.0, 1.0, 1.0]), np.array([False, False, True]), np.array([0.9, 0.9, 0.9])).round(6).tolist()
        [1.0, 0.5, 0.1]
    """
    later = np.where(ema, 1.0 - decay, 1.0 / (entries + 1.0))
    return np.where(entries == 0, 1.0, later)
