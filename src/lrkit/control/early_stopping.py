"""`lrkit.control.EarlyStopping`: the pure decision to stop when the metric stops improving.

The decision is a pure function of a small frozen state (`update`); the object
around it keeps that state for a loop's `observe(metric)`. Keeping and restoring
the best weights is the torch layer's part: `lrkit.EarlyStopping`
(`lrkit.torch.early_stopping`) adds it on top of this class.

Example:
    >>> es = EarlyStopping(patience=1)
    >>> es.observe(1.0), es.observe(1.0)
    (False, True)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from lrkit import validate
from lrkit.control._common import MODES, is_better, worst
from lrkit.errors import ControlError


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

    Call `observe(metric)` once per evaluation; it returns True when the loop should
    stop. This is the decision alone: `lrkit.EarlyStopping` also puts back the best weights.

    Args:
        mode: "min" (a loss) or "max" (an accuracy).
        patience: evaluations without improvement before stopping (>= 1).
        min_delta: the least absolute improvement that counts (>= 0).

    Example:
        >>> stopper = EarlyStopping(patience=2)
        >>> [stopper.observe(loss) for loss in [1.0, 0.8, 0.9, 0.85]]
        [False, False, False, True]
        >>> stopper.state.best, stopper.state.best_evaluation
        (0.8, 1)
    """

    saved: ClassVar[tuple[str, ...]] = ("state",)  # the keys of `state_dict()`

    def __init__(self, mode: str = "min", patience: int = 10, min_delta: float = 0.0) -> None:
        self.mode = validate.choice("EarlyStopping", "mode", mode, ControlError, MODES)
        self.patience = validate.integer("EarlyStopping", "patience", patience, ControlError)
        self.min_delta = validate.non_negative("EarlyStopping", "min_delta", min_delta, ControlError)
        self.state = self.init()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, patience={self.patience}, min_delta={self.min_delta})"

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
        value = validate.scalar("EarlyStopping.update", "metric", metric, ControlError, finite=True)
        if state.stop:  # the decision is final: later evaluations change nothing
            return dataclasses.replace(state, evaluations=state.evaluations + 1)
        if is_better(value, state.best, self.mode, "abs", self.min_delta):
            return EarlyStoppingState(best=value, best_evaluation=state.evaluations, evaluations=state.evaluations + 1, stop=False)
        bad_evals = state.bad_evals + 1
        return dataclasses.replace(state, bad_evals=bad_evals, evaluations=state.evaluations + 1, stop=bad_evals >= self.patience)

    def observe(self, metric: float) -> bool:
        """Record one evaluation (a finite number or one-element tensor); True when training should stop.

        Example:
            >>> stopper = EarlyStopping(patience=1)
            >>> stopper.observe(0.5), stopper.observe(0.7)
            (False, True)
        """
        self.state = self.update(self.state, metric)
        return self.state.stop

    @property
    def should_stop(self) -> bool:
        """Whether the last evaluation asked to stop.

        Example:
            >>> EarlyStopping().should_stop
            False
        """
        return self.state.stop

    def state_dict(self) -> dict[str, Any]:
        """The decision's state, for a checkpoint.

        Example:
            >>> EarlyStopping().state_dict()["state"]["evaluations"]
            0
        """
        return {"state": dataclasses.asdict(self.state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved.

        Example:
            >>> a, b = EarlyStopping(), EarlyStopping()
            >>> _ = a.observe(0.5)
            >>> b.load_state_dict(a.state_dict())
            >>> b.state == a.state
            True
        """
        func = "EarlyStopping.load_state_dict"
        missing = set(self.saved) - set(validate.instance(func, "state_dict", state_dict, ControlError, dict, "a dict"))
        if missing:
            validate.fail(func, "state_dict", f"lacks {sorted(missing)}", sorted(state_dict), ControlError)
        self.state = dataclasses.replace(self.init(), **state_dict["state"])
