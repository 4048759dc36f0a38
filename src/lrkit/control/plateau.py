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
from collections.abc import Callable
from typing import Any

from lrkit import validate
from lrkit.control._common import MODES, THRESHOLD_MODES, is_better, worst
from lrkit.errors import ControlError


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
        threshold: the least improvement that counts (>= 0; in "rel" mode a fraction of
            the best metric, < 1, since `best * (1 - threshold)` could never be beaten).
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
        validate.choice("Plateau", "mode", self.mode, ControlError, MODES)
        validate.choice("Plateau", "threshold_mode", self.threshold_mode, ControlError, THRESHOLD_MODES)
        self._check("factor", validate.positive)
        if self.factor == 1.0:
            requirement = "must differ from 1 (< 1 lowers the lr on a plateau, > 1 raises it)"
            validate.fail("Plateau", "factor", requirement, self.factor, ControlError)
        self._check("patience", validate.integer, minimum=0)
        self._check("cooldown", validate.integer, minimum=0)
        for field in ("threshold", "min_lr", "eps"):
            self._check(field, validate.non_negative)
        if self.threshold_mode == "rel" and self.threshold >= 1:  # "min": metric < best * (1 - threshold) can never hold for a loss >= 0
            requirement = "must be < 1 in threshold_mode 'rel' (it is a fraction of the best metric; use 'abs' for absolute amounts)"
            validate.fail("Plateau", "threshold", requirement, self.threshold, ControlError)
        self._check("max_lr", validate.number, finite=False)  # inf: no upper bound
        if math.isnan(self.max_lr) or self.max_lr <= self.min_lr:
            validate.fail("Plateau", "max_lr", f"must be a number > min_lr ({self.min_lr})", self.max_lr, ControlError)
        if self.factor > 1 and math.isinf(self.max_lr):
            validate.fail("Plateau", "max_lr", "must be finite when factor > 1 (it bounds the rising lr)", self.max_lr, ControlError)

    def _check(self, field: str, check: Callable[..., Any], **kwargs: Any) -> None:
        """Replace `field` by what the `lrkit.validate` function `check` makes of it (raising ControlError)."""
        object.__setattr__(self, field, check("Plateau", field, getattr(self, field), ControlError, **kwargs))

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
        value = validate.scalar("Plateau.update", "metric", metric, ControlError, finite=True)
        base = validate.non_negative("Plateau.update", "lr", lr, ControlError)
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
