"""`lrkit.Plateau`: ReduceLROnPlateau as a pure controller that composes with any schedule.

The controller is a frozen value; its state is a small frozen record of plain
numbers, advanced by the pure `update(state, metric, lr)`. `lrkit.Scheduler`
multiplies the schedule's value by `state.scale`, so warmup, cosine, cycles and a
plateau compose: `lr(t) = schedule(t) * scale`. On a constant schedule the lrs are
exactly those of `torch.optim.lr_scheduler.ReduceLROnPlateau` with the same arguments.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from lrkit.control._common import MODES, THRESHOLD_MODES, checked, is_better, metric_value, worst
from lrkit.errors import ControlError, bad
from lrkit.schedules import _check


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """The plateau controller's state: plain numbers, saved by `dataclasses.asdict`.

    Attributes:
        best: the best metric so far (+inf / -inf before the first evaluation).
        bad_evals: evaluations since the last improvement (reset during cooldown).
        cooldown: evaluations left before bad evaluations count again.
        scale: the multiplier applied to the schedule's value (1.0 until the first change).
        evaluations: metrics seen so far.
        changes: how many times the lr was changed.

    Example:
        >>> PlateauState(best=float("inf")).scale
        1.0
    """

    best: float
    bad_evals: int = 0
    cooldown: int = 0
    scale: float = 1.0
    evaluations: int = 0
    changes: int = 0


@dataclasses.dataclass(frozen=True)
class Plateau:
    """Scale the lr by `factor` when the metric stops improving for `patience` evaluations.

    The rule is that of `torch.optim.lr_scheduler.ReduceLROnPlateau`: an evaluation
    improves when `metric < best * (1 - threshold)` ("rel") or `metric < best - threshold`
    ("abs") in mode "min" (mirrored in mode "max"); after more than `patience` evaluations
    without improvement the lr becomes `max(lr * factor, min_lr)` (unless that changes it
    by no more than `eps`), then `cooldown` evaluations are ignored. Keras' ReduceLROnPlateau
    acts one evaluation sooner (after `patience` bad ones): Keras' `patience=p` is `patience=p - 1` here.

    `factor > 1` makes the lr *rise* when progress stalls, bounded by `max_lr`
    (required then). `min_lr` / `max_lr` bound the first group's lr at the moment of a
    change; afterwards the schedule shapes the lr times the kept scale.

    Args:
        mode: "min" (a loss) or "max" (an accuracy).
        factor: multiplier applied on a plateau; > 0 and != 1.
        patience: evaluations without improvement tolerated before a change (>= 0).
        threshold: the least improvement that counts (>= 0).
        threshold_mode: "rel" (relative to best) or "abs".
        cooldown: evaluations ignored after a change (>= 0).
        min_lr: the lowest lr a reduction may produce.
        max_lr: the highest lr a rise may produce (must be finite when `factor > 1`).
        eps: changes smaller than this are not made.

    Example:
        >>> p = Plateau(patience=1)
        >>> s = p.init()
        >>> for loss in [1.0, 0.5, 0.5, 0.5]:
        ...     s = p.update(s, loss, lr=0.1)
        >>> round(s.scale, 12), s.best, s.changes
        (0.1, 0.5, 1)
    """

    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    max_lr: float = math.inf
    eps: float = 1e-8

    def __post_init__(self) -> None:
        name = "Plateau"
        checked(_check.choice, name, "mode", self.mode, MODES)
        checked(_check.choice, name, "threshold_mode", self.threshold_mode, THRESHOLD_MODES)
        factor = checked(_check.positive, name, "factor", self.factor)
        if factor == 1.0:
            raise ControlError(bad(name, "factor", "must differ from 1 (< 1 lowers the lr on a plateau, > 1 raises it)", self.factor))
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "patience", checked(_check.integer, name, "patience", self.patience, minimum=0))
        object.__setattr__(self, "cooldown", checked(_check.integer, name, "cooldown", self.cooldown, minimum=0))
        object.__setattr__(self, "threshold", checked(_check.non_negative, name, "threshold", self.threshold))
        object.__setattr__(self, "min_lr", checked(_check.non_negative, name, "min_lr", self.min_lr))
        object.__setattr__(self, "eps", checked(_check.non_negative, name, "eps", self.eps))
        object.__setattr__(self, "max_lr", self._checked_max_lr())

    def _checked_max_lr(self) -> float:
        value = self.max_lr
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value <= self.min_lr:
            raise ControlError(bad("Plateau", "max_lr", f"must be a number > min_lr ({self.min_lr})", value))
        if self.factor > 1 and math.isinf(value):
            raise ControlError(bad("Plateau", "max_lr", "must be finite when factor > 1 (it bounds the rising lr)", value))
        return float(value)

    def init(self) -> PlateauState:
        """The state before any evaluation.

        Example:
            >>> Plateau(mode="max").init().best
            -inf
        """
        return PlateauState(best=worst(self.mode))

    def update(self, state: PlateauState, metric: float, lr: float) -> PlateauState:
        """The state after one evaluation; pure (the old state is left as it was).

        Args:
            state: the current state (from `init` or a previous `update`).
            metric: the evaluation (finite; NaN, inf and non-numbers raise ControlError).
            lr: the lr *before* the plateau scale (the schedule's value times any
                other multiplier), which `min_lr` / `max_lr` are compared with.

        Example:
            >>> p = Plateau(factor=2.0, patience=0, max_lr=0.3)
            >>> s = p.init()
            >>> for acc in [0.5, 0.5, 0.5, 0.5]:
            ...     s = p.update(s, acc, lr=0.1)
            >>> round(s.scale, 12), s.changes
            (3.0, 2)
        """
        value = metric_value("Plateau.update", metric)
        base = checked(_check.non_negative, "Plateau.update", "lr", lr)
        improved = is_better(value, state.best, self.mode, self.threshold_mode, self.threshold)
        best, bad_evals = (value, 0) if improved else (state.best, state.bad_evals + 1)
        cooldown = state.cooldown
        if cooldown > 0:
            cooldown, bad_evals = cooldown - 1, 0  # bad evaluations during cooldown do not count
        scale, changes = state.scale, state.changes
        if bad_evals > self.patience:
            new_scale = self._changed_scale(scale, base)
            scale, changes = new_scale, changes + (new_scale != scale)
            cooldown, bad_evals = self.cooldown, 0
        return PlateauState(
            best=best, bad_evals=bad_evals, cooldown=cooldown, scale=scale, evaluations=state.evaluations + 1, changes=changes
        )

    def _changed_scale(self, scale: float, base: float) -> float:
        """The scale after a plateau: lr moved by `factor`, clipped to [min_lr, max_lr], unless the move is within eps."""
        old = base * scale
        if self.factor < 1:
            new = max(old * self.factor, self.min_lr)
            moved = old - new > self.eps
        else:
            new = min(old * self.factor, self.max_lr)
            moved = new - old > self.eps
        return new / base if moved else scale
