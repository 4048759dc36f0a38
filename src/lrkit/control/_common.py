"""What the controllers share: the modes, and the "is this evaluation better than the best
so far" rule (the one of ReduceLROnPlateau).

Example:
    >>> worst("max"), is_better(0.5, worst("min"), "min", "abs", 0.0)
    (-inf, True)
"""

from __future__ import annotations

import math

MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


def worst(mode: str) -> float:
    """The best-so-far before any evaluation: +inf when minimizing, -inf when maximizing.

    Example:
        >>> worst("min")
        inf
    """
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
