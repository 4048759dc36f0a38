"""The population trainer: P members of one architecture trained in one batched computation.

Each member has its own lr schedule, momentum schedule, optimizer, plateau
controller and seed. Schedules are pure, so each member's lr and momentum for
every optimizer step are computed ahead as one table; a plateau's scale
multiplies the table once per epoch, exactly as `lrkit.Scheduler` does.

Member *i* is the plain PyTorch run: `torch.manual_seed(seed)` then
`problem.make_model()`, `member.optimizer.to_torch(...)`, an `lrkit.Scheduler`
with the same schedules and plateau (fed the test loss after every epoch), and
minibatches in the order of `torch.randperm(n, generator=g)` per epoch, where
`g = torch.Generator().manual_seed(seed)` (or `data_seed` for a shared order).

Example:
    >>> import lrkit
    >>> from lrkit.lab.problems import get_problem
    >>> members = [Member(lr=lr, seed=s) for lr in (0.1, 1e-6) for s in (0, 1)]
    >>> r = train(get_problem("blobs"), members, epochs=3)
    >>> r.test_acc.shape, bool(r.test_acc[:2, -1].min() > r.test_acc[2:, -1].max())
    ((4, 3), True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.engine import read_engine, read_resources
from lrkit.errors import LabError
from lrkit.lab.ray_engine import train_population
from lrkit.lab.stacked import predicted
from lrkit.optim import Optim
from lrkit.protocols import PlateauLike, ScaleState
from lrkit.schedules.base import Schedule
from lrkit.schedules.shapes import Constant
from lrkit.schedules.swa import Averaging

if TYPE_CHECKING:
    import torch

    from lrkit.lab.averaging import StackedAverage
    from lrkit.lab.problems import Problem
    from lrkit.lab.stacked import StackedModel

Array = npt.NDArray[np.float64]
ORDERS = ("member", "shared")


@dataclasses.dataclass(frozen=True)
class Member:
    """One configuration of a population.

    Args:
        lr: an lrkit schedule over optimizer steps, or a number (a constant lr).
        optimizer: an `lrkit.Optim` or its text spec ("adam", "sgd(momentum=0.9)"); default plain SGD.
        momentum: optional schedule of the momentum (Adam's beta1), in [0, 1) at every step: checked
            at construction on the first 1025 steps and at powers of two, and on every step of a run before it
            starts; default: the optimizer's own, constant.
        plateau: optional `lrkit.Plateau` (any `lrkit.protocols.PlateauLike`), fed the test loss after every
            epoch; its scale multiplies `lr`.
        seed: seeds the model's initialization and (with the per-member data order) the minibatch order.
        average: optional `lrkit.schedules.Averaging` (SWA or EMA of the weights, `lrkit.lab.averaging`): once its
            first entry is in, the member's test metrics are those of its averaged weights (BatchNorm updated on them).

    Example:
        >>> Member(lr=0.1).lr, Member(lr=0.1, optimizer="adam").optimizer.family
        (constant(value=0.1), 'adam')
    """

    lr: Schedule | float
    optimizer: Optim = dataclasses.field(default_factory=Optim)
    momentum: Schedule | None = None
    plateau: PlateauLike | None = None
    seed: int = 0
    average: Averaging | None = None

    def __post_init__(self) -> None:
        if validate.is_number(self.lr):
            object.__setattr__(self, "lr", Constant(validate.non_negative("Member", "lr", self.lr, LabError)))
        validate.instance("Member", "lr", self.lr, LabError, Schedule, "an lrkit schedule or a number")
        object.__setattr__(self, "optimizer", Optim.of(self.optimizer, "Member", "optimizer"))
        if self.momentum is not None:
            validate.instance("Member", "momentum", self.momentum, LabError, Schedule, "an lrkit schedule or None")
            _momentum_in_range(self.momentum, _PROBE_STEPS)  # the whole run is checked once its length is known
        if self.plateau is not None:
            validate.instance("Member", "plateau", self.plateau, LabError, PlateauLike, "an lrkit.Plateau (init / update) or None")
        validate.seed("Member", "seed", self.seed, LabError)
        if self.average is not None:
            validate.instance("Member", "average", self.average, LabError, Averaging, "an lrkit.schedules.Averaging or None")

    def lr_values(self, steps: int) -> Array:
        """The member's scheduled lr at steps 0..steps-1 (before any plateau scale).

        Example:
            >>> import lrkit
            >>> Member(lr=lrkit.linear(start=1.0, end=0.0, steps=4)).lr_values(3).tolist()
            [1.0, 0.75, 0.5]
        """
        return cast(Schedule, self.lr).values(np.arange(steps))  # a number became a Constant in __post_init__

    def momentum_values(self, steps: int) -> Array:
        """The member's momentum (or beta1) at steps 0..steps-1; a momentum schedule must stay in [0, 1).

        Example:
            >>> Member(lr=0.1, optimizer=Optim("sgd", momentum=0.9)).momentum_values(2).tolist()
            [0.9, 0.9]
        """
        if self.momentum is None:
            return np.full(steps, float(self.optimizer.momentum or 0.0))
        return _momentum_in_range(self.momentum, np.arange(steps))


# the steps a momentum schedule is checked at when a Member is made: the start, and powers of two far beyond any run
_PROBE_STEPS = np.unique(np.r_[np.arange(1025), 2 ** np.arange(11, 40)])


def _momentum_in_range(momentum: Schedule, steps: npt.NDArray[np.int64]) -> Array:
    """`momentum` at `steps`, which must lie in [0, 1) at each (a momentum of 1 or more makes the update grow without bound)."""
    values = momentum.values(steps)
    outside = np.flatnonzero(~((values >= 0) & (values < 1)))
    if len(outside):
        step, value = int(steps[outside[0]]), float(values[outside[0]])  # the first bad step is named
        validate.fail("Member", "momentum", f"must lie in [0, 1) at every step (step {step}: {value})", momentum, LabError)
    return values


@dataclasses.dataclass(frozen=True)
class PopulationResult:
    """Per-member, per-epoch records of a population run; arrays are (P, epochs).

    `lr` and `momentum` are the values of each epoch's last update; metrics after
    a member diverged are NaN, and `diverged_epoch[i]` is the epoch (from 1) in
    which member i's loss turned non-finite, or 0. `initial_test_loss` is each
    member's test loss before training; `updates[e]` counts optimizer steps to
    the end of epoch e + 1.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> r = train(get_problem("blobs"), [Member(lr=0.05)], epochs=2)
        >>> r.lr.tolist(), r.updates.tolist(), r.diverged.tolist()
        ([[0.05, 0.05]], [16, 32], [False])
    """

    members: tuple[Member, ...]
    train_loss: Array
    train_acc: Array
    test_loss: Array
    test_acc: Array
    lr: Array
    momentum: Array
    diverged_epoch: npt.NDArray[np.int64]
    initial_test_loss: Array
    updates: npt.NDArray[np.int64]

    @property
    def diverged(self) -> npt.NDArray[np.bool_]:
        """Whether each member diverged.

        Example:
            >>> from lrkit.lab.problems import get_problem
            >>> train(get_problem("blobs"), [Member(lr=0.1), Member(lr=1e30)], epochs=1).diverged.tolist()
            [False, True]
        """
        return np.asarray(self.diverged_epoch > 0)


def train(
    problem: Problem,
    members: Sequence[Member],
    *,
    epochs: int | None = None,
    batch_size: int | Sequence[int] | None = None,
    order: str = "member",
    data_seed: int = 0,
    device: torch.device | str | None = None,
    on_epoch: Callable[[int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    shard_size: int | None = None,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
) -> PopulationResult:
    """Train every member on `problem` at once and record each epoch.

    Args:
        problem: the data, model factory and loss (`lrkit.lab.problems.get_problem`).
        members: the configurations; all share the problem's architecture.
        epochs: training budget (default: the problem's).
        batch_size: one size, or one per epoch (a growing batch); default: the problem's.
        order: "member" (each member shuffles with its own seed, the honest default for seed
            studies) or "shared" (all members see the same minibatches, drawn with `data_seed`).
        data_seed: the shuffling seed of the shared order.
        device: where to train (default: where the problem's tensors are).
        on_epoch: called with the epoch number (from 1) after each epoch, e.g. to advance a progress bar. On Ray, where
            shards train side by side, with e = 1, 2, ... in order once the cluster has trained e epochs' worth of
            member-epochs (the last calls when every shard is in).
        engine: "local" (this process) or "ray": the members in shards of consecutive members, one Ray task each, the
            records joined in member order (`lrkit.lab.ray_engine`, docs/ray.md).
        address: with Ray, None starts a local Ray sized to this machine; "auto", "host:port" or "ray://host:port" joins a cluster.
        shard_size: with Ray, the most members per task (default: 2 shards per worker).
        num_cpus: with Ray, CPUs per shard and its torch threads (default 1).
        num_gpus: with Ray, GPUs per shard (default 1 when `device` is CUDA and the cluster has GPUs, else 0).

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> r = train(get_problem("blobs"), [Member(lr=0.1, seed=s) for s in range(3)], epochs=1, order="shared")
        >>> r.test_loss.shape
        (3, 1)
    """
    engine = read_engine("train", engine, address, LabError)
    resources = read_resources("train", shard_size, num_cpus, num_gpus, engine, LabError)
    if engine == "ray":
        count = _epochs(problem, epochs)  # the arguments are checked here, before anything is shipped to the cluster
        options = {
            "epochs": count, "batch_size": _batch_sizes(problem, batch_size, count), "device": device,
            "order": validate.choice("train", "order", order, LabError, ORDERS),
            "data_seed": validate.seed("train", "data_seed", data_seed, LabError),
        }  # fmt: skip
        return train_population(problem, _members(members), options, resources, trainer=train, address=address, on_epoch=on_epoch)
    run = _Run(problem, list(members), _epochs(problem, epochs), batch_size, order, data_seed, device)
    for epoch in range(1, run.epochs + 1):
        run.train_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
    return run.result()


def _epochs(problem: Problem, epochs: int | None) -> int:
    return validate.integer("train", "epochs", problem.epochs if epochs is None else epochs, LabError)


def _batch_sizes(problem: Problem, batch_size: int | Sequence[int] | None, epochs: int) -> list[int]:
    given = problem.batch_size if batch_size is None else batch_size
    if validate.is_number(given):
        return [validate.integer("train", "batch_size", given, LabError)] * epochs
    sizes = [validate.integer("train", "batch_size", b, LabError) for b in validate.sequence("train", "batch_size", given, LabError)]
    validate.length("train", "batch_size", sizes, LabError, epochs, "one per epoch")
    return sizes


def _members(members: Sequence[Member]) -> list[Member]:
    if not members:
        validate.fail("train", "members", "must be a non-empty sequence of Member", members, LabError)
    for member in members:
        validate.instance("train", "members", member, LabError, Member, "a sequence of Member")
    return list(members)


def _rows(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """`data[idx]` for a (P, B) index: one `index_select` of the flat index, several times faster than advanced indexing."""
    return data.index_select(0, idx.reshape(-1)).view(*idx.shape, *data.shape[1:])


def _averages(model: StackedModel, members: list[Member], steps: int) -> StackedAverage | None:
    """The members' stacked weight averages (`lrkit.lab.averaging`), or None when no member averages (nothing changes then)."""
    if all(m.average is None for m in members):
        return None
    from lrkit.lab.averaging import StackedAverage

    return StackedAverage(model, [m.average for m in members], steps)


class _Run:
    """The state of one population run: stacked weights, optimizer, schedules, controllers, records."""

    def __init__(
        self, problem: Problem, members: list[Member], epochs: int, batch_size: Any, order: str, data_seed: int, device: Any
    ) -> None:
        import torch

        from lrkit.lab.optim import BatchedOptimizer
        from lrkit.lab.stacked import StackedModel
        from lrkit.torch.data import steps_per_epoch

        self.problem, self.members, self.epochs = problem, _members(members), epochs
        self.order = validate.choice("train", "order", order, LabError, ORDERS)
        self.sizes = _batch_sizes(problem, batch_size, epochs)
        self.model = StackedModel(problem, [m.seed for m in members], device)
        self.device = self.model.params[0].device
        self.data = [t.to(self.device) for t in (problem.x_train, problem.y_train, problem.x_test, problem.y_test)]
        self.per_epoch = [steps_per_epoch(len(problem.x_train), b) for b in self.sizes]
        total = sum(self.per_epoch)
        self.lr_table = np.stack([m.lr_values(total + 1) for m in members])  # + 1: the lr after the last step
        momentum = np.stack([m.momentum_values(total) for m in members])
        self.momentum = torch.tensor(momentum, dtype=torch.float64, device=self.device)
        free = (momentum == 0).all(axis=1).tolist()
        self.optimizer = BatchedOptimizer(self.model.params, [m.optimizer for m in members], momentum_free=free)
        self._data_orders(
            [validate.seed("train", "data_seed", data_seed, LabError)] if self.order == "shared" else [m.seed for m in members]
        )
        self.plateau_states: list[ScaleState | None] = [m.plateau.init() if m.plateau is not None else None for m in members]
        self.scale = np.ones(len(members))
        self.alive = torch.ones(len(members), dtype=torch.bool, device=self.device)
        self.masking = self.device.type != "cpu"
        self.step = 0
        self.records: dict[str, list[Array]] = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "momentum")}
        self.diverged_epoch = np.zeros(len(members), dtype=np.int64)
        self.initial_test_loss = self.model.evaluate(problem, self.data[2], self.data[3])[0].cpu().numpy()
        self.updates: list[int] = []
        self.averages = _averages(self.model, members, total)

    def _data_orders(self, seeds: list[int]) -> None:
        """One `MinibatchOrder` per distinct seed: members sharing a seed share its data order, drawn once per epoch."""
        import torch

        from lrkit.torch.data import MinibatchOrder

        distinct = {s: k for k, s in enumerate(dict.fromkeys(seeds))}
        self.data_orders = [MinibatchOrder(len(self.problem.x_train), s) for s in distinct]
        self.order_of = torch.tensor([distinct[s] for s in seeds], device=self.device).expand(len(self.members))

    def _orders(self) -> torch.Tensor:
        """This epoch's permutation of the training set for every member, (P, n)."""
        import torch

        perms = torch.stack([order.permutation() for order in self.data_orders]).to(self.device)
        return perms[self.order_of]

    def train_epoch(self, epoch: int) -> None:
        """All minibatch updates of one epoch, then the evaluation, the records and the plateau updates."""
        import torch

        from lrkit.torch.data import batch_slices

        x, y, n = self.data[0], self.data[1], len(self.data[0])
        slices, steps = batch_slices(n, self.sizes[epoch - 1]), self.per_epoch[epoch - 1]
        perms = self._orders()
        # the plateau scale changes only between epochs: this epoch's lrs are one table slice, a row per step
        lrs = torch.tensor((self.lr_table[:, self.step : self.step + steps] * self.scale[:, None]).T.copy(), device=self.device)
        moms = self.momentum[:, self.step : self.step + steps].T.contiguous()
        seen = torch.zeros(2, steps, len(self.members), device=self.device)  # per step: mean loss and hits of each member's minibatch
        for k, rows in enumerate(slices):
            idx = perms[:, rows]
            self._update(_rows(x, idx), _rows(y, idx), lrs[k], moms[k], seen[:, k])
            self.step += 1
        # each minibatch's mean loss weighs by its size: the last one may be smaller
        weights = torch.tensor([float(r.stop - r.start) for r in slices], dtype=torch.float64, device=self.device)
        train = torch.stack([weights @ seen[0].double(), seen[1].double().sum(0)]) / n
        self._record(epoch, train, lrs[-1])

    def _update(self, xb: torch.Tensor, yb: torch.Tensor, lr: torch.Tensor, momentum: torch.Tensor, seen: torch.Tensor) -> None:
        """One minibatch update of every member; writes each member's minibatch loss and hits into `seen` (2, P)."""
        import torch

        losses, out, grads = self.model.loss_and_grads(self.problem, xb, yb)
        total = losses.sum()
        with torch.no_grad():
            seen[0].copy_(losses)
            if self.problem.task == "classification":
                seen[1].copy_((predicted(out) == yb).sum(-1))
            # on a CPU reading the summed loss is nearly free, so masking is skipped while every member is finite;
            # elsewhere (where reading it would wait for the device) it always runs
            if self.masking or not math.isfinite(float(total)):
                self.masking = True
                # a member whose loss is not finite is frozen: zero gradient and zero lr from now on
                self.alive &= torch.isfinite(losses)
                grads = list(torch.where(self.alive.view(-1, *[1] * (g.dim() - 1)), g, 0.0) for g in grads)
                lr = lr * self.alive
        self.optimizer.step(grads, lr, momentum)
        if self.averages is not None:
            self.averages.update(self.step, self.model.params)

    def _record(self, epoch: int, train: torch.Tensor, lr: torch.Tensor) -> None:
        """Train metrics are the epoch's running means over its minibatches (as Keras reports them); test metrics a full pass."""
        import torch

        test = self.model.evaluate(self.problem, self.data[2], self.data[3])
        if self.averages is not None and self.averages.started.any():  # averaged members report their average's metrics
            started = torch.as_tensor(self.averages.started, device=self.device)
            averaged = self.averages.evaluate(self.model, self.problem, self.data, self.problem.batch_size)
            test = (torch.where(started, averaged[0], test[0]), torch.where(started, averaged[1], test[1]))
        alive = self.alive.cpu().numpy()
        self.diverged_epoch[(~alive) & (self.diverged_epoch == 0)] = epoch
        train_acc = train[1] if self.problem.task == "classification" else torch.full_like(train[1], float("nan"))
        values = {
            "train_loss": train[0], "train_acc": train_acc, "test_loss": test[0], "test_acc": test[1],
            "lr": lr, "momentum": self.momentum[:, self.step - 1],
        }  # fmt: skip
        for key, value in values.items():
            row = value.double().cpu().numpy().copy()
            if key not in ("lr", "momentum"):
                row[~alive] = np.nan
            self.records[key].append(row)
        self.updates.append(self.step)
        self._plateaus(self.records["test_loss"][-1], alive)

    def _plateaus(self, test_loss: Array, alive: npt.NDArray[np.bool_]) -> None:
        """Feed each member's plateau the test loss, with the lr before the plateau scale (as `Scheduler.observe`)."""
        for i, (member, state) in enumerate(zip(self.members, self.plateau_states)):
            if member.plateau is None or not alive[i] or not math.isfinite(test_loss[i]):
                continue
            base = float(self.lr_table[i, self.step])
            new = member.plateau.update(state, float(test_loss[i]), base)
            self.plateau_states[i] = new
            self.scale[i] = float(new.scale)

    def result(self) -> PopulationResult:
        """The records as (P, epochs) arrays."""
        arrays = {k: np.stack(v, axis=1) for k, v in self.records.items()}
        return PopulationResult(
            members=tuple(self.members), diverged_epoch=self.diverged_epoch.copy(), initial_test_loss=self.initial_test_loss,
            updates=np.asarray(self.updates, dtype=np.int64), **arrays,
        )  # fmt: skip
