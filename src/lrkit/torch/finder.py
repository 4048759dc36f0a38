"""`lrkit.find_lr`: the learning-rate range test, transactional, distributed-aware, with pure suggestion rules.

The lr of the first param group follows an exponential (fastai) or linear (Smith)
ramp from `start` to `end`, one value per optimizer update; the other groups are
scaled by the same factor, so their ratios hold. The recorded signal is smoothed
(bias-corrected EMA) and read by the rules of `lrkit.analysis.suggest`.
Everything the test touches is restored when it returns or raises.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lrkit.analysis import suggest
from lrkit.errors import FinderError, ScheduleError, bad
from lrkit.schedules import exponential, linear
from lrkit.torch.finder_result import LRFinderResult
from lrkit.torch.finder_state import transaction
from lrkit.torch.scheduler import _group_scales, _write

__all__ = ["LRFinderResult", "find_lr"]

MODES = ("exp", "linear")
MAX_SKIPPED = 50  # a scaler that skips this many updates in a row will not recover within the test
StepFn = Callable[[torch.nn.Module, Any], torch.Tensor]
Compute = Callable[[torch.nn.Module, Any], tuple[torch.Tensor, float | None]]  # (model, batch) -> (loss, metric or None)


@dataclasses.dataclass
class _Setup:
    """Everything one run needs, checked once."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    compute: Compute
    has_metric: bool
    val: list[Any] | None
    table: npt.NDArray[np.float64]
    group_scales: list[float]
    smoothing: float
    diverge: float | None
    accumulation_steps: int
    scaler: Any
    device: torch.device
    lr_before: float


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


# -- checks ------------------------------------------------------------------------------------------
def _setup(model: Any, optimizer: Any, loss_fn: Any, train_data: Any, start: Any, end: Any, steps: Any, mode: Any,
           smoothing: Any, diverge: Any, val_data: Any, val_batches: Any, metric: Any, accumulation_steps: Any,
           repeats: Any, scaler: Any, step_fn: Any) -> _Setup:  # fmt: skip
    _check_objects(model, optimizer, loss_fn, step_fn, metric, scaler)
    table = _ramp(start, end, steps, mode)
    if not isinstance(smoothing, numbers.Real) or not 0.0 <= float(smoothing) < 1.0:
        raise FinderError(bad("find_lr", "smoothing", "must be a number in [0, 1)", smoothing))
    if diverge is not None and (not _is_number(diverge) or diverge <= 0):
        raise FinderError(bad("find_lr", "diverge", "must be a finite number > 0 or None", diverge))
    for name, value in (("accumulation_steps", accumulation_steps), ("repeats", repeats)):
        if not _is_int(value) or value < 1:
            raise FinderError(bad("find_lr", name, "must be an integer >= 1", value))
    val = _val_batches(val_data, val_batches)
    if not isinstance(train_data, Iterable):
        raise FinderError(bad("find_lr", "train_data", "must be an iterable of batches", type(train_data).__name__))
    try:
        scales = _group_scales(optimizer, None)
    except ScheduleError:
        raise FinderError(bad("find_lr", "optimizer", "needs a first param group with lr > 0 when groups differ", optimizer)) from None
    device = next(p for p in model.parameters() if p.requires_grad).device
    compute = _compute(loss_fn, step_fn, metric)
    return _Setup(model, optimizer, compute, metric is not None, val, table, scales, float(smoothing),
                  None if diverge is None else float(diverge), accumulation_steps, scaler, device,
                  float(optimizer.param_groups[0]["lr"]))  # fmt: skip


def _check_objects(model: Any, optimizer: Any, loss_fn: Any, step_fn: Any, metric: Any, scaler: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise FinderError(bad("find_lr", "model", "must be a torch.nn.Module", type(model).__name__))
    if not any(p.requires_grad for p in model.parameters()):
        raise FinderError(bad("find_lr", "model", "must have trainable parameters (requires_grad=True)", type(model).__name__))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise FinderError(bad("find_lr", "optimizer", "must be a torch.optim.Optimizer", type(optimizer).__name__))
    if step_fn is None and not callable(loss_fn):
        raise FinderError(bad("find_lr", "loss_fn", "must be callable (or pass step_fn)", loss_fn))
    for name, fn in (("step_fn", step_fn), ("metric", metric)):
        if fn is not None and not callable(fn):
            raise FinderError(bad("find_lr", name, "must be callable or None", fn))
    if scaler is not None and not all(hasattr(scaler, a) for a in ("scale", "step", "update", "state_dict")):
        raise FinderError(bad("find_lr", "scaler", "must be a torch.amp.GradScaler or None", type(scaler).__name__))


def _ramp(start: Any, end: Any, steps: Any, mode: Any) -> npt.NDArray[np.float64]:
    """The first group's lr at every update, from the schedule core (no second copy of the maths)."""
    if mode not in MODES:
        raise FinderError(bad("find_lr", "mode", f"must be one of {list(MODES)}", mode))
    if not _is_int(steps) or steps < 10:
        raise FinderError(bad("find_lr", "steps", "must be an integer >= 10", steps))
    for name, value in (("start", start), ("end", end)):
        if not _is_number(value) or value < 0 or (mode == "exp" and value == 0):
            raise FinderError(bad("find_lr", name, f"must be a finite number {'> 0' if mode == 'exp' else '>= 0'}", value))
    if start >= end:
        raise FinderError(bad("find_lr", "start", f"must be below end ({end})", start))
    t = np.arange(steps)
    if mode == "exp":
        return exponential(start=float(start), rate=(float(end) / float(start)) ** (1.0 / (steps - 1))).values(t)
    return linear(start=float(start), end=float(end), steps=steps - 1).values(t)


def _val_batches(val_data: Any, val_batches: Any) -> list[Any] | None:
    """A fixed list of validation batches: every update is judged on the same data."""
    if val_batches is not None and (not _is_int(val_batches) or val_batches < 1):
        raise FinderError(bad("find_lr", "val_batches", "must be an integer >= 1 or None", val_batches))
    if val_data is None:
        if val_batches is not None:
            raise FinderError(bad("find_lr", "val_batches", "needs val_data", val_batches))
        return None
    if not isinstance(val_data, Iterable):
        raise FinderError(bad("find_lr", "val_data", "must be an iterable of batches", type(val_data).__name__))
    val = list(itertools.islice(val_data, val_batches))
    if not val:
        raise FinderError(bad("find_lr", "val_data", "must yield at least one batch", val_data))
    return val


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# -- batches and signals -----------------------------------------------------------------------------
class _Batches:
    """Cycles over the training data; a one-shot iterator's batches are kept so they can be cycled too."""

    def __init__(self, data: Iterable[Any]) -> None:
        self.data = data
        self.iterator: Iterator[Any] = iter(data)
        self.one_shot = self.iterator is data
        self.kept: list[Any] = []
        try:
            self.pending = [next(self.iterator)]
        except StopIteration:
            raise FinderError(bad("find_lr", "train_data", "must yield at least one batch", data)) from None
        if self.one_shot:
            self.kept.append(self.pending[0])

    def __next__(self) -> Any:
        if self.pending:
            return self.pending.pop()
        batch = next(self.iterator, _END)
        if batch is _END:
            if self.one_shot:
                self.data, self.one_shot = self.kept, False  # from now on the kept batches are cycled
            self.iterator = iter(self.data)
            batch = next(self.iterator)
        elif self.one_shot:
            self.kept.append(batch)
        return batch


_END = object()


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _pair(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise FinderError(bad("find_lr", "train_data", "must yield (inputs, targets) batches, or pass step_fn", type(batch).__name__))
    return batch[0], batch[1]


def _compute(loss_fn: Any, step_fn: StepFn | None, metric: Any) -> Compute:
    """The loss of a batch and, with `metric`, the metric of the same forward pass (or of `metric(model, batch)`)."""
    if step_fn is not None:
        custom: StepFn = step_fn

        def with_step_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, float | None]:
            loss = custom(model, batch)
            if metric is None:
                return loss, None
            with torch.no_grad():
                return loss, float(metric(model, batch))

        return with_step_fn

    def with_loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, float | None]:
        inputs, targets = _pair(batch)
        outputs = model(inputs)
        loss = loss_fn(outputs, targets)
        return loss, None if metric is None else float(metric(outputs.detach(), targets))

    return with_loss_fn


def _scalar(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise FinderError(bad("find_lr", "loss_fn", "must return a scalar floating-point tensor", shape))
    if not loss.requires_grad:
        raise FinderError(bad("find_lr", "loss_fn", "must return a loss that depends on the model's parameters", "no grad"))
    return loss.reshape(())


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
        if setup.val is not None:
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
        _aggregate(result, runs, setup.smoothing, has_metric, per_run)
    return result


def _suggestion(run: _Run, smoothing: float, has_metric: bool) -> dict[str, float | None]:
    smoothed = suggest.smooth(run.signal, smoothing)
    return suggest.suggest_all(run.lrs, -smoothed if has_metric else smoothed)


def _aggregate(result: LRFinderResult, runs: list[_Run], smoothing: float, has_metric: bool, per_run: list[dict[str, float | None]]) -> None:
    """Repeats: each rule's log-mean over the runs that gave one, and the default's geometric spread."""
    for name in result.suggestions:
        found = [s[name] for s in per_run if s[name] is not None]
        result.suggestions[name] = float(np.exp(np.mean(np.log(found)))) if found else None
    result.suggestion = result.suggestions[result.rule]
    result.run_suggestions = [s[result.rule] for s in per_run]
    logs = np.log([s for s in result.run_suggestions if s is not None])
    result.spread = float(np.exp(np.std(logs))) if logs.size else math.nan
    if result.spread > 2.0:
        result.warnings.append(f"the repeats disagree: suggestions spread by a factor {result.spread:.1f}; use more `steps`")
    if len(logs) < len(runs):
        result.warnings.append(f"{len(runs) - len(logs)} of {len(runs)} repeats gave no suggestion")

