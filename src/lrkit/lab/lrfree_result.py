"""The records of `lrkit.lab.lrfree.compare_lr_free`: plain runs, the baselines' tuning, and the result that saves and loads.

Example:
    >>> from lrkit.lab.lrfree import compare_lr_free
    >>> r = compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["dog"])
    >>> LRFreeResult.from_json(r.to_json()).summary() == r.summary()
    True
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from lrkit._io import JsonResult, json_array, json_float, read_array, read_float
from lrkit.errors import LabError, LrkitValueError, bad

Array = npt.NDArray[np.float64]
EPOCH_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_loss_train_mode")


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One plain, timed training run: per-epoch metrics (epochs,), per-step readings (steps,), NaN after a divergence.

    `lr` is the optimizer's lr setting (for Prodigy, D-Adaptation and DoG a multiplier, not the step size:
    that is `steps["effective_lr"]`). `test_loss_train_mode` is NaN except for Schedule-Free optimizers.

    Example:
        >>> from lrkit.lab.lrfree import train_plain
        >>> from lrkit.lab.problems import get_problem
        >>> r = train_plain(get_problem("blobs"), "dadapt_adam", seed=0, epochs=1)
        >>> r.test_loss.shape, len(r.steps["effective_lr"]), r.lr
        ((1,), 16, 1.0)
    """

    problem: str
    optimizer: str
    seed: int
    lr: float
    epochs: dict[str, Array]
    steps: dict[str, Array]
    wall_s: float
    diverged_epoch: int = 0

    def __getattr__(self, name: str) -> Array:
        if name in EPOCH_METRICS:
            return self.epochs[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        head = {"problem": self.problem, "optimizer": self.optimizer, "seed": self.seed, "lr": json_float(self.lr)}
        arrays = {"epochs": {k: json_array(v) for k, v in self.epochs.items()}, "steps": {k: json_array(v) for k, v in self.steps.items()}}
        return {**head, **arrays, "wall_s": self.wall_s, "diverged_epoch": self.diverged_epoch}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Run:
        def arrays(part: Mapping[str, Any]) -> dict[str, Array]:
            return {k: np.asarray(read_array(v), dtype=np.float64) for k, v in part.items()}

        return cls(d["problem"], d["optimizer"], int(d["seed"]), read_float(d["lr"]), arrays(d["epochs"]), arrays(d["steps"]),
                   float(d["wall_s"]), int(d["diverged_epoch"]))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How a baseline's constant lr was chosen: the grid, each lr's mean final test loss over seeds (inf: a seed diverged).

    Example:
        >>> Tuning("blobs", "adam", (1e-3, 1e-2), (0.3, math.inf), 1e-3, 0.5, "population").chosen
        0.001
    """

    problem: str
    optimizer: str
    grid: tuple[float, ...]
    scores: tuple[float, ...]
    chosen: float
    wall_s: float
    how: str  # "population" (one batched run of the whole grid x seeds) or "plain" (one run per lr and seed)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scores"] = json_array(self.scores)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tuning:
        grid, scores = tuple(float(v) for v in d["grid"]), tuple(read_array(list(d["scores"])))
        return cls(d["problem"], d["optimizer"], grid, scores, float(d["chosen"]), float(d["wall_s"]), d["how"])



@dataclasses.dataclass(frozen=True, eq=False)
class LRFreeResult(JsonResult):
    """Every plain run and every baseline's tuning of one lr-free comparison; saves and loads as JSON.

    `spec` holds the arguments (problems, seeds, epochs per problem, optimizers, grids, options).

    Example:
        >>> from lrkit.lab.lrfree import compare_lr_free
        >>> r = compare_lr_free(["blobs"], seeds=2, epochs=1, optimizers=["prodigy"])
        >>> r.curves("blobs", "test_loss")["prodigy"].shape
        (2, 1)
    """

    spec: dict[str, Any]
    runs: tuple[Run, ...]
    tunings: tuple[Tuning, ...] = ()
    error: ClassVar[type[LrkitValueError]] = LabError

    def runs_of(self, problem: str, optimizer: str) -> list[Run]:
        """The runs (one per seed, in seed order) of `optimizer` on `problem`.

        Example:
            >>> from lrkit.lab.lrfree import compare_lr_free
            >>> [r.seed for r in compare_lr_free(["blobs"], seeds=2, epochs=1, optimizers=["dog"]).runs_of("blobs", "dog")]
            [0, 1]
        """
        return sorted((r for r in self.runs if r.problem == problem and r.optimizer == optimizer), key=lambda r: r.seed)

    def curves(self, problem: str, metric: str) -> dict[str, Array]:
        """Per optimizer, `metric` (one of EPOCH_METRICS) over epochs, one row per seed: (seeds, epochs).

        Example:
            >>> from lrkit.lab.lrfree import compare_lr_free
            >>> list(compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["dog"]).curves("blobs", "test_acc"))
            ['dog']
        """
        found = {name: self.runs_of(problem, name) for name in self.spec["optimizers"]}
        return {name: np.stack([r.epochs[metric] for r in runs]) for name, runs in found.items() if runs}

    def tuning(self, problem: str, optimizer: str) -> Tuning | None:
        """How `optimizer`'s lr was chosen on `problem` (None for a learning-rate-free optimizer).

        Example:
            >>> from lrkit.lab.lrfree import compare_lr_free
            >>> compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["adam"], grids={"adam": [1e-3]}).tuning("blobs", "adam").how
            'population'
        """
        return next((t for t in self.tunings if t.problem == problem and t.optimizer == optimizer), None)

    def summary(self) -> list[dict[str, Any]]:
        """One row per problem and optimizer: final metrics (mean and std over seeds), lrs, divergences, wall seconds.

        `final_effective_lr` is the median over seeds of the last step's effective lr; `wall_s` the mean seconds of
        one plain run; `tuning_wall_s` what choosing the baseline's lr cost (0 for the learning-rate-free ones).

        Example:
            >>> from lrkit.lab.lrfree import compare_lr_free
            >>> row = compare_lr_free(["blobs"], seeds=1, epochs=2, optimizers=["prodigy"]).summary()[0]
            >>> row["lr"], row["final_effective_lr"] > 1e-5, row["tuning_wall_s"]
            (1.0, True, 0.0)
        """
        found = [(p, name, self.runs_of(p, name)) for p in self.spec["problems"] for name in self.spec["optimizers"]]
        return [self._row(p, name, runs) for p, name, runs in found if runs]

    def _row(self, problem: str, optimizer: str, runs: list[Run]) -> dict[str, Any]:
        finals = {m: np.asarray([r.epochs[m][-1] for r in runs]) for m in ("train_loss", "test_loss", "test_acc")}
        last_lr = [r.steps["effective_lr"][-1] for r in runs if len(r.steps.get("effective_lr", ()))]
        tuning = self.tuning(problem, optimizer)
        with warnings.catch_warnings():  # every seed diverged: NaN figures, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            stats = {f"{m}{s}": float(f(v)) for m, v in finals.items() for s, f in (("", np.nanmean), ("_std", np.nanstd))}
            row = {"problem": problem, "optimizer": optimizer, "lr": runs[0].lr, "seeds": len(runs),
                   "diverged": sum(r.diverged_epoch > 0 for r in runs), **stats,
                   "final_effective_lr": float(np.median(last_lr)) if last_lr else math.nan,
                   "wall_s": float(np.mean([r.wall_s for r in runs])), "runs": "plain",
                   "tuning_wall_s": tuning.wall_s if tuning else 0.0, "tuned_by": tuning.how if tuning else "–"}  # fmt: skip
        return row

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "lrkit.lr_free", "spec": self.spec, "runs": [r.to_dict() for r in self.runs],
                "tunings": [t.to_dict() for t in self.tunings]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRFreeResult:
        if not isinstance(data, dict) or data.get("kind") != "lrkit.lr_free":
            why = "must be the dict of an LRFreeResult (kind 'lrkit.lr_free')"
            raise LabError(bad("LRFreeResult.from_dict", "data", why, str(data)[:40]))
        return cls(data["spec"], tuple(Run.from_dict(r) for r in data["runs"]), tuple(Tuning.from_dict(t) for t in data["tunings"]))
