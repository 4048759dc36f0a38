"""`LRFinderResult`: what a range test recorded and what it suggests; pure data, saved as JSON, drawn as a Figure.

This module imports neither torch nor matplotlib: a saved result can be loaded,
read and plotted on a machine without torch (`plot` calls `lrkit.plot`, which
imports matplotlib when it draws; `apply` imports lrkit's torch layer when called).

Example:
    >>> import numpy as np
    >>> lrs = np.logspace(-4, 0, 40).tolist()
    >>> r = LRFinderResult.from_curve(lrs, (np.tanh(-np.log10(lrs) - 2.0) + 2).tolist(), stop_reason="completed")
    >>> LRFinderResult.from_json(r.to_json()) == r, r.suggestion is not None
    (True, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit._io import JsonResult, json_float, read_float
from lrkit.analysis import suggest
from lrkit.errors import FinderError

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

NO_UPDATE = "no update was recorded: lower `start`"
SPREAD_WARNING = 2.0  # repeats whose suggestions spread by more than this factor do not agree on the lr


@dataclasses.dataclass
class LRFinderResult(JsonResult):
    """The outcome of `lrkit.find_lr`.

    Attributes:
        lrs: the first param group's lr at each recorded optimizer update.
        losses: the raw signal at each lr (train loss, validation loss or metric; the mean over repeats).
        smoothed: the bias-corrected exponential moving average of `losses`.
        stopped_at: the index of the last recorded update.
        stop_reason: "completed", "diverged", "non-finite" (NaN/inf) or "scaler" (too many skipped steps).
        suggestion: the default rule's lr (the log-mean over repeats), or None if the curve is too short or
            carries no signal (`lrkit.analysis.suggest.no_signal`: flat within its noise; a warning says so).
        suggestions: every rule's lr by name (log-means over repeats).
        warnings: what to check before trusting the suggestion.
        rule: the name of the rule behind `suggestion`.
        signal: what was recorded ("train loss", "validation loss", "train metric", "validation metric").
        higher_is_better: True for a metric such as accuracy.
        mode: "exp" or "linear".
        group_scales: each param group's lr relative to the first (kept by the test and by `apply`).
        lr_before: the first group's lr before the test.
        spread: the repeats' geometric standard deviation of the suggestion (1.0 for one run).
        runs: the raw signal of every repeat.
        run_suggestions: the default rule's lr in every repeat.

    `bounds()` gives Smith's range for cyclic schedules; `to_dict()` saves it too.

    Example:
        >>> r = LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {"lrkit": None})
        >>> LRFinderResult.from_dict(r.to_dict()) == r
        True
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped_at: int
    stop_reason: str
    suggestion: float | None
    suggestions: dict[str, float | None]
    warnings: list[str] = dataclasses.field(default_factory=list)
    rule: str = suggest.DEFAULT_RULE
    signal: str = "train loss"
    higher_is_better: bool = False
    mode: str = "exp"
    group_scales: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    lr_before: float | None = None
    spread: float = 1.0
    runs: list[list[float]] = dataclasses.field(default_factory=list)
    run_suggestions: list[float | None] = dataclasses.field(default_factory=list)

    error = FinderError  # raised by `load` / `from_json` for a file that is not a saved result

    @classmethod
    def from_curve(cls, lrs: Sequence[float], losses: Sequence[float], *, stop_reason: str, **fields: Any) -> LRFinderResult:
        """A result from one recorded curve: smooths it and applies every rule (`from_runs` with one run).

        Example:
            >>> r = LRFinderResult.from_curve([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], smoothing=0.0, stop_reason="diverged")
            >>> r.suggestions["minimum"], r.stopped_at
            (0.001, 2)
        """
        return cls.from_runs(lrs, [losses], stop_reason=stop_reason, **fields)

    @classmethod
    def from_runs(
        cls,
        lrs: Sequence[float],
        runs: Sequence[Sequence[float]],
        *,
        stop_reason: str,
        smoothing: float = 0.98,
        higher_is_better: bool = False,
        rule: str = suggest.DEFAULT_RULE,
        warnings: Sequence[str] = (),
        **fields: Any,
    ) -> LRFinderResult:
        """The complete result of one or more repeats over the same ramp (`lrs`: the longest run's lrs).

        The curve is the runs' mean over the updates every run reached; each rule reads every run on its
        own and suggests the log-mean of their answers, `spread` their geometric standard deviation.
        `fields` are the descriptive attributes (`signal`, `mode`, `group_scales`, `lr_before`).

        Example:
            >>> import numpy as np
            >>> lrs = np.logspace(-4, 0, 40).tolist()
            >>> runs = [(np.tanh(-np.log10(lrs) - c) + 2).tolist() for c in (1.9, 2.1)]
            >>> r = LRFinderResult.from_runs(lrs, runs, stop_reason="completed")
            >>> len(r.run_suggestions), r.suggestion == float(np.exp(np.mean(np.log(r.run_suggestions))))
            (2, True)
        """
        n = min((len(run) for run in runs), default=0)
        curve = np.mean([np.asarray(run[:n], dtype=np.float64) for run in runs], axis=0) if n else np.empty(0)
        per_run = [suggest.suggest_all(lrs[: len(run)], suggest.objective(run, higher_is_better), smoothing) for run in runs]
        found = per_run[0] if len(per_run) == 1 else _log_means(per_run)
        target = suggest.objective(curve, higher_is_better)
        notes = suggest.curve_warnings(lrs[:n], target, suggest.smooth(target, smoothing), stop_reason) if n else [NO_UPDATE]
        silent = suggest.no_signal(lrs[:n], target) if n else None
        if silent is not None:  # a flat curve: every rule would point at noise, so none answers
            found, per_run, notes = dict.fromkeys(found), [dict.fromkeys(found) for _ in runs], [silent]
        chosen = [s[rule] for s in per_run]
        spread = _spread(chosen) if len(runs) > 1 and silent is None else 1.0
        notes += _repeat_warnings(chosen, spread) if silent is None else []
        return cls(
            lrs=[float(x) for x in lrs[:n]], losses=curve.tolist(), smoothed=suggest.smooth(curve, smoothing).tolist(), stopped_at=n - 1,
            stop_reason=stop_reason, suggestion=found.get(rule), suggestions=found,
            warnings=[*notes, *warnings], rule=rule, higher_is_better=higher_is_better,
            spread=spread, runs=[[float(v) for v in run] for run in runs], run_suggestions=chosen, **fields,
        )  # fmt: skip

    @property
    def factor(self) -> float | None:
        """The factor that takes every param group from its lr before the test to the suggestion.

        Example:
            >>> LRFinderResult([0.1], [1.0], [1.0], 0, "completed", 0.5, {}, lr_before=0.1).factor
            5.0
        """
        if self.suggestion is None or not self.lr_before:
            return None
        return self.suggestion / self.lr_before

    def has_curve(self) -> bool:
        """Whether the curve has enough finite points for the rules, the bounds and the lag-free line.

        Example:
            >>> LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {}).has_curve()
            False
        """
        try:
            suggest.prepare(self.lrs, self.smoothed)
        except FinderError:
            return False
        return True

    def bounds(self) -> tuple[float, float]:
        """`(low, high)` for cyclic or one-cycle schedules: where the signal starts to improve, where it stops.

        Read on the lag-free smoothing of the raw signal (`suggest.smooth_centred`), like lrkit's rule.

        Example:
            >>> import numpy as np
            >>> lrs = np.logspace(-4, 0, 41).tolist()
            >>> r = LRFinderResult.from_curve(lrs, (np.tanh(-np.log10(lrs) - 2.0) + 2).tolist(), smoothing=0.0, stop_reason="completed")
            >>> [round(float(np.log10(b)), 1) for b in r.bounds()]
            [-2.9, -1.0]
        """
        x, y = suggest.finite_prefix(self.lrs, suggest.objective(self.losses, self.higher_is_better), "LRFinderResult.bounds")
        return suggest.bounds(x, suggest.smooth_centred(y))

    def apply(self, optimizer: torch.optim.Optimizer, rule: str | None = None) -> float:
        """Set the suggestion (or `rule`'s) as the first group's lr, scaling the other groups by the same factor.

        Returns the lr set. Example:
            >>> import torch
            >>> model = torch.nn.Linear(2, 1)
            >>> opt = torch.optim.SGD([{"params": [model.weight], "lr": 1.0}, {"params": [model.bias], "lr": 0.1}])
            >>> r = LRFinderResult([1.0], [1.0], [1.0], 0, "completed", 0.5, {"lrkit": 0.5})
            >>> r.apply(opt), [g["lr"] for g in opt.param_groups]
            (0.5, [0.5, 0.05])
        """
        from lrkit.torch.scheduler import write_hyperparameter  # the torch layer, only when a torch optimizer is at hand

        if rule is not None:
            suggest.get_rule(rule)  # an unknown name lists the valid ones
        lr = self.suggestion if rule is None else self.suggestions.get(rule)
        if lr is None:
            validate.fail("LRFinderResult.apply", "rule", "has no suggestion for this curve (see .warnings)", rule or self.rule,
                          FinderError)  # fmt: skip
        first = float(optimizer.param_groups[0]["lr"])
        ratios = [float(g["lr"]) / first for g in optimizer.param_groups] if first > 0 else self.group_scales
        validate.length("LRFinderResult.apply", "optimizer.param_groups", ratios, FinderError, len(optimizer.param_groups),
                        "as many as the tested optimizer's")  # fmt: skip
        for group, ratio in zip(optimizer.param_groups, ratios):
            write_hyperparameter(group, "lr", lr * ratio)
        return lr

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers as "nan"/"inf" text) with the `bounds` too; `from_dict` reads it back.

        Example:
            >>> LRFinderResult([0.1], [float("nan")], [float("nan")], 0, "non-finite", None, {}).to_dict()["losses"]
            ['nan']
        """
        out = dataclasses.asdict(self)
        for key in ("losses", "smoothed"):
            out[key] = [json_float(v) for v in out[key]]
        out["runs"] = [[json_float(v) for v in run] for run in out["runs"]]
        out["spread"] = json_float(self.spread)
        out["bounds"] = list(self.bounds()) if self.has_curve() else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRFinderResult:
        """The result saved by `to_dict` (extra keys such as "bounds" are ignored).

        Example:
            >>> r = LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {"lrkit": None})
            >>> LRFinderResult.from_dict(r.to_dict()) == r
            True
        """
        fields = dataclasses.fields(cls)
        required = sorted(f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        validate.instance("LRFinderResult.from_dict", "data", data, FinderError, dict, f"a dict with keys {required}")
        if set(required) - set(data):
            validate.fail("LRFinderResult.from_dict", "data", f"must have the keys {required}", sorted(data), FinderError)
        kept = {f.name: data[f.name] for f in fields if f.name in data}
        for key in ("losses", "smoothed"):
            kept[key] = [read_float(v) for v in kept[key]]
        kept["runs"] = [[read_float(v) for v in run] for run in kept.get("runs", [])]
        kept["spread"] = read_float(kept.get("spread", 1.0))
        return cls(**kept)

    def plot(self, title: str | None = None) -> Figure:
        """The signal against the lr, suggestions and bounds marked: `lrkit.plot.plot_range_test(self)`.

        Example:
            >>> import numpy as np
            >>> lrs = np.logspace(-4, 0, 40).tolist()
            >>> r = LRFinderResult.from_curve(lrs, (np.tanh(-np.log10(lrs) - 2.0) + 2).tolist(), stop_reason="completed")
            >>> [line.get_label().split()[0] for line in r.plot().axes[0].get_lines()][3:]
            ['lrkit', 'valley', 'steep', 'minimum', 'slide']
        """
        from lrkit.plot import plot_range_test  # the plotting layer imports matplotlib when it draws

        return plot_range_test(self, title)


def _log_means(per_run: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each rule's geometric mean over the runs that gave it a suggestion (None where none did)."""
    out: dict[str, float | None] = {}
    for name in per_run[0]:
        found = np.array([s[name] for s in per_run if s[name] is not None], dtype=np.float64)
        out[name] = float(np.exp(np.mean(np.log(found)))) if found.size else None
    return out


def _spread(suggestions: list[float | None]) -> float:
    """The geometric standard deviation of the repeats' suggestions (NaN when none gave one)."""
    logs = np.log(np.array([s for s in suggestions if s is not None], dtype=np.float64))
    return float(np.exp(np.std(logs))) if logs.size else math.nan


def _repeat_warnings(suggestions: list[float | None], spread: float) -> list[str]:
    notes = []
    if spread > SPREAD_WARNING:
        notes.append(f"the repeats disagree: suggestions spread by a factor {spread:.1f}; use more `steps`")
    missing = sum(s is None for s in suggestions)
    if missing and len(suggestions) > 1:
        notes.append(f"{missing} of {len(suggestions)} repeats gave no suggestion")
    return notes
