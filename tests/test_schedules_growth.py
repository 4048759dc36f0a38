"""What issue 14 added to the schedule core for the presets: factory arguments, each pure, serializable and exact.

Cosine(cycles, power), Polynomial(cycle), SGDR(decay_height), Cyclic(half_cycle_down, inverted) and
WSD(warmup, start, cycles); `to_dict` leaves these fields out at their defaults, so saved dicts stay as they were.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

import lrkit

GROWN = [
    lrkit.cosine(1.0, 10, end=0.1, cycles=0.5),
    lrkit.cosine(1.0, 10, cycles=1.5, power=2.0),
    lrkit.cosine(1.0, 10, end=0.2, power=0.5),
    lrkit.polynomial(1.0, 0.1, 7, power=2.0, cycle=True),
    lrkit.sgdr(1.0, 5, cycle_mult=2, end=0.2, peak_decay=0.5, decay_height=True),
    lrkit.cyclic(0.1, 0.9, 3, half_cycle_down=7, mode="triangular2"),
    lrkit.cyclic(0.8, 0.9, 4, inverted=True, mode="exp_range", gamma=0.99),
    lrkit.wsd(1.0, 40, 10, 10, decay="cosine", end=0.1, warmup="cosine", start=0.1, cycles=1.0),
    lrkit.wsd(1.0, 40, 10, 10, decay="1-sqrt", warmup="1-sqrt"),
]


@pytest.mark.parametrize("s", GROWN, ids=repr)
def test_grown_schedules_round_trip_and_stay_finite(s: lrkit.Schedule) -> None:
    assert lrkit.parse(repr(s)) == s and lrkit.from_dict(s.to_dict()) == s and pickle.loads(pickle.dumps(s)) == s
    v = s.values(np.arange(500))
    assert np.all(np.isfinite(v)) and np.all(v >= 0)


def test_defaults_leave_old_dicts_and_values_as_they_were() -> None:
    assert lrkit.cosine(0.5, 10).to_dict() == {"type": "cosine", "start": 0.5, "steps": 10, "end": 0.0}
    assert "cycle" not in lrkit.polynomial(1.0, 0.0, 5).to_dict() and "inverted" not in lrkit.cyclic(0.1, 0.2, 3).to_dict()
    assert lrkit.cosine(1.0, 10, cycles=0.5).to_dict()["cycles"] == 0.5


def test_cosine_cycles_and_power_closed_forms() -> None:
    t = np.arange(0, 45)
    wave = lrkit.cosine(1.0, 10, end=0.2, cycles=0.5).values(t)
    np.testing.assert_allclose(wave, 0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * t / 10)), rtol=1e-14)  # past 10 it rises again
    two = lrkit.cosine(1.0, 10, cycles=2.0).values(t)
    np.testing.assert_allclose(two, 0.5 * (1 + np.cos(2 * np.pi * 2 * t / 10)), rtol=1e-12, atol=1e-15)
    held = lrkit.cosine(1.0, 10, power=3.0).values(t)
    np.testing.assert_allclose(held, (0.5 * (1 + np.cos(np.pi * np.minimum(t, 10) / 10))) ** 3, rtol=1e-12, atol=1e-300)


def test_polynomial_cycle_is_keras_restart() -> None:
    s = lrkit.polynomial(1.0, 0.0, 4, cycle=True)
    # t = 0..4 decays over 4 steps, t = 5..8 over 8, t = 9..12 over 12 (the first multiple of 4 >= t)
    expected = [1 - t / (4 * max(1, math.ceil(t / 4))) for t in range(13)]
    np.testing.assert_allclose(s.values(range(13)), expected, rtol=1e-15)


def test_sgdr_decay_height_keeps_the_floor_under_a_shrinking_peak() -> None:
    s = lrkit.sgdr(1.0, 4, end=0.2, peak_decay=0.5, decay_height=True)
    assert s.values([0, 4, 8]).tolist() == [1.0, 0.2 + 0.8 * 0.5, 0.2 + 0.8 * 0.25]
    assert lrkit.sgdr(1.0, 4, end=0.2, peak_decay=0.5).values([4]).tolist() == [0.5]  # the old rule: the peak itself decays


def test_cyclic_asymmetric_and_inverted() -> None:
    up_down = lrkit.cyclic(0.0, 1.0, 2, half_cycle_down=4).values(range(8)).tolist()
    assert up_down == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.5]
    inverted = lrkit.cyclic(0.8, 0.9, 2, inverted=True).values(range(5))
    np.testing.assert_allclose(inverted, [0.9, 0.85, 0.8, 0.85, 0.9], rtol=1e-15)


def test_wsd_warmup_shapes_start_and_cycles() -> None:
    s = lrkit.wsd(1.0, 30, 10, 10, decay="cosine", end=0.1, warmup="cosine", start=0.1, cycles=1.0)
    t = np.arange(10)
    np.testing.assert_allclose(s.values(t), 0.1 + 0.9 * 0.5 * (1 - np.cos(np.pi * t / 10)), rtol=1e-14)
    np.testing.assert_allclose(s.values([20, 25, 29]), 0.1 + 0.9 * 0.5 * (1 + np.cos(2 * np.pi * np.array([0, 5, 9]) / 10)), rtol=1e-14)
    assert s.values([30, 10**6]).tolist() == [0.1, 0.1]  # a whole wave ends at the peak; from total_steps `end` holds


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: lrkit.cosine(1.0, 10, cycles=0.0), "cycles"),
        (lambda: lrkit.cosine(1.0, 10, power=-1.0), "power"),
        (lambda: lrkit.polynomial(1.0, 0.0, 10, cycle=1), "cycle"),
        (lambda: lrkit.sgdr(1.0, 10, decay_height="yes"), "decay_height"),
        (lambda: lrkit.cyclic(0.1, 0.2, 3, half_cycle_down=0), "half_cycle_down"),
        (lambda: lrkit.cyclic(0.1, 0.2, 3, inverted=None), "inverted"),
        (lambda: lrkit.wsd(1.0, 10, 2, 2, warmup="exp"), "warmup"),
        (lambda: lrkit.wsd(1.0, 10, 2, 2, start=-1.0), "start"),
        (lambda: lrkit.wsd(1.0, 10, 2, 2, cycles=0), "cycles"),
    ],
)
def test_grown_arguments_are_checked(make: object, param: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=f"parameter '{param}'"):
        make()  # type: ignore[operator]


def test_presets_import_no_peer_library() -> None:
    code = (
        "import sys; import lrkit.presets.torch, lrkit.presets.keras, lrkit.presets.optax, lrkit.presets.hf; "
        "print(sorted(m for m in ('torch', 'keras', 'jax', 'optax', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
