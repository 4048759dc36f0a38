"""`lrkit.SelfTuningLR`: an optimizer wrapper whose lr follows hypergradient descent or the implied lr.

Two rules, per param group, for any optimizer of `lrkit.Optim`'s families (SGD, Nesterov,
Adagrad, RMSprop, Adam, AdamW):

- "hypergradient" (Baydin et al. 2018, "Online Learning Rate Adaptation with Hypergradient
  Descent"): the step just before this one was `theta_t = theta_{t-1} + lr_{t-1} u_{t-1}`, so
  `d f(theta_t) / d lr = g_t . u_{t-1}` and the lr descends on it before each step:
  `lr_t = lr_{t-1} - hyper_lr * g_t . u_{t-1}`. For SGD `u = -g` (their SGD-HD:
  `lr_t = lr_{t-1} + hyper_lr g_t . g_{t-1}`), for Adam `u = -m_hat / (sqrt(v_hat) + eps)` (Adam-HD).
  The direction is read from the weights themselves, `u_{t-1} = (theta_t - theta_{t-1}) / lr_{t-1}`
  (every family scales its whole step by the lr), so one rule serves every family; a coupled
  weight decay is part of the objective and is added to `g`. The lr is clamped into
  [min_lr, max_lr] (0 and inf): late in training the hypergradient drives it negative; a
  non-finite update (overflowing gradients) sets it to min_lr. After a
  step at lr 0 the direction cannot be read from the weights: `-g_t` (steepest descent) stands in,
  so the lr can rise again.
  The multiplicative rule, `lr_t = lr_{t-1} (1 - hyper_lr cos(g_t, u_{t-1}))` (hyper_lr 0.02), is the
  same descent with the cosine in place of the dot product: free of the gradient's scale, the
  lr changes by a bounded factor a step. From an lr 10x too large the additive rule overshoots
  (the gradients have grown when it reacts, and its restart from 0 is `hyper_lr |g|^2`): the
  multiplicative rule comes back (tests/test_selftuning.py).
- "implied": after each step the lr becomes `scale` times the `quantile` (0.1) of the group's
  implied lrs, `lrkit.ImpliedLR(signal="step")`: sigma_theta / sigma_u, the lr at which one step
  along the optimizer's own direction is a Newton step (Duda's sigma_theta / sigma_g for plain
  SGD). During the estimator's warm-up, and for a group with no estimate, the lr is left as it is.
  The median is unstable for elements whose curvature is more than twice the median's: on the
  lab's blobs and regression problems, lr = median ran away (lr 9 and 3.5, the loss diverged),
  hence the 0.1 quantile; `scale` 0.5 collapsed to the floor (the estimate follows the lr).

Call `tuner.step()` in place of `optimizer.step()`; `tuner.lrs` records the lr of every step.

Example:
    >>> import torch
    >>> from lrkit.torch.selftuning import SelfTuningLR
    >>> w = torch.nn.Parameter(torch.tensor([4.0]))
    >>> tuner = SelfTuningLR(torch.optim.SGD([w], lr=0.01), hyper_lr=0.01)
    >>> for _ in range(50):
    ...     tuner.zero_grad()
    ...     (w**2).sum().backward()  # f = w^2: the best lr is 0.5
    ...     tuner.step()
    >>> round(tuner.lrs[1][0], 4)  # 0.01 + 0.01 * g_1 g_0 = 0.01 + 0.01 * 7.84 * 8
    0.6372
    >>> abs(float(w.detach())) < 1e-3
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from lrkit import validate
from lrkit.errors import ControlError
from lrkit.optim import Optim
from lrkit.torch.implied import ImpliedLR

METHODS = ("hypergradient", "implied")
RULES = ("additive", "multiplicative")
MULTIPLICATIVE_HYPER_LR = 0.02  # the multiplicative rule's default: the lr changes by at most 2% a step
# Baydin et al.'s hypergradient lrs: 1e-3 for SGD-HD and SGDN-HD, 1e-7 for Adam-HD (its step is ~lr, not ~lr * |g|)
HYPER_LRS = {"sgd": 1e-3, "nesterov": 1e-3, "adam": 1e-7, "adamw": 1e-7}


class SelfTuningLR:
    """Drive an optimizer's lr by hypergradient descent or by the implied lr, and record it.

    Args:
        optimizer: a torch optimizer of `lrkit.Optim`'s families (`Optim.from_torch` checks it).
        method: "hypergradient" or "implied".
        hyper_lr: the lr of the lr (hypergradient); default Baydin et al.'s for SGD / Nesterov (1e-3)
            and Adam / AdamW (1e-7); needed for Adagrad and RMSprop.
        model: the module trained (implied; default: a module holding the optimizer's parameters).
        rule: "additive" (Baydin et al.'s) or "multiplicative" (lr *= 1 - hyper_lr cos(g_t, u_{t-1})).
        beta, quantile, scale: the implied rule's EMA decay (0.9), group quantile (0.1) and factor (1).
        min_lr, max_lr: the clamp of the lr (0 and inf).

    Example:
        >>> import torch
        >>> tuner = SelfTuningLR(torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=0.01))
        >>> tuner.method, tuner.hyper_lr, tuner.lrs
        ('hypergradient', 1e-07, [])
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, method: str = "hypergradient", rule: str = "additive", hyper_lr: float | None = None,
        model: torch.nn.Module | None = None, beta: float = 0.9, quantile: float = 0.1, scale: float = 1.0,
        min_lr: float = 0.0, max_lr: float = math.inf,
    ) -> None:  # fmt: skip
        self.family = Optim.from_torch(optimizer, "SelfTuningLR").family
        self.optimizer = optimizer
        self.method = validate.choice("SelfTuningLR", "method", method, ControlError, METHODS)
        self.rule = validate.choice("SelfTuningLR", "rule", rule, ControlError, RULES)
        self.hyper_lr = self._hyper_lr(hyper_lr) if method == "hypergradient" else math.nan
        self.quantile = validate.in_range("SelfTuningLR", "quantile", quantile, ControlError, 0.0, 1.0)
        self.scale = validate.positive("SelfTuningLR", "scale", scale, ControlError)
        self.min_lr = validate.non_negative("SelfTuningLR", "min_lr", min_lr, ControlError)
        self.max_lr = validate.number("SelfTuningLR", "max_lr", max_lr, ControlError, finite=False)
        if not self.max_lr >= self.min_lr:
            validate.fail("SelfTuningLR", "max_lr", f"must be >= min_lr ({self.min_lr})", max_lr, ControlError)
        self.implied = ImpliedLR(model or _holder(optimizer), beta, optimizer=optimizer, signal="step") if method == "implied" else None
        self.lrs: list[list[float]] = []  # the lr of each group at every step taken
        self._before: list[list[torch.Tensor]] | None = None  # hypergradient: the weights before the previous step
        self._lr_before: list[float] = []

    def _hyper_lr(self, hyper_lr: float | None) -> float:
        if hyper_lr is None and self.rule == "multiplicative":
            return MULTIPLICATIVE_HYPER_LR
        if hyper_lr is None:
            if self.family not in HYPER_LRS:
                why = f"must be given for {self.family} (defaults exist for {', '.join(HYPER_LRS)})"
                validate.fail("SelfTuningLR", "hyper_lr", why, None, ControlError)
            return HYPER_LRS[self.family]
        bound = 1.0 if self.rule == "multiplicative" else math.inf  # a factor 1 - hyper_lr must stay positive
        return validate.in_range("SelfTuningLR", "hyper_lr", hyper_lr, ControlError, 0.0, bound, open_low=True, open_high=True)

    @property
    def param_groups(self) -> list[dict[str, object]]:
        """The wrapped optimizer's param groups.

        Example:
            >>> import torch
            >>> SelfTuningLR(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)).param_groups[0]["lr"]
            0.1
        """
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's `zero_grad`.

        Example:
            >>> import torch
            >>> SelfTuningLR(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)).zero_grad()
        """
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Set each group's lr by the rule, take the optimizer's step, record the lrs used; returns the closure's loss.

        Example:
            >>> import torch
            >>> w = torch.nn.Parameter(torch.ones(1))
            >>> tuner = SelfTuningLR(torch.optim.SGD([w], lr=0.1))
            >>> (w**2).sum().backward(); _ = tuner.step(); tuner.lrs
            [[0.1]]
        """
        if self.method == "hypergradient":
            self._hypergradient_lrs()
        self.lrs.append([float(g["lr"]) for g in self.optimizer.param_groups])
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        if self.implied is not None:
            self._implied_lrs(self.implied)
        return loss

    def history(self) -> npt.NDArray[np.float64]:
        """The recorded lrs as an array, one row per step, one column per param group.

        Example:
            >>> import torch
            >>> SelfTuningLR(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)).history().shape
            (0, 1)
        """
        return np.asarray(self.lrs, dtype=np.float64).reshape(len(self.lrs), len(self.optimizer.param_groups))

    @torch.no_grad()
    def _hypergradient_lrs(self) -> None:
        groups = self.optimizer.param_groups
        now = [[p.detach().clone() for p in g["params"]] for g in groups]
        if self._before is not None:
            for i, group in enumerate(groups):
                dot, g_norm, u_norm = self._hypergradient(group, now[i], self._before[i], self._lr_before[i])
                lr = float(group["lr"])
                if self.rule == "additive":
                    group["lr"] = self._clamp(lr - self.hyper_lr * dot)
                elif g_norm > 0 and u_norm > 0:  # multiplicative: the cosine of g_t and u_{t-1} in place of their dot product
                    group["lr"] = self._clamp(lr * (1.0 - self.hyper_lr * dot / (g_norm * u_norm)))
        self._before, self._lr_before = now, [float(g["lr"]) for g in groups]

    def _hypergradient(
        self, group: dict[str, object], now: list[torch.Tensor], before: list[torch.Tensor], lr: float
    ) -> tuple[float, float, float]:
        """g_t . u_{t-1} (the derivative of the loss at theta_t with respect to the previous step's lr), |g_t| and |u_{t-1}|."""
        decay = 0.0 if self.family == "adamw" else float(group.get("weight_decay", 0.0))  # type: ignore[arg-type]
        dot, gg, uu = 0.0, 0.0, 0.0
        for p, theta, theta_before in zip(group["params"], now, before):  # type: ignore[call-overload]
            if p.grad is None:
                continue
            g = p.grad.detach() + decay * theta if decay else p.grad.detach()
            u = (theta - theta_before) / lr if lr > 0 else -g  # at lr 0 the step cannot be read: steepest descent stands in
            dot, gg, uu = dot + float(torch.sum(g * u)), gg + float(torch.sum(g * g)), uu + float(torch.sum(u * u))
        return dot, math.sqrt(gg), math.sqrt(uu)

    def _implied_lrs(self, implied: ImpliedLR) -> None:
        implied.update()
        if not implied.ready:
            return
        for group, estimate in zip(self.optimizer.param_groups, implied.group_estimates(self.quantile)):
            if math.isfinite(estimate):
                group["lr"] = self._clamp(self.scale * estimate)

    def _clamp(self, lr: float) -> float:
        return min(max(lr, self.min_lr), self.max_lr) if math.isfinite(lr) else self.min_lr


def _holder(optimizer: torch.optim.Optimizer) -> torch.nn.Module:
    """A module holding the optimizer's parameters, so ImpliedLR can watch them by name (`g{group}.{index}`)."""
    holder = torch.nn.Module()
    for i, group in enumerate(optimizer.param_groups):
        if not all(isinstance(p, torch.nn.Parameter) for p in group["params"]):
            validate.fail("SelfTuningLR", "model", "must be given when the optimizer holds plain tensors", None, ControlError)
        holder.register_module(f"g{i}", torch.nn.ParameterList(group["params"]))
    return holder
