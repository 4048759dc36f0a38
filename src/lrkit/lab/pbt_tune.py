"""Population Based Training of the lr schedule on Ray Tune: `pbt(problem, ...)` evolves each member's lr
(optionally momentum and weight decay) as it trains, and exports the winner's lr history as an lrkit spec.

Ray Tune's own `PopulationBasedTraining` scheduler runs the population (a `Tuner` with checkpoints); each
trial is **one member**: PBT's exploit copies one trial's whole state (weights, optimizer, scheduler) into
a worse one, and explore then perturbs that trial's hyperparameters. A shard of members per trial would be
copied, and perturbed, all together: members would stop being individuals. So a trial is a member.

A member is the plain PyTorch run of `lrkit.lab.pbt_member.MemberRun` (`lrkit.lab.population`'s definition, an
`lrkit.Scheduler` driving the lr). Every `interval` epochs the trial reports its validation metric (the problem's
test split, as in the lab) with a checkpoint holding the weights, the optimizer's state, the Scheduler's
`state_dict()` (step, plateau state), the minibatch order's and torch's random state, and the trial's hyperparameter
history: a run restored from it takes the same next steps, bit for bit, as one never stopped. A mutated lr is a new
piece of the trial's lr schedule from the step it applies (the Scheduler is rebuilt on the pieces; Ray users re-apply
a mutated lr by hand); a trial that copies a donor inherits the donor's history. The winner's history is a
`piecewise` schedule (`PBTResult.spec`) that `lrkit.parse` reads back, giving the lr the winner used at every step.

PBT copies weights between members, so the winner's schedule replayed from scratch (`lrkit.lab.pbt_member.replay`,
fresh seeds) is a new run, not the winner. Trials run in Ray workers, which import this module and the problem: a
problem "pkg.module:function" must be importable on every node (installed, or shipped with Ray's `runtime_env`).
(This module is `pbt_tune`: a submodule named `pbt` would replace the function `lrkit.lab.pbt` once imported.)

Example:
    >>> [sorted(c) for c in initial_configs(bounds_of(get_problem("blobs"), ("lr",), None, None, None), 2, seed=0)]
    [['lr', 'member', 'seed'], ['lr', 'member', 'seed']]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lrkit import validate
from lrkit.engine import RETRIES, ray_session, read_engine, require_ray
from lrkit.errors import LabError
from lrkit.lab.pbt_member import MemberRun, Recipe, read_device
from lrkit.lab.pbt_result import METRICS, PBTResult, PBTTrial, pieces_schedule, score_of
from lrkit.lab.problems import Problem, get_problem
from lrkit.optim import USED, Optim
from lrkit.protocols import PlateauLike
from lrkit.schedules.base import Schedule

HYPERPARAMS = ("lr", "momentum", "weight_decay")
LOG_UNIFORM = ("lr", "weight_decay")  # sampled log-uniform; momentum uniform
STATE_FILE = "member.pt"
Progress = Callable[[int, int], None]


# -- the trial: one member under PBT ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Settings:
    """A PBT run's fixed part, shared by every trial.

    Example:
        >>> Settings(Recipe(Optim("sgd")), epochs=4, interval=2, metric="loss", hyperparams=("lr",)).interval
        2
    """

    recipe: Recipe
    epochs: int
    interval: int
    metric: str
    hyperparams: tuple[str, ...]


def start_history(saved: Mapping[str, Any] | None, config: Mapping[str, Any], settings: Settings, me: str, step: int) -> dict[str, Any]:
    """The trial's hyperparameter history, its config's values applied from `step` on (a change is a new piece).

    A checkpoint of another trial (an exploit) hands this trial the donor's history, the donor noted in `lineage`.

    Example:
        >>> s = Settings(Recipe(Optim("sgd")), 4, 2, "loss", ("lr",))
        >>> h = start_history(None, {"lr": 0.1, "seed": 3}, s, "t0", 0)
        >>> h = start_history(h, {"lr": 0.08, "seed": 3}, s, "t1", 32)
        >>> h["pieces"]["lr"], h["lineage"]
        ([(0, 0.1), (32, 0.08)], [(32, 't0')])
    """
    if saved is None:
        history: dict[str, Any] = {"pieces": {h: [] for h in settings.hyperparams}, "used": [], "lineage": [], "seed": int(config["seed"])}
    else:
        history = {"pieces": {h: list(p) for h, p in saved["pieces"].items()}, "used": list(saved["used"]),
                   "lineage": list(saved["lineage"]), "seed": int(saved["seed"])}  # fmt: skip
        if saved["owner"] != me:
            history["lineage"].append((step, saved["owner"]))
    for h in settings.hyperparams:
        value = float(config[h])
        if not history["pieces"][h] or history["pieces"][h][-1][1] != value:
            history["pieces"][h].append((step, value))
    history["owner"] = me
    return history


def note_lr(history: dict[str, Any], step: int, lr: float) -> None:
    """Record the lr the optimizer will use from `step` on, when it changed (a mutation, a plateau's drop).

    Example:
        >>> h = {"used": [(0, 0.1)]}
        >>> note_lr(h, 16, 0.1); note_lr(h, 32, 0.05); h["used"]
        [(0, 0.1), (32, 0.05)]
    """
    if not history["used"] or history["used"][-1][1] != lr:
        history["used"].append((step, lr))


def schedules_of(history: Mapping[str, Any]) -> dict[str, Schedule]:
    """The trial's schedules (lr, and momentum / weight decay when mutated) from its pieces.

    Example:
        >>> schedules_of({"pieces": {"lr": [(0, 0.1), (32, 0.05)]}})
        {'lr': piecewise(boundaries=[32], values=[0.1, 0.05])}
    """
    return {h: pieces_schedule(p) for h, p in history["pieces"].items()}


def train_trial(config: dict[str, Any], problem: Problem, settings: Settings) -> None:
    """Ray Tune's function trainable: one member, resumed from Tune's checkpoint (its own or an exploited donor's).

    Example:
        >>> train_trial.__name__  # what Tune runs for every trial (in a Tune session only), and names its trials after
        'train_trial'
    """
    import torch
    from ray import tune

    torch.set_num_threads(settings.recipe.threads)
    me = tune.get_context().get_trial_id()
    checkpoint = tune.get_checkpoint()
    saved: dict[str, Any] | None = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / STATE_FILE, weights_only=True)
    step = int(saved["run"]["scheduler"]["step"]) if saved is not None else 0
    history = start_history(saved["history"] if saved is not None else None, config, settings, me, step)
    run = MemberRun(problem, settings.recipe, schedules_of(history), history["seed"], saved["run"] if saved is not None else None)
    note_lr(history, run.step, run.lr)
    while run.epoch < settings.epochs:
        for _ in range(min(settings.interval, settings.epochs - run.epoch)):
            run.train_epoch()
            note_lr(history, run.step, run.lr)
        loss, acc = run.losses[-1], run.accuracies[-1]
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"run": run.state(), "history": history}, Path(folder) / STATE_FILE)
            # PBT acts at `pbt_epoch` every `interval`: not at the last report, where nothing would train a perturbed copy
            ready = run.epoch if run.epoch < settings.epochs else (settings.epochs - 1) // settings.interval * settings.interval
            metrics = {"score": score_of(settings.metric, loss, acc), "test_loss": loss, "test_accuracy": acc, "epoch": run.epoch,
                       "pbt_epoch": ready}  # fmt: skip
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


# -- the search space ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sampler:
    """Resamples one hyperparameter in `(low, high)`, log-uniform or uniform, from PBT's own (seeded) `random`.

    Example:
        >>> 0.01 <= Sampler(0.01, 1.0, log=True)() <= 1.0
        True
    """

    low: float
    high: float
    log: bool

    def __call__(self) -> float:
        if self.log:
            return math.exp(random.uniform(math.log(self.low), math.log(self.high)))
        return random.uniform(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Clip:
    """PBT's `custom_explore_fn`: a perturbed value (x 1.2 or x 0.8) is kept within its bounds.

    Example:
        >>> Clip((("lr", 0.01, 0.1),))({"lr": 0.12, "seed": 0})
        {'lr': 0.1, 'seed': 0}
    """

    bounds: tuple[tuple[str, float, float], ...]

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for name, low, high in self.bounds:
            config[name] = min(max(float(config[name]), low), high)
        return config


def bounds_of(problem: Problem, hyperparams: Sequence[str], lr: Any, momentum: Any, weight_decay: Any) -> dict[str, tuple[float, float]]:
    """Each mutated hyperparameter's `(low, high)`, checked; the lr's default is a decade either side of the problem's lr.

    Example:
        >>> bounds_of(get_problem("blobs"), ("lr", "momentum"), None, (0.5, 0.99), (1e-6, 1e-2))
        {'lr': (0.001, 0.1), 'momentum': (0.5, 0.99)}
    """
    given = {"lr": lr if lr is not None else (problem.lr / 10, problem.lr * 10), "momentum": momentum, "weight_decay": weight_decay}
    out = {}
    for name in hyperparams:
        pair = validate.sequence("pbt", f"{name}_bounds", given[name], LabError)
        validate.length("pbt", f"{name}_bounds", pair, LabError, 2, "(low, high)")
        check = validate.positive if name in LOG_UNIFORM else validate.probability
        low, high = (check("pbt", f"{name}_bounds", v, LabError) for v in pair)
        if not low < high:
            validate.fail("pbt", f"{name}_bounds", "must be (low, high) with low < high", list(pair), LabError)
        out[name] = (low, high)
    return out


def initial_configs(bounds: Mapping[str, tuple[float, float]], population: int, seed: int) -> list[dict[str, Any]]:
    """Each member's starting values, drawn in the bounds from `seed`; member i's seed is `seed + i`.

    Example:
        >>> [round(c["lr"], 4) for c in initial_configs({"lr": (0.001, 0.1)}, 2, 0)]
        [0.0488, 0.0328]
    """
    rng = random.Random(seed)
    samplers = {h: Sampler(lo, hi, h in LOG_UNIFORM) for h, (lo, hi) in bounds.items()}
    configs = []
    for i in range(population):
        values = {h: (math.exp(rng.uniform(math.log(s.low), math.log(s.high))) if s.log else rng.uniform(s.low, s.high))
                  for h, s in samplers.items()}  # fmt: skip
        configs.append({"member": i, "seed": seed + i, **values})
    return configs


# -- the run ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Plan:
    """A checked `pbt` call: the problem, the trials' settings, PBT's knobs and the cluster's."""

    problem: Problem
    settings: Settings
    bounds: dict[str, tuple[float, float]]
    population: int
    quantile: float
    resample_probability: float
    synch: bool
    seed: int
    num_cpus: float
    num_gpus: float | None


def pbt(
    problem: str | Problem = "blobs",
    *,
    population: int = 8,
    epochs: int | None = None,
    interval: int | None = None,
    hyperparams: Sequence[str] = ("lr",),
    optimizer: Optim | str = "sgd(momentum=0.9)",
    lr_bounds: tuple[float, float] | None = None,
    momentum_bounds: tuple[float, float] = (0.5, 0.99),
    weight_decay_bounds: tuple[float, float] = (1e-6, 1e-2),
    plateau: PlateauLike | None = None,
    metric: str = "loss",
    quantile: float = 0.25,
    resample_probability: float = 0.25,
    synch: bool = False,
    seed: int = 0,
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    device: str | None = None,
    storage: str | Path | None = None,
    progress: Progress | None = None,
) -> PBTResult:
    """Population Based Training of the lr (and optionally momentum, weight decay) with Ray Tune, one member per trial.

    Args:
        problem: a built-in problem's name, "pkg.module:function" (importable on every Ray node), or a `Problem`.
        population: trials (members), each a plain run from seed `seed + i`, starting values drawn in the bounds.
        epochs: every trial's budget (default: the problem's).
        interval: epochs between reports; at each, PBT may copy a top-quantile trial into a bottom one (exploit)
            and perturb its values x 1.2 / x 0.8 or resample them (explore). Default: a tenth of `epochs`.
        hyperparams: what PBT mutates: "lr" (always) and optionally "momentum" (or Adam's beta1) and "weight_decay".
        optimizer: the `lrkit.Optim` (or spec) of every member; momentum needs a family that has one.
        lr_bounds, momentum_bounds, weight_decay_bounds: `(low, high)` each value is drawn in (log-uniform for the
            lr and weight decay) and kept in; default lr bounds: a decade either side of the problem's lr.
        plateau: an optional `lrkit.Plateau` of every member (fed the test loss after every epoch; its state is
            in the checkpoints, and its scale is part of the exported lr).
        metric: "loss" (lower is better) or "accuracy" on the problem's test split: what PBT ranks by.
        quantile, resample_probability: PBT's `quantile_fraction` (in (0, 0.5]) and `resample_probability`.
        synch: Ray's synchronous PBT (every trial waits, paused, for all to report, then all are compared) or, by
            default, its asynchronous one (each trial compared as it reports; much less pausing and restoring).
            Either way PBT's decisions follow the order the trials report in: one seed can give two runs.
        seed: the members' seeds and starting values, PBT's own random choices, and the problem's data.
        address: None (a local Ray sized to this machine), "auto" or "ray://host:port" (an existing cluster).
        num_cpus, num_gpus: per trial (default 1 CPU, torch threads to match; 1 GPU where the cluster has GPUs and
            `device` is CUDA, else 0).
        device: where each trial trains (default "cpu").
        storage: Ray Tune's folder for checkpoints and policy logs (default: a temporary folder, removed after).
        progress: called with (member-epochs reported, member-epochs in all) as the trials report.

    Returns:
        A `PBTResult`: every trial's history and lr path, the winner, its `spec`.

    Example:
        >>> try:  # every argument is checked before Ray starts
        ...     pbt("blobs", hyperparams=("momentum",))
        ... except LabError as e:
        ...     print(str(e)[:43])
        pbt: parameter 'hyperparams' must name 'lr'
        >>> r = pbt("blobs", population=4, epochs=6, interval=2)  # doctest: +SKIP
        >>> lrkit.parse(r.spec).values(range(len(r.best.lrs))).tolist() == r.best.lrs.tolist()  # doctest: +SKIP
        True
    """
    plan = _plan_of(problem, population, epochs, interval, hyperparams, optimizer, (lr_bounds, momentum_bounds, weight_decay_bounds),
                   plateau, metric, quantile, resample_probability, synch, seed, num_cpus, num_gpus, device)  # fmt: skip
    read_engine("pbt", "ray", address, LabError)
    require_ray("pbt", LabError)
    folder = Path(storage).resolve() if storage is not None else Path(tempfile.mkdtemp(prefix="lrkit-pbt-"))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with ray_session("pbt", address, LabError) as ray, _quiet_tune(), _seeded(seed):
            from ray import tune

            watch = _watch(tune, progress, plan.population * plan.settings.epochs)
            result = _collect(_tuner(ray, plan, folder, watch).fit(), plan, watch.ids)
    finally:
        if storage is None:
            shutil.rmtree(folder, ignore_errors=True)
    return dataclasses.replace(result, wall_s=time.perf_counter() - start)


def _plan_of(problem: str | Problem, population: Any, epochs: Any, interval: Any, hyperparams: Any, optimizer: Any, bounds: Any,
            plateau: Any, metric: Any, quantile: Any, resample: Any, synch: Any, seed: Any, cpus: Any, gpus: Any,
            device: Any) -> _Plan:  # fmt: skip
    """`pbt`'s arguments checked (each error names `pbt`, the parameter and the value), before Ray starts."""
    validate.seed("pbt", "seed", seed, LabError)
    p = problem if isinstance(problem, Problem) else get_problem(problem, seed=seed)
    epochs = validate.integer("pbt", "epochs", epochs, LabError) if epochs is not None else p.epochs
    interval = validate.integer("pbt", "interval", interval, LabError, maximum=epochs) if interval is not None else max(1, epochs // 10)
    names = validate.sequence("pbt", "hyperparams", hyperparams, LabError)
    for name in names:
        validate.choice("pbt", "hyperparams", name, LabError, HYPERPARAMS)
    if "lr" not in names or len(set(names)) != len(names):
        validate.fail("pbt", "hyperparams", "must name 'lr' and each hyperparameter once", list(names), LabError)
    opt = Optim.of(optimizer, "pbt", "optimizer")
    if "momentum" in names and "momentum" not in USED[opt.family]:
        validate.fail("pbt", "hyperparams", f"mutates 'momentum', which the {opt.family!r} optimizer has not", list(names), LabError)
    metric = validate.choice("pbt", "metric", metric, LabError, tuple(METRICS))
    if metric == "accuracy" and p.task != "classification":
        validate.fail("pbt", "metric", f"must be 'loss' for the regression problem {p.name!r}", metric, LabError)
    if plateau is not None:
        validate.instance("pbt", "plateau", plateau, LabError, PlateauLike, "an lrkit.Plateau or None")
    recipe = Recipe(opt, plateau, read_device(device), max(1, round(_cpus(cpus))))
    return _Plan(p, Settings(recipe, epochs, interval, metric, tuple(names)), bounds_of(p, names, *bounds),
                validate.integer("pbt", "population", population, LabError, minimum=2),
                validate.in_range("pbt", "quantile", quantile, LabError, 0, 0.5, open_low=True),
                validate.in_range("pbt", "resample_probability", resample, LabError, 0, 1), validate.flag("pbt", "synch", synch, LabError),
                seed, _cpus(cpus), validate.non_negative("pbt", "num_gpus", gpus, LabError) if gpus is not None else None)  # fmt: skip


def _cpus(cpus: Any) -> float:
    return validate.positive("pbt", "num_cpus", cpus, LabError) if cpus is not None else 1.0


def _tuner(ray: Any, plan: _Plan, folder: Path, watch: Any) -> Any:
    """Ray Tune's Tuner: PBT over one function trainable per member, every report with a checkpoint."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    s = plan.settings
    scheduler = PopulationBasedTraining(
        time_attr="pbt_epoch", metric="score", mode=METRICS[s.metric], perturbation_interval=s.interval,
        hyperparam_mutations={h: Sampler(lo, hi, h in LOG_UNIFORM) for h, (lo, hi) in plan.bounds.items()},
        quantile_fraction=plan.quantile, resample_probability=plan.resample_probability,
        custom_explore_fn=Clip(tuple((h, lo, hi) for h, (lo, hi) in plan.bounds.items())), synch=plan.synch,
    )  # fmt: skip
    gpus = plan.num_gpus
    if gpus is None:
        gpus = 1.0 if s.recipe.device.startswith("cuda") and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, problem=plan.problem, settings=s), {"cpu": plan.num_cpus, "gpu": gpus}
    )
    configs = initial_configs(plan.bounds, plan.population, plan.seed)
    space = {k: tune.choice([c[k] for c in configs]) for k in configs[0]}  # Tune checks each preset config against its space
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=plan.population, reuse_actors=True,
                                    search_alg=BasicVariantGenerator(points_to_evaluate=configs)),
        run_config=tune.RunConfig(name="pbt", storage_path=str(folder), verbose=0, callbacks=[watch],
                                  failure_config=tune.FailureConfig(max_failures=RETRIES)),
    )  # fmt: skip


def _watch(tune: Any, progress: Progress | None, total: int) -> Any:
    """A Tune callback: each trial's id by its folder (a trial that copied a donor at the end reports the donor's
    metrics, id included), and member-epochs for `progress` (the sum of every trial's latest reported epoch)."""

    class Watch(tune.Callback):  # type: ignore[misc]
        def __init__(self, progress: Progress | None, total: int) -> None:  # no closure: the Tuner pickles its callbacks
            self.epochs: dict[str, int] = {}
            self.ids: dict[str, str] = {}
            self.progress, self.total = progress, total

        def __getstate__(self) -> dict[str, Any]:  # a progress bar (it holds locks) is no part of the saved Tuner
            return {"epochs": self.epochs, "ids": self.ids, "progress": None, "total": self.total}

        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.ids[str(trial.path)] = str(trial.trial_id)

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any], **info: Any) -> None:
            self.epochs[trial.trial_id] = int(result["epoch"])
            if self.progress is not None:
                self.progress(min(self.total, sum(self.epochs.values())), self.total)

    return Watch(progress, total)


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune without its console tables and its CSV/JSON/TensorBoard logs (lrkit keeps its own record)."""
    quiet = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    saved = {k: os.environ.get(k) for k in quiet}
    log = logging.getLogger("ray.tune.analysis.experiment_analysis")  # warns that the disabled logs are missing
    level = log.level
    os.environ.update(quiet)
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """PBT's choices (which donor, which factor, resample or not) come from Python's `random`: seeded, then restored."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _collect(grid: Any, plan: _Plan, ids: Mapping[str, str]) -> PBTResult:
    """The result from Tune's ResultGrid: each trial's last checkpoint read back; a failed trial is one LabError line."""
    import torch

    trials = []
    for r in sorted(grid, key=lambda r: ids[str(r.path)]):
        if r.error is not None:
            cause = getattr(r.error, "cause", None) or r.error
            why = f"{type(cause).__name__}: {' '.join(str(cause).split())[:400]}"
            member = f"member {r.config.get('member')}, seed {r.config.get('seed')}"
            raise LabError(f"pbt: trial {ids.get(str(r.path), '?')} ({member}) failed on Ray ({why})")
        with r.checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / STATE_FILE, weights_only=True)
        policy = Path(r.path).parent / f"pbt_policy_{ids[str(r.path)]}.txt"  # Tune's log beside the trials' folders
        rows = tuple(json.loads(row) for row in policy.read_text().splitlines()) if policy.exists() else ()
        trials.append(dataclasses.replace(_trial_record(saved, ids[str(r.path)], plan.settings.metric), policy=rows))
    best = max if METRICS[plan.settings.metric] == "max" else min
    winner = trials.index(best(trials, key=lambda t: t.score))
    s = plan.settings
    return PBTResult(plan.problem.name, s.metric, s.epochs, s.interval, _steps_per_epoch(plan.problem), s.hyperparams, plan.bounds,
                     s.recipe.optimizer.spec, tuple(trials), winner, seed=plan.seed)  # fmt: skip


def _trial_record(saved: Mapping[str, Any], trial_id: str, metric: str) -> PBTTrial:
    """A trial's record from its last checkpoint."""
    history, run = saved["history"], saved["run"]
    lineage = tuple((int(s), str(t)) for s, t in history["lineage"])
    curve = run["losses"] if metric == "loss" else run["accuracies"]
    score = score_of(metric, run["losses"][-1], run["accuracies"][-1])
    pieces = {h: tuple((int(s), float(v)) for s, v in p) for h, p in history["pieces"].items()}
    used = tuple((int(s), float(v)) for s, v in history["used"])
    import numpy as np

    return PBTTrial(trial_id, int(history["seed"]), score, pieces, used, np.asarray(run["lrs"], dtype=np.float64), lineage,
                    np.asarray(curve, dtype=np.float64), not math.isfinite(run["losses"][-1]))  # fmt: skip


def _steps_per_epoch(problem: Problem) -> int:
    from lrkit.torch.data import steps_per_epoch

    return steps_per_epoch(len(problem.x_train), problem.batch_size)


# -- after the run ------------------------------------------------------------------------------------
def policy_pieces(result: PBTResult, trial: int | None = None) -> dict[str, list[tuple[int, float]]]:
    """The winner's (or `trials[trial]`'s) pieces as Ray Tune's `PopulationBasedTrainingReplay` reads its policy log.

    A check of lrkit's own record (`PBTTrial.pieces`): Tune logs each exploit's new config at the donor's
    training iteration, which is `iteration * interval * steps_per_epoch` optimizer steps. Empty without exploits.

    Example:
        >>> from lrkit.lab.pbt_result import _example
        >>> policy_pieces(_example())  # no policy log: the winner never copied another trial
        {}
    """
    from ray.tune.schedulers import PopulationBasedTrainingReplay

    t = result.best if trial is None else result.trials[trial]
    if not t.policy:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"pbt_policy_{t.trial_id}.txt"
        path.write_text("".join(json.dumps(row) + "\n" for row in t.policy))
        replayed = PopulationBasedTrainingReplay(str(path))
    steps = result.interval * result.steps_per_epoch
    changes = [(0, replayed.config), *((int(i) * steps, c) for i, c in replayed._policy)]  # (iteration, config) change points
    return {h: [(s, float(c[h])) for s, c in changes] for h in result.hyperparams}


__all__ = ["HYPERPARAMS", "pbt", "policy_pieces"]
