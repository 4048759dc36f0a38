"""What the controllers share: argument checks that raise ControlError, and the
"is this evaluation better than the best so far" rule (the one of ReduceLROnPlateau)."""

from __future__ import annotations

import copy
import math
import numbers
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from lrkit.errors import ControlError, ScheduleError, bad

T = TypeVar("T")
MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


def checked(check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one of the shared schedule argument checks, re-raised as a ControlError (same message)."""
    try:
        return check(*args, **kwargs)
    except ScheduleError as e:
        raise ControlError(str(e)) from None


def metric_value(func: str, metric: Any) -> float:
    """A finite float from a number or a one-element tensor; NaN, inf and non-numbers raise."""
    if hasattr(metric, "numel") and hasattr(metric, "item") and metric.numel() == 1:
        metric = metric.item()
    if isinstance(metric, bool) or not isinstance(metric, numbers.Real) or not math.isfinite(float(metric)):
        raise ControlError(bad(func, "metric", "must be a finite number", metric))
    return float(metric)


def worst(mode: str) -> float:
    """The best-so-far before any evaluation: +inf when minimizing, -inf when maximizing."""
    return math.inf if mode == "min" else -math.inf


def is_better(metric: float, best: float, mode: str, threshold_mode: str, threshold: float) -> bool:
    """Whether `metric` improves on `best` by more than `threshold` (relative or absolute).

    The formulas are exactly those of `torch.optim.lr_scheduler.ReduceLROnPlateau`.

    Example:
        >>> is_better(0.99, 1.0, "min", "rel", 0.001), is_better(0.9995, 1.0, "min", "rel", 0.001)
        (True, False)
    """
    if mode == "min":
        return metric < (best * (1.0 - threshold) if threshold_mode == "rel" else best - threshold)
    return metric > (best * (threshold + 1.0) if threshold_mode == "rel" else best + threshold)


def cpu_copy(obj: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor detached and copied to the CPU.

    torch is not imported here: a tensor can only arrive once the caller has imported it.

    Example:
        >>> cpu_copy({"a": [1, (2.0, "x")]})
        {'a': [1, (2.0, 'x')]}
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, cpu_copy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)
