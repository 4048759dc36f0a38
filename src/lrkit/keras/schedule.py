"""`lrkit.keras.LearningRateSchedule`: any lrkit schedule as a real Keras `LearningRateSchedule`.

The maths stays in lrkit's core: the wrapper indexes a table of `schedule.values(...)`
(times the scale, rounded once to Keras' float type, in which Keras' own schedules compute), so the lr at every
step is the lrkit value. The table covers the steps up to a fixed `horizon`, or up to where the schedule
settles (`lrkit.schedules.base.settles`), whichever comes first; past its end the last value holds
(lrkit's convention for a finished schedule) and the step is never read on the host. Only for a
schedule that never ends and no `horizon` does the table grow on demand, from the step read on
the host (exact forever). A scale variable multiplies the value: `lrkit.keras.Plateau`
and `lrkit.keras.Guard` set it, so a plateau or a guard's cut sits on top of the schedule.
`get_config` writes the schedule as its lrkit spec, so `model.save` / `keras.models.load_model`
bring it back (registered as "lrkit>LearningRateSchedule").

Example:
    >>> import lrkit
    >>> from lrkit.keras import LearningRateSchedule
    >>> lr = LearningRateSchedule(lrkit.warmup(lrkit.cosine(start=0.1, steps=90), steps=10))
    >>> round(float(lr(10)), 6), lr.get_config()["schedule"]
    (0.1, 'warmup(cosine(start=0.1, steps=90), steps=10)')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrkit import validate
from lrkit.errors import ControlError, ScheduleError
from lrkit.keras._backend import load
from lrkit.schedules import Schedule, parse
from lrkit.schedules.base import settles

keras = load()
ops = keras.ops

CHUNK = 4096  # steps the growing table starts with; it doubles when a step reaches its end
MAX_HORIZON = 100_000_000  # a table of this many float32 values takes 400 MB


@keras.saving.register_keras_serializable(package="lrkit", name="LearningRateSchedule")
class LearningRateSchedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc,name-defined]
    """An lrkit schedule (or its spec text) as a Keras `LearningRateSchedule`, times a settable `scale`.

    Args:
        schedule: an lrkit schedule, or its spec (`"cosine(start=0.1, steps=1000)"`).
        horizon: the last step the table holds; later steps get its value (the run's length, for a
            schedule that never ends). None: the table ends where the schedule settles, or, for one
            that never does, grows with the step, read on the host once per call (exact forever).
        scale: the multiplier of the schedule's value (what a plateau or a guard changes).

    Example:
        >>> import keras, lrkit
        >>> lr = LearningRateSchedule(lrkit.step_decay(start=1.0, factor=0.5, every=2), horizon=3)
        >>> [float(lr(t)) for t in range(6)]
        [1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
        >>> opt = keras.optimizers.SGD(learning_rate=lr)
        >>> float(opt.learning_rate)
        1.0
    """

    def __init__(self, schedule: Schedule | str, horizon: int | None = None, scale: float = 1.0) -> None:
        if isinstance(schedule, str):
            schedule = parse(schedule)
        self.schedule: Schedule = validate.instance("LearningRateSchedule", "schedule", schedule, ScheduleError, Schedule,
                                                    "an lrkit schedule or its spec text")  # fmt: skip
        self.horizon = None if horizon is None else validate.integer("LearningRateSchedule", "horizon", horizon, ScheduleError,
                                                                     minimum=0, maximum=MAX_HORIZON)  # fmt: skip
        first = validate.non_negative("LearningRateSchedule", "scale", scale, ScheduleError)
        self.scale_variable = keras.Variable(first, dtype="float64", trainable=False, name="lrkit_scale")
        self._end = _table_end(self.schedule, self.horizon)  # None: the table grows
        self._table = self._values(0 if self._end is None else self._end + 1)

    def _values(self, size: int) -> Any:
        """The schedule at steps 0 .. size-1 (at least CHUNK when growing), float64: the lr is rounded once, at the end."""
        size = max(size, CHUNK) if self._end is None else size
        return ops.convert_to_tensor(self.schedule.values(np.arange(size)), dtype="float64")

    def __call__(self, step: Any) -> Any:
        """The lr at `step` (an integer or Keras' `optimizer.iterations`): the table's value times `scale`."""
        if self._end is not None:
            index = ops.minimum(ops.convert_to_tensor(step, dtype="int64"), self._end)
        else:
            index = validate.integer("LearningRateSchedule", "step", int(step), ScheduleError, minimum=0)
            if index >= self._table.shape[0]:
                self._table = self._values(max(2 * self._table.shape[0], index + 1))
        return ops.cast(ops.take(self._table, index) * self.scale_variable, keras.config.floatx())

    @property
    def scale(self) -> float:
        """The multiplier on the schedule's value (1.0 until a plateau or a guard changes it).

        Example:
            >>> import lrkit
            >>> lr = LearningRateSchedule(lrkit.constant(0.1))
            >>> lr.scale = 0.5
            >>> lr.scale, round(float(lr(0)), 6)
            (0.5, 0.05)
        """
        return float(ops.convert_to_numpy(self.scale_variable))

    @scale.setter
    def scale(self, value: float) -> None:
        self.scale_variable.assign(validate.non_negative("LearningRateSchedule", "scale", value, ControlError))

    def base(self, step: int) -> float:
        """The schedule's own value at `step` (float64, before `scale`; past `horizon`, the value at `horizon`).

        Example:
            >>> import lrkit
            >>> LearningRateSchedule(lrkit.linear(start=1.0, end=0.0, steps=4), scale=0.5).base(1)
            0.75
        """
        step = validate.integer("LearningRateSchedule.base", "step", step, ScheduleError, minimum=0)
        return self.schedule(step if self.horizon is None else min(step, self.horizon))

    def get_config(self) -> dict[str, Any]:
        """The schedule as its lrkit spec, the horizon and the current scale: what `from_config` reads back.

        Example:
            >>> import lrkit
            >>> lr = LearningRateSchedule(lrkit.constant(0.1), horizon=10)
            >>> LearningRateSchedule.from_config(lr.get_config()).get_config() == lr.get_config()
            True
        """
        return {"schedule": repr(self.schedule), "horizon": self.horizon, "scale": self.scale}

    def __repr__(self) -> str:
        return f"lrkit.keras.LearningRateSchedule({self.schedule!r}, horizon={self.horizon!r}, scale={self.scale!r})"


def _table_end(schedule: Schedule, horizon: int | None) -> int | None:
    """The table's last step: `horizon` or where the schedule settles, the sooner; None (grow) when neither bounds it."""
    settled = settles(schedule)
    if settled is None or settled > MAX_HORIZON:  # a settled value that far off: grow the table as the run gets there
        return horizon
    return settled if horizon is None else min(horizon, settled)


def wrapped(optimizer: Any) -> LearningRateSchedule | None:
    """The lrkit schedule driving a Keras optimizer, or None when its lr is a plain number.

    A Keras schedule of another kind (or a callable) raises ControlError: lrkit cannot scale it.

    Example:
        >>> import keras, lrkit
        >>> wrapped(keras.optimizers.SGD(0.1)) is None, wrapped(keras.optimizers.SGD(LearningRateSchedule(lrkit.constant(0.1)))).scale
        (True, 1.0)
    """
    lr = getattr(optimizer, "_learning_rate", None)  # Keras keeps the schedule object here; the public property evaluates it
    if isinstance(lr, LearningRateSchedule):
        return lr
    if isinstance(lr, keras.Variable):
        return None
    requirement = "must have a float learning rate or an lrkit.keras.LearningRateSchedule (wrap the schedule: lrkit.presets.keras)"
    validate.fail("lrkit.keras", "optimizer.learning_rate", requirement, type(lr).__name__, ControlError)


def multiply_lr(optimizer: Any, factor: float) -> None:
    """Multiply the optimizer's lr by `factor`: an lrkit schedule's `scale`, or a plain lr variable itself.

    Example:
        >>> import keras
        >>> opt = keras.optimizers.SGD(0.1)
        >>> multiply_lr(opt, 0.5); round(float(opt.learning_rate), 6)
        0.05
    """
    schedule = wrapped(optimizer)
    if schedule is not None:
        schedule.scale = schedule.scale * factor
    else:
        optimizer.learning_rate = float(ops.convert_to_numpy(optimizer.learning_rate)) * factor


def current_lr(optimizer: Any) -> float:
    """The lr the optimizer's next update uses, as a float.

    Example:
        >>> import keras
        >>> current_lr(keras.optimizers.SGD(0.5))
        0.5
    """
    return float(ops.convert_to_numpy(optimizer.learning_rate))
