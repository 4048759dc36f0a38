"""`lrkit.EarlyStopping`: stop when the metric stops improving, and put back the best weights.

The decision is a pure function of a small frozen state (`update`); the object
around it keeps that state and, with `restore_best`, a CPU copy of the weights of
the best evaluation. torch is never imported here: weights come from the model.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from lrkit.control._common import MODES, checked, cpu_copy, is_better, metric_value, worst
from lrkit.errors import ControlError, bad
from lrkit.schedules import _check

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class EarlyStoppingState:
    """Early stopping's state: plain numbers, saved by `dataclasses.asdict`.

    Attributes:
        best: the best metric so far (+inf / -inf before the first evaluation).
        best_evaluation: index (from 0) of the evaluation that gave `best`; -1 before any.
        bad_evals: evaluations since the last improvement.
        evaluations: metrics seen so far.
        stop: whether training should stop.

    Example:
        >>> EarlyStoppingState(best=float("inf")).stop
        False
    """

    best: float
    best_evaluation: int = -1
    bad_evals: int = 0
    evaluations: int = 0
    stop: bool = False


class EarlyStopping:
    """Stop after `patience` evaluations in a row that do not improve by more than `min_delta`.

    Call `observe(metric, model)` once per evaluation; it returns True when the loop
    should stop. With `restore_best`, each improving evaluation keeps a CPU copy of
    the model's weights, and those weights are put back into the model when stopping.

    Args:
        mode: "min" (a loss) or "max" (an accuracy).
        patience: evaluations without improvement before stopping (>= 1).
        min_delta: the least absolute improvement that counts (>= 0).
        restore_best: put back the best evaluation's weights when stopping.

    Example:
        >>> stopper = EarlyStopping(patience=2)
        >>> [stopper.observe(loss) for loss in [1.0, 0.8, 0.9, 0.85]]
        [False, False, False, True]
        >>> stopper.state.best, stopper.state.best_evaluation
        (0.8, 1)
    """

    def __init__(self, mode: str = "min", patience: int = 10, min_delta: float = 0.0, restore_best: bool = True) -> None:
        name = "EarlyStopping"
        self.mode = checked(_check.choice, name, "mode", mode, MODES)
        self.patience = checked(_check.integer, name, "patience", patience, minimum=1)
        self.min_delta = checked(_check.non_negative, name, "min_delta", min_delta)
        self.restore_best = checked(_check.flag, name, "restore_best", restore_best)
        self.state = self.init()
        self.best_weights: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"EarlyStopping(mode={self.mode!r}, patience={self.patience}, min_delta={self.min_delta}, restore_best={self.restore_best})"

    def init(self) -> EarlyStoppingState:
        """The state before any evaluation.

        Example:
            >>> EarlyStopping(mode="max").init().best
            -inf
        """
        return EarlyStoppingState(best=worst(self.mode))

    def update(self, state: EarlyStoppingState, metric: float) -> EarlyStoppingState:
        """The state after one evaluation; pure (neither `self.state` nor `state` change).

        Example:
            >>> es = EarlyStopping(patience=1)
            >>> es.update(es.update(es.init(), 1.0), 1.0).stop
            True
        """
        value = metric_value("EarlyStopping.update", metric)
        if state.stop:  # the decision is final: later evaluations change nothing
            return dataclasses.replace(state, evaluations=state.evaluations + 1)
        if is_better(value, state.best, self.mode, "abs", self.min_delta):
            return EarlyStoppingState(best=value, best_evaluation=state.evaluations, evaluations=state.evaluations + 1, stop=False)
        bad_evals = state.bad_evals + 1
        return dataclasses.replace(
            state, bad_evals=bad_evals, evaluations=state.evaluations + 1, stop=state.stop or bad_evals >= self.patience
        )

    def observe(self, metric: float, model: torch.nn.Module | None = None) -> bool:
        """Record one evaluation; True when training should stop (then the best weights are back in `model`).

        Args:
            metric: the evaluation (a finite number or one-element tensor).
            model: the model evaluated; needed for `restore_best` to keep and restore weights.

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
        old = self.state
        self.state = self.update(old, metric)
        if self.restore_best and model is not None and self.state.best_evaluation == old.evaluations:
            self.best_weights = cpu_copy(model.state_dict())
        if self.state.stop and not old.stop and self.restore_best and model is not None:
            self.restore(model)
        return self.state.stop

    @property
    def should_stop(self) -> bool:
        """Whether the last evaluation asked to stop.

        Example:
            >>> EarlyStopping().should_stop
            False
        """
        return self.state.stop

    def restore(self, model: torch.nn.Module) -> None:
        """Put the best evaluation's weights back into `model` (copied to the model's devices).

        Example:
            >>> import torch
            >>> import lrkit
            >>> try:
            ...     EarlyStopping().restore(torch.nn.Linear(1, 1))
            ... except lrkit.ControlError as e:
            ...     print(str(e)[:59])
            EarlyStopping.restore: parameter 'model' needs weights kept
        """
        if self.best_weights is None:
            requirement = "needs weights kept by observe(metric, model) with restore_best=True"
            raise ControlError(bad("EarlyStopping.restore", "model", requirement, "none kept"))
        model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """The state and the kept weights, for a checkpoint.

        Example:
            >>> sorted(EarlyStopping().state_dict())
            ['best_weights', 'state']
        """
        return {"state": dataclasses.asdict(self.state), "best_weights": self.best_weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved.

        Example:
            >>> a, b = EarlyStopping(), EarlyStopping()
            >>> _ = a.observe(0.5)
            >>> b.load_state_dict(a.state_dict())
            >>> b.state == a.state
            True
        """
        missing = {"state", "best_weights"} - set(state_dict)
        if missing:
            raise ControlError(bad("EarlyStopping.load_state_dict", "state_dict", f"lacks {sorted(missing)}", sorted(state_dict)))
        self.state = dataclasses.replace(self.init(), **state_dict["state"])
        self.best_weights = state_dict["best_weights"]
