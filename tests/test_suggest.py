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


def test_bounds_follow_the_drop() -> None:
    lrs = np.logspace(-4, 0, 401)
    y = 1.0 - np.tanh(np.log10(lrs) + 2.0)  # drop from ~2 to ~0 around 1e-2; a 10% / 90% drop at atanh(+-0.8)
    low, high = suggest.bounds(lrs, y)
    x_t, y_t = suggest.prepare(lrs, y)
    top, bottom = y_t.max(), y_t.min()
    assert y_t[x_t == low][0] <= top - 0.1 * (top - bottom) < y_t[x_t < low][-1]
    assert y_t[x_t == high][0] <= bottom + 0.1 * (top - bottom) < y_t[x_t < high][-1]
    assert suggest.bounds(lrs, -5 + 3 * y) == (low, high)


def test_warnings() -> None:
    rising = np.linspace(2.0, 1.0, LRS.size)
    assert "loss never diverged: raise `end`" in suggest.curve_warnings(LRS, rising, rising, "completed")
    flat = 1.0 + 0.1 * np.random.default_rng(0).standard_normal(LRS.size)
    assert any("no clear valley" in w for w in suggest.curve_warnings(LRS, flat, suggest.smooth(flat), "completed"))
    assert suggest.curve_warnings(LRS, bowl(LRS), bowl(LRS), "diverged") == []
