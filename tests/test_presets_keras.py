"""lrkit.presets.keras against Keras 3's own schedules (torch backend), at every step over thousands of steps.

Keras computes in float32, so the presets (float64) are compared at float32 rounding: a few float32
ulps of each value, plus a few ulps of the schedule's peak where Keras' float32 cosine nears 0.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import lrkit  # noqa: E402
from lrkit.presets import keras as presets  # noqa: E402

N = 3000
ULP = float(np.finfo(np.float32).eps)
RTOL, ATOL = 64 * ULP, 8 * ULP  # ATOL is relative to the schedule's largest value


def keras_values(name: str, kwargs: dict[str, Any], steps: int = N) -> np.ndarray:
    """Keras' schedule at steps 0 .. steps-1: all at once where its ops broadcast, else step by step (its ops.cond)."""
    schedule = getattr(keras.optimizers.schedules, name)(**kwargs)
    try:
        out = keras.ops.convert_to_numpy(schedule(keras.ops.arange(steps, dtype="int32")))
        if out.shape == (steps,):
            return out.astype(np.float64)
    except Exception:  # Keras branches (ops.cond) on one step at a time: a vector of steps fails there
        pass
    return np.array([float(keras.ops.convert_to_numpy(schedule(t))) for t in range(steps)])


def assert_float32_close(s: lrkit.Schedule, reference: np.ndarray) -> None:
    ours = s.values(np.arange(len(reference)))
    assert reference.dtype == np.float64 and np.all(np.isfinite(reference))
    err = np.abs(ours - reference)
    bound = RTOL * np.abs(reference) + ATOL * np.abs(reference).max()
    worst = int(np.argmax(err - bound))
    assert err[worst] <= bound[worst], f"step {worst}: lrkit {ours[worst]!r} Keras {reference[worst]!r}"
    assert lrkit.parse(repr(s)) == s and pickle.loads(pickle.dumps(s)) == s and lrkit.from_dict(s.to_dict()) == s


CASES: list[tuple[str, dict[str, Any]]] = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 100, "decay_rate": 0.96}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 250, "decay_rate": 0.5, "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [100, 1000, 2000], "values": [0.1, 0.05, 0.01, 0.001]}),
    ("PiecewiseConstantDecay", {"boundaries": [0, 1], "values": [1.0, 0.5, 0.25]}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2000}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 700, "end_learning_rate": 0.001, "power": 0.5, "cycle": True}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 333, "end_learning_rate": 0.0, "power": 2.0, "cycle": True}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 300, "decay_rate": 2.0, "staircase": True}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 2000}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 1500, "alpha": 0.1}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 2000, "alpha": 0.05, "warmup_target": 0.1, "warmup_steps": 500}),
    ("CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": 1000, "warmup_target": 0.1, "warmup_steps": 100}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 300}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 200, "t_mul": 1.0, "m_mul": 0.8, "alpha": 0.1}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 100, "t_mul": 2.0, "m_mul": 0.7, "alpha": 0.2}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 96, "t_mul": 3.0, "m_mul": 0.9, "alpha": 0.05}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_preset_is_keras_schedule(name: str, kwargs: dict[str, Any]) -> None:
    assert_float32_close(getattr(presets, name)(**kwargs), keras_values(name, kwargs))


@pytest.mark.parametrize(("first", "t_mul"), [(100, 1.5), (128, 1.5), (90, 1.25)])
def test_cosine_decay_restarts_with_a_fractional_t_mul(first: int, t_mul: float) -> None:
    """Keras finds the restart by a float32 logarithm, which can land one cycle early exactly at a restart step
    (Keras then gives the floor there, the last cycle's end); the preset restarts at the exact step. Everywhere
    else the two agree at float32 rounding."""
    kwargs = {"initial_learning_rate": 0.1, "first_decay_steps": first, "t_mul": t_mul, "m_mul": 0.8, "alpha": 0.1}
    s, theirs = presets.CosineDecayRestarts(**kwargs), keras_values("CosineDecayRestarts", kwargs)
    starts = [first * (t_mul**k - 1) / (t_mul - 1) for k in range(1, 40)]
    restarts = [int(b) for b in starts if b == int(b) and b < N]
    ours = s.values(np.arange(N))
    early = [t for t in restarts if abs(theirs[t] - 0.01) < 1e-6 and abs(ours[t] - 0.01) > 1e-3]
    kept = np.setdiff1d(np.arange(N), early)
    assert_float32_close(lrkit.join([s, lrkit.constant(0.0)], boundaries=[N]), np.where(np.isin(np.arange(N), kept), theirs, ours))
    assert len(early) <= len(restarts)


def test_every_keras_schedule_has_a_preset() -> None:
    shipped = {n for n in dir(keras.optimizers.schedules) if n[0].isupper() and n not in ("LearningRateSchedule",)}
    assert shipped - {"serialize", "deserialize"} <= set(dir(presets))


def test_the_comparison_can_fail() -> None:
    kwargs = {"boundaries": [100, 1000], "values": [0.1, 0.05, 0.01]}
    with pytest.raises(AssertionError):  # lrkit's own piecewise switches one step earlier than Keras'
        assert_float32_close(lrkit.piecewise(kwargs["boundaries"], kwargs["values"]), keras_values("PiecewiseConstantDecay", kwargs))


@pytest.mark.parametrize(
    ("name", "kwargs", "param"),
    [
        ("PiecewiseConstantDecay", {"boundaries": [5, 3], "values": [1.0, 0.5, 0.1]}, "boundaries"),
        ("PiecewiseConstantDecay", {"boundaries": [5], "values": [1.0]}, "values"),
        ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 0}, "decay_steps"),
        ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 10, "t_mul": 0.5}, "t_mul"),
        ("ExponentialDecay", {"initial_learning_rate": -0.1, "decay_steps": 10, "decay_rate": 0.5}, "initial_learning_rate"),
    ],
)
def test_bad_arguments_name_the_preset_and_parameter(name: str, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=f"{name}: parameter '{param}'"):
        getattr(presets, name)(**kwargs)
