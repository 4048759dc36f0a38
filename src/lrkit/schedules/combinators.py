"""Combinators on absolute steps: warmup, join, clip and per-epoch holding.

(`0.1 * s` and `s1 * s2` live in `base`, beside the operators that build them.)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules.base import Schedule, Steps, register, schedule_field

Array = npt.NDArray[np.float64]


@register("warmup")
@dataclasses.dataclass(frozen=True, repr=False)
class Warmup(Schedule):
    """A linear ramp from `start` to the schedule's first value over `steps`; the schedule then sees `t - steps`.

    Example:
        >>> import lrkit
        >>> s = lrkit.warmup(lrkit.constant(1.0), steps=4)
        >>> s.values(range(6)).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    schedule: Schedule
    steps: int
    start: float = 0.0
    positional: ClassVar[int] = 1

    def _validate(self) -> None:
        schedule_field(self.name, "schedule", self.schedule)
        self._duration("steps")
        self._check("start", validate.non_negative)

    def _values(self, t: Steps) -> Array:
        target = self.schedule(0)
        ramp = self.start + (target - self.start) * t / self.steps
        return np.where(t < self.steps, ramp, self.schedule._at(np.maximum(t - self.steps, 0)))


@register("join")
@dataclasses.dataclass(frozen=True, repr=False)
class Join(Schedule):
    """Schedule `i` applies from `boundaries[i-1]` on and sees `t - boundaries[i-1]` (optax's join_schedules).

    Example:
        >>> import lrkit
        >>> s = lrkit.join([lrkit.constant(1.0), lrkit.linear(start=0.5, end=0.0, steps=2)], boundaries=[2])
        >>> s.values(range(5)).tolist()
        [1.0, 1.0, 0.5, 0.25, 0.0]
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]
    positional: ClassVar[int] = 1

    def _validate(self) -> None:
        items = validate.sequence(self.name, "schedules", self.schedules, ScheduleError)
        for s in items:
            schedule_field(self.name, "schedules", s)
        self._set("schedules", items)
        self._check("boundaries", validate.increasing_steps)
        self._steps_in_range("boundaries")
        validate.length(self.name, "schedules", items, ScheduleError, len(self.boundaries) + 1, "one more than boundaries")

    def _values(self, t: Steps) -> Array:
        starts = (0, *self.boundaries)
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.int64), t, side="right")
        out = np.zeros(t.shape)
        for i, (s, b) in enumerate(zip(self.schedules, starts)):
            mine = index == i
            if np.any(mine):
                out[mine] = s._at(t[mine] - b)
        return out


@register("clip")
@dataclasses.dataclass(frozen=True, repr=False)
class Clip(Schedule):
    """The schedule, kept within `[low, high]` (`high=None`: no upper bound).

    Example:
        >>> import lrkit
        >>> lrkit.clip(lrkit.linear(start=1.0, end=0.0, steps=4), low=0.3, high=0.6).values(range(5)).tolist()
        [0.6, 0.6, 0.5, 0.3, 0.3]
    """

    schedule: Schedule
    low: float = 0.0
    high: float | None = None
    positional: ClassVar[int] = 1

    def _validate(self) -> None:
        schedule_field(self.name, "schedule", self.schedule)
        self._check("low", validate.non_negative)
        if self.high is not None:
            self._check("high", validate.non_negative)
            if self.low > self.high:
                validate.fail(self.name, "low", f"must be <= high ({self.high})", self.low, ScheduleError)

    def _values(self, t: Steps) -> Array:
        return np.clip(self.schedule._at(t), self.low, self.high)


@register("per_epoch")
@dataclasses.dataclass(frozen=True, repr=False)
class PerEpoch(Schedule):
    """A schedule counted in epochs, held for all `steps_per_epoch` steps of each epoch.

    Example:
        >>> import lrkit
        >>> s = lrkit.per_epoch(lrkit.step_decay(start=1.0, factor=0.5, every=1), steps_per_epoch=2)
        >>> s.values(range(5)).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    schedule: Schedule
    steps_per_epoch: int
    positional: ClassVar[int] = 1

    def _validate(self) -> None:
        schedule_field(self.name, "schedule", self.schedule)
        self._duration("steps_per_epoch")

    def _values(self, t: Steps) -> Array:
        return self.schedule._at(t // self.steps_per_epoch)  # whole epochs, exact at any step
