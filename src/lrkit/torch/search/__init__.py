"""`lrkit.search_lr`: train every candidate lr (and schedule) at once and pick the winner on validation data.

The search itself is `search_lr`; the pieces it runs are `inputs`, `checks`, `memory`, `rng`, `runners` and `loop`
(the training loop both engines share); `ray_runner` is the Ray engine (`engine="ray"`).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import FinderError, LrkitWarning
from lrkit.optim import Optim
from lrkit.schedules.base import Schedule
from lrkit.search.grid import FUNC, Candidate, candidates, default_lrs
from lrkit.search.result import BUDGETS, SearchResult, judge
from lrkit.torch.search.checks import Probe, probe_model
from lrkit.torch.search.inputs import Data, read_metric, read_optimizer
from lrkit.torch.search.loop import Records, kept_rows, make_runners, rungs, survivors, train_rung
from lrkit.torch.search.memory import available_bytes, chunk_size, member_bytes
from lrkit.torch.search.ray_runner import Job, RayPlan, read_data, train_on_ray
from lrkit.torch.search.rng import SameBatches
from lrkit.torch.search.runners import Runner, Setup

if TYPE_CHECKING:
    import torch

MAX_SEEDS = 1000


def search_lr(
    make_model: Callable[[], torch.nn.Module],
    optimizer: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train_data: Any,
    val_data: Any,
    *,
    epochs: int,
    lrs: Sequence[float] | None = None,
    shapes: Sequence[str | Schedule] = ("constant",),
    weight_decays: Sequence[float] | None = None,
    seeds: int = 1,
    metric: Any = None,
    budget: str = "full",
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    max_memory: int | None = None,
    engine: str = "local",
    address: str | None = None,
    shard_size: int | None = None,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
) -> SearchResult:
    """Train every candidate (peak lr × shape × weight decay, from `seeds` inits) together; the best on `val_data` wins.

    Args:
        make_model: a zero-argument callable returning a fresh `torch.nn.Module`; lrkit calls it after
            `torch.manual_seed(seed + s)` for init `s`. Any module: plain MLPs run as batched matrix products,
            anything else through `torch.func` (`functional_call` + `vmap`; BatchNorm statistics and dropout per
            member). A module that cannot be batched runs member by member, with an `LrkitWarning` saying why.
        optimizer: an `lrkit.Optim` or its spec ("adam", "sgd(momentum=0.9)"), or a torch.optim SGD, Adagrad,
            RMSprop, Adam or AdamW whose hyperparameters are read (its lr ignored).
        loss_fn: `loss_fn(outputs, targets)` -> the mean loss (a scalar tensor), as torch's functional losses.
        train_data: re-iterable batches of `(inputs, targets)` (a DataLoader, a list of pairs); every member sees
            the same batches in the same order. The data's random state is set per epoch so that chunks and plain
            runs see the same batches; for a replay with the same batches, give a DataLoader its own `generator`.
        val_data: the same, or a tuple `(inputs, targets)` of tensors; evaluated in eval mode after every epoch.
        epochs: the training budget of every candidate, in passes over `train_data`.
        lrs: candidate peaks (default `lrkit.search.grid.default_lrs()`: 1e-6 … 10, four per decade).
        shapes: names from `lrkit.search.grid.SHAPES` ("constant", "cosine", "one_cycle", "wsd", "linear",
            "step_decay"), each sized to the budget, or lrkit schedules with peak 1, scaled by each lr.
        weight_decays: optional weight decays to search as a second dimension (default: the optimizer's own).
        seeds: inits per candidate; a candidate is judged by its mean over them.
        metric: None (judge by the loss), "accuracy", or a callable `metric(outputs, targets)` (higher is better),
            which then judges.
        budget: "full" (every candidate trains all epochs) or "halving" (successive halving: the best third of the
            candidates go on at epochs/9 and epochs/3, `lrkit.search.grid.halving_rungs`).
        seed: the search's seed: inits are seed, seed + 1, ...; the data's and dropout's random state starts from it.
        device: where to train (default: where `make_model()` puts the model).
        progress: show a progress bar over member-epochs.
        max_memory: bytes the population may take (default: half the available RAM, or 90% of a GPU's free memory);
            a population that does not fit is trained in chunks. On Ray: the bytes one shard may take on its worker.
        engine: "local" (this process) or "ray": the members (candidate x seed) split into shards, each trained as
            one Ray task by the local engine's own trainer, with the local engine's numbers
            (`lrkit.torch.search.ray_runner`). `make_model`, `loss_fn`, `metric` and the data travel to the workers
            by (cloud)pickle: a function defined in `__main__` or a notebook travels by value, one of your own module
            is imported there by name, so that module must be importable on every worker (installed, or shipped with
            `ray.init(runtime_env={"py_modules": [...]})`); a dataset that reads files needs them on every node. The
            driver reads the data once per epoch (no training) to record the random states every shard replays.
            Needs `pip install 'lrkit[ray]'`.
        address: with `engine="ray"`: None starts a local Ray sized to this machine (a Ray already initialised in
            this process is used as it is); "auto" or "ray://host:port" joins a running cluster.
        shard_size: members per Ray task (default: two shards per worker the cluster runs at once, at most what one
            worker's memory holds).
        num_cpus: CPUs per shard, also its torch threads (default 1).
        num_gpus: GPUs per shard (default 1 when the cluster has GPUs and `device` is CUDA, else 0).

    Returns:
        A `lrkit.SearchResult`: the winner's `lr` and `schedule`, the `table`, `curves`, `cost`, `plot()`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import torch.nn.functional as F
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(256, 4, generator=g)
        >>> y = (x[:, 0] > 0).long()
        >>> train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
        >>> r = search_lr(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), "sgd", F.cross_entropy, train, (x, y),
        ...               epochs=3, lrs=[1e-4, 0.3, 1e4], progress=False)
        >>> r.lr, r.diverged[:, 0].tolist(), r.member_steps < 3 * 24
        (0.3, [False, False, True], True)
    """
    start = time.perf_counter()
    optim = read_optimizer(optimizer)
    epochs = validate.integer(FUNC, "epochs", epochs, FinderError)
    n_seeds = validate.integer(FUNC, "seeds", seeds, FinderError, maximum=MAX_SEEDS)
    budget = validate.choice(FUNC, "budget", budget, FinderError, BUDGETS)
    seed = validate.seed(FUNC, "seed", seed, FinderError)
    validate.flag(FUNC, "progress", progress, FinderError)
    metric_fn, metric_name = read_metric(metric)
    plan = RayPlan.read(engine, address, shard_size, num_cpus, num_gpus)
    if plan is not None and max_memory is not None:
        max_memory = validate.integer(FUNC, "max_memory", max_memory, FinderError)
    train, val = Data.of(train_data, "train_data"), Data.of(val_data, "val_data", tensors_ok=True)
    decays = [float(optim.weight_decay or 0.0)] if weight_decays is None else weight_decays
    cands = candidates(default_lrs() if lrs is None else lrs, shapes, decays, epochs * train.steps)
    with SameBatches.around(train.source, seed) as same:
        probe = probe_model(make_model, loss_fn, optim, train.first(), val.first(), metric_fn, seed, device)
        setup = _setup(probe, cands, optim, weight_decays is not None, n_seeds, seed, epochs * train.steps, metric_fn)
        need = member_bytes(probe.model, optim, loss_fn, probe.batch)
        records = Records.empty(len(cands), n_seeds, epochs, metric_fn is not None)
        if plan is None:
            size = chunk_size(len(setup.seeds), need, available_bytes(probe.device, max_memory))
            runners = make_runners(setup, probe.batchable, range(len(setup.seeds)), size)
            steps = _train(runners, train, val, same, records, epochs, budget, metric_fn is not None, progress, probe.device)
        else:
            job = Job(setup, probe.batchable, train, val, same.ahead(epochs, lambda: read_data(train, val)), epochs, need, max_memory)
            with _bar(progress, records.val_loss.size) as advance:
                steps = train_on_ray(plan, job, records, rungs(epochs, budget), metric_fn is not None, advance if progress else None)
    for reason in probe.warnings:
        warnings.warn(reason, LrkitWarning, stacklevel=2)
    return _result(cands, records, setup, optim, metric_name, epochs, train.steps, budget, time.perf_counter() - start, steps, probe)


def _setup(
    probe: Probe, cands: list[Candidate], optim: Optim, searched_decay: bool, n_seeds: int, seed: int, steps: int, metric: Any
) -> Setup:
    """Member m = candidate m // n_seeds from init seed + m % n_seeds."""
    members = [(c, s) for c in cands for s in range(n_seeds)]
    optims = [dataclasses.replace(optim, weight_decay=c.weight_decay) if searched_decay else optim for c, _ in members]
    return Setup.of(
        probe.make_model, probe.loss_fn, [c.schedule for c, _ in members], [seed + s for _, s in members], optims,
        steps=steps, probe=probe.batch, example=probe.model, device=probe.device, task=probe.task, metric=metric,
    )  # fmt: skip


def _train(
    runners: list[Runner], train: Data, val: Data, same: SameBatches, rec: Records, epochs: int, budget: str, by_metric: bool,
    progress: bool, device: torch.device,
) -> int:  # fmt: skip
    """Train the runners through every rung, dropping the losers at each; returns the member-steps taken."""
    n_seeds = rec.val_loss.shape[1]
    with _bar(progress, rec.val_loss.size) as advance:
        done = 0
        for rung in rungs(epochs, budget):
            train_rung(runners, train, val, same, rec, range(done + 1, rung + 1), advance, device)
            done = rung
            if rung < epochs:
                keep = survivors(rec, rung, by_metric)
                for runner in runners:
                    runner.keep(kept_rows(runner, keep, n_seeds))
        if len(runners) > 1:
            for runner in runners:
                runner.keep(range(len(runner.ids)), device)
    return sum(r.member_steps for r in runners)


@contextmanager
def _bar(progress: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over member-epochs (members that leave early leave their epochs undone)."""
    if not progress:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("search_lr", total=total)
        yield lambda n: bar.advance(task, n)


def _result(
    cands: list[Candidate], rec: Records, setup: Setup, optim: Optim, metric_name: str | None, epochs: int, steps_per_epoch: int,
    budget: str, wall: float, member_steps: int, probe: Probe,
) -> SearchResult:  # fmt: skip
    judged_by = "metric" if rec.metric is not None else "val_loss"
    _, winner = judge(rec.val_loss, rec.metric, rec.epochs_trained, rec.diverged, judged_by, epochs)
    return SearchResult(
        candidates=[c.to_dict() for c in cands], seeds=sorted(set(setup.seeds)), val_loss=rec.val_loss, metric=rec.metric,
        metric_name=metric_name, epochs_trained=rec.epochs_trained, diverged=rec.diverged, winner=winner, judged_by=judged_by,
        epochs=epochs, steps_per_epoch=steps_per_epoch, budget=budget, optimizer=optim.spec, wall_seconds=wall,
        member_steps=member_steps, batched=probe.batchable, warnings=list(probe.warnings),
    )  # fmt: skip


__all__ = ["search_lr"]
