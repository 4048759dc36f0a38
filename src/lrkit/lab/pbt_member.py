"""A member's plain run, resumable exactly (`MemberRun`), and the replay of a PBT schedule from scratch (`replay`).

A member is the plain PyTorch run of `lrkit.lab.population`: `torch.manual_seed(seed)`, `problem.make_model()`,
`optimizer.to_torch(...)`, an `lrkit.Scheduler` driving the lr (and momentum; weight decay set per epoch) from lrkit
schedules, an optional `lrkit.Plateau` fed the test loss after every epoch, and lrkit's minibatch order for `seed`
(`lrkit.torch.data`). `state()` holds all the next steps depend on; a run built from it (with the same or new
schedules) goes on exactly: this is what a PBT trial checkpoints and restores (`lrkit.lab.pbt_tune`).

Example:
    >>> import lrkit
    >>> run = MemberRun(get_problem("blobs"), Recipe(Optim("sgd", momentum=0.9)), {"lr": lrkit.constant(0.05)}, seed=0)
    >>> run.train_epoch(); run.epoch, run.step, run.lr
    (1, 16, 0.05)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lrkit import validate
from lrkit.errors import LabError
from lrkit.lab.pbt_result import PBTResult
from lrkit.lab.problems import Problem, get_problem
from lrkit.optim import Optim
from lrkit.protocols import PlateauLike
from lrkit.schedules.base import Schedule


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What stays fixed over a member's whole run: the optimizer, the plateau, the device, torch's threads.

    Example:
        >>> Recipe(Optim("sgd", momentum=0.9)).device
        'cpu'
    """

    optimizer: Optim
    plateau: PlateauLike | None = None
    device: str = "cpu"
    threads: int = 1


class MemberRun:
    """One member's plain run under lrkit schedules for the lr (and momentum, weight decay), resumable exactly.

    Built fresh from `seed`, or from a `state()` with (possibly new) schedules: the run then goes on from the
    saved step with the schedules' values there. Weight decay is set from its schedule at every epoch's start.

    Example:
        >>> import lrkit
        >>> p = get_problem("blobs")
        >>> a = MemberRun(p, Recipe(Optim("sgd", momentum=0.9)), {"lr": lrkit.constant(0.05)}, seed=0)
        >>> a.train_epoch(); saved = a.state(); a.train_epoch()
        >>> b = MemberRun(p, Recipe(Optim("sgd", momentum=0.9)), {"lr": lrkit.constant(0.05)}, seed=0, state=saved)
        >>> b.train_epoch(); b.losses == a.losses and b.lrs == a.lrs
        True
    """

    def __init__(
        self, problem: Problem, recipe: Recipe, schedules: Mapping[str, Schedule], seed: int, state: Mapping[str, Any] | None = None
    ) -> None:
        import torch

        from lrkit.torch.data import MinibatchOrder
        from lrkit.torch.scheduler import Scheduler

        self.problem, self.recipe, self.device = problem, recipe, torch.device(recipe.device)
        self.data = [t.to(self.device) for t in (problem.x_train, problem.y_train, problem.x_test, problem.y_test)]
        torch.manual_seed(seed)
        self.model = problem.make_model().to(self.device)
        self.optimizer = recipe.optimizer.to_torch(self.model.parameters(), lr=1.0)  # the Scheduler writes every step's lr
        self.order = MinibatchOrder(len(problem.x_train), seed)
        self.epoch = 0
        self.lrs: list[float] = []  # the lr of every update, as the optimizer had it
        self.losses: list[float] = []  # test loss and accuracy after every epoch
        self.accuracies: list[float] = []
        if state is not None:
            self._load(state)
        self.weight_decay = schedules.get("weight_decay")
        self.scheduler = Scheduler(self.optimizer, lr=schedules["lr"], momentum=schedules.get("momentum"), plateau=recipe.plateau)
        if state is not None:
            self.scheduler.load_state_dict(state["scheduler"])  # the step and plateau state; lrs of the (new) schedules there

    @property
    def step(self) -> int:
        """Optimizer updates done: the step the next update is."""
        return int(self.scheduler.last_epoch)

    @property
    def lr(self) -> float:
        """The lr of the next update (the first param group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def train_epoch(self) -> None:
        """One epoch in lrkit's minibatch order, then the test metrics (and the plateau fed the test loss)."""
        x, y = self.data[0], self.data[1]
        self.model.train()
        if self.weight_decay is not None:
            for group in self.optimizer.param_groups:
                group["weight_decay"] = self.weight_decay(self.step)
        for idx in self.order.epoch(self.problem.batch_size, self.device):
            self.lrs.append(self.lr)
            loss = self.problem.loss(self.model(x[idx]), y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            self.scheduler.step()
        loss_, acc = self.evaluate()
        if self.recipe.plateau is not None and math.isfinite(loss_):
            self.scheduler.observe(loss_)
        self.epoch += 1
        self.losses.append(loss_)
        self.accuracies.append(acc)

    def evaluate(self) -> tuple[float, float]:
        """The test loss and accuracy (NaN for regression) in eval mode."""
        import torch

        self.model.eval()
        with torch.no_grad():
            out = self.model(self.data[2])
            loss = float(self.problem.loss(out, self.data[3]))
            acc = float(self.problem.accuracy(out, self.data[3])) if self.problem.task == "classification" else math.nan
        return loss, acc

    def state(self) -> dict[str, Any]:
        """A copy of everything the next steps depend on (tensors, numbers, lists: `torch.load(weights_only=True)` reads it)."""
        import torch

        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "order": self.order.generator.get_state(), "rng": torch.get_rng_state(), "epoch": self.epoch, "lrs": self.lrs,
                 "losses": self.losses, "accuracies": self.accuracies}  # fmt: skip
        return copy.deepcopy(state)  # state_dict() shares the live tensors

    def _load(self, state: Mapping[str, Any]) -> None:
        import torch

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.order.generator.set_state(state["order"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.lrs = int(state["epoch"]), list(state["lrs"])
        self.losses, self.accuracies = list(state["losses"]), list(state["accuracies"])


def replay(
    result: PBTResult, seeds: Sequence[int], *, trial: int | None = None, problem: Problem | None = None, device: str | None = None
) -> list[MemberRun]:
    """The winner's (or `trials[trial]`'s) exported schedules (`result.spec`, and momentum / weight decay when mutated)
    trained from scratch.

    Each seed is a new plain run without a plateau (the winner's plateau scale is in its lr already): the same
    lr at every step as the winner used, on other weights. `problem` defaults to `get_problem(result.problem)`.

    Example:
        >>> from lrkit.lab.pbt_result import _example
        >>> [len(r.lrs) for r in replay(_example(), seeds=[5])]
        [64]
    """
    import lrkit

    p = problem if problem is not None else get_problem(result.problem, seed=result.seed)
    spec = repr(result.schedule("lr", trial))  # the exported text, read back as a user would
    schedules = {"lr": lrkit.parse(spec), **{h: result.schedule(h, trial) for h in result.hyperparams if h != "lr"}}
    recipe = Recipe(Optim.parse(result.optimizer), None, read_device(device))
    runs = []
    for s in seeds:
        run = MemberRun(p, recipe, schedules, validate.seed("replay", "seeds", s, LabError))
        for _ in range(result.epochs):
            run.train_epoch()
        runs.append(run)
    return runs


def read_device(device: Any) -> str:
    """A torch device name; whether it exists is the workers' matter (a CPU-only driver may lead a GPU cluster)."""
    if device is None:
        return "cpu"
    import torch

    name = str(validate.instance("pbt", "device", device, LabError, str, "a torch device name"))
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        validate.fail("pbt", "device", "must be a torch device (cpu, cuda, cuda:N, mps)", device, LabError)
    return name


__all__ = ["MemberRun", "Recipe", "read_device", "replay"]
