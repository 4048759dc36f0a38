"""The time-to-target benchmark: how many steps, and how many wall seconds with tuning included, each lr recipe needs.

Per problem (a lab problem, `lrkit.lab.problems.get_problem`, on its own data split: the test split is the validation
split, as in the lab), seeds 0, 1, 2 (init `torch.manual_seed(seed)`, lrkit's minibatch order of the seed):

1. the *target*: Adam at every constant lr of `GRID`, trained for the full budget; the best seed-mean of the final test
   metric (accuracy for classification, MSE loss for regression) over the grid;
2. budgets of 1/8, 1/4, 1/2 and 1 of the full budget (epochs); every recipe's schedule is sized to each budget;
3. the recipes, everything they ran for a budget timed and counted, all on one thread, in CPU seconds (`seconds`: the
   wall seconds of an idle core, robust to a shared machine; a run's updates are timed, its evaluations are not, being
   the same for every recipe):

   - `constant`: the grid itself; at each budget its best lr there (a constant run of b epochs is the first b epochs
     of the full run: same init, same minibatches, nothing depends on the total); tuning = the grid's runs;
   - `nadamw_cosine`: AlgoPerf's baseline, `torch.optim.NAdam(decoupled_weight_decay=True)` with a 5% linear warm-up and
     a cosine to 0 (`lrkit.warmup`, `lrkit.cosine`, driven by `lrkit.Scheduler`); its peak tuned at each budget on
     its own 4-point grid (`PEAKS`), every peak's runs counted;
   - `one_cycle`: Smith's one-cycle (`lrkit.one_cycle`, Adam) from `lrkit.find_lr`'s `bounds()` (one range test per
     seed, counted): peak = the high bound, start = the low bound;
   - `search`: `lrkit.search_lr` with shapes ("constant", "cosine", "one_cycle", "wsd") over `GRID`, run at each budget
     from its own seed 100 (held out) and counted; its winner replayed with `lrkit.Scheduler` on the seeds;
   - `schedulefree_adamw`, `prodigy`: the packages' defaults (`lrkit.lab.lrfree_optim`); `self_tuning`:
     `lrkit.SelfTuningLR` (multiplicative hypergradient) over Adam from lr 1e-3; nothing tuned; budgets read as
     prefixes of one full run (none of them depends on the total).

The rules (steps and wall to target, the performance profile, the goal) and the folklore check (is 3e-4 Adam's best
lr? the grid's answer per problem, plus the lab's cheap problems in a batched population) are in
`lrkit.bench.time_to_target_report`. Run with `lrkit bench time-to-target` or `python bench/time_to_target.py`.

Example:
    >>> cfg = Config.quick()
    >>> cfg.cells(), cfg.budgets("regression")
    ([('main', 'regression')], [1, 2, 4, 8])
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit.bench import time_to_target_report as report
from lrkit.bench.finder import FINDER_SEED_OFFSET, check_names, map_cells, single_thread
from lrkit.bench.time_to_target_report import (
    CONSTANT,
    NADAMW,
    ONE_CYCLE,
    PRODIGY,
    SCHEDULE_FREE,
    SEARCH,
    SELF_TUNING,
    best_index,
    seed_mean,
)
from lrkit.errors import FinderError, LabError
from lrkit.lab.lrfree_optim import make_optimizer
from lrkit.schedules import Schedule, cosine, one_cycle, warmup

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

FUNC = "bench time-to-target"
# The full budgets, in epochs (the problems' own: 30, 20, 100), cut to fit the whole benchmark in 30 minutes of one core
# and to halve evenly three times.
EPOCHS = {"mnist1d_cnn": 16, "digits_cnn": 16, "regression": 80}
FRACTIONS = (8, 4, 2, 1)  # the budgets: full / 8, full / 4, full / 2, full
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # Adam's constant lrs: the lr-free study's grid and two more above
PEAKS = (1e-3, 3e-3, 1e-2, 3e-2)  # the lr-free study's NAdamW grid moved up by one: Adam's best lrs here reach 0.03
WARMUP = 0.05  # AlgoPerf's NAdamW baseline warms up over 5% of the steps
SHAPES = ("constant", "cosine", "one_cycle", "wsd")
SELF_TUNING_START = 1e-3  # torch's Adam default: the untuned start the self-tuning wrapper drives from
FOLKLORE = ("blobs", "moons", "circles", "digits", "sequence")  # the lab's cheap problems (seconds in a population)
TUNABLE = report.RECIPES[1:]  # the tuned constant always runs: its grid sets the target


@dataclasses.dataclass(frozen=True)
class Config:
    """What the time-to-target benchmark runs.

    Args:
        problems: the lab problems timed to target; seeds: the seeds every recipe trains from.
        recipes: the recipes besides the tuned constant (`TUNABLE`).
        grid: Adam's constant lrs (must hold 3e-4, the folklore's); they are also `search_lr`'s candidate peaks.
        peaks: NAdamW's peak lrs; epochs_scale: multiplies the full budgets (kept a multiple of 8 epochs).
        finder_steps: steps of each range test; search_seed: `search_lr`'s seed (not one of `seeds`).
        folklore: further problems for the 3e-4 check (Adam's grid in one batched population, the problem's own budget).
        workers: processes, one thread each (1: everything in this process, timed undisturbed).

    Example:
        >>> Config().budgets("mnist1d_cnn"), Config().cells()[3]
        ([2, 4, 8, 16], ('folklore', 'blobs'))
    """

    problems: tuple[str, ...] = tuple(EPOCHS)
    seeds: tuple[int, ...] = (0, 1, 2)
    recipes: tuple[str, ...] = TUNABLE
    grid: tuple[float, ...] = GRID
    peaks: tuple[float, ...] = PEAKS
    epochs_scale: float = 1.0
    finder_steps: int = 100
    search_seed: int = 100
    folklore: tuple[str, ...] = FOLKLORE
    workers: int = 1

    @classmethod
    def quick(cls) -> Config:
        """A smoke run of seconds: regression, one seed, a two-point grid and two peaks, a tenth of the budget.

        Example:
            >>> Config.quick().grid, Config.quick().folklore
            ((0.0003, 0.01), ())
        """
        return cls(problems=("regression",), seeds=(0,), grid=(3e-4, 1e-2), peaks=(1e-3, 1e-2), epochs_scale=0.1, finder_steps=20,
                   folklore=())  # fmt: skip

    def budgets(self, problem: str) -> list[int]:
        """The budgets of `problem` in epochs: 1/8, 1/4, 1/2 and all of its full budget (a multiple of 8 epochs).

        Example:
            >>> Config(epochs_scale=0.5).budgets("regression")
            [5, 10, 20, 40]
        """
        from lrkit.lab.problems import get_problem

        base = EPOCHS[problem] if problem in EPOCHS else get_problem(problem).epochs
        full = 8 * max(1, round(base * self.epochs_scale / 8))
        return [full // f for f in FRACTIONS]

    def cells(self) -> list[tuple[str, str]]:
        """The problems timed to target, then the further folklore problems.

        Example:
            >>> Config(folklore=("blobs", "regression")).cells()[-1]
            ('folklore', 'blobs')
        """
        return [("main", p) for p in self.problems] + [("folklore", p) for p in self.folklore if p not in self.problems]

    def check(self) -> None:
        """Reject unknown, empty or repeated names, bad lrs, sizes and seeds before any work.

        Example:
            >>> try:
            ...     Config(grid=(1e-3, 1e-2)).check()
            ... except LabError as e:
            ...     print(e)
            bench time-to-target: parameter 'grid' must hold 0.0003 (the folklore's lr), got (0.001, 0.01)
        """
        from lrkit.lab.problems import PROBLEMS

        check_names(FUNC, "problems", self.problems, PROBLEMS)
        if validate.sequence(FUNC, "recipes", self.recipes, LabError):
            check_names(FUNC, "recipes", self.recipes, TUNABLE)
        if validate.sequence(FUNC, "folklore", self.folklore, LabError):
            check_names(FUNC, "folklore", self.folklore, PROBLEMS)
        for param in ("grid", "peaks"):
            _check_lrs(param, getattr(self, param))
        if report.FOLKLORE_LR not in self.grid:
            validate.fail(FUNC, "grid", f"must hold {report.FOLKLORE_LR} (the folklore's lr)", self.grid, LabError)
        seeds = validate.sequence(FUNC, "seeds", self.seeds, LabError)
        if not seeds or len(set(seeds)) != len(seeds):
            validate.fail(FUNC, "seeds", "must hold at least one seed, each once", seeds, LabError)
        for s in seeds:
            validate.integer(FUNC, "seeds", s, LabError, minimum=0, maximum=2**63 - 1 - FINDER_SEED_OFFSET)
        if validate.seed(FUNC, "search_seed", self.search_seed, LabError) in seeds:
            validate.fail(FUNC, "seeds", f"must not hold the search seed {self.search_seed}", seeds, LabError)
        validate.positive(FUNC, "epochs_scale", self.epochs_scale, LabError)
        validate.integer(FUNC, "finder_steps", self.finder_steps, LabError, minimum=10)
        validate.integer(FUNC, "workers", self.workers, LabError, maximum=16)


def _check_lrs(param: str, lrs: Any) -> None:
    values = validate.sequence(FUNC, param, lrs, LabError)
    if not values or len(set(values)) != len(values):
        validate.fail(FUNC, param, "must hold at least one lr, each once", values, LabError)
    for lr in values:
        validate.positive(FUNC, param, lr, LabError)


# -- the schedules, sized to a budget -----------------------------------------------------------------
def nadamw_schedule(peak: float, total_steps: int) -> Schedule:
    """AlgoPerf's baseline schedule: linear warm-up from 0 over 5% of the steps, then a cosine from `peak` to 0 at the end.

    Example:
        >>> s = nadamw_schedule(1e-3, 200)
        >>> s(0), s(10), s(200)
        (0.0, 0.001, 0.0)
    """
    steps = max(1, round(WARMUP * total_steps))
    return warmup(cosine(start=peak, steps=max(1, total_steps - steps)), steps=steps)


def one_cycle_schedule(low: float, high: float, total_steps: int) -> Schedule:
    """Smith's one-cycle over `total_steps` from the range test's bounds: from `low` up to `high`, then down (torch's layout).

    Example:
        >>> s = one_cycle_schedule(1e-4, 1e-2, 100)
        >>> round(s(0), 8), round(s(29), 8), s(99) < 1e-7
        (0.0001, 0.01, True)
    """
    return one_cycle(peak=high, total_steps=total_steps, div_factor=max(1.0, high / low))


def seconds() -> float:
    """The process's CPU seconds: on the one thread every run uses, the wall an idle core takes, whatever else shares the machine.

    Example:
        >>> start = seconds(); _ = sum(range(10**5)); seconds() >= start
        True
    """
    return time.process_time()


# -- one plain run --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Trace:
    """One run's test loss, test accuracy (NaN for regression), effective lr and cumulative training seconds at its checkpoints.

    Example:
        >>> Trace([0.5], [0.9], [0.01], [1.5]).metric("classification")
        [0.9]
    """

    loss: list[float]
    acc: list[float]
    lr: list[float]
    wall: list[float]

    def metric(self, task: str) -> list[float]:
        """The target metric at each checkpoint: accuracy for classification, the loss for regression."""
        return self.acc if task == "classification" else self.loss


class _Scheduled:
    """An optimizer whose lr `lrkit.Scheduler` sets after every step: what the plain loop steps for a scheduled recipe."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule) -> None:
        from lrkit.torch.scheduler import Scheduler

        self.optimizer, self.scheduler = optimizer, Scheduler(optimizer, lr=schedule)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.optimizer.step()
        self.scheduler.step()


def train(problem: Problem, optimizer: str, seed: int, epochs: int, *, lr: float | None = None, schedule: Schedule | None = None,
          self_tuning: bool = False, at: Sequence[int] | None = None) -> Trace:  # fmt: skip
    """A plain run (the lr-free study's loop, `lrkit.lab.lrfree`) read at the epochs `at` (default: the last).

    `optimizer` is a `lrkit.lab.lrfree_optim` name; `schedule` drives its lr through `lrkit.Scheduler`; `self_tuning`
    wraps it in `lrkit.SelfTuningLR` (multiplicative hypergradient). Only the updates are timed. After a divergence the
    later checkpoints read NaN, at the seconds it ran.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> t = train(get_problem("blobs"), "adam", 0, 2, schedule=nadamw_schedule(0.01, 32), at=[1, 2])
        >>> len(t.loss), t.lr[-1] < 1e-4, t.wall[0] < t.wall[1]
        (2, True, True)
    """
    import torch

    from lrkit.lab.lrfree import _Loop
    from lrkit.torch.data import steps_per_epoch
    from lrkit.torch.selftuning import SelfTuningLR

    points = sorted(set(at or (epochs,)))
    torch.manual_seed(seed)
    model = problem.make_model()
    opt = make_optimizer(optimizer, model.parameters(), 1.0 if schedule is not None else lr)  # a schedule sets the lr itself
    stepper = _Scheduled(opt, schedule) if schedule is not None else SelfTuningLR(opt, rule="multiplicative") if self_tuning else opt
    loop = _Loop(problem, optimizer, model, stepper, None)  # type: ignore[arg-type]  # any object with param_groups, zero_grad, step
    per_epoch, batches = steps_per_epoch(len(problem.x_train), problem.batch_size), loop.batches(seed, epochs)
    trace, clock = Trace([], [], [], []), 0.0
    for epoch in range(1, points[-1] + 1):
        start = seconds()
        alive = loop.train_epoch(itertools.islice(batches, per_epoch))
        clock += seconds() - start
        if not alive:
            break
        if epoch in points:
            loop.evaluate()
            for values, key in ((trace.loss, "test_loss"), (trace.acc, "test_acc")):
                values.append(float(loop.records[key][-1]))
            trace.lr.append(float(loop.steps["effective_lr"][-1]))
            trace.wall.append(clock)
    for values in (trace.loss, trace.acc, trace.lr):
        values += [math.nan] * (len(points) - len(values))
    trace.wall += [clock] * (len(points) - len(trace.wall))
    return trace


# -- the recipes: per budget, the values of the final runs and the wall of everything run -------------------
Budget = dict[str, Any]  # {"epochs", "values" (per seed), "wall", "tuning_wall", "choice"}


def _budget(epochs: int, finals: Sequence[Trace], k: int, task: str, tuning: float, choice: str) -> Budget:
    """One budget's entry: the final runs' metric at checkpoint k, their seconds plus the tuning's."""
    values = [_json(t.metric(task)[k]) for t in finals]
    return {"epochs": epochs, "values": values, "wall": tuning + sum(t.wall[k] for t in finals), "tuning_wall": tuning, "choice": choice}


def _json(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _best_of(runs: Sequence[Sequence[Trace]], k: int, task: str) -> int:
    """The option (a list of traces over seeds) whose seed-mean metric at checkpoint k is best (the first if none is finite)."""
    means = [seed_mean([t.metric(task)[k] for t in traces]) for traces in runs]
    return best_index(means, higher_is_better=task == "classification") or 0


def constant_recipe(problem: Problem, grid: dict[float, list[Trace]], budgets: Sequence[int]) -> list[Budget]:
    """The tuned constant: at each budget the grid's best lr there; its tuning is every other grid run up to that budget."""
    lrs, out = list(grid), []
    for k, epochs in enumerate(budgets):
        i = _best_of(list(grid.values()), k, problem.task)
        total = sum(t.wall[k] for traces in grid.values() for t in traces)
        chosen = grid[lrs[i]]
        out.append(_budget(epochs, chosen, k, problem.task, total - sum(t.wall[k] for t in chosen), f"lr {lrs[i]:g}"))
    return out


def nadamw_recipe(problem: Problem, budgets: Sequence[int], config: Config) -> list[Budget]:
    """NAdamW + warm-up + cosine at each budget, its peak the best of `config.peaks` there (all peaks' runs counted)."""
    out, per_epoch = [], _steps_per_epoch(problem)
    for epochs in budgets:
        runs = [[train(problem, "nadamw", s, epochs, schedule=nadamw_schedule(p, epochs * per_epoch)) for s in config.seeds]
                for p in config.peaks]  # fmt: skip
        i = _best_of(runs, 0, problem.task)
        others = sum(t.wall[0] for j, traces in enumerate(runs) if j != i for t in traces)
        out.append(_budget(epochs, runs[i], 0, problem.task, others, f"peak {config.peaks[i]:g}"))
    return out


def range_test(problem: Problem, seed: int, steps: int) -> tuple[float | None, float | None, float]:
    """`lrkit.find_lr` on Adam from the seed's init (minibatch order seed + 1000): its `bounds()` and the seconds it took.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> low, high, seconds = range_test(get_problem("blobs"), 0, 30)
        >>> low < high, seconds > 0
        (True, True)
    """
    import torch

    from lrkit.bench.finder import batches
    from lrkit.torch.finder import find_lr

    torch.manual_seed(seed)
    model = problem.make_model()
    data = batches(problem, seed + FINDER_SEED_OFFSET, 1)
    start = seconds()
    result = find_lr(model, make_optimizer("adam", model.parameters(), 1e-3), problem.loss, data, steps=steps)
    took = seconds() - start
    try:
        low, high = result.bounds()
    except FinderError:  # a curve too short to read: no one-cycle for this seed
        return None, None, took
    return low, high, took


def one_cycle_recipe(problem: Problem, budgets: Sequence[int], config: Config) -> list[Budget]:
    """One range test per seed, then Smith's one-cycle between its bounds at each budget (the range tests counted)."""
    tests = [range_test(problem, s, config.finder_steps) for s in config.seeds]
    tuning, per_epoch, out = sum(t[2] for t in tests), _steps_per_epoch(problem), []
    choice = ", ".join(f"{lo:.2g}-{hi:.2g}" if lo is not None and hi is not None else "no bounds" for lo, hi, _ in tests)
    for epochs in budgets:
        finals = [train(problem, "adam", s, epochs, schedule=one_cycle_schedule(lo, hi, epochs * per_epoch))
                  if lo is not None and hi is not None else _diverged() for s, (lo, hi, _) in zip(config.seeds, tests)]  # fmt: skip
        out.append(_budget(epochs, finals, 0, problem.task, tuning, f"bounds {choice}"))
    return out


def _diverged() -> Trace:
    return Trace([math.nan], [math.nan], [math.nan], [0.0])


def search_recipe(problem: Problem, budgets: Sequence[int], config: Config) -> list[Budget]:
    """`search_lr` with four shapes at each budget (its seconds counted), its winner replayed on the seeds."""
    from lrkit.bench.search import run_search

    metric = "accuracy" if problem.task == "classification" else None  # the search judges by the target's own metric
    out = []
    for epochs in budgets:
        start = seconds()
        result, _ = run_search(problem, "adam", epochs, config.search_seed, lrs=list(config.grid), shapes=SHAPES, metric=metric)
        took = seconds() - start
        finals = [train(problem, "adam", s, epochs, schedule=result.schedule) for s in config.seeds]
        shape = result.candidates[result.winner]["shape"]
        out.append(_budget(epochs, finals, 0, problem.task, took, f"{shape}, peak {result.lr:.3g}"))
    return out


def prefix_recipe(problem: Problem, budgets: Sequence[int], config: Config, optimizer: str, self_tuning: bool = False) -> list[Budget]:
    """An untuned recipe whose runs do not depend on the total: one full run per seed, read at every budget."""
    lr = SELF_TUNING_START if self_tuning else None
    runs = [train(problem, optimizer, s, budgets[-1], lr=lr, self_tuning=self_tuning, at=budgets) for s in config.seeds]
    return [_budget(e, runs, k, problem.task, 0.0, f"effective lr at the end {runs[0].lr[k]:.2g}") for k, e in enumerate(budgets)]


RUNNERS: dict[str, Callable[[Problem, Sequence[int], Config], list[Budget]]] = {
    NADAMW: nadamw_recipe, ONE_CYCLE: one_cycle_recipe, SEARCH: search_recipe,
    SCHEDULE_FREE: lambda p, b, c: prefix_recipe(p, b, c, "adamw_schedulefree"),
    PRODIGY: lambda p, b, c: prefix_recipe(p, b, c, "prodigy"),
    SELF_TUNING: lambda p, b, c: prefix_recipe(p, b, c, "adam", self_tuning=True),
}  # fmt: skip


def _steps_per_epoch(problem: Problem) -> int:
    from lrkit.torch.data import steps_per_epoch

    return steps_per_epoch(len(problem.x_train), problem.batch_size)


# -- one cell ---------------------------------------------------------------------------------------------
def run_cell(cell: tuple[str, str], config: Config) -> dict[str, Any]:
    """One problem timed to target (`("main", name)`) or one further folklore problem; a JSON-ready record.

    Example:
        >>> rec = run_cell(("folklore", "blobs"), dataclasses.replace(_TINY, grid=(3e-4, 1e-2)))
        >>> rec["kind"], rec["grid"]["epochs"], len(rec["grid"]["loss"])
        ('folklore', 200, 2)
    """
    with single_thread():  # every recipe's seconds on the same single thread
        return _main(cell[1], config) if cell[0] == "main" else _folklore(cell[1], config)


def _main(name: str, config: Config) -> dict[str, Any]:
    from lrkit.lab.problems import get_problem

    problem, budgets = get_problem(name), config.budgets(name)
    _warm_up(problem, config)
    grid = {lr: [train(problem, "adam", s, budgets[-1], lr=lr, at=budgets) for s in config.seeds] for lr in config.grid}
    classification = problem.task == "classification"
    finals = [seed_mean([t.metric(problem.task)[-1] for t in traces]) for traces in grid.values()]
    best = best_index(finals, higher_is_better=classification)
    recipes = {CONSTANT: constant_recipe(problem, grid, budgets)}
    for recipe in config.recipes:
        recipes[recipe] = RUNNERS[recipe](problem, budgets, config)
    return {
        "kind": "main", "problem": name, "task": problem.task, "metric": "accuracy" if classification else "loss",
        "higher_is_better": classification, "budgets": budgets, "steps_per_epoch": _steps_per_epoch(problem),
        "seeds": list(config.seeds), "target": finals[best] if best is not None else math.nan,
        "target_lr": list(grid)[best or 0], "recipes": recipes,
        "grid": {"lrs": list(grid), "epochs": budgets[-1], "loss": [[_json(t.loss[-1]) for t in ts] for ts in grid.values()],
                 "acc": [[_json(t.acc[-1]) for t in ts] for ts in grid.values()] if classification else None},
    }  # fmt: skip


def _warm_up(problem: Problem, config: Config) -> None:
    """Pay the one-off costs (lazy imports of torch.optim and lrkit's finder, the first convolutions, torch.func) before any timing."""
    train(problem, "adam", 0, 1, lr=1e-3)
    for name in ("nadamw", "adamw_schedulefree", "prodigy"):
        train(problem, name, 0, 1, lr=1e-3 if name == "nadamw" else None)
    if ONE_CYCLE in config.recipes:
        range_test(problem, 0, 10)
    if SEARCH in config.recipes:
        from lrkit.bench.search import run_search

        run_search(problem, "adam", 1, config.search_seed, lrs=[1e-3], shapes=("cosine",))


def _folklore(name: str, config: Config) -> dict[str, Any]:
    """Adam's grid on a further problem at its own budget: one batched population (`lrkit.lab.population.train`)."""
    from lrkit.lab.population import Member
    from lrkit.lab.population import train as population
    from lrkit.lab.problems import get_problem
    from lrkit.optim import Optim

    problem = get_problem(name)
    members = [Member(lr=lr, optimizer=Optim("adam"), seed=s) for lr in config.grid for s in config.seeds]
    result = population(problem, members)
    shape = (len(config.grid), len(config.seeds))

    def finals(values: np.ndarray) -> list[list[float | None]]:
        return [[_json(float(v)) for v in row] for row in values[:, -1].reshape(shape)]

    classification = problem.task == "classification"
    grid = {"lrs": list(config.grid), "epochs": problem.epochs, "loss": finals(result.test_loss),
            "acc": finals(result.test_acc) if classification else None}  # fmt: skip
    return {"kind": "folklore", "problem": name, "task": problem.task, "grid": grid}


def run(config: Config, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every cell (in `config.workers` processes, one thread each), then the summary.

    Returns `{"config": ..., "cells": [...], "summary": ...}` (JSON-ready); `progress` is called per finished cell.

    Example:
        >>> out = run(_TINY)
        >>> sorted(out["summary"]["problems"]["regression"]), out["summary"]["goal"]["recipe"]
        (['constant', 'self_tuning'], 'self_tuning')
    """
    config.check()
    records = map_cells(run_cell, config.cells(), config, config.workers, progress)
    return {"config": dataclasses.asdict(config), "cells": records, "summary": report.summarize(records)}


# the doctests' benchmark: regression at 8 epochs, one seed, two lrs, the self-tuning wrapper only
_TINY = Config(problems=("regression",), seeds=(0,), recipes=(SELF_TUNING,), grid=(3e-4, 1e-2), epochs_scale=0.1, folklore=())
