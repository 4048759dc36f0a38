"""Cycles and multi-phase schedules: SGDR warm restarts, Smith's cyclic lr,
1cycle, and warmup-stable-decay."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules.base import MAX_STEP, Schedule, Steps, register
from lrkit.schedules.shapes import anneal_poly, cos_height

Array = npt.NDArray[np.float64]
_SGDR_TABLE = 4096  # SGDR: up to this many cycles, steps find theirs in a table


@register("sgdr")
@dataclasses.dataclass(frozen=True, repr=False)
class SGDR(Schedule):
    """Cosine annealing with warm restarts (Loshchilov & Hutter, 2017).

    Cycle `i` lasts `first_cycle * cycle_mult**i` steps and anneals from
    `start * peak_decay**i` to `end` (torch's CosineAnnealingWarmRestarts when
    `peak_decay=1` and `cycle_mult` is an integer). With `decay_height=True` the
    decay shrinks the height above `end` instead: cycle `i` starts at
    `end + (start - end) * peak_decay**i` (Keras' CosineDecayRestarts: a fixed floor
    `alpha * initial` under a peak that shrinks by `m_mul` each restart).

    Example:
        >>> import lrkit
        >>> lrkit.sgdr(start=1.0, first_cycle=2).values(range(5)).round(6).tolist()
        [1.0, 0.5, 1.0, 0.5, 1.0]
    """

    start: float
    first_cycle: int
    cycle_mult: float = 1.0
    end: float = 0.0
    peak_decay: float = 1.0
    decay_height: bool = False
    quiet: ClassVar[tuple[str, ...]] = ("decay_height",)

    def _validate(self) -> None:
        self._check("start", validate.non_negative)
        self._duration("first_cycle")
        self._check("cycle_mult", validate.number)
        if self.cycle_mult < 1:
            validate.fail(self.name, "cycle_mult", "must be >= 1", self.cycle_mult, ScheduleError)
        self._check("end", validate.non_negative)
        self._check("peak_decay", validate.positive)
        self._check("decay_height", validate.flag)

    def _cycles(self, t: Steps) -> tuple[Array, Array | float, Array | float]:
        """Each step's position in its cycle, the cycle's length and its decay (`peak_decay**i`).

        With a whole `cycle_mult` the cycles have whole lengths, so the position is an integer remainder,
        exact at any step (a float step would lose the phase past 2**53); otherwise the boundaries are
        real numbers, found in float64.
        """
        if self.cycle_mult == 1.0:
            i, position = np.divmod(t, self.first_cycle)
            decay = np.power(self.peak_decay, i) if self.peak_decay != 1.0 else 1.0
            return position.astype(np.float64), float(self.first_cycle), decay
        if float(self.cycle_mult).is_integer():
            return self._whole_cycles(t)
        return self._real_cycles(t.astype(np.float64))

    def _whole_cycles(self, t: Steps) -> tuple[Array, Array, Array]:
        """`_cycles` for an integer cycle_mult >= 2: the cycle starts as exact integers (at most 63 of them in int64)."""
        m, top = int(self.cycle_mult), int(t.max(initial=0))
        starts = [0]
        while starts[-1] <= top:
            starts.append(starts[-1] + self.first_cycle * m ** (len(starts) - 1))
        begins = np.array(starts[:-1], dtype=np.int64)
        spans = np.diff(np.array(starts, dtype=np.float64))
        peaks = np.power(self.peak_decay, np.arange(begins.size, dtype=np.float64))
        i = np.searchsorted(begins, t, side="right") - 1
        return (t - begins[i]).astype(np.float64), spans[i], peaks[i]

    def _real_cycles(self, t: Array) -> tuple[Array, Array, Array]:
        """`_cycles` for a fractional cycle_mult > 1, in float64."""
        count = int(self._estimate(t.max(initial=0.0))) + 2
        if count <= _SGDR_TABLE:
            # few cycles (any real run): look each step up in a table of them, cheaper than a log and powers per step
            table = self._cycle(np.arange(count, dtype=np.float64))
            row = np.searchsorted(table[0], t, side="right") - 1
            return t - table[0][row], table[1][row], table[2][row]
        # the logarithm can land one cycle off at exact boundaries: correct it
        i = self._estimate(t)
        i = np.where(self._cycle(i)[0] > t, i - 1.0, i)
        i = np.where(self._cycle(i + 1.0)[0] <= t, i + 1.0, i)
        begin, span, peak = self._cycle(i)
        return t - begin, span, peak

    def _estimate(self, t: Array) -> Array:
        """The cycle holding step t by logarithm, possibly one off at a boundary (capping keeps a huge cycle_mult finite)."""
        first, m = float(self.first_cycle), self.cycle_mult
        with np.errstate(over="ignore"):
            cycle: Array = np.floor(np.log1p(np.minimum(t / first * (m - 1.0), 1e300)) / np.log(m))
        return cycle

    def _cycle(self, i: Array) -> tuple[Array, Array, Array]:
        """Start, length and decay of cycles `i` (cycle_mult > 1; overflowing cycles start at inf)."""
        first, m = float(self.first_cycle), self.cycle_mult
        with np.errstate(over="ignore"):
            power = m**i
        return first * (power - 1.0) / (m - 1.0), first * power, np.power(self.peak_decay, i)

    def _values(self, t: Steps) -> Array:
        x, span, decay = self._cycles(t)
        # the angle pi * (t - begin) / span in torch's order, in place: a million steps make no temporaries
        x *= np.pi
        x /= span
        drop = (self.start - self.end) * decay if self.decay_height else self.start * decay - self.end
        x = cos_height(x, drop / 2.0)
        x += self.end
        return x


CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@register("cyclic")
@dataclasses.dataclass(frozen=True, repr=False)
class Cyclic(Schedule):
    """Smith's cyclical learning rate: a triangle between `low` and `high`.

    `triangular2` halves the amplitude each cycle; `exp_range` scales it by
    `gamma**t`. Equal to torch's CyclicLR with `step_size_up = half_cycle` and
    `step_size_down = half_cycle_down` (None: the same as `half_cycle`). `inverted`
    starts each cycle at `high` and falls to `low` (torch's cycled momentum).

    Example:
        >>> import lrkit
        >>> lrkit.cyclic(low=0.1, high=0.5, half_cycle=2).values(range(5)).round(6).tolist()
        [0.1, 0.3, 0.5, 0.3, 0.1]
    """

    low: float
    high: float
    half_cycle: int
    mode: str = "triangular"
    gamma: float = 1.0
    half_cycle_down: int | None = None
    inverted: bool = False
    quiet: ClassVar[tuple[str, ...]] = ("half_cycle_down", "inverted")

    def _validate(self) -> None:
        self._check("low", validate.non_negative)
        self._check("high", validate.non_negative)
        if self.low > self.high:
            validate.fail(self.name, "low", f"must be <= high ({self.high})", self.low, ScheduleError)
        self._duration("half_cycle", maximum=MAX_STEP // 2)  # a whole cycle, 2 * half_cycle, is a step too
        self._check("mode", validate.choice, CYCLIC_MODES)
        self._check("gamma", validate.in_range, 0.0, 1.0, open_low=True)
        if self.half_cycle_down is not None:
            self._duration("half_cycle_down", maximum=MAX_STEP // 2)
        self._check("inverted", validate.flag)

    def _values(self, t: Steps) -> Array:
        up = self.half_cycle
        down = up if self.half_cycle_down is None else self.half_cycle_down
        period = up + down
        # the cycle and the place in it as integers, exact at any step (a float step loses the phase past 2**53)
        done, place = np.divmod(t, period)
        if up == down:
            # torch's x / 0.5 up the triangle and (x - 1) / (0.5 - 1) down it, with x = place / period: both are scalings by 2
            height = (self.high - self.low) * (np.minimum(place, period - place) / self.half_cycle)
        else:
            height = (self.high - self.low) * np.where(place <= up, place / up, (period - place) / down)
        if self.mode == "triangular2":
            # halving per cycle from a table of 2**-k: exactly height / 2**(cycle - 1); past 1100 halvings every double is 0
            halvings = np.minimum(done, 1100).astype(np.intp)
            height = height * np.ldexp(1.0, -np.arange(int(halvings.max(initial=0)) + 1))[halvings]
        elif self.mode == "exp_range":
            height = height * np.power(self.gamma, t)
        lrs: Array = self.high - height if self.inverted else self.low + height
        return lrs


@register("one_cycle")
@dataclasses.dataclass(frozen=True, repr=False)
class OneCycle(Schedule):
    """Smith's 1cycle, with exactly the numbers of torch's OneCycleLR.

    Warms from `peak/div_factor` to `peak` over `pct_start` of `total_steps`, then
    anneals to `peak/div_factor/final_div_factor` (with `three_phase`, first back
    to the initial lr); holds the last value after `total_steps`.

    Example:
        >>> import lrkit
        >>> s = lrkit.one_cycle(peak=1.0, total_steps=100)
        >>> round(s(0), 6), round(s(29), 6), s(99) < 1e-5
        (0.04, 1.0, True)
    """

    peak: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False

    def _validate(self) -> None:
        self._check("peak", validate.non_negative)
        self._duration("total_steps", minimum=2)
        self._check("pct_start", validate.in_range, 0.0, 1.0, open_low=True)
        self._check("div_factor", validate.positive)
        self._check("final_div_factor", validate.positive)
        self._check("anneal", validate.choice, ("cos", "linear"))
        self._check("three_phase", validate.flag)

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end_step, start_lr, end_lr) of each phase, as torch's OneCycleLR lays them out."""
        initial = self.peak / self.div_factor
        final = initial / self.final_div_factor
        up = self.pct_start * self.total_steps - 1.0
        last = self.total_steps - 1.0
        if self.three_phase:
            return [(up, initial, self.peak), (2.0 * self.pct_start * self.total_steps - 2.0, self.peak, initial), (last, initial, final)]
        return [(up, initial, self.peak), (last, self.peak, final)]

    def _values(self, t: Steps) -> Array:
        phases = np.array(self._phases())
        ends, lr0, lr1 = phases[:, 0], phases[:, 1], phases[:, 2]
        begins = np.concatenate(([0.0], ends[:-1]))
        # a phase of zero length (pct_start * total_steps == 1) holds its start value: 0 / inf, not 0 / 0
        spans = np.where(ends == begins, np.inf, ends - begins)
        held: Array = np.minimum(t, self.total_steps - 1.0)
        # torch picks the first phase with t <= end_step, else the last; the ends are sorted whenever
        # pct_start * total_steps >= 1, and all negative (so every t >= 0 falls in the last phase) otherwise
        k = np.searchsorted(ends[:-1], held, side="left")
        # the operations of torch's _annealing_cos / _annealing_linear in the same order (so the numbers
        # are equal, not merely close), done in place because this runs over millions of steps
        pct = held - begins[k]
        pct /= spans[k]
        if self.anneal == "linear":
            pct *= (lr1 - lr0)[k]
            pct += lr0[k]
            return pct
        pct *= np.pi
        pct = cos_height(pct, ((lr0 - lr1) / 2.0)[k])
        pct += lr1[k]
        return pct


WSD_DECAYS = ("linear", "cosine", "1-sqrt")


@register("wsd")
@dataclasses.dataclass(frozen=True, repr=False)
class WSD(Schedule):
    """Warmup-stable-decay: linear warmup to `peak`, hold, then decay to `end` over the last `decay_steps`.

    `decay` is `linear`, `cosine` or `1-sqrt` (Hägele et al., 2024). HF's get_wsd_schedule
    options: `warmup` shapes the warmup the same three ways, from `start` (HF's
    `min_lr_ratio * lr`), and `cycles` is the number of cosine waves over the decay (0.5: a half cosine).

    Example:
        >>> import lrkit
        >>> lrkit.wsd(peak=1.0, total_steps=10, warmup_steps=2, decay_steps=4).values(range(11)).tolist()
        [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """

    peak: float
    total_steps: int
    warmup_steps: int
    decay_steps: int
    decay: str = "linear"
    end: float = 0.0
    warmup: str = "linear"
    start: float = 0.0
    cycles: float = 0.5
    quiet: ClassVar[tuple[str, ...]] = ("warmup", "start", "cycles")

    def _validate(self) -> None:
        self._check("peak", validate.non_negative)
        self._duration("total_steps")
        self._duration("warmup_steps", minimum=0)
        self._duration("decay_steps", minimum=0)
        if self.warmup_steps + self.decay_steps > self.total_steps:
            requirement = f"plus warmup_steps must be <= total_steps ({self.total_steps})"
            validate.fail(self.name, "decay_steps", requirement, self.decay_steps, ScheduleError)
        self._check("decay", validate.choice, WSD_DECAYS)
        self._check("end", validate.non_negative)
        self._check("warmup", validate.choice, WSD_DECAYS)
        self._check("start", validate.non_negative)
        self._check("cycles", validate.positive)

    def _ramp(self, t: Steps) -> Array:
        """The warmup's values: from `start` to `peak`, shaped as HF's get_wsd_schedule shapes it."""
        p = t / max(self.warmup_steps, 1)
        if self.warmup == "linear":
            return self.peak * t / max(self.warmup_steps, 1) if self.start == 0.0 else self.start + (self.peak - self.start) * p
        # HF's 0.5 * (1 - cos(pi p)) and 1 - sqrt(1 - p), in its order: they round as HF's do near p = 0
        shape = 0.5 * (1.0 - np.cos(np.pi * p)) if self.warmup == "cosine" else 1.0 - np.sqrt(np.maximum(1.0 - p, 0.0))
        return self.start + (self.peak - self.start) * shape

    def _values(self, t: Steps) -> Array:
        w, d = self.warmup_steps, self.decay_steps
        begin = self.total_steps - d  # integers: the phases' edges are compared exactly at any step
        ramp = self._ramp(t)
        # with no decay phase, `end` still applies from total_steps on, as it does after a decay
        p = np.clip((t - begin) / d, 0.0, 1.0) if d > 0 else (t >= begin).astype(np.float64)
        if self.decay == "linear":
            tail = anneal_poly(self.peak, self.end, p)
        elif self.decay == "cosine":
            # HF's angle (pi * cycles * 2) * p: exactly pi * p for the half cosine of cycles = 0.5
            tail = cos_height(p * (np.pi * self.cycles * 2.0), (self.peak - self.end) / 2.0) + self.end
        else:
            tail = self.end + (self.peak - self.end) * (1.0 - np.sqrt(p))
        # from total_steps on `end` holds, also after a decay of whole cosine waves (cycles=1 ends back at peak)
        return np.where(t < w, ramp, np.where(t < begin, self.peak, np.where(t < self.total_steps, tail, self.end)))
