"""`lrkit.Guard`: survive a diverging run by skipping bad batches and, when divergence repeats, rolling back with a lower lr.

The loop calls `if guard.check(loss): continue` once per batch, before `backward()`
(or after it with `grads=True` to inspect gradients too); either way the batch has not
touched the weights yet. The guard keeps a CPU snapshot of model, optimizer and
scheduler every `snapshot_every` good steps. What it does on an incident (a non-finite
loss or gradient, or a loss spike far above the robust running level) is in `Guard`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from lrkit import validate
from lrkit.control.guard_policy import ACTIONS, KINDS, GuardPolicy, Incident
from lrkit.errors import ControlError
from lrkit.torch._tensors import all_finite, cpu_copy
from lrkit.torch.scheduler import Scheduler

__all__ = ["ACTIONS", "KINDS", "Guard", "Incident"]  # Incident and the names are lrkit.control.guard_policy's, kept here too


@dataclasses.dataclass
class _Snapshot:
    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scale: float  # the guard's cumulative lr cut when taken
    window: list[float]  # the recent losses the spike test uses


class Guard(GuardPolicy):
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
        super().__init__("Guard", snapshot_every=snapshot_every, spike=spike, window=window, cut=cut,
                         max_rollbacks=max_rollbacks, repeat_window=repeat_window)  # fmt: skip
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self._params = list(model.parameters())
        self._snapshot = self._take_snapshot()

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
        if self.snapshot_due:  # the weights have not seen this batch yet: the state after the good steps before it
            self._snapshot = self._take_snapshot(step)
        self.good(value)
        return False

    def _detect(self, value: float, grads: bool) -> str | None:
        kind = self.detect(value)
        if kind is None and grads and not all_finite([p.grad for p in self._params if p.grad is not None]):
            return "nonfinite_grad"
        return kind

    # -- incidents -------------------------------------------------------------
    def _handle(self, step: int, kind: str, value: float, weights_bad: bool) -> None:
        """Skip, restore or roll back (the policy of `Guard`), and record the incident."""
        lr_before = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.zero_grad(set_to_none=True)  # the batch's gradients go with it
        action = self.act(step, kind, value, restore=weights_bad, lr=lr_before)
        restored, lost = (step, 0) if action == "skip" else self._restore(cut=self.cut if action == "rollback" else 1.0)
        lr_after = float(self.optimizer.param_groups[0]["lr"])
        self.record(Incident(step, kind, value, restored, lost, lr_before, lr_after, action))

    def _restore(self, cut: float) -> tuple[int, int]:
        """Put the snapshot back (the lr times `cut`); the snapshot's step and the good steps undone."""
        snap = self._snapshot
        self.model.load_state_dict(snap.model)
        # restore from a fresh copy: load_state_dict may keep our tensors, and later steps would then write into the snapshot
        self.optimizer.load_state_dict(cpu_copy(snap.optimizer))
        self.optimizer.zero_grad(set_to_none=True)
        self._restore_schedule(snap, cut)
        return snap.step, self.restored(snap.window)

    def _restore_schedule(self, snap: _Snapshot, cut: float) -> None:
        """Put back the scheduler's state, then set the lr `cut` times what it was before the incident (`scale` is already cut)."""
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

    # -- snapshots -------------------------------------------------------------
    def _take_snapshot(self, step: int = 0) -> _Snapshot:
        return _Snapshot(
            step=step,
            model=cpu_copy(self.model.state_dict()),
            optimizer=cpu_copy(self.optimizer.state_dict()),
            scheduler=cpu_copy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            scale=self.scale,
            window=self.snapshot_taken(),
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
