"""The guard's policy without any framework: its arguments, the loss window and spike limit, the incident decision.

`lrkit.Guard` (torch) and `lrkit.keras.Guard` differ only in how they look at a batch and
how they copy and put back state; both inherit `GuardPolicy`, which decides. The loop of
either guard is:

    kind = policy.detect(loss)            # or a framework check of the gradients / weights
    if kind is None:  policy.good(loss)   # and, when `policy.snapshot_due`, a snapshot + `policy.snapshot_taken()`
    else:             action = policy.act(step, kind, loss, restore=..., lr=...)   # may raise DivergenceError
                      ... put the snapshot back (unless "skip"), then `policy.restored(window)` ...
                      policy.record(Incident(...))

Example:
    >>> p = GuardPolicy("Guard", snapshot_every=10)
    >>> for loss in [1.0, 1.1, 0.9, 1.0]:
    ...     p.good(loss)
    >>> p.detect(50.0), p.detect(float("nan")), p.detect(1.05)
    ('spike', 'nonfinite_loss', None)
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from lrkit import validate
from lrkit.analysis.diagnose import spike_limit
from lrkit.errors import ControlError, DivergenceError

MIN_HISTORY = 20  # losses before the spike test uses its full sensitivity (and the least `window`)
EARLY_HISTORY = 1  # losses before the start-of-run spike test is judged
FLOOR = 1e-3  # a deviation is at least this fraction of the level (a flat loss still has a unit) ...
EARLY_FLOOR = 0.25  # ... and in the first MIN_HISTORY steps at least this one
REFRESH = 25  # good steps between recomputations of the running median and deviation
KINDS = ("spike", "nonfinite_grad", "nonfinite_loss")  # the incident kinds, by severity (the order of the distributed vote)
ACTIONS = ("skip", "restore", "rollback")


@dataclasses.dataclass(frozen=True)
class Incident:
    """One incident: what was detected, when, what the guard did, what it cost, and the lr change.

    Attributes:
        step: the guard's step (checks so far, from 0) at detection.
        kind: "nonfinite_loss", "nonfinite_grad" or "spike".
        loss: the offending loss.
        restored_step: the step of the snapshot put back (the incident's own step for a skip).
        steps_lost: good steps undone (0 for a skip; at most `snapshot_every` otherwise).
        lr_before: the first group's lr before the incident.
        lr_after: the first group's lr after it (lower only after a "rollback").
        action: "skip" (the batch is dropped, nothing else changes), "restore" (the weights
            were no longer finite: the snapshot is put back, the lr kept) or "rollback"
            (a repeated incident: the snapshot is put back and the lr cut).

    Example:
        >>> Incident(7, "spike", 1e6, 0, 7, 0.1, 0.05).steps_lost
        7
    """

    step: int
    kind: str
    loss: float
    restored_step: int
    steps_lost: int
    lr_before: float
    lr_after: float
    action: str = "rollback"


def spike_threshold(losses: Sequence[float], spike: float) -> float:
    """The spike limit of the recent good losses; tolerant at the start of a run, when losses still fall fast.

    Example:
        >>> spike_threshold([1.0, 1.0], spike=20.0), spike_threshold([1.0] * 20, spike=20.0)
        (6.0, 1.02)
    """
    floor = EARLY_FLOOR if len(losses) < MIN_HISTORY else FLOOR
    return float(spike_limit(np.fromiter(losses, np.float64, len(losses)), spike, floor=floor))


class GuardPolicy:
    """What a guard decides, whatever it guards: the checked arguments, the loss window, skip / restore / rollback.

    The policy is the one documented in `lrkit.Guard`. The attributes `step` (checks so far),
    `scale` (the cumulative lr cut) and `incidents` are the guard's public record.

    Args:
        func: the guard's name in error messages.
        snapshot_every, spike, window, cut, max_rollbacks, repeat_window: those of `lrkit.Guard`.

    Example:
        >>> p = GuardPolicy("Guard")
        >>> p.act(0, "nonfinite_loss", math.nan, restore=False, lr=0.1)  # isolated: the batch is skipped
        'skip'
        >>> p.record(Incident(0, "nonfinite_loss", math.nan, 0, 0, 0.1, 0.1, "skip"))
        >>> p.act(1, "nonfinite_loss", math.nan, restore=False, lr=0.1), p.scale  # repeated: roll back and cut
        ('rollback', 0.5)
    """

    def __init__(self, func: str, *, snapshot_every: int = 100, spike: float | None = 20.0, window: int = 100, cut: float = 0.5,
                 max_rollbacks: int = 5, repeat_window: int = 20) -> None:  # fmt: skip
        self._func = func
        self.snapshot_every = validate.integer(func, "snapshot_every", snapshot_every, ControlError)
        self.spike = None if spike is None else validate.positive(func, "spike", spike, ControlError)
        self.window = validate.integer(func, "window", window, ControlError, minimum=MIN_HISTORY)
        self.cut = validate.in_range(func, "cut", cut, ControlError, 0.0, 1.0, open_low=True)
        self.max_rollbacks = validate.integer(func, "max_rollbacks", max_rollbacks, ControlError, minimum=0)
        self.repeat_window = validate.integer(func, "repeat_window", repeat_window, ControlError)
        self.step = 0
        self.scale = 1.0
        self.incidents: list[Incident] = []
        self._losses: collections.deque[float] = collections.deque(maxlen=self.window)
        self._limit = math.inf
        self._since_snapshot = 0  # good steps since the snapshot: what putting it back undoes
        self._since_refresh = 0
        self._unrecovered = 0  # good steps still needed before the run counts as recovered

    @property
    def rollbacks(self) -> int:
        """How many repeated incidents rolled back with a cut lr (what `max_rollbacks` bounds).

        Example:
            >>> GuardPolicy("Guard").rollbacks
            0
        """
        return sum(i.action == "rollback" for i in self.incidents)

    def detect(self, value: float) -> str | None:
        """The incident a loss is by itself ("nonfinite_loss", "spike"), or None.

        Example:
            >>> GuardPolicy("Guard").detect(float("inf"))
            'nonfinite_loss'
        """
        if not math.isfinite(value):
            return "nonfinite_loss"
        return "spike" if value > self._limit else None

    def good(self, value: float) -> None:
        """Count a good step: the run recovers a step, the loss joins the window (the limit refreshes now and then).

        Example:
            >>> p = GuardPolicy("Guard")
            >>> p.good(1.0); p.detect(10.0)
            'spike'
        """
        self._since_snapshot += 1
        self._unrecovered = max(0, self._unrecovered - 1)
        self._losses.append(value)
        self._since_refresh += 1
        n = len(self._losses)
        if self.spike is not None and n >= EARLY_HISTORY and (n <= MIN_HISTORY or self._since_refresh >= REFRESH):
            self._limit = spike_threshold(self._losses, self.spike)
            self._since_refresh = 0

    @property
    def snapshot_due(self) -> bool:
        """Whether the state now is worth a snapshot: `snapshot_every` good steps since the last, and the run recovered.

        Example:
            >>> p = GuardPolicy("Guard", snapshot_every=1)
            >>> p.snapshot_due, (p.good(1.0), p.snapshot_due)[1]
            (False, True)
        """
        return self._since_snapshot >= self.snapshot_every and self._unrecovered == 0

    def snapshot_taken(self) -> list[float]:
        """Note that the guard took a snapshot now; the loss window to keep with it.

        Example:
            >>> p = GuardPolicy("Guard"); p.good(1.0)
            >>> p.snapshot_taken(), p.snapshot_due
            ([1.0], False)
        """
        self._since_snapshot = 0
        return list(self._losses)

    def act(self, step: int, kind: str, value: float, *, restore: bool, lr: float, clipping: str = "torch.nn.utils.clip_grad_norm_") -> str:
        """The action for an incident: "rollback" when repeated (the scale is cut), else "restore" if `restore`, else "skip".

        Raises `lrkit.DivergenceError` past `max_rollbacks` (`value`: the loss, `lr`: the current lr, `clipping`: how to
        clip in this framework: all three for the message).

        Example:
            >>> GuardPolicy("Guard").act(0, "spike", 50.0, restore=True, lr=0.1)
            'restore'
        """
        if self._unrecovered == 0:
            return "restore" if restore else "skip"
        if self.rollbacks >= self.max_rollbacks:
            raise DivergenceError(self._give_up_message(step, kind, value, lr, clipping))
        self.scale *= self.cut
        return "rollback"

    def restored(self, window: Sequence[float]) -> int:
        """Note that the snapshot (with its loss `window`) was put back; the good steps that undid.

        Example:
            >>> p = GuardPolicy("Guard"); p.good(1.0); p.good(1.0)
            >>> p.restored([]), p.detect(100.0)
            (2, None)
        """
        self._losses = collections.deque(window, maxlen=self.window)
        self._limit = spike_threshold(self._losses, self.spike) if self.spike is not None and len(window) >= EARLY_HISTORY else math.inf
        lost, self._since_snapshot, self._since_refresh = self._since_snapshot, 0, 0
        return lost

    def record(self, incident: Incident) -> None:
        """Keep the incident; the run must now recover for `repeat_window` good steps plus those it lost.

        Example:
            >>> p = GuardPolicy("Guard"); p.record(Incident(3, "spike", 9.0, 3, 0, 0.1, 0.1, "skip"))
            >>> [i.step for i in p.incidents]
            [3]
        """
        self._unrecovered = self.repeat_window + incident.steps_lost
        self.incidents.append(incident)

    def _give_up_message(self, step: int, kind: str, value: float, lr: float, clipping: str) -> str:
        history = ", ".join(f"{i.kind} at step {i.step} ({i.action})" for i in self.incidents) or "none"
        return (
            f"{self._func}: training diverged again at step {step} ({kind}, loss={value:.4g}) after {self.rollbacks} rollbacks "
            f"(max_rollbacks={self.max_rollbacks}; incidents: {history}); the lr is already cut to {lr:.3g} (x{self.scale:.3g}). "
            f"Try a lower lr or a warmup, gradient clipping ({clipping}), checking the data near these steps, "
            "or a larger `spike` threshold if these losses are genuine."
        )
