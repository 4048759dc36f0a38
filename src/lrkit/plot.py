"""Figures. matplotlib is imported here only, lazily; every function returns a Figure
(built without pyplot, so nothing is shown and no global state is touched)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit.analysis import suggest
from lrkit.errors import FinderError, ScheduleError
from lrkit.schedules.base import Schedule

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lrkit.finder_result import LRFinderResult


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (6.4, 4.0)) -> Figure:
    """A fresh Figure with an Agg canvas, not registered with pyplot.

    Example:
        >>> fig = new_figure(2)
        >>> len(fig.axes)
        2
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    fig.subplots(nrows, ncols, squeeze=False)
    return fig


def plot_schedule(
    schedules: Schedule | Sequence[Schedule],
    steps: int,
    *,
    labels: Sequence[str] | None = None,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """Draw one or several schedules over `steps` optimizer steps on one axis.

    Example:
        >>> import lrkit
        >>> fig = lrkit.plot_schedule([lrkit.cosine(start=0.1, steps=100), lrkit.constant(0.05)], 100, labels=["cos", "c"])
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['cos', 'c']
    """
    items = [schedules] if isinstance(schedules, Schedule) else list(schedules)
    if not items or not all(isinstance(s, Schedule) for s in items):
        validate.wrong_type("plot_schedule", "schedules", "must be a schedule or a non-empty list of schedules", schedules, ScheduleError)
    validate.integer("plot_schedule", "steps", steps, ScheduleError)
    names = list(labels) if labels is not None else [repr(s) for s in items]
    validate.length("plot_schedule", "labels", names, ScheduleError, len(items), "one label per schedule")
    fig = new_figure()
    ax = fig.axes[0]
    t = np.arange(steps)
    for s, name in zip(items, names):
        ax.plot(t, s.values(t), label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_range_test(result: LRFinderResult, title: str | None = None) -> Figure:
    """A range test's signal against the lr: raw (grey), EMA-smoothed (blue), lag-free (dotted); suggestions and bounds marked.

    Example:
        >>> import numpy as np
        >>> from lrkit.finder_result import LRFinderResult
        >>> lrs = np.logspace(-4, 0, 40).tolist()
        >>> r = LRFinderResult.from_curve(lrs, (np.tanh(-np.log10(lrs) - 2.0) + 2).tolist(), stop_reason="completed")
        >>> [line.get_label() for line in plot_range_test(r).axes[0].get_lines()][:3]
        ['raw', 'EMA', 'lag-free']
    """
    fig = new_figure()
    ax = fig.axes[0]
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="raw")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=1.8, label="EMA")
    if result.has_curve():
        x, y = suggest.finite_prefix(result.lrs, result.losses)
        ax.plot(x, suggest.smooth_centred(y), color="k", lw=1.0, ls=":", label="lag-free")
    for i, (name, lr) in enumerate(result.suggestions.items()):
        if lr is not None:
            main = name == result.rule
            label = f"{name}{' (default)' if main else ''} {lr:.2e}"
            ax.axvline(lr, color="k" if main else f"C{i + 1}", ls="-" if main else "--", lw=2.0 if main else 1.0, label=label)
    if result.has_curve():
        ax.axvspan(*result.bounds(), color="C2", alpha=0.08, label="_bounds")
    _range_test_limits(ax, result)
    ax.set_xscale("log" if result.mode == "exp" else "linear")
    ax.set_xlabel("learning rate (first param group)")
    ax.set_ylabel(result.signal)
    ax.set_title(title or f"range test: {result.stop_reason} after {result.stopped_at + 1} updates")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def _range_test_limits(ax: Any, result: LRFinderResult) -> None:
    """Keep the interesting part in view: an exploding tail would squash the valley flat."""
    try:
        _, y = suggest.finite_prefix(result.lrs, suggest.objective(result.losses, result.higher_is_better))
    except FinderError:
        return
    centred = suggest.smooth_centred(y)
    level = float(np.median(y[: max(3, y.size // 10)]))
    i_min = int(np.argmin(centred))
    best = min(float(centred[i_min]), float(np.quantile(y[: i_min + 1], 0.1)))  # the raw dip, without its outliers
    pad = 0.1 * (level - best) or 0.1 * abs(level) or 1.0
    low, high = suggest.objective([best - pad, level + 3 * pad], result.higher_is_better).tolist()
    ax.set_ylim(*sorted((low, high)))
