"""The two ways a search trains its members: all at once as stacked weights, or one after another as plain runs.

A *member* is one candidate schedule from one init seed. `Batched` trains a chunk of members
as one population (`lrkit.lab.stacked.StackedModel` + `lrkit.lab.optim.BatchedOptimizer`:
torch.optim's update rules term for term); `Sequential` is the plain PyTorch run of each member
(`torch.manual_seed(seed)`, `make_model()`, `Optim.to_torch`, `lrkit.Scheduler`), used when a
module cannot be batched. Both see every batch of `train_data` in the same order, drop a member
the moment its loss is not finite, and evaluate in eval mode.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import torch.nn.functional as F
    >>> from lrkit.optim import Optim
    >>> from lrkit.schedules import constant
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> setup = Setup.of(lambda: nn.Linear(3, 2), F.cross_entropy, [constant(0.1), constant(1e300)], [0, 0], Optim("sgd"),
    ...                  steps=4, probe=(x, y), example=nn.Linear(3, 2), device=torch.device("cpu"))
    >>> run = Batched(setup, [0, 1])
    >>> run.train_epoch([(x, y)] * 4, lambda: None)
    [1]
    >>> run.ids, run.member_steps
    ([0], 5)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lrkit.optim import Optim
from lrkit.schedules.base import Schedule
from lrkit.torch.search.checks import problem_view
from lrkit.torch.search.inputs import Batch, Metric

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

Array = npt.NDArray[np.float64]
# a member has diverged when a minibatch loss is not finite or above this multiple of its first one: it leaves the
# computation at once (a diverging cross-entropy can stay finite for long, costing steps without a chance to win)
DIVERGED = 100.0


@dataclasses.dataclass
class Setup:
    """Everything the runners share: the model factory, the loss, and each member's schedule, optimizer and seed.

    `task` is "classification" or "regression" when `loss_fn` is one lrkit knows (cross-entropy on logits, mean
    squared error): a plain MLP then differentiates by hand (`StackedModel.manual`); otherwise autograd runs
    `loss_fn` under `vmap`. `problem` describes the model to `StackedModel` (its data is the probe batch only).
    """

    make_model: Callable[[], torch.nn.Module]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    schedules: list[Schedule]
    seeds: list[int]
    optims: list[Optim]
    table: Array  # (members, steps + 1): each member's lr at every optimizer step
    device: torch.device
    task: str | None
    problem: Problem
    trainable: list[int]  # the positions (in named_parameters order) of the parameters that require grad
    metric: Metric | None = None

    @classmethod
    def of(
        cls, make_model: Callable[[], torch.nn.Module], loss_fn: Any, schedules: list[Schedule], seeds: list[int],
        optim: Optim | list[Optim], *, steps: int, probe: Batch, example: torch.nn.Module, device: torch.device,
        task: str | None = None, metric: Metric | None = None,
    ) -> Setup:  # fmt: skip
        """A setup for members with these schedules and seeds (one optimizer for all, or one each); `example` is one
        model from `make_model` (which of its parameters train)."""
        optims = list(optim) if isinstance(optim, list) else [optim] * len(schedules)
        table = np.stack([s.values(np.arange(steps + 1)) for s in schedules])
        trainable = [k for k, p in enumerate(example.parameters()) if p.requires_grad]
        problem = problem_view(make_model, probe, task)
        return cls(make_model, loss_fn, schedules, seeds, optims, table, device, task, problem, trainable, metric)


class Batched:
    """A chunk of members trained as one population; `ids` are the members still in it (diverged ones leave at once)."""

    def __init__(self, setup: Setup, ids: Sequence[int]) -> None:
        import torch

        from lrkit.lab.optim import BatchedOptimizer
        from lrkit.lab.stacked import StackedModel

        self.setup, self.ids = setup, list(ids)
        self.model = StackedModel(setup.problem, [setup.seeds[m] for m in self.ids], setup.device)
        # by hand only for a loss lrkit knows and a model with every parameter trained
        self.model.manual = self.model.manual and setup.task is not None and len(setup.trainable) == len(self.model.params)
        free = [o.family == "sgd" and not o.momentum for o in setup.optims]
        self.opt = BatchedOptimizer(self._trained(), [setup.optims[m] for m in self.ids], momentum_free=[free[m] for m in self.ids])
        self.momentum = torch.tensor([float(setup.optims[m].momentum or 0.0) for m in self.ids], dtype=torch.float64, device=setup.device)
        self.step = 0
        self.member_steps = 0
        self.first: torch.Tensor | None = None  # each member's first minibatch loss

    def _trained(self) -> list[torch.Tensor]:
        return [self.model.params[k] for k in self.setup.trainable]

    def train_epoch(self, data: Iterable[Batch], same_batches: Callable[[], None]) -> list[int]:
        """One pass over `data` (after `same_batches()` sets the epoch's random state); returns the members that diverged."""
        import torch

        same_batches()
        diverged: list[int] = []
        device = self.setup.device
        for x, y in data:
            if not self.ids:
                continue  # every member diverged: the pass still runs, so the data's own checks still hold
            losses, grads = self._loss_and_grads(x.to(device), y.to(device))
            if self.first is None:
                self.first = losses.detach().clone()
            healthy = torch.isfinite(losses.detach()) & (losses.detach() <= DIVERGED * self.first)
            if not bool(healthy.all()):
                rows = healthy.nonzero().flatten().tolist()
                diverged += [m for k, m in enumerate(self.ids) if k not in set(rows)]
                grads = [g.index_select(0, torch.tensor(rows, dtype=torch.long, device=device)) for g in grads]
                self.keep(rows)
                if not self.ids:
                    continue
            lr = torch.from_numpy(self.setup.table[self.ids, self.step]).to(device)
            self.opt.step(grads, lr, self.momentum)
            self.step += 1
            self.member_steps += len(self.ids)
        return diverged

    def _loss_and_grads(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        import torch

        m = self.model
        if m.manual:
            losses, _, grads = m.loss_and_grads(self.setup.problem, x.expand(m.size, *x.shape), y.expand(m.size, *y.shape))
            return losses, grads
        losses = self._losses(m(x, shared=True), y)
        return losses, list(torch.autograd.grad(losses.sum(), self._trained()))

    def _losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from torch.func import vmap

        if self.setup.task is not None:
            return self.setup.problem.loss(out, y.expand(len(out), *y.shape))
        losses: torch.Tensor = vmap(self.setup.loss_fn, in_dims=(0, None))(out, y)
        return losses

    def keep(self, rows: Sequence[int], device: torch.device | str | None = None) -> None:
        """Keep the members at `rows` of this chunk (optionally moved to `device`)."""
        import torch

        rows = list(rows)
        self.model.select(rows, device)
        self.opt = self.opt.select(rows, self._trained())
        index = torch.tensor(rows, dtype=torch.long, device=self.momentum.device)
        self.momentum = self.momentum.index_select(0, index).to(self.model.params[0].device)
        if self.first is not None:
            self.first = self.first.index_select(0, index.to(self.first.device)).to(self.momentum.device)
        self.ids = [self.ids[k] for k in rows]

    def evaluate(self, data: Iterable[Batch]) -> tuple[Array, Array | None]:
        """Each member's mean validation loss and metric over `data` (rows weighted by batch size), in eval mode."""
        import torch

        loss = torch.zeros(len(self.ids), dtype=torch.float64)
        metric = torch.zeros(len(self.ids), dtype=torch.float64)
        rows = 0
        with torch.no_grad(), self.model.evaluating():
            for x, y in data:
                x, y = x.to(self.setup.device), y.to(self.setup.device)
                out = self.model(x, shared=True)
                loss += self._losses(out, y).double().cpu() * len(x)
                if self.setup.metric is not None:
                    metric += torch.tensor([float(self.setup.metric(o, y)) for o in out], dtype=torch.float64) * len(x)
                rows += len(x)
        return (loss / rows).numpy(), (metric / rows).numpy() if self.setup.metric is not None else None


class Sequential:
    """The plain PyTorch run of each member, one after another (for modules that cannot be batched)."""

    def __init__(self, setup: Setup, ids: Sequence[int]) -> None:
        self.setup, self.ids = setup, list(ids)
        self.runs = [self._start(m) for m in self.ids]
        self.member_steps = 0

    def _start(self, m: int) -> tuple[torch.nn.Module, Any, list[float]]:
        import torch

        from lrkit.torch.scheduler import Scheduler

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.setup.seeds[m])
            model = self.setup.make_model().to(self.setup.device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = self.setup.optims[m].to_torch(params, float(self.setup.table[m, 0]))
        return model, Scheduler(opt, lr=self.setup.schedules[m]), []

    def train_epoch(self, data: Iterable[Batch], same_batches: Callable[[], None]) -> list[int]:
        """One pass over `data` per member, each after `same_batches()`; returns the members that diverged."""
        diverged: list[int] = []
        for k, (model, sched, first) in enumerate(self.runs):
            same_batches()
            model.train()
            for x, y in data:
                if self.ids[k] in diverged:
                    continue
                loss = self.setup.loss_fn(model(x.to(self.setup.device)), y.to(self.setup.device))
                value = float(loss.detach())
                first += [] if first else [value]
                if not (math.isfinite(value) and value <= DIVERGED * first[0]):
                    diverged.append(self.ids[k])
                    continue
                sched.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                sched.optimizer.step()
                sched.step()
                self.member_steps += 1
        self.keep([k for k, m in enumerate(self.ids) if m not in diverged])
        return diverged

    def keep(self, rows: Sequence[int], device: torch.device | str | None = None) -> None:
        """Keep the members at `rows` (plain runs stay where they are: `device` is for the batched chunks)."""
        self.runs = [self.runs[k] for k in rows]
        self.ids = [self.ids[k] for k in rows]

    def evaluate(self, data: Iterable[Batch]) -> tuple[Array, Array | None]:
        """Each member's mean validation loss and metric over `data`, in eval mode."""
        import torch

        loss, metric = np.zeros(len(self.ids)), np.zeros(len(self.ids))
        rows = 0
        with torch.no_grad():
            for model, *_ in self.runs:
                model.eval()
            for x, y in data:
                x, y = x.to(self.setup.device), y.to(self.setup.device)
                for k, (model, *_) in enumerate(self.runs):
                    out = model(x)
                    loss[k] += float(self.setup.loss_fn(out, y)) * len(x)
                    if self.setup.metric is not None:
                        metric[k] += float(self.setup.metric(out, y)) * len(x)
                rows += len(x)
        return loss / rows, metric / rows if self.setup.metric is not None else None


Runner = Batched | Sequential
