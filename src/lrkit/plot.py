"""Figures. matplotlib is imported here only, lazily; every function returns a Figure
(built without pyplot, so nothing is shown and no global state is touched)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lrkit.errors import ScheduleError, bad
from lrkit.schedules.base import Schedule

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
        raise ScheduleError(bad("plot_schedule", "schedules", "must be a schedule or a non-empty list of schedules", schedules))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ScheduleError(bad("plot_schedule", "steps", "must be a positive integer", steps))
    names = list(labels) if labels is not None else [repr(s) for s in items]
    if len(names) != len(items):
        raise ScheduleError(bad("plot_schedule", "labels", f"must have one label per schedule ({len(items)})", labels))
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
