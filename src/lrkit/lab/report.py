"""A study's figures (the classic tutorial plots, with a band over seeds) and its self-contained HTML report.

The report reads a study's result through `StudyData` (what it needs of one), so it
never imports `lrkit.lab.results`: the result calls into the report, not back.

Example:
    >>> from lrkit.lab.runner import study
    >>> r = study("lr", values=[0.1, 1e-4], seeds=2, epochs=3)
    >>> [len(plot_curves(r).axes), len(plot_sensitivity(r).axes)]
    [2, 1]
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import LabError
from lrkit.lab.studies import STUDIES
from lrkit.plot import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class StudyData(Protocol):
    """What the report reads of a study's result; `lrkit.lab.StudyResult` is one.

    Example:
        >>> from lrkit.lab.runner import study
        >>> r: StudyData = study("lr", values=[0.1], seeds=1, epochs=1)
        >>> r.spec["study"], r.values, r.curves("test_loss")["0.1"].shape
        ('lr', ['0.1'], (1, 1))
    """

    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def table(self) -> dict[str, npt.NDArray[Any]]: ...

    @property
    def values(self) -> list[str]: ...

    def curves(self, metric: str) -> dict[str, npt.NDArray[np.float64]]: ...

    def final(self) -> dict[str, npt.NDArray[Any]]: ...

    def capped_final_loss(self) -> npt.NDArray[np.float64]: ...

    def summary(self, threshold: float = 0.75) -> list[dict[str, Any]]: ...


TITLES = {"train_loss": "train loss", "test_loss": "test loss", "train_acc": "train accuracy", "test_acc": "test accuracy",
          "lr": "learning rate", "momentum": "momentum"}  # fmt: skip


def _grid(n: int) -> Figure:
    ncols = min(n, 4)
    fig = new_figure(ncols, math.ceil(n / ncols), size=(3.6, 2.8))
    for ax in fig.axes[n:]:
        ax.set_visible(False)
    return fig


def _band(ax: Axes, grid: np.ndarray, label: str, color: str) -> None:
    """Mean over seeds as a line, ± one standard deviation as a band (seeds that diverged drop out)."""
    import warnings

    epochs = np.arange(1, grid.shape[1] + 1)
    with warnings.catch_warnings():  # an epoch where every seed diverged is all-NaN: no line there, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(grid, axis=0), np.nanstd(grid, axis=0)
    ax.plot(epochs, mean, color=color, label=label)
    ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.25, linewidth=0)


def plot_curves(result: StudyData, metric: str = "acc") -> Figure:
    """One subplot per value with train and test `metric` ("acc" or "loss") over epochs, mean ± std over seeds.

    Example:
        >>> from lrkit.lab.runner import study
        >>> fig = plot_curves(study("momentum", values=[0.0, 0.9], seeds=2, epochs=2), "loss")
        >>> [ax.get_title() for ax in fig.axes]
        ['momentum=0', 'momentum=0.9']
    """
    validate.choice("plot_curves", "metric", metric, LabError, ("acc", "loss"))
    train, test = result.curves(f"train_{metric}"), result.curves(f"test_{metric}")
    fig = _grid(len(result.values))
    for ax, label in zip(fig.axes, result.values):
        _band(ax, train[label], "train", "C0")
        _band(ax, test[label], "test", "C1")
        ax.set_title(f"{result.spec['study']}={label}", fontsize="medium")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if metric == "acc":
            ax.set_ylim(0, 1.02)
    fig.axes[0].set_ylabel(TITLES[f"test_{metric}"].replace("test ", ""))
    fig.axes[0].legend(fontsize="small")
    return fig


def plot_per_value(result: StudyData, column: str) -> Figure:
    """One subplot per value: `column` over epochs, one thin line per seed and the mean in bold.

    Example:
        >>> from lrkit.lab.runner import study
        >>> fig = plot_per_value(study("patience", values=[2, 5], seeds=1, epochs=3), "lr")
        >>> fig.axes[0].get_ylabel()
        'learning rate'
    """
    validate.choice("plot_per_value", "column", column, LabError, list(TITLES))
    fig = _grid(len(result.values))
    for ax, (label, grid) in zip(fig.axes, result.curves(column).items()):
        epochs = np.arange(1, grid.shape[1] + 1)
        for row in grid:
            ax.plot(epochs, row, color="C0", alpha=0.3, linewidth=0.8)
        ax.plot(epochs, np.nanmean(grid, axis=0) if np.isfinite(grid).any() else grid[0], color="C0", linewidth=2)
        ax.set_title(f"{result.spec['study']}={label}", fontsize="medium")
        ax.set_xlabel("epoch")
        if column == "lr" and np.nanmin(grid) > 0 and np.nanmax(grid) > 50 * np.nanmin(grid):  # log only where lrs span decades
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.axes[0].set_ylabel(TITLES[column])
    return fig


def plot_sensitivity(result: StudyData) -> Figure:
    """Final test loss against the value (log x for positive values, else linear or categorical), mean ± std over seeds.

    A diverged member counts at its initial test loss, so a U over the lr stays visible.

    Example:
        >>> from lrkit.lab.runner import study
        >>> plot_sensitivity(study("lr", values=[1.0, 0.01], seeds=2, epochs=2)).axes[0].get_xscale()
        'log'
    """
    final, loss = result.final(), result.capped_final_loss()
    labels = result.values
    means = [np.nanmean(loss[final["value"] == v]) if np.isfinite(loss[final["value"] == v]).any() else np.nan for v in labels]
    stds = [np.nanstd(loss[final["value"] == v]) if np.isfinite(loss[final["value"] == v]).any() else np.nan for v in labels]
    fig = new_figure()
    ax = fig.axes[0]
    axis = result.spec.get("axis", "category")
    x: list[float] = list(range(len(labels)))
    if axis in ("log", "linear"):
        x = [float(v) for v in labels]
    ax.errorbar(x, means, yerr=stds, marker="o", capsize=4)
    if axis == "log" and min(x) > 0:
        ax.set_xscale("log")
    if axis == "category":
        ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_xlabel(result.spec.get("what", result.spec["study"]))
    ax.set_ylabel("final test loss (diverged: initial loss)")
    ax.set_title(f"{result.spec['study']} sensitivity on {result.spec.get('problem', '')}")
    ax.grid(alpha=0.3)
    return fig


def plot_averaging(result: StudyData) -> Figure:
    """The swa study's figure: final test loss and accuracy against the lr, one line per arm (mean ± std over seeds).

    Example:
        >>> from lrkit.lab.runner import study
        >>> r = study("swa", values=["none@x1", "swa@x1", "swa@x3"], seeds=1, epochs=4)
        >>> [t.get_text() for t in plot_averaging(r).axes[0].get_legend().get_texts()]
        ['none', 'swa']
    """
    from lrkit.lab.averaging import split_arm

    final, loss = result.final(), result.capped_final_loss()
    arms = {split_arm(v)[0]: None for v in result.values}
    lrs = list(dict.fromkeys(split_arm(v)[1] for v in result.values))  # in the order given: absolute and relative lrs may mix
    panels = [("final test loss (diverged: initial loss)", loss)]
    if result.spec.get("task") != "regression":
        panels.append(("final test accuracy", np.asarray(final["test_acc"], dtype=np.float64)))
    fig = new_figure(len(panels), size=(4.2, 3.2))
    for ax, (title, metric) in zip(fig.axes, panels):
        for arm in arms:
            xs = [k for k, lr in enumerate(lrs) if f"{arm}@{lr}" in result.values]
            seeds = [metric[final["value"] == f"{arm}@{lrs[k]}"] for k in xs]
            seeds = [x[np.isfinite(x)] for x in seeds]  # an arm whose seeds all diverged has no point there
            means, stds = [x.mean() if len(x) else np.nan for x in seeds], [x.std() if len(x) else np.nan for x in seeds]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=arm)
        ax.set_xticks(range(len(lrs)), lrs)
        ax.set_xlabel("lr (xK: K times the problem's lr)")
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    return fig


def figures(result: StudyData) -> dict[str, Figure]:
    """The study's figures by file stem: the classic ones for its kind plus the sensitivity curve.

    Example:
        >>> from lrkit.lab.runner import study
        >>> sorted(figures(study("patience", values=[2], seeds=1, epochs=2)))
        ['curves', 'loss', 'lr', 'sensitivity']
    """
    figs = {"curves": plot_curves(result, "acc"), "loss": plot_curves(result, "loss"), "sensitivity": plot_sensitivity(result)}
    definition = STUDIES.get(result.spec["study"])
    if definition is not None and definition.lr_varies:
        figs["lr"] = plot_per_value(result, "lr")
    if result.spec["study"] == "swa":
        figs["averaging"] = plot_averaging(result)
    if result.spec.get("task") == "regression":
        del figs["curves"]
    return figs


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def save(result: StudyData, out: Path) -> list[Path]:
    """Write `{study}-*.png`, `{study}-records.csv`, `{study}-final.csv` and `{study}-report.html` into `out`.

    Example:
        >>> import tempfile
        >>> from lrkit.lab.runner import study
        >>> [p.name for p in save(study("lr", values=[0.1], seeds=1, epochs=2), Path(tempfile.mkdtemp()))][-1]
        'lr-report.html'
    """
    out.mkdir(parents=True, exist_ok=True)
    name = result.spec["study"]
    written, images = [], {}
    for stem, fig in figures(result).items():
        images[stem] = _png(fig)
        path = out / f"{name}-{stem}.png"
        path.write_bytes(images[stem])
        written.append(path)
    summary = result.summary()
    written.append(_csv(out / f"{name}-final.csv", summary))
    columns = result.table
    written.append(_csv(out / f"{name}-records.csv", [dict(zip(columns, row)) for row in zip(*columns.values())]))
    report = out / f"{name}-report.html"
    report.write_text(_html(result, summary, images), encoding="utf-8")
    written.append(report)
    return written


def _csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _html(result: StudyData, summary: list[dict[str, Any]], images: dict[str, bytes]) -> str:
    spec = result.spec
    head = "".join(f"<th>{html.escape(k)}</th>" for k in summary[0]) if summary else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>" for row in summary)
    imgs = "".join(
        f'<figure><img alt="{stem}" src="data:image/png;base64,{base64.b64encode(png).decode()}"><figcaption>{stem}</figcaption></figure>'
        for stem, png in images.items()
    )
    facts = ", ".join(f"{k}={html.escape(str(v))}" for k, v in spec.items() if k != "values")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lrkit study: {html.escape(spec["study"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
img{{max-width:100%}}figure{{margin:1.5em 0}}</style></head><body>
<h1>lrkit study: {html.escape(spec["study"])} on {html.escape(str(spec.get("problem", "")))}</h1>
<p>{facts}</p><p>Values: {html.escape(", ".join(result.values))}. Curves are the mean over seeds with a ± one standard deviation band;
train metrics are running means over each epoch's minibatches, test metrics a full pass after the epoch.
A diverged member counts at its initial test loss in the sensitivity curve.</p>
<h2>Final figures</h2><table><tr>{head}</tr>{body}</table>
<h2>Figures</h2>{imgs}
</body></html>
"""
