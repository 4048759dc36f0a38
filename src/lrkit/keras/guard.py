"""`lrkit.keras.Guard`: a NaN or spiking batch puts back the last good weights and optimizer state; training goes on.

The policy is `lrkit.Guard`'s (its spike rule, its incident record, its repeat rule and its
give-up message are reused from `lrkit.torch.guard`); what differs is when Keras lets a callback
look: after the batch's update. So the guard keeps a snapshot of the weights and the optimizer
state (on their device, refreshed in place) every `snapshot_every` good batches, by default
every one, and an incident puts it back: with a snapshot from just before the bad batch that
is exactly a skipped batch. The batch's contribution to the epoch's logged metrics is removed too.
"""

from __future__ import annotations

import collections
import math
from typing import Any

from lrkit import validate
from lrkit.errors import ControlError, DivergenceError
from lrkit.keras._backend import load
from lrkit.keras._state import BatchLoss, Snapshot, compiled, training_variables
from lrkit.keras.schedule import current_lr, multiply_lr
from lrkit.torch._tensors import all_finite
from lrkit.torch.guard import _EARLY_HISTORY, _MIN_HISTORY, _REFRESH, Incident, _limit

keras = load()


class Guard(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Detect a bad batch (non-finite loss or weights, or a loss spike); put back the snapshot; cut the lr only when it repeats.

    Args (those of `lrkit.Guard`):
        snapshot_every: good batches between snapshots (1: an isolated incident costs only its batch).
        spike: the spike threshold in robust deviations of the last `window` good losses; None checks finiteness only.
        window: recent good losses the spike rule reads (>= 20).
        cut: the lr factor of a rollback, in (0, 1] (through the lrkit schedule's `scale`, or the plain lr).
        max_rollbacks: rollbacks allowed; one more raises `lrkit.DivergenceError`.
        repeat_window: good batches after an incident before the run counts as recovered.

    Actions: "skip" (the snapshot was taken just before the bad batch), "restore" (an older snapshot,
    same lr), "rollback" (a repeated incident: the snapshot and the lr times `cut`). `incidents`
    lists them as `lrkit.torch.guard.Incident`. Put the guard first in `callbacks=[...]` so later
    callbacks see the batch's logs without the bad batch.

    Example:
        >>> import keras, numpy as np, lrkit.keras
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        >>> x = np.ones((40, 1), "float32"); y = np.zeros((40, 1), "float32"); y[12:16] = np.nan  # batch 3 is poisoned
        >>> guard = lrkit.keras.Guard()
        >>> _ = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[guard])
        >>> [(i.step, i.kind, i.action) for i in guard.incidents], bool(np.isfinite(model.get_weights()[0]).all())
        ([(3, 'nonfinite_loss', 'skip')], True)
    """

    def __init__(self, *, snapshot_every: int = 1, spike: float | None = 20.0, window: int = 100, cut: float = 0.5,
                 max_rollbacks: int = 5, repeat_window: int = 20) -> None:  # fmt: skip
        super().__init__()
        self.snapshot_every = validate.integer("Guard", "snapshot_every", snapshot_every, ControlError)
        self.spike = None if spike is None else validate.positive("Guard", "spike", spike, ControlError)
        self.window = validate.integer("Guard", "window", window, ControlError, minimum=_MIN_HISTORY)
        self.cut = validate.in_range("Guard", "cut", cut, ControlError, 0.0, 1.0, open_low=True)
        self.max_rollbacks = validate.integer("Guard", "max_rollbacks", max_rollbacks, ControlError, minimum=0)
        self.repeat_window = validate.integer("Guard", "repeat_window", repeat_window, ControlError)
        self.step = 0
        self.scale = 1.0
        self.incidents: list[Incident] = []
        self._losses: collections.deque[float] = collections.deque(maxlen=self.window)
        self._snapshot: tuple[Snapshot, int, list[float]] | None = None
        self._limit = math.inf
        self._since_snapshot = self._since_refresh = self._unrecovered = 0

    @property
    def rollbacks(self) -> int:
        """How many repeated incidents rolled back with a cut lr (what `max_rollbacks` bounds).

        Example:
            >>> Guard().rollbacks
            0
        """
        return sum(i.action == "rollback" for i in self.incidents)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = compiled("Guard", self.model)
        self._loss = BatchLoss(model)
        self._metrics = Snapshot(model.metrics_variables)
        self._snapshot = (Snapshot(training_variables(model)), self.step, list(self._losses))
        self._since_snapshot = 0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._loss.begin()
        self._metrics.save(self.model.metrics_variables)  # so a bad batch can be taken out of the epoch's metrics

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        value = self._loss.end()
        kind = self._detect(value)
        step, self.step = self.step, self.step + 1
        if kind is not None:
            self._handle(step, kind, value, logs)
            return
        self._since_snapshot += 1
        self._unrecovered = max(0, self._unrecovered - 1)
        self._remember(value)
        if self._since_snapshot >= self.snapshot_every and self._unrecovered == 0:  # the state before the next batch
            assert self._snapshot is not None  # taken at on_train_begin
            self._snapshot[0].save()
            self._snapshot = (self._snapshot[0], self.step, list(self._losses))
            self._since_snapshot = 0

    def _detect(self, value: float) -> str | None:
        if not math.isfinite(value):
            return "nonfinite_loss"
        if value > self._limit:
            return "spike"
        if not all_finite([v.value for v in self.model.trainable_weights]):  # the update overflowed: never snapshot it
            return "nonfinite_grad"
        return None

    def _remember(self, value: float) -> None:
        self._losses.append(value)
        self._since_refresh += 1
        n = len(self._losses)
        if self.spike is not None and n >= _EARLY_HISTORY and (n <= _MIN_HISTORY or self._since_refresh >= _REFRESH):
            self._limit = _limit(self._losses, self.spike)
            self._since_refresh = 0

    def _handle(self, step: int, kind: str, value: float, logs: dict[str, Any] | None) -> None:
        """Put the snapshot back; a repeated incident also cuts the lr (or raises past `max_rollbacks`); record it."""
        assert self._snapshot is not None  # taken at on_train_begin
        if self._unrecovered > 0 and self.rollbacks >= self.max_rollbacks:
            raise DivergenceError(self._give_up_message(step, kind, value))
        state, restored, window = self._snapshot
        state.restore()
        self._metrics.restore()
        lost, self._since_snapshot, self._since_refresh = self._since_snapshot, 0, 0
        action = "rollback" if self._unrecovered > 0 else ("skip" if lost == 0 else "restore")
        lr_before = current_lr(self.model.optimizer)
        if action == "rollback":
            multiply_lr(self.model.optimizer, self.cut)
            self.scale *= self.cut
        self._losses = collections.deque(window, maxlen=self.window)
        self._limit = _limit(self._losses, self.spike) if self.spike is not None and len(window) >= _EARLY_HISTORY else math.inf
        self._unrecovered = self.repeat_window + lost
        self.incidents.append(Incident(step, kind, value, restored, lost, lr_before, current_lr(self.model.optimizer), action))
        if logs is not None:  # later callbacks see the epoch's metrics without this batch
            logs.update({k: float(v) for k, v in self.model.get_metrics_result().items()})

    def _give_up_message(self, step: int, kind: str, value: float) -> str:
        history = ", ".join(f"{i.kind} at step {i.step} ({i.action})" for i in self.incidents)
        return (
            f"Guard: training diverged again at step {step} ({kind}, loss={value:.4g}) after {self.rollbacks} rollbacks "
            f"(max_rollbacks={self.max_rollbacks}; incidents: {history}); the lr is already cut to "
            f"{current_lr(self.model.optimizer):.3g} (x{self.scale:.3g}). Try a lower lr or a warmup, gradient clipping "
            "(the optimizer's clipnorm=), checking the data near these steps, or a larger `spike` if these losses are genuine."
        )
