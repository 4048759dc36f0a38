"""The record of a Population Based Training run (`lrkit.lab.pbt`): pure data that saves, loads and plots.

A trial's hyperparameters change in pieces: `(step, value)` from that optimizer step on. The winner's lr
history is an lrkit schedule (`schedule("lr")`: a `piecewise`, or a `constant` when PBT never changed it)
whose spec `lrkit.parse` reads back, giving the lr the winner used at every step (`trial.lrs`).

Example:
    >>> t = PBTTrial("a_00000", seed=0, score=0.3, pieces={"lr": ((0, 0.1), (32, 0.08))},
    ...              lr_used=((0, 0.1), (32, 0.08)), lrs=np.r_[np.full(32, 0.1), np.full(32, 0.08)])
    >>> r = PBTResult("blobs", "loss", epochs=4, interval=2, steps_per_epoch=16, hyperparams=("lr",),
    ...               bounds={"lr": (0.01, 1.0)}, optimizer="sgd(momentum=0.9)", trials=(t,), winner=0)
    >>> r.spec
    'piecewise(boundaries=[32], values=[0.1, 0.08])'
    >>> PBTResult.from_json(r.to_json()).spec == r.spec
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit._io import JsonResult, json_array, json_float, read_array, read_float
from lrkit.errors import LabError
from lrkit.schedules.base import Schedule
from lrkit.schedules.shapes import Constant, Piecewise

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Array = npt.NDArray[np.float64]
Pieces = tuple[tuple[int, float], ...]
METRICS = {"loss": "min", "accuracy": "max"}  # the validation metric PBT ranks by, and which way is better


def pieces_schedule(pieces: Sequence[tuple[int, float]]) -> Schedule:
    """The schedule of `(step, value)` pieces (each value from its step on; the first at step 0), equal neighbours merged.

    Example:
        >>> pieces_schedule([(0, 0.1), (8, 0.1), (16, 0.05)])
        piecewise(boundaries=[16], values=[0.1, 0.05])
        >>> pieces_schedule([(0, 0.1)])
        constant(value=0.1)
    """
    merged: list[tuple[int, float]] = []
    for step, value in pieces:
        if merged and merged[-1][0] == step:  # two changes at one step: the later one holds
            merged[-1] = (step, value)
        elif not merged or merged[-1][1] != value:
            merged.append((step, value))
    if not merged or merged[0][0] != 0:
        validate.fail("pieces_schedule", "pieces", "must start at step 0", list(pieces), LabError)
    if len(merged) == 1:
        return Constant(merged[0][1])
    return Piecewise(tuple(s for s, _ in merged[1:]), tuple(v for _, v in merged))


@dataclasses.dataclass(frozen=True, eq=False)
class PBTTrial:
    """One trial (one member) at the end of the run, with what it inherited from the trials it copied.

    Attributes:
        trial_id: Ray Tune's id of the trial.
        seed: the seed (init and minibatch order) of the member its weights descend from (its own, or a donor's).
        score: the final validation metric (the problem's test split); inf (loss) or 0 (accuracy) after a divergence.
        pieces: each mutated hyperparameter's `(step, value)` pieces as PBT set them (inherited from donors).
        lr_used: the lr the optimizer used, in pieces: `pieces["lr"]` times a plateau's scale (equal without one).
        lrs: the lr of every optimizer step the trial's weights went through (the first param group's).
        lineage: `(step, donor trial id)` for each copy in the ancestry of the trial's state (a donor's own copies
            come with its state): at that step the state was taken whole from that donor.
        curve: the validation metric after every epoch.
        diverged: whether the final weights are not finite.
        policy: Ray Tune's policy log of the trial (`pbt_policy_<id>.txt` rows), which `PopulationBasedTrainingReplay` reads.
    """

    trial_id: str
    seed: int
    score: float
    pieces: Mapping[str, Pieces]
    lr_used: Pieces
    lrs: Array
    lineage: tuple[tuple[int, str], ...] = ()
    curve: Array = dataclasses.field(default_factory=lambda: np.zeros(0))
    diverged: bool = False
    policy: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        pieces = {k: [[s, json_float(v)] for s, v in p] for k, p in self.pieces.items()}
        return {"trial_id": self.trial_id, "seed": self.seed, "score": json_float(self.score), "pieces": pieces,
                "lr_used": [[s, json_float(v)] for s, v in self.lr_used], "lrs": json_array(self.lrs),
                "lineage": [list(x) for x in self.lineage], "curve": json_array(self.curve), "diverged": self.diverged,
                "policy": list(self.policy)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PBTTrial:
        def pieces(rows: Sequence[Sequence[Any]]) -> Pieces:
            return tuple((int(s), float(read_float(v))) for s, v in rows)

        return cls(str(d["trial_id"]), int(d["seed"]), float(read_float(d["score"])), {k: pieces(v) for k, v in d["pieces"].items()},
                   pieces(d["lr_used"]), np.asarray(read_array(d["lrs"]), dtype=np.float64),
                   tuple((int(s), str(t)) for s, t in d["lineage"]), np.asarray(read_array(d["curve"]), dtype=np.float64),
                   bool(d["diverged"]), tuple(d.get("policy", ())))  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False)
class PBTResult(JsonResult):
    """A Population Based Training run of one problem: every trial's hyperparameter history, and the winner's.

    Attributes:
        problem: the problem's name.
        metric: "loss" (lower is better) or "accuracy" (higher is better), on the problem's test split.
        epochs, interval: the budget of every trial and how often PBT compared them (both in epochs).
        steps_per_epoch: optimizer steps per epoch (pieces and `lrs` count steps).
        hyperparams: the mutated hyperparameters ("lr", "momentum", "weight_decay").
        bounds: each one's `(low, high)`: sampled and resampled in it (log-uniform for lr and weight decay), kept in it.
        optimizer: the optimizer's spec (`lrkit.Optim`).
        trials: the trials, in Ray Tune's order.
        winner: the index of the trial with the best final score.
        seed: the run's seed (members' seeds start there; the problem's data seed).
        wall_s: the run's wall time.

    Example:
        >>> r = _example()
        >>> r.best.trial_id, PBTResult.from_json(r.to_json()).winner == r.winner
        ('a_00000', True)
    """

    problem: str
    metric: str
    epochs: int
    interval: int
    steps_per_epoch: int
    hyperparams: tuple[str, ...]
    bounds: Mapping[str, tuple[float, float]]
    optimizer: str
    trials: tuple[PBTTrial, ...]
    winner: int
    seed: int = 0
    wall_s: float = 0.0
    error: ClassVar[type[LabError]] = LabError

    @property
    def best(self) -> PBTTrial:
        """The winning trial.

        Example:
            >>> _example().best.trial_id
            'a_00000'
        """
        return self.trials[self.winner]

    @property
    def spec(self) -> str:
        """The winner's lr history as an lrkit spec (`lrkit.parse` reads it back).

        Example:
            >>> _example().spec
            'piecewise(boundaries=[32], values=[0.1, 0.08])'
        """
        return repr(self.schedule())

    def schedule(self, name: str = "lr", trial: int | None = None) -> Schedule:
        """The history of `name` of the winner (or of `trials[trial]`): "lr" (the lr used, a plateau's scale included)
        or a mutated hyperparameter.

        Example:
            >>> _example().schedule()(40)
            0.08
        """
        t = self.best if trial is None else self.trials[validate.integer("PBTResult.schedule", "trial", trial, LabError, minimum=0,
                                                                         maximum=len(self.trials) - 1)]  # fmt: skip
        if name == "lr":
            return pieces_schedule(t.lr_used)
        validate.choice("PBTResult.schedule", "name", name, LabError, ("lr", *self.hyperparams))
        return pieces_schedule(t.pieces[name])

    def summary(self) -> str:
        """A few lines: the winner, its score, its schedule, and the population's final scores.

        Example:
            >>> print(_example().summary().splitlines()[0])
            PBT on blobs: 1 trials x 4 epochs, perturbed every 2 epochs (lr); best test loss 0.3 (trial a_00000)
        """
        b = self.best
        scores = ", ".join(f"{t.score:.4g}" for t in self.trials)
        lines = [
            f"PBT on {self.problem}: {len(self.trials)} trials x {self.epochs} epochs, perturbed every {self.interval} epochs "
            f"({', '.join(self.hyperparams)}); best test {self.metric} {b.score:.4g} (trial {b.trial_id})",
            f"winner's lr: {self.spec}",
            *(f"winner's {h}: {self.schedule(h)!r}" for h in self.hyperparams if h != "lr"),
            f"final test {self.metric} of every trial: {scores}",
        ]
        return "\n".join(lines)

    def plot(self, title: str | None = None) -> Figure:
        """The population's lr paths over optimizer steps (log scale), the winner's drawn bold, exploits marked.

        Example:
            >>> fig = _example().plot()
            >>> [line.get_label() for line in fig.axes[0].get_lines()][:1]
            ['winner a_00000']
        """
        from lrkit.plot import new_figure

        fig = new_figure()
        ax = fig.axes[0]
        order = [self.winner] + [i for i in range(len(self.trials)) if i != self.winner]
        for i in order:
            t, win = self.trials[i], i == self.winner
            ax.step(np.arange(len(t.lrs)), t.lrs, where="post", lw=2.2 if win else 0.9, alpha=1.0 if win else 0.45,
                    color="C3" if win else "C0", label=f"winner {t.trial_id}" if win else None, zorder=3 if win else 2)  # fmt: skip
            at = [s for s, _ in t.lineage if s < len(t.lrs)]
            ax.plot(at, t.lrs[at], "v", ms=4, color="C3" if win else "C0", alpha=0.8 if win else 0.4)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("lr")
        ax.set_title(title or f"PBT on {self.problem}: lr of every trial (v: copied a better trial)")
        ax.legend(loc="best")
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "metric": self.metric, "epochs": self.epochs, "interval": self.interval,
                "steps_per_epoch": self.steps_per_epoch, "hyperparams": list(self.hyperparams),
                "bounds": {k: [json_float(lo), json_float(hi)] for k, (lo, hi) in self.bounds.items()}, "optimizer": self.optimizer,
                "trials": [t.to_dict() for t in self.trials], "winner": self.winner,
                "seed": self.seed, "wall_s": self.wall_s}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PBTResult:
        try:
            bounds = {k: (float(read_float(lo)), float(read_float(hi))) for k, (lo, hi) in d["bounds"].items()}
            return cls(str(d["problem"]), str(d["metric"]), int(d["epochs"]), int(d["interval"]), int(d["steps_per_epoch"]),
                       tuple(d["hyperparams"]), bounds, str(d["optimizer"]), tuple(PBTTrial.from_dict(t) for t in d["trials"]),
                       int(d["winner"]), int(d.get("seed", 0)), float(d.get("wall_s", 0.0)))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            why = f"must be the dict of a PBTResult ({type(e).__name__}: {e})"
            validate.fail("PBTResult.from_dict", "data", why, sorted(d) if isinstance(d, Mapping) else d, LabError)


def _example() -> PBTResult:
    """A tiny result for the examples."""
    t = PBTTrial("a_00000", 0, 0.3, {"lr": ((0, 0.1), (32, 0.08))}, ((0, 0.1), (32, 0.08)), np.r_[np.full(32, 0.1), np.full(32, 0.08)],
                 ((32, "a_00001"),), np.array([0.9, 0.6, 0.4, 0.3]))  # fmt: skip
    return PBTResult("blobs", "loss", 4, 2, 16, ("lr",), {"lr": (0.01, 1.0)}, "sgd(momentum=0.9)", (t,), 0)


def score_of(metric: str, loss: float, accuracy: float) -> float:
    """The score PBT ranks by: the loss (inf when not finite) or the accuracy (0 when the loss is not finite).

    Example:
        >>> score_of("loss", float("nan"), 0.3), score_of("accuracy", 0.2, 0.9)
        (inf, 0.9)
    """
    if not math.isfinite(loss):
        return math.inf if metric == "loss" else 0.0
    return loss if metric == "loss" else accuracy


__all__ = ["METRICS", "PBTResult", "PBTTrial", "pieces_schedule", "score_of"]
