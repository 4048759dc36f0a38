"""The learning-rate-free optimizers next to tuned baselines, on the lab's problems, several seeds, honestly measured.

`compare_lr_free` tunes the baselines' constant lr on a small grid (SGD-momentum and Adam in one
batched population, `lrkit.lab.population.train`; NAdamW, outside `lrkit.Optim`'s families, in plain
runs), then trains every optimizer (`lrkit.lab.lrfree_optim`) in a **plain** torch loop per seed, timed
(wall seconds per run), in lrkit's minibatch order (`lrkit.torch.data.epoch_batches`) from the
initialization of `torch.manual_seed(seed)`. Every step logs the effective lr the optimizer applied
(`step_readings`); every epoch the train metrics (running means over the epoch's minibatches, at the
point being trained) and the test metrics (a full pass). A Schedule-Free optimizer is in `train()` mode
for training and in `eval()` mode for every evaluation; its test loss at the train-mode point is also
recorded (`test_loss_train_mode`), to show what evaluating in the wrong mode reports.

Example:
    >>> r = compare_lr_free(["blobs"], seeds=1, epochs=2, optimizers=["adam", "prodigy"], grids={"adam": [1e-3, 1e-2]})
    >>> [(row["optimizer"], row["runs"]) for row in r.summary()]
    [('adam', 'plain'), ('prodigy', 'plain')]
    >>> r.tunings[0].chosen in (1e-3, 1e-2)
    True
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import LabError
from lrkit.lab.lrfree_optim import BASELINES, OPTIMIZERS, group_snapshot, is_schedule_free, make_optimizer, step_readings
from lrkit.lab.lrfree_result import EPOCH_METRICS, LRFreeResult, Run, Tuning

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

Array = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]  # (runs done, runs in all); a grid's population counts as one run per member
GRIDS: dict[str, tuple[float, ...]] = {
    "sgd_momentum": (0.003, 0.01, 0.03, 0.1, 0.3),
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "nadamw": (3e-4, 1e-3, 3e-3, 1e-2),
}
_POPULATION = {"sgd_momentum": ("sgd", 0.9), "adam": ("adam", None)}  # baselines the batched trainer runs: family, momentum


def train_plain(
    problem: Problem, optimizer: str, *, seed: int = 0, epochs: int | None = None, lr: float | None = None,
    options: Mapping[str, Any] | None = None, device: torch.device | str | None = None,
) -> Run:  # fmt: skip
    """Train `problem`'s model with `optimizer` (`lrkit.lab.lrfree_optim.OPTIMIZERS`) in a plain torch loop, timed.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> r = train_plain(get_problem("blobs"), "adamw_schedulefree", epochs=2)
        >>> bool(r.test_loss_train_mode[-1] != r.test_loss[-1]), r.steps["averaging_weight"][:3].round(3).tolist()
        (True, [1.0, 0.5, 0.333])
    """
    import torch

    from lrkit.torch.data import steps_per_epoch

    epochs = validate.integer("train_plain", "epochs", problem.epochs if epochs is None else epochs, LabError)
    seed = validate.seed("train_plain", "seed", seed, LabError)
    torch.manual_seed(seed)
    model = problem.make_model().to(device or problem.x_train.device)
    opt = make_optimizer(optimizer, model.parameters(), lr, **(options or {}))
    start = time.perf_counter()  # the loop is timed, not the construction (whose first call in a process pays torch's set-up)
    loop = _Loop(problem, optimizer, model, opt, device)
    per_epoch = steps_per_epoch(len(problem.x_train), problem.batch_size)
    for epoch in range(1, epochs + 1):
        if not loop.train_epoch(itertools.islice(loop.batches(seed, epochs), per_epoch)):
            return loop.result(seed, epochs, time.perf_counter() - start, diverged_epoch=epoch)
        loop.evaluate()
    return loop.result(seed, epochs, time.perf_counter() - start)


class _Loop:
    """The state of one plain run: model, optimizer, data on the device, and the records so far."""

    def __init__(self, problem: Problem, name: str, model: torch.nn.Module, opt: torch.optim.Optimizer, device: Any) -> None:
        self.problem, self.name, self.model, self.opt = problem, name, model, opt
        self.device = next(model.parameters()).device
        self.data = [t.to(self.device) for t in (problem.x_train, problem.y_train, problem.x_test, problem.y_test)]
        self.schedule_free = is_schedule_free(name)
        self.records: dict[str, list[float]] = {k: [] for k in EPOCH_METRICS}
        self.steps: dict[str, list[float]] = {}
        self._batches: Any = None

    def batches(self, seed: int, epochs: int) -> Any:
        """One iterator over all epochs' minibatches in lrkit's order, sliced epoch by epoch by the caller."""
        from lrkit.torch.data import epoch_batches

        if self._batches is None:
            self._batches = epoch_batches(self.data[0], self.data[1], self.problem.batch_size, seed, epochs)
        return self._batches

    def _mode(self, train: bool) -> None:
        # a Schedule-Free optimizer trains at y and must be evaluated at its average x: eval() moves the weights there
        self.model.train(train)
        if self.schedule_free:
            self.opt.train() if train else self.opt.eval()  # type: ignore[attr-defined]

    def train_epoch(self, batches: Any) -> bool:
        """One epoch of updates, recording each step's readings and the epoch's running train metrics; False on divergence."""
        import torch

        self._mode(train=True)
        loss_sum = hits = seen = 0.0
        for xb, yb in batches:
            out = self.model(xb)
            loss = self.problem.loss(out, yb)
            if not math.isfinite(float(loss.detach())):
                return False
            self.opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            before = group_snapshot(self.opt)
            self.opt.step()
            for key, value in step_readings(self.name, before, group_snapshot(self.opt)).items():
                self.steps.setdefault(key, []).append(value)
            with torch.no_grad():
                loss_sum += float(loss.detach()) * len(yb)
                hits += float((out.argmax(-1) == yb).sum()) if self.problem.task == "classification" else math.nan
            seen += len(yb)
        self.records["train_loss"].append(loss_sum / seen)
        self.records["train_acc"].append(hits / seen)
        return True

    def _test(self) -> tuple[float, float]:
        import torch

        with torch.no_grad():
            out = self.model(self.data[2])
            acc = float(self.problem.accuracy(out, self.data[3])) if self.problem.task == "classification" else math.nan
            return float(self.problem.loss(out, self.data[3])), acc

    def evaluate(self) -> None:
        """The test metrics in eval mode; for Schedule-Free also the test loss at the train-mode point."""
        train_mode_loss = self._test()[0] if self.schedule_free else math.nan  # still in train mode here
        self._mode(train=False)
        loss, acc = self._test()
        self.records["test_loss"].append(loss)
        self.records["test_acc"].append(acc)
        self.records["test_loss_train_mode"].append(train_mode_loss)

    def result(self, seed: int, epochs: int, wall_s: float, diverged_epoch: int = 0) -> Run:
        pad = {k: np.asarray(v + [math.nan] * (epochs - len(v)), dtype=np.float64) for k, v in self.records.items()}
        steps = {k: np.asarray(v, dtype=np.float64) for k, v in self.steps.items()}
        lr = float(self.opt.param_groups[0]["lr"])
        return Run(self.problem.name, self.name, seed, lr, pad, steps, wall_s, diverged_epoch)


# -- tuning the baselines ------------------------------------------------------------------------------
def _score(final_test_losses: Sequence[float]) -> float:
    """A grid point's score: the mean final test loss over seeds; a diverged seed makes it inf (never chosen over a finite one)."""
    values = np.asarray(final_test_losses, dtype=np.float64)
    return float(values.mean()) if np.isfinite(values).all() else math.inf


def tune(
    problem: Problem, optimizer: str, grid: Sequence[float], seeds: int, epochs: int, *,
    options: Mapping[str, Any] | None = None, device: Any = None, progress: Callable[[int], None] | None = None,
) -> tuple[Tuning, list[Run]]:  # fmt: skip
    """The best constant lr of `grid` for baseline `optimizer` by mean final test loss over `seeds` seeds, and the grid's plain runs.

    SGD-momentum and Adam train the whole grid x seeds in one batched population (no plain runs come back);
    NAdamW, outside `lrkit.Optim`'s families, trains plain runs, which are returned for reuse; so does a
    baseline given constructor `options` (the population knows only `lrkit.Optim`'s hyperparameters).

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> t, runs = tune(get_problem("blobs"), "sgd_momentum", [1e-4, 0.1], seeds=1, epochs=3)
        >>> t.chosen, t.how, runs
        (0.1, 'population', [])
    """
    if optimizer not in BASELINES:
        validate.fail("tune", "optimizer", f"must be a tuned baseline ({', '.join(BASELINES)})", optimizer, LabError)
    lrs = tuple(validate.positive("tune", "grid", lr, LabError) for lr in validate.sequence("tune", "grid", grid, LabError))
    if not lrs:
        validate.fail("tune", "grid", "must hold at least one lr", grid, LabError)
    start = time.perf_counter()
    if optimizer in _POPULATION and not options:
        finals, runs, how = _population_grid(problem, optimizer, lrs, seeds, epochs, device), [], "population"
    else:
        runs = [train_plain(problem, optimizer, seed=s, epochs=epochs, lr=lr, options=options, device=device)
                for lr in lrs for s in range(seeds)]  # fmt: skip
        finals, how = np.asarray([r.test_loss[-1] for r in runs]).reshape(len(lrs), seeds), "plain"
    if progress is not None:
        progress(len(lrs) * seeds)
    scores = tuple(_score(row) for row in finals)
    chosen = lrs[int(np.argmin(scores))]
    return Tuning(problem.name, optimizer, lrs, scores, chosen, time.perf_counter() - start, how), runs


def _population_grid(problem: Problem, optimizer: str, lrs: tuple[float, ...], seeds: int, epochs: int, device: Any) -> Array:
    """The final test loss of every (lr, seed) of the grid, (lrs, seeds), from one batched population."""
    from lrkit.lab.population import Member, train
    from lrkit.optim import Optim

    family, momentum = _POPULATION[optimizer]
    members = [Member(lr=lr, optimizer=Optim(family, momentum=momentum), seed=s) for lr in lrs for s in range(seeds)]
    result = train(problem, members, epochs=epochs, device=device)
    finals = result.test_loss[:, -1].copy()
    finals[result.diverged] = np.inf
    return np.asarray(finals.reshape(len(lrs), seeds), dtype=np.float64)


# -- the comparison ------------------------------------------------------------------------------------
def compare_lr_free(
    problems: Sequence[str] = ("blobs", "digits"),
    seeds: int = 2,
    epochs: int | None = None,
    optimizers: Sequence[str] | None = None,
    *,
    grids: Mapping[str, Sequence[float]] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    out: str | Path | None = None,
    device: Any = None,
    progress: Progress | None = None,
) -> LRFreeResult:
    """Run every optimizer on every problem for `seeds` seeds next to the tuned baselines; with `out`, write the report.

    Args:
        problems: lab problems (`lrkit.lab.problems.get_problem` names or "pkg.module:function").
        seeds: seeds per optimizer (seed s: `torch.manual_seed(s)` initialization and data order s).
        epochs: the budget of every run (default: each problem's own).
        optimizers: names from `lrkit.lab.lrfree_optim.OPTIMIZERS` (default: all of them).
        grids: per baseline, the constant lrs to tune over (default `GRIDS`); the best mean final test loss wins.
        options: per optimizer, keyword arguments for its constructor (e.g. {"prodigy": {"d_coef": 0.5}}).
        out: a folder for `lr-free.json`, the figures and `lr-free-report.md`; None writes nothing.
        device: where to train (default: where the problem's tensors are, the CPU).
        progress: called with (runs done, runs in all) as runs finish.

    Example:
        >>> r = compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["sgd_schedulefree"])
        >>> r.runs[0].steps["effective_lr"][:2].tolist()
        [1.0, 1.0]
    """
    from lrkit.lab.problems import get_problem

    names = _optimizers(optimizers)
    _warm_up()
    seeds = validate.integer("compare_lr_free", "seeds", seeds, LabError)
    chosen_grids = _grids(grids, names)
    opts = {k: dict(v) for k, v in (options or {}).items() if validate.choice("compare_lr_free", "options", k, LabError, names)}
    probs = [get_problem(p) for p in validate.sequence("compare_lr_free", "problems", problems, LabError)]
    if not probs:
        validate.fail("compare_lr_free", "problems", "must name at least one problem", problems, LabError)
    budgets = {p.name: validate.integer("compare_lr_free", "epochs", p.epochs if epochs is None else epochs, LabError) for p in probs}
    total = len(probs) * seeds * (len(names) + sum(len(g) for g in chosen_grids.values()))
    done = [0]

    def advance(n: int = 1) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    runs, tunings = [], []
    for problem in probs:
        got, tuned = _one_problem(problem, names, seeds, budgets[problem.name], chosen_grids, opts, device, advance)
        runs += got
        tunings += tuned
    spec = {"problems": [p.name for p in probs], "seeds": seeds, "epochs": budgets, "optimizers": list(names),
            "grids": {k: list(v) for k, v in chosen_grids.items()}, "options": opts, "device": str(device or "cpu")}  # fmt: skip
    result = LRFreeResult(spec, tuple(runs), tuple(tunings))
    if out is not None:
        from lrkit.lab.lrfree_report import save

        save(result, Path(out))
    return result


def _warm_up() -> None:
    """Pay torch's one-off set-up (seconds, on the first optimizer of a process) before anything is timed."""
    import torch

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def _optimizers(optimizers: Sequence[str] | None) -> tuple[str, ...]:
    names = tuple(OPTIMIZERS) if optimizers is None else validate.sequence("compare_lr_free", "optimizers", optimizers, LabError)
    for name in names:
        validate.choice("compare_lr_free", "optimizers", name, LabError, tuple(OPTIMIZERS))
        OPTIMIZERS[name].load("compare_lr_free", "optimizers", name)  # a missing package fails here, before any training
    if not names or len(set(names)) != len(names):
        validate.fail("compare_lr_free", "optimizers", "must be a non-empty list of distinct optimizer names", optimizers, LabError)
    return tuple(names)


def _grids(grids: Mapping[str, Sequence[float]] | None, names: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    given = dict(grids or {})
    for key in given:
        validate.choice("compare_lr_free", "grids", key, LabError, BASELINES)
    chosen = {name: tuple(given.get(name, GRIDS[name])) for name in names if name in BASELINES}
    for name, grid in chosen.items():
        if not grid:
            validate.fail("compare_lr_free", "grids", f"must hold at least one lr for {name!r}", grid, LabError)
        for lr in grid:
            validate.positive("compare_lr_free", "grids", lr, LabError)
    return chosen


def _one_problem(
    problem: Problem, names: tuple[str, ...], seeds: int, epochs: int, grids: dict[str, tuple[float, ...]],
    options: dict[str, dict[str, Any]], device: Any, advance: Callable[..., None],
) -> tuple[list[Run], list[Tuning]]:  # fmt: skip
    """Tune each baseline, then the plain runs: the baselines at their chosen lr, the others at their package defaults."""
    runs: list[Run] = []
    tunings: list[Tuning] = []
    for name in names:
        lr = None
        if name in grids:
            tuning, grid_runs = tune(problem, name, grids[name], seeds, epochs, options=options.get(name), device=device, progress=advance)
            tunings.append(tuning)
            lr = tuning.chosen
            reused = [r for r in grid_runs if r.lr == lr]  # the plain grid runs of the chosen lr: not trained twice
            if reused:
                runs += reused
                advance(seeds)
                continue
        for seed in range(seeds):
            runs.append(train_plain(problem, name, seed=seed, epochs=epochs, lr=lr, options=options.get(name), device=device))
            advance()
    return runs, tunings
