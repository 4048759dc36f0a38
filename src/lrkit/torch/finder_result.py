"""`LRFinderResult`: what a range test recorded and what it suggests; saved as JSON, drawn as a Figure."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit.analysis import suggest
from lrkit.errors import FinderError, bad

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure


@dataclasses.dataclass
class LRFinderResult:
    """The outcome of `lrkit.find_lr`.

    Attributes:
        lrs: the first param group's lr at each recorded optimizer update.
        losses: the raw signal at each lr (train loss, validation loss or metric; the mean over repeats).
        smoothed: the bias-corrected exponential moving average of `losses`.
        stopped_at: the index of the last recorded update.
        stop_reason: "completed", "diverged", "non-finite" (NaN/inf) or "scaler" (too many skipped steps).
        suggestion: the default rule's lr (the log-mean over repeats), or None if the curve is too short.
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

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-4, 0, 40).tolist()
        >>> losses = (np.tanh(-np.log10(lrs) - 2.0) + 2).tolist()
        >>> r = LRFinderResult.from_curve(lrs, losses, stop_reason="completed")
        >>> LRFinderResult.from_json(r.to_json()) == r, r.suggestion is not None
        (True, True)
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

    @classmethod
    def from_curve(cls, lrs: list[float], losses: list[float], *, smoothing: float = 0.98, **fields: Any) -> LRFinderResult:
        """A result from a recorded curve: smooths it and applies every rule.

        Example:
            >>> r = LRFinderResult.from_curve([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], smoothing=0.0, stop_reason="diverged")
            >>> r.suggestions["minimum"], r.stopped_at
            (0.001, 2)
        """
        smoothed = suggest.smooth(losses, smoothing)
        sign = -1.0 if fields.get("higher_is_better") else 1.0  # rules minimize: a metric is negated
        found = suggest.suggest_all(lrs, sign * np.asarray(losses, dtype=np.float64), smoothing)
        rule = fields.pop("rule", suggest.DEFAULT_RULE)
        warnings = suggest.curve_warnings(lrs, sign * np.asarray(losses, dtype=np.float64), sign * smoothed, fields["stop_reason"])
        fields.setdefault("stopped_at", len(lrs) - 1)
        fields.setdefault("runs", [list(map(float, losses))])
        fields.setdefault("run_suggestions", [found[rule]])
        return cls(
            lrs=[float(x) for x in lrs], losses=[float(x) for x in losses], smoothed=smoothed.tolist(),
            suggestion=found[rule], suggestions=found, warnings=warnings + fields.pop("warnings", []), rule=rule, **fields,
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
        sign = -1.0 if self.higher_is_better else 1.0
        x, y = suggest.finite_prefix(self.lrs, sign * np.asarray(self.losses, dtype=np.float64), "LRFinderResult.bounds")
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
        from lrkit.torch.scheduler import _write

        if rule is not None:
            suggest.get_rule(rule)  # an unknown name lists the valid ones
        lr = self.suggestion if rule is None else self.suggestions.get(rule)
        if lr is None:
            raise FinderError(bad("LRFinderResult.apply", "rule", "has no suggestion for this curve (see .warnings)", rule or self.rule))
        first = float(optimizer.param_groups[0]["lr"])
        ratios = [float(g["lr"]) / first for g in optimizer.param_groups] if first > 0 else self.group_scales
        if len(ratios) != len(optimizer.param_groups):
            raise FinderError(bad("LRFinderResult.apply", "optimizer", "must have as many param groups as the tested one", len(ratios)))
        for group, ratio in zip(optimizer.param_groups, ratios):
            _write(group, "lr", lr * ratio)
        return lr

    # -- saving -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite losses become None); `from_dict` reads it back.

        Example:
            >>> LRFinderResult([0.1], [float("nan")], [float("nan")], 0, "non-finite", None, {}).to_dict()["losses"]
            [None]
        """
        out = dataclasses.asdict(self)
        for key in ("losses", "smoothed"):
            out[key] = [_finite_or_none(v) for v in out[key]]
        out["runs"] = [[_finite_or_none(v) for v in run] for run in out["runs"]]
        out["bounds"] = list(self.bounds()) if _has_curve(self) else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRFinderResult:
        """The result saved by `to_dict` (extra keys such as "bounds" are ignored).

        Example:
            >>> r = LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {"lrkit": None})
            >>> LRFinderResult.from_dict(r.to_dict()) == r
            True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not isinstance(data, dict) or missing - set(data):
            raise FinderError(bad("LRFinderResult.from_dict", "data", f"must be a dict with keys {sorted(missing)}", type(data).__name__))
        fields = {k: v for k, v in data.items() if k in names}
        for key in ("losses", "smoothed"):
            fields[key] = [_nan_if_none(v) for v in fields[key]]
        fields["runs"] = [[_nan_if_none(v) for v in run] for run in fields.get("runs", [])]
        return cls(**fields)

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text; also written to `path` when given.

        Example:
            >>> LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {}).to_json().split()[:2]
            ['{', '"lrs":']
        """
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text: str) -> LRFinderResult:
        """The result from `to_json`'s text (use `load` for a file).

        Example:
            >>> r = LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {})
            >>> LRFinderResult.from_json(r.to_json()) == r
            True
        """
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> LRFinderResult:
        """The result saved with `to_json(path)`.

        Example:
            >>> import tempfile, os
            >>> r = LRFinderResult([0.1], [1.0], [1.0], 0, "completed", None, {})
            >>> with tempfile.TemporaryDirectory() as d:
            ...     _ = r.to_json(os.path.join(d, "r.json"))
            ...     LRFinderResult.load(os.path.join(d, "r.json")) == r
            True
        """
        return cls.from_json(Path(path).read_text())

    def plot(self, title: str | None = None) -> Figure:
        """The signal against the lr: raw (grey), EMA-smoothed (blue), lag-free (dotted); suggestions and bounds marked.

        Example:
            >>> import numpy as np
            >>> lrs = np.logspace(-4, 0, 40).tolist()
            >>> r = LRFinderResult.from_curve(lrs, (np.tanh(-np.log10(lrs) - 2.0) + 2).tolist(), stop_reason="completed")
            >>> fig = r.plot()
            >>> [line.get_label().split()[0] for line in fig.axes[0].get_lines()][3:]
            ['lrkit', 'valley', 'steep', 'minimum', 'slide']
        """
        from lrkit.plot import new_figure

        fig = new_figure()
        ax = fig.axes[0]
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="raw")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=1.8, label="EMA")
        if _has_curve(self):
            x, y = suggest.finite_prefix(self.lrs, self.losses)
            ax.plot(x, suggest.smooth_centred(y), color="k", lw=1.0, ls=":", label="lag-free")
        for i, (name, lr) in enumerate(self.suggestions.items()):
            if lr is not None:
                main = name == self.rule
                label = f"{name}{' (default)' if main else ''} {lr:.2e}"
                ax.axvline(lr, color="k" if main else f"C{i + 1}", ls="-" if main else "--", lw=2.0 if main else 1.0, label=label)
        if _has_curve(self):
            low, high = self.bounds()
            ax.axvspan(low, high, color="C2", alpha=0.08, label="_bounds")
        _limits(ax, self)
        ax.set_xscale("log" if self.mode == "exp" else "linear")
        ax.set_xlabel("learning rate (first param group)")
        ax.set_ylabel(self.signal)
        ax.set_title(title or f"range test: {self.stop_reason} after {self.stopped_at + 1} updates")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        return fig


def _limits(ax: Any, result: LRFinderResult) -> None:
    """Keep the interesting part in view: an exploding tail would squash the valley flat."""
    sign = -1.0 if result.higher_is_better else 1.0
    try:
        _, y = suggest.finite_prefix(result.lrs, sign * np.asarray(result.losses, dtype=np.float64))
    except FinderError:
        return
    centred = suggest.smooth_centred(y)
    level = float(np.median(y[: max(3, y.size // 10)]))
    i_min = int(np.argmin(centred))
    best = min(float(centred[i_min]), float(np.quantile(y[: i_min + 1], 0.1)))  # the raw dip, without its outliers
    pad = 0.1 * (level - best) or 0.1 * abs(level) or 1.0
    low, high = best - pad, level + 3 * pad
    ax.set_ylim(*sorted((sign * low, sign * high)))


def _has_curve(result: LRFinderResult) -> bool:
    try:
        suggest.prepare(result.lrs, result.smoothed)
    except FinderError:
        return False
    return True


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)
