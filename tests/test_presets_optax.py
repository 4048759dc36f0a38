"""lrkit.presets.optax against optax's own schedules, at every step over thousands of steps.

With jax's x64 enabled (only inside these tests: the fixture restores the setting) optax computes in
float64 and the presets agree to 1e-12 relative; in optax's default float32, to float32 rounding.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import lrkit  # noqa: E402
from lrkit.presets import optax as presets  # noqa: E402

N = 3000
RTOL = 1e-12
F32 = float(np.finfo(np.float32).eps)


@pytest.fixture
def x64() -> Iterator[None]:
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def optax_values(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> np.ndarray:
    schedule = getattr(optax, name)(*args, **kwargs)
    counts = jax.numpy.arange(N)
    return np.asarray(jax.vmap(schedule)(counts), dtype=np.float64)


def assert_close(s: lrkit.Schedule, reference: np.ndarray, rtol: float, atol: float = 0.0) -> None:
    ours = s.values(np.arange(len(reference)))
    err, bound = np.abs(ours - reference), rtol * np.abs(reference) + atol * np.abs(reference).max()
    worst = int(np.argmax(err - bound))
    assert err[worst] <= bound[worst] or ours[worst] == reference[worst], f"step {worst}: lrkit {ours[worst]!r} optax {reference[worst]!r}"
    assert lrkit.parse(repr(s)) == s and pickle.loads(pickle.dumps(s)) == s and lrkit.from_dict(s.to_dict()) == s


CYCLE = {"init_value": 0.0, "peak_value": 0.1, "warmup_steps": 50, "decay_steps": 700, "end_value": 1e-4}
CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("constant_schedule", (0.1,), {}),
    ("linear_schedule", (0.1, 0.0, 2000), {}),
    ("linear_schedule", (0.001, 0.1, 1000), {"transition_begin": 500}),
    ("polynomial_schedule", (0.1, 0.001, 2.0, 2500), {}),
    ("polynomial_schedule", (0.1, 0.0, 0.5, 1000), {"transition_begin": 1200}),
    ("cosine_decay_schedule", (0.1, 2000), {}),
    ("cosine_decay_schedule", (0.1, 1500), {"alpha": 0.1, "exponent": 2.0}),
    ("warmup_cosine_decay_schedule", (0.0, 0.1, 300, 2500), {}),
    ("warmup_cosine_decay_schedule", (0.001, 0.1, 100, 2000), {"end_value": 1e-4, "exponent": 0.5}),
    ("warmup_cosine_decay_schedule", (0.001, 0.1, 0, 2000), {}),
    ("exponential_decay", (0.1, 100, 0.96), {}),
    ("exponential_decay", (0.1, 250, 0.5), {"transition_begin": 400, "staircase": True, "end_value": 1e-3}),
    ("exponential_decay", (0.001, 100, 1.1), {"end_value": 0.05}),
    ("piecewise_constant_schedule", (0.1, {500: 0.5, 1000: 0.2, 2500: 0.1}), {}),
    ("piecewise_constant_schedule", (0.1, {0: 0.5, 10: 2.0}), {}),
    ("piecewise_interpolate_schedule", ("linear", 0.01, {300: 10.0, 2000: 0.01}), {}),
    ("piecewise_interpolate_schedule", ("cosine", 0.01, {0: 2.0, 300: 5.0, 1700: 0.1, 2500: 0.5}), {}),
    ("warmup_constant_schedule", (0.0, 0.1, 500), {}),
    ("warmup_exponential_decay_schedule", (0.0, 0.1, 200, 100, 0.9), {}),
    ("warmup_exponential_decay_schedule", (0.001, 0.1, 300, 50, 0.95), {"transition_begin": 100, "staircase": True, "end_value": 1e-3}),
    ("cosine_onecycle_schedule", (2500, 0.1), {}),
    ("cosine_onecycle_schedule", (2999, 0.1), {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}),
    ("linear_onecycle_schedule", (2500, 0.1), {}),
    ("linear_onecycle_schedule", (2999, 0.1), {"pct_start": 0.2, "pct_final": 0.7, "div_factor": 5.0}),
    ("sgdr_schedule", ([CYCLE, {**CYCLE, "decay_steps": 1000}, {**CYCLE, "warmup_steps": 0, "decay_steps": 1300}],), {}),
]
IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES, ids=IDS)
def test_preset_is_optax_in_float64(x64: None, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert_close(getattr(presets, name)(*args, **kwargs), optax_values(name, args, kwargs), RTOL)


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES[::3], ids=IDS[::3])
def test_preset_is_optax_in_float32(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert_close(getattr(presets, name)(*args, **kwargs), optax_values(name, args, kwargs), 64 * F32, 8 * F32)


def test_every_optax_schedule_has_a_preset() -> None:
    names = {n for n in dir(optax.schedules) if not n.startswith("_") and (n.endswith("_schedule") or n == "exponential_decay")}
    assert names - {"join_schedules", "inject_hyperparams", "inject_stateful_hyperparams"} <= set(dir(presets))


def test_the_comparison_can_fail(x64: None) -> None:
    with pytest.raises(AssertionError):  # lrkit's own 1cycle puts its phase boundaries a step from optax's
        assert_close(lrkit.one_cycle(0.1, 2500, anneal="linear"), optax_values("linear_onecycle_schedule", (2500, 0.1), {}), RTOL)


@pytest.mark.parametrize(
    ("name", "args", "param"),
    [
        ("linear_schedule", (0.1, 0.0, 0), "transition_steps"),  # optax: a constant, silently
        ("exponential_decay", (0.1, 100, 0.0), "decay_rate"),
        ("exponential_decay", (0.1, 100, 0.5, -5), "transition_begin"),
        ("cosine_decay_schedule", (0.1, 0), "decay_steps"),
        ("piecewise_interpolate_schedule", ("cubic", 0.1), "interpolate_type"),
        ("piecewise_constant_schedule", (0.1, {10: -0.5}), "boundaries_and_scales"),
        ("warmup_cosine_decay_schedule", (0.0, 0.1, 100, 100), "decay_steps"),
        ("sgdr_schedule", ([],), "cosine_kwargs"),
    ],
)
def test_bad_arguments_name_the_preset_and_parameter(name: str, args: tuple[Any, ...], param: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=f"parameter '{param}'"):
        getattr(presets, name)(*args)
