"""`lrkit.keras.Guard`: a NaN or spiking batch puts back the last good weights and optimizer state; training goes on.

The policy is `lrkit.Guard`'s (both inherit `lrkit.control.guard_policy.GuardPolicy`: the spike rule,
the incident record, the repeat rule and the give-up message); what differs is when Keras lets a callback
look: after the batch's update. So the guard keeps a snapshot of the weights and the optimizer
state (on their device, refreshed in place) every `snapshot_every` good batches, by default
every one, and an incident puts it back: with a snapshot from just before the bad batch that
is exactly a skipped batch. The batch's contribution to the epoch's logged metrics is removed too.
"""

from __future__ import annotations

from typing import Any

from lrkit.control.guard_policy import GuardPolicy, Incident
from lrkit.keras._backend import load
from lrkit.keras._state import BatchLoss, Snapshot, compiled, training_variables
from lrkit.keras.schedule import current_lr, multiply_lr
from lrkit.torch._tensors import all_finite  # Keras runs on the torch backend here: its variables hold torch tensors

keras = load()


class Guard(keras.callbacks.Callback, GuardPolicy):  # type: ignore[misc,name-defined]
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
    lists them as `lrkit.control.guard_policy.Incident`. Put the guard first in `callbacks=[...]` so later
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
        keras.callbacks.Callback.__init__(self)
        GuardPolicy.__init__(self, "Guard", snapshot_every=snapshot_every, spike=spike, window=window, cut=cut,
                             max_rollbacks=max_rollbacks, repeat_window=repeat_window)  # fmt: skip
        self._snapshot: tuple[Snapshot, int, list[float]] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = compiled("Guard", self.model)
        self._loss = BatchLoss(model)
        self._metrics = Snapshot(model.metrics_variables)
        self._snapshot = (Snapshot(training_variables(model)), self.step, self.snapshot_taken())

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
        self.good(value)
        if self.snapshot_due:  # Keras looks after the update: this is the state before the next batch
            assert self._snapshot is not None  # taken at on_train_begin
            self._snapshot[0].save()
            self._snapshot = (self._snapshot[0], self.step, self.snapshot_taken())

    def _detect(self, value: float) -> str | None:
        kind = self.detect(value)
        if kind is None and not all_finite([v.value for v in self.model.trainable_weights]):  # the update overflowed: never snapshot it
            return "nonfinite_grad"
        return kind

    def _handle(self, step: int, kind: str, value: float, logs: dict[str, Any] | None) -> None:
        """Put the snapshot back; a repeated incident also cuts the lr (or raises past `max_rollbacks`); record it."""
        assert self._snapshot is not None  # taken at on_train_begin
        state, restored, window = self._snapshot
        lr = current_lr(self.model.optimizer)
        # the update already happened: always put the snapshot back; from just before this batch, that is a skip
        action = self.act(step, kind, value, restore=self._since_snapshot > 0, lr=lr, clipping="the optimizer's clipnorm=")
        state.restore()
        self._metrics.restore()
        lost = self.restored(window)
        lr_before = current_lr(self.model.optimizer)
        if action == "rollback":
            multiply_lr(self.model.optimizer, self.cut)
        self.record(Incident(step, kind, value, restored, lost, lr_before, current_lr(self.model.optimizer), action))
        if logs is not None:  # later callbacks see the epoch's metrics without this batch
            logs.update({k: float(v) for k, v in self.model.get_metrics_result().items()})
