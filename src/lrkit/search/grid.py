"""The candidates of a learning-rate search: peak lrs × schedule shapes × weight decays, sized to the budget.

Pure: a candidate's schedule is an lrkit `Schedule` over optimizer steps whose peak is the
candidate's lr, so the winner is a value a user replays with `lrkit.Scheduler`.

Shapes (each sized to `total_steps`, the whole budget):

- `constant`: the peak throughout.
- `cosine`: a half cosine from the peak to 0.
- `one_cycle`: Smith's 1cycle with torch's `OneCycleLR` defaults around the peak (30% warm-up from
  peak/25, cosine annealing to peak/25/1e4).
- `wsd`: warmup-stable-decay, 5% linear warm-up, 20% linear decay to 0.
- `linear`: a straight line from the peak to 0.
- `step_decay`: the peak, ÷10 at 50% and again at 75% of the budget.

A user's own schedule is scaled by each peak (its own peak should be 1).

Example:
    >>> cands = candidates([0.01, 0.1], ("constant", "cosine"), (0.0,), total_steps=100)
    >>> [(c.lr, c.shape) for c in cands]
    [(0.01, 'constant'), (0.1, 'constant'), (0.01, 'cosine'), (0.1, 'cosine')]
    >>> cands[3].schedule(0), cands[3].schedule(100)
    (0.1, 0.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrkit import validate
from lrkit.errors import FinderError
from lrkit.schedules import Schedule, constant, cosine, linear, multistep, one_cycle, wsd

SHAPES = ("constant", "cosine", "one_cycle", "wsd", "linear", "step_decay")
WSD_WARMUP, WSD_DECAY = 0.05, 0.20  # the fractions of the budget the `wsd` shape warms up and decays over
LR_RANGE = (1e-6, 10.0)  # the default grid's ends
PER_DECADE = 4  # the default grid's density: neighbours 10**0.25 = 1.78x apart
MAX_CANDIDATES = 4096
FUNC = "search_lr"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One searched configuration: a peak lr, a shape and a weight decay, and its schedule over the budget.

    Example:
        >>> Candidate(0.1, "constant", 0.0, constant(0.1)).schedule(5)
        0.1
    """

    lr: float
    shape: str
    weight_decay: float
    schedule: Schedule

    def to_dict(self) -> dict[str, Any]:
        """The candidate as the result stores it (the schedule as spec text).

        Example:
            >>> Candidate(0.1, "cosine", 0.0, cosine(start=0.1, steps=10)).to_dict()["spec"]
            'cosine(start=0.1, steps=10)'
        """
        return {"lr": self.lr, "shape": self.shape, "weight_decay": self.weight_decay, "spec": repr(self.schedule)}


def default_lrs() -> list[float]:
    """The default candidate peaks: a log grid over 1e-6 … 10, four per decade (29 lrs).

    Four per decade keeps neighbours 1.78x apart, finer than the finder benchmark's 12-point grid (2.3x);
    lrs that diverge leave the computation at once, so the wide range costs little.

    Example:
        >>> lrs = default_lrs()
        >>> len(lrs), lrs[0], lrs[-1]
        (29, 1e-06, 10.0)
    """
    lo, hi = (math.log10(v) for v in LR_RANGE)
    count = round((hi - lo) * PER_DECADE) + 1
    return [float(f"{v:.6g}") for v in np.logspace(lo, hi, count)]


def shaped(shape: str, peak: float, total_steps: int) -> Schedule:
    """The schedule of `shape` with peak lr `peak`, sized to `total_steps` optimizer steps.

    Example:
        >>> shaped("step_decay", 1.0, 100).values([0, 49, 50, 75]).round(6).tolist()
        [1.0, 1.0, 0.1, 0.01]
        >>> s = shaped("wsd", 1.0, 100)
        >>> s(0), s(5), s(80), s(100)
        (0.0, 1.0, 1.0, 0.0)
    """
    validate.choice(FUNC, "shapes", shape, FinderError, SHAPES)
    n = validate.integer(FUNC, "total_steps", total_steps, FinderError)
    if shape == "constant":
        return constant(peak)
    if n < 2:
        need = f"times the batches per epoch must give at least 2 optimizer steps for the shape {shape!r}"
        validate.fail(FUNC, "epochs", need, n, FinderError)
    if shape == "cosine":
        return cosine(start=peak, steps=n)
    if shape == "one_cycle":
        return one_cycle(peak=peak, total_steps=n)
    if shape == "wsd":
        return wsd(peak=peak, total_steps=n, warmup_steps=max(1, round(WSD_WARMUP * n)), decay_steps=max(1, round(WSD_DECAY * n)))
    if shape == "linear":
        return linear(start=peak, end=0.0, steps=n)
    return multistep(start=peak, milestones=tuple(sorted({max(1, n // 2), max(2, (3 * n) // 4)})), factor=0.1)


def candidates(
    lrs: Sequence[float], shapes: Sequence[str | Schedule], weight_decays: Sequence[float], total_steps: int
) -> list[Candidate]:
    """Every peak × shape × weight decay, in that nesting (shapes outermost, then weight decays, then lrs).

    Example:
        >>> [c.schedule for c in candidates([0.5], [constant(1.0) * cosine(start=1.0, steps=4)], [0.0], 4)]
        [0.5 * (constant(value=1.0) * cosine(start=1.0, steps=4))]
    """
    peaks = checked_lrs(lrs)
    kinds = validate.sequence(FUNC, "shapes", shapes, FinderError)
    given = validate.sequence(FUNC, "weight_decays", weight_decays, FinderError)
    decays = [validate.non_negative(FUNC, "weight_decays", w, FinderError) for w in given]
    for param, items in (("shapes", kinds), ("weight_decays", decays)):
        if not items:
            validate.fail(FUNC, param, "must hold at least one value", list(items), FinderError)
        if len({repr(i) for i in items}) != len(items):
            validate.fail(FUNC, param, "must name each one once", list(items), FinderError)
    if len(peaks) * len(kinds) * len(decays) > MAX_CANDIDATES:
        validate.fail(FUNC, "lrs", f"times shapes and weight decays must give at most {MAX_CANDIDATES} candidates", len(peaks), FinderError)
    return [_candidate(kind, lr, decay, total_steps) for kind in kinds for decay in decays for lr in peaks]


def _candidate(kind: str | Schedule, lr: float, decay: float, total_steps: int) -> Candidate:
    if isinstance(kind, Schedule):
        return Candidate(lr, "custom", decay, lr * kind)
    validate.instance(FUNC, "shapes", kind, FinderError, str, "shape names or lrkit schedules")
    return Candidate(lr, kind, decay, shaped(kind, lr, total_steps))


def checked_lrs(lrs: Sequence[float]) -> list[float]:
    """The candidate peaks: a non-empty sequence of finite, positive lrs, each once.

    Example:
        >>> try:
        ...     checked_lrs([0.1, -1.0])
        ... except FinderError as e:
        ...     print(e)
        search_lr: parameter 'lrs' must hold finite lrs > 0, got -1.0
    """
    values = validate.sequence(FUNC, "lrs", lrs, FinderError)
    if not values:
        validate.fail(FUNC, "lrs", "must hold at least one candidate lr", list(values), FinderError)
    peaks = []
    for v in values:
        x = validate.number(FUNC, "lrs", v, FinderError)
        if not (math.isfinite(x) and x > 0):
            validate.fail(FUNC, "lrs", "must hold finite lrs > 0", v, FinderError)
        peaks.append(x)
    if len(set(peaks)) != len(peaks):
        validate.fail(FUNC, "lrs", "must name each lr once", peaks, FinderError)
    return peaks


def halving_rungs(epochs: int, eta: int = 3) -> list[int]:
    """The epochs at which successive halving keeps the best 1/eta of the population (the last is `epochs`).

    Rungs at epochs/eta**2 and epochs/eta (at least one epoch, each later than the one before): the
    first cut waits for a ninth of the budget, which keeps the short-horizon bias towards too-large
    lrs small (the benchmark measures it).

    Example:
        >>> halving_rungs(30), halving_rungs(8), halving_rungs(2), halving_rungs(1)
        ([3, 10, 30], [1, 3, 8], [1, 2], [1])
    """
    rungs: list[int] = []
    for k in (2, 1):
        e = max(1, round(epochs / eta**k))
        if e < epochs and (not rungs or e > rungs[-1]):
            rungs.append(e)
    return [*rungs, epochs]
