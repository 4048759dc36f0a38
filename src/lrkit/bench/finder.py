"""The finder benchmark: every suggestion rule and torch-lr-finder against a grid search of constant lrs.

For every problem x optimizer x seed (a *cell*): a grid of log-spaced constant lrs,
each trained for the benchmark budget, gives the grid-best final validation loss.
One `lrkit.find_lr` run gives every rule's suggestion; the installed
`torch_lr_finder.LRFinder` gives its own (the steepest-gradient point its
`plot(suggest_lr=True)` computes: that method is called, on an off-screen axis).
Each suggestion is trained for the same budget, from the same initial weights and
data order. regret = loss(suggested) / loss(grid best) - 1. A cell's optimizer is an `lrkit.Optim` spec: by default
momentum SGD, "sgd(momentum=0.9)", and "adam"; the minibatches are lrkit's one order (`lrkit.torch.data`, the partial
batch kept).

Run with `lrkit bench finder` or `python bench/finder_quality.py`.

Example:
    >>> cfg = Config.quick()
    >>> cfg.problems, cfg.optimizers, cfg.seeds, len(cfg.grid("sgd(momentum=0.9)"))
    (('blobs',), ('sgd(momentum=0.9)',), (0,), 4)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit.errors import LabError
from lrkit.optim import Optim
from lrkit.schedules.base import Schedule

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

# The benchmark's own budget, in epochs (the problems' defaults, up to 200 epochs, would make the grid cost hours):
# about 300-500 updates each, a short but complete training run.
EPOCHS = {"blobs": 30, "moons": 30, "circles": 30, "digits": 12, "digits_cnn": 8, "mnist1d": 10, "mnist1d_cnn": 8,
          "regression": 30, "sequence": 25}  # fmt: skip
# log10 lr range of the grid, per optimizer family (SGD-like and Adam-like lrs live three decades apart)
GRIDS = {"sgd": (-3.0, 1.0), "nesterov": (-3.0, 1.0), "adam": (-4.0, 0.0), "adamw": (-4.0, 0.0)}
OPTIMIZERS = ("sgd(momentum=0.9)", "adam")  # the default cells: momentum SGD (spelled out: "sgd" is torch's, momentum 0) and Adam
TLF = "torch-lr-finder"
MAX_LR_GRID = 200  # constant lrs per cell: each one is a whole training run
FINDER_SEED_OFFSET = 1000  # the range test's minibatch order is seed + 1000 (not the grid's order)


@dataclasses.dataclass(frozen=True)
class Config:
    """What the benchmark runs.

    Example:
        >>> Config().cells()[:2]
        [('blobs', 'sgd(momentum=0.9)', 0), ('blobs', 'sgd(momentum=0.9)', 1)]
    """

    problems: tuple[str, ...] = tuple(EPOCHS)
    optimizers: tuple[str, ...] = OPTIMIZERS
    seeds: tuple[int, ...] = (0, 1, 2)
    grid_points: int = 12
    finder_steps: int = 100
    epochs_scale: float = 1.0  # multiplies EPOCHS (the quick run trains a fraction)
    workers: int = 2
    compare_tlf: bool = True

    @classmethod
    def quick(cls) -> Config:
        """A smoke run: one problem, one optimizer, one seed, four grid points, a fifth of the budget."""
        return cls(problems=("blobs",), optimizers=OPTIMIZERS[:1], seeds=(0,), grid_points=4, finder_steps=40, epochs_scale=0.2, workers=1)

    def grid(self, optimizer: str) -> list[float]:
        """The constant lrs tried for `optimizer`, log-spaced over its range."""
        lo, hi = GRIDS[optim(optimizer).family]
        return [float(x) for x in np.logspace(lo, hi, self.grid_points)]

    def epochs(self, problem: str) -> int:
        """The training budget of one run on `problem`, in epochs."""
        return max(1, round(EPOCHS.get(problem, 20) * self.epochs_scale))

    def cells(self) -> list[tuple[str, str, int]]:
        """Every (problem, optimizer, seed) of the benchmark."""
        return [(p, o, s) for p in self.problems for o in self.optimizers for s in self.seeds]

    def check(self) -> None:
        """Reject unknown, empty or repeated names, sizes and seeds before any work starts.

        Example:
            >>> try:
            ...     Config(problems=()).check()
            ... except LabError as e:
            ...     print(e)
            bench finder: parameter 'problems' must name at least one of 'blobs', 'moons', 'circles', 'digits', 'digits_cnn', \
'mnist1d', 'mnist1d_cnn', 'regression', 'sequence', got ()
        """
        from lrkit.lab.problems import PROBLEMS

        func = "bench finder"
        check_names(func, "problems", self.problems, tuple(PROBLEMS))
        check_names(func, "optimizers", self.optimizers, tuple(GRIDS), choose=False)
        for spec in self.optimizers:
            if optim(spec).family not in GRIDS:
                validate.fail(func, "optimizers", f"must be of a family with an lr grid ({', '.join(GRIDS)})", spec, LabError)
        if len({optim(spec) for spec in self.optimizers}) != len(self.optimizers):
            validate.fail(func, "optimizers", "must name each one once", list(self.optimizers), LabError)
        validate.integer(func, "grid_points", self.grid_points, LabError, minimum=2, maximum=MAX_LR_GRID)
        validate.integer(func, "finder_steps", self.finder_steps, LabError, minimum=10)
        validate.integer(func, "workers", self.workers, LabError, maximum=4 * (os.cpu_count() or 1))  # each loads torch: ~0.5 GB
        validate.positive(func, "epochs_scale", self.epochs_scale, LabError)
        seeds = validate.sequence(func, "seeds", self.seeds, LabError)
        if not seeds or len(set(seeds)) != len(seeds):
            validate.fail(func, "seeds", "must hold at least one seed, each once", seeds, LabError)
        for seed in seeds:
            validate.integer(func, "seeds", seed, LabError, minimum=0, maximum=2**63 - 1 - FINDER_SEED_OFFSET)
        if validate.flag(func, "compare_tlf", self.compare_tlf, LabError) and importlib.util.find_spec("torch_lr_finder") is None:
            validate.fail(func, "compare_tlf", "needs torch-lr-finder installed (pip install torch-lr-finder), or --no-tlf", True, LabError)


def check_names(func: str, param: str, names: Any, valid: tuple[str, ...], *, choose: bool = True) -> None:
    """A non-empty list of names (from `valid`, if `choose`), none repeated (a repeated cell would count twice in the summary)."""
    items = validate.sequence(func, param, names, LabError)
    if not items:
        validate.fail(func, param, f"must name at least one of {', '.join(map(repr, valid))}", items, LabError)
    for name in items if choose else ():
        validate.choice(func, param, name, LabError, valid)
    if len(set(items)) != len(items):
        validate.fail(func, param, "must name each one once", list(items), LabError)


# -- training ------------------------------------------------------------------------------------------
def optim(spec: str) -> Optim:
    """A cell's optimizer: its `lrkit.Optim` spec read (a bad one is a LabError naming `bench finder`).

    Example:
        >>> optim("sgd(momentum=0.9)").momentum
        0.9
    """
    return Optim.of(spec, "bench finder", "optimizers")


def batches(problem: Problem, seed: int, epochs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The minibatches of `epochs` epochs in lrkit's one order for `seed` (the same for every lr; the partial batch kept)."""
    from lrkit.torch.data import epoch_batches

    return list(epoch_batches(problem.x_train, problem.y_train, problem.batch_size, seed, epochs))


def train(problem: Problem, optimizer: str, lr: float, seed: int, epochs: int) -> float:
    """The final validation loss after training at a constant `lr` (inf when training blew up)."""
    return fit(problem, optimizer, lr, seed, batches(problem, seed, epochs))


def fit(problem: Problem, optimizer: str, lr: float | Schedule, seed: int, data: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The final loss on the evaluation split after one plain `torch.optim` run over `data` (inf if it blew up).

    A number is a constant lr set on the optimizer (a plain grid run); a schedule is driven by `lrkit.Scheduler`.
    The model is built after `torch.manual_seed(seed)`; `train` is this over lrkit's minibatch order.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> from lrkit.schedules import Constant
        >>> p = get_problem("blobs")
        >>> loss = fit(p, "adam", Constant(0.01), 0, batches(p, 0, 2))
        >>> round(loss, 4) == round(train(p, "adam", 0.01, 0, 2), 4)
        True
    """
    import torch

    from lrkit.torch.scheduler import Scheduler

    torch.manual_seed(seed)
    model = problem.make_model()
    opt = optim(optimizer).to_torch(model.parameters(), 1.0 if isinstance(lr, Schedule) else lr)
    scheduler = Scheduler(opt, lr=lr) if isinstance(lr, Schedule) else None
    for x, y in data:
        loss = problem.loss(model(x), y)
        if not torch.isfinite(loss):
            return math.inf
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if scheduler is not None:
            scheduler.step()
    model.eval()
    with torch.no_grad():
        final = float(problem.loss(model(problem.x_test), problem.y_test))
    return final if math.isfinite(final) else math.inf


def lrkit_suggestions(problem: Problem, optimizer: str, seed: int, steps: int) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Every rule's suggestion from one `lrkit.find_lr` run (train loss, fastai's default range)."""
    import torch

    from lrkit.torch.finder import find_lr

    torch.manual_seed(seed)
    model = problem.make_model()
    opt = optim(optimizer).to_torch(model.parameters(), 1e-3)
    result = find_lr(model, opt, problem.loss, batches(problem, seed + FINDER_SEED_OFFSET, 1), steps=steps)
    return dict(result.suggestions), {"lrs": result.lrs, "losses": result.to_dict()["losses"], "stop": result.stop_reason}


def tlf_suggestion(problem: Problem, optimizer: str, seed: int, steps: int) -> float | None:
    """torch-lr-finder's own suggestion: `range_test` over the same range, then `plot(suggest_lr=True)`'s lr."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from torch_lr_finder import LRFinder

    from lrkit.plot import new_figure

    torch.manual_seed(seed)
    model = problem.make_model()
    opt = optim(optimizer).to_torch(model.parameters(), 1e-7)
    loader = DataLoader(TensorDataset(problem.x_train, problem.y_train), batch_size=problem.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed + FINDER_SEED_OFFSET))  # fmt: skip
    finder = LRFinder(model, opt, problem.loss)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        finder.range_test(loader, start_lr=1e-7, end_lr=10, num_iter=steps)
        try:
            _, lr = finder.plot(ax=new_figure().axes[0], suggest_lr=True)
        except (RuntimeError, ValueError):  # too few points before it diverged: no suggestion
            return None
    return float(lr)


# -- one cell ------------------------------------------------------------------------------------------
def run_cell(cell: tuple[str, str, int], config: Config) -> dict[str, Any]:
    """Grid, finders and suggested lrs for one (problem, optimizer, seed); a JSON-ready record."""
    with single_thread():
        return _run_cell(cell, config)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread and denormals flushed inside; the caller's settings back afterwards (they are process-wide).

    A benchmark cell's runs and the baseline they are timed against share the same single thread; tiny weights at
    tiny lrs would otherwise run at denormal (10-100x slower) speed.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with single_thread():
        ...     inside = torch.get_num_threads()
        >>> inside, torch.get_num_threads() == before
        (1, True)
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _run_cell(cell: tuple[str, str, int], config: Config) -> dict[str, Any]:
    from lrkit.lab.problems import get_problem
    from lrkit.torch.data import steps_per_epoch

    name, optimizer, seed = cell
    problem = get_problem(name, seed=seed)
    epochs = config.epochs(name)
    clock = time.perf_counter()
    grid = {lr: train(problem, optimizer, lr, seed, epochs) for lr in config.grid(optimizer)}
    grid_time = time.perf_counter() - clock
    clock = time.perf_counter()
    suggestions, curve = lrkit_suggestions(problem, optimizer, seed, config.finder_steps)
    finder_time = time.perf_counter() - clock
    if config.compare_tlf:
        suggestions[TLF] = tlf_suggestion(problem, optimizer, seed, config.finder_steps)
    trained: dict[float, float] = {}
    for lr in suggestions.values():
        if lr is not None and lr not in trained:
            trained[lr] = grid[lr] if lr in grid else train(problem, optimizer, lr, seed, epochs)
    steps_per_run = epochs * steps_per_epoch(len(problem.x_train), problem.batch_size)
    return {
        "problem": name, "optimizer": optimizer, "seed": seed, "epochs": epochs,
        "grid": [[lr, _json_loss(v)] for lr, v in grid.items()],
        "suggestions": suggestions, "losses": {k: _json_loss(trained[v]) if v is not None else None for k, v in suggestions.items()},
        "curve": curve, "grid_time": grid_time, "finder_time": finder_time,
        "grid_steps": steps_per_run * len(grid), "finder_steps": len(curve["lrs"]),
    }  # fmt: skip


def _json_loss(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run(config: Config, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every cell (in `config.workers` processes, one thread each), then the summary.

    Returns `{"config": ..., "cells": [...], "summary": ...}` (JSON-ready); `progress` is called per finished cell.
    """
    config.check()
    records = map_cells(run_cell, config.cells(), config, config.workers, progress)
    return {"config": dataclasses.asdict(config), "cells": records, "summary": summarize(records)}


def map_cells(
    func: Callable[[Any, Any], dict[str, Any]], cells: Sequence[Any], config: Any, workers: int,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """`func(cell, config)` for every cell, in `workers` spawned processes (in this one for 1), in order; `progress` per record.

    Example:
        >>> map_cells(lambda cell, config: {"cell": cell * config}, [1, 2], 10, 1)
        [{'cell': 10}, {'cell': 20}]
    """
    if workers == 1:
        done: Iterable[dict[str, Any]] = (func(cell, config) for cell in cells)
    else:
        import multiprocessing

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        done = _closing(pool, pool.map(func, cells, [config] * len(cells)))
    records = []
    for record in done:
        records.append(record)
        if progress is not None:
            progress(record)
    return records


def _closing(pool: ProcessPoolExecutor, results: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    with pool:
        yield from results


# -- the summary -------------------------------------------------------------------------------------
def regrets(record: dict[str, Any]) -> dict[str, float]:
    """regret = loss(suggested) / loss(grid best) - 1 for every rule of one cell (inf: no suggestion or blew up).

    Example:
        >>> regrets({"grid": [[0.1, 1.0], [1.0, None]], "losses": {"a": 1.05, "b": None}})
        {'a': 0.050000000000000044, 'b': inf}
    """
    best = min(v for _, v in record["grid"] if v is not None)
    return {k: (v / best - 1.0 if v is not None else math.inf) for k, v in record["losses"].items()}


def summarize(records: Sequence[dict[str, Any]], within: float = 0.1) -> dict[str, Any]:
    """Per rule: median and worst regret, the share of cells within `within`; per case; and the finder's cost.

    Example:
        >>> rec = {"problem": "p", "optimizer": "sgd", "grid": [[0.1, 1.0]], "losses": {"a": 1.05},
        ...        "grid_steps": 1000, "finder_steps": 20, "grid_time": 10.0, "finder_time": 0.1}
        >>> s = summarize([rec])
        >>> s["rules"]["a"]["within"], s["cost_steps"], s["cost_time"]
        (1.0, 0.02, 0.01)
    """
    per_rule: dict[str, list[float]] = {}
    per_case: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        case = f"{rec['problem']}/{rec['optimizer']}"
        for rule, r in regrets(rec).items():
            per_rule.setdefault(rule, []).append(r)
            per_case.setdefault(case, {}).setdefault(rule, []).append(r)
    rules = {rule: regret_stats(values, within) for rule, values in per_rule.items()}
    cases = {case: {rule: regret_stats(v, within) for rule, v in by_rule.items()} for case, by_rule in per_case.items()}
    steps = sum(r["finder_steps"] for r in records) / max(1, sum(r["grid_steps"] for r in records))
    seconds = sum(r["finder_time"] for r in records) / max(1e-9, sum(r["grid_time"] for r in records))
    return {"rules": rules, "cases": cases, "cells": len(records), "cost_steps": round(steps, 4), "cost_time": round(seconds, 4)}


def regret_stats(values: Sequence[float], within: float) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "worst": float(arr.max()), "within": float(np.mean(arr <= within))}
