"""`lrkit.keras.Plateau`: `keras.callbacks.ReduceLROnPlateau`'s arguments and rule, on top of any schedule.

Keras' own callback assigns a new lr to the optimizer, so it refuses an optimizer driven by a
schedule. This one keeps the rule in lrkit's pure `lrkit.Plateau` controller and multiplies
the lr through `lrkit.keras.LearningRateSchedule.scale` (or a plain float lr), so warmup,
cosine and a plateau compose: `lr(t) = schedule(t) x scale`.

Keras counts differently from torch: it reduces after `patience` bad epochs, and the epoch
on which its cooldown ends already counts. In lrkit's (torch's) terms that is
`patience - 1` and `cooldown - 1` (both at least 0), an absolute threshold `min_delta` and no `eps`;
`tests/test_keras_callbacks.py` checks the lrs against Keras' own callback epoch by epoch.
"""

from __future__ import annotations

from typing import Any

from lrkit import validate
from lrkit.control.plateau import Plateau as Controller
from lrkit.control.plateau import PlateauState
from lrkit.errors import ControlError
from lrkit.keras._backend import load
from lrkit.keras.schedule import current_lr, multiply_lr, wrapped

keras = load()
MODES = ("auto", "min", "max")


class Plateau(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Reduce the lr by `factor` when `monitor` stops improving: Keras' ReduceLROnPlateau, composable with a schedule.

    Args (Keras' names and meanings):
        monitor: the logged quantity ("val_loss", "val_accuracy", "loss", ...).
        factor: the multiplier of a reduction, in (0, 1).
        patience: epochs without improvement after which the lr is reduced.
        verbose: 0 quiet, 1 a message per reduction.
        mode: "min", "max" or "auto" (min for a loss, max for a metric whose direction Keras knows).
        min_delta: the least absolute change that counts as an improvement (>= 0).
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the lowest lr a reduction may produce.

    A metric that is missing from the logs, or NaN, raises `lrkit.ControlError` (Keras would warn and go on).
    `state` is the controller's state (`lrkit.control.plateau.PlateauState`); `logs["learning_rate"]` is set.

    Example:
        >>> import keras, numpy as np, lrkit, lrkit.keras
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> lr = lrkit.keras.LearningRateSchedule(lrkit.cosine(start=0.1, steps=100))
        >>> model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
        >>> x = np.zeros((8, 1)); y = np.ones((8, 1))
        >>> plateau = lrkit.keras.Plateau(monitor="loss", patience=1, min_delta=10.0)
        >>> _ = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[plateau])
        >>> lr.scale, plateau.state.changes
        (0.01, 2)
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.monitor = validate.instance("Plateau", "monitor", monitor, ControlError, str, "the name of a logged quantity")
        self.factor = validate.in_range("Plateau", "factor", factor, ControlError, 0.0, 1.0, open_low=True, open_high=True)
        self.patience = validate.integer("Plateau", "patience", patience, ControlError, minimum=0)
        self.verbose = validate.integer("Plateau", "verbose", verbose, ControlError, minimum=0)
        self.mode = validate.choice("Plateau", "mode", mode, ControlError, MODES)
        self.min_delta = validate.non_negative("Plateau", "min_delta", min_delta, ControlError)
        self.cooldown = validate.integer("Plateau", "cooldown", cooldown, ControlError, minimum=0)
        self.min_lr = validate.non_negative("Plateau", "min_lr", min_lr, ControlError)
        self.controller: Controller | None = None
        self.state: PlateauState | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        wrapped(self.model.optimizer)  # an lr lrkit cannot scale is refused before the first epoch
        if self.controller is None:  # a second fit() goes on from the state the first left
            mode = self.mode if self.mode != "auto" else _direction(self.model, self.monitor)
            self.controller = Controller(mode=mode, factor=self.factor, patience=max(self.patience - 1, 0), threshold=self.min_delta,
                                         threshold_mode="abs", cooldown=max(self.cooldown - 1, 0), min_lr=self.min_lr, eps=0.0)  # fmt: skip
            self.state = self.controller.init()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.controller is None or self.state is None:  # called outside fit(): start as fit would
            self.on_train_begin()
        assert self.controller is not None and self.state is not None  # for mypy: on_train_begin set both
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = lr = current_lr(optimizer)
        if self.monitor not in logs:
            requirement = f"must name a logged quantity ({', '.join(sorted(logs))})"
            validate.fail("Plateau", "monitor", requirement, self.monitor, ControlError)
        old = self.state.scale
        self.state = self.controller.update(self.state, logs[self.monitor], lr=lr / old if old > 0 else lr)
        if self.state.scale != old:
            multiply_lr(optimizer, self.state.scale / old)
            logs["learning_rate"] = current_lr(optimizer)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: lrkit.keras.Plateau reducing learning rate to {logs['learning_rate']:.6g}.")


def _direction(model: Any, monitor: str) -> str:
    """Keras' "auto" mode: min for a loss, else the direction Keras records for the compiled metric of that name."""
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    for metric in _compiled_metrics(model):
        direction = getattr(metric, "_direction", None)  # Keras marks its metrics "up" or "down"
        if metric.name == name and direction in ("up", "down"):
            return "max" if direction == "up" else "min"
    requirement = "has no direction Keras knows: pass mode='min' or mode='max'"
    validate.fail("Plateau", "monitor", requirement, monitor, ControlError)


def _compiled_metrics(model: Any) -> list[Any]:
    found: list[Any] = []
    for metric in model.metrics:
        found.extend(getattr(metric, "metrics", [metric]))  # compile() bundles the metrics in one container
    return found
