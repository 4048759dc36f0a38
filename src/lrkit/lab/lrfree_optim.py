"""The learning-rate-free optimizers as their own packages ship them, and what lr each one really applies per step.

Schedule-Free SGD/AdamW (`schedulefree`), Prodigy (`prodigyopt`), D-Adaptation SGD/Adam
(`dadaptation`), DoG/LDoG (`dog-optimizer`) and the baselines SGD-momentum, Adam and NAdamW
(`torch.optim`) are built by `make_optimizer`; nothing is re-implemented. Their `lr` setting is
not the step size: `step_readings(name, before, after)` reads the **effective** lr of one
optimizer step from the optimizer's own `param_groups[0]`, snapshotted (`group_snapshot`)
before and after `step()`:

- Prodigy, D-Adapt Adam: `d·lr` (times Adam's bias correction when `use_bias_correction`), `d` as it was *before* the step;
- D-Adapt SGD: `d·lr/‖g₀‖` (its step on the dual-averaging sum `s`; `‖g₀‖` is measured on the first step);
- DoG: the step's `η = lr·r̄/√G`; LDoG: the median of its per-layer `η`;
- Schedule-Free: the (warm-up) scheduled lr and the averaging weight `c = (k+1)^r·lr_max^p / Σ weights`
  with which the evaluation point `x` moves to the new `z`;
- plain torch optimizers: `group["lr"]`.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = make_optimizer("sgd_momentum", [w], lr=0.1)
    >>> before = group_snapshot(opt)
    >>> (w ** 2).sum().backward(); opt.step()
    >>> step_readings("sgd_momentum", before, group_snapshot(opt))
    {'effective_lr': 0.1}
"""

from __future__ import annotations

import dataclasses
import importlib
import statistics
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import LabError

if TYPE_CHECKING:
    import torch

Snapshot = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """Where an optimizer comes from: its module, class, the extra it needs, fixed arguments, and whether its lr is tuned.

    Example:
        >>> OPTIMIZERS["prodigy"].module, OPTIMIZERS["prodigy"].tuned
        ('prodigyopt', False)
    """

    module: str
    cls: str
    package: str
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tuned: bool = False
    schedule_free: bool = False

    def load(self, func: str = "make_optimizer", param: str = "name", name: str = "") -> type:
        """The optimizer class, or a `LabError` saying which package to install.

        Example:
            >>> OPTIMIZERS["adam"].load().__name__
            'Adam'
        """
        try:
            return getattr(importlib.import_module(self.module), self.cls)  # type: ignore[no-any-return]
        except ImportError:
            why = f"needs the package {self.package!r} (pip install lrkit[lrfree])"
            validate.fail(func, param, why, name, LabError)


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd_momentum": OptimizerEntry("torch.optim", "SGD", "torch", {"momentum": 0.9}, tuned=True),
    "adam": OptimizerEntry("torch.optim", "Adam", "torch", tuned=True),
    "nadamw": OptimizerEntry("torch.optim", "NAdam", "torch", {"decoupled_weight_decay": True, "weight_decay": 0.01}, tuned=True),
    "sgd_schedulefree": OptimizerEntry("schedulefree", "SGDScheduleFree", "schedulefree", schedule_free=True),
    "adamw_schedulefree": OptimizerEntry("schedulefree", "AdamWScheduleFree", "schedulefree", schedule_free=True),
    "prodigy": OptimizerEntry("prodigyopt", "Prodigy", "prodigyopt"),
    "dadapt_sgd": OptimizerEntry("dadaptation", "DAdaptSGD", "dadaptation", {"momentum": 0.9}),
    "dadapt_adam": OptimizerEntry("dadaptation", "DAdaptAdam", "dadaptation"),
    "dog": OptimizerEntry("dog", "DoG", "dog-optimizer"),
    "ldog": OptimizerEntry("dog", "LDoG", "dog-optimizer"),
}
BASELINES = tuple(name for name, e in OPTIMIZERS.items() if e.tuned)
LR_FREE = tuple(name for name, e in OPTIMIZERS.items() if not e.tuned)


def entry(name: str, func: str = "make_optimizer", param: str = "name") -> OptimizerEntry:
    """The registry entry of optimizer `name`; an unknown name lists the valid ones.

    Example:
        >>> entry("dog").cls
        'DoG'
    """
    return OPTIMIZERS[validate.choice(func, param, name, LabError, tuple(OPTIMIZERS))]


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float | None = None, **options: Any) -> torch.optim.Optimizer:
    """Optimizer `name` over `params`, from its own package, with its package defaults unless `lr` / `options` say otherwise.

    A tuned baseline (sgd_momentum, adam, nadamw) needs `lr`; a learning-rate-free one keeps its package's
    default lr (1.0 for Prodigy, D-Adaptation and DoG, where it is a multiplier of the estimated step) unless given.

    Example:
        >>> import torch
        >>> type(make_optimizer("nadamw", [torch.zeros(1, requires_grad=True)], lr=1e-3)).__name__
        'NAdam'
    """
    e = entry(name)
    cls = e.load(name=name)
    if e.tuned and lr is None:
        validate.fail("make_optimizer", "lr", f"must be given for the tuned baseline {name!r}", lr, LabError)
    kwargs = {**e.defaults, **options}
    if lr is not None:
        kwargs["lr"] = validate.positive("make_optimizer", "lr", lr, LabError)
    try:
        optimizer: torch.optim.Optimizer = cls(params, **kwargs)
    except (TypeError, ValueError) as err:  # the package's own check of its arguments, said the lrkit way
        validate.fail("make_optimizer", "options", f"must be arguments {e.cls} accepts ({err})", kwargs, LabError)
    return optimizer


def group_snapshot(optimizer: torch.optim.Optimizer) -> Snapshot:
    """A shallow copy of the first param group without its parameters: what `step_readings` reads.

    Example:
        >>> import torch
        >>> sorted(group_snapshot(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)))[:3]
        ['dampening', 'differentiable', 'foreach']
    """
    return {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}


def _bias_correction(group: Snapshot) -> float:
    """Prodigy's and D-Adapt Adam's optional Adam bias correction at their step counter k."""
    if not group.get("use_bias_correction"):
        return 1.0
    beta1, beta2 = group["betas"]
    k = group["k"]
    return float(((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1)))


def _d_times_lr(before: Snapshot, after: Snapshot) -> dict[str, float]:
    # the step uses the d of before it; the d written after it is the next step's
    return {"effective_lr": float(before["d"]) * float(before["lr"]) * _bias_correction(before), "d": float(before["d"])}


def _dadapt_sgd(before: Snapshot, after: Snapshot) -> dict[str, float]:
    # g0_norm is measured during the first step, so it is read after it
    return {"effective_lr": float(before["d"]) * float(before["lr"]) / float(after["g0_norm"]), "d": float(before["d"])}


def _dog(before: Snapshot, after: Snapshot) -> dict[str, float]:
    etas = [float(eta) for eta in after["eta"]]  # one per parameter tensor: all equal for DoG, per layer for LDoG
    return {"effective_lr": statistics.median(etas)}


def _schedule_free(before: Snapshot, after: Snapshot) -> dict[str, float]:
    # after the step k has advanced by one: the weight of step k is (k+1)^r * lr_max^p, k+1 being the stored k
    weight = after["k"] ** after["r"] * after["lr_max"] ** after["weight_lr_power"]
    return {"effective_lr": float(after["scheduled_lr"]), "averaging_weight": float(weight / after["weight_sum"])}


def _plain(before: Snapshot, after: Snapshot) -> dict[str, float]:
    return {"effective_lr": float(after["lr"])}


_READERS: dict[str, Callable[[Snapshot, Snapshot], dict[str, float]]] = {
    "prodigy": _d_times_lr, "dadapt_adam": _d_times_lr, "dadapt_sgd": _dadapt_sgd, "dog": _dog, "ldog": _dog,
    "sgd_schedulefree": _schedule_free, "adamw_schedulefree": _schedule_free,
}  # fmt: skip


def step_readings(name: str, before: Snapshot, after: Snapshot) -> dict[str, float]:
    """The effective lr of one step of optimizer `name` (and its `d` or averaging weight), from its group before and after.

    Example:
        >>> step_readings("prodigy", {"d": 1e-6, "lr": 1.0}, {"d": 2e-6, "lr": 1.0})
        {'effective_lr': 1e-06, 'd': 1e-06}
    """
    entry(name, "step_readings")
    return _READERS.get(name, _plain)(before, after)


def is_schedule_free(name: str) -> bool:
    """Whether optimizer `name` keeps two points and must be switched: `train()` to train, `eval()` to evaluate.

    Example:
        >>> is_schedule_free("adamw_schedulefree"), is_schedule_free("prodigy")
        (True, False)
    """
    return entry(name, "is_schedule_free").schedule_free
