"""lrkit in optax / JAX: schedules as jit- and vmap-safe `count -> value`, and reduce-on-plateau on top of any schedule.

The maths stays in lrkit's core (DESIGN.md): `schedule(s)` computes the table
`s.values(0..n)` once with numpy and only *indexes* it under `jit`, so the values
are lrkit's own, rounded once to the table's dtype (float32, or float64 with
`jax_enable_x64`). Past the table the last value holds, lrkit's convention: a
finite schedule needs no `horizon` (its table ends where its last value starts
holding); one that never ends (exponential, cyclic, sgdr, ...) needs `horizon=`,
the number of steps you will train, and refuses to guess.

`plateau(s, ...)` is `optax.contrib.reduce_on_plateau` (its argument names and
rule) fused with the learning rate `s`: the updates are multiplied by
`-s(step) * scale`, and the state records the lr it applied, for logging.

Example:
    >>> import jax, jax.numpy as jnp, lrkit, lrkit.optax
    >>> f = lrkit.optax.schedule(lrkit.warmup(lrkit.cosine(start=0.1, steps=90), steps=10))
    >>> round(float(jax.jit(f)(10)), 6), jax.vmap(f)(jnp.arange(3)).tolist()
    (0.1, [0.0, 0.009999999776482582, 0.019999999552965164])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax

from lrkit import validate
from lrkit.errors import ControlError, ScheduleError
from lrkit.schedules.base import Schedule, settles

MAX_TABLE = 2**27  # values in one table (1 GiB of float64): beyond it, bound the run with horizon=
MAX_COUNT = 2**31 - 1  # optax counts steps in int32


class OptaxSchedule:
    """An lrkit schedule as an optax schedule: `count -> value` in `jnp`, by indexing a table of `s.values`.

    Pickles as its lrkit schedule and horizon (the table is rebuilt); equal when both are equal.

    Example:
        >>> import lrkit
        >>> f = OptaxSchedule(lrkit.linear(start=1.0, end=0.0, steps=4))
        >>> len(f.table), float(f(2)), float(f(1000))
        (5, 0.5, 0.0)
    """

    def __init__(self, schedule: Schedule, horizon: int | None = None) -> None:
        self.schedule = validate.instance("lrkit.optax.schedule", "s", schedule, ScheduleError, Schedule, "an lrkit schedule")
        if horizon is not None:
            horizon = validate.integer("lrkit.optax.schedule", "horizon", horizon, ScheduleError, minimum=0, maximum=MAX_COUNT)
        self.horizon = horizon
        self.table: npt.NDArray[np.float64] = self.schedule.values(np.arange(_table_end(self.schedule, horizon) + 1))
        self._device: dict[Any, jax.Array] = {}  # the table on the device, per dtype (x64 may be switched on later)

    def __call__(self, count: Any) -> jax.Array:
        """The value at `count` (an integer, or an integer array under `vmap`); past the table, the last value.

        Example:
            >>> import lrkit
            >>> OptaxSchedule(lrkit.constant(0.5))(7).dtype
            dtype('float32')
        """
        table = self._on_device()
        return table[jnp.clip(jnp.asarray(count), 0, table.shape[0] - 1)]

    def _on_device(self) -> jax.Array:
        dtype = jnp.asarray(0.0).dtype  # float32, or float64 under jax_enable_x64
        if dtype not in self._device:
            with jax.ensure_compile_time_eval():  # a concrete array even when first called under jit (no leaked tracer)
                self._device[dtype] = jnp.asarray(self.table, dtype=dtype)
        return self._device[dtype]

    def __reduce__(self) -> tuple[Any, ...]:
        return (OptaxSchedule, (self.schedule, self.horizon))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptaxSchedule) and (self.schedule, self.horizon) == (other.schedule, other.horizon)

    def __hash__(self) -> int:
        return hash((self.schedule, self.horizon))

    def __repr__(self) -> str:
        return f"lrkit.optax.schedule({self.schedule!r}, horizon={self.horizon!r})"


def schedule(s: Schedule, horizon: int | None = None) -> OptaxSchedule:
    """An lrkit schedule as a jit- and vmap-safe optax schedule (`count -> value`), equal to `s.values` at every step.

    Args:
        s: any lrkit schedule.
        horizon: the last step tabulated (the steps you will train); after it the value
            at `horizon` holds. Needed for a schedule that never ends; for a finite one,
            the table ends where its last value starts holding (or at `horizon`, if sooner).

    Example:
        >>> import lrkit
        >>> f = schedule(lrkit.exponential(start=1.0, rate=0.5), horizon=3)
        >>> [float(f(t)) for t in range(5)]
        [1.0, 0.5, 0.25, 0.125, 0.125]
    """
    return OptaxSchedule(s, horizon)


def _table_end(s: Schedule, horizon: int | None) -> int:
    """The last step of the table: where `s` settles, or `horizon` if sooner; a clear error when neither bounds it."""
    settled = settles(s)
    end = settled if horizon is None else horizon if settled is None else min(horizon, settled)
    if end is None:
        requirement = "must be given for a schedule that never ends (the steps you will train; the last value holds after it)"
        validate.fail("lrkit.optax.schedule", "horizon", requirement, None, ScheduleError)
    if end >= MAX_TABLE:
        requirement = f"must bound the table to < 2**27 steps ({s!r} settles only at step {end})"
        validate.fail("lrkit.optax.schedule", "horizon", requirement, horizon, ScheduleError)
    return end


# -- reduce on plateau -----------------------------------------------------------------------------------------------
class PlateauState(NamedTuple):
    """The state of `plateau`: optax's `ReduceLROnPlateauState` fields, plus the step and the lr last applied.

    Attributes:
        step: updates applied so far (the schedule's step).
        lr: the lr of the last update, `s(step - 1) * scale` (0 before the first).
        scale, best_value, plateau_count, cooldown_count, count, avg_value: as in
            `optax.contrib.reduce_on_plateau` (`count` and `avg_value` accumulate
            `accumulation_size` values before the rule is applied).

    Example:
        >>> import jax.numpy as jnp
        >>> PlateauState(*[jnp.asarray(0)] * 8)._fields[:3]
        ('step', 'lr', 'scale')
    """

    step: jax.Array
    lr: jax.Array
    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array  # type: ignore[assignment]  # optax's name, though it hides tuple.count
    avg_value: jax.Array


def plateau(
    s: Schedule | Callable[[Any], Any],
    *,
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
    horizon: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The lr `s` with reduce-on-plateau on top, as one optax transformation (`update(..., value=loss)`).

    The rule and arguments are `optax.contrib.reduce_on_plateau`'s: the mean of every
    `accumulation_size` values improves when `mean < (1 - rtol) * best - atol`; after
    `patience` means without improvement the scale becomes `max(scale * factor,
    min_scale)`, then `cooldown` means are ignored. So `chain(scale_by_adam(), plateau(s,
    ...))` gives the updates, and the scale sequence, of `chain(adam(schedule(s)),
    reduce_on_plateau(...))`, with the lr applied kept in the state (`state.lr`).

    Args:
        s: an lrkit schedule (tabulated by `schedule(s, horizon)`) or any optax schedule.
        factor: multiplier of the scale on a plateau, in (0, 1).
        patience: means without improvement before a cut (>= 1: optax's 0 would cut on improvements).
        rtol, atol: relative (in [0, 1]) and absolute (>= 0) improvement needed; not both 0.
        cooldown: means ignored after a cut (>= 0).
        accumulation_size: values averaged into one mean (>= 1; 1 for a validation loss).
        min_scale: the lowest scale (>= 0).
        horizon: passed to `schedule` for an lrkit schedule that never ends.

    Example:
        >>> import jax, jax.numpy as jnp, lrkit, optax
        >>> tx = plateau(lrkit.constant(0.1), patience=1)
        >>> params = jnp.zeros(2); state = tx.init(params)
        >>> for loss in [1.0, 1.0]:  # the second brings no improvement: one cut (optax's patience counts to 1)
        ...     updates, state = tx.update(jnp.ones(2), state, params, value=loss)
        >>> round(float(state.lr), 6), round(float(updates[0]), 6)
        (0.01, -0.01)
    """
    lr = _as_schedule(s, horizon)
    rule = _Rule(*_checked_rule(factor, patience, rtol, atol, cooldown, accumulation_size, min_scale))

    def init(params: Any) -> PlateauState:
        low, high = optax.tree.dtype(params, "lowest"), optax.tree.dtype(params, "highest")  # optax's own dtypes
        zero = jnp.asarray(0, jnp.int32)
        inf, one = jnp.asarray(math.inf, high), jnp.asarray(1.0, low)
        return PlateauState(zero, jnp.asarray(0.0, low), one, inf, zero, zero, zero, jnp.asarray(0.0, high))

    def update(updates: Any, state: PlateauState, params: Any = None, *, value: Any, **extra: Any) -> tuple[Any, PlateauState]:
        del params, extra
        state = rule.accumulate(state, value)
        lr_now = (lr(state.step) * state.scale).astype(state.scale.dtype)
        new = state._replace(step=optax.safe_increment(state.step), lr=lr_now)
        return jax.tree.map(lambda g: -lr_now * g, updates), new

    return optax.GradientTransformationExtraArgs(init, update)  # type: ignore[arg-type]


def _as_schedule(s: Any, horizon: int | None) -> Callable[[Any], Any]:
    if isinstance(s, Schedule):
        return schedule(s, horizon)
    if not callable(s):
        validate.wrong_type("lrkit.optax.plateau", "s", "must be an lrkit schedule or an optax schedule (count -> lr)", s, ScheduleError)
    return s  # type: ignore[no-any-return]


def _checked_rule(*values: Any) -> tuple[float, int, float, float, int, int, float]:
    """optax's arguments, checked (ControlError names the one that is wrong)."""
    factor, patience, rtol, atol, cooldown, accumulation_size, min_scale = values
    func = "lrkit.optax.plateau"
    factor = validate.in_range(func, "factor", factor, ControlError, 0.0, 1.0, open_low=True, open_high=True)
    patience = validate.integer(func, "patience", patience, ControlError, minimum=1)
    rtol = validate.in_range(func, "rtol", rtol, ControlError, 0.0, 1.0)
    atol = validate.non_negative(func, "atol", atol, ControlError)
    if rtol == 0 and atol == 0:
        validate.fail(func, "atol", "must be > 0 when rtol is 0 (else no improvement could ever count)", atol, ControlError)
    cooldown = validate.integer(func, "cooldown", cooldown, ControlError, minimum=0)
    accumulation_size = validate.integer(func, "accumulation_size", accumulation_size, ControlError)
    min_scale = validate.non_negative(func, "min_scale", min_scale, ControlError)
    return factor, patience, rtol, atol, cooldown, accumulation_size, min_scale


class _Rule(NamedTuple):
    """optax's reduce-on-plateau rule on `PlateauState`, in `jnp.where`s (traceable: no Python branch on values)."""

    factor: float
    patience: int
    rtol: float
    atol: float
    cooldown: int
    accumulation_size: int
    min_scale: float

    def accumulate(self, state: PlateauState, value: Any) -> PlateauState:
        count = optax.safe_increment(state.count)
        avg = ((state.count * state.avg_value + jnp.asarray(value).astype(state.avg_value.dtype)) / count).astype(state.avg_value.dtype)
        state = state._replace(count=count, avg_value=avg)
        judged = self.judge(state)
        due = count == self.accumulation_size
        return PlateauState(*(jnp.where(due, new, old) for new, old in zip(judged, state)))

    def judge(self, state: PlateauState) -> PlateauState:
        improved = state.avg_value < (1 - self.rtol) * state.best_value - self.atol
        best = jnp.where(improved, state.avg_value.astype(state.best_value.dtype), state.best_value)
        bad = jnp.where(improved, 0, optax.safe_increment(state.plateau_count))
        cooling = state.cooldown_count > 0
        cut = ~cooling & (bad == self.patience)
        kept = jnp.maximum(jnp.where(cut, state.scale * self.factor, state.scale), self.min_scale)  # optax floors at every mean
        scale = jnp.where(cooling, state.scale, kept).astype(state.scale.dtype)
        plateau_count = jnp.where(cooling | cut, 0, bad).astype(jnp.int32)
        cooldown_count = jnp.where(cooling, state.cooldown_count - 1, jnp.where(cut, self.cooldown, 0)).astype(jnp.int32)
        zero, avg = jnp.asarray(0, jnp.int32), jnp.zeros_like(state.avg_value)
        counts = {"plateau_count": plateau_count, "cooldown_count": cooldown_count, "count": zero}
        return state._replace(scale=scale, best_value=best, avg_value=avg, **counts)
