"""Invariants every schedule keeps, checked by hypothesis over EVERY registered factory.

finite, non-negative, pickle / to_dict / JSON / parse(repr) round-trips, values() equal to per-step
calls, the last value holds past the end, and no jump where warmup, wsd, one_cycle and inverse_sqrt
join their pieces.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrkit
from lrkit.schedules import REGISTRY

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)

value = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)
positive = st.floats(1e-3, 10.0, allow_nan=False, allow_infinity=False)
duration = st.integers(1, 400)
decay_rate = st.floats(0.05, 1.0)


@st.composite
def sorted_steps(draw: st.DrawFn, min_size: int = 0, max_size: int = 4) -> list[int]:
    return sorted(draw(st.sets(st.integers(1, 500), min_size=min_size, max_size=max_size)))


@st.composite
def inverse_sqrt(draw: st.DrawFn) -> lrkit.Schedule:
    warmup = draw(st.integers(0, 300))
    timescale = draw(st.none() | duration) if warmup else draw(duration)
    return lrkit.inverse_sqrt(peak=draw(value), warmup_steps=warmup, timescale=timescale)


@st.composite
def piecewise(draw: st.DrawFn) -> lrkit.Schedule:
    bounds = draw(sorted_steps())
    return lrkit.piecewise(boundaries=bounds, values=draw(st.lists(value, min_size=len(bounds) + 1, max_size=len(bounds) + 1)))


@st.composite
def cyclic(draw: st.DrawFn) -> lrkit.Schedule:
    low, high = sorted((draw(value), draw(value)))
    mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
    return lrkit.cyclic(low=low, high=high, half_cycle=draw(duration), mode=mode, gamma=draw(st.floats(0.9, 1.0)))


@st.composite
def one_cycle(draw: st.DrawFn) -> lrkit.Schedule:
    return lrkit.one_cycle(
        peak=draw(value),
        total_steps=draw(st.integers(2, 1000)),
        pct_start=draw(st.floats(0.01, 1.0)),
        div_factor=draw(st.floats(1.0, 100.0)),
        final_div_factor=draw(st.floats(1.0, 1e4)),
        anneal=draw(st.sampled_from(["cos", "linear"])),
        three_phase=draw(st.booleans()),
    )


@st.composite
def wsd(draw: st.DrawFn) -> lrkit.Schedule:
    total = draw(st.integers(1, 1000))
    warm = draw(st.integers(0, total))
    decay = draw(st.integers(0, total - warm))
    kind = draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))
    return lrkit.wsd(peak=draw(value), total_steps=total, warmup_steps=warm, decay_steps=decay, decay=kind, end=draw(value))


SHAPES: dict[str, st.SearchStrategy[lrkit.Schedule]] = {
    "constant": st.builds(lrkit.constant, value),
    "linear": st.builds(lrkit.linear, start=value, end=value, steps=duration),
    "polynomial": st.builds(lrkit.polynomial, start=value, end=value, steps=duration, power=st.floats(0.1, 5.0)),
    "exponential": st.builds(lrkit.exponential, start=value, rate=decay_rate, every=duration, staircase=st.booleans(), floor=value),
    "inverse_time": st.builds(lrkit.inverse_time, start=value, decay=value, every=duration, staircase=st.booleans()),
    "inverse_sqrt": inverse_sqrt(),
    "step_decay": st.builds(lrkit.step_decay, start=value, factor=decay_rate, every=duration),
    "multistep": st.builds(lrkit.multistep, start=value, milestones=sorted_steps(), factor=decay_rate),
    "piecewise": piecewise(),
    "cosine": st.builds(lrkit.cosine, start=value, steps=duration, end=value),
    "sgdr": st.builds(
        lrkit.sgdr, start=value, first_cycle=duration, cycle_mult=st.floats(1.0, 3.0) | st.integers(1, 3), end=value, peak_decay=decay_rate
    ),
    "cyclic": cyclic(),
    "one_cycle": one_cycle(),
    "wsd": wsd(),
}
leaf = st.one_of(*SHAPES.values())


@st.composite
def join(draw: st.DrawFn, inner: st.SearchStrategy[lrkit.Schedule] = leaf) -> lrkit.Schedule:
    bounds = draw(sorted_steps(max_size=3))
    return lrkit.join(draw(st.lists(inner, min_size=len(bounds) + 1, max_size=len(bounds) + 1)), boundaries=bounds)


@st.composite
def clip(draw: st.DrawFn, inner: st.SearchStrategy[lrkit.Schedule] = leaf) -> lrkit.Schedule:
    low = draw(value)
    high = draw(st.none() | st.floats(low, 20.0))
    return lrkit.clip(draw(inner), low=low, high=high)


def combinators(inner: st.SearchStrategy[lrkit.Schedule]) -> dict[str, st.SearchStrategy[lrkit.Schedule]]:
    return {
        "warmup": st.builds(lrkit.warmup, inner, steps=duration, start=value),
        "join": join(inner),
        "clip": clip(inner),
        "per_epoch": st.builds(lrkit.per_epoch, inner, steps_per_epoch=st.integers(1, 50)),
        "scale": st.builds(lambda s, k: k * s, inner, value),
        "product": st.builds(lambda a, b: a * b, inner, inner),
        "swa_schedule": st.builds(
            lrkit.schedules.swa_schedule, inner, swa_start=st.integers(0, 600), swa_lr=value, anneal_steps=st.integers(0, 400),
            anneal=st.sampled_from(["cos", "linear"]),
        ),
    }


# a combinator's argument may itself be a combinator (one level deep keeps examples small)
nested = st.one_of(leaf, *combinators(leaf).values())
STRATEGIES = {**SHAPES, **combinators(nested)}
NAMES = sorted(REGISTRY)
STEPS = np.concatenate([np.arange(0, 1200), [5_000, 123_457, 10**6, 10**9]])


def test_every_registered_factory_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(REGISTRY)


def _check_all(name: str, check: Callable[[lrkit.Schedule], None]) -> None:
    @SETTINGS
    @given(STRATEGIES[name])
    def run(s: lrkit.Schedule) -> None:
        assert type(s).name == name or name in ("scale", "product")
        check(s)

    run()


@pytest.mark.parametrize("name", NAMES)
def test_finite_and_non_negative(name: str) -> None:
    def check(s: lrkit.Schedule) -> None:
        v = s.values(STEPS)
        assert v.shape == STEPS.shape and v.dtype == np.float64
        assert np.all(np.isfinite(v)), s
        assert np.all(v >= 0.0), s

    _check_all(name, check)


@pytest.mark.parametrize("name", NAMES)
def test_round_trips(name: str) -> None:
    def check(s: lrkit.Schedule) -> None:
        for back in (
            pickle.loads(pickle.dumps(s)),
            lrkit.from_dict(s.to_dict()),
            lrkit.from_dict(json.loads(json.dumps(s.to_dict()))),
            lrkit.parse(repr(s)),
        ):
            assert back == s and hash(back) == hash(s), (s, back)
            assert type(back) is type(s) and repr(back) == repr(s)
            np.testing.assert_array_equal(back.values(STEPS[:300]), s.values(STEPS[:300]))

    _check_all(name, check)


@pytest.mark.parametrize("name", NAMES)
def test_values_equal_per_step_calls(name: str) -> None:
    def check(s: lrkit.Schedule) -> None:
        some = [0, 1, 2, 7, 99, 100, 101, 399, 400, 401, 999, 10**6]
        assert s.values(some).tolist() == [s(t) for t in some]
        assert s.values(STEPS)[: len(some)].tolist() == s.values(STEPS[: len(some)]).tolist()
        # order and repetition of the steps asked for do not change the answers
        shuffled = np.array([401, 0, 401, 7, 10**6, 2])
        assert s.values(shuffled).tolist() == [s(int(t)) for t in shuffled]
        # any shape of steps, a single number included, gives values of that shape
        assert s.values(7).shape == () and s.values(7).tolist() == s(7)
        assert s.values(shuffled.reshape(2, 3)).tolist() == s.values(shuffled).reshape(2, 3).tolist()

    _check_all(name, check)


def test_frozen_and_equal_by_value() -> None:
    s = lrkit.cosine(start=0.1, steps=10)
    with pytest.raises(AttributeError):
        s.start = 0.2  # type: ignore[misc]
    assert s == lrkit.cosine(start=0.1, steps=10, end=0.0) and s != lrkit.cosine(start=0.1, steps=11)
    assert lrkit.constant(1) == lrkit.constant(1.0) and lrkit.constant(1.0) != lrkit.linear(1.0, 1.0, 1)
    assert len({s, lrkit.cosine(0.1, 10), lrkit.cosine(0.1, 11)}) == 2


# -- the last value holds past the end --------------------------------------------------------
def horizon(s: lrkit.Schedule) -> int | None:
    """The step from which a finite schedule holds its last value (None: it never settles)."""
    if isinstance(s, (lrkit.schedules.Linear, lrkit.schedules.Polynomial, lrkit.schedules.Cosine)):
        return s.steps
    if isinstance(s, lrkit.schedules.OneCycle):
        return s.total_steps - 1
    if isinstance(s, lrkit.schedules.WSD):
        return s.total_steps
    if isinstance(s, lrkit.schedules.MultiStep):
        return max(s.milestones, default=0)
    if isinstance(s, lrkit.schedules.Piecewise):
        return max(s.boundaries, default=0)
    if isinstance(s, lrkit.schedules.Constant):
        return 0
    return None


FINITE = ["constant", "linear", "polynomial", "multistep", "piecewise", "cosine", "one_cycle", "wsd"]


@pytest.mark.parametrize("name", FINITE)
def test_last_value_holds_past_the_end(name: str) -> None:
    @SETTINGS
    @given(SHAPES[name], st.integers(0, 10**12))
    def run(s: lrkit.Schedule, extra: int) -> None:
        end = horizon(s)
        assert end is not None
        last = s(end)
        assert s(end + 1) == last and s(end + 1 + extra) == last
        assert s.values([end, end + 17, end + extra]).tolist() == [last] * 3

    run()


# -- no jump at joins ---------------------------------------------------------------------------
def max_step(s: lrkit.Schedule) -> float:
    """An upper bound of |s(t+1) - s(t)| for a schedule that is continuous where its pieces join."""
    if isinstance(s, lrkit.schedules.Constant):
        return 0.0
    if isinstance(s, lrkit.schedules.Linear):
        return abs(s.start - s.end) / s.steps
    if isinstance(s, lrkit.schedules.Cosine):
        return abs(s.start - s.end) * math.pi / 2 / s.steps
    if isinstance(s, lrkit.schedules.Warmup):
        return max(abs(s.schedule(0) - s.start) / s.steps, max_step(s.schedule))
    if isinstance(s, lrkit.schedules.InverseSqrt):
        timescale = s.timescale or s.warmup_steps
        return max(s.peak / max(s.warmup_steps, 1), s.peak / (2 * timescale))
    if isinstance(s, lrkit.schedules.WSD):
        return _wsd_step(s)
    if isinstance(s, lrkit.schedules.OneCycle):
        phases = s._phases()
        begins = [0.0] + [p[0] for p in phases[:-1]]
        slope = math.pi / 2 if s.anneal == "cos" else 1.0
        return max(abs(b - a) * slope / (end - begin) for (end, a, b), begin in zip(phases, begins))
    raise AssertionError(type(s))


def _wsd_step(s: lrkit.schedules.WSD) -> float:
    warm = s.peak / s.warmup_steps if s.warmup_steps else 0.0
    d, drop = s.decay_steps, abs(s.peak - s.end)
    decay = {"linear": drop / d, "cosine": drop * math.pi / 2 / d, "1-sqrt": drop / math.sqrt(d)}[s.decay] if d else 0.0
    return max(warm, decay)


@st.composite
def one_cycle_with_long_phases(draw: st.DrawFn) -> lrkit.Schedule:
    total = draw(st.integers(20, 2000))
    three = draw(st.booleans())
    pct = draw(st.floats(4.0 / total, 0.45 if three else 0.9))
    anneal = draw(st.sampled_from(["cos", "linear"]))
    return lrkit.one_cycle(peak=draw(positive), total_steps=total, pct_start=pct, anneal=anneal, three_phase=three)


@st.composite
def wsd_with_decay(draw: st.DrawFn) -> lrkit.Schedule:
    s = draw(wsd())
    if s.decay_steps == 0 and s.end != s.peak:  # then `end` starts at total_steps, a jump by definition
        s = lrkit.wsd(s.peak, s.total_steps, s.warmup_steps, 0, end=s.peak)
    return s


JOINED = {
    "warmup": st.builds(
        lrkit.warmup,
        st.builds(lrkit.cosine, start=value, steps=duration, end=value)
        | st.builds(lrkit.linear, value, value, duration)
        | st.builds(lrkit.constant, value),
        steps=duration,
        start=value,
    ),
    "wsd": wsd_with_decay(),
    "one_cycle": one_cycle_with_long_phases(),
    "inverse_sqrt": inverse_sqrt(),
}


@pytest.mark.parametrize("name", sorted(JOINED))
def test_no_jump_at_joins(name: str) -> None:
    @SETTINGS
    @given(JOINED[name])
    def run(s: lrkit.Schedule) -> None:
        v = s.values(np.arange(2500))
        bound = max_step(s)
        assert np.max(np.abs(np.diff(v))) <= bound * (1 + 1e-9) + 1e-12, (s, bound)

    run()


@pytest.mark.parametrize(
    ("s", "join", "value"),
    [
        (lrkit.warmup(lrkit.cosine(start=0.3, steps=10), steps=5, start=0.1), 5, 0.3),
        (lrkit.inverse_sqrt(peak=2.0, warmup_steps=8), 8, 2.0),
        (lrkit.wsd(peak=1.5, total_steps=20, warmup_steps=4, decay_steps=6), 4, 1.5),
        (lrkit.wsd(peak=1.5, total_steps=20, warmup_steps=4, decay_steps=6), 14, 1.5),
        (lrkit.wsd(peak=1.5, total_steps=20, warmup_steps=4, decay_steps=6, end=0.5), 20, 0.5),
        (lrkit.one_cycle(peak=1.0, total_steps=100, pct_start=0.25), 24, 1.0),
        (lrkit.one_cycle(peak=1.0, total_steps=100, pct_start=0.25, three_phase=True), 48, 0.04),
    ],
)
def test_pieces_meet_at_the_join_step(s: lrkit.Schedule, join: int, value: float) -> None:
    assert s(join) == pytest.approx(value, rel=1e-12)


def test_factories_are_the_registered_classes() -> None:
    assert lrkit.cosine is lrkit.schedules.Cosine and REGISTRY["cosine"] is lrkit.cosine and lrkit.cosine.name == "cosine"
    assert lrkit.warmup is lrkit.schedules.Warmup and REGISTRY["warmup"] is lrkit.warmup
    assert REGISTRY["piecewise"] is lrkit.piecewise and isinstance(lrkit.piecewise([1], [1.0, 0.5]), lrkit.schedules.Piecewise)
