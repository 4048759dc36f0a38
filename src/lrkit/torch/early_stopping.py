"""`lrkit.EarlyStopping`: the pure stopping decision plus the best weights, kept and put back.

`lrkit.control.EarlyStopping` decides; this subclass keeps, with `restore_best`, a
CPU copy of the model's weights at each improving evaluation and loads them back
into the model when stopping.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> stopper = EarlyStopping(patience=1)
    >>> for w, loss in [(1.0, 0.5), (2.0, 0.7)]:
    ...     _ = model.weight.data.fill_(w)
    ...     stop = stopper.observe(loss, model)
    >>> stop, model.weight.item()
    (True, 1.0)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from lrkit import validate
from lrkit.control import early_stopping
from lrkit.errors import ControlError
from lrkit.torch._tensors import cpu_copy


class EarlyStopping(early_stopping.EarlyStopping):
    """`lrkit.control.EarlyStopping`'s decision (same `mode`, `patience`, `min_delta`), and the best weights put back.

    Call `observe(metric, model)` once per evaluation; it returns True when the loop
    should stop. With `restore_best` (default), each improving evaluation keeps a CPU
    copy of the model's weights, and those weights are put back into the model when stopping.

    Example:
        >>> model = torch.nn.Linear(1, 1)
        >>> stopper = EarlyStopping(patience=2)
        >>> [stopper.observe(loss, model) for loss in [1.0, 0.8, 0.9, 0.85]]
        [False, False, False, True]
        >>> stopper.state.best_evaluation, sorted(stopper.best_weights)
        (1, ['bias', 'weight'])
    """

    saved: ClassVar[tuple[str, ...]] = ("state", "best_weights")

    def __init__(self, mode: str = "min", patience: int = 10, min_delta: float = 0.0, restore_best: bool = True) -> None:
        super().__init__(mode, patience, min_delta)
        self.restore_best = validate.flag("EarlyStopping", "restore_best", restore_best, ControlError)
        self.best_weights: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, restore_best={self.restore_best})"

    def observe(self, metric: float, model: torch.nn.Module | None = None) -> bool:
        """Record one evaluation; True when training should stop (then the best weights are back in `model`).

        Args:
            metric: the evaluation (a finite number or one-element tensor).
            model: the model evaluated; needed for `restore_best` to keep and restore weights.

        Example:
            >>> model = torch.nn.Linear(1, 1)
            >>> stopper = EarlyStopping(patience=1)
            >>> stopper.observe(0.5, model), stopper.best_weights is not None
            (False, True)
        """
        if model is not None:
            validate.instance("EarlyStopping.observe", "model", model, ControlError, torch.nn.Module, "a torch.nn.Module or None")
        old = self.state
        stop = super().observe(metric)
        if self.restore_best and model is not None:
            if self.state.best_evaluation == old.evaluations:  # this evaluation is the new best
                self.best_weights = cpu_copy(model.state_dict())
            if stop and not old.stop:
                self.restore(model)
        return stop

    def restore(self, model: torch.nn.Module) -> None:
        """Put the best evaluation's weights back into `model` (copied to the model's devices).

        Example:
            >>> import lrkit
            >>> try:
            ...     EarlyStopping().restore(torch.nn.Linear(1, 1))
            ... except lrkit.ControlError as e:
            ...     print(str(e)[:59])
            EarlyStopping.restore: parameter 'model' needs weights kept
        """
        if self.best_weights is None:
            requirement = "needs weights kept by observe(metric, model) with restore_best=True"
            validate.fail("EarlyStopping.restore", "model", requirement, "none kept", ControlError)
        model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """The decision's state and the kept weights, for a checkpoint.

        Example:
            >>> sorted(EarlyStopping().state_dict())
            ['best_weights', 'state']
        """
        return {**super().state_dict(), "best_weights": self.best_weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved.

        Example:
            >>> a, b = EarlyStopping(), EarlyStopping()
            >>> _ = a.observe(0.5, torch.nn.Linear(1, 1))
            >>> b.load_state_dict(a.state_dict())
            >>> b.state == a.state, b.best_weights is not None
            (True, True)
        """
        super().load_state_dict(state_dict)
        self.best_weights = state_dict["best_weights"]
