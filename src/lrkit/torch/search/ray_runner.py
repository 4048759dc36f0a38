"""`search_lr(..., engine="ray")`: the members split into shards, each shard trained as one Ray task.

A shard is the local engine's unit, run on a worker: a batched population of members (`Batched`, or plain
runs with `Sequential` when the model cannot be batched) trained by the same `train_rung`. The driver keeps
what only it can do: it probes the model, records every epoch's random state of the data (`SameBatches.ahead`:
one reading pass per epoch, no training) so that every shard replays the very same batches, assembles the
shards' records exactly as the local engine records them, and, with `budget="halving"`, chooses the survivors.

The same numbers as the local engine: bit-identical where a shard holds the members of a local chunk (one shard of
every member is the local population; `shard_size` equal to the chunk `max_memory` gives), and for plain runs
(`Sequential`) whatever the shards; equal to float32 rounding otherwise (about 2e-7 relative on `digits`, tested to
1e-6), since a stacked population's kernels round differently for another number of members. A model that draws
random numbers while it trains (dropout) sees the same batches on every shard but other masks than locally after
the first epoch: the local engine's later epochs start from the random state its first chunk's dropout left.

Halving: between rungs each shard returns its runners (weights, buffers and optimizer state, on the CPU); the
driver drops the losers and sends the survivors out again, re-sharded. Stateless tasks, not actors that keep
going: a worker that dies mid-rung costs Ray one retried shard (`lrkit.engine.RETRIES`) rather than the state
of every rung before it, and the survivors (a third at each rung, often neighbours in one shard) are spread
over the cluster again instead of leaving most actors idle. A shard's survivors stay together (two stacked
populations are never merged), so with `shard_size` equal to the local chunk the arithmetic is the local one.

Memory: the default shard size is at most what one worker holds: `chunk_size` with the smallest node's memory
(Ray's `memory` resource) shared by the shards that node runs at once, or with `max_memory` (bytes per shard on
Ray). A shard that does not fit its worker all the same (a GPU's free memory is known only there) trains there
in chunks, as a local search does.

Example:
    >>> RayPlan.read("local", None, None, None, None) is None
    True
    >>> RayPlan.read("ray", "auto", 8, None, None)
    RayPlan(address='auto', shard_size=8, num_cpus=None, num_gpus=None)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.engine import Shard, progress_counter, ray_session, read_engine, read_resources, run_shards, shard_sizes, ticker
from lrkit.errors import FinderError
from lrkit.search.grid import FUNC
from lrkit.torch.search.inputs import Data
from lrkit.torch.search.loop import Records, kept_rows, make_runners, survivors, train_rung
from lrkit.torch.search.memory import available_bytes, chunk_size
from lrkit.torch.search.rng import SameBatches, State
from lrkit.torch.search.runners import Runner, Setup

if TYPE_CHECKING:
    import torch

Work = tuple[int, ...] | list[Runner]  # a shard's members: fresh ones (the first rung), or runners that trained before


@dataclasses.dataclass(frozen=True)
class RayPlan:
    """The Ray engine's settings, checked: where to run (`address`), members per task, CPUs and GPUs per task.

    Example:
        >>> try:
        ...     RayPlan.read("local", None, 4, None, None)
        ... except FinderError as e:
        ...     print(e)
        search_lr: parameter 'shard_size' cuts a population into Ray tasks, so it needs engine='ray', got 4
    """

    address: str | None
    shard_size: int | None
    num_cpus: int | None
    num_gpus: float | None

    @classmethod
    def read(cls, engine: Any, address: Any, shard_size: Any, num_cpus: Any, num_gpus: Any) -> RayPlan | None:
        """The plan for `engine="ray"`, None for the local engine (which takes none of these settings)."""
        chosen = read_engine(FUNC, engine, address, FinderError)
        given = read_resources(FUNC, shard_size, num_cpus, num_gpus, chosen, FinderError)
        return None if chosen == "local" else cls(address, given.shard_size, given.num_cpus, given.num_gpus)


@dataclasses.dataclass(frozen=True)
class Job:
    """What every shard shares, put once in Ray's object store: the setup (factory, loss, lr table), the data and its
    per-epoch random states, the memory a member needs, and how the worker runs (torch threads, shards per node)."""

    setup: Setup
    batchable: bool
    train: Data
    val: Data
    states: dict[int, State]
    epochs: int
    need: int  # bytes per member (`memory.member_bytes`)
    max_memory: int | None  # bytes per shard, when given
    threads: int = 1
    sharing: int = 1  # shards one node runs at once: they share its memory


@dataclasses.dataclass
class Parcel:
    """A shard's answer: its members' records, the member-steps it took, and (between rungs) its runners."""

    records: Records
    steps: int
    runners: list[Runner]


@dataclasses.dataclass(frozen=True)
class Cluster:
    """How shards fit the cluster: per-task CPUs and GPUs, shards running at once (`workers`; `sharing` on the
    busiest node), and the memory one shard may take on the smallest node (0: unknown)."""

    num_cpus: int
    num_gpus: float
    workers: int
    sharing: int
    memory: int

    @classmethod
    def read(cls, ray: Any, plan: RayPlan, device: torch.device) -> Cluster:
        """The cluster's alive nodes, read once; a task that fits no node is an error (Ray would wait forever)."""
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        has_gpus = any(r.get("GPU", 0) for r in nodes)
        cpus = plan.num_cpus or 1
        gpus = plan.num_gpus if plan.num_gpus is not None else float(has_gpus and device.type == "cuda")
        fits = [_fits(r, cpus, gpus) for r in nodes]
        if not any(fits):
            param, value = ("num_gpus", gpus) if gpus else ("num_cpus", cpus)
            most = {key: max((r.get(key, 0) for r in nodes), default=0) for key in ("CPU", "GPU")}
            need = f"must fit one node of the cluster (its nodes have at most {most['CPU']:g} CPUs and {most['GPU']:g} GPUs)"
            validate.fail(FUNC, param, need, value, FinderError)
        memory = min(int(r.get("memory", 0)) // k for r, k in zip(nodes, fits) if k)
        return cls(cpus, gpus, sum(fits), max(fits), memory)

    def shard_size(self, plan: RayPlan, members: int, job: Job) -> int:
        """Members per shard: the plan's, or 2 shards per worker, at most what one worker's memory holds."""
        if plan.shard_size is not None:
            return plan.shard_size
        budget = job.max_memory if job.max_memory is not None else self.memory if job.setup.device.type == "cpu" else 0
        largest = chunk_size(members, job.need, budget) if budget else members
        return shard_sizes(members, self.workers, largest)


def _fits(resources: dict[str, float], cpus: int, gpus: float) -> int:
    """How many shards a node with `resources` runs at once."""
    by_cpu = int(resources.get("CPU", 0) // cpus)
    return min(by_cpu, int(resources.get("GPU", 0) // gpus)) if gpus else by_cpu


def train_on_ray(
    plan: RayPlan, job: Job, rec: Records, rungs: Sequence[int], by_metric: bool, advance: Callable[[int], None] | None
) -> int:
    """Train every member on the cluster through `rungs` (halving's cuts in between), filling `rec`; the member-steps taken."""
    with ray_session(FUNC, plan.address, FinderError) as ray, contextlib.ExitStack() as stack:
        counter = stack.enter_context(progress_counter()) if advance is not None else None  # one actor for every rung
        cluster = Cluster.read(ray, plan, job.setup.device)
        shared = ray.put(dataclasses.replace(job, threads=cluster.num_cpus, sharing=cluster.sharing))
        members = list(range(len(job.setup.seeds)))
        size = cluster.shard_size(plan, len(members), job)
        work: list[Work] = [tuple(members[i : i + size]) for i in range(0, len(members), size)]
        done = steps = 0
        for rung in rungs:
            more = rung < rungs[-1]
            parcels = _rung(shared, work, range(done + 1, rung + 1), more, cluster, rec, advance, counter)
            steps += sum(p.steps for p in parcels)
            if more:
                keep = survivors(rec, rung, by_metric)
                work = _reshard([r for p in parcels for r in p.runners], keep, rec.val_loss.shape[1], job, plan, cluster)
            done = rung
    return steps


def _rung(
    shared: Any, work: list[Work], epochs: range, more: bool, cluster: Cluster, rec: Records, advance: Callable[[int], None] | None,
    counter: Any,
) -> list[Parcel]:  # fmt: skip
    """One rung of every shard, each shard's records copied into `rec` as it finishes."""
    parcels: list[Parcel] = []

    def take(_shard: Shard, parcel: Parcel) -> None:
        rec.absorb(parcel.records, epochs)
        parcels.append(parcel)

    shards = [Shard(_members(w), (shared, (epochs.start, epochs.stop), _sendable(w), more)) for w in work]
    run_shards(FUNC, FinderError, train_shard, shards, take, num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus,
               progress=None if advance is None else _Tally(advance), counter=counter)  # fmt: skip
    return parcels


def _members(work: Work) -> tuple[int, ...]:
    return work if isinstance(work, tuple) else tuple(m for r in work for m in r.ids)


class _Tally:
    """Turns the cluster's running total of member-epochs (one rung's) into the local bar's increments."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance, self.seen = advance, 0

    def __call__(self, units: int) -> None:
        if units > self.seen:
            self.advance(units - self.seen)
            self.seen = units


def _reshard(runners: list[Runner], keep: set[int], n_seeds: int, job: Job, plan: RayPlan, cluster: Cluster) -> list[Work]:
    """The survivors of `keep`, each runner's together, split into shards of the size for their number."""
    for runner in runners:
        runner.setup = job.setup  # the driver's: `keep` reads which parameters train
        runner.keep(kept_rows(runner, keep, n_seeds))
    alive = [r for r in runners if r.ids]
    size = cluster.shard_size(plan, sum(len(r.ids) for r in alive), job)
    return [[piece] for runner in alive for piece in _split(runner, size)]


def _split(runner: Runner, size: int) -> list[Runner]:
    """The runner as pieces of at most `size` members (copies that share the setup)."""
    if len(runner.ids) <= size:
        return [runner]
    pieces = []
    for start in range(0, len(runner.ids), size):
        piece = copy.deepcopy(runner, {id(runner.setup): runner.setup})
        piece.keep(range(start, min(start + size, len(runner.ids))))
        pieces.append(piece)
    return pieces


def _sendable(work: Work) -> Work:
    """Runners without their setup: it travels once, in the job (its lr table alone is members x steps)."""
    if isinstance(work, tuple):
        return work
    sent = []
    for runner in work:
        bare = copy.copy(runner)
        del bare.setup
        sent.append(bare)
    return sent


def train_shard(job: Job, span: tuple[int, int], work: Work, more: bool, counter: Any) -> Parcel:
    """The Ray task: train the shard's members through the epochs `range(*span)` on this worker.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import torch.nn.functional as F
        >>> from lrkit.optim import Optim
        >>> from lrkit.schedules import constant
        >>> x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        >>> setup = Setup.of(lambda: nn.Linear(3, 2), F.cross_entropy, [constant(0.1)] * 2, [0, 0], Optim("sgd"),
        ...                  steps=2, probe=(x, y), example=nn.Linear(3, 2), device=torch.device("cpu"))
        >>> data = Data.of([(x, y)], "train_data")
        >>> job = Job(setup, True, data, data, {1: SameBatches([]).capture()}, 2, need=1, max_memory=None)
        >>> parcel = train_shard(job, (1, 3), (0, 1), False, None)
        >>> parcel.steps, parcel.records.epochs_trained.tolist()
        (4, [[2], [2]])
    """
    import torch

    torch.set_num_threads(job.threads)
    setup = dataclasses.replace(job.setup, device=_worker_device(job.setup.device))
    runners = _runners(job, setup, work)
    part = Records.of_members([m for r in runners for m in r.ids], job.epochs, setup.metric is not None)
    before = sum(r.member_steps for r in runners)
    with SameBatches.replay(job.train.source, job.states) as same:
        train_rung(runners, job.train, job.val, same, part, range(*span), ticker(counter), setup.device)
    steps = sum(r.member_steps for r in runners) - before
    kept = [_parked(r) for r in runners if r.ids] if more else []
    return Parcel(part, steps, kept)


def _runners(job: Job, setup: Setup, work: Work) -> list[Runner]:
    """Fresh runners for new members, in chunks this worker's memory holds; or the runners sent, back on the device."""
    if isinstance(work, tuple):
        budget = job.max_memory if job.max_memory is not None else available_bytes(setup.device, None) // job.sharing
        return make_runners(setup, job.batchable, work, chunk_size(len(work), job.need, budget))
    for runner in work:
        runner.setup = setup
        runner.keep(range(len(runner.ids)), setup.device)
    return list(work)


def _parked(runner: Runner) -> Runner:
    """The runner on the CPU, without its setup, ready to travel back to the driver."""
    runner.keep(range(len(runner.ids)), "cpu")
    del runner.setup
    return runner


def _worker_device(device: torch.device) -> torch.device:
    """The driver's device type, here: a worker sees the GPUs Ray gave it, from index 0."""
    import torch

    return torch.device("cuda", 0) if device.type == "cuda" else device


def read_data(train: Data, val: Data) -> None:
    """One pass over both data sets, as one epoch of training and evaluation reads them (for `SameBatches.ahead`).

    Example:
        >>> import torch
        >>> pair = (torch.zeros(2, 1), torch.zeros(2))
        >>> read_data(Data.of([pair], "train_data"), Data.of(pair, "val_data", tensors_ok=True))
    """
    for data in (train, val):
        for _ in data:
            pass


__all__ = ["Job", "RayPlan", "read_data", "train_on_ray", "train_shard"]
