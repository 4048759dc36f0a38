"""The lr-free comparison's figures and its markdown report (`lr-free-report.md`, PNGs beside it, `lr-free.json`).

Per problem: the test loss over epochs per optimizer (mean ± std over seeds, evaluated in
Schedule-Free's eval mode), and the effective lr over steps (seed 0) with Schedule-Free's
averaging weight beside it.

Example:
    >>> from lrkit.lab.lrfree import compare_lr_free
    >>> r = compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["prodigy", "adamw_schedulefree"])
    >>> sorted(figures(r))
    ['effective-lr-blobs', 'test-loss-blobs']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lrkit.lab.lrfree_result import LRFreeResult
from lrkit.lab.report import _band
from lrkit.plot import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "lr-free"


def plot_test_loss(result: LRFreeResult, problem: str) -> Figure:
    """Test loss against epochs on `problem`, one line (mean over seeds, ± std band) per optimizer.

    Example:
        >>> from lrkit.lab.lrfree import compare_lr_free
        >>> fig = plot_test_loss(compare_lr_free(["blobs"], seeds=2, epochs=2, optimizers=["dog"]), "blobs")
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['dog']
    """
    fig = new_figure(size=(7.0, 4.2))
    ax = fig.axes[0]
    for k, (name, grid) in enumerate(result.curves(problem, "test_loss").items()):
        _band(ax, grid, _label(result, problem, name), f"C{k % 10}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test loss")
    ax.set_title(f"{problem}: test loss (mean ± std over {result.spec['seeds']} seeds)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def plot_effective_lr(result: LRFreeResult, problem: str) -> Figure:
    """The effective lr against optimizer steps (seed 0) per optimizer; Schedule-Free's averaging weight on a second axis.

    Example:
        >>> from lrkit.lab.lrfree import compare_lr_free
        >>> fig = plot_effective_lr(compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["sgd_schedulefree"]), "blobs")
        >>> fig.axes[1].get_ylabel()
        'averaging weight c'
    """
    fig = new_figure(2, size=(5.6, 4.2))
    lr_ax, weight_ax = fig.axes
    for k, name in enumerate(result.spec["optimizers"]):
        runs = result.runs_of(problem, name)
        if not runs:
            continue
        steps = runs[0].steps
        lr_ax.plot(np.arange(1, len(steps["effective_lr"]) + 1), steps["effective_lr"], color=f"C{k % 10}", label=name)
        if "averaging_weight" in steps:
            weight_ax.plot(np.arange(1, len(steps["averaging_weight"]) + 1), steps["averaging_weight"], color=f"C{k % 10}", label=name)
    for ax, title in ((lr_ax, "effective lr (d·lr, DoG's η, scheduled lr)"), (weight_ax, "averaging weight c")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="x-small")
    lr_ax.set_title(f"{problem}: the lr each step applied (seed 0)", fontsize="medium")
    weight_ax.set_title("Schedule-Free: weight of the new z in x", fontsize="medium")
    return fig


def _label(result: LRFreeResult, problem: str, name: str) -> str:
    tuning = result.tuning(problem, name)
    return f"{name} (tuned lr {tuning.chosen:g})" if tuning else name


def _stem(problem: str) -> str:
    """A problem's name as a file-name part: a user's "pkg.module:function" keeps letters, digits, '_' and '.'."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in problem)


def figures(result: LRFreeResult) -> dict[str, Figure]:
    """Every figure of the report by file stem: test loss and effective lr for each problem.

    Example:
        >>> from lrkit.lab.lrfree import compare_lr_free
        >>> len(figures(compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["dog"])))
        2
    """
    figs: dict[str, Figure] = {}
    for problem in result.spec["problems"]:
        figs[f"test-loss-{_stem(problem)}"] = plot_test_loss(result, problem)
        figs[f"effective-lr-{_stem(problem)}"] = plot_effective_lr(result, problem)
    return figs


def save(result: LRFreeResult, out: Path) -> list[Path]:
    """Write `lr-free.json`, `lr-free-*.png` and `lr-free-report.md` into `out`; return the paths.

    Example:
        >>> import tempfile
        >>> from lrkit.lab.lrfree import compare_lr_free
        >>> [p.name for p in save(compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["dog"]), Path(tempfile.mkdtemp()))][-1]
        'lr-free-report.md'
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{NAME}.json"]
    result.to_json(written[0])
    for stem, fig in figures(result).items():
        path = out / f"{NAME}-{stem}.png"
        fig.savefig(path, dpi=90)
        written.append(path)
    report = out / f"{NAME}-report.md"
    report.write_text(markdown(result, [p.name for p in written[1:]]), encoding="utf-8")
    return [*written, report]


_COLUMNS = (("optimizer", "optimizer"), ("lr", "lr setting"), ("tuned_by", "lr tuned by"), ("diverged", "diverged"),
            ("test_loss", "test loss"), ("test_acc", "test acc"), ("train_loss", "train loss"),
            ("final_effective_lr", "final effective lr"), ("wall_s", "s / plain run"), ("tuning_wall_s", "tuning s"))  # fmt: skip


def _cell(row: dict[str, object], key: str) -> str:
    value = row[key]
    if key in ("test_loss", "test_acc", "train_loss"):
        mean, std = float(row[key]), float(row[f"{key}_std"])  # type: ignore[arg-type]
        return "–" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown(result: LRFreeResult, images: list[str]) -> str:
    """The report's markdown: what was run and how, one table per problem, the figures.

    Example:
        >>> from lrkit.lab.lrfree import compare_lr_free
        >>> "| dog |" in markdown(compare_lr_free(["blobs"], seeds=1, epochs=1, optimizers=["dog"]), [])
        True
    """
    spec, rows = result.spec, result.summary()
    lines = [
        "# lrkit study lr-free", "",
        f"Problems {', '.join(spec['problems'])}; {spec['seeds']} seeds; epochs {spec['epochs']}; device {spec['device']}.", "",
        "Every row is a **plain** torch training loop per seed (the optimizer as its own package ships it), timed: "
        "`s / plain run` is the wall seconds of one run's loop (evaluations included). The baselines' constant lr is the "
        "best of a grid by mean final **test** loss (which favours the baselines): SGD-momentum and Adam tuned in one batched "
        "lrkit population (`tuning s` is that whole population), NAdamW in plain runs. The learning-rate-free optimizers run at "
        "their packages' defaults. Test metrics are a full pass after each epoch, Schedule-Free in `eval()` mode; train metrics "
        "are running means over the epoch's minibatches. `final effective lr` is the lr the last step applied: d·lr (Prodigy, "
        "D-Adapt Adam), d·lr/‖g₀‖ (D-Adapt SGD), η (DoG; LDoG: median over layers), the scheduled lr (Schedule-Free).", "",
    ]  # fmt: skip
    for problem in spec["problems"]:
        lines += [f"## {problem}", "", "| " + " | ".join(title for _, title in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(_cell(r, key) for key, _ in _COLUMNS) + " |" for r in rows if r["problem"] == problem]
        lines += ["", *_train_mode_lines(result, problem), ""]
        lines += [f"![{stem}]({stem})" for stem in images if stem.endswith(f"-{_stem(problem)}.png")] + [""]
    return "\n".join(lines)


def _train_mode_lines(result: LRFreeResult, problem: str) -> list[str]:
    """What a Schedule-Free run would report if evaluated in train mode (the usual mistake), next to its eval-mode figure."""
    lines = []
    for name, grid in result.curves(problem, "test_loss_train_mode").items():
        if np.isnan(grid).all():
            continue
        eval_mode = result.curves(problem, "test_loss")[name]
        wrong, right = float(np.nanmean(grid[:, -1])), float(np.nanmean(eval_mode[:, -1]))
        lines.append(f"- {name}: final test loss {right:.4f} in `eval()` mode (reported above); {wrong:.4f} if evaluated in train mode.")
    return lines
