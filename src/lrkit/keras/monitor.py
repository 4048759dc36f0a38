"""`lrkit.keras.Monitor`: lrkit's Monitor as a Keras callback, one row per training batch.

It is `lrkit.Monitor` (the same history, CSV, TensorBoard, figure and `diagnose()`), fed by
Keras: per batch the step, the batch's loss (not Keras' running mean), the lr and momentum
that update used, and with `ratios=True` the gradient norm and the update-to-weight ratio
(with the torch backend the gradients are still on the weights when the batch ends). `step` counts
the batches seen from the optimizer's step when training began: after a `lrkit.keras.Guard` put
a batch back it goes on counting (that batch's loss is NaN here, as it left the epoch's mean).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lrkit import validate
from lrkit.errors import ControlError
from lrkit.keras._backend import load
from lrkit.keras._state import BatchLoss
from lrkit.keras.schedule import current_lr
from lrkit.torch.monitor import Monitor as TorchMonitor

keras = load()
MOMENTUM = ("momentum", "beta_1", "rho")  # what Keras' optimizers call the momentum-like coefficient


class Monitor(keras.callbacks.Callback, TorchMonitor):  # type: ignore[misc,name-defined]
    """Record lr, momentum, batch loss, gradient norm and update ratio at every training batch; `diagnose()` reads them.

    Args:
        ratios: also record `grad_norm` and `update_ratio` (`||w - w_prev|| / ||w_prev||`; a CPU copy
            of the weights is kept between batches).

    `history`, `to_csv`, `to_tensorboard`, `plot` and `diagnose` are those of `lrkit.Monitor`.

    Example:
        >>> import keras, numpy as np, lrkit, lrkit.keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(lrkit.keras.LearningRateSchedule(lrkit.constant(0.1))), loss="mse")
        >>> mon = lrkit.keras.Monitor()
        >>> _ = model.fit(np.ones((8, 2)), np.zeros((8, 1)), batch_size=4, epochs=2, verbose=0, callbacks=[mon])
        >>> mon.history["step"].tolist(), sorted(mon.history)
        ([0, 1, 2, 3], ['grad_norm', 'loss', 'lr', 'momentum', 'step', 'update_ratio'])
    """

    def __init__(self, ratios: bool = True) -> None:
        keras.callbacks.Callback.__init__(self)
        self.ratios = validate.flag("Monitor", "ratios", ratios, ControlError)
        self.scheduler = None  # lrkit.Monitor's columns of an lrkit.Scheduler: none in Keras (the scale shows in `lr`)
        self._columns: dict[str, list[float]] = {"step": []}
        self._previous: list[torch.Tensor] = []
        self._previous_step = -1
        self._loss: BatchLoss | None = None
        self._lr = math.nan
        self._next_step = 0

    @property
    def _keras_model(self) -> Any:
        return self.model  # lrkit.Monitor types `model` as a torch module; here it is the Keras model Keras set

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._loss = BatchLoss(self._keras_model)
        if not len(self):  # a later fit() goes on counting
            self._next_step = int(self._keras_model.optimizer.iterations)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._loss is None:
            self.on_train_begin()
        assert self._loss is not None  # for mypy: on_train_begin set it
        self._loss.begin()
        self._lr = current_lr(self._keras_model.optimizer)  # the lr this batch's update uses

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        assert self._loss is not None  # set in on_train_batch_begin
        # the batches seen, from the optimizer's step at the start: a guard may rewind the optimizer, the record goes on
        step, self._next_step = self._next_step, self._next_step + 1
        self.record(step, loss=self._loss.end())

    # -- what lrkit.Monitor.record reads: here from Keras ------------------------
    def _name(self, name: str, group: int) -> str:
        return name  # one optimizer, one lr: plain column names

    def _optimizer_row(self) -> dict[str, float]:
        row = {"lr": self._lr}
        optimizer = self._keras_model.optimizer
        for name in MOMENTUM:
            value = getattr(optimizer, name, None)
            if value is not None and validate.is_number(value):
                row["momentum"] = float(value)
                break
        return row

    @torch.no_grad()
    def _model_row(self, model: Any, step: int) -> dict[str, float]:
        if not self.ratios:
            return {}
        weights = [v.value for v in model.trainable_weights]
        grads = [w.grad for w in weights if w.grad is not None]
        flat = torch.cat([w.detach().reshape(-1) for w in weights]).to("cpu", torch.float32, copy=True) if weights else torch.zeros(0)
        row = {
            "grad_norm": float(torch.nn.utils.get_total_norm(grads)) if grads else math.nan,
            "update_ratio": self._update_ratio(0, flat, step),
        }
        self._previous, self._previous_step = [flat], step
        return row
