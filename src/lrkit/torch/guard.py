"""`lrkit.Guard`: survive a diverging run by rolling back to the last good state with a lower lr.

The loop calls `if guard.check(loss): continue` once per batch (after backward
with `grads=True` to inspect gradients too). The guard keeps a CPU snapshot of
model, optimizer and scheduler every `snapshot_every` good steps; on a non-finite
loss or gradient, or a loss spike far above the robust running level, it puts the
snapshot back, multiplies the lr by `cut`, and tells the loop to skip the batch.
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
from lrkit.torch._tensors import cpu_copy
from lrkit.torch.scheduler import Scheduler

_MIN_HISTORY = 20  # losses needed before spikes are judged
_REFRESH = 25  # good steps between recomputations of the running median and deviation


@dataclasses.dataclass(frozen=True)
class Incident:
    """One rollback: what was detected, when, what it cost, and the lr change.

    Attributes:
        step: the guard's step (checks so far, from 0) at detection.
        kind: "nonfinite_loss", "nonfinite_grad" or "spike".
        loss: the offending loss.
        restored_step: the step of the snapshot put back.
        steps_lost: good steps undone by the rollback (at most `snapshot_every`).
        lr_before: the first group's lr before the rollback.
        lr_after: the first group's lr after it.

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


@dataclasses.dataclass
class _Snapshot:
    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scale: float  # the guard's cumulative lr cut when taken
    window: list[float]  # the recent losses the spike test uses


class Guard:
    """Detect divergence, roll back to the last good snapshot, cut the lr, skip the batch.

    Args:
        model: the model trained.
        optimizer: its optimizer.
        scheduler: an `lrkit.Scheduler` (the cut goes into its `multiplier`, so the
            schedule keeps its shape), another scheduler with `state_dict` (saved and
            restored; the cut is applied to the groups' lr), or None.
        snapshot_every: good steps between CPU snapshots; a rollback loses at most this many.
        spike: a loss more than `spike` robust deviations (1.4826 x the MAD of the last
            `window` good losses) above their median, and twice as far above it as any of
            them, is a spike (`lrkit.analysis.diagnose.spike_limit`); None only checks
            finiteness. Scale- and shift-free, so it works for negative losses too; judged
            once 20 good losses are known.
        window: how many recent good losses the running estimate uses.
        cut: factor applied to the lr at each rollback, in (0, 1].
        max_rollbacks: rollbacks allowed; one more divergence raises `lrkit.DivergenceError`.

    Example:
        >>> import torch, lrkit
        >>> model = torch.nn.Linear(1, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> guard = lrkit.Guard(model, opt, snapshot_every=10)
        >>> x, y = torch.ones(4, 1), torch.zeros(4, 1)
        >>> for step in range(30):
        ...     opt.zero_grad()
        ...     loss = (model(x) - y).pow(2).mean() * (float("nan") if step == 25 else 1.0)
        ...     if guard.check(loss):
        ...         continue
        ...     loss.backward()
        ...     opt.step()
        >>> [(i.step, i.kind, i.restored_step, i.steps_lost, i.lr_after) for i in guard.incidents]
        [(25, 'nonfinite_loss', 20, 5, 0.05)]
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
    ) -> None:
        _check_objects(model, optimizer, scheduler)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self._params = list(model.parameters())
        self.snapshot_every = validate.integer("Guard", "snapshot_every", snapshot_every, ControlError)
        self.spike = None if spike is None else validate.positive("Guard", "spike", spike, ControlError)
        self.window = validate.integer("Guard", "window", window, ControlError, minimum=_MIN_HISTORY)
        self.cut = validate.in_range("Guard", "cut", cut, ControlError, 0.0, 1.0, open_low=True)
        self.max_rollbacks = validate.integer("Guard", "max_rollbacks", max_rollbacks, ControlError, minimum=0)
        self.step = 0
        self.scale = 1.0
        self.incidents: list[Incident] = []
        self._losses: collections.deque[float] = collections.deque(maxlen=self.window)
        self._limit = math.inf
        self._since_snapshot = 0
        self._since_refresh = 0
        self._snapshot = self._take_snapshot()

    # -- the loop's call -------------------------------------------------------
    def check(self, loss: float | torch.Tensor, grads: bool = False) -> bool:
        """True when the caller must skip this batch (the guard has rolled back).

        Args:
            loss: this batch's loss (a number or a one-element tensor).
            grads: also check the gradients for NaN/inf (call after `backward()`).

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(1, 1)
            >>> guard = Guard(model, torch.optim.SGD(model.parameters(), lr=0.1))
            >>> guard.check(torch.tensor(0.5)), guard.check(float("inf")), guard.scale
            (False, True, 0.5)
        """
        value = validate.scalar("Guard.check", "loss", loss, ControlError)  # NaN and inf are what the guard is for
        kind = self._detect(value, grads)
        step, self.step = self.step, self.step + 1
        if kind is not None:
            self._roll_back(step, kind, value)
            return True
        if self._since_snapshot >= self.snapshot_every:
            self._snapshot = self._take_snapshot(step)
            self._since_snapshot = 0
        self._since_snapshot += 1
        self._remember(value)
        return False

    def _detect(self, value: float, grads: bool) -> str | None:
        if not math.isfinite(value):
            return "nonfinite_loss"
        if value > self._limit:
            return "spike"
        if grads and not _grads_finite(self._params):
            return "nonfinite_grad"
        return None

    def _remember(self, value: float) -> None:
        self._losses.append(value)
        self._since_refresh += 1
        if self.spike is not None and len(self._losses) >= _MIN_HISTORY and (self._since_refresh >= _REFRESH or math.isinf(self._limit)):
            self._limit = float(spike_limit(np.fromiter(self._losses, np.float64, len(self._losses)), self.spike))
            self._since_refresh = 0

    # -- snapshots and rollbacks -----------------------------------------------
    def _take_snapshot(self, step: int = 0) -> _Snapshot:
        return _Snapshot(
            step=step,
            model=cpu_copy(self.model.state_dict()),
            optimizer=cpu_copy(self.optimizer.state_dict()),
            scheduler=cpu_copy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            scale=self.scale,
            window=list(self._losses),
        )

    def _roll_back(self, step: int, kind: str, value: float) -> None:
        if len(self.incidents) >= self.max_rollbacks:
            raise DivergenceError(self._give_up_message(step, kind, value))
        lr_before = float(self.optimizer.param_groups[0]["lr"])
        snap = self._snapshot
        self.model.load_state_dict(snap.model)
        # restore from a fresh copy: load_state_dict may keep our tensors, and later steps would then write into the snapshot
        self.optimizer.load_state_dict(cpu_copy(snap.optimizer))
        self.optimizer.zero_grad(set_to_none=True)
        self._apply_cut(snap)
        self._losses = collections.deque(snap.window, maxlen=self.window)
        self._limit = (
            float(spike_limit(snap.window, self.spike)) if self.spike is not None and len(snap.window) >= _MIN_HISTORY else math.inf
        )
        lost, self._since_snapshot, self._since_refresh = self._since_snapshot, 0, 0
        lr_after = float(self.optimizer.param_groups[0]["lr"])
        self.incidents.append(Incident(step, kind, value, snap.step, lost, lr_before, lr_after))

    def _apply_cut(self, snap: _Snapshot) -> None:
        """Put back the scheduler's state, then lower the lr by `cut` below what it was before the incident."""
        self.scale *= self.cut
        if isinstance(self.scheduler, Scheduler):
            multiplier = self.scheduler.multiplier
            self.scheduler.load_state_dict(cpu_copy(snap.scheduler))
            self.scheduler.multiplier = multiplier * self.cut
            self.scheduler.apply()
            return
        if self.scheduler is not None:
            self.scheduler.load_state_dict(cpu_copy(snap.scheduler))
        for group in self.optimizer.param_groups:  # the restored lrs carry the scale of the snapshot's time
            group["lr"] = group["lr"] * (self.scale / snap.scale)

    def _give_up_message(self, step: int, kind: str, value: float) -> str:
        history = ", ".join(f"{i.kind} at step {i.step}" for i in self.incidents) or "none"
        lr = float(self.optimizer.param_groups[0]["lr"])
        return (
            f"Guard: training diverged again at step {step} ({kind}, loss={value:.4g}) after {len(self.incidents)} rollbacks "
            f"(max_rollbacks={self.max_rollbacks}; earlier: {history}); the lr is already cut to {lr:.3g} (x{self.scale:.3g}). "
            "Try a lower lr or a warmup, gradient clipping (torch.nn.utils.clip_grad_norm_), checking the data near these steps, "
            "or a larger `spike` threshold if these losses are genuine."
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


def _check_objects(model: Any, optimizer: Any, scheduler: Any) -> None:
    validate.instance("Guard", "model", model, ControlError, torch.nn.Module, "a torch.nn.Module")
    validate.instance("Guard", "optimizer", optimizer, ControlError, torch.optim.Optimizer, "a torch.optim.Optimizer")
    if scheduler is not None and not all(callable(getattr(scheduler, m, None)) for m in ("state_dict", "load_state_dict")):
        validate.wrong_type("Guard", "scheduler", "must be None or have state_dict() and load_state_dict()", scheduler, ControlError)


def _grads_finite(params: Sequence[torch.Tensor]) -> bool:
    """Whether every gradient is finite, with one sync: a sum is NaN/inf when an element is (or all are astronomically large)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    if len({g.device for g in grads}) > 1:
        return all(bool(torch.isfinite(g.sum()).item()) for g in grads)
    if sum(g.numel() for g in grads) <= 1 << 20:  # small models: one concatenation costs less than an op per tensor
        return bool(torch.isfinite(torch.cat([g.reshape(-1) for g in grads]).sum()).item())
    return bool(torch.isfinite(torch.stack([g.sum() for g in grads]).sum()).item())
