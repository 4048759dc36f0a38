"""Optimizers for a population: torch.optim's update rules on stacked parameters, per-member hyperparameters.

Every parameter tensor of a population has a leading member axis. One `lrkit.Optim`
describes one member's optimizer (a family and torch.optim's defaults for it);
`BatchedOptimizer` updates all members at once, each family on its members,
with a per-member lr and momentum (or Adam's beta1) at every step. The formulas
are torch.optim's, term for term, so member *i* follows `Optim.to_torch` to float
tolerance.

Example:
    >>> import torch
    >>> p = torch.ones(2, 3)  # 2 members with 3 weights each
    >>> opt = BatchedOptimizer([p], [Optim("sgd"), Optim("adam")])
    >>> opt.step([torch.ones(2, 3)], lr=torch.tensor([0.1, 0.1]), momentum=torch.tensor([0.0, 0.9], dtype=torch.float64))
    >>> [round(v, 6) for v in p[:, 0].tolist()]
    [0.9, 0.9]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import LabError
from lrkit.optim import FAMILIES, Optim

if TYPE_CHECKING:
    import torch


class BatchedOptimizer:
    """Update stacked parameters in place, each member by its own family and hyperparameters.

    `step(grads, lr, momentum)` takes per-member tensors of shape (P,): the lr and
    the momentum (beta1 for Adam-like members) of this step, so schedules of both
    are honoured exactly as `lrkit.Scheduler` writes them into a torch optimizer.
    A member with lr 0 and zero gradients is left unchanged (how diverged members are frozen).

    Example:
        >>> import torch
        >>> p = torch.zeros(1, 2)
        >>> opt = BatchedOptimizer([p], [Optim("adam")])
        >>> opt.step([torch.tensor([[1.0, -2.0]])], lr=torch.tensor([0.1]), momentum=torch.tensor([0.9], dtype=torch.float64))
        >>> [round(v, 6) for v in p[0].tolist()]
        [-0.1, 0.1]
    """

    def __init__(self, params: Sequence[torch.Tensor], optims: Sequence[Optim], *, momentum_free: Sequence[bool] | None = None) -> None:
        import torch

        if not params or any(p.shape[0] != len(optims) for p in params):
            validate.fail(
                "BatchedOptimizer", "params", f"must be tensors with a leading member axis of {len(optims)}", len(params), LabError
            )
        self.params = list(params)
        self.optims = list(optims)
        self.steps = 0
        free = list(momentum_free) if momentum_free is not None else [False] * len(optims)
        self.momentum_free = free
        device = self.params[0].device
        self.groups: list[_Group] = []
        for family in FAMILIES:
            members = [i for i, o in enumerate(optims) if o.family == family]
            if members:
                index = None if len(members) == len(optims) else torch.tensor(members, device=device)
                plain = family == "sgd" and all(free[i] for i in members)
                self.groups.append(_Group(family, index, [optims[i] for i in members], self.params, plain=plain))

    def select(self, rows: Sequence[int], params: Sequence[torch.Tensor]) -> BatchedOptimizer:
        """The optimizer of the members at `rows` only (in that order), its state carried over, for their new `params`.

        The new parameters may live on another device: the state follows them.

        Example:
            >>> import torch
            >>> p = torch.zeros(2, 1)
            >>> opt = BatchedOptimizer([p], [Optim("adam")] * 2)
            >>> opt.step([torch.tensor([[1.0], [2.0]])], lr=torch.tensor([0.1, 0.1]), momentum=torch.full((2,), 0.9, dtype=torch.float64))
            >>> kept = opt.select([1], [p[1:].clone()])
            >>> kept.steps, kept.groups[0].state[0]["exp_avg"].flatten().tolist() == [opt.groups[0].state[0]["exp_avg"][1].item()]
            (1, True)
        """
        import torch

        rows = list(rows)
        new = BatchedOptimizer(params, [self.optims[i] for i in rows], momentum_free=[self.momentum_free[i] for i in rows])
        new.steps = self.steps
        where = {}  # a member's place in the old groups: (group, position within it)
        for group in self.groups:
            members = range(len(self.optims)) if group.index is None else group.index.tolist()
            where.update({m: (group, k) for k, m in enumerate(members)})
        for group in new.groups:
            members = range(len(new.optims)) if group.index is None else group.index.tolist()
            old = [where[rows[m]] for m in members]
            source = old[0][0]
            index = torch.tensor([k for _, k in old], dtype=torch.long, device=source.fixed["eps"].device)
            for new_state, old_state in zip(group.state, source.state):
                for key in new_state:
                    new_state[key] = old_state[key].index_select(0, index).to(new_state[key].device)
        return new

    def step(self, grads: Sequence[torch.Tensor], lr: torch.Tensor, momentum: torch.Tensor) -> None:
        """One update of every member with this step's per-member lr and momentum.

        Example:
            >>> import torch
            >>> p = torch.ones(2, 1)
            >>> BatchedOptimizer([p], [Optim("sgd")] * 2).step([torch.ones(2, 1)], lr=torch.tensor([0.5, 0.0]), momentum=torch.zeros(2))
            >>> p.flatten().tolist()
            [0.5, 1.0]
        """
        import torch

        self.steps += 1
        with torch.no_grad():
            for group in self.groups:
                group.step(self.params, grads, lr, momentum, self.steps)


class _Group:
    """The members of one family: their hyperparameters as (P_g,) tensors and their optimizer state.

    `plain` marks SGD members whose momentum is 0 at every step: the momentum buffer
    would equal the gradient, so it is skipped (the same numbers, fewer operations).
    """

    def __init__(self, family: str, index: torch.Tensor | None, optims: list[Optim], params: list[torch.Tensor], *, plain: bool) -> None:
        import torch

        self.family, self.index, self.plain = family, index, plain
        device = params[0].device

        def column(field: str) -> torch.Tensor:
            return torch.tensor([float(getattr(o, field)) for o in optims], dtype=torch.float64, device=device)

        # 1 - beta in double precision, then rounded once (as torch does with Python floats): in float32 it would cancel
        beta2 = column("beta2")
        self.fixed: Hyper = {"beta2": beta2, "1-beta2": 1 - beta2, "eps": column("eps"), "wd": column("weight_decay")}
        self.decays = bool(self.fixed["wd"].any())
        self.centered = optims[0].centered if family == "rmsprop" else False
        if any(o.centered != self.centered for o in optims):
            validate.fail(
                "BatchedOptimizer", "optims", "must agree on `centered` among rmsprop members", [o.centered for o in optims], LabError
            )
        n = len(optims)
        keys = () if plain else STATE[family]
        self.state = [{k: torch.zeros((n, *p.shape[1:]), dtype=p.dtype, device=device) for k in keys} for p in params]
        self._views: dict[tuple[Any, int], Hyper] = {}

    def _pick(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.index is None else t.index_select(0, self.index)

    def _shaped(self, values: Hyper, p: torch.Tensor) -> Hyper:
        """The hyperparameters shaped (P_g, 1, ...) to broadcast over parameter `p`."""
        shape = (-1,) + (1,) * (p.dim() - 1)
        return {k: v.view(shape) for k, v in values.items()}

    def step(self, params: list[torch.Tensor], grads: Sequence[torch.Tensor], lr: torch.Tensor, mom: torch.Tensor, t: int) -> None:
        hp = {"lr": self._pick(lr).double()}
        if not self.plain:
            hp["mom"] = self._pick(mom).double()
            hp["1-mom"] = 1 - hp["mom"]
        views: dict[tuple[Any, int], Hyper] = {}
        rounded: dict[Any, Hyper] = {}  # hyperparameters in each parameter dtype, rounded once per step
        for p_all, g_all, state in zip(params, grads, self.state):
            p, g = self._pick(p_all), self._pick(g_all)
            key = (p.dtype, p.dim())
            if key not in views:
                if p.dtype not in rounded:
                    rounded[p.dtype] = {k: v.to(p.dtype) for k, v in hp.items()}
                if key not in self._views:
                    self._views[key] = self._shaped({k: v.to(p.dtype) for k, v in self.fixed.items()}, p)
                views[key] = {**self._views[key], **self._shaped(rounded[p.dtype], p)}
            _UPDATES[self.family](self, p, g, state, views[key], {**self.fixed, **hp}, t)
            if self.index is not None:
                p_all.index_copy_(0, self.index, p)


STATE = {
    "sgd": ("buf",),
    "nesterov": ("buf",),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg", "buf", "grad_avg"),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
}
Hyper = dict[str, "torch.Tensor"]


def _with_decay(grp: _Group, p: torch.Tensor, g: torch.Tensor, v: Hyper) -> torch.Tensor:
    return g + v["wd"] * p if grp.decays else g


def _sgd(grp: _Group, p: torch.Tensor, g: torch.Tensor, s: Hyper, v: Hyper, hp: Hyper, t: int) -> None:
    g = _with_decay(grp, p, g, v)
    if grp.plain:
        # one fused pass, no temporary (x lr, subtract)
        p.addcmul_(v["lr"], g, value=-1)
        return
    # torch starts the buffer at the first gradient; mom * 0 + g is the same value
    buf = s["buf"].mul_(v["mom"]).add_(g)
    d = g + v["mom"] * buf if grp.family == "nesterov" else buf
    p.addcmul_(v["lr"], d, value=-1)


def _adagrad(grp: _Group, p: torch.Tensor, g: torch.Tensor, s: Hyper, v: Hyper, hp: Hyper, t: int) -> None:
    g = _with_decay(grp, p, g, v)
    total = s["sum"].addcmul_(g, g)
    p.addcmul_(v["lr"], g / total.sqrt().add_(v["eps"]), value=-1)


def _rmsprop(grp: _Group, p: torch.Tensor, g: torch.Tensor, s: Hyper, v: Hyper, hp: Hyper, t: int) -> None:
    import torch

    g = _with_decay(grp, p, g, v)
    sq = s["square_avg"].mul_(v["beta2"]).addcmul_(g, g * v["1-beta2"])
    if grp.centered:
        avg_g = s["grad_avg"].lerp_(g, v["1-beta2"])
        avg = (sq - avg_g * avg_g).sqrt_().add_(v["eps"])
    else:
        avg = sq.sqrt().add_(v["eps"])
    buf = s["buf"].mul_(v["mom"]).add_(g / avg)
    # torch uses the momentum buffer only when momentum > 0; with momentum 0 the buffer *is* g / avg
    step = torch.where(v["mom"] > 0, buf, g / avg)
    p.addcmul_(v["lr"], step, value=-1)


def _adam(grp: _Group, p: torch.Tensor, g: torch.Tensor, s: Hyper, v: Hyper, hp: Hyper, t: int) -> None:
    if grp.family == "adamw":
        p.mul_((1 - hp["lr"] * hp["wd"]).to(p.dtype).view(v["lr"].shape))
    else:
        g = _with_decay(grp, p, g, v)
    m = s["exp_avg"].lerp_(g, v["1-mom"])
    sq = s["exp_avg_sq"].mul_(v["beta2"]).addcmul_(g, g * v["1-beta2"])
    # bias corrections in double precision from this step's beta1, as torch computes them in Python floats
    shape = (-1,) + (1,) * (p.dim() - 1)
    correction1 = 1 - hp["mom"] ** t
    correction2_sqrt = (1 - hp["beta2"] ** t).sqrt()
    step_size = (hp["lr"] / correction1).to(p.dtype).view(shape)
    denom = (sq.sqrt() / correction2_sqrt.to(p.dtype).view(shape)).add_(v["eps"])
    p.addcmul_(step_size, m / denom, value=-1)


_UPDATES = {"sgd": _sgd, "nesterov": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam, "adamw": _adam}


__all__ = ["FAMILIES", "BatchedOptimizer", "Optim"]  # Optim is lrkit.optim.Optim, re-exported for the lab
