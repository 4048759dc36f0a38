"""`lrkit.ImpliedLR`: the learning rate a run implies, sigma_theta / sigma_g per parameter element (Duda).

Near a minimum each coordinate sees a parabola, `f = lam / 2 (theta - p)^2`, whose gradient
`g = lam (theta - p)` is linear in `theta`: the spreads of `theta` and `g` over the last steps
differ by the curvature, `sigma_g = lam sigma_theta`, so `sigma_theta / sigma_g = 1 / lam` is the
Newton step, read from the run alone (J. Duda, "SGD momentum optimizer with step estimation by
online parabola model", 2019). The spreads come from exponential moving averages of `theta`,
`theta^2`, `g` and `g^2` (decay `beta`).

Each gradient is paired with the weights it was computed at: `update()`, called after the
optimizer step, pairs `p.grad` with the weights saved at the previous `update()` (the weights
before this step). Pairing it with the weights after the step would give `|1 - lr lam| / lam`.

Known weaknesses, and what is done about them (the numbers are the defaults):

- the start: one point has no spread, and before `theta` has moved `sigma_theta` is tiny, so
  the first `warmup` = 2 / (1 - beta) updates (20 at beta 0.9) give NaN, and every estimate is
  lifted to at least `floor` (1e-6);
- Var theta -> 0 (converged or frozen): `sigma_theta / (sigma_g + eps)` with `eps` = 1e-12 stays
  finite when the gradient stops varying too, and is clamped to at most `ceiling` (100); an
  element that has not moved at all (Var theta exactly 0) is NaN, and the group medians leave it out;
- float32 cancellation in EMA(x^2) - EMA(x)^2: the variance is kept in West's incremental form
  (`var = beta (var + (1 - beta) d^2)`, `d = x - mean`), the same EMAs without the subtraction.

With gradient noise the estimate is conservative: the noise widens `sigma_g` but not the
curvature. Under SGD with lr `eta` at stationarity, `theta - p` is an AR(1) process and
`sigma_theta / sigma_g = sqrt(eta / (2 lam))`, i.e. `sqrt(eta lam / 2)` times `1 / lam`: 0.22x at
`eta lam = 0.1`, 0.5x at `eta lam = 0.5` (measured within 1% in the median, 6% for any one
coordinate, at beta 0.999 in tests/test_implied_lr.py). At beta 0.9 the short window misses part
of the slow wander of `theta` and lowers it further: by 6% at `eta lam = 0.5`, 43% at 0.05.

Example:
    >>> import torch
    >>> from lrkit.torch.implied import ImpliedLR
    >>> theta = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    >>> model = torch.nn.Module(); model.theta = theta
    >>> curvature = torch.tensor([0.5, 4.0])
    >>> opt = torch.optim.SGD([theta], lr=0.2)
    >>> est = ImpliedLR(model)
    >>> for _ in range(30):
    ...     opt.zero_grad()
    ...     (0.5 * curvature * theta**2).sum().backward()
    ...     opt.step()
    ...     est.update()
    >>> [round(float(v), 3) for v in est.estimate()["theta"]]
    [2.0, 0.25]
    >>> round(est.group_estimates()[0], 3)
    0.25
"""

from __future__ import annotations

import dataclasses
import math

import torch

from lrkit import validate
from lrkit.errors import ControlError

SIGNALS = ("grad", "step")


@dataclasses.dataclass
class _Moments:
    """The EMA mean and variance of one tensor, in the incremental form (no cancellation)."""

    mean: torch.Tensor
    var: torch.Tensor

    @classmethod
    def first(cls, x: torch.Tensor) -> _Moments:
        return cls(x.clone(), torch.zeros_like(x))

    def add(self, x: torch.Tensor, beta: float) -> None:
        d = x - self.mean
        self.mean.add_(d, alpha=1.0 - beta)
        self.var.mul_(beta).addcmul_(d, d, value=beta * (1.0 - beta))


class ImpliedLR:
    """The implied learning rate sigma_theta / sigma_g of every parameter element, from EMAs of theta, theta^2, g, g^2.

    Args:
        model: the module whose trainable parameters are watched (by `named_parameters()` name).
        beta: the EMAs' decay, in (0, 1); their memory is about 1 / (1 - beta) updates.
        optimizer: if given, `group_estimates()` has one value per param group of it (else one
            for the whole model); needed for `signal="step"`.
        signal: "grad" (Duda's estimate, from `p.grad`) or "step": the step the optimizer took per
            unit lr, `(theta_after - theta_before) / lr`, in place of the gradient. For plain SGD
            the two agree; for momentum or Adam, "step" is the lr at which one step along the
            optimizer's own direction is the Newton step (what `lrkit.SelfTuningLR` drives).
        warmup: updates before the estimates are given (NaN before); default 2 / (1 - beta).
        floor, ceiling: every estimate is clamped into [floor, ceiling] (1e-6 and 100).
        eps: added to sigma_g (gradient units, 1e-12), so a gradient that stops varying gives no infinity.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> est = ImpliedLR(model, beta=0.9)
        >>> sorted(est.estimate()), est.ready
        (['bias', 'weight'], False)
    """

    def __init__(
        self, model: torch.nn.Module, beta: float = 0.9, *, optimizer: torch.optim.Optimizer | None = None, signal: str = "grad",
        warmup: int | None = None, floor: float = 1e-6, ceiling: float = 100.0, eps: float = 1e-12,
    ) -> None:  # fmt: skip
        validate.instance("ImpliedLR", "model", model, ControlError, torch.nn.Module, "a torch.nn.Module")
        validate.instance(
            "ImpliedLR", "optimizer", optimizer, ControlError, (torch.optim.Optimizer, type(None)), "a torch optimizer or None"
        )
        self.beta = validate.in_range("ImpliedLR", "beta", beta, ControlError, 0.0, 1.0, open_low=True, open_high=True)
        self.signal = validate.choice("ImpliedLR", "signal", signal, ControlError, SIGNALS)
        if signal == "step" and optimizer is None:
            validate.fail("ImpliedLR", "optimizer", "must be given for signal='step' (the step is divided by its lr)", None, ControlError)
        self.warmup = (
            math.ceil(2.0 / (1.0 - self.beta)) if warmup is None else validate.integer("ImpliedLR", "warmup", warmup, ControlError)
        )
        self.floor = validate.non_negative("ImpliedLR", "floor", floor, ControlError)
        self.ceiling = validate.positive("ImpliedLR", "ceiling", ceiling, ControlError)
        if self.ceiling < self.floor:
            validate.fail("ImpliedLR", "ceiling", f"must be >= floor ({self.floor})", ceiling, ControlError)
        self.eps = validate.non_negative("ImpliedLR", "eps", eps, ControlError)
        self.optimizer = optimizer
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            validate.fail("ImpliedLR", "model", "must have trainable parameters", type(model).__name__, ControlError)
        self._before = {name: _stats_copy(p) for name, p in self.params.items()}  # the weights the next gradient is taken at
        self._theta: dict[str, _Moments] = {}
        self._signal: dict[str, _Moments] = {}
        self.updates = 0

    @property
    def ready(self) -> bool:
        """Whether `warmup` updates have been seen (before that, the estimates are NaN).

        Example:
            >>> ImpliedLR(__import__("torch").nn.Linear(1, 1), warmup=3).ready
            False
        """
        return self.updates >= self.warmup

    @torch.no_grad()
    def update(self) -> None:
        """Add this step's pair (weights before the step, gradient or step taken): call it after every optimizer step.

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(1, 1)
            >>> est = ImpliedLR(model)
            >>> model(torch.ones(1, 1)).sum().backward()
            >>> est.update(); est.updates
            1
        """
        lrs = self._lrs()
        for name, p in self.params.items():
            before, now = self._before[name], _stats_copy(p)
            signal = self._signal_of(p, before, now, lrs.get(id(p), math.nan))
            if signal is not None:
                _add(self._theta, name, before, self.beta)
                _add(self._signal, name, signal, self.beta)
            self._before[name] = now
        self.updates += 1

    def _lrs(self) -> dict[int, float]:
        groups = self.optimizer.param_groups if self.optimizer is not None else []
        return {id(p): float(g["lr"]) for g in groups for p in g["params"]}

    def _signal_of(self, p: torch.Tensor, before: torch.Tensor, now: torch.Tensor, lr: float) -> torch.Tensor | None:
        """The gradient at `before`, or the step per unit lr; None when there is none (no grad, lr 0)."""
        if self.signal == "grad":
            return None if p.grad is None else p.grad.detach().to(before.dtype)
        return (now - before) / lr if lr > 0 else None

    @torch.no_grad()
    def estimate(self) -> dict[str, torch.Tensor]:
        """Parameter name -> tensor (its shape) of per-element estimates sigma_theta / (sigma_g + eps), clamped to [floor, ceiling].

        NaN before `warmup` updates, for elements that have not moved, and for parameters never given a gradient.

        Example:
            >>> import torch
            >>> est = ImpliedLR(torch.nn.Linear(2, 1))
            >>> est.estimate()["weight"]
            tensor([[nan, nan]])
        """
        return {name: self._element_estimates(name, p) for name, p in self.params.items()}

    def _element_estimates(self, name: str, p: torch.Tensor) -> torch.Tensor:
        if not self.ready or name not in self._theta:
            return torch.full(p.shape, math.nan, dtype=self._before[name].dtype, device=p.device)
        sigma_theta, sigma_g = self._theta[name].var.sqrt(), self._signal[name].var.sqrt()
        ratio = (sigma_theta / (sigma_g + self.eps)).clamp_(self.floor, self.ceiling)
        return ratio.masked_fill_(sigma_theta == 0, math.nan)

    def group_estimates(self, quantile: float = 0.5) -> list[float]:
        """The median (or `quantile`) of the element estimates of each optimizer param group, NaN elements left out.

        A group holds the watched parameters that are in the optimizer's group (by identity); without
        an optimizer there is one group, the whole model. NaN for a group with no estimate yet.
        For an even count the median is the lower of the two middle values (as `torch.median`).

        Example:
            >>> import torch
            >>> model = torch.nn.Linear(2, 1)
            >>> opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.1)
            >>> ImpliedLR(model, optimizer=opt).group_estimates()
            [nan, nan]
        """
        q = validate.in_range("ImpliedLR.group_estimates", "quantile", quantile, ControlError, 0.0, 1.0)
        estimates = self.estimate()
        names = {id(p): name for name, p in self.params.items()}
        groups = (
            [[p for p in g["params"] if id(p) in names] for g in self.optimizer.param_groups]
            if self.optimizer
            else [list(self.params.values())]
        )
        return [_quantile([estimates[names[id(p)]] for p in group], q) for group in groups]


def _stats_copy(p: torch.Tensor) -> torch.Tensor:
    """A detached copy of a parameter in the statistics' dtype (float32 at least: bf16 moments would be rounding)."""
    return p.detach().to(torch.promote_types(p.dtype, torch.float32), copy=True)


def _add(moments: dict[str, _Moments], name: str, x: torch.Tensor, beta: float) -> None:
    if name in moments:
        moments[name].add(x, beta)
    else:
        moments[name] = _Moments.first(x)


def _quantile(tensors: list[torch.Tensor], q: float) -> float:
    if not tensors:
        return math.nan
    flat = torch.cat([t.reshape(-1).float().cpu() for t in tensors])
    flat = flat[~torch.isnan(flat)]
    if not len(flat):
        return math.nan
    return float(flat.sort().values[int(q * (len(flat) - 1))])  # the lower middle value for q = 0.5, as torch.median
