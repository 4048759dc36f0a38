"""The range test's inputs, checked once before any training step: its options and what it drives.

`FinderConfig` holds the numbers (the ramp, the smoothing, the stopping rule);
`Target` the torch objects (model, optimizer, how a batch becomes a signal).
Every bad value raises `lrkit.FinderError` naming `find_lr`, the parameter and the
value; a wrong type raises its `TypeError` child, `FinderTypeError`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lrkit import validate
from lrkit.errors import FinderError
from lrkit.schedules import exponential, linear
from lrkit.torch.finder.batches import Compute, StepFn, make_compute
from lrkit.torch.scheduler import group_lr_ratios

FUNC = "find_lr"
MODES = ("exp", "linear")
MIN_STEPS = 10  # fewer updates leave the rules nothing to read past their trimmed start and end
MAX_STEPS = 100_000  # the rules and the lag-free smoothing read the whole curve at once; a longer ramp adds no lr resolution


@dataclasses.dataclass(frozen=True)
class FinderConfig:
    """The options of one range test, validated and converted on construction.

    See `lrkit.find_lr` for their meaning; `steps` lies in [`MIN_STEPS`, `MAX_STEPS`].

    Example:
        >>> config = FinderConfig(start=1e-3, end=1.0, steps=4)
        Traceback (most recent call last):
        lrkit.errors.FinderError: find_lr: parameter 'steps' must be an integer >= 10, got 4
        >>> FinderConfig(start=1e-3, end=1e6, steps=10).lrs()[:4].round(12).tolist()
        [0.001, 0.01, 0.1, 1.0]
    """

    start: float = 1e-7
    end: float = 10.0
    steps: int = 100
    mode: str = "exp"
    smoothing: float = 0.98
    diverge: float | None = 4.0
    accumulation_steps: int = 1
    repeats: int = 1
    val_batches: int | None = None

    def __post_init__(self) -> None:
        checked = {"mode": validate.choice(FUNC, "mode", self.mode, FinderError, MODES), "steps": _steps(self.steps)}
        lowest = validate.positive if checked["mode"] == "exp" else validate.non_negative  # 0 has no logarithm
        start, end = (lowest(FUNC, name, value, FinderError) for name, value in (("start", self.start), ("end", self.end)))
        if start >= end:
            validate.fail(FUNC, "start", f"must be below end ({end})", start, FinderError)
        checked |= {"start": start, "end": end, "smoothing": validate.probability(FUNC, "smoothing", self.smoothing, FinderError)}
        checked["diverge"] = None if self.diverge is None else validate.positive(FUNC, "diverge", self.diverge, FinderError)
        for name in ("accumulation_steps", "repeats"):
            checked[name] = validate.integer(FUNC, name, getattr(self, name), FinderError)
        if self.val_batches is not None:
            checked["val_batches"] = validate.integer(FUNC, "val_batches", self.val_batches, FinderError)
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: the converted values are set once, here

    def lrs(self) -> npt.NDArray[np.float64]:
        """The first group's lr at every update, from the schedule core (no second copy of the maths).

        Example:
            >>> FinderConfig(start=0.0, end=9.0, steps=10, mode="linear").lrs().tolist()[:3]
            [0.0, 1.0, 2.0]
        """
        t = np.arange(self.steps)
        if self.mode == "exp":
            return exponential(start=self.start, rate=(self.end / self.start) ** (1.0 / (self.steps - 1))).values(t)
        return linear(start=self.start, end=self.end, steps=self.steps - 1).values(t)


def _steps(steps: Any) -> int:
    value = validate.integer(FUNC, "steps", steps, FinderError, minimum=MIN_STEPS)
    if value > MAX_STEPS:
        validate.fail(FUNC, "steps", f"must be at most {MAX_STEPS} (a longer ramp adds no resolution)", steps, FinderError)
    return value


@dataclasses.dataclass(frozen=True)
class Target:
    """What the test drives, checked once: the model, its optimizer, how a batch becomes the signal, where it runs.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> target = Target.check(model, opt, torch.nn.functional.mse_loss, FinderConfig())
        >>> target.signal, target.group_scales, target.lr_before
        ('train loss', (1.0,), 0.1)
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    compute: Compute
    higher_is_better: bool
    val: tuple[Any, ...] | None
    group_scales: tuple[float, ...]
    scaler: Any
    device: torch.device
    lr_before: float

    @classmethod
    def check(cls, model: Any, optimizer: Any, loss_fn: Any, config: FinderConfig, *, val_data: Any = None, metric: Any = None,
              scaler: Any = None, step_fn: StepFn | None = None) -> Target:  # fmt: skip
        """Check the torch objects of a test (before any step) and bundle them."""
        validate.instance(FUNC, "model", model, FinderError, torch.nn.Module, "a torch.nn.Module")
        if not any(p.requires_grad for p in model.parameters()):
            validate.fail(FUNC, "model", "must have trainable parameters (requires_grad=True)", type(model).__name__, FinderError)
        validate.instance(FUNC, "optimizer", optimizer, FinderError, torch.optim.Optimizer, "a torch.optim.Optimizer")
        _callables(loss_fn, step_fn, metric)
        if scaler is not None and not all(hasattr(scaler, a) for a in ("scale", "step", "update", "state_dict")):
            validate.wrong_type(FUNC, "scaler", "must be a torch.amp.GradScaler or None", type(scaler).__name__, FinderError)
        return cls(
            model=model, optimizer=optimizer, compute=make_compute(loss_fn, step_fn, metric), higher_is_better=metric is not None,
            val=_val_batches(val_data, config.val_batches), group_scales=_scales(optimizer), scaler=scaler,
            device=next(p for p in model.parameters() if p.requires_grad).device, lr_before=float(optimizer.param_groups[0]["lr"]),
        )  # fmt: skip

    @property
    def signal(self) -> str:
        """What the test records: "train loss", "validation loss", "train metric" or "validation metric"."""
        return f"{'validation' if self.val is not None else 'train'} {'metric' if self.higher_is_better else 'loss'}"


def _callables(loss_fn: Any, step_fn: Any, metric: Any) -> None:
    if step_fn is None and not callable(loss_fn):
        validate.wrong_type(FUNC, "loss_fn", "must be callable (or pass step_fn)", loss_fn, FinderError)
    for name, fn in (("step_fn", step_fn), ("metric", metric)):
        if fn is not None and not callable(fn):
            validate.wrong_type(FUNC, name, "must be callable or None", fn, FinderError)


def _scales(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    """Each group's lr relative to the first: the ramp moves the first group and keeps the ratios."""
    ratios = group_lr_ratios(optimizer)
    if ratios is None:
        lrs = [float(g["lr"]) for g in optimizer.param_groups]
        validate.fail(FUNC, "optimizer", "needs a first param group with lr > 0 when groups differ", lrs, FinderError)
    return tuple(ratios)


def _val_batches(val_data: Any, val_batches: int | None) -> tuple[Any, ...] | None:
    """A fixed list of validation batches: every update is judged on the same data."""
    if val_data is None:
        if val_batches is not None:
            validate.fail(FUNC, "val_batches", "needs val_data", val_batches, FinderError)
        return None
    validate.instance(FUNC, "val_data", val_data, FinderError, Iterable, "an iterable of batches")
    val = tuple(itertools.islice(val_data, val_batches))
    if not val:
        validate.fail(FUNC, "val_data", "must yield at least one batch", val_data, FinderError)
    return val
