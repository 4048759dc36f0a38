"""The finder benchmark's outputs: a markdown table and a figure from `lrkit.bench.finder.run`'s record."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit.bench.finder import regrets

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pct(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{100 * value:.1f}%"


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per rule (median, worst regret, share within 10%), then per case medians, then the cost.

    Example:
        >>> s = {"rules": {"a": {"median": 0.01, "worst": 0.2, "within": 0.9}}, "cases": {"p/sgd": {"a": {"median": 0.01}}},
        ...      "cells": 3, "cost_steps": 0.02, "cost_time": 0.01}
        >>> print(table({"summary": s}).splitlines()[2])
        | a | 1.0% | 20.0% | 90% |
    """
    s = report["summary"]
    rules = sorted(s["rules"], key=lambda r: (s["rules"][r]["median"], -s["rules"][r]["within"]))
    lines = ["| rule | median regret | worst regret | cells within 10% |", "|---|---|---|---|"]
    for rule in rules:
        st = s["rules"][rule]
        lines.append(f"| {rule} | {_pct(st['median'])} | {_pct(st['worst'])} | {100 * st['within']:.0f}% |")
    lines += ["", "| case (median regret over seeds) | " + " | ".join(rules) + " |", "|---" * (len(rules) + 1) + "|"]
    for case, by_rule in s["cases"].items():
        lines.append(f"| {case} | " + " | ".join(_pct(by_rule[r]["median"]) for r in rules) + " |")
    lines += ["", f"{s['cells']} cells; finder cost: {100 * s['cost_steps']:.2f}% of the grid's optimizer updates, "
              f"{100 * s['cost_time']:.2f}% of its time."]  # fmt: skip
    return "\n".join(lines)


def figure(report: dict[str, Any]) -> Figure:
    """Left: every cell's regret per rule (log scale of 1 + regret); right: the share of cells within 10%.

    Example:
        >>> rec = {"grid": [[0.1, 1.0]], "losses": {"a": 1.05, "b": 2.0}}
        >>> s = {"rules": {"a": {"within": 1.0}, "b": {"within": 0.0}}}
        >>> len(figure({"cells": [rec], "summary": s}).axes)
        2
    """
    from lrkit.plot import new_figure

    fig = new_figure(2)
    left, right = fig.axes
    per_rule: dict[str, list[float]] = {}
    for rec in report["cells"]:
        for rule, r in regrets(rec).items():
            per_rule.setdefault(rule, []).append(r)
    names = sorted(per_rule, key=lambda n: float(np.median(per_rule[n])))
    jitter = np.random.default_rng(0)
    for i, name in enumerate(names):
        values = np.minimum(np.asarray(per_rule[name]), 100.0)  # blow-ups drawn at the top
        left.scatter(i + jitter.uniform(-0.2, 0.2, values.size), 1.0 + values, s=12, alpha=0.6, color=f"C{i}")
        left.hlines(1.0 + float(np.median(values)), i - 0.3, i + 0.3, color="k")
    left.axhline(1.1, color="r", ls="--", lw=1, label="10% regret")
    left.set_yscale("log")
    left.set_xticks(range(len(names)), names, rotation=30)
    left.set_ylabel("loss(suggested) / loss(grid best)")
    left.legend(fontsize="small")
    within = [100 * report["summary"]["rules"][n]["within"] for n in names]
    right.bar(range(len(names)), within, color=[f"C{i}" for i in range(len(names))])
    right.axhline(90, color="r", ls="--", lw=1)
    right.set_xticks(range(len(names)), names, rotation=30)
    right.set_ylabel("cells within 10% of the grid best (%)")
    right.set_ylim(0, 100)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig
