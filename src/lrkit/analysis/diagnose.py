"""Is the learning rate the problem? Pure rules over a recorded run (no torch).

`diagnose(steps, loss, lr=..., update_ratio=...)` summarizes the loss curve by the
medians of a fixed number of windows, measures its noise robustly (the MAD of the
step losses around their window's median), and applies four rules. Every finding
carries the steps it covers, the numbers behind it and advice:

- `lr_too_high`: the loss became non-finite, spiked repeatedly (the test of
  `lrkit.Guard`), rose significantly from its best level, or made no progress
  while the weights moved a lot (oscillating).
- `lr_too_low`: weights barely move (median update-to-weight ratio far below the
  ~1e-3 rule of thumb) or the loss made no significant progress at all.
- `plateau`: after progress, a long stretch (half the run by default) with
  no improvement beyond the noise, entered while the loss was still falling
  fast; a drop or a plateau controller would help.
- `converged`: the same long stretch at the end of the run, but reached the way
  a run reaches its floor: the descent had already slowed (the second half of
  the descent before the stretch brought less than `converged_tail` (1/4) of it)
  and the loss sits still, its noise small (a window median's standard error
  below 1/10 of the descent). Lowering the lr is no help there.
- `healthy`: none of the above.

With an `implied_lr` column (`lrkit.Monitor(implied_lr=True)`: Duda's sigma_theta / sigma_g,
see `lrkit.torch.implied`), a second finding, `implied_lr`, reports when the lr of the last half
of the run is `implied_ratio` (10x) or more above or below the implied one, with both medians
as evidence. With gradient noise the implied lr is conservative (about sqrt(lr / (2 lam)) at
stationarity), so it is a yardstick for gross mismatches, not a target.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import ControlError

KINDS = ("lr_too_high", "lr_too_low", "plateau", "converged", "healthy", "implied_lr")
Array = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One conclusion about a run: what, where, why (numbers) and what to do.

    Attributes:
        kind: one of `KINDS`.
        steps: the first and last recorded step the finding covers.
        evidence: the numbers it rests on, by name.
        advice: what to try.

    Example:
        >>> f = Finding("healthy", (0, 99), {"final_loss": 0.25}, "nothing to change")
        >>> print(f)
        healthy, steps 0-99: final_loss=0.25. nothing to change
    """

    kind: str
    steps: tuple[int, int]
    evidence: dict[str, float]
    advice: str

    def __str__(self) -> str:
        numbers = ", ".join(f"{k}={v:.4g}" for k, v in self.evidence.items())
        return f"{self.kind}, steps {self.steps[0]}-{self.steps[1]}: {numbers}. {self.advice}"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The knobs of the rules; `diagnose(..., name=value)` overrides any of them.

    Attributes:
        windows: how many windows summarize the curve (each a median of its steps).
        significance: differences below this many standard errors of a window median are noise.
        blowup: a loss this many loss-spreads above its start is a blow-up (reported as evidence).
        spike: a loss this many robust deviations above the median of the recent ones is a spike.
        spikes: this many spikes mean the lr is too high.
        ratio_low: a median update-to-weight ratio below this means the lr is too low.
        ratio_high: without progress, a median ratio above this (the ~1e-3 rule of thumb) means the lr is too high.
        min_progress: improvements smaller than this fraction of the progress so far do not end a stall.
        plateau_fraction: the least fraction of the run a stall must cover to be a plateau.
        implied_ratio: an lr this factor or more above or below the implied lr is reported (`implied_lr`).
        converged_tail: a final stall is convergence when the second half of the descent before it
            brought less than this fraction of that descent (the descent had slowed, not stopped short).
        converged_noise: ... and the standard error of a window median is below this fraction of the descent.

    Example:
        >>> Thresholds().ratio_low
        0.0001
    """

    windows: int = 20
    significance: float = 3.0
    blowup: float = 10.0
    spike: float = 20.0
    spikes: int = 3
    ratio_low: float = 1e-4
    ratio_high: float = 1e-3
    min_progress: float = 0.02
    plateau_fraction: float = 0.5
    converged_tail: float = 0.25
    converged_noise: float = 0.1
    implied_ratio: float = 10.0


@dataclasses.dataclass(frozen=True)
class _Curve:
    """The loss curve reduced to window medians, with its noise level."""

    steps: npt.NDArray[np.int64]
    loss: Array
    bounds: list[tuple[int, int]]  # [start, stop) index of each window
    levels: Array  # median loss of each window
    sigma: float  # robust standard deviation of a step's loss around its window's median
    se: float  # standard error of one window median
    band: tuple[Array, Array]  # per step: its window's median -/+ 5 sigma

    @property
    def start(self) -> float:
        return float(self.levels[0])

    @property
    def best(self) -> float:
        return float(self.levels.min())

    @property
    def final(self) -> float:
        return float(self.levels[-1])

    def window_of(self, index: int) -> int:
        """The window holding record `index`."""
        return int(np.searchsorted([b for _, b in self.bounds], index, side="right"))

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Steps covered by windows first..last (inclusive)."""
        return int(self.steps[self.bounds[first][0]]), int(self.steps[self.bounds[last][1] - 1])


def diagnose(
    steps: npt.ArrayLike,
    loss: npt.ArrayLike,
    *,
    lr: npt.ArrayLike | None = None,
    update_ratio: npt.ArrayLike | None = None,
    implied_lr: npt.ArrayLike | None = None,
    **thresholds: float,
) -> list[Finding]:
    """Findings about the learning rate from a recorded run (one row per record).

    Args:
        steps: the recorded steps (increasing).
        loss: the training loss at each record (per step or per epoch; NaN/inf allowed).
        lr: the lr at each record (first param group), used for the advice.
        update_ratio: `||Δw|| / ||w||` per step at each record, if measured.
        implied_lr: the implied lr at each record (NaN during its warm-up); with `lr`, adds the `implied_lr` finding.
        **thresholds: overrides of `Thresholds` fields.

    Example:
        >>> import numpy as np
        >>> t = np.arange(400)
        >>> [f.kind for f in diagnose(t, 2.0 ** (t / 40.0))]
        ['lr_too_high']
        >>> [f.kind for f in diagnose(t, 1.0 + 0.001 * np.sin(t))]
        ['lr_too_low']
        >>> print(diagnose(t, 1.0 / (1 + t), lr=np.full(400, 3.0), implied_lr=np.full(400, 0.1))[1].advice)
        your lr is 30x the implied one (sigma_theta / sigma_g): lower it toward 0.1
    """
    limits = _thresholds(thresholds)
    step_arr = np.asarray(steps, dtype=np.int64)
    loss_arr = np.asarray(loss, dtype=np.float64)
    lr_arr = None if lr is None else np.asarray(lr, dtype=np.float64)
    ratio = None if update_ratio is None else np.asarray(update_ratio, dtype=np.float64)
    implied = None if implied_lr is None else np.asarray(implied_lr, dtype=np.float64)
    _check_lengths(step_arr, loss_arr, lr_arr, ratio, limits.windows, implied)
    against_implied = [] if lr_arr is None or implied is None else _against_implied(step_arr, lr_arr, implied, limits.implied_ratio)
    diverged = _diverged(step_arr, loss_arr, lr_arr)
    if diverged is not None:
        return [diverged, *against_implied]
    curve = _curve(step_arr, loss_arr, limits.windows)
    median_ratio = float(np.nanmedian(ratio)) if ratio is not None and np.isfinite(ratio).any() else math.nan
    lr_now = float(np.nanmedian(lr_arr)) if lr_arr is not None and np.isfinite(lr_arr).any() else math.nan
    finding = _too_high(curve, median_ratio, lr_now, limits) or _too_low(curve, median_ratio, lr_now, limits) or _plateau(curve, limits)
    return [finding or _healthy(curve, median_ratio), *against_implied]


def _thresholds(given: dict[str, Any]) -> Thresholds:
    names = [f.name for f in dataclasses.fields(Thresholds)]
    counts = {"windows": 4, "spikes": 1}  # the least of each count
    checked: dict[str, Any] = {}
    for name, value in given.items():
        if name not in names:
            validate.fail("diagnose", name, f"is not a threshold (valid: {', '.join(names)})", value, ControlError)
        if name in counts:
            checked[name] = validate.integer("diagnose", name, value, ControlError, minimum=counts[name])
        else:
            checked[name] = validate.positive("diagnose", name, value, ControlError)
    return Thresholds(**checked)


def _check_lengths(
    steps: npt.NDArray[np.int64], loss: Array, lr: Array | None, ratio: Array | None, windows: int, implied: Array | None = None
) -> None:
    for name, column in (("loss", loss), ("lr", lr), ("update_ratio", ratio), ("implied_lr", implied)):
        if column is not None and column.shape != steps.shape:
            validate.fail("diagnose", name, f"must have one value per step ({steps.shape[0]})", column.shape, ControlError)
    if steps.ndim != 1 or len(steps) < 2 * windows:
        validate.fail("diagnose", "steps", f"must hold at least {2 * windows} records (2 per window)", len(steps), ControlError)
    if np.any(np.diff(steps) <= 0):
        validate.fail("diagnose", "steps", "must increase", steps, ControlError)


def _diverged(steps: npt.NDArray[np.int64], loss: Array, lr: Array | None) -> Finding | None:
    bad_at = np.flatnonzero(~np.isfinite(loss))
    if not len(bad_at):
        return None
    first = int(bad_at[0])
    evidence = {"first_nonfinite_step": float(steps[first]), "last_finite_loss": float(loss[first - 1]) if first else math.nan}
    if lr is not None:
        evidence["lr"] = float(lr[first])
    advice = "the loss became non-finite: lower the lr (3-10x), add warmup or gradient clipping, or train under lrkit.Guard"
    return Finding("lr_too_high", (int(steps[first]), int(steps[-1])), evidence, advice)


def _against_implied(steps: npt.NDArray[np.int64], lr: Array, implied: Array, limit: float) -> list[Finding]:
    """The `implied_lr` finding: the last half's median lr against its median implied lr, if they differ `limit`x or more."""
    half = len(steps) // 2
    both = np.isfinite(lr[half:]) & np.isfinite(implied[half:]) & (implied[half:] > 0)
    if not both.any():
        return []
    used, implied_now = float(np.median(lr[half:][both])), float(np.median(implied[half:][both]))
    factor = used / implied_now
    if 1.0 / limit < factor < limit:
        return []
    evidence = {"lr": used, "implied_lr": implied_now, "ratio": factor}
    if factor >= limit:
        advice = f"your lr is {factor:.3g}x the implied one (sigma_theta / sigma_g): lower it toward {implied_now:.3g}"
    else:
        advice = f"your lr is 1/{1 / factor:.3g} of the implied one (sigma_theta / sigma_g): raise it toward {implied_now:.3g}"
    return [Finding("implied_lr", (int(steps[half]), int(steps[-1])), evidence, advice)]


def _curve(steps: npt.NDArray[np.int64], loss: Array, windows: int) -> _Curve:
    edges = np.linspace(0, len(loss), windows + 1).astype(int)
    bounds = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    levels = np.array([np.median(loss[a:b]) for a, b in bounds])
    residuals = np.concatenate([loss[a:b] - level for (a, b), level in zip(bounds, levels)])
    sigma = 1.4826 * float(np.median(np.abs(residuals)))
    size = len(loss) / windows
    sigma = max(sigma, 1e-12 * max(1.0, abs(float(levels[-1]))))  # a noiseless curve still needs a unit
    se = 1.2533 * sigma / math.sqrt(size)  # standard error of a median of `size` noisy values
    center = np.repeat(levels, [b - a for a, b in bounds])
    return _Curve(steps, loss, bounds, levels, sigma, se, (center - 5 * sigma, center + 5 * sigma))


def _progress_tolerance(curve: _Curve, limits: Thresholds) -> float:
    """Differences between two window medians smaller than this are noise."""
    return limits.significance * curve.se * math.sqrt(2.0)


def spike_limit(recent: npt.ArrayLike, spike: float, floor: float = 1e-3) -> npt.NDArray[np.float64]:
    """The loss above which a new loss is a spike, from the recent losses (along the last axis).

    A spike lies both more than `spike` robust deviations above the median (1.4826 x
    the median absolute deviation, the standard deviation for Gaussian noise) and twice
    as far above the median as the largest recent loss: the second condition keeps
    skewed, heavy-tailed losses (near zero, late in training) from raising false alarms.
    Both are free of the loss's scale and offset, so negative losses work; the deviation
    never drops below `floor` times the level, so a flat loss still has a unit
    (`lrkit.Guard` uses the same test, with a larger floor in a run's first steps).

    Example:
        >>> float(spike_limit([1.0, 2.0, 3.0, 4.0, 5.0], spike=10.0))
        17.826
        >>> float(spike_limit([1.0, 1.0, 1.0, 1.0, 9.0], spike=10.0))
        17.0
    """
    x = np.asarray(recent, dtype=np.float64)
    center = _median(x)
    mad = _median(np.abs(x - center[..., None]))
    deviation = np.maximum(np.maximum(1.4826 * mad, floor * np.abs(center)), 1e-12)
    return np.asarray(center + np.maximum(spike * deviation, 2.0 * (x.max(axis=-1) - center)))


def _median(x: Array) -> Array:
    """Median along the last axis; a plain sort is several times faster than np.median on the guard's short windows."""
    s = np.sort(x, axis=-1)
    n = s.shape[-1]
    return np.asarray(0.5 * (s[..., (n - 1) // 2] + s[..., n // 2]))


def _spike_steps(loss: Array, spike: float, least: int = 20) -> npt.NDArray[np.intp]:
    """Indices of losses above the spike limit of the window of losses before them."""
    window = min(100, max(least, len(loss) // 10))
    if len(loss) <= window:
        return np.zeros(0, dtype=np.intp)
    recent = np.lib.stride_tricks.sliding_window_view(loss[:-1], window)
    return np.flatnonzero(loss[window:] > spike_limit(recent, spike)) + window


def _evidence(curve: _Curve, ratio: float, lr: float) -> dict[str, float]:
    """The numbers every finding about the whole curve shows: levels, noise, and what was measured."""
    evidence = {"start_loss": curve.start, "best_loss": curve.best, "final_loss": curve.final, "noise": curve.se}
    if math.isfinite(ratio):
        evidence["median_update_ratio"] = ratio
    if math.isfinite(lr):
        evidence["lr"] = lr
    return evidence


def _lr_advice(lr: float, factor: float) -> str:
    return f" (e.g. lr={lr * factor:.3g})" if math.isfinite(lr) else ""


def _too_high(curve: _Curve, ratio: float, lr: float, limits: Thresholds) -> Finding | None:
    tol = _progress_tolerance(curve, limits)
    spread = max(curve.start - curve.best, float(np.subtract(*np.quantile(curve.loss, [0.75, 0.25]))), tol)
    peak_at = int(np.argmax(curve.loss))
    reference = max(curve.start, float(curve.loss[0]))
    blowup = float(curve.loss[peak_at]) - reference > limits.blowup * spread
    rising = curve.final - curve.best > max(tol, limits.min_progress * spread)
    stuck_loud = curve.start - curve.best <= tol and ratio > limits.ratio_high
    spikes = _spike_steps(curve.loss, limits.spike)
    spiky = len(spikes) >= limits.spikes
    if not (rising or stuck_loud or spiky):  # an early blow-up the run recovered from is evidence, not a verdict
        return None
    evidence = _evidence(curve, ratio, lr)
    if spiky:
        evidence |= {"spikes": float(len(spikes)), "first_spike_step": float(curve.steps[spikes[0]])}
    if blowup:
        evidence |= {"peak_loss": float(curve.loss[peak_at]), "peak_step": float(curve.steps[peak_at])}
    what = "the loss rose from its best level" if rising else ("the loss oscillates without progress" if stuck_loud else "")
    what += f"{', and ' if what else 'the loss '}spiked {len(spikes)} times" if spiky else ""
    what += f" (after blowing up to {curve.loss[peak_at]:.3g} at step {curve.steps[peak_at]})" if blowup else ""
    advice = f"{what}: lower the lr 3-10x{_lr_advice(lr, 0.2)}, or add warmup / gradient clipping"
    starts = [int(np.argmin(curve.levels))] if rising else []
    if spiky:
        starts.append(curve.window_of(int(spikes[0])))
    first = 0 if stuck_loud or not starts else min(starts)
    return Finding("lr_too_high", curve.span(first, len(curve.levels) - 1), evidence, advice)


def _too_low(curve: _Curve, ratio: float, lr: float, limits: Thresholds) -> Finding | None:
    tol = _progress_tolerance(curve, limits)
    no_progress = curve.start - curve.best <= tol and not ratio > limits.ratio_high
    tiny_updates = ratio < limits.ratio_low
    if not (no_progress or tiny_updates):
        return None
    evidence = _evidence(curve, ratio, lr)
    scale = min(1e-3 / ratio, 1e3) if tiny_updates and ratio > 0 else 10.0
    what = f"weights barely move (update/weight {ratio:.2g} per step, far below ~1e-3)" if tiny_updates else "the loss made no progress"
    advice = f"{what}: raise the lr about {scale:.3g}x{_lr_advice(lr, scale)}, or run lrkit.find_lr"
    return Finding("lr_too_low", curve.span(0, len(curve.levels) - 1), evidence, advice)


def _plateau(curve: _Curve, limits: Thresholds) -> Finding | None:
    first, last = _longest_stall(curve, limits)
    windows = len(curve.levels)
    if last - first + 1 < math.ceil(limits.plateau_fraction * windows):
        return None
    start, end = curve.span(first, last)
    evidence = {
        "stall_steps": float(end - start + 1),
        "level": float(curve.levels[first]),
        "best_after": float(curve.levels[first : last + 1].min()),
        "progress_before": curve.start - float(curve.levels[first]),
        "noise": curve.se,
    }
    if _converged(curve, first, last, limits):
        advice = "the loss has reached its floor (its descent slowed, then settled): the lr is not the problem; "
        return Finding("converged", (start, end), evidence, advice + "stop earlier (lrkit.EarlyStopping) or change the model or data")
    advice = "no progress for a long stretch: drop the lr there (step_decay / multistep) or attach lrkit.Plateau"
    return Finding("plateau", (start, end), evidence, advice)


def _converged(curve: _Curve, first: int, last: int, limits: Thresholds) -> bool:
    """Whether a stall over windows first..last is a run at its floor: at the end, after a descent that had slowed, with low noise."""
    descent = curve.start - float(curve.levels[first])
    if last != len(curve.levels) - 1 or first < 2 or descent <= 0:
        return False
    second_half = float(curve.levels[first // 2]) - float(curve.levels[first])
    return second_half < limits.converged_tail * descent and curve.se < limits.converged_noise * descent


def _longest_stall(curve: _Curve, limits: Thresholds) -> tuple[int, int]:
    """The longest run of windows, after some progress, whose trend does not fall significantly."""
    levels, tol = curve.levels, _progress_tolerance(curve, limits)
    best = (0, -1)
    for i in range(1, len(levels)):
        progress = curve.start - float(levels[: i + 1].min())
        if progress <= tol:
            continue  # nothing learned yet: that is `lr_too_low`'s business, not a plateau
        for j in range(len(levels) - 1, i + best[1] - best[0], -1):
            if _stalled(curve, i, j, limits.min_progress * progress, limits.significance):
                best = (i, j)
                break
    return best


def _stalled(curve: _Curve, first: int, last: int, tol: float, significance: float) -> bool:
    """Whether the least-squares trend over windows first..last falls by no more than noise or `tol`."""
    lo, hi = curve.bounds[first][0], curve.bounds[last][1]
    t = curve.steps[lo:hi].astype(np.float64)
    y = np.clip(curve.loss[lo:hi], curve.band[0][lo:hi], curve.band[1][lo:hi])  # spikes would tilt the fit
    slope = np.polyfit(t, y, 1)[0] if len(t) > 2 else 0.0
    drop = -float(slope) * float(t[-1] - t[0])
    noise = significance * curve.sigma * math.sqrt(12.0 / len(t))  # standard error of that drop, times significance
    return drop <= max(noise, tol)


def _healthy(curve: _Curve, ratio: float) -> Finding:
    return Finding(
        "healthy", curve.span(0, len(curve.levels) - 1), _evidence(curve, ratio, math.nan), "the loss falls steadily: nothing to change"
    )
