"""`lrkit.find_lr`: the learning-rate range test, transactional, distributed-aware, with pure suggestion rules.

The lr of the first param group follows an exponential (fastai) or linear (Smith)
ramp from `start` to `end`, one value per optimizer update; the other groups are
scaled by the same factor, so their ratios hold. The recorded signal is smoothed
(bias-corrected EMA) and read by the rules of `lrkit.analysis.suggest`.
Everything the test touches is restored when it returns or raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from lrkit.analysis import suggest
from lrkit.torch.finder_result import LRFinderResult
from lrkit.torch.finder_setup import StepFn, _Batches, _scalar, _Setup, _setup, _to
from lrkit.torch.finder_state import transaction
from lrkit.torch.scheduler import _write

__all__ = ["LRFinderResult", "find_lr"]

MAX_SKIPPED = 50  # a scaler that skips this many updates in a row will not recover within the test


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None,
    train_data: Iterable[Any],
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge: float | None = 4.0,
    val_data: Iterable[Any] | None = None,
    val_batches: int | None = None,
    metric: Callable[..., Any] | None = None,
    accumulation_steps: int = 1,
    repeats: int = 1,
    scaler: Any = None,
    step_fn: StepFn | None = None,
) -> LRFinderResult:
    """Run the learning-rate range test and suggest a learning rate; leaves every state as it found it.

    Args:
        model, optimizer: what to test; the optimizer's groups keep their lr ratios.
        loss_fn: `loss_fn(model(inputs), targets)` for `(inputs, targets)` batches (None with `step_fn`).
        train_data: any iterable of batches, cycled if shorter than the test.
        start, end, steps, mode: the ramp of the first group's lr: `steps` optimizer updates from `start`
            to `end`, exponential ("exp") or linear ("linear").
        smoothing: the EMA factor beta of the smoothed signal.
        diverge: stop once the smoothed signal is worse than its best by `diverge` times the early scale
            (the larger of its initial improvement and its early noise): valid for negative losses and any
            scale. None: stop only on NaN/inf, which always stops the test at once.
        val_data, val_batches: record the loss on (the first `val_batches` batches of) `val_data` after each update.
        metric: record `metric(outputs, targets)` instead of the loss, higher is better (Smith's accuracy test);
            with `step_fn` it is called as `metric(model, batch)`.
        accumulation_steps: micro-batches per optimizer update; the lr advances once per update.
        repeats: independent tests (data keeps flowing); the suggestion is their log-mean, `spread` their spread.
        scaler: a `torch.amp.GradScaler`; an update it skips does not advance the lr.
        step_fn: `step_fn(model, batch) -> loss` for batches of any other shape.

    Under `torch.distributed` the signal is all-reduced, so every rank stops at the same step and
    returns the same suggestion.

    Example:
        >>> import torch, lrkit
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(256, 2); y = (x[:, 0] > x[:, 1]).long()
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
        >>> before = model[0].weight.clone()
        >>> result = lrkit.find_lr(model, opt, torch.nn.functional.cross_entropy, batches, start=1e-4, end=10, steps=60)
        >>> 1e-4 < result.suggestion < 10, bool(torch.equal(model[0].weight, before)), opt.param_groups[0]["lr"]
        (True, True, 0.1)
    """
    setup = _setup(model, optimizer, loss_fn, train_data, start, end, steps, mode, smoothing, diverge,
                   val_data, val_batches, metric, accumulation_steps, repeats, scaler, step_fn)  # fmt: skip
    batches = _Batches(train_data)
    runs = []
    with transaction(model, optimizer, scaler) as snapshot:
        for i in range(repeats):
            if i:
                snapshot.restore(rng=False)  # each repeat starts from the same weights but sees fresh data and noise
            runs.append(_run(setup, batches))
    return _result(setup, runs, mode, val_data is not None)


# -- one run -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Run:
    lrs: list[float]
    signal: list[float]
    reason: str


def _run(setup: _Setup, batches: _Batches) -> _Run:
    lrs: list[float] = []
    signal: list[float] = []
    stop = _DivergenceTest(setup.diverge, max(3, setup.table.size // 10), setup.smoothing)
    skipped, step = 0, 0
    while step < setup.table.size:
        _set_lr(setup, float(setup.table[step]))
        value, stepped = _update(setup, batches)
        if not stepped and math.isfinite(value):
            skipped += 1
            if skipped >= MAX_SKIPPED:
                return _Run(lrs, signal, "scaler")
            continue
        skipped = 0
        if setup.val is not None and stepped:  # a non-finite train loss stops the test, whatever validation says
            value = _all_reduce(_evaluate(setup), setup.device)
        lrs.append(float(setup.table[step]))
        signal.append(value)
        step += 1
        if not math.isfinite(value):
            return _Run(lrs, signal, "non-finite")
        if stop.update(-value if setup.has_metric else value):
            return _Run(lrs, signal, "diverged")
    return _Run(lrs, signal, "completed")


def _set_lr(setup: _Setup, lr: float) -> None:
    for group, scale in zip(setup.optimizer.param_groups, setup.group_scales):
        _write(group, "lr", lr * scale)


def _update(setup: _Setup, batches: _Batches) -> tuple[float, bool]:
    """One optimizer update over `accumulation_steps` micro-batches: (the all-reduced signal, whether it stepped)."""
    model, optimizer, scaler, k = setup.model, setup.optimizer, setup.scaler, setup.accumulation_steps
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(k):
        batch = _to(next(batches), setup.device)
        loss, metric = setup.compute(model, batch)
        loss = _scalar(loss)
        ((scaler.scale(loss / k)) if scaler is not None else loss / k).backward()
        total += float(loss.detach()) if metric is None or setup.val is not None else metric
    value = total / k
    if not math.isfinite(value):
        return _all_reduce(value, setup.device), False
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
    return _all_reduce_pair(value, stepped[0], setup.device)


def _evaluate(setup: _Setup) -> float:
    """The validation signal: mean loss (or metric) over the fixed validation batches, in eval mode."""
    model = setup.model
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            values = []
            for batch in setup.val or []:
                loss, metric = setup.compute(model, _to(batch, setup.device))
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


class _DivergenceTest:
    """Diverged: the smoothed signal is worse than its best by `diverge` x the early scale (affine-invariant)."""

    def __init__(self, diverge: float | None, early: int, smoothing: float) -> None:
        self.diverge, self.early_size, self.beta = diverge, early, smoothing
        self.early: list[float] = []
        self.avg, self.t, self.best = 0.0, 0, math.inf

    def update(self, loss: float) -> bool:
        self.t += 1
        self.avg = self.beta * self.avg + (1.0 - self.beta) * loss
        smoothed = self.avg / (1.0 - self.beta**self.t)
        self.best = min(self.best, smoothed)
        if len(self.early) < self.early_size:
            self.early.append(loss)
            return False
        if self.diverge is None:
            return False
        scale = max(float(np.mean(self.early)) - self.best, float(np.std(self.early)))
        return scale > 0 and smoothed - self.best > self.diverge * scale


# -- the result ----------------------------------------------------------------------------------------
def _result(setup: _Setup, runs: list[_Run], mode: str, has_val: bool) -> LRFinderResult:
    has_metric = setup.has_metric
    n = min(len(r.signal) for r in runs)
    mean = np.mean([r.signal[:n] for r in runs], axis=0) if n else np.empty(0)
    signal = f"{'validation' if has_val else 'train'} {'metric' if has_metric else 'loss'}"
    reason = runs[0].reason if len(runs) == 1 else ("completed" if n == setup.table.size else "diverged")
    per_run = [_suggestion(r, setup.smoothing, has_metric) for r in runs]
    common = dict(stop_reason=reason, smoothing=setup.smoothing, signal=signal, higher_is_better=has_metric, mode=mode,
                  group_scales=setup.group_scales, lr_before=setup.lr_before, runs=[r.signal for r in runs])  # fmt: skip
    lrs = runs[0].lrs[:n]
    if n == 0:
        return LRFinderResult([], [], [], -1, reason, None, dict.fromkeys(suggest.RULES), ["no update was recorded: lower `start`"])
    result = LRFinderResult.from_curve(lrs, mean.tolist(), **common)  # type: ignore[arg-type]
    if len(runs) > 1:
        _aggregate(result, runs, per_run)
    return result


def _suggestion(run: _Run, smoothing: float, has_metric: bool) -> dict[str, float | None]:
    sign = -1.0 if has_metric else 1.0
    return suggest.suggest_all(run.lrs, sign * np.asarray(run.signal, dtype=np.float64), smoothing)


def _aggregate(result: LRFinderResult, runs: list[_Run], per_run: list[dict[str, float | None]]) -> None:
    """Repeats: each rule's log-mean over the runs that gave one, and the default's geometric spread."""
    for name in result.suggestions:
        found = np.array([s[name] for s in per_run if s[name] is not None], dtype=np.float64)
        result.suggestions[name] = float(np.exp(np.mean(np.log(found)))) if found.size else None
    result.suggestion = result.suggestions[result.rule]
    result.run_suggestions = [s[result.rule] for s in per_run]
    logs = np.log(np.array([s for s in result.run_suggestions if s is not None], dtype=np.float64))
    result.spread = float(np.exp(np.std(logs))) if logs.size else math.nan
    if result.spread > 2.0:
        result.warnings.append(f"the repeats disagree: suggestions spread by a factor {result.spread:.1f}; use more `steps`")
    if len(logs) < len(runs):
        result.warnings.append(f"{len(runs) - len(logs)} of {len(runs)} repeats gave no suggestion")
