"""Layer 1: exact values of every factory and combinator, from the formulas of the issue written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lrkit


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def assert_values(s: lrkit.Schedule, expected: dict[int, float]) -> None:
    got = s.values(list(expected))
    for (t, want), v in zip(expected.items(), got):
        assert close(v, want), f"{s!r} at step {t}: {v!r} != {want!r}"
        assert s(t) == v


def test_constant() -> None:
    assert_values(lrkit.constant(0.3), {0: 0.3, 1: 0.3, 10**9: 0.3})


def test_linear_then_holds_end() -> None:
    assert_values(lrkit.linear(start=0.1, end=0.02, steps=8), {0: 0.1, 2: 0.08, 4: 0.06, 8: 0.02, 9: 0.02, 10**6: 0.02})
    assert_values(lrkit.linear(start=0.0, end=1.0, steps=3), {0: 0.0, 1: 1 / 3, 3: 1.0, 4: 1.0})


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.7])
def test_polynomial(power: float) -> None:
    start, end, steps = 0.2, 0.01, 50
    expected = {t: (start - end) * (1 - min(t, steps) / steps) ** power + end for t in (0, 1, 17, 49, 50, 51, 999)}
    assert_values(lrkit.polynomial(start=start, end=end, steps=steps, power=power), expected)


def test_exponential_smooth_staircase_and_floor() -> None:
    assert_values(lrkit.exponential(start=0.1, rate=0.9), {t: 0.1 * 0.9**t for t in (0, 1, 5, 100)})
    assert_values(lrkit.exponential(start=0.1, rate=0.5, every=4), {t: 0.1 * 0.5 ** (t / 4) for t in (0, 1, 3, 4, 10)})
    assert_values(lrkit.exponential(start=0.1, rate=0.5, every=4, staircase=True), {0: 0.1, 3: 0.1, 4: 0.05, 7: 0.05, 8: 0.025})
    floored = lrkit.exponential(start=1.0, rate=0.5, floor=0.2)
    assert_values(floored, {0: 1.0, 1: 0.5, 2: 0.25, 3: 0.2, 50: 0.2, 10**9: 0.2})


def test_inverse_time() -> None:
    assert_values(lrkit.inverse_time(start=0.5, decay=0.1), {t: 0.5 / (1 + 0.1 * t) for t in (0, 1, 2, 37, 10**6)})
    assert_values(lrkit.inverse_time(start=0.5, decay=0.1, every=10), {t: 0.5 / (1 + 0.1 * t / 10) for t in (0, 5, 10, 15)})
    stair = lrkit.inverse_time(start=0.5, decay=1.0, every=10, staircase=True)
    assert_values(stair, {0: 0.5, 9: 0.5, 10: 0.25, 19: 0.25, 20: 0.5 / 3})


def test_inverse_sqrt_warmup_then_rsqrt() -> None:
    s = lrkit.inverse_sqrt(peak=1e-3, warmup_steps=4000)
    expected = {0: 0.0, 1: 1e-3 / 4000, 2000: 0.5e-3, 4000: 1e-3}
    expected.update({t: 1e-3 * math.sqrt(4000 / t) for t in (4001, 16000, 10**6)})  # timescale = warmup: fairseq's peak*sqrt(w/t)
    assert_values(s, expected)
    scaled = lrkit.inverse_sqrt(peak=2.0, warmup_steps=10, timescale=100)
    assert_values(scaled, {5: 1.0, 10: 2.0, 110: 2.0 * math.sqrt(100 / 200), 310: 1.0})
    no_warmup = lrkit.inverse_sqrt(peak=1.0, warmup_steps=0, timescale=4)
    assert_values(no_warmup, {0: 1.0, 12: 0.5, 60: 0.25})


def test_step_decay_and_multistep() -> None:
    assert_values(lrkit.step_decay(start=0.1, factor=0.1, every=30), {0: 0.1, 29: 0.1, 30: 0.1 * 0.1, 59: 0.01, 60: 0.1 * 0.1**2})
    ms = lrkit.multistep(start=1.0, milestones=[3, 5, 9], factor=0.5)
    assert_values(ms, {0: 1.0, 2: 1.0, 3: 0.5, 4: 0.5, 5: 0.25, 8: 0.25, 9: 0.125, 10**7: 0.125})
    assert_values(lrkit.multistep(start=1.0, milestones=[], factor=0.5), {0: 1.0, 100: 1.0})


def test_piecewise_boundaries_apply_from_their_step() -> None:
    s = lrkit.piecewise(boundaries=[10, 20], values=[0.3, 0.2, 0.1])
    assert_values(s, {0: 0.3, 9: 0.3, 10: 0.2, 19: 0.2, 20: 0.1, 10**8: 0.1})
    assert lrkit.piecewise(boundaries=[], values=[0.7])(5) == 0.7


def test_cosine() -> None:
    s = lrkit.cosine(start=0.1, steps=100, end=0.001)
    expected = {t: 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 100)) / 2 for t in (0, 1, 25, 50, 99, 100)}
    assert_values(s, {**expected, 101: 0.001, 10**6: 0.001})
    assert s(50) == pytest.approx((0.1 + 0.001) / 2, rel=1e-12)


def sgdr_reference(t: int, start: float, first: int, mult: float, end: float, decay: float) -> float:
    """SGDR written the slow way: walk the cycles one by one."""
    i, begin, span = 0, 0.0, float(first)
    while t >= begin + span:
        begin, span, i = begin + span, span * mult, i + 1
    peak = start * decay**i
    return end + (peak - end) * (1 + math.cos(math.pi * (t - begin) / span)) / 2


@pytest.mark.parametrize(("first", "mult", "decay"), [(10, 1.0, 1.0), (3, 2.0, 1.0), (4, 3.0, 0.5), (5, 1.5, 0.8), (1, 2.0, 1.0)])
def test_sgdr_cycles_restart_exactly_at_their_boundaries(first: int, mult: float, decay: float) -> None:
    s = lrkit.sgdr(start=0.1, first_cycle=first, cycle_mult=mult, end=0.001, peak_decay=decay)
    steps = list(range(0, 400))
    want = [sgdr_reference(t, 0.1, first, mult, 0.001, decay) for t in steps]
    np.testing.assert_allclose(s.values(steps), want, rtol=1e-12, atol=1e-15)
    # every restart is a fresh peak, just after the cycle's end value
    begin, span, i = 0.0, float(first), 0
    while begin + span < 400:
        begin, span, i = begin + span, span * mult, i + 1
        if begin == int(begin):
            assert s(int(begin)) == pytest.approx(0.1 * decay**i, rel=1e-12)


def test_sgdr_far_cycles_stay_exact() -> None:
    s = lrkit.sgdr(start=1.0, first_cycle=7, cycle_mult=2)
    boundaries = [7 * (2**i - 1) for i in range(1, 40)]
    assert s.values(boundaries).tolist() == [1.0] * len(boundaries)
    last_of_cycle = [(1 + math.cos(math.pi * (7 * 2**i - 1) / (7 * 2**i))) / 2 for i in range(39)]
    np.testing.assert_allclose(s.values([b - 1 for b in boundaries]), last_of_cycle, rtol=1e-9)


def test_sgdr_with_thousands_of_cycles_matches_the_slow_walk() -> None:
    # past a few thousand cycles the lookup table gives way to the logarithm: both must give the same numbers
    s = lrkit.sgdr(start=0.2, first_cycle=1, cycle_mult=1.0005, end=0.01, peak_decay=0.9999)
    steps = sorted({0, 1, 2, 9, 5000, 5001, 99_999, *range(40_000, 100_000, 1_217)})
    want = [sgdr_reference(t, 0.2, 1, 1.0005, 0.01, 0.9999) for t in steps]
    np.testing.assert_allclose(s.values(steps), want, rtol=1e-9)
    near = [t for t in steps if t < 2000]  # alone, these few cycles go through the table
    assert s.values(near).tolist() == s.values(steps)[: len(near)].tolist()


def test_cyclic_three_modes() -> None:
    tri = lrkit.cyclic(low=0.1, high=0.5, half_cycle=4)
    assert_values(tri, {0: 0.1, 1: 0.2, 2: 0.3, 4: 0.5, 6: 0.3, 8: 0.1, 12: 0.5, 10**6: 0.1})
    tri2 = lrkit.cyclic(low=0.1, high=0.5, half_cycle=4, mode="triangular2")
    assert_values(tri2, {4: 0.5, 12: 0.1 + 0.4 / 2, 20: 0.1 + 0.4 / 4, 18: 0.1 + 0.2 / 4, 8 * 2000 + 4: 0.1})
    # halving keeps going into subnormal numbers, then holds at exactly `low`
    deep = lrkit.cyclic(low=0.0, high=1.0, half_cycle=1, mode="triangular2")
    assert deep.values([1, 3, 2049, 2 * 1200 + 1, 10**12 + 1]).tolist() == [1.0, 0.5, 2.0**-1024, 0.0, 0.0]
    exp = lrkit.cyclic(low=0.1, high=0.5, half_cycle=4, mode="exp_range", gamma=0.99)
    assert_values(exp, {0: 0.1, 2: 0.1 + 0.2 * 0.99**2, 4: 0.1 + 0.4 * 0.99**4, 12: 0.1 + 0.4 * 0.99**12})


def one_cycle_reference(t: int, peak: float, total: int, pct: float, div: float, final: float, cos: bool, three: bool) -> float:
    """Smith's 1cycle as OneCycleLR documents it: phase ends at pct*total-1 (and 2*pct*total-2), total-1."""
    initial, low = peak / div, peak / div / final
    up = pct * total - 1
    if three:
        phases = [(up, initial, peak), (2 * pct * total - 2, peak, initial), (total - 1, initial, low)]
    else:
        phases = [(up, initial, peak), (total - 1, peak, low)]
    t = min(t, total - 1)
    begin = 0.0
    for k, (end, a, b) in enumerate(phases):
        if t <= end or k == len(phases) - 1:
            p = (t - begin) / (end - begin)
            return b + (a - b) * (1 + math.cos(math.pi * p)) / 2 if cos else a + (b - a) * p
        begin = end
    raise AssertionError


@pytest.mark.parametrize("cos", [True, False])
@pytest.mark.parametrize("three", [True, False])
def test_one_cycle(cos: bool, three: bool) -> None:
    s = lrkit.one_cycle(
        peak=0.4, total_steps=200, pct_start=0.25, div_factor=10, final_div_factor=100, anneal="cos" if cos else "linear", three_phase=three
    )
    steps = list(range(0, 260))
    want = [one_cycle_reference(t, 0.4, 200, 0.25, 10, 100, cos, three) for t in steps]
    np.testing.assert_allclose(s.values(steps), want, rtol=1e-12)
    assert s(0) == pytest.approx(0.04, rel=1e-12) and s(49) == pytest.approx(0.4, rel=1e-12)
    assert s(199) == pytest.approx(0.0004, rel=1e-12) and s(10**6) == s(199)
    if three:
        assert s(98) == pytest.approx(0.04, rel=1e-12)


def test_one_cycle_one_step_warmup_holds_its_start_instead_of_nan() -> None:
    s = lrkit.one_cycle(peak=1.0, total_steps=10, pct_start=0.1)
    v = s.values(range(12))
    assert np.all(np.isfinite(v)) and v[0] == pytest.approx(0.04, rel=1e-12)


@pytest.mark.parametrize(
    ("decay", "f"),
    [("linear", lambda p: 1 - p), ("cosine", lambda p: (1 + math.cos(math.pi * p)) / 2), ("1-sqrt", lambda p: 1 - math.sqrt(p))],
)
def test_wsd(decay: str, f: object) -> None:
    s = lrkit.wsd(peak=0.3, total_steps=100, warmup_steps=10, decay_steps=20, decay=decay, end=0.01)
    expected = {0: 0.0, 5: 0.15, 10: 0.3, 50: 0.3, 80: 0.3, 100: 0.01, 101: 0.01, 10**6: 0.01}
    expected.update({t: 0.01 + 0.29 * f((t - 80) / 20) for t in (81, 85, 90, 99)})  # type: ignore[operator]
    assert_values(s, expected)


def test_wsd_without_decay_drops_to_end_at_total_steps_and_holds() -> None:
    s = lrkit.wsd(peak=1.0, total_steps=5, warmup_steps=1, decay_steps=0, end=0.1)
    assert s.values(range(9)).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1]


def test_warmup_ramps_then_shifts_the_schedule() -> None:
    inner = lrkit.cosine(start=0.1, steps=90)
    s = lrkit.warmup(inner, steps=10)
    expected = {0: 0.0, 1: 0.01, 5: 0.05, 9: 0.09, 10: 0.1, 100: 0.0}
    expected.update({t: inner(t - 10) for t in (11, 40, 99)})
    assert_values(s, expected)
    assert_values(lrkit.warmup(lrkit.constant(1.0), steps=4, start=0.2), {0: 0.2, 2: 0.6, 4: 1.0})


def test_join_pieces_see_steps_from_their_boundary() -> None:
    a, b, c = lrkit.constant(0.5), lrkit.linear(start=1.0, end=0.0, steps=10), lrkit.step_decay(start=0.2, factor=0.5, every=2)
    s = lrkit.join([a, b, c], boundaries=[5, 15])
    assert_values(s, {0: 0.5, 4: 0.5, 5: 1.0, 6: 0.9, 14: 0.1, 15: 0.2, 16: 0.2, 17: 0.1, 19: 0.05})


def test_clip() -> None:
    s = lrkit.clip(lrkit.linear(start=1.0, end=0.0, steps=10), low=0.25, high=0.6)
    assert_values(s, {0: 0.6, 4: 0.6, 5: 0.5, 7: 0.3, 8: 0.25, 100: 0.25})
    assert lrkit.clip(lrkit.constant(5.0), low=1.0)(3) == 5.0


def test_per_epoch_holds_the_epoch_value() -> None:
    inner = lrkit.inverse_time(start=0.1, decay=0.5)
    s = lrkit.per_epoch(inner, steps_per_epoch=16)
    steps = np.arange(0, 200)
    np.testing.assert_array_equal(s.values(steps), [inner(int(t) // 16) for t in steps])


def test_scaling_and_products() -> None:
    base = lrkit.cosine(start=1.0, steps=10)
    momentum = lrkit.cyclic(low=0.85, high=0.95, half_cycle=5)
    assert_values(0.1 * base, {t: 0.1 * base(t) for t in (0, 3, 10)})
    assert base * 0.1 == 0.1 * base
    assert_values(base * momentum, {t: base(t) * momentum(t) for t in (0, 3, 5, 10)})
    assert_values(2.0 * (base * momentum), {t: 2.0 * base(t) * momentum(t) for t in (0, 3, 7)})
    assert repr(0.1 * base) == "0.1 * cosine(start=1.0, steps=10)"


def test_value_at_step_zero_is_start_or_low() -> None:
    assert lrkit.linear(0.3, 0.0, 5)(0) == 0.3
    assert lrkit.cosine(0.3, 5)(0) == 0.3
    assert lrkit.sgdr(0.3, 5)(0) == 0.3
    assert lrkit.exponential(0.3, 0.5)(0) == 0.3
    assert lrkit.cyclic(low=0.2, high=0.9, half_cycle=3)(0) == 0.2
    assert lrkit.warmup(lrkit.constant(1.0), steps=3, start=0.3)(0) == 0.3


def test_integer_like_arguments_are_normalized() -> None:
    s = lrkit.cosine(start=np.float32(0.5), steps=np.int64(10))
    assert repr(s) == "cosine(start=0.5, steps=10)" and type(s.steps) is int
    assert lrkit.parse(repr(s)) == s and s.to_dict() == {"type": "cosine", "start": 0.5, "steps": 10, "end": 0.0}


def test_values_accepts_scalars_and_integer_floats() -> None:
    s = lrkit.linear(1.0, 0.0, 4)
    assert s.values(2).tolist() == 0.5 and s.values(np.array([1.0, 2.0])).tolist() == [0.75, 0.5]
    assert s.values([]).shape == (0,) and s(np.int64(1)) == 0.75


@pytest.mark.parametrize("mult", [1.0000001, 1e10, 1e200, 1e300])
def test_sgdr_with_extreme_cycle_mult_stays_finite(mult: float) -> None:
    s = lrkit.sgdr(start=1.0, first_cycle=3, cycle_mult=mult)
    steps = [0, 1, 2, 3, 4, 10**6, 10**9, 10**15]
    v = s.values(steps)
    assert np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= 1.0))
    np.testing.assert_allclose(v[:4], [sgdr_reference(t, 1.0, 3, mult, 0.0, 1.0) for t in steps[:4]], rtol=1e-12)
