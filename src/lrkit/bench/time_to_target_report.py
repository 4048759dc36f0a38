"""The time-to-target benchmark's rules, summary, markdown and figure, from `lrkit.bench.time_to_target.run`'s records (pure).

A main cell (one problem) records, per recipe and budget (epochs), the target metric of its final run for every seed
(None: the run diverged) and the wall seconds of everything the recipe ran for that budget (its tuning and its final
runs, over all seeds; measured as one thread's CPU seconds, the wall of an idle core). The rules:

- *target*: the best seed-mean of the constant-lr grid at the full budget (accuracy: highest; regression loss: lowest);
- a budget *reaches* the target when the seed-mean is at least as good (a diverged seed: not reached);
- *steps to target*: the optimizer steps of the smallest budget that reaches it (None: "not reached");
- *wall to target*: the recipe's wall seconds at that budget (None when not reached: inf in the profile);
- the *performance profile* (Dolan and More; AlgoPerf): rho(tau) = the share of problems whose wall to target lies within
  tau times the best recipe's on that problem; its *score* is the area under rho over tau in [1, 4], divided by 3.

Example:
    >>> steps_to_target([0.5, 0.8, 0.9, 0.95], target=0.9, higher_is_better=True)
    2
    >>> profile({"a": [1.0, 4.0], "b": [2.0, 1.0]}, taus=(1.0, 2.0))
    {'a': [0.5, 0.5], 'b': [0.5, 1.0]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONSTANT, NADAMW, ONE_CYCLE, SEARCH = "constant", "nadamw_cosine", "one_cycle", "search"
SCHEDULE_FREE, PRODIGY, SELF_TUNING = "schedulefree_adamw", "prodigy", "self_tuning"
RECIPES = (CONSTANT, NADAMW, ONE_CYCLE, SEARCH, SCHEDULE_FREE, PRODIGY, SELF_TUNING)
LABELS = {CONSTANT: "tuned constant (Adam)", NADAMW: "NAdamW warmup+cosine", ONE_CYCLE: "one-cycle (range test)",
          SEARCH: "search_lr (4 shapes)", SCHEDULE_FREE: "Schedule-Free AdamW", PRODIGY: "Prodigy",
          SELF_TUNING: "SelfTuningLR (Adam)"}  # fmt: skip
LRKIT = (ONE_CYCLE, SEARCH, SELF_TUNING)  # the recipes lrkit itself provides (the goal is about the best of these)
TAU_MAX = 4.0
TAUS = (1.0, 1.5, 2.0, 3.0, 4.0)  # the profile's table columns
GOAL_STEPS = 3.0  # the goal: >= 3x fewer steps than the tuned constant (Smith reports 2.8x on CIFAR-10)
FOLKLORE_LR = 3e-4


# -- the rules --------------------------------------------------------------------------------------
def seed_mean(values: Sequence[float | None]) -> float:
    """The mean over seeds; NaN when any seed diverged (None or non-finite) or there is none.

    Example:
        >>> seed_mean([0.5, 0.7]), seed_mean([0.5, None])
        (0.6, nan)
    """
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return math.nan
    return float(np.mean([float(v) for v in values if v is not None]))


def reaches(value: float, target: float, higher_is_better: bool) -> bool:
    """Whether `value` is at least as good as `target` (NaN never reaches).

    Example:
        >>> reaches(0.9, 0.9, True), reaches(0.2, 0.1, False), reaches(math.nan, 0.1, False)
        (True, False, False)
    """
    return bool(value >= target if higher_is_better else value <= target)


def best_index(means: Sequence[float], higher_is_better: bool) -> int | None:
    """The index of the best finite mean (the first on ties), None when none is finite.

    Example:
        >>> best_index([0.5, math.nan, 0.7], True), best_index([0.5, math.nan, 0.7], False), best_index([math.nan], True)
        (2, 0, None)
    """
    finite = [(v if higher_is_better else -v, -i) for i, v in enumerate(means) if math.isfinite(v)]
    return -max(finite)[1] if finite else None


def steps_to_target(means: Sequence[float], target: float, higher_is_better: bool) -> int | None:
    """The index of the smallest budget whose seed-mean reaches `target` (budgets in increasing order), else None.

    Example:
        >>> steps_to_target([0.3, 0.2, 0.1], target=0.15, higher_is_better=False), steps_to_target([0.3], 0.1, False)
        (2, None)
    """
    return next((i for i, v in enumerate(means) if reaches(v, target, higher_is_better)), None)


def profile(walls: Mapping[str, Sequence[float]], taus: Sequence[float] = TAUS) -> dict[str, list[float]]:
    """The performance profile: per recipe and tau, the share of problems solved within tau times the problem's best wall.

    `walls[recipe][p]` is the wall to target on problem p (inf: not reached). A problem no recipe solved counts as
    unsolved for every recipe.

    Example:
        >>> profile({"a": [1.0, math.inf], "b": [3.0, math.inf]}, taus=(1.0, 3.0))
        {'a': [0.5, 0.5], 'b': [0.0, 0.5]}
    """
    ratios = _ratios(walls)
    return {r: [float(np.mean(q <= tau)) for tau in taus] for r, q in ratios.items()}


def profile_score(walls: Mapping[str, Sequence[float]], tau_max: float = TAU_MAX) -> dict[str, float]:
    """The area under each recipe's profile over tau in [1, tau_max], divided by tau_max - 1 (1: the best everywhere).

    A problem solved at ratio q (q <= tau_max) adds (tau_max - q) / (tau_max - 1), averaged over problems: exact for
    the profile's step function.

    Example:
        >>> profile_score({"a": [1.0, 4.0], "b": [2.0, 1.0]})
        {'a': 0.5, 'b': 0.8333333333333334}
    """
    return {r: float(np.mean(np.clip(tau_max - q, 0.0, None))) / (tau_max - 1.0) for r, q in _ratios(walls).items()}


def _ratios(walls: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """wall / the problem's best wall, per recipe (inf where not reached)."""
    table = np.asarray([list(w) for w in walls.values()], dtype=np.float64)
    best = table.min(axis=0) if table.size else table
    with np.errstate(invalid="ignore"):
        ratios = np.where(np.isfinite(table), table / best, np.inf)
    return dict(zip(walls, ratios))


# -- one problem ------------------------------------------------------------------------------------
def recipe_result(record: dict[str, Any], recipe: str) -> dict[str, Any]:
    """One recipe on one problem: its seed-means per budget, the budget reaching the target, its steps and wall there.

    Example:
        >>> r = recipe_result(_demo(), CONSTANT)
        >>> r["means"], r["epochs"], r["steps"], r["wall"]
        ([0.5, 0.7, 0.8, 0.9], 8, 80, 40.0)
    """
    runs = record["recipes"][recipe]
    means = [seed_mean(b["values"]) for b in runs]
    at = steps_to_target(means, record["target"], record["higher_is_better"])
    epochs = None if at is None else runs[at]["epochs"]
    return {
        "means": means, "epochs": epochs, "steps": None if epochs is None else epochs * record["steps_per_epoch"],
        "wall": None if at is None else float(runs[at]["wall"]), "tuning_wall": None if at is None else runs[at]["tuning_wall"],
        "choice": None if at is None else runs[at]["choice"],
    }  # fmt: skip


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per problem and recipe the steps and wall to target and their ratios to the tuned constant; the profile; the goal; the folklore.

    Example:
        >>> s = summarize([_demo()])
        >>> s["problems"]["demo"][ONE_CYCLE]["step_ratio"], s["score"][ONE_CYCLE], s["goal"]["met"]
        (4.0, 1.0, True)
    """
    mains = [r for r in records if r["kind"] == "main"]
    recipes = [r for r in RECIPES if mains and all(r in m["recipes"] for m in mains)]
    problems: dict[str, dict[str, Any]] = {}
    for rec in mains:
        rows = {r: recipe_result(rec, r) for r in recipes}
        base = rows.get(CONSTANT)
        for row in rows.values():
            row["step_ratio"] = _ratio(base["steps"] if base else None, row["steps"])
            row["wall_ratio"] = _ratio(row["wall"], base["wall"] if base else None)
        problems[rec["problem"]] = rows
    walls = _walls(problems, recipes)
    summary: dict[str, Any] = {"problems": problems, "recipes": recipes, "profile": profile(walls) if walls else {},
                               "score": profile_score(walls) if walls else {}}  # fmt: skip
    summary["goal"] = goal(summary)
    summary["folklore"] = [folklore(r) for r in records if "grid" in r]
    return summary


def _walls(problems: dict[str, dict[str, Any]], recipes: Sequence[str]) -> dict[str, list[float]]:
    """Per recipe its seconds to target on every problem, inf where it did not reach the target (the profile's input)."""
    return {r: [math.inf if problems[p][r]["wall"] is None else problems[p][r]["wall"] for p in problems] for r in recipes}


def _ratio(top: float | None, bottom: float | None) -> float | None:
    """top / bottom; None when either is missing or not finite (not reached)."""
    if top is None or bottom is None or not (math.isfinite(top) and math.isfinite(bottom)) or bottom == 0:
        return None
    return float(top / bottom)


def goal(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's goal for lrkit's best recipe (the highest profile score of `LRKIT`): >= 3x fewer steps than the tuned
    constant on every problem, and the highest profile score of all recipes.

    Example:
        >>> g = goal(summarize([_demo()]))
        >>> g["recipe"], g["steps_met"], g["profile_met"], g["worst_step_ratio"]
        ('one_cycle', True, True, 4.0)
    """
    score = summary["score"]
    ours = [r for r in LRKIT if r in score]
    if not ours or CONSTANT not in score:
        return {"recipe": None, "steps_met": False, "profile_met": False, "met": False, "worst_step_ratio": None}
    best = max(ours, key=lambda r: (score[r], -_total_steps(summary, r)))
    ratios = [summary["problems"][p][best]["step_ratio"] for p in summary["problems"]]
    worst = None if any(q is None for q in ratios) else min(ratios)
    steps_met = worst is not None and worst >= GOAL_STEPS
    profile_met = score[best] >= max(score.values())
    return {"recipe": best, "steps_met": steps_met, "profile_met": profile_met, "met": steps_met and profile_met,
            "worst_step_ratio": worst, "score": score[best], "best_score": max(score.values())}  # fmt: skip


def _total_steps(summary: dict[str, Any], recipe: str) -> float:
    steps = [summary["problems"][p][recipe]["steps"] for p in summary["problems"]]
    return math.inf if any(s is None for s in steps) else float(sum(steps))


# -- the folklore: is 3e-4 Adam's best lr? ----------------------------------------------------------
def folklore(record: dict[str, Any]) -> dict[str, Any]:
    """Adam's best grid lr against 3e-4 on one problem, by the final test loss and (classification) by accuracy.

    loss regret = mean loss at 3e-4 / the best mean loss - 1; accuracy regret = best mean accuracy - mean accuracy at 3e-4.

    Example:
        >>> f = folklore({"problem": "p", "grid": {"lrs": [1e-4, 3e-4, 1e-3], "epochs": 4, "loss": [[1.0], [0.6], [0.5]],
        ...               "acc": [[0.5], [0.8], [0.82]]}})
        >>> f["best_lr_loss"], round(f["loss_regret"], 3), f["best_lr_acc"], round(f["acc_regret"], 3)
        (0.001, 0.2, 0.001, 0.02)
    """
    grid = record["grid"]
    lrs = [float(lr) for lr in grid["lrs"]]
    at = lrs.index(FOLKLORE_LR)
    loss = [seed_mean(v) for v in grid["loss"]]
    acc = [seed_mean(v) for v in grid["acc"]] if grid.get("acc") is not None else None
    out: dict[str, Any] = {"problem": record["problem"], "epochs": grid["epochs"], "lrs": lrs}
    i = best_index(loss, higher_is_better=False)
    out |= {"best_lr_loss": None if i is None else lrs[i], "best_loss": None if i is None else loss[i], "loss_at": loss[at],
            "loss_regret": loss[at] / loss[i] - 1.0 if i is not None else math.nan}  # fmt: skip
    j = best_index(acc, higher_is_better=True) if acc is not None else None
    if acc is None or j is None:
        return out | {"best_lr_acc": None, "best_acc": None, "acc_at": None if acc is None else acc[at], "acc_regret": None}
    return out | {"best_lr_acc": lrs[j], "best_acc": acc[j], "acc_at": acc[at], "acc_regret": acc[j] - acc[at]}


# -- markdown and the figure --------------------------------------------------------------------------
def _num(value: float | None, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else format(value, fmt)


def table(report: dict[str, Any]) -> str:
    """Markdown: per problem the recipes' steps and wall to target; the profile; the goal; the folklore.

    Example:
        >>> text = table({"cells": [_demo()], "summary": summarize([_demo()])})
        >>> print([line for line in text.splitlines() if line.startswith("| one-cycle")][0])
        | one-cycle (range test) | 0.8 / 0.9 / 0.9 / 0.9 | 2 (20) | 4x | 2.0 | 1.0 | 0.05 | lr=0.01 |
    """
    s, lines = report["summary"], _preamble(report)
    for rec in (r for r in report["cells"] if r["kind"] == "main"):
        lines += [*_problem_rows(rec, s["problems"][rec["problem"]]), ""]
    lines += [*_profile_rows(s), "", *_goal_lines(s["goal"])]
    if s["folklore"]:
        lines += ["", *_folklore_rows(s["folklore"])]
    return "\n".join(lines)


RECIPE_NOTES = {
    CONSTANT: "Adam at each constant lr of the grid; at each budget the grid's best lr there (its tuning: the grid's other runs)",
    NADAMW: "AlgoPerf's baseline: NAdamW (decoupled weight decay 0.01), 5% linear warm-up, cosine to 0; its peak tuned at each "
            "budget on its own grid (its tuning: the other peaks' runs)",
    ONE_CYCLE: "Smith's one-cycle on Adam between the bounds of lrkit.find_lr (one range test per seed, counted)",
    SEARCH: "lrkit.search_lr, shapes constant, cosine, one_cycle, wsd over the grid's lrs, run at each budget from its own "
            "seed (counted), its winner replayed on the seeds",
    SCHEDULE_FREE: "schedulefree.AdamWScheduleFree, the package's defaults (lr 0.0025), evaluated in eval() mode",
    PRODIGY: "prodigyopt.Prodigy, the package's defaults (lr 1.0)",
    SELF_TUNING: "lrkit.SelfTuningLR (multiplicative hypergradient) over Adam from lr 1e-3",
}  # fmt: skip


def _preamble(report: dict[str, Any]) -> list[str]:
    config = report.get("config", {})
    grid = ", ".join(f"{lr:g}" for lr in config.get("grid", ()))
    lines = ["Every recipe trains at budgets of 1/8, 1/4, 1/2 and 1 of the full budget (a schedule sized to each), from every "
             "seed, on the lab problem's own split (its test split is the validation split, as in the lab). Target: the best "
             f"seed-mean final test metric of Adam over the constant lrs {grid} at the full budget (accuracy; MSE for "
             "regression). Steps to target: the optimizer steps of the smallest budget whose seed-mean reaches it. Seconds: "
             "one thread's CPU seconds (the wall of an idle core) of everything the recipe ran for that budget, all seeds: "
             "its tuning and its final runs (the updates are timed, the evaluations, the same for all, are not).", ""]  # fmt: skip
    return lines + [f"- {LABELS[r]}: {RECIPE_NOTES[r]}" for r in RECIPES if r in report["summary"]["recipes"]] + [""]


def _problem_rows(rec: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[str]:
    metric = rec["metric"]
    budgets = ", ".join(str(b) for b in rec["budgets"])
    head = [f"### {rec['problem']}: target {metric} {_num(rec['target'], '.4g')} (the constant grid's best at {rec['budgets'][-1]} "
            f"epochs, lr {rec['target_lr']:g}); budgets {budgets} epochs of {rec['steps_per_epoch']} steps; seeds "
            f"{', '.join(map(str, rec['seeds']))}", "",
            f"| recipe | seed-mean {metric} per budget | epochs (steps) to target | fewer steps than constant | "
            "seconds to target | of it tuning | seconds / constant's | final choice |", "|---" * 8 + "|"]  # fmt: skip
    for name, row in rows.items():
        means = " / ".join(_num(v, ".4g") for v in row["means"])
        reached = "not reached" if row["epochs"] is None else f"{row['epochs']} ({row['steps']})"
        step_ratio = "-" if row["step_ratio"] is None else f"{row['step_ratio']:.3g}x"
        cells = [LABELS[name], means, reached, step_ratio, _num(row["wall"], ".1f"), _num(row["tuning_wall"], ".1f"),
                 _num(row["wall_ratio"], ".2f"), row["choice"] or "-"]  # fmt: skip
        head.append("| " + " | ".join(cells) + " |")
    return head


def _profile_rows(s: dict[str, Any]) -> list[str]:
    taus = " | ".join(f"tau={t:g}" for t in TAUS)
    lines = [f"Performance profile over the seconds to target, tuning included ({len(s['problems'])} problems): the share of "
             "problems each recipe solves within tau x the fastest recipe's seconds; score = area under the profile over "
             "tau in [1, 4] / 3.", "", f"| recipe | {taus} | score |", "|---" * (len(TAUS) + 2) + "|"]  # fmt: skip
    for name in sorted(s["profile"], key=lambda r: -s["score"][r]):
        shares = " | ".join(f"{v:.2f}" for v in s["profile"][name])
        lines.append(f"| {LABELS[name]} | {shares} | {s['score'][name]:.3f} |")
    return lines


def _goal_lines(g: dict[str, Any]) -> list[str]:
    if g["recipe"] is None:
        return ["Goal: not measured (needs the tuned constant and an lrkit recipe)."]
    worst = "not reached on some problem" if g["worst_step_ratio"] is None else f"{g['worst_step_ratio']:.3g}x"
    return [f"Goal (lrkit's best recipe, by profile score: {LABELS[g['recipe']]}):",
            f"- >= {GOAL_STEPS:g}x fewer steps to target than the tuned constant on every problem: "
            f"{'met' if g['steps_met'] else 'not met'} (worst problem: {worst})",
            f"- wins the wall-time profile, tuning included: {'met' if g['profile_met'] else 'not met'} "
            f"(score {g['score']:.3f}, best of all recipes {g['best_score']:.3f})",
            f"- goal: {'MET' if g['met'] else 'NOT MET'}"]  # fmt: skip


def _folklore_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["Folklore: is 3e-4 the best lr for Adam? Adam's constant-lr grid "
             f"({', '.join(f'{lr:g}' for lr in rows[0]['lrs'])}), seed-means of the final test metrics.", "",
             "| problem | epochs | best lr by loss | loss there | loss at 3e-4 | loss regret of 3e-4 | best lr by accuracy | "
             "accuracy there | accuracy at 3e-4 | accuracy lost at 3e-4 |", "|---" * 10 + "|"]  # fmt: skip
    for f in rows:
        regret = "-" if not math.isfinite(f["loss_regret"]) else f"{100 * f['loss_regret']:.1f}%"
        lost = "-" if f["acc_regret"] is None else f"{100 * f['acc_regret']:.1f} pts"
        cells = [f["problem"], str(f["epochs"]), _num(f["best_lr_loss"], "g"), _num(f["best_loss"], ".4g"), _num(f["loss_at"], ".4g"),
                 regret, _num(f["best_lr_acc"], "g"), _num(f["best_acc"], ".4f"), _num(f["acc_at"], ".4f"), lost]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    best = [f["best_lr_loss"] for f in rows if f["best_lr_loss"] is not None]
    by_acc = [f["best_lr_acc"] for f in rows if f["best_lr_acc"] is not None]
    ratio = float(np.exp(np.mean(np.log(np.asarray(best) / FOLKLORE_LR)))) if best else math.nan
    lines += ["", f"3e-4 is Adam's best lr by loss on {best.count(FOLKLORE_LR)} of {len(best)} problems, by accuracy on "
              f"{by_acc.count(FOLKLORE_LR)} of {len(by_acc)}; geometric mean of the best lr (by loss) / 3e-4: {ratio:.3g}x; "
              f"median loss regret of 3e-4: {100 * float(np.median([f['loss_regret'] for f in rows])):.1f}%."]  # fmt: skip
    return lines


def figure(report: dict[str, Any]) -> Figure:
    """The performance profile over the wall seconds to target: one step curve per recipe, tau from 1 to 4.

    Example:
        >>> fig = figure({"summary": summarize([_demo()])})
        >>> len(fig.axes[0].lines)
        7
    """
    from lrkit.plot import new_figure

    s = report["summary"]
    fig = new_figure(1, size=(9.6, 4.2))  # constrained layout keeps room for the legend outside the axes
    ax = fig.axes[0]
    taus = [float(t) for t in np.linspace(1.0, TAU_MAX, 301)]
    walls = _walls(s["problems"], s["recipes"])
    shares_by = profile(walls, taus) if walls else {}
    for i, name in enumerate(sorted(s["profile"], key=lambda r: -s["score"][r])):
        shares = shares_by[name]
        ax.step(taus, shares, where="post", color=f"C{i}", lw=2 if name in LRKIT else 1.2,
                ls="-" if name in LRKIT else "--", label=f"{LABELS[name]} ({s['score'][name]:.2f})")  # fmt: skip
    ax.set_xlabel("tau (seconds to target / the fastest recipe's, tuning included)")
    ax.set_ylabel("share of problems solved")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(1.0, TAU_MAX)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title="recipe (profile score)", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def _demo() -> dict[str, Any]:
    """A synthetic problem: target 0.9; the constant reaches it at 8 epochs, one-cycle at 2, the rest never."""

    def runs(means: Sequence[float], walls: Sequence[float], choice: str = "lr=0.01") -> list[dict[str, Any]]:
        return [{"epochs": e, "values": [m, m], "wall": w, "tuning_wall": w / 2, "choice": choice}
                for e, m, w in zip((1, 2, 4, 8), means, walls)]  # fmt: skip

    recipes = {r: runs([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 4.0, 8.0]) for r in RECIPES}
    recipes[CONSTANT] = runs([0.5, 0.7, 0.8, 0.9], [5.0, 10.0, 20.0, 40.0])
    recipes[ONE_CYCLE] = runs([0.8, 0.9, 0.9, 0.9], [1.0, 2.0, 4.0, 8.0])
    return {"kind": "main", "problem": "demo", "metric": "accuracy", "higher_is_better": True, "budgets": [1, 2, 4, 8],
            "steps_per_epoch": 10, "seeds": [0, 1], "target": 0.9, "target_lr": 0.01, "recipes": recipes}  # fmt: skip
