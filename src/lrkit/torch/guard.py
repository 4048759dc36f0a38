"""`lrkit.Guard`: survive a diverging run by skipping bad batches and, when divergence repeats, rolling back with a lower lr.

The loop calls `if guard.check(loss): continue` once per batch, before `backward()`
(or after it with `grads=True` to inspect gradients too); either way the batch has not
touched the weights yet. The guard keeps a CPU snapshot of model, optimizer and
scheduler every `snapshot_every` good steps. What it does on an incident (a non-finite
loss or gradient, or a loss spike far above the robust running level) is in `Guard`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lrkit import validate
from lrkit.analysis.diagnose import spike_limit
from lrkit.errors import ControlError, DivergenceError
from lrkit.torch._tensors import all_finite, cpu_copy
from lrkit.torch.scheduler import Scheduler

_MIN_HISTORY = 20  # losses before the spike test uses its full sensitivity
_EARLY_HISTORY = 1  # losses before the start-of-run spike test is judged
_FLOOR = 1e-3  # a deviation is at least this fraction of the level (a flat loss still has a unit) ...
_EARLY_FLOOR = 0.25  # ... and in the first _MIN_HISTORY steps at least this one
_REFRESH = 25  # good steps between recomputations of the running median and deviation
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


@dataclasses.dataclass
class _Snapshot:
    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scale: float  # the guard's cumulative lr cut when taken
    window: list[float]  # the recent losses the spike test uses


class Guard:
    """Detect divergence; skip an isolated bad batch, roll back and cut the lr only when it repeats.

    The policy, with the defaults:

    - An incident is a non-finite loss, a non-finite gradient (`grads=True`) or a spike:
      a loss more than `spike` (20) robust deviations above the median of the last
      `window` (100) good losses and twice as far above it as any of them. In the first
      20 steps the deviation is at least 25% of the median, so a spike at the start
      (above about 6x the median of the losses so far) is caught from the 2nd loss on.
    - An *isolated* incident costs no lr: with finite weights the batch is skipped
      ("skip": the batch never touched the weights); with non-finite weights (a previous
      update overflowed) the last snapshot is put back at the same lr ("restore").
    - An incident is *repeated* when the run has not yet recovered from the previous
      one: fewer than `repeat_window` (20) good steps since it, plus, after a restore,
      the good steps the restore undid (the run must first get past where it failed).
      Only a repeated incident rolls back to the snapshot, multiplies the lr by `cut`
      (0.5) and counts toward `max_rollbacks` (5); one more raises `lrkit.DivergenceError`.
    - Snapshots come every `snapshot_every` (100) good steps, skips included, and are
      postponed while the run has not recovered, so a snapshot never holds a run
      mid-divergence.
    - Under `torch.distributed` each rank's verdict is all-reduced (the most severe wins),
      so all ranks skip, restore or roll back together.

    So a NaN loss every 50 steps, or at a few isolated steps, costs only those batches;
    a real divergence (lr far too high) repeats at once and ends in cut lrs, or in a
    `DivergenceError` naming the steps. `bench/guard_recovery.py` prints the figures.

    Args:
        model: the model trained.
        optimizer: its optimizer.
        scheduler: an `lrkit.Scheduler` (the cut goes into its `multiplier`, so the
            schedule keeps its shape), another scheduler with `state_dict` (saved and
            restored; the cut is applied to the groups' lr), or None.
        snapshot_every: good steps between CPU snapshots; a rollback loses at most about this many.
        spike: the spike threshold in robust deviations (1.4826 x the MAD) of the last
            `window` good losses (`lrkit.analysis.diagnose.spike_limit`); None only checks
            finiteness. Scale- and shift-free, so it works for negative losses too.
        window: how many recent good losses the running estimate uses (>= 20).
        cut: factor applied to the lr at each rollback, in (0, 1].
        max_rollbacks: rollbacks (repeated incidents) allowed; one more raises `lrkit.DivergenceError`.
        repeat_window: good steps after an incident before the run counts as recovered (>= 1).

    Example:
        >>> import torch, lrkit
        >>> model = torch.nn.Linear(1, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> guard = lrkit.Guard(model, opt, snapshot_every=10)
        >>> x, y = torch.ones(4, 1), torch.zeros(4, 1)
        >>> for step in range(30):
        ...     opt.zero_grad()
        ...     loss = (model(x) - y).pow(2).mean() * (float("nan") if step in (3, 25, 26) else 1.0)
        ...     if guard.check(loss):
        ...         continue
        ...     loss.backward()
        ...     opt.step()
        >>> [(i.step, i.action, i.restored_step, i.lr_after) for i in guard.incidents]
        [(3, 'skip', 3, 0.1), (25, 'skip', 25, 0.1), (26, 'rollback', 24, 0.05)]
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        *,
        snapshot_every: int = 100,
        spike: float | None = 20.0,
        window: int = 100,
        cut: float = 0.5,
        max_rollbacks: int = 5,
        repeat_window: int = 20,
    ) -> None:
        _check_objects(model, optimizer, scheduler)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self._params = list(model.parameters())
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
        self._limit = math.inf
        self._since_snapshot = 0
        self._since_refresh = 0
        self._unrecovered = 0  # good steps still needed before the run counts as recovered
        self._snapshot = self._take_snapshot()

    @property
    def rollbacks(self) -> int:
        """How many repeated incidents rolled back with a cut lr (what `max_rollbacks` bounds).

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(1, 1)
            >>> Guard(model, torch.optim.SGD(model.parameters(), lr=0.1)).rollbacks
            0
        """
        return sum(i.action == "rollback" for i in self.incidents)

    # -- the loop's call -------------------------------------------------------
    def check(self, loss: float | torch.Tensor, grads: bool = False) -> bool:
        """True when the caller must skip this batch (an incident: see `Guard` for what was done).

        Args:
            loss: this batch's loss (a number or a one-element tensor).
            grads: also check the gradients for NaN/inf (call after `backward()`).

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(1, 1)
            >>> guard = Guard(model, torch.optim.SGD(model.parameters(), lr=0.1))
            >>> guard.check(torch.tensor(0.5)), guard.check(float("inf")), guard.scale
            (False, True, 1.0)
            >>> guard.check(float("nan")), guard.scale, guard.incidents[-1].action
            (True, 0.5, 'rollback')
        """
        value = validate.scalar("Guard.check", "loss", loss, ControlError)  # NaN and inf are what the guard is for
        kind, weights_bad = _agree(self._detect(value, grads), self._params)
        step, self.step = self.step, self.step + 1
        if kind is not None:
            self._handle(step, kind, value, weights_bad)
            return True
        if self._since_snapshot >= self.snapshot_every and self._unrecovered == 0:
            self._snapshot = self._take_snapshot(step)
            self._since_snapshot = 0
        self._since_snapshot += 1
        self._unrecovered = max(0, self._unrecovered - 1)
        self._remember(value)
        return False

    def _detect(self, value: float, grads: bool) -> str | None:
        if not math.isfinite(value):
            return "nonfinite_loss"
        if value > self._limit:
            return "spike"
        if grads and not all_finite([p.grad for p in self._params if p.grad is not None]):
            return "nonfinite_grad"
        return None

    def _remember(self, value: float) -> None:
        self._losses.append(value)
        self._since_refresh += 1
        n = len(self._losses)
        if self.spike is not None and n >= _EARLY_HISTORY and (n <= _MIN_HISTORY or self._since_refresh >= _REFRESH):
            self._limit = _limit(self._losses, self.spike)
            self._since_refresh = 0

    # -- incidents -------------------------------------------------------------
    def _handle(self, step: int, kind: str, value: float, weights_bad: bool) -> None:
        """Skip, restore or roll back (the policy of `Guard`), and record the incident."""
        lr_before = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.zero_grad(set_to_none=True)  # the batch's gradients go with it
        if self._unrecovered > 0:
            if self.rollbacks >= self.max_rollbacks:
                raise DivergenceError(self._give_up_message(step, kind, value))
            action = "rollback"
        else:
            action = "restore" if weights_bad else "skip"
        restored, lost = (step, 0) if action == "skip" else self._restore(cut=action == "rollback")
        self._unrecovered = self.repeat_window + lost
        lr_after = float(self.optimizer.param_groups[0]["lr"])
        self.incidents.append(Incident(step, kind, value, restored, lost, lr_before, lr_after, action))

    def _restore(self, cut: bool) -> tuple[int, int]:
        """Put the snapshot back (lowering the lr by `cut` if asked); the snapshot's step and the good steps undone."""
        snap = self._snapshot
        self.model.load_state_dict(snap.model)
        # restore from a fresh copy: load_state_dict may keep our tensors, and later steps would then write into the snapshot
        self.optimizer.load_state_dict(cpu_copy(snap.optimizer))
        self.optimizer.zero_grad(set_to_none=True)
        self._restore_schedule(snap, self.cut if cut else 1.0)
        self._losses = collections.deque(snap.window, maxlen=self.window)
        self._limit = _limit(self._losses, self.spike) if self.spike is not None and len(snap.window) >= _EARLY_HISTORY else math.inf
        lost, self._since_snapshot, self._since_refresh = self._since_snapshot, 0, 0
        return snap.step, lost

    def _restore_schedule(self, snap: _Snapshot, cut: float) -> None:
        """Put back the scheduler's state, then set the lr `cut` times what it was before the incident."""
        self.scale *= cut
        if isinstance(self.scheduler, Scheduler):
            multiplier = self.scheduler.multiplier
            self.scheduler.load_state_dict(cpu_copy(snap.scheduler))
            self.scheduler.multiplier = multiplier * cut
            self.scheduler.apply()
            return
        if self.scheduler is not None:
            self.scheduler.load_state_dict(cpu_copy(snap.scheduler))
        for group in self.optimizer.param_groups:  # the restored lrs carry the scale of the snapshot's time
            group["lr"] = group["lr"] * (self.scale / snap.scale)

    def _give_up_message(self, step: int, kind: str, value: float) -> str:
        history = ", ".join(f"{i.kind} at step {i.step} ({i.action})" for i in self.incidents) or "none"
        lr = float(self.optimizer.param_groups[0]["lr"])
        return (
            f"Guard: training diverged again at step {step} ({kind}, loss={value:.4g}) after {self.rollbacks} rollbacks "
            f"(max_rollbacks={self.max_rollbacks}; incidents: {history}); the lr is already cut to {lr:.3g} (x{self.scale:.3g}). "
            "Try a lower lr or a warmup, gradient clipping (torch.nn.utils.clip_grad_norm_), checking the data near these steps, "
            "or a larger `spike` threshold if these losses are genuine."
        )

    # -- snapshots -------------------------------------------------------------
    def _take_snapshot(self, step: int = 0) -> _Snapshot:
        return _Snapshot(
            step=step,
            model=cpu_copy(self.model.state_dict()),
            optimizer=cpu_copy(self.optimizer.state_dict()),
            scheduler=cpu_copy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            scale=self.scale,
            window=list(self._losses),
        )

    def snapshot(self) -> None:
        """Take a snapshot now (e.g. after a good validation), resetting the `snapshot_every` count.

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(1, 1)
            >>> guard = Guard(model, torch.optim.SGD(model.parameters(), lr=0.1))
            >>> guard.snapshot()
        """
        self._snapshot = self._take_snapshot(self.step)
        self._since_snapshot = 0


def _limit(losses: Sequence[float], spike: float) -> float:
    """The spike limit of the recent good losses; tolerant at the start of a run, when losses still fall fast."""
    floor = _EARLY_FLOOR if len(losses) < _MIN_HISTORY else _FLOOR
    return float(spike_limit(np.fromiter(losses, np.float64, len(losses)), spike, floor=floor))


def _agree(kind: str | None, params: Sequence[torch.Tensor]) -> tuple[str | None, bool]:
    """This rank's verdict (incident kind, weights non-finite), all-reduced under torch.distributed so every rank acts alike."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
    if not distributed:
        return kind, kind is not None and not all_finite(params)
    device = params[0].device if params and torch.distributed.get_backend() != "gloo" else torch.device("cpu")
    code = 0 if kind is None else KINDS.index(kind) + 1
    vote = torch.tensor([code, 0], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(vote, op=torch.distributed.ReduceOp.MAX)
    if int(vote[0]) == 0:
        return None, False
    vote[1] = int(not all_finite(params))
    torch.distributed.all_reduce(vote, op=torch.distributed.ReduceOp.MAX)
    return KINDS[int(vote[0]) - 1], bool(vote[1])


def _check_objects(model: Any, optimizer: Any, scheduler: Any) -> None:
    validate.instance("Guard", "model", model, ControlError, torch.nn.Module, "a torch.nn.Module")
    validate.instance("Guard", "optimizer", optimizer, ControlError, torch.optim.Optimizer, "a torch.optim.Optimizer")
    if scheduler is not None and not all(callable(getattr(scheduler, m, None)) for m in ("state_dict", "load_state_dict")):
        validate.wrong_type("Guard", "scheduler", "must be None or have state_dict() and load_state_dict()", scheduler, ControlError)
