"""lrkit in Keras 3 (torch backend): lrkit schedules as Keras schedules, and the controllers as Keras callbacks.

- `LearningRateSchedule(schedule)`: any lrkit schedule in any Keras optimizer, saved and loaded with the model.
- `Plateau`: `keras.callbacks.ReduceLROnPlateau`'s arguments, working on top of a schedule.
- `Guard`: a NaN or spiking batch puts back the last good weights and optimizer state; training goes on.
- `Monitor`: lr, loss, gradient norm and update ratio per batch, and `diagnose()`.
- `find_lr(model, x, y)`: the range test for a compiled model, everything restored afterwards.

Importing this package imports Keras, with `KERAS_BACKEND=torch` unless the environment chose
first; another backend raises `lrkit.LrkitValueError`.

Example:
    >>> import keras, lrkit, lrkit.keras
    >>> opt = keras.optimizers.SGD(learning_rate=lrkit.keras.LearningRateSchedule(lrkit.cosine(start=0.1, steps=100)))
    >>> round(float(opt.learning_rate), 6)
    0.1
"""

from __future__ import annotations

from lrkit.keras.finder import find_lr
from lrkit.keras.guard import Guard
from lrkit.keras.monitor import Monitor
from lrkit.keras.plateau import Plateau
from lrkit.keras.schedule import LearningRateSchedule

__all__ = ["Guard", "LearningRateSchedule", "Monitor", "Plateau", "find_lr"]
