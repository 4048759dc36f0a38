"""Suggestion rules of the learning-rate range test: pure functions of `(lrs, losses)`.

Every rule takes the lrs of a range test and the loss at each of them, and
returns one learning rate. The classic rules read the EMA-smoothed curve and see
it the same way (`prepare`): everything from the first non-finite loss on is
dropped, then the first 10% and the last 5 points are trimmed, as fastai does.
Derivatives are taken in log-lr. lrkit's rule reads the raw losses and smooths
them without lag (`smooth_centred`); `suggest_all` feeds each rule its curve.

Rules (``RULES``):

- ``valley``: fastai's default; the middle of the longest strictly decreasing run.
- ``steep``: the steepest descent of the loss per unit of log-lr.
- ``minimum``: the lr at the loss minimum, divided by 10.
- ``slide``: Novetta's rule, with a threshold relative to the curve's range (so it is scale-free).
- ``lrkit``: the default, designed from `lrkit bench finder` (see `lrkit_rule`).

A metric where higher is better is negated by `objective` before any rule reads it.

Example:
    >>> import numpy as np
    >>> lrs = np.logspace(-4, 1, 100)
    >>> losses = 1.0 / (1.0 + (lrs / 1e-2) ** 2) + (lrs / 0.5) ** 4
    >>> {name: round(float(np.log10(rule(lrs, losses))), 1) for name, rule in RULES.items()}
    {'lrkit': -1.5, 'valley': -2.3, 'steep': -2.0, 'minimum': -1.9, 'slide': -0.5}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import FinderError

Array = npt.NDArray[np.float64]
Rule = Callable[[npt.ArrayLike, npt.ArrayLike], float]

SKIP_START = 0.1  # the first 10% of a test: the optimizer has barely moved, the curve is mostly noise
SKIP_END = 5  # the last points: the loss is exploding and the smoothing lags behind it
FLAT_NOISE = 3.0  # a lag-free curve that moves by no more than 3x the step-to-step noise carries no signal
FLAT_RELATIVE = 1e-6  # ... nor one that moves by less than a millionth of its level (float rounding of a constant loss)
KERNEL_RADIUS = 9.0  # sigmas: exp(-0.5 * 9**2) < 1e-17, below float64's resolution of the window's sum


def objective(values: npt.ArrayLike, higher_is_better: bool) -> Array:
    """The recorded signal as a quantity to minimise: the one place a "higher is better" metric is negated.

    The suggestion rules, the bounds, the warnings and the finder's divergence test all minimise.

    Example:
        >>> objective([0.5, 0.9], higher_is_better=True).tolist()
        [-0.5, -0.9]
    """
    array = np.asarray(values, dtype=np.float64)
    return -array if higher_is_better else array


class Ema:
    """The bias-corrected exponential moving average, one value at a time: `v_t / (1 - beta**t)`.

    The one smoother of the range test: `smooth` runs it over a recorded curve and the
    finder's divergence test runs it live, so both see the same numbers.

    Example:
        >>> ema = Ema(0.5)
        >>> [round(ema.update(v), 4) for v in (1.0, 1.0, 4.0)]
        [1.0, 1.0, 2.7143]
    """

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = validate.probability("Ema", "beta", beta, FinderError)
        self.average, self.count = 0.0, 0

    def update(self, value: float) -> float:
        """Add one value; return the smoothed value so far."""
        self.count += 1
        self.average = self.beta * self.average + (1.0 - self.beta) * value
        return self.average / (1.0 - self.beta**self.count)


def smooth(losses: npt.ArrayLike, beta: float = 0.98) -> Array:
    """The bias-corrected exponential moving average `v_t / (1 - beta**t)` (fastai's, Lightning's) of a curve.

    It is affine-equivariant: `smooth(a * x + b) == a * smooth(x) + b`, so rules and the
    divergence test built on it work for negative losses and any loss scale.

    Example:
        >>> smooth([1.0, 1.0, 4.0], beta=0.5).round(4).tolist()
        [1.0, 1.0, 2.7143]
    """
    ema = Ema(validate.probability("smooth", "beta", beta, FinderError))
    return np.array([ema.update(v) for v in np.asarray(losses, dtype=np.float64).ravel()], dtype=np.float64)


def finite_prefix(lrs: npt.ArrayLike, losses: npt.ArrayLike, func: str = "finite_prefix") -> tuple[Array, Array]:
    """The curve up to its first non-finite loss, at positive lrs (a linear test may start at 0); at least 3 points.

    Example:
        >>> finite_prefix([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 4.0, 3.0, 2.0, float("inf")])[0].tolist()
        [1.0, 2.0, 3.0]
    """
    x = np.asarray(lrs, dtype=np.float64).ravel()
    y = np.asarray(losses, dtype=np.float64).ravel()
    if x.shape != y.shape:
        validate.fail(func, "losses", f"must have one loss per lr ({x.size})", y.size, FinderError)
    bad_at = np.flatnonzero(~np.isfinite(y) | ~np.isfinite(x))
    cut = int(bad_at[0]) if bad_at.size else x.size
    positive = x[:cut] > 0
    x, y = x[:cut][positive], y[:cut][positive]
    if x.size < 3:
        validate.fail(func, "losses", "must start with at least 3 finite losses at positive lrs", x.size, FinderError)
    return x, y


def prepare(lrs: npt.ArrayLike, losses: npt.ArrayLike, func: str = "prepare") -> tuple[Array, Array]:
    """The part of a curve every rule looks at: finite, positive lrs, without the noisy start and exploding end.

    Example:
        >>> lrs, losses = prepare(range(1, 41), [3.0] * 35 + [float("nan")] * 5)
        >>> lrs[0], lrs[-1], lrs.size  # 35 finite points: the first 3 and the last 5 go
        (np.float64(4.0), np.float64(30.0), 27)
    """
    x, y = finite_prefix(lrs, losses, func)
    n = x.size
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


def steep(lrs: npt.ArrayLike, losses: npt.ArrayLike) -> float:
    """The lr where the loss falls fastest per unit of log-lr.

    Example:
        >>> steep([1, 10, 100, 1000], [4.0, 3.5, 1.0, 0.9])
        10.0
    """
    x, y = prepare(lrs, losses, "steep")
    slopes = np.diff(y) / np.diff(np.log(x))  # forward differences, as fastai's `steep`
    return float(x[int(np.argmin(slopes))])


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
        -1.73
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


def smooth_centred(losses: npt.ArrayLike, width: float = 0.04) -> Array:
    """A lag-free smoothing: a Gaussian window over neighbouring points (sigma = `width` x the number of points).

    The range test's EMA lags by about `1 / (1 - beta)` points (50 at beta = 0.98: four decades of a
    default test), which moves every feature of the curve to larger lrs; a centred window does not.
    Each point is the weighted mean of its neighbours, the weights renormalised at the ends of the
    curve. The window is cut where its weight falls below 1e-17 of its peak (`KERNEL_RADIUS` sigmas),
    so memory is O(n) and the values equal the full window's to about 1e-15.

    Example:
        >>> smooth_centred([0.0, 0.0, 3.0, 0.0, 0.0], width=0.0).tolist()
        [0.0, 0.0, 3.0, 0.0, 0.0]
    """
    y = np.asarray(losses, dtype=np.float64).ravel()
    if y.size == 0:
        return np.empty(0, dtype=np.float64)
    sigma = max(width * y.size, 1e-9)
    radius = min(y.size - 1, math.ceil(KERNEL_RADIUS * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    weighted = np.convolve(y, kernel)[radius : radius + y.size]
    # the weight each point's window keeps inside the curve: kernel[radius - left : radius + right + 1]
    cumulative = np.concatenate(([0.0], np.cumsum(kernel)))
    i = np.arange(y.size)
    left, right = np.minimum(radius, i), np.minimum(radius, y.size - 1 - i)
    return np.asarray(weighted / (cumulative[radius + right + 1] - cumulative[radius - left]), dtype=np.float64)


def lrkit_rule(lrs: npt.ArrayLike, losses: npt.ArrayLike, fraction: float = 0.1) -> float:
    """lrkit's default, read on the RAW losses: where the lag-free curve has made 90% of its descent.

    The curve is smoothed without lag (`smooth_centred`); the rule returns the first lr at which
    the loss is within `fraction` of its total drop (from the median of the first 10% of losses
    to the minimum) from the minimum: the end of the valley, Smith's "where the improvement slows".
    Designed on `lrkit bench finder` runs with seeds 100 and 101 (the reported benchmark uses seeds
    0-2): against the lr at the minimum / k, the geometric means of several anchors and the classic
    rules, it had the lowest median regret with the most cells within 10% and the mildest worst case.

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-4, 0, 101)
        >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.5) + np.exp(4.0 * (np.log10(lrs) + 0.5))
        >>> round(float(np.log10(lrkit_rule(lrs, losses))), 2)
        -1.72
    """
    x, y = finite_prefix(lrs, losses, "lrkit_rule")
    smoothed = smooth_centred(y)
    first = int(SKIP_START * y.size)
    level = float(np.median(y[: max(3, y.size // 10)]))
    i_min = first + int(np.argmin(smoothed[first:]))
    drop = level - float(smoothed[i_min])
    if drop <= 0:
        return float(x[first])  # the loss never fell: the smallest lr looked at (curve_warnings says why)
    reached = np.flatnonzero(smoothed[first : i_min + 1] <= level - (1.0 - fraction) * drop)
    return float(x[first + int(reached[0])])


RULES: dict[str, Rule] = {"lrkit": lrkit_rule, "valley": valley, "steep": steep, "minimum": minimum, "slide": slide}
DEFAULT_RULE = "lrkit"
RAW_RULES = frozenset({"lrkit"})  # rules that read raw losses (they smooth without lag themselves)


def get_rule(name: str) -> Rule:
    """A rule by name; an unknown name lists the valid ones.

    Example:
        >>> get_rule("minimum")([1, 10, 100], [3.0, 1.0, 2.0])
        1.0
    """
    return RULES[validate.choice("get_rule", "name", name, FinderError, sorted(RULES))]


def suggest_all(
    lrs: npt.ArrayLike, losses: npt.ArrayLike, smoothing: float = 0.98, rules: Sequence[str] | None = None
) -> dict[str, float | None]:
    """Every rule's suggestion by name from the RAW losses; `None` where the curve is too short to judge.

    The classic rules read the EMA-smoothed curve (`smooth(losses, smoothing)`), as fastai's do;
    the rules in `RAW_RULES` (lrkit's) read the raw losses and smooth them without lag themselves.

    Example:
        >>> suggest_all([1, 10, 100], [3.0, 1.0, 2.0], smoothing=0.0, rules=["minimum", "steep"])
        {'minimum': 1.0, 'steep': 1.0}
    """
    names = list(RULES) if rules is None else list(rules)
    smoothed = smooth(losses, smoothing)
    out: dict[str, float | None] = {}
    for name in names:
        rule = get_rule(name)
        try:
            out[name] = rule(lrs, losses if name in RAW_RULES else smoothed)
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
        (-2.9, -1.0)
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


def no_signal(lrs: npt.ArrayLike, losses: npt.ArrayLike) -> str | None:
    """Why the curve carries no signal to suggest an lr from (a warning), or None when it does.

    The signal is the range (highest minus lowest) of the lag-free curve (`smooth_centred` of the raw
    losses up to the first non-finite one); the noise is the median absolute distance of the raw
    losses from that curve. A curve has no signal when its range is at most `FLAT_NOISE` (3) times its
    noise, or at most `FLAT_RELATIVE` (1e-6) times its median absolute level: the loss does not respond
    to the lr. A descent, a valley or a divergence all move the curve far beyond that.

    Example:
        >>> import numpy as np
        >>> lrs = np.logspace(-5, 1, 100)
        >>> no_signal(lrs, np.full(100, 0.7))[:10], no_signal(lrs, 2.0 - np.tanh(np.log10(lrs) + 2))
        ('no signal:', None)
    """
    try:
        _, y = finite_prefix(lrs, losses, "no_signal")
    except FinderError:
        return None  # too short to judge: curve_warnings says so
    centred = smooth_centred(y)
    change, noise = float(np.ptp(centred)), float(np.median(np.abs(y - centred)))
    if change > max(FLAT_NOISE * noise, FLAT_RELATIVE * float(np.median(np.abs(y)))):
        return None
    return (
        f"no signal: over the whole ramp the loss moves by {change:.2g}, within its noise ({noise:.2g}); no lr is suggested. "
        "Check that the loss depends on the weights (and the lr reaches them), or widen the ramp"
    )


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
