"""The search benchmark: `lrkit.search_lr`'s recommendation, judged on seeds it never saw, against a grid of constant lrs.

A *cell* is a problem x optimizer of the finder benchmark (`lrkit.bench.finder`: its problems, epoch budgets, lr grids
and range tests). Per cell, on the problem's own data (its default data seed):

1. the finder benchmark's log grid of constant lrs, each trained on the held-out seeds (init and minibatch order
   both from the seed); the mean final loss on the evaluation split per lr, the lowest of them is the grid's best;
2. `search_lr` with its defaults (`budget="full"`), then with `budget="halving"`, then with
   `shapes=("constant", "cosine", "one_cycle")`: search seed 0, `val_data` the same evaluation split, `train_data` a
   shuffling DataLoader; each recommended schedule is replayed with `lrkit.Scheduler` on the held-out seeds;
3. the range test's default rule, torch-lr-finder and Lightning's `Tuner.lr_find` (all from the search seed), each
   suggestion trained as a constant lr on the held-out seeds;
4. the cost: each search's wall time against the grid's plain `torch.optim` runs for one seed (each with the problem's
   own DataLoader), measured side by side in the same process, one thread.

regret = a method's mean held-out loss / the grid's best - 1 (`lrkit.bench.search_report`).

Run with `lrkit bench search` or `python bench/search_quality.py`.

Example:
    >>> cfg = Config.quick()
    >>> cfg.cells(), cfg.seeds, len(cfg.grid("sgd(momentum=0.9)"))
    ([('blobs', 'sgd(momentum=0.9)')], (100,), 4)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit.bench import finder
from lrkit.bench.finder import TLF, check_names, fit, map_cells, single_thread
from lrkit.bench.search_report import HALVING, LIGHTNING, RANGE_TEST, SEARCH, SHAPES, summarize
from lrkit.errors import LabError
from lrkit.optim import Optim
from lrkit.schedules.base import Schedule
from lrkit.schedules.shapes import Constant

if TYPE_CHECKING:

    from lrkit.lab.problems import Problem

FUNC = "bench search"
# the three searches of a cell: search_lr's keyword arguments beyond the defaults
SEARCHES: dict[str, dict[str, Any]] = {SEARCH: {}, HALVING: {"budget": "halving"}, SHAPES: {"shapes": ("constant", "cosine", "one_cycle")}}
RANGE = (1e-7, 10.0)  # the range tests' lr span (the finder benchmark's, fastai's default)


@dataclasses.dataclass(frozen=True)
class Config:
    """What the search benchmark runs.

    Args:
        problems, optimizers: the cells (every problem x optimizer); optimizers are `lrkit.Optim` specs of the
            SGD or Adam families (the finder benchmark's lr grids).
        seeds: the held-out seeds every method's choice is judged on (the search never sees them).
        search_seed: the seed of `search_lr` and of the range tests.
        grid_points: constant lrs in the grid (log-spaced over the finder benchmark's range for the family).
        finder_steps: steps of each range test.
        epochs_scale: multiplies the finder benchmark's budgets (`lrkit.bench.finder.EPOCHS`).
        workers: processes, one thread each; compare_tlf, compare_lightning: run those peers.

    Example:
        >>> Config().cells()[:2], Config().epochs("digits_cnn")
        ([('blobs', 'sgd(momentum=0.9)'), ('blobs', 'adam')], 8)
    """

    problems: tuple[str, ...] = tuple(finder.EPOCHS)
    optimizers: tuple[str, ...] = finder.OPTIMIZERS
    seeds: tuple[int, ...] = (100, 101, 102)
    search_seed: int = 0
    grid_points: int = 12
    finder_steps: int = 100
    epochs_scale: float = 1.0
    workers: int = 2
    compare_tlf: bool = True
    compare_lightning: bool = True

    @classmethod
    def quick(cls) -> Config:
        """A smoke run: blobs with momentum SGD, one held-out seed, four grid points, a fifth of the budget.

        Example:
            >>> Config.quick().epochs("blobs"), Config.quick().workers
            (6, 1)
        """
        return cls(problems=("blobs",), optimizers=finder.OPTIMIZERS[:1], seeds=(100,), grid_points=4, finder_steps=40,
                   epochs_scale=0.2, workers=1)  # fmt: skip

    def _finder(self) -> finder.Config:
        """The finder benchmark's config with the same grid and budget (its grid and epochs are this benchmark's)."""
        return finder.Config(grid_points=self.grid_points, epochs_scale=self.epochs_scale)

    def grid(self, optimizer: str) -> list[float]:
        """The constant lrs of the grid for `optimizer`: the finder benchmark's.

        Example:
            >>> [round(lr, 6) for lr in Config(grid_points=3).grid("adam")]
            [0.0001, 0.01, 1.0]
        """
        return self._finder().grid(optimizer)

    def epochs(self, problem: str) -> int:
        """The budget of every run on `problem`, in epochs: the finder benchmark's.

        Example:
            >>> Config(epochs_scale=0.5).epochs("blobs")
            15
        """
        return self._finder().epochs(problem)

    def cells(self) -> list[tuple[str, str]]:
        """Every (problem, optimizer) of the benchmark.

        Example:
            >>> len(Config().cells())
            18
        """
        return [(p, o) for p in self.problems for o in self.optimizers]

    def check(self) -> None:
        """Reject unknown, empty or repeated names, bad sizes, and held-out seeds the search would see, before any work.

        Example:
            >>> try:
            ...     Config(seeds=(0, 1)).check()
            ... except LabError as e:
            ...     print(e)
            bench search: parameter 'seeds' must not hold the search seed 0 (the judging seeds are held out), got (0, 1)
        """
        from lrkit.lab.problems import PROBLEMS

        check_names(FUNC, "problems", self.problems, tuple(PROBLEMS))
        check_names(FUNC, "optimizers", self.optimizers, tuple(finder.GRIDS), choose=False)
        for spec in self.optimizers:
            if Optim.of(spec, FUNC, "optimizers").family not in finder.GRIDS:
                validate.fail(FUNC, "optimizers", f"must be of a family with an lr grid ({', '.join(finder.GRIDS)})", spec, LabError)
        if len({Optim.of(spec, FUNC, "optimizers") for spec in self.optimizers}) != len(self.optimizers):
            validate.fail(FUNC, "optimizers", "must name each one once", list(self.optimizers), LabError)
        validate.integer(FUNC, "grid_points", self.grid_points, LabError, minimum=2, maximum=finder.MAX_LR_GRID)
        validate.integer(FUNC, "finder_steps", self.finder_steps, LabError, minimum=10)
        validate.integer(FUNC, "workers", self.workers, LabError, maximum=4 * _cpus())  # each loads torch: ~0.5 GB
        validate.positive(FUNC, "epochs_scale", self.epochs_scale, LabError)
        seed = validate.integer(FUNC, "search_seed", self.search_seed, LabError, minimum=0, maximum=2**63 - 1 - finder.FINDER_SEED_OFFSET)
        seeds = validate.sequence(FUNC, "seeds", self.seeds, LabError)
        if not seeds or len(set(seeds)) != len(seeds):
            validate.fail(FUNC, "seeds", "must hold at least one seed, each once", seeds, LabError)
        for s in seeds:
            validate.seed(FUNC, "seeds", s, LabError)
        if seed in seeds:
            validate.fail(FUNC, "seeds", f"must not hold the search seed {seed} (the judging seeds are held out)", seeds, LabError)
        if validate.flag(FUNC, "compare_tlf", self.compare_tlf, LabError) and not _installed("torch_lr_finder"):
            validate.fail(FUNC, "compare_tlf", "needs torch-lr-finder installed (pip install torch-lr-finder), or --no-tlf", True, LabError)
        if validate.flag(FUNC, "compare_lightning", self.compare_lightning, LabError) and not _installed("lightning"):
            validate.fail(FUNC, "compare_lightning", "needs lightning installed (pip install lrkit[lightning]), or --no-lightning", True,
                          LabError)  # fmt: skip


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- training on the held-out seeds ---------------------------------------------------------------------------------
def held_out(problem: Problem, optimizer: str, schedule: Schedule, seeds: Sequence[int], epochs: int) -> list[float]:
    """`schedule` replayed with `lrkit.Scheduler` from each held-out seed, in the finder benchmark's minibatch order.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> losses = held_out(get_problem("blobs"), "adam", Constant(0.01), [100, 101], epochs=1)
        >>> len(losses), losses[0] != losses[1]
        (2, True)
    """
    return [fit(problem, optimizer, schedule, s, finder.batches(problem, s, epochs)) for s in seeds]


def grid_losses(problem: Problem, optimizer: str, lrs: Sequence[float], seeds: Sequence[int], epochs: int) -> list[list[float]]:
    """Per lr, the final loss from each held-out seed: one batched population (`lrkit.lab.population.train`).

    Members `Member(lr, optimizer, seed)` with the per-member order draw the finder benchmark's `batches()`; checked on
    blobs, digits_cnn and sequence with Adam: equal to the plain `lrkit.bench.finder.train` within 1e-7 (the tests
    check it again on blobs).

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> p = get_problem("blobs")
        >>> (batched,), plain = grid_losses(p, "adam", [0.01], [100], 1), finder.train(p, "adam", 0.01, 100, 1)
        >>> round(batched[0], 4) == round(plain, 4)
        True
    """
    from lrkit.lab.population import Member, train

    members = [Member(lr=lr, optimizer=Optim.of(optimizer, FUNC, "optimizers"), seed=s) for lr in lrs for s in seeds]
    final = train(problem, members, epochs=epochs).test_loss[:, -1]  # NaN where a member diverged
    final = np.where(np.isfinite(final), final, np.inf).reshape(len(lrs), len(seeds))
    return [[float(v) for v in row] for row in final]


def grid_wall(problem: Problem, optimizer: str, lrs: Sequence[float], seed: int, epochs: int) -> float:
    """Seconds of the grid's plain `torch.optim` runs for one seed, each over the problem's own shuffling DataLoader.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> grid_wall(get_problem("blobs"), "adam", [0.01, 0.1], seed=0, epochs=1) > 0
        True
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    clock = time.perf_counter()
    for lr in lrs:
        loader = DataLoader(TensorDataset(problem.x_train, problem.y_train), batch_size=problem.batch_size, shuffle=True)
        fit(problem, optimizer, lr, seed, itertools.chain.from_iterable(itertools.repeat(loader, epochs)))
    torch.manual_seed(seed)  # the loaders drew from the global generator
    return time.perf_counter() - clock


# -- the methods ----------------------------------------------------------------------------------------------------
def run_search(problem: Problem, optimizer: str, epochs: int, seed: int, **options: Any) -> tuple[Any, float]:
    """`search_lr` with its defaults but `options`, on the benchmark's data; the result and the wall seconds around it.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> result, seconds = run_search(get_problem("blobs"), "adam", epochs=1, seed=0, lrs=[0.01, 0.1])
        >>> result.lr in (0.01, 0.1), seconds >= result.wall_seconds
        (True, True)
    """
    from torch.utils.data import DataLoader, TensorDataset

    from lrkit.torch.search import search_lr

    loader = DataLoader(TensorDataset(problem.x_train, problem.y_train), batch_size=problem.batch_size, shuffle=True)
    clock = time.perf_counter()
    result = search_lr(problem.make_model, optimizer, problem.loss, loader, (problem.x_test, problem.y_test), epochs=epochs,
                       seed=seed, progress=False, **options)  # fmt: skip
    return result, time.perf_counter() - clock


def lightning_suggestion(problem: Problem, optimizer: str, seed: int, steps: int) -> tuple[float | None, str | None]:
    """Lightning's `Tuner.lr_find` over the range tests' span: its `suggestion()`, or None and why it gave none.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> lr, note = lightning_suggestion(get_problem("blobs"), "adam", seed=0, steps=20)
        >>> 1e-7 <= lr <= 10, note
        (True, None)
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    module = _lightning_module(problem, optimizer)
    loader = DataLoader(TensorDataset(problem.x_train, problem.y_train), batch_size=problem.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed + finder.FINDER_SEED_OFFSET))  # fmt: skip
    try:
        with _quiet(), tempfile.TemporaryDirectory() as root:  # lr_find saves and restores a checkpoint under the root
            found = _tuner(root).lr_find(module, train_dataloaders=loader, min_lr=RANGE[0], max_lr=RANGE[1], num_training=steps,
                                         update_attr=False)  # fmt: skip
            lr = found.suggestion() if found is not None else None
    except Exception as e:  # a peer failing on a model is a result of the benchmark: recorded with its reason, not raised
        return None, f"lr_find failed: {type(e).__name__}: {e}"[:300]
    return (float(lr), None) if lr is not None else (None, "lr_find gave no suggestion (suggestion() returned None)")


def _tuner(root: str) -> Any:
    import lightning as L
    from lightning.pytorch.tuner.tuning import Tuner

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)  # fmt: skip
    return Tuner(trainer)


def _lightning_module(problem: Problem, optimizer: str) -> Any:
    """The problem's model and loss as a LightningModule whose optimizer is the cell's (lr_find sets its lrs)."""
    import lightning as L

    class Wrapped(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = problem.make_model()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return problem.loss(self.model(x), y)

        def configure_optimizers(self) -> Any:
            return Optim.of(optimizer, FUNC, "optimizers").to_torch(self.parameters(), RANGE[0])

    return Wrapped()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's banners, tips, warnings and lr_find's own progress bar kept off the benchmark's output."""
    logs = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric")]  # each has its own level
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def suggestions(problem: Problem, optimizer: str, config: Config) -> dict[str, tuple[float | None, str | None]]:
    """The range tests' lrs from the search seed: lrkit's default rule, torch-lr-finder, Lightning (each with a note).

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> found = suggestions(get_problem("blobs"), "adam", Config(finder_steps=20, compare_tlf=False, compare_lightning=False))
        >>> list(found), found[RANGE_TEST][0] > 0
        (['range test (lrkit)'], True)
    """
    seed, steps = config.search_seed, config.finder_steps
    rules, _ = finder.lrkit_suggestions(problem, optimizer, seed, steps)
    default = rules["lrkit"]
    found: dict[str, tuple[float | None, str | None]] = {RANGE_TEST: (default, None if default is not None else "no suggestion")}
    if config.compare_tlf:
        lr = finder.tlf_suggestion(problem, optimizer, seed, steps)
        found[TLF] = (lr, None if lr is not None else "no suggestion (too few points before it diverged)")
    if config.compare_lightning:
        found[LIGHTNING] = lightning_suggestion(problem, optimizer, seed, steps)
    return found


# -- one cell -------------------------------------------------------------------------------------------------------
def run_cell(cell: tuple[str, str], config: Config) -> dict[str, Any]:
    """Grid, searches, range tests and their held-out losses for one (problem, optimizer); a JSON-ready record.

    Example:
        >>> rec = run_cell(("blobs", "adam"), _TINY)
        >>> rec["epochs"], len(rec["grid"]), sorted(rec["methods"])
        (1, 2, ['range test (lrkit)', 'search', 'search (halving)', 'search (shapes)'])
    """
    with single_thread():  # the searches and the grid they are timed against run on the same single thread
        return _run_cell(cell, config)


def _run_cell(cell: tuple[str, str], config: Config) -> dict[str, Any]:
    from lrkit.lab.problems import get_problem
    from lrkit.torch.data import steps_per_epoch

    name, optimizer = cell
    problem = get_problem(name)  # the problem's default data: searching and judging differ only in their seeds
    epochs, lrs, seeds = config.epochs(name), config.grid(optimizer), list(config.seeds)
    grid = grid_losses(problem, optimizer, lrs, seeds, epochs)
    # a process's first optimizer step pays seconds of one-time set-up (lazy imports inside torch.optim): not the grid's cost
    fit(problem, optimizer, Constant(lrs[0]), config.search_seed, finder.batches(problem, config.search_seed, 1)[:1])
    wall = grid_wall(problem, optimizer, lrs, config.search_seed, epochs)
    methods: dict[str, dict[str, Any]] = {}
    for method, options in SEARCHES.items():  # timed right after the grid, in the same process
        result, seconds = run_search(problem, optimizer, epochs, config.search_seed, **options)
        winner = result.candidates[result.winner]
        methods[method] = {
            "lr": result.lr, "shape": winner["shape"], "spec": winner["spec"], "note": None,
            "losses": _json_losses(held_out(problem, optimizer, result.schedule, seeds, epochs)),
            "wall": seconds, "result_wall": result.wall_seconds, "member_steps": result.member_steps,
            "equivalent_runs": result.cost.equivalent_runs, "batched": result.batched,
        }  # fmt: skip
    for method, (lr, note) in suggestions(problem, optimizer, config).items():
        losses = held_out(problem, optimizer, Constant(lr), seeds, epochs) if lr is not None else None
        methods[method] = {"lr": lr, "note": note, "losses": _json_losses(losses) if losses is not None else None}
    return {
        "problem": name, "optimizer": optimizer, "epochs": epochs, "seeds": seeds,
        "grid": [[lr, _json_losses(row)] for lr, row in zip(lrs, grid)], "methods": methods,
        "grid_wall": wall, "grid_steps": len(lrs) * epochs * steps_per_epoch(len(problem.x_train), problem.batch_size),
    }  # fmt: skip


def _json_losses(values: Sequence[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def run(config: Config, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every cell (in `config.workers` spawned processes, one thread each), then the summary.

    Returns `{"config": ..., "cells": [...], "summary": ...}` (JSON-ready); `progress` is called per finished cell.

    Example:
        >>> report = run(_TINY)
        >>> report["summary"]["cells"], [t["met"] for t in report["summary"]["targets"]][:1] in ([True], [False])
        (1, True)
    """
    config.check()
    records = map_cells(run_cell, config.cells(), config, config.workers, progress)
    return {"config": dataclasses.asdict(config), "cells": records, "summary": summarize(records)}


# the doctests' benchmark: one problem and optimizer, one held-out seed, two grid points, one epoch, no peers
_TINY = Config(problems=("blobs",), optimizers=("adam",), seeds=(100,), grid_points=2, finder_steps=10, epochs_scale=1 / 30,
               workers=1, compare_tlf=False, compare_lightning=False)  # fmt: skip
