"""The suggestion rules on synthetic curves with known answers, and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrkit.analysis import suggest
from lrkit.errors import FinderError

LRS = np.logspace(-5, 1, 120)


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's `valley`, verbatim in logic (fastai/callback/schedule.py), as the oracle."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def bowl(lrs: np.ndarray, centre: float = 1e-2, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A finder-like curve: flat, a smooth descent centred at `centre`, then a blow-up two decades later."""
    t = np.log10(lrs / centre)
    rng = np.random.default_rng(seed)
    return 2.0 - np.tanh(2.0 * t) + np.exp(3.0 * (t - 2.0)) + noise * rng.standard_normal(lrs.size)


def test_smooth_is_the_bias_corrected_ema() -> None:
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    beta = 0.9
    expected = [sum(beta ** (t - i) * (1 - beta) * x[i] for i in range(t + 1)) / (1 - beta ** (t + 1)) for t in range(5)]
    np.testing.assert_allclose(suggest.smooth(x, beta), expected)
    assert suggest.smooth(x, 0.0).tolist() == x.tolist()


def test_smooth_is_affine_equivariant() -> None:
    x = bowl(LRS, noise=0.2)
    np.testing.assert_allclose(suggest.smooth(-7.0 + 1000.0 * x), -7.0 + 1000.0 * suggest.smooth(x), rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_valley_matches_fastai_on_noisy_curves(seed: int) -> None:
    y = bowl(LRS, noise=0.3, seed=seed)
    x_t, y_t = suggest.prepare(LRS, y)
    assert suggest.valley(LRS, y) == fastai_valley(x_t, y_t)


def test_valley_on_a_clean_descent() -> None:
    lrs = np.arange(1.0, 8.0)
    # longest decreasing run: indices 0..5 (length 6) -> start = 5 - 6 = -1, sections 2 -> index -1 + 2 + 1 = 2
    assert suggest.valley(lrs, [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 9.0]) == 3.0


def test_steep_finds_the_inflection_of_a_tanh() -> None:
    lr = suggest.steep(LRS, 2.0 - np.tanh(np.log(LRS / 3e-3)))
    assert abs(math.log(lr / 3e-3)) <= np.diff(np.log(LRS))[0]


def test_minimum_is_a_tenth_of_the_argmin() -> None:
    y = (np.log10(LRS) + 2.0) ** 2  # minimum at 1e-2
    assert suggest.minimum(LRS, y) == pytest.approx(1e-3, rel=0.07)


def test_slide_is_scale_free_and_left_of_the_blow_up() -> None:
    y = bowl(LRS)
    lr = suggest.slide(LRS, y)
    assert suggest.slide(LRS, 500.0 * y - 3.0) == lr
    assert 1e-3 < lr < 1.0


@pytest.mark.parametrize("name", sorted(suggest.RULES))
def test_every_rule_ignores_loss_shift_and_scale(name: str) -> None:
    y = bowl(LRS, noise=0.05)
    rule = suggest.get_rule(name)
    assert rule(LRS, -10.0 + 0.001 * y) == pytest.approx(rule(LRS, y), rel=1e-12)


@pytest.mark.parametrize("name", sorted(suggest.RULES))
def test_every_rule_lands_in_the_descent(name: str) -> None:
    lr = suggest.get_rule(name)(LRS, bowl(LRS, centre=1e-2))
    assert 1e-4 < lr < 1.0  # the descent spans about 1e-3..1e-1; minimum/10 may sit just below


def test_lrkit_rule_is_the_end_of_the_descent_and_ignores_noise() -> None:
    lrs = np.logspace(-5, 1, 301)
    y = 1.0 - np.tanh(np.log10(lrs) + 2.0)  # falls from ~2 to ~0 around 1e-2, no blow-up: no lag to undo
    smoothed = suggest.smooth_centred(y)
    level, bottom = np.median(y[:30]), smoothed[30:].min()
    expected = next(lr for lr, v in zip(lrs[30:], smoothed[30:]) if v <= bottom + 0.1 * (level - bottom))  # 90% of the drop done
    assert suggest.lrkit_rule(lrs, y) == expected
    assert 10 ** (np.arctanh(0.8) - 2.0) < expected < 10 ** (np.arctanh(0.95) - 2.0)  # near the raw curve's 90% point
    noisy = [suggest.lrkit_rule(lrs, y + 0.1 * np.random.default_rng(s).standard_normal(lrs.size)) for s in range(5)]
    assert all(abs(math.log10(n / expected)) < 0.2 for n in noisy)


def test_suggest_all_gives_classic_rules_the_ema_and_lrkit_the_raw_curve() -> None:
    y = bowl(LRS, noise=0.2)
    found = suggest.suggest_all(LRS, y, smoothing=0.9)
    assert found["valley"] == suggest.valley(LRS, suggest.smooth(y, 0.9))
    assert found["lrkit"] == suggest.lrkit_rule(LRS, y)


def test_prepare_drops_everything_from_the_first_nan_and_trims() -> None:
    y = bowl(LRS)
    y[80] = np.nan
    x_t, y_t = suggest.prepare(LRS, y)
    assert x_t.size == 80 - 8 - suggest.SKIP_END and np.isfinite(y_t).all() and x_t[0] == LRS[8]


def test_too_short_curves_give_none_or_raise() -> None:
    with pytest.raises(FinderError, match="at least 3 finite"):
        suggest.valley([1e-3, 1e-2, 1e-1], [1.0, np.nan, 2.0])
    assert suggest.suggest_all([1e-3, 1e-2], [1.0, 2.0]) == dict.fromkeys(suggest.RULES)
    with pytest.raises(FinderError, match="must be one of"):
        suggest.get_rule("nope")


def flat_drop_explode(lrs: np.ndarray) -> np.ndarray:
    """Flat at 2 below 1e-4, linear in log10(lr) down to 0 at 1e-2, flat to 1e-1, then exploding: every answer known."""
    t = np.log10(lrs)
    return np.clip(-(t + 2.0), 0.0, 2.0) + 100.0 * np.clip(t + 1.0, 0.0, None) ** 2


# 100 points per decade from 1e-6, offset by half a step so no grid point sits exactly on a threshold
HALF_STEP_LRS = 10.0 ** (np.arange(600) / 100.0 - 6.0 + 0.005)


def test_bounds_on_a_curve_with_known_answer() -> None:
    # the loss falls 2 -> 0 linearly over log10 lr in [-4, -2]: 10% of the drop is done at -3.8, 90% at -2.2
    low, high = suggest.bounds(HALF_STEP_LRS, flat_drop_explode(HALF_STEP_LRS))
    assert math.log10(low) == pytest.approx(-3.795) and math.log10(high) == pytest.approx(-2.195)
    assert suggest.bounds(HALF_STEP_LRS, -5 + 3 * flat_drop_explode(HALF_STEP_LRS)) == (low, high)


def test_lrkit_rule_on_an_erf_descent_with_known_smoothing() -> None:
    # a Gaussian window (sigma 24 points = 4% of 600) over an erf step of width 32 points gives an erf of width 40
    i = np.arange(600)
    y = 1.0 - np.asarray([math.erf((k - 300) / (math.sqrt(2) * 32)) for k in i])
    reached = 300 + 0.9061938 * math.sqrt(2) * 40  # 1 - erf(z) = 0.2 at z = erfinv(0.8)
    assert suggest.lrkit_rule(HALF_STEP_LRS, y) == HALF_STEP_LRS[math.ceil(reached)]


def dense_smooth_centred(y: np.ndarray, width: float = 0.04) -> np.ndarray:
    """The former O(n^2) formula, kept as the oracle of the O(n) one."""
    sigma = max(width * y.size, 1e-9)
    idx = np.arange(y.size, dtype=np.float64)
    weights = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)
    return np.asarray(weights @ y / weights.sum(axis=1))


@pytest.mark.parametrize("n", [1, 2, 3, 10, 57, 120, 301, 1000, 2500])
@pytest.mark.parametrize("width", [0.0, 0.01, 0.04, 0.3])
def test_smooth_centred_equals_the_dense_window(n: int, width: float) -> None:
    y = 3.0 * np.random.default_rng(n).standard_normal(n) + np.linspace(0.0, 5.0, n)
    np.testing.assert_allclose(suggest.smooth_centred(y, width), dense_smooth_centred(y, width), rtol=1e-12, atol=1e-12)


def test_smooth_centred_of_a_long_curve_needs_little_memory() -> None:
    import tracemalloc

    n = 20_000  # the dense window would need n * n * 8 bytes = 3.2 GB
    y = 2.0 + 0.5 * np.arange(n)
    tracemalloc.start()
    smoothed = suggest.smooth_centred(y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * n * 8  # a few arrays of n floats, not n^2
    window = int(suggest.KERNEL_RADIUS * 0.04 * n)  # a symmetric window keeps a straight line exactly, away from the ends
    np.testing.assert_allclose(smoothed[window:-window], y[window:-window], rtol=1e-12)
    assert smoothed[0] > y[0] and smoothed[-1] < y[-1]  # at the ends the window leans inwards


def test_ema_is_the_one_smoother() -> None:
    x = bowl(LRS, noise=0.2)
    ema = suggest.Ema(0.9)
    assert [ema.update(v) for v in x] == suggest.smooth(x, 0.9).tolist()
    with pytest.raises(FinderError, match="'beta' must lie in"):
        suggest.Ema(1.0)


def test_objective_negates_only_higher_is_better() -> None:
    assert suggest.objective([0.5, 2.0], higher_is_better=True).tolist() == [-0.5, -2.0]
    assert suggest.objective([0.5, 2.0], higher_is_better=False).tolist() == [0.5, 2.0]


def test_warnings() -> None:
    rising = np.linspace(2.0, 1.0, LRS.size)
    assert "loss never diverged: raise `end`" in suggest.curve_warnings(LRS, rising, rising, "completed")
    flat = 1.0 + 0.1 * np.random.default_rng(0).standard_normal(LRS.size)
    assert any("no clear valley" in w for w in suggest.curve_warnings(LRS, flat, suggest.smooth(flat), "completed"))
    assert suggest.curve_warnings(LRS, bowl(LRS), bowl(LRS), "diverged") == []
