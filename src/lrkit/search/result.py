"""`SearchResult`: what `lrkit.search_lr` trained and which candidate won; pure data, saved as JSON, drawn as a Figure.

This module imports neither torch nor matplotlib: a saved search can be loaded, read and
plotted on a machine without torch (`plot` calls `lrkit.plot`, which imports matplotlib when it draws).

How a search is judged (`judge`, the one rule; the engine and `scores` both use it):
each member's *tail* value is the mean of its values over the last quarter of the epochs it trained
(at least one epoch: `tail_values`); a candidate's score is the mean of its seeds' tails. One final
epoch's validation loss is noisy (a large lr oscillates from epoch to epoch): on the benchmark's MLP
cells the tail mean cut the worst held-out regret from 192% to 10% at the same median. The table
and `curves` keep every epoch's value. A candidate with a diverged seed (or a non-finite tail) scores
`inf` when judged by the loss and `-inf` when judged by the metric (higher is better). A candidate
dropped by successive halving is scored at its last rung, for the table and the plot, but never
wins: the winner is the best candidate whose every seed trained all `epochs`. Ties go to the lower
val loss (a metric such as accuracy ties often), then to the earlier candidate.

Example:
    >>> r = _demo()
    >>> r.lr, r.candidates[r.winner]["shape"], SearchResult.from_json(r.to_json()).to_dict() == r.to_dict()
    (0.01, 'cosine', True)
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit._io import JsonResult, json_array, json_float, read_array, read_float
from lrkit.errors import FinderError
from lrkit.schedules.spec import parse

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lrkit.schedules.base import Schedule

JUDGED_BY = ("val_loss", "metric")
BUDGETS = ("full", "halving")
CANDIDATE_KEYS = ("lr", "shape", "weight_decay", "spec")
Array = npt.NDArray[Any]


@dataclasses.dataclass(frozen=True)
class SearchCost:
    """What a search cost: wall seconds, optimizer steps summed over members, and that work in single runs.

    `equivalent_runs` is `member_steps / (epochs * steps_per_epoch)`: how many plain training runs of the
    full budget the same number of optimizer steps makes (the grid search a search replaces costs one per candidate).

    Example:
        >>> SearchCost(wall_seconds=2.0, member_steps=600, equivalent_runs=3.0).equivalent_runs
        3.0
    """

    wall_seconds: float
    member_steps: int
    equivalent_runs: float


@dataclasses.dataclass(eq=False)
class SearchResult(JsonResult):
    """The outcome of `lrkit.search_lr`: every candidate x seed's validation curve, and the winner.

    Attributes:
        candidates: per candidate, `{"lr": peak, "shape": "constant" | "cosine" | ... | "custom",
            "weight_decay": float, "spec": the candidate's schedule over optimizer steps (lrkit spec text)}`.
        seeds: the init seeds each candidate was trained from (seed, seed + 1, ...).
        val_loss: (K, S, E) validation loss after each epoch per candidate, seed and epoch; NaN where the
            member did not train that epoch (it diverged, or halving dropped it).
        metric: (K, S, E) the validation metric (higher is better), or None without a metric.
        metric_name: the metric's name, or None.
        epochs_trained: (K, S) epochs each member trained; diverged: (K, S) whether it diverged.
        winner: the winning candidate's index; judged_by: "val_loss" or "metric".
        epochs, steps_per_epoch: the budget; budget: "full" or "halving"; optimizer: an `lrkit.Optim` spec.
        wall_seconds, member_steps: the cost; batched: False when the sequential fallback ran; warnings.

    Example:
        >>> r = _demo()
        >>> r.val_loss.shape, r.scores.round(2).tolist()
        ((3, 2, 4), [0.8, 0.9, -inf])
    """

    candidates: list[dict[str, Any]]
    seeds: list[int]
    val_loss: Array
    metric: Array | None
    metric_name: str | None
    epochs_trained: Array
    diverged: Array
    winner: int
    judged_by: str
    epochs: int
    steps_per_epoch: int
    budget: str
    optimizer: str
    wall_seconds: float
    member_steps: int
    batched: bool = True
    warnings: list[str] = dataclasses.field(default_factory=list)

    error = FinderError  # raised by `load` / `from_json` for a file that is not a saved search

    def __post_init__(self) -> None:
        func = "SearchResult"
        validate.choice(func, "judged_by", self.judged_by, FinderError, JUDGED_BY)
        validate.choice(func, "budget", self.budget, FinderError, BUDGETS)
        self.val_loss = _grid(func, "val_loss", self.val_loss, np.float64, (len(self.candidates), len(self.seeds), self.epochs))
        if self.metric is not None:
            self.metric = _grid(func, "metric", self.metric, np.float64, self.val_loss.shape)
        elif self.judged_by == "metric":
            validate.fail(func, "judged_by", "may be 'metric' only with a metric", self.judged_by, FinderError)
        self.epochs_trained = _grid(func, "epochs_trained", self.epochs_trained, np.int64, self.val_loss.shape[:2])
        self.diverged = _grid(func, "diverged", self.diverged, np.bool_, self.val_loss.shape[:2])
        validate.integer(func, "winner", self.winner, FinderError, minimum=0, maximum=len(self.candidates) - 1)

    @property
    def lr(self) -> float:
        """The winner's peak lr.

        Example:
            >>> _demo().lr
            0.01
        """
        return float(self.candidates[self.winner]["lr"])

    @property
    def schedule(self) -> Schedule:
        """The winner's schedule over optimizer steps (`epochs * steps_per_epoch` of them), ready for `lrkit.Scheduler`.

        Example:
            >>> _demo().schedule
            cosine(start=0.01, steps=40)
        """
        return parse(self.candidates[self.winner]["spec"])

    @property
    def curves(self) -> Array:
        """The (K, S, E) validation-loss curves: candidate, seed, epoch (NaN where a member did not train).

        Example:
            >>> _demo().curves[1, 0].tolist()
            [0.8, 0.5, 0.3, 0.2]
        """
        return self.val_loss

    @property
    def scores(self) -> Array:
        """(K,) each candidate's judged value (see the module's rule): loss to minimise, or metric to maximise.

        Example:
            >>> _demo().scores.round(2).tolist()
            [0.8, 0.9, -inf]
        """
        return judge(self.val_loss, self.metric, self.epochs_trained, self.diverged, self.judged_by, self.epochs)[0]

    @property
    def dropped(self) -> Array:
        """(K,) whether halving stopped the candidate before `epochs` (diverged candidates are not counted here).

        Example:
            >>> _demo().dropped.tolist()
            [False, False, False]
        """
        return np.asarray(~self.diverged.any(axis=1) & (self.epochs_trained < self.epochs).any(axis=1))

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per candidate x seed: final val loss (and metric), diverged, epochs trained; `pandas.DataFrame(result.table)` works.

        Example:
            >>> row = _demo().table[2]
            >>> row["lr"], row["shape"], row["seed"], row["val_loss"], row["diverged"], row["epochs"]
            (0.01, 'cosine', 0, 0.2, False, 4)
        """
        losses = final_values(self.val_loss, self.epochs_trained)
        metrics = None if self.metric is None else final_values(self.metric, self.epochs_trained)
        rows = []
        for k, cand in enumerate(self.candidates):
            for s, seed in enumerate(self.seeds):
                row = {"candidate": k, "lr": float(cand["lr"]), "shape": cand["shape"], "weight_decay": float(cand["weight_decay"]),
                       "seed": int(seed), "val_loss": float(losses[k, s])}  # fmt: skip
                if metrics is not None:
                    row["metric"] = float(metrics[k, s])
                row |= {"diverged": bool(self.diverged[k, s]), "epochs": int(self.epochs_trained[k, s])}
                rows.append(row)
        return rows

    @property
    def cost(self) -> SearchCost:
        """Wall seconds, member-steps and the same work in equivalent single runs of the full budget.

        Example:
            >>> _demo().cost
            SearchCost(wall_seconds=1.5, member_steps=200, equivalent_runs=5.0)
        """
        runs = self.member_steps / (self.epochs * self.steps_per_epoch) if self.epochs * self.steps_per_epoch else math.nan
        return SearchCost(float(self.wall_seconds), int(self.member_steps), float(runs))

    def to_csv(self, path: str | Path) -> Path:
        """Write `table` as CSV (a header, one line per candidate x seed; NaN as "nan"); returns the path.

        Example:
            >>> import tempfile, pathlib
            >>> p = _demo().to_csv(pathlib.Path(tempfile.mkdtemp()) / "search.csv")
            >>> p.read_text().splitlines()[0]
            'candidate,lr,shape,weight_decay,seed,val_loss,metric,diverged,epochs'
        """
        rows = self.table
        target = Path(path)
        with target.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return target

    def summary(self) -> str:
        """A few lines of text: what was searched, the winner and its score, the cost, the warnings.

        Example:
            >>> print(_demo().summary())  # doctest: +NORMALIZE_WHITESPACE
            search: 3 candidates x 2 seeds, 4 epochs of 10 steps (full budget), sgd(momentum=0.9), judged by accuracy
            winner: lr=0.01 cosine -- accuracy 0.9 (mean over 2 seeds); val loss 0.25
            schedule: cosine(start=0.01, steps=40)
            diverged: 1 of 3 candidates
            cost: 1.5 s, 200 member-steps = 5 single runs (batched)
        """
        k, cand, score = len(self.candidates), self.candidates[self.winner], self.scores[self.winner]
        name = self.metric_name or "metric" if self.judged_by == "metric" else "val loss"
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''}"
        decay = f" weight decay {cand['weight_decay']:g}" if len({c["weight_decay"] for c in self.candidates}) > 1 else ""
        loss = judge(self.val_loss, None, self.epochs_trained, self.diverged, "val_loss", self.epochs)[0][self.winner]
        also = f"; val loss {loss:.4g}" if self.judged_by == "metric" else ""
        cost = self.cost
        lines = [
            f"search: {k} candidates x {seeds}, {self.epochs} epochs of {self.steps_per_epoch} steps ({self.budget} budget), "
            f"{self.optimizer}, judged by {name}",
            f"winner: lr={self.lr:.3g} {cand['shape']}{decay} -- {name} {score:.4g} (mean over {seeds}){also}",
            f"schedule: {cand['spec']}",
        ]
        n_diverged, n_dropped = int(self.diverged.any(axis=1).sum()), int(self.dropped.sum())
        if n_diverged:
            lines.append(f"diverged: {n_diverged} of {k} candidates")
        if n_dropped:
            lines.append(f"dropped by halving: {n_dropped} of {k} candidates")
        lines.append(f"cost: {cost.wall_seconds:.3g} s, {cost.member_steps} member-steps = {cost.equivalent_runs:.3g} single runs "
                     f"({'batched' if self.batched else 'sequential fallback'})")  # fmt: skip
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (arrays as nested lists, NaN/inf as text); `from_dict` reads it back.

        Example:
            >>> _demo().to_dict()["val_loss"][2][0]
            [0.9, 5.0, 'nan', 'nan']
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["candidates"] = [{"lr": json_float(c["lr"]), "shape": str(c["shape"]), "weight_decay": json_float(c["weight_decay"]),
                              "spec": str(c["spec"])} for c in self.candidates]  # fmt: skip
        for key in ("val_loss", "metric"):
            out[key] = None if out[key] is None else json_array(out[key])
        out["epochs_trained"], out["diverged"] = self.epochs_trained.tolist(), self.diverged.tolist()
        for key in ("winner", "epochs", "steps_per_epoch", "member_steps"):  # numpy integers are not JSON
            out[key] = int(out[key])
        out["wall_seconds"], out["batched"] = json_float(self.wall_seconds), bool(self.batched)
        out["seeds"], out["warnings"] = [int(s) for s in self.seeds], [str(w) for w in self.warnings]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        """The result saved by `to_dict` (checked: a damaged file is a `FinderError`, never a half-read result).

        Example:
            >>> r = _demo()
            >>> SearchResult.from_dict(r.to_dict()).scores.tolist() == r.scores.tolist()
            True
        """
        func = "SearchResult.from_dict"
        fields = dataclasses.fields(cls)
        required = sorted(f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        validate.instance(func, "data", data, FinderError, dict, f"a dict with keys {required}")
        if set(required) - set(data):
            validate.fail(func, "data", f"must have the keys {required}", sorted(data), FinderError)
        kept = {f.name: data[f.name] for f in fields if f.name in data}
        kept["candidates"] = [_read_candidate(func, c) for c in validate.sequence(func, "candidates", data["candidates"], FinderError)]
        for key in ("val_loss", "metric"):
            kept[key] = None if data[key] is None else np.asarray(read_array(data[key]), dtype=np.float64)
        kept["wall_seconds"] = read_float(data["wall_seconds"], func=func, param="wall_seconds", error=FinderError)
        try:
            return cls(**kept)
        except (TypeError, ValueError) as e:  # a hand-edited file: one error naming what is wrong
            if isinstance(e, FinderError):
                raise
            validate.fail(func, "data", f"must hold a saved SearchResult ({e})", sorted(data), FinderError)

    def plot(self, ax: Axes | None = None) -> Figure:
        """The judged value (val loss or metric over the last quarter of the epochs) against the peak lr, log x-axis:
        one line per shape (and weight decay), diverged candidates marked at the top edge, the winner starred and
        labelled. Returns the Figure.

        Example:
            >>> fig = _demo().plot()
            >>> [line.get_label() for line in fig.axes[0].get_lines()]
            ['constant', 'cosine', 'diverged', 'winner: lr=0.01 cosine']
        """
        if ax is None:
            from lrkit.plot import new_figure  # the plotting layer imports matplotlib when it draws

            ax = new_figure().axes[0]
        _draw(self, ax)
        figure = ax.get_figure(root=True)  # root=True: the Figure, never a SubFigure
        if figure is None:
            validate.fail("SearchResult.plot", "ax", "must be drawn on an Axes that belongs to a Figure", ax, FinderError)
        return figure


def final_values(curves: Array, epochs_trained: Array) -> Array:
    """(K, S) each member's value at the last epoch it trained (NaN for a member that trained none).

    Example:
        >>> final_values(np.array([[[3.0, 2.0, np.nan]]]), np.array([[2]])).tolist()
        [[2.0]]
    """
    last = np.clip(epochs_trained - 1, 0, None)[..., None]
    picked = np.take_along_axis(np.asarray(curves, dtype=np.float64), last, axis=-1)[..., 0]
    return np.where(epochs_trained > 0, picked, np.nan)


TAIL = 0.25  # the share of its trained epochs a member is judged on (their mean)


def tail_values(curves: Array, epochs_trained: Array) -> Array:
    """(K, S) each member's mean over the last `TAIL` of the epochs it trained (at least one; NaN for none).

    Example:
        >>> tail_values(np.array([[[9.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0]]]), np.array([[6]])).tolist()
        [[0.5]]
    """
    values = np.asarray(curves, dtype=np.float64)
    trained = np.asarray(epochs_trained)
    window = np.maximum(1, np.round(TAIL * trained)).astype(np.int64)
    epoch = np.arange(values.shape[-1])
    inside = (epoch >= (trained - window)[..., None]) & (epoch < trained[..., None])
    total = np.where(inside, values, 0.0).sum(-1)
    return np.where(trained > 0, total / window, np.nan)


def judge(
    val_loss: Array, metric: Array | None, epochs_trained: Array, diverged: Array, judged_by: str, epochs: int
) -> tuple[Array, int]:  # fmt: skip
    """`(scores, winner)`: each candidate's score and the winning index, by the module's rule.

    Raises `FinderError` when no candidate trained every seed for all `epochs` without diverging.

    Example:
        >>> loss = np.array([[[1.0, 0.5]], [[1.0, np.nan]], [[0.9, 0.3]]])
        >>> scores, winner = judge(loss, None, np.array([[2], [1], [2]]), np.array([[False], [True], [False]]), "val_loss", 2)
        >>> scores.tolist(), winner
        ([0.5, inf, 0.3], 2)
    """
    validate.choice("judge", "judged_by", judged_by, FinderError, JUDGED_BY)
    if judged_by == "metric" and metric is None:
        validate.fail("judge", "metric", "must be given to judge by the metric", metric, FinderError)
    losses = candidate_scores(val_loss, epochs_trained, diverged, worst=math.inf)
    if judged_by == "val_loss" or metric is None:
        scores, keys = losses, losses
    else:
        scores = candidate_scores(metric, epochs_trained, diverged, worst=-math.inf)
        keys = -scores  # higher is better: the lowest key wins
    complete = (epochs_trained >= epochs).all(axis=1) & ~diverged.any(axis=1) & np.isfinite(scores)
    if not complete.any():
        why = "must have one candidate that trained all epochs without diverging (lower the lrs, or check the model)"
        validate.fail("judge", "val_loss", why, f"{int(diverged.any(axis=1).sum())} of {len(scores)} candidates diverged", FinderError)
    order = np.lexsort((np.arange(len(scores)), losses, keys))  # by the judged value, then the loss, then the index
    return scores, int(next(k for k in order if complete[k]))


def candidate_scores(values: Array, epochs_trained: Array, diverged: Array, worst: float) -> Array:
    """(K,) the mean over seeds of the tails; a diverged seed or a non-finite tail makes the candidate `worst`.

    Example:
        >>> curves = np.array([[[2.0, 1.0], [2.0, 3.0]], [[1.0, 0.5], [1.0, np.nan]]])
        >>> candidate_scores(curves, np.array([[2, 2], [2, 1]]), np.array([[False, False], [False, True]]), np.inf).tolist()
        [2.0, inf]
    """
    finals = tail_values(values, epochs_trained)
    finals = np.where(diverged | ~np.isfinite(finals), worst, finals)
    out: Array = finals.mean(axis=1)
    return out


def _grid(func: str, param: str, value: Any, dtype: Any, shape: tuple[int, ...]) -> Array:
    """`value` as a numpy array of `dtype` and exactly `shape` (a clear error otherwise)."""
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        validate.fail(func, param, f"must be a numeric array of shape {shape}", type(value).__name__, FinderError)
    if array.shape != tuple(shape):
        validate.fail(func, param, f"must have shape {tuple(shape)} (candidates, seeds, epochs)", array.shape, FinderError)
    return array


def _read_candidate(func: str, data: Any) -> dict[str, Any]:
    validate.instance(func, "candidates", data, FinderError, dict, f"a list of dicts with keys {list(CANDIDATE_KEYS)}")
    if set(CANDIDATE_KEYS) - set(data):
        validate.fail(func, "candidates", f"must hold dicts with keys {list(CANDIDATE_KEYS)}", sorted(data), FinderError)
    return {"lr": read_float(data["lr"], func=func, param="candidates", error=FinderError), "shape": str(data["shape"]),
            "weight_decay": read_float(data["weight_decay"], func=func, param="candidates", error=FinderError),
            "spec": str(data["spec"])}  # fmt: skip


def _draw(result: SearchResult, ax: Axes) -> None:
    """The U: scores against lr per (shape, weight decay); diverged at the worst edge, halving's dropped hollow, winner starred."""
    scores, cands = result.scores, result.candidates
    lrs = np.array([c["lr"] for c in cands], dtype=np.float64)
    ok, dropped = np.isfinite(scores), result.dropped
    several_decays = len({c["weight_decay"] for c in cands}) > 1
    groups = dict.fromkeys((c["shape"], c["weight_decay"]) for c in cands)
    hollow = "dropped by halving (at its rung)"  # one legend entry for all groups
    for i, (shape, decay) in enumerate(groups):
        member = np.array([(c["shape"], c["weight_decay"]) == (shape, decay) for c in cands]) & ok
        order = np.argsort(lrs[member])
        ax.plot(lrs[member][order], scores[member][order], "o-", color=f"C{i}", ms=4, label=_label(shape, decay, several_decays))
        if (member & dropped).any():
            ax.plot(lrs[member & dropped], scores[member & dropped], "o", mfc="white", color=f"C{i}", ms=7, label=hollow)
            hollow = "_" + hollow
    by_metric = result.judged_by == "metric"
    if (~ok).any():  # no value to draw: marked at the worst edge (the top for a loss, the bottom for a metric), in axes coordinates
        edge = np.full(int((~ok).sum()), 0.0 if by_metric else 1.0)
        ax.plot(lrs[~ok], edge, "x", color="C3", ms=8, clip_on=False, transform=ax.get_xaxis_transform(), label="diverged")
    win, best = cands[result.winner], scores[result.winner]
    name = _label(win["shape"], win["weight_decay"], several_decays)
    ax.plot([result.lr], [best], "*", color="k", ms=16, label=f"winner: lr={result.lr:.3g} {name}")
    ax.annotate(f"{result.lr:.3g}", (result.lr, best), textcoords="offset points", xytext=(6, 8))
    if not by_metric:
        _loss_limits(ax, lrs[ok], scores[ok], result.lr, best)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    what = f"{result.metric_name or 'metric'} (higher is better)" if by_metric else "validation loss"
    ax.set_ylabel(f"{what}, last quarter of the epochs")
    ax.set_title(f"search: {result.optimizer}, {result.epochs} epochs ({result.budget}), mean over {len(result.seeds)} seed(s)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def _label(shape: str, decay: float, several_decays: bool) -> str:
    return f"{shape} wd={decay:g}" if several_decays else shape


def _loss_limits(ax: Axes, lrs: Array, scores: Array, winner_lr: float, best: float) -> None:
    """Keep the U in view: a loss that explodes just before divergence would squash the valley flat.

    The top is a little above the worst loss of the lrs up to the winner's (the untrained level, at the
    smallest lrs); larger losses of larger lrs leave through the top edge.
    """
    level = float(scores[lrs <= winner_lr].max())
    worst = float(scores.max())
    if worst > level:
        pad = 0.1 * (level - best) or 0.1 * abs(level) or 1.0
        ax.set_ylim(top=level + pad)


def _demo() -> SearchResult:
    """A small synthetic search for the examples: 3 candidates x 2 seeds x 4 epochs, the third diverged."""
    nan = math.nan
    loss = [[[1.0, 0.8, 0.6, 0.5], [1.0, 0.8, 0.7, 0.6]], [[0.8, 0.5, 0.3, 0.2], [0.9, 0.6, 0.4, 0.3]],
            [[0.9, 5.0, nan, nan], [0.9, 0.7, 0.6, 0.5]]]  # fmt: skip
    acc = [[[0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.8]], [[0.6, 0.8, 0.9, 0.9], [0.6, 0.8, 0.9, 0.9]],
           [[0.6, 0.1, nan, nan], [0.6, 0.7, 0.8, 0.8]]]  # fmt: skip
    cands = [{"lr": 0.001, "shape": "constant", "weight_decay": 0.0, "spec": "constant(0.001)"},
             {"lr": 0.01, "shape": "cosine", "weight_decay": 0.0, "spec": "cosine(start=0.01, steps=40)"},
             {"lr": 0.1, "shape": "cosine", "weight_decay": 0.0, "spec": "cosine(start=0.1, steps=40)"}]  # fmt: skip
    return SearchResult(cands, [0, 1], np.array(loss), np.array(acc), "accuracy", np.array([[4, 4], [4, 4], [2, 4]]),
                        np.array([[False, False], [False, False], [True, False]]), winner=1, judged_by="metric", epochs=4,
                        steps_per_epoch=10, budget="full", optimizer="sgd(momentum=0.9)", wall_seconds=1.5, member_steps=200)  # fmt: skip
