"""The lab on Ray: a population trained as shards, one Ray task each, the records gathered (and stored) by the driver.

A shard is a run of consecutive members trained by the ordinary batched trainer
(`lrkit.lab.population.train`), so each shard keeps lrkit's speed. The driver ships
the problem to the cluster once (`ray.put`: every shard sees the very data the driver
built, and a user's factory runs once, where it was named), submits every shard, and
hands each finished shard's `PopulationResult` (numpy arrays) to its caller, which alone
writes results: `lrkit.lab.study` commits each shard to its store in one transaction.
Retries, the one-line error of a shard that fails and the progress counter are
`lrkit.engine`'s.

What a worker must import: lrkit itself, and for a user problem ("pkg.module:function")
that module, whose model factory travels by reference (install it on every node, or
pass it in a `runtime_env`); on a local Ray the driver's folder is on the workers' path.

Same numbers as the local engine: a member's seeds fix its initialization and batch
order wherever it lands. A plain MLP (the batched products of `lrkit.lab.stacked`) gives
bit-identical records whatever the shards' composition; other models (run through
`torch.func.vmap`) are bit-identical when the shards are the local populations
(`shard_size` = `chunk`) and otherwise agree to float32 rounding (about 1e-8 relative
after an epoch, `docs/ray.md`), since their batched kernels round differently for another
number of members.

Example (`train_shards` and `train_population` run on a local Ray):
    >>> from lrkit.lab.population import Member
    >>> work = Work((0, 1, 2), [Member(lr=0.1, seed=s) for s in range(3)], None)  # study members 0-2, the problem's batch size
    >>> resources = Resources(2, None, None)  # shards of at most 2 members, 1 CPU each, GPUs as the device asks
    >>> [work.indices[k : k + resources.shard_size] for k in range(0, 3, resources.shard_size)]  # the shards train_shards makes
    [(0, 1), (2,)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit.engine import Resources, Shard, ray_session, run_shards, shard_sizes, ticker
from lrkit.errors import LabError

if TYPE_CHECKING:
    from lrkit.lab.population import Member, PopulationResult
    from lrkit.lab.problems import Problem


@dataclasses.dataclass(frozen=True)
class Work:
    """Members that share a batch plan: their indices (named in errors and results), the members, their `batch_size`.

    Example:
        >>> from lrkit.lab.population import Member
        >>> Work((4, 5), [Member(lr=0.1), Member(lr=0.2)], None).indices
        (4, 5)
    """

    indices: tuple[int, ...]
    members: list[Member]
    batch_size: int | list[int] | None


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What one shard's task returns: its population's records and the id of the Ray node it ran on.

    Example:
        >>> ShardResult.__dataclass_fields__.keys()
        dict_keys(['result', 'node'])
    """

    result: PopulationResult
    node: str


Trainer = Callable[..., "PopulationResult"]  # `lrkit.lab.population.train`, run in this process (engine "local")


def _train_shard(
    trainer: Trainer, problem: Problem, members: list[Member], options: dict[str, Any], threads: int, counter: Any
) -> ShardResult:
    """The Ray task: one batched population on `threads` torch threads, reporting its member-epochs as it goes."""
    import ray
    import torch

    torch.set_num_threads(threads)
    tick = ticker(counter)
    result = trainer(problem, members, on_epoch=lambda epoch: tick(len(members)), **options)
    return ShardResult(result, ray.get_runtime_context().get_node_id())


def train_shards(
    func: str,
    problem: Problem,
    work: Sequence[Work],
    options: dict[str, Any],
    resources: Resources,
    on_shard: Callable[[tuple[int, ...], ShardResult], None],
    *,
    trainer: Trainer,
    address: str | None = None,
    largest: int = 100,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Train `work` on Ray in shards; `on_shard(indices, result)` runs in this process as each shard finishes.

    Each shard runs `trainer` (`lrkit.lab.population.train`, handed in: this module does not import the trainer
    that imports it) on a worker. `options` are its keyword arguments (epochs, order, data_seed, device); a shard has at
    most `resources.shard_size` members (default: `lrkit.engine.shard_sizes` over the cluster's
    workers, at most `largest`); `progress` gets the member-epochs trained so far across the cluster.

    Example (on a local Ray: where each shard ran):
        >>> from lrkit.lab.problems import get_problem
        >>> from lrkit.lab.population import Member, train
        >>> ran = {}
        >>> work = [Work((0, 1), [Member(lr=0.1, seed=0), Member(lr=0.1, seed=1)], None)]
        >>> train_shards("train", get_problem("blobs"), work, {"epochs": 2}, Resources(1, 1, None),
        ...              lambda members, r: ran.__setitem__(members, (r.result.test_loss.shape, len(r.node))), trainer=train)
        >>> sorted(ran.items())
        [((0,), ((1, 2), 56)), ((1,), ((1, 2), 56))]
    """
    with ray_session(func, address, LabError) as ray:
        cpus, gpus = _placement(func, ray, resources, options.get("device"))
        size = resources.shard_size or shard_sizes(sum(len(w.members) for w in work), _workers(ray, cpus, gpus), largest)
        if gpus > 0:  # the task sees its own GPUs only (CUDA_VISIBLE_DEVICES): the first one is its own
            options = {**options, "device": "cuda"}
        ref = ray.put(problem)  # once: every shard reads the one copy in the object store
        shards = [
            Shard(w.indices[k : k + size], (trainer, ref, w.members[k : k + size], {**options, "batch_size": w.batch_size}, cpus))
            for w in work
            for k in range(0, len(w.members), size)
        ]
        run_shards(func, LabError, _train_shard, shards, lambda s, r: on_shard(s.members, r), num_cpus=cpus, num_gpus=gpus,
                   progress=progress)  # fmt: skip


def _placement(func: str, ray: Any, resources: Resources, device: Any) -> tuple[int, float]:
    """CPUs and GPUs per shard: given, or 1 CPU, and 1 GPU when a CUDA device is asked for and the cluster has GPUs."""
    import torch

    cpus = resources.num_cpus or 1
    cuda = device is not None and torch.device(device).type == "cuda"
    gpus = resources.num_gpus if resources.num_gpus is not None else float(cuda and ray.cluster_resources().get("GPU", 0) > 0)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for name, need, key in (("num_cpus", cpus, "CPU"), ("num_gpus", gpus, "GPU")):
        most = max((n.get(key, 0.0) for n in nodes), default=0.0)
        if need > most:  # Ray would wait for such a node forever
            validate.fail(func, name, f"must fit on one node of the Ray cluster (the largest has {most:g} {key})", need, LabError)
    return cpus, gpus


def _workers(ray: Any, cpus: int, gpus: float) -> int:
    """How many shards the cluster runs at once."""
    total: dict[str, float] = ray.cluster_resources()
    fits = [total.get("CPU", 0.0) / cpus] + ([total.get("GPU", 0.0) / gpus] if gpus > 0 else [])
    return max(1, math.floor(min(fits)))


def train_population(
    problem: Problem, members: Sequence[Member], options: dict[str, Any], resources: Resources, *, trainer: Trainer,
    address: str | None = None, on_epoch: Callable[[int], None] | None = None,
) -> PopulationResult:  # fmt: skip
    """`lrkit.lab.train` on Ray: the members in shards, the shards' records joined in member order.

    `on_epoch(e)` is called in this process for e = 1, 2, ... in order, once the cluster has trained
    e epochs' worth of member-epochs (the sum over its shards, which run side by side); the last
    calls come when every shard is in.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> from lrkit.lab.population import Member, train
        >>> members = [Member(lr=0.1, seed=s) for s in range(3)]
        >>> r = train_population(get_problem("blobs"), members, {"epochs": 2}, Resources(2, 1, None), trainer=train)
        >>> r.test_loss.shape
        (3, 2)
    """
    epochs = options["epochs"]
    parts: dict[int, PopulationResult] = {}
    passed = _EpochsPassed(on_epoch, len(members), epochs)
    work = [Work(tuple(range(len(members))), list(members), options.get("batch_size"))]
    rest = {k: v for k, v in options.items() if k != "batch_size"}
    train_shards("train", problem, work, rest, resources, lambda s, r: parts.__setitem__(s[0], r.result), trainer=trainer,
                 address=address, largest=len(members), progress=passed if on_epoch is not None else None)  # fmt: skip
    passed(epochs * len(members))
    return concatenate([parts[k] for k in sorted(parts)])


class _EpochsPassed:
    """The progress of member-epochs as whole population epochs: `on_epoch(e)` once for each e reached, in order."""

    def __init__(self, on_epoch: Callable[[int], None] | None, members: int, epochs: int) -> None:
        self.on_epoch, self.members, self.epochs, self.reached = on_epoch, members, epochs, 0

    def __call__(self, units: int) -> None:
        upto = min(self.epochs, units // self.members)  # a retried shard counts its epochs again: never past the end
        for epoch in range(self.reached + 1, upto + 1):
            if self.on_epoch is not None:
                self.on_epoch(epoch)
        self.reached = max(self.reached, upto)


def concatenate(parts: Sequence[PopulationResult]) -> PopulationResult:
    """One `PopulationResult` of consecutive shards' results (same epochs and updates), members in the order given.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> from lrkit.lab.population import Member, train
        >>> p, ms = get_problem("blobs"), [Member(lr=0.1, seed=s) for s in range(3)]
        >>> whole = concatenate([train(p, ms[:1], epochs=2), train(p, ms[1:], epochs=2)])
        >>> bool((whole.test_loss == train(p, ms, epochs=2).test_loss).all())
        True
    """
    first = parts[0]
    arrays = [f.name for f in dataclasses.fields(first) if f.name not in ("members", "updates")]
    joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in arrays}
    return type(first)(members=tuple(m for p in parts for m in p.members), updates=first.updates, **joined)


__all__ = ["ShardResult", "Work", "concatenate", "train_population", "train_shards"]
