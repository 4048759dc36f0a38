"""What the guard and the range test share: a copy of a Keras model's training state, and the per-batch loss.

With the torch backend a Keras variable's value is a torch tensor, so a snapshot is a set of
tensors on the variables' device, refreshed in place (no allocation per snapshot).

Example:
    >>> import keras
    >>> from lrkit.keras._state import Snapshot, training_variables
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> state = Snapshot(training_variables(model))
    >>> w = model.get_weights()[0].copy()
    >>> _ = model.layers[0].kernel.assign(w + 1.0)
    >>> state.restore(); bool((model.get_weights()[0] == w).all())
    True
"""

from __future__ import annotations

from typing import Any

import torch

from lrkit import validate
from lrkit.errors import ControlError
from lrkit.keras._backend import load

keras = load()


def compiled(func: str, model: Any, error: type[ControlError] | Any = ControlError) -> Any:
    """`model` if it is a compiled Keras model with an optimizer (else `error`); its optimizer built, so its state exists.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> m.compile(optimizer="adam", loss="mse")
        >>> compiled("Guard", m).optimizer.built
        True
    """
    validate.instance(func, "model", model, error, keras.Model, "a keras.Model")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        validate.fail(func, "model", "must be compiled with an optimizer (model.compile(optimizer=..., loss=...))", model.name, error)
    if not model.built:
        validate.fail(func, "model", "must be built (give it a keras.Input, or call it once)", model.name, error)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # the slots fit would create anyway (momenta, moments)
    return model


def training_variables(model: Any) -> list[Any]:
    """The model's variables and its optimizer's, except the lr (a guard's cut or a plateau must survive a restore).

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> m.compile(optimizer="sgd", loss="mse")
        >>> len(training_variables(m))  # kernel, bias, the optimizer's iteration count
        3
    """
    lr = getattr(model.optimizer, "_learning_rate", None)  # a plain lr is an optimizer variable: leave it out
    return [*model.variables, *(v for v in model.optimizer.variables if v is not lr)]


class Snapshot:
    """A copy of some Keras variables' values, on their device; `save()` refreshes it in place, `restore()` puts it back.

    Example:
        >>> v = keras.Variable([1.0, 2.0])
        >>> snap = Snapshot([v])
        >>> _ = v.assign([5.0, 5.0]); snap.restore(); v.numpy().tolist()
        [1.0, 2.0]
    """

    def __init__(self, variables: list[Any]) -> None:
        self.variables = list(variables)
        self.saved = [v.value.detach().clone() for v in self.variables]

    def save(self, variables: list[Any] | None = None) -> None:
        """Copy the current values over the saved ones; `variables`: a list that may have grown (metrics build late)."""
        if variables is not None and [id(v) for v in variables] != [id(v) for v in self.variables]:
            self.__init__(variables)  # type: ignore[misc,name-defined]
            return
        if self.saved:
            torch._foreach_copy_(self.saved, [v.value.detach() for v in self.variables])

    def restore(self) -> None:
        """Put the saved values back."""
        for variable, value in zip(self.variables, self.saved):
            variable.assign(value)


class BatchLoss:
    """One batch's loss, read from the model's running loss mean (Keras logs the epoch's mean, not the batch's).

    Call `begin()` before the batch and `end()` after it: the batch adds `loss x size` to the mean's
    total and `size` to its count, so the batch loss is the change of total over the change of count.

    Example:
        >>> m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
        >>> m.compile(optimizer="sgd", loss="mse")
        >>> loss = BatchLoss(m)
        >>> loss.begin(); _ = m.train_on_batch(__import__("numpy").ones((4, 1)), __import__("numpy").full((4, 1), 2.0))
        >>> loss.end()
        4.0
    """

    def __init__(self, model: Any) -> None:
        trackers = [m for m in model.metrics if m.name == "loss" and hasattr(m, "total")]
        if not trackers:
            validate.fail("lrkit.keras", "model", "must track its loss (a model compiled with a loss)", model.name, ControlError)
        self.tracker = trackers[0]
        self.total = self.count = 0.0

    def begin(self) -> None:
        """Remember the running total and count before a batch."""
        self.total, self.count = float(self.tracker.total), float(self.tracker.count)

    def end(self) -> float:
        """The batch's mean loss (NaN if the batch added nothing)."""
        total, count = float(self.tracker.total), float(self.tracker.count)
        return (total - self.total) / (count - self.count) if count > self.count else float("nan")
