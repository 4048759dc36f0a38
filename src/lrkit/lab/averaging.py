"""Weight averaging in the batched population: a running mean (or EMA) of the stacked weights.

The population has no per-member module for `torch.optim.swa_utils.AveragedModel`, so each
member's average is a row of stacked tensors, moved by the lerp `AveragedModel` applies
(`avg + (p - avg) / (n + 1)` on a CPU, a lerp by 1/(n+1) where torch has foreach kernels, a lerp by 1 - decay
for an EMA; the first entry copies), on
the rows of the members whose `lrkit.schedules.Averaging` plan names the step. Before an
averaged member is evaluated, BatchNorm statistics are recomputed on its averaged weights
(`update_bn`'s cumulative mean over the training set in order, in minibatches of the
problem's batch size).

Example:
    >>> from lrkit.lab.population import Member, train
    >>> from lrkit.lab.problems import get_problem
    >>> from lrkit.schedules import Averaging
    >>> r = train(get_problem("blobs"), [Member(lr=0.05), Member(lr=0.05, average=Averaging(start=16))], epochs=3)
    >>> bool(r.test_loss[0, 0] == r.test_loss[1, 0]), bool(r.test_loss[0, 2] != r.test_loss[1, 2])
    (True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import LabError
from lrkit.schedules.base import Schedule
from lrkit.schedules.combinators import Join
from lrkit.schedules.cycles import SGDR
from lrkit.schedules.shapes import Constant, Cosine
from lrkit.schedules.swa import Averaging, SWASchedule, entry_weights

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem
    from lrkit.lab.stacked import StackedModel


class StackedAverage:
    """Each member's averaged weights as stacked tensors (P, ...), with its own plan (None: never averaged).

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> from lrkit.lab.stacked import StackedModel
        >>> m = StackedModel(get_problem("blobs"), [0, 1])
        >>> avg = StackedAverage(m, [Averaging(start=1), None], steps=4)
        >>> [avg.update(t, m.params) for t in range(3)], avg.entries.tolist()
        ([False, True, True], [2, 0])
    """

    def __init__(self, model: StackedModel, plans: Sequence[Averaging | None], steps: int) -> None:
        import torch

        self.plans = list(plans)
        never = np.zeros(steps, dtype=bool)
        self.due = np.stack([never if p is None else p.due(np.arange(steps)) for p in self.plans])  # (P, steps)
        self.ema = np.array([p is not None and p.kind == "ema" for p in self.plans])
        self.decay = np.array([p.decay if p is not None else 0.0 for p in self.plans])
        self.entries = np.zeros(len(self.plans), dtype=np.int64)
        self.params = [p.detach().clone() for p in model.params]  # AveragedModel starts as a copy of the model
        self.device = model.params[0].device
        self._torch = torch

    @property
    def started(self) -> npt.NDArray[np.bool_]:
        """Which members' averages hold at least one entry (those are evaluated on their average)."""
        return np.asarray(self.entries > 0)

    def update(self, step: int, params: Sequence[torch.Tensor]) -> bool:
        """After optimizer step `step`: move the averages of the members due there towards `params`; whether any was due."""
        rows = np.flatnonzero(self.due[:, step])
        if not len(rows):
            return False
        n = self.entries[rows]
        # AveragedModel's own arithmetic: without a multi_avg_fn, on a device lacking foreach kernels (the CPU), an SWA
        # entry is `avg + (p - avg) / (n + 1)`; everywhere else, and for every EMA, a lerp (by 1 on a first entry: a copy)
        divided = (n > 0) & ~self.ema[rows] & (self.device.type not in _foreach_devices())
        with self._torch.no_grad():
            self._lerp(rows[~divided], params)
            self._divide(rows[divided], params)
        self.entries[rows] += 1
        return True

    def _lerp(self, rows: npt.NDArray[np.intp], params: Sequence[torch.Tensor]) -> None:
        if not len(rows):
            return
        torch = self._torch
        index = torch.as_tensor(rows, device=self.device)
        w = entry_weights(self.entries[rows].astype(np.float64), self.ema[rows], self.decay[rows])
        for avg, p in zip(self.params, params):
            weight = torch.as_tensor(w, dtype=avg.dtype, device=self.device).view(-1, *[1] * (avg.dim() - 1))
            avg.index_copy_(0, index, avg.index_select(0, index).lerp_(p.detach().index_select(0, index), weight))

    def _divide(self, rows: npt.NDArray[np.intp], params: Sequence[torch.Tensor]) -> None:
        if not len(rows):
            return
        torch = self._torch
        index = torch.as_tensor(rows, device=self.device)
        count = torch.as_tensor(self.entries[rows] + 1, device=self.device)  # an integer tensor, as AveragedModel's n_averaged + 1
        for avg, p in zip(self.params, params):
            mine = avg.index_select(0, index)
            avg.index_copy_(0, index, mine + (p.detach().index_select(0, index) - mine) / count.view(-1, *[1] * (avg.dim() - 1)))

    def evaluate(
        self, model: StackedModel, problem: Problem, data: Sequence[torch.Tensor], batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member test (loss, accuracy) of the averaged weights, BatchNorm updated on them; members not started: their own."""
        torch = self._torch
        started = torch.as_tensor(self.started, device=self.device)
        mixed = [torch.where(started.view(-1, *[1] * (a.dim() - 1)), a, p.detach()) for a, p in zip(self.params, model.params)]
        with swapped(model, mixed, {k: b.clone() for k, b in model.buffers.items()}):
            update_bn(model, data[0], batch_size)
            return model.evaluate(problem, data[2], data[3])


def _foreach_devices() -> list[str]:
    """The device types on which AveragedModel averages with foreach kernels (torch's own list)."""
    from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

    return _get_foreach_kernels_supported_devices()


@contextlib.contextmanager
def swapped(model: StackedModel, params: list[torch.Tensor], buffers: dict[str, torch.Tensor]) -> Iterator[None]:
    """`model` computing with `params` and `buffers` inside the block (its own ones are put back after)."""
    saved = model.params, model.buffers
    model.params, model.buffers = params, buffers
    try:
        yield
    finally:
        model.params, model.buffers = saved


def update_bn(model: StackedModel, x: torch.Tensor, batch_size: int) -> None:
    """`torch.optim.swa_utils.update_bn` for stacked members: reset BatchNorm statistics, then one pass over `x` in order.

    `update_bn` sets momentum None (a cumulative mean: factor 1/k on batch k), which reads a tensor
    under vmap; the same factor is given as the momentum of batch k instead. A model without
    BatchNorm is left as it is.
    """
    import torch

    norms = {
        name: m for name, m in model.base.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    }
    if not norms or not model.buffers:
        return
    for name in norms:
        model.buffers[f"{name}.running_mean"].zero_()
        model.buffers[f"{name}.running_var"].fill_(1.0)
        model.buffers[f"{name}.num_batches_tracked"].zero_()
    momenta = {m: m.momentum for m in norms.values()}
    try:
        with torch.no_grad():
            for k, start in enumerate(range(0, len(x), batch_size), start=1):
                for m in norms.values():
                    m.momentum = 1.0 / k
                model(x[start : start + batch_size], shared=True)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum


# -- the swa study's arms ---------------------------------------------------------------------------
SWA_ARMS = ("none", "swa-lr", "swa", "swa-cyclic", "ema")
SWA_DEFAULTS = tuple(f"{arm}@x{k:g}" for k in (0.3, 1.0, 3.0) for arm in SWA_ARMS)


def read_arm(text: str) -> str:
    """A swa study value, `ARM@LR`: an arm of `SWA_ARMS` at an lr, absolute ("swa@0.05") or relative to the problem's ("swa@x3").

    Example:
        >>> read_arm(" swa-cyclic @ x3 "), read_arm("ema@0.050")
        ('swa-cyclic@x3', 'ema@0.05')
    """
    arm, _, lr = (part.strip() for part in str(text).partition("@"))
    number = _lr_number(lr.removeprefix("x"))
    if arm not in SWA_ARMS or number is None or not 0 < number < 1e3:
        requirement = f"must be ARM@LR or ARM@xFACTOR for the swa study, ARM one of {', '.join(SWA_ARMS)} and 0 < LR < 1000"
        validate.fail("study", "values", requirement, text, LabError)
    return f"{arm}@{'x' if lr.startswith('x') else ''}{number:g}"


def _lr_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def split_arm(value: str) -> tuple[str, str]:
    """A read swa study value as (arm, lr text).

    Example:
        >>> split_arm("swa@x0.3")
        ('swa', 'x0.3')
    """
    arm, _, lr = value.partition("@")
    return arm, lr


def swa_arm(value: str, problem_lr: float, total_steps: int, steps_per_epoch: int) -> tuple[Schedule, Averaging | None]:
    """The lr schedule and averaging plan of a swa study arm over a budget of `total_steps`.

    SWA (Izmailov et al. 2018) takes over at the start of the last quarter of the epochs: "swa" anneals
    over one epoch (SWALR's cos) from the constant `lr` to `lr / 2` and averages once per epoch after that;
    "swa-cyclic" runs cosine cycles of one epoch from `lr / 2` to `lr / 20` and averages at each cycle's end
    (its lowest lr); "swa-lr" is swa's lr without averaging; "none" a cosine decay of `lr` over the budget;
    "ema" the constant `lr` with an EMA of every step whose horizon is a tenth of the budget.

    Example:
        >>> s, plan = swa_arm("swa@x1", 0.1, 64, 8)
        >>> s, plan.start, plan.every
        (swa_schedule(constant(value=0.1), swa_start=48, swa_lr=0.05, anneal_steps=8), 55, 8)
    """
    arm, lr_text = split_arm(read_arm(value))
    lr = float(lr_text[1:]) * problem_lr if lr_text.startswith("x") else float(lr_text)
    epochs = max(1, total_steps // steps_per_epoch)
    start = (3 * epochs // 4) * steps_per_epoch
    cycle_ends = Averaging(start=start + steps_per_epoch - 1, every=steps_per_epoch)
    if arm == "none":
        return Cosine(start=lr, steps=total_steps), None
    if arm == "ema":
        return Constant(lr), Averaging(kind="ema", decay=min(0.9999, max(0.9, 1.0 - 10.0 / total_steps)))
    if arm == "swa-cyclic":
        cycles = SGDR(start=lr / 2, first_cycle=steps_per_epoch, cycle_mult=1, end=lr / 20)
        return (Join((Constant(lr), cycles), (start,)) if start else cycles), cycle_ends
    schedule = SWASchedule(Constant(lr), swa_start=start, swa_lr=lr / 2, anneal_steps=steps_per_epoch)
    return schedule, (cycle_ends if arm == "swa" else None)
