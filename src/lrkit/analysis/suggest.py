"""Suggestion rules of the learning-rate range test: pure functions of `(lrs, losses)`.

Every rule takes the lrs of a range test and the (usually smoothed) loss at each
of them, and returns one learning rate. Rules see the curve the same way
(`prepare`): everything from the first non-finite loss on is dropped, then the
first 10% and the last 5 points are trimmed, as fastai does. Derivatives are
taken in log-lr, so a rule does not depend on how densely the test sampled.

Rules (``RULES``):

- ``valley``: fastai's default; the middle of the longest strictly decreasing run.
- ``steep``: the steepest descent of the loss per unit of log-lr.
- ``minimum``: the lr at the loss minimum, divided by 10.
- ``slide``: Novetta's rule, with a threshold relative to the curve's range (so it is scale-free).
- ``lrkit``: the default, designed from `lrkit bench finder` (see `lrkit_rule`).

A metric where higher is better is handled by the caller negating it.

Example:
    >>> import numpy as np
    >>> lrs = np.logspace(-4, 1, 100)
    >>> losses = 1.0 / (1.0 + (lrs / 1e-2) ** 2) + (lrs / 0.5) ** 4
    >>> {name: round(float(np.log10(rule(lrs, losses))), 1) for name, rule in RULES.items()}
    {'valley': -1.7, 'steep': -2.0, 'minimum': -2.3, 'slide': -1.6, 'lrkit': -1.9}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from lrkit.errors import FinderError, bad

Array = npt.NDArray[np.float64]
Rule = Callable[[npt.ArrayLike, npt.ArrayLike], float]

SKIP_START = 0.1  # the first 10% of a test: the optimizer has barely moved, the curve is mostly noise
SKIP_END = 5  # the last points: the loss is exploding and the smoothing lags behind it


def smooth(losses: npt.ArrayLike, beta: float = 0.98) -> Array:
    """The bias-corrected exponential moving average `v_t / (1 - beta**t)` (fastai's, Lightning's).

    It is affine-equivariant: `smooth(a * x + b) == a * smooth(x) + b`, so rules and the
    divergence test built on it work for negative losses and any loss scale.

    Example:
        >>> smooth([1.0, 1.0, 4.0], beta=0.5).round(4).tolist()
        [1.0, 1.0, 2.7143]
    """
    x = np.asarray(losses, dtype=np.float64)
    if not 0.0 <= beta < 1.0:
        raise FinderError(bad("smooth", "beta", "must be in [0, 1)", beta))
    out = np.empty_like(x)
    avg = 0.0
    for t, value in enumerate(x, start=1):
        avg = beta * avg + (1.0 - beta) * value
        out[t - 1] = avg / (1.0 - beta**t)
    return out


def prepare(lrs: npt.ArrayLike, losses: npt.ArrayLike, func: str = "prepare") -> tuple[Array, Array]:
    """The part of a curve every rule looks at: finite, positive lrs, without the noisy start and exploding end.

    Example:
        >>> lrs, losses = prepare(range(1, 31), [3.0] * 20 + [float("nan")] * 10)
        >>> lrs.tolist()
        [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    """
    x = np.asarray(lrs, dtype=np.float64).ravel()
    y = np.asarray(losses, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise FinderError(bad(func, "losses", f"must have one loss per lr ({x.size})", y.size))
    bad_at = np.flatnonzero(~np.isfinite(y) | ~np.isfinite(x))
    cut = int(bad_at[0]) if bad_at.size else x.size
    positive = x[:cut] > 0  # a linear test may start at lr 0: log-lr rules skip it
    x, y = x[:cut][positive], y[:cut][positive]
    n = x.size
    if n < 3:
        raise FinderError(bad(func, "losses", "must start with at least 3 finite losses at positive lrs", n))
    start, end = (int(SKIP_START * n), n - SKIP_END) if n >= 30 else (0, n)  # short curves: keep every point
    return x[start:end], y[start:end]


def valley(lrs: npt.ArrayLike, losses: npt.ArrayLike) -> float:
    """fastai's `valley`: the longest strictly decreasing subsequence, at index `start + L//3 + L//6`.

    Example:
        >>> valley([1, 2, 3, 4, 5, 6, 7], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 9.0])
        3.0
    """
    x, y = prepare(lrs, losses, "valley")
    n = y.size
    run = np.ones(n, dtype=np.int64)  # run[i]: the longest decreasing subsequence ending at i
    max_start = max_end = 0
    for i in range(1, n):
        higher = run[:i][y[:i] > y[i]]
        if higher.size:
            run[i] = int(higher.max()) + 1
        if run[i] > run[max_end]:
            max_end = i
            max_start = max_end - int(run[max_end])
    sections = (max_end - max_start) / 3
    return float(x[max_start + int(sections) + int(sections / 2)])


def steepest_index(x: Array, y: Array) -> int:
    """The index of the steepest descent `d loss / d ln lr` (forward differences, as fastai's `steep`)."""
    slopes = np.diff(y) / np.diff(np.log(x))
    return int(np.argmin(slopes))


def steep(lrs: npt.ArrayLike, losses: npt.ArrayLike) -> float:
    """The lr where the loss falls fastest per unit of log-lr.

    Example:
        >>> steep([1, 10, 100, 1000], [4.0, 3.5, 1.0, 0.9])
        10.0
    """
    x, y = prepare(lrs, losses, "steep")
    return float(x[steepest_index(x, y)])


def minimum(lrs: npt.ArrayLike, losses: npt.ArrayLike) -> float:
    """The lr at the loss minimum divided by 10 (Smith's and fastai's `minimum`).

    Example:
        >>> minimum([1, 10, 100], [3.0, 1.0, 2.0])
        1.0
    """
    x, y = prepare(lrs, losses, "minimum")
    return float(x[int(np.argmin(y))] / 10.0)


def slide(lrs: npt.ArrayLike, losses: npt.ArrayLike, window: int = 15, threshold: float = 0.005) -> float:
    """Novetta's `slide`: from the right end, slide a window left until the slope stops changing.

    fastai compares gradients with an absolute threshold (0.005 loss units), so its
    answer changes when the loss is scaled; here the threshold is `threshold` times
    the curve's range, which equals fastai's for a curve spanning one loss unit.

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-3, 0, 60)
        >>> round(float(np.log10(slide(lrs, np.tanh(-np.log10(lrs) - 1.5)))), 2)
        -1.16
    """
    x, y = prepare(lrs, losses, "slide")
    span = float(np.ptp(y)) or 1.0
    grad = np.gradient(y / span)
    window = min(window, max(1, y.size // 3))
    right, left = y.size - 1, y.size - 1 - window
    found = x[left]
    while left >= 0 and abs(grad[right] - grad[left]) > threshold:
        found = x[left]
        right, left = right - 1, left - 1
    return float(found)


def lrkit_rule(lrs: npt.ArrayLike, losses: npt.ArrayLike, margin: float = 4.0) -> float:
    """lrkit's default: the valley's lr, but never closer than `margin` times below the loss minimum.

    Designed from `lrkit bench finder` on held-out seeds: `valley` is the most reliable
    of the classic rules but sometimes sits right at the edge of divergence, where a
    whole training run at that constant lr is unstable; `minimum` (min / 10) is safe
    but often 3x too timid. The geometric mean of the valley and `steep` points,
    capped at `min_lr / margin`, keeps valley's robustness and removes its overshoot.

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-4, 1, 100)
        >>> losses = 1.0 / (1.0 + (lrs / 1e-2) ** 2) + (lrs / 0.5) ** 4
        >>> round(float(np.log10(lrkit_rule(lrs, losses))), 2)
        -1.88
    """
    x, y = prepare(lrs, losses, "lrkit_rule")
    at_min = float(x[int(np.argmin(y))])
    centre = math.sqrt(valley(lrs, losses) * float(x[steepest_index(x, y)]))
    return min(centre, at_min / margin)


RULES: dict[str, Rule] = {"lrkit": lrkit_rule, "valley": valley, "steep": steep, "minimum": minimum, "slide": slide}
DEFAULT_RULE = "lrkit"


def get_rule(name: str) -> Rule:
    """A rule by name; an unknown name lists the valid ones.

    Example:
        >>> get_rule("minimum")([1, 10, 100], [3.0, 1.0, 2.0])
        1.0
    """
    if name not in RULES:
        raise FinderError(bad("get_rule", "name", f"must be one of {sorted(RULES)}", name))
    return RULES[name]


def suggest_all(lrs: npt.ArrayLike, losses: npt.ArrayLike, rules: Sequence[str] | None = None) -> dict[str, float | None]:
    """Every rule's suggestion by name; `None` for a curve too short to judge (fewer than 3 finite points).

    Example:
        >>> suggest_all([1, 10, 100], [3.0, 1.0, 2.0], ["minimum", "steep"])
        {'minimum': 1.0, 'steep': 1.0}
    """
    names = list(RULES) if rules is None else list(rules)
    out: dict[str, float | None] = {}
    for name in names:
        rule = get_rule(name)
        try:
            out[name] = rule(lrs, losses)
        except FinderError:
            out[name] = None
    return out


def bounds(lrs: npt.ArrayLike, losses: npt.ArrayLike, fraction: float = 0.1) -> tuple[float, float]:
    """Smith's range for cyclic and one-cycle schedules: where the loss starts to improve, where it stops.

    `low` is the first lr at which the loss has fallen by `fraction` of its total drop;
    `high` the first at which only `fraction` of the drop is left (the curve slows and
    turns ragged beyond it). Both are read relative to the drop, so any loss scale works.

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-4, 0, 41)
        >>> low, high = bounds(lrs, np.tanh(-np.log10(lrs) - 2.0) + (lrs > 0.5) * 5)
        >>> round(float(np.log10(low)), 1), round(float(np.log10(high)), 1)
        (-2.7, -1.3)
    """
    x, y = prepare(lrs, losses, "bounds")
    i_min = int(np.argmin(y))
    top, bottom = float(y[: i_min + 1].max()), float(y[i_min])
    drop = top - bottom
    if drop <= 0:
        return float(x[0]), float(x[-1])
    low = int(np.argmax(y[: i_min + 1] <= top - fraction * drop))
    high = int(np.argmax(y[: i_min + 1] <= bottom + fraction * drop))
    return float(x[low]), float(x[max(high, low)])


def curve_warnings(lrs: npt.ArrayLike, raw: npt.ArrayLike, smoothed: npt.ArrayLike, reason: str) -> list[str]:
    """What a user should know before trusting a suggestion from this curve.

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-3, 0, 50)
        >>> curve_warnings(lrs, 2 - lrs, 2 - lrs, "completed")
        ['loss never diverged: raise `end`']
    """
    y_raw = np.asarray(raw, dtype=np.float64)
    try:
        _, y = prepare(lrs, smoothed, "curve_warnings")
    except FinderError:
        return ["too few finite losses to judge: lower `start` or `end`"]
    notes = []
    if reason == "completed" and int(np.argmin(y)) >= int(0.9 * y.size):
        notes.append("loss never diverged: raise `end`")
    if reason != "completed" and y.size < 10:
        notes.append("loss diverged almost at once: lower `start`")
    finite = y_raw[: y.size][np.isfinite(y_raw[: y.size])]
    noise = float(np.median(np.abs(np.diff(finite)))) if finite.size > 2 else 0.0
    if float(y[: int(np.argmin(y)) + 1].max() - y.min()) <= 3 * noise:
        notes.append("no clear valley: the loss barely falls below its noise; use more `steps` or `repeats`")
    return notes
