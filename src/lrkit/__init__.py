"""lrkit: the learning rate, scheduled, found, controlled, studied and seen.

The package root imports neither torch nor matplotlib: the pure schedule core
is here at once; torch-backed names load on first use.

Example:
    >>> import lrkit
    >>> s = lrkit.warmup(lrkit.cosine(start=0.1, steps=900), steps=100)
    >>> round(s(100), 6), lrkit.parse(repr(s)) == s
    (0.1, True)
"""

from __future__ import annotations

from lrkit._lazy import lazy_attributes
from lrkit.errors import (
    ControlError,
    DivergenceError,
    FinderError,
    LabError,
    LandscapeError,
    LrkitError,
    LrkitTypeError,
    LrkitValueError,
    ScheduleError,
)
from lrkit.optim import Optim
from lrkit.schedules import (
    Schedule,
    clip,
    constant,
    cosine,
    cyclic,
    exponential,
    from_dict,
    inverse_sqrt,
    inverse_time,
    join,
    linear,
    multistep,
    one_cycle,
    parse,
    per_epoch,
    piecewise,
    polynomial,
    sgdr,
    step_decay,
    swa_schedule,
    warmup,
    wsd,
)

__version__ = "0.1.0"

# name -> module that defines it; loaded on first access (torch, matplotlib stay out of `import lrkit`)
_LAZY = {
    "Scheduler": "lrkit.torch.scheduler",
    "Plateau": "lrkit.control.plateau",
    "EarlyStopping": "lrkit.torch.early_stopping",
    "Guard": "lrkit.torch.guard",
    "Monitor": "lrkit.torch.monitor",
    "LearningRateMonitor": "lrkit.torch.monitor",
    "find_lr": "lrkit.torch.finder",
    "LRFinderResult": "lrkit.finder_result",
    "plot_schedule": "lrkit.plot",
    "param_groups": "lrkit.torch.param_groups",
    "search_lr": "lrkit.torch.search",
    "SearchResult": "lrkit.search.result",
    "ImpliedLR": "lrkit.torch.implied",
    "SelfTuningLR": "lrkit.torch.selftuning",
    "WeightAveraging": "lrkit.torch.swa",
}
_SUBPACKAGES = (
    "analysis", "control", "lab", "landscape", "optim", "plot", "protocols", "torch", "schedules", "validate",
    "presets", "search", "keras", "optax", "lightning", "hf",
)  # fmt: skip


__getattr__ = lazy_attributes(__name__, _LAZY, _SUBPACKAGES)


__all__ = [
    "ControlError",
    "DivergenceError",
    "EarlyStopping",
    "FinderError",
    "Guard",
    "ImpliedLR",
    "LRFinderResult",
    "LabError",
    "LandscapeError",
    "LearningRateMonitor",
    "LrkitError",
    "LrkitTypeError",
    "LrkitValueError",
    "Monitor",
    "Optim",
    "Plateau",
    "Schedule",
    "ScheduleError",
    "Scheduler",
    "SearchResult",
    "SelfTuningLR",
    "WeightAveraging",
    "clip",
    "constant",
    "cosine",
    "cyclic",
    "exponential",
    "find_lr",
    "from_dict",
    "inverse_sqrt",
    "inverse_time",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "param_groups",
    "parse",
    "per_epoch",
    "piecewise",
    "plot_schedule",
    "polynomial",
    "search_lr",
    "sgdr",
    "step_decay",
    "swa_schedule",
    "warmup",
    "wsd",
]
