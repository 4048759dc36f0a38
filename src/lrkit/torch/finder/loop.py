"""One run of the range test: ramp the lr, one optimizer update per step, record the signal, stop on divergence.

Under `torch.distributed` the signal is all-reduced, so every rank records the same
values and stops at the same step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from lrkit.analysis import suggest
from lrkit.finder_result import LRFinderResult
from lrkit.torch.finder.batches import Batches, scalar_loss, to_device
from lrkit.torch.finder.config import FinderConfig, Target
from lrkit.torch.scheduler import write_hyperparameter

MAX_SKIPPED = 50  # a scaler that skips this many updates in a row will not recover within the test


@dataclasses.dataclass
class Run:
    """The lrs and signal one run recorded, and why it stopped ("completed", "diverged", "non-finite", "scaler").

    Example:
        >>> Run([1e-3], [2.0], "completed").signal
        [2.0]
    """

    lrs: list[float]
    signal: list[float]
    reason: str


def result(
    runs: Sequence[Run],
    config: FinderConfig,
    planned: int,
    *,
    lr_before: float,
    signal: str,
    higher_is_better: bool = False,
    group_scales: Sequence[float] = (1.0,),
) -> LRFinderResult:
    """The complete, pure result of the runs of one test (of any framework) that planned `planned` lrs.

    The lrs are the longest run's (the ramp every run followed); the stop reason is the single run's,
    else "completed" when every run reached the end, else "diverged". The other arguments describe the test.

    Example:
        >>> config = FinderConfig(start=1e-3, end=1.0, steps=10)
        >>> lrs = config.lrs().tolist()
        >>> r = result([Run(lrs, [1.0 - 0.05 * i for i in range(10)], "completed")], config, 10, lr_before=0.1, signal="train loss")
        >>> r.stop_reason, r.lr_before, len(r.lrs)
        ('completed', 0.1, 10)
    """
    reached = min(len(r.signal) for r in runs)
    reason = runs[0].reason if len(runs) == 1 else ("completed" if reached == planned else "diverged")
    longest = max(runs, key=lambda r: len(r.lrs))
    return LRFinderResult.from_runs(
        longest.lrs, [r.signal for r in runs], stop_reason=reason, smoothing=config.smoothing,
        higher_is_better=higher_is_better, signal=signal, mode=config.mode, group_scales=list(group_scales), lr_before=lr_before,
    )  # fmt: skip


def run(config: FinderConfig, target: Target, table: npt.NDArray[np.float64], batches: Batches) -> Run:
    """Step through the lrs of `table`, one recorded optimizer update each, until done or diverged (no restore: `find_lr` does it).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(1, 1)
        >>> config = FinderConfig(start=1e-3, end=1e-1, steps=10)
        >>> target = Target.check(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.functional.mse_loss, config)
        >>> r = run(config, target, config.lrs(), Batches([(torch.ones(4, 1), torch.zeros(4, 1))]))
        >>> len(r.lrs), r.reason
        (10, 'completed')
    """
    lrs: list[float] = []
    signal: list[float] = []
    stop = DivergenceTest(config.diverge, max(3, table.size // 10), config.smoothing)
    skipped, step = 0, 0
    while step < table.size:
        _set_lr(target, float(table[step]))
        value, stepped = _update(config, target, batches)
        if not stepped and math.isfinite(value):
            skipped += 1
            if skipped >= MAX_SKIPPED:
                return Run(lrs, signal, "scaler")
            continue
        skipped = 0
        if target.val is not None and stepped:  # a non-finite train loss stops the test, whatever validation says
            value = _all_reduce(_evaluate(target), target.device)
        lrs.append(float(table[step]))
        signal.append(value)
        step += 1
        if not math.isfinite(value):
            return Run(lrs, signal, "non-finite")
        if stop.update(float(suggest.objective(value, target.higher_is_better))):
            return Run(lrs, signal, "diverged")
    return Run(lrs, signal, "completed")


def _set_lr(target: Target, lr: float) -> None:
    for group, scale in zip(target.optimizer.param_groups, target.group_scales):
        write_hyperparameter(group, "lr", lr * scale)


def _update(config: FinderConfig, target: Target, batches: Batches) -> tuple[float, bool]:
    """One optimizer update over `accumulation_steps` micro-batches: (the all-reduced signal, whether it stepped)."""
    model, optimizer, scaler, k = target.model, target.optimizer, target.scaler, config.accumulation_steps
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(k):
        loss, metric = target.compute(model, to_device(next(batches), target.device))
        loss = scalar_loss(loss)
        ((scaler.scale(loss / k)) if scaler is not None else loss / k).backward()
        total += float(loss.detach()) if metric is None or target.val is not None else metric
    value = total / k
    if not math.isfinite(value):
        return _all_reduce(value, target.device), False
    stepped = [False]
    handle = optimizer.register_step_post_hook(lambda *_: stepped.__setitem__(0, True))
    try:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    finally:
        handle.remove()
    return _all_reduce_pair(value, stepped[0], target.device)


def _evaluate(target: Target) -> float:
    """The validation signal: mean loss (or metric) over the fixed validation batches, in eval mode."""
    model = target.model
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            values = []
            for batch in target.val or ():
                loss, metric = target.compute(model, to_device(batch, target.device))
                values.append(float(loss) if metric is None else metric)
    finally:
        for m, training in modes:
            m.training = training
    return float(np.mean(values))


def _distributed() -> bool:
    return bool(torch.distributed.is_available() and torch.distributed.is_initialized())


def _all_reduce(value: float, device: torch.device) -> float:
    return _all_reduce_pair(value, True, device)[0]


def _all_reduce_pair(value: float, stepped: bool, device: torch.device) -> tuple[float, bool]:
    """Average the signal over ranks; an update counts only if every rank stepped (so all stay in lockstep)."""
    if not _distributed():
        return value, stepped
    world = torch.distributed.get_world_size()
    backend_device = device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    packed = torch.tensor([value, float(stepped)], dtype=torch.float64, device=backend_device)
    torch.distributed.all_reduce(packed)
    return float(packed[0]) / world, bool(packed[1] == world)


class DivergenceTest:
    """Diverged: the smoothed signal is worse than its best by `diverge` x the early scale (affine-invariant).

    The early scale is the larger of the signal's improvement over its first `early` values and their
    noise (standard deviation), so the test works for negative losses and any scale. The smoothing is
    `suggest.Ema`, the same bias-corrected EMA as the result's `smoothed` curve.

    Example:
        >>> test = DivergenceTest(diverge=4.0, early=3, smoothing=0.0)
        >>> [test.update(v) for v in (3.0, 2.0, 1.0, 0.5, 9.0)]
        [False, False, False, False, True]
    """

    def __init__(self, diverge: float | None, early: int, smoothing: float) -> None:
        self.diverge, self.early_size = diverge, early
        self.ema = suggest.Ema(smoothing)
        self.early: list[float] = []
        self.best = math.inf

    def update(self, loss: float) -> bool:
        """Record one value (lower is better); whether the test has diverged."""
        smoothed = self.ema.update(loss)
        self.best = min(self.best, smoothed)
        if len(self.early) < self.early_size:
            self.early.append(loss)
            return False
        if self.diverge is None:
            return False
        scale = max(float(np.mean(self.early)) - self.best, float(np.std(self.early)))
        return scale > 0 and smoothed - self.best > self.diverge * scale
