"""The range test's inputs: checked once, before any training step, into one `_Setup`; batches and signals.

Everything here raises `lrkit.FinderError` with the function, the parameter and the value.
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

from lrkit.errors import FinderError, ScheduleError, bad
from lrkit.schedules import exponential, linear
from lrkit.torch.scheduler import _group_scales

MODES = ("exp", "linear")
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


# -- checks ------------------------------------------------------------------------------------------
def _setup(model: Any, optimizer: Any, loss_fn: Any, train_data: Any, start: Any, end: Any, steps: Any, mode: Any,
           smoothing: Any, diverge: Any, val_data: Any, val_batches: Any, metric: Any, accumulation_steps: Any,
           repeats: Any, scaler: Any, step_fn: Any) -> _Setup:  # fmt: skip
    _check_objects(model, optimizer, loss_fn, step_fn, metric, scaler)
    table = _ramp(start, end, steps, mode)
    if not _is_number(smoothing) or not 0.0 <= float(smoothing) < 1.0:
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
