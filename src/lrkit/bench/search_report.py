"""The search benchmark's summary and markdown from `lrkit.bench.search.run`'s cell records (pure: no torch).

A cell record holds the grid (per lr, the held-out seeds' final losses) and, per method, the held-out losses of its
choice; a loss of None is a run that blew up. A method's *mean* is the mean over the held-out seeds (inf if any blew
up or it chose nothing); the grid's *best* is the lowest finite mean over its lrs; regret = mean / best - 1.

Example:
    >>> rec = _demo()
    >>> {k: round(v, 3) for k, v in regrets(rec).items()}
    {'search': 0.01, 'search (halving)': 0.1, 'search (shapes)': -0.05, 'lightning': inf}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrkit.bench.finder import TLF, regret_stats  # median, worst and share within: the finder benchmark's statistics

# the methods a cell records, by the names the tables show
SEARCH, HALVING, SHAPES = "search", "search (halving)", "search (shapes)"
RANGE_TEST, LIGHTNING = "range test (lrkit)", "lightning"
METHODS = (SEARCH, HALVING, SHAPES, RANGE_TEST, TLF, LIGHTNING)

CNN = ("digits_cnn", "mnist1d_cnn")
SEQUENCE = ("sequence",)
GROUPS: dict[str, tuple[str, ...] | None] = {"all": None, "cnn": CNN, "sequence": SEQUENCE}
WITHIN = 0.1
TIMED = (SEARCH, HALVING, SHAPES)


def mean_loss(losses: Sequence[float | None] | None) -> float:
    """The mean held-out loss; inf when there is none or any seed blew up.

    Example:
        >>> mean_loss([1.0, 2.0]), mean_loss([1.0, None]), mean_loss(None)
        (1.5, inf, inf)
    """
    if not losses or any(v is None for v in losses):
        return math.inf
    return float(np.mean([float(v) for v in losses if v is not None]))


def grid_best(record: dict[str, Any]) -> float:
    """The grid's best: the lowest mean held-out loss over its constant lrs.

    Example:
        >>> grid_best({"grid": [[0.1, [1.0, 1.2]], [1.0, [0.5, None]]]})
        1.1
    """
    return min(mean_loss(losses) for _, losses in record["grid"])


def regrets(record: dict[str, Any]) -> dict[str, float]:
    """regret = mean held-out loss / the grid's best - 1 for every method of one cell (inf: no choice, or it blew up)."""
    best = grid_best(record)
    return {m: (mean_loss(entry["losses"]) / best - 1.0 if math.isfinite(best) else math.nan) for m, entry in record["methods"].items()}


def summarize(records: Sequence[dict[str, Any]], within: float = WITHIN) -> dict[str, Any]:
    """Regret statistics per method (all cells, CNN cells, the sequence cell), the schedules' wins, the cost, the targets.

    Example:
        >>> s = summarize([_demo()])
        >>> s["methods"]["all"]["search"]["within"], s["cost"]["full"]["total"], s["shapes"]["non_constant_wins"]
        (1.0, 0.1, 1)
        >>> [t["met"] for t in s["targets"]]
        [True, True, True, True, False]
    """
    per_cell = [regrets(r) for r in records]
    methods: dict[str, dict[str, dict[str, float]]] = {}
    for group, problems in GROUPS.items():
        chosen = [reg for rec, reg in zip(records, per_cell) if problems is None or rec["problem"] in problems]
        names = [m for m in METHODS if any(m in reg for reg in chosen)]
        if chosen:
            methods[group] = {m: regret_stats([reg.get(m, math.inf) for reg in chosen], within) for m in names}
    summary = {"cells": len(records), "methods": methods, "shapes": _shapes(records), "cost": _cost(records), "bias": _bias(records)}
    summary["targets"] = targets(summary)
    return summary


def _shapes(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How often the shapes search picked a non-constant schedule, and its held-out loss against the constant-only search's."""
    changes, wins = [], []
    for rec in records:
        entry = rec["methods"].get(SHAPES)
        if entry is None or SEARCH not in rec["methods"]:
            continue
        change = mean_loss(entry["losses"]) / mean_loss(rec["methods"][SEARCH]["losses"]) - 1.0
        changes.append(change)
        if entry["shape"] != "constant":
            wins.append(change)
    return {
        "cells": len(changes), "non_constant_wins": len(wins), "share": len(wins) / len(changes) if changes else math.nan,
        "median_change_when_won": float(np.median(wins)) if wins else math.nan,
        "median_change": float(np.median(changes)) if changes else math.nan,
    }  # fmt: skip


def _bias(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Short-horizon bias: halving's chosen lr against the full search's (rungs judge short runs, which favour large lrs).

    Example:
        >>> rec = {"methods": {SEARCH: {"lr": 0.01}, HALVING: {"lr": 0.04}}}
        >>> _bias([rec, rec])
        {'cells': 2, 'larger': 2, 'smaller': 0, 'geometric_mean_ratio': 4.0}
    """
    ratios = [r["methods"][HALVING]["lr"] / r["methods"][SEARCH]["lr"] for r in records
              if r["methods"].get(HALVING, {}).get("lr") and r["methods"].get(SEARCH, {}).get("lr")]  # fmt: skip
    return {
        "cells": len(ratios), "larger": sum(q > 1 for q in ratios), "smaller": sum(q < 1 for q in ratios),
        "geometric_mean_ratio": float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan,
    }  # fmt: skip


def _cost(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Wall ratios per timed search: against the grid's one-seed runs, and halving against full; median and total over cells."""
    cost: dict[str, Any] = {"member_steps": {}}
    timed = [m for m in TIMED if all(m in r["methods"] for r in records)] if records else []
    for m in timed:
        walls = [r["methods"][m]["wall"] for r in records]
        cost[{SEARCH: "full", HALVING: "halving", SHAPES: "shapes"}[m]] = _ratios(walls, [r["grid_wall"] for r in records])
        cost["member_steps"][m] = sum(r["methods"][m]["member_steps"] for r in records)
    if SEARCH in timed and HALVING in timed:
        halving, full = ([r["methods"][m]["wall"] for r in records] for m in (HALVING, SEARCH))
        cost["halving_over_full"] = _ratios(list(halving), list(full))
    cost["grid_steps"] = sum(r["grid_steps"] for r in records)
    return cost


def _ratios(top: Sequence[float], bottom: Sequence[float]) -> dict[str, float]:
    return {"median": float(np.median(np.divide(top, bottom))), "total": float(sum(top) / max(1e-9, sum(bottom)))}


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and whether it is met (wall ratios: totals over the cells).

    Example:
        >>> s = {"methods": {"all": {"search": {"median": 0.01, "within": 0.8}, "search (halving)": {"median": 0.04}}},
        ...      "cost": {"full": {"total": 0.2}, "halving_over_full": {"total": 0.4}}}
        >>> [(t["target"][:22], t["met"]) for t in targets(s)][:3]
        [('search: median regret ', True), ('search: cells within 1', False), ('search: wall time <= 1', False)]
    """
    stats, cost = summary["methods"].get("all", {}), summary["cost"]
    # (target, measured value, bound, whether the value must stay at or below the bound)
    rows: list[tuple[str, float | None, float, bool]] = [
        ("search: median regret <= 2%", stats.get(SEARCH, {}).get("median"), 0.02, True),
        ("search: cells within 10% of the grid's best >= 90%", stats.get(SEARCH, {}).get("within"), 0.9, False),
        ("search: wall time <= 15% of the grid's", cost.get("full", {}).get("total"), 0.15, True),
        ("halving: wall time <= half of the full search's", cost.get("halving_over_full", {}).get("total"), 0.5, True),
        ("halving: median regret <= 5%", stats.get(HALVING, {}).get("median"), 0.05, True),
    ]
    return [{"target": text, "value": value, "met": value is not None and (value <= bound if below else value >= bound)}
            for text, value, bound, below in rows]  # fmt: skip


def _pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{100 * value:.1f}%"


def table(report: dict[str, Any]) -> str:
    """Markdown: regret per method (all, CNN, sequence cells), one row per cell, the schedules, the cost, the targets.

    Example:
        >>> text = table({"cells": [_demo()], "summary": summarize([_demo()])})
        >>> print(text.splitlines()[4])
        | search | 1.0% | 100% | 1.0% | - | - |
    """
    s = report["summary"]
    first = report["cells"][0] if report["cells"] else {"seeds": [], "grid": []}
    seeds = ", ".join(map(str, first["seeds"]))
    lines = [f"Regret = mean final loss on the held-out seeds ({seeds}) / the {len(first['grid'])}-point grid's best - 1.", ""]
    lines += [*_method_rows(s["methods"]), "", *_cell_rows(report["cells"]), "", *_footer(s)]
    notes = [f"- {r['problem']}/{r['optimizer']} {m}: {e['note']}" for r in report["cells"] for m, e in r["methods"].items()
             if e.get("note")]  # fmt: skip
    return "\n".join(lines + (["", "Methods without a choice:", *notes] if notes else []))


def _method_rows(methods: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = ["| method | median regret | cells within 10% | worst regret | CNN cells: median | sequence: median |", "|---" * 6 + "|"]
    for m, st in methods.get("all", {}).items():
        by = [_pct(methods.get(g, {}).get(m, {}).get("median")) for g in ("cnn", "sequence")]
        lines.append(f"| {m} | {_pct(st['median'])} | {100 * st['within']:.0f}% | {_pct(st['worst'])} | {by[0]} | {by[1]} |")
    return lines


def _cell_rows(records: Sequence[dict[str, Any]]) -> list[str]:
    names = [m for m in METHODS if any(m in r["methods"] for r in records)]
    head = "| cell | grid best lr (loss) | " + " | ".join(names) + " | full / grid wall | halving / full wall |"
    lines = [head, "|---" * (len(names) + 4) + "|"]
    for rec in records:
        reg, ms = regrets(rec), rec["methods"]
        lr, best = min(((lr, mean_loss(v)) for lr, v in rec["grid"]), key=lambda t: t[1])
        cells = [_choice(ms[m], reg[m]) if m in ms else "-" for m in names]
        full = ms[SEARCH]["wall"] / rec["grid_wall"] if SEARCH in ms else math.nan
        halving = ms[HALVING]["wall"] / ms[SEARCH]["wall"] if HALVING in ms and SEARCH in ms else math.nan
        row = [f"{rec['problem']}/{rec['optimizer']}", f"{lr:.3g} ({best:.4g})", *cells, _pct(full), _pct(halving)]
        lines.append(f"| {' | '.join(row)} |")
    return lines


def _choice(entry: dict[str, Any], regret: float) -> str:
    """A method's regret with its lr (and shape, where not constant)."""
    if entry["lr"] is None:
        return "none"
    shape = f" {entry['shape']}" if entry.get("shape", "constant") != "constant" else ""
    return f"{_pct(regret)} ({entry['lr']:.2g}{shape})"


def _footer(s: dict[str, Any]) -> list[str]:
    sh, cost = s["shapes"], s["cost"]
    lines = [f"Schedules (constant, cosine, one_cycle): a non-constant schedule won {sh['non_constant_wins']} of {sh['cells']} cells; "
             f"held-out loss against the constant-only search: median {_pct(sh['median_change_when_won'])} where it won, "
             f"{_pct(sh['median_change'])} over all cells.", ""]  # fmt: skip
    bias = s.get("bias", {})
    if bias.get("cells"):
        lines += [f"Short-horizon bias: halving chose a larger lr than the full search in {bias['larger']} of {bias['cells']} cells, "
                  f"a smaller one in {bias['smaller']}; geometric mean of halving's lr / full's: {bias['geometric_mean_ratio']:.2f}x.", ""]
    for key in ("full", "halving", "shapes", "halving_over_full"):
        if key in cost:
            what = "halving / full search wall" if key == "halving_over_full" else f"{key} search / grid wall"
            lines.append(f"- {what}: median {_pct(cost[key]['median'])} per cell, {_pct(cost[key]['total'])} in total")
    steps = [f"{m}: {v}" for m, v in cost["member_steps"].items()]
    lines += [f"- member-steps: {', '.join(steps)}; the grid (one seed): {cost['grid_steps']}", ""]
    lines += ["| target | value | met |", "|---|---|---|"]
    for t in s["targets"]:
        lines.append(f"| {t['target']} | {_pct(t['value'])} | {'met' if t['met'] else 'not met'} |")
    return lines


def _demo() -> dict[str, Any]:
    """A synthetic cell: grid best 1.0; the search 1% above it, halving 10%, a cosine 5% below, Lightning blew up."""

    def method(loss: float | None, shape: str = "constant", wall: float = 1.0) -> dict[str, Any]:
        return {"lr": 0.01 if loss else None, "losses": [loss, loss], "shape": shape, "wall": wall, "member_steps": 100}

    return {
        "problem": "blobs", "optimizer": "adam", "grid": [[0.01, [1.0, 1.0]], [0.1, [2.0, None]]], "grid_wall": 10.0,
        "grid_steps": 1000, "seeds": [100, 101],
        "methods": {SEARCH: method(1.01), HALVING: method(1.1, wall=0.4), SHAPES: method(0.95, "cosine", 2.0), "lightning": method(None)},
    }  # fmt: skip
