"""`lrkit.optax`: schedules equal to lrkit's values under jit and vmap, and reduce-on-plateau equal to optax's own."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrkit
import lrkit.optax as lo

STEPS = 5000
FINITE = [
    lrkit.warmup(lrkit.cosine(start=0.1, steps=2900, end=1e-3), steps=100),
    lrkit.one_cycle(peak=0.3, total_steps=3000),
    lrkit.wsd(peak=1e-3, total_steps=4000, warmup_steps=200, decay_steps=800, decay="1-sqrt"),
    lrkit.join([lrkit.linear(start=0.0, end=0.1, steps=50), lrkit.polynomial(start=0.1, end=0.0, steps=999, power=2.0)], boundaries=[50]),
    lrkit.per_epoch(lrkit.multistep(start=0.1, milestones=[3, 7], factor=0.1), steps_per_epoch=313),
    lrkit.clip(lrkit.piecewise(boundaries=[10, 20], values=[0.3, 0.2, 0.1]), low=0.15) * lrkit.cosine(start=1.0, steps=700),
]
ENDLESS = [
    lrkit.exponential(start=0.1, rate=0.999),
    lrkit.cyclic(low=1e-3, high=0.1, half_cycle=250),
    lrkit.sgdr(start=0.1, first_cycle=300),
]


@pytest.fixture
def x64() -> Iterator[None]:
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)


def _both_ways(f: lo.OptaxSchedule, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    jitted = np.asarray([jax.jit(f)(jnp.asarray(t)) for t in steps[:: len(steps) // 50]])  # scalar counts, as optax passes them
    return jitted, np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(steps)))


@pytest.mark.parametrize("s", FINITE + ENDLESS, ids=repr)
def test_values_equal_lrkits_to_float32_rounding_under_jit_and_vmap(s: lrkit.Schedule) -> None:
    f = lo.schedule(s, horizon=None if s in FINITE else 4000)
    steps = np.arange(STEPS)
    expected = s.values(np.minimum(steps, len(f.table) - 1)).astype(np.float32)  # past the table the last value holds
    jitted, mapped = _both_ways(f, steps)
    assert mapped.dtype == np.float32
    np.testing.assert_array_equal(mapped, expected)
    np.testing.assert_array_equal(jitted, expected[:: STEPS // 50])


@pytest.mark.parametrize("s", FINITE, ids=repr)
def test_with_x64_the_values_are_lrkits_to_1e_12(x64: None, s: lrkit.Schedule) -> None:
    f = lo.schedule(s)
    _, mapped = _both_ways(f, np.arange(STEPS))
    assert mapped.dtype == np.float64
    np.testing.assert_allclose(mapped, s.values(np.arange(STEPS)), rtol=1e-12, atol=0)  # finite: exact also past the table


@pytest.mark.parametrize("s", FINITE, ids=repr)
def test_a_finite_table_ends_where_the_schedule_starts_holding(s: lrkit.Schedule) -> None:
    end = lo.settles(s)
    assert end is not None and len(lo.schedule(s).table) == end + 1
    tail = s.values(np.arange(end, end + 3000))
    assert np.all(tail == tail[0])


def test_horizon_bounds_a_table_and_the_last_value_holds() -> None:
    f = lo.schedule(lrkit.cosine(start=1.0, steps=1000), horizon=10)
    assert len(f.table) == 11 and float(f(10**6)) == np.float32(lrkit.cosine(start=1.0, steps=1000)(10))


@pytest.mark.parametrize("s", ENDLESS, ids=repr)
def test_an_endless_schedule_without_horizon_is_refused(s: lrkit.Schedule) -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"lrkit.optax.schedule: parameter 'horizon' must be given for a schedule that never"):
        lo.schedule(s)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"s": 0.1}, TypeError, "parameter 's' must be an lrkit schedule, got 0.1"),
        ({"s": lrkit.constant(0.1), "horizon": -1}, lrkit.ScheduleError, "parameter 'horizon' must be an integer in"),
        ({"s": lrkit.constant(0.1), "horizon": 2.0}, TypeError, "parameter 'horizon' must be an integer in"),
        ({"s": lrkit.cosine(start=0.1, steps=2**40)}, lrkit.ScheduleError, "must bound the table"),
    ],
)
def test_bad_arguments_raise_lrkit_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        lo.schedule(**kwargs)


def test_it_pickles_as_its_schedule_and_horizon() -> None:
    f = lo.schedule(ENDLESS[0], horizon=100)
    g = pickle.loads(pickle.dumps(f))
    assert g == f and float(g(50)) == float(f(50)) and repr(g) == repr(f)


# -- reduce on plateau ------------------------------------------------------------------------------------------------
RULES = [
    {},
    {"patience": 3, "factor": 0.5},
    {"patience": 2, "cooldown": 3, "rtol": 0.0, "atol": 0.05},
    {"patience": 1, "accumulation_size": 4, "min_scale": 0.02, "factor": 0.3},
    {"patience": 5, "cooldown": 1, "rtol": 0.01, "atol": 0.001},
]


def _losses(seed: int, n: int = 3000) -> np.ndarray:
    """A falling loss with long flat stretches, noise and exact repeats: every branch of the rule is taken."""
    rng = np.random.default_rng(seed)
    level = np.repeat(np.cumprod(rng.choice([1.0, 0.97, 1.0, 1.02], size=n // 10)), 10)
    return (level * (1 + 0.01 * rng.standard_normal(n)) * rng.choice([1.0, 1.0, 1.0 + 1e-6], size=n)).astype(np.float32)


def _train(tx: optax.GradientTransformation, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jitted steps of a quadratic model (scanned), the plateau fed the given losses; the parameters, scales and lrs per step."""

    def step(carry: tuple, value: jax.Array) -> tuple[tuple, tuple]:
        params, state = carry
        grads = jax.grad(lambda p: jnp.sum((p - 1.0) ** 2))(params)
        updates, state = tx.update(grads, state, params, value=value)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, state[1].scale, getattr(state[1], "lr", 0.0))

    params = jnp.zeros(3)
    _, (path, scales, lrs) = jax.jit(lambda v: jax.lax.scan(step, (params, tx.init(params)), v))(jnp.asarray(losses))
    return np.asarray(path), np.asarray(scales), np.asarray(lrs)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rule", RULES, ids=str)
def test_plateau_equals_optax_reduce_on_plateau_inside_a_jitted_step(rule: dict, seed: int) -> None:
    s = lrkit.warmup(lrkit.cosine(start=0.05, steps=2500), steps=100)
    losses = _losses(seed)
    ours, our_scales, lrs = _train(optax.chain(optax.scale_by_adam(), lo.plateau(s, **rule)), losses)
    theirs, their_scales, _ = _train(optax.chain(optax.adam(lo.schedule(s)), optax.contrib.reduce_on_plateau(**rule)), losses)
    assert len(set(our_scales.tolist())) > 2  # the sequence really moves
    np.testing.assert_array_equal(our_scales, their_scales)
    np.testing.assert_allclose(lrs, s.values(np.arange(len(losses))) * our_scales, rtol=1e-6, atol=1e-30)  # scales cut to subnormals
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)  # optax rounds -lr * scale * g in another order


def test_plateau_takes_any_optax_schedule_and_vmaps() -> None:
    tx = lo.plateau(optax.linear_schedule(0.1, 0.0, 100), patience=1)
    states = jax.vmap(tx.init)(jnp.zeros((4, 2)))
    values = jnp.asarray([1.0, 2.0, 0.5, 1.0])
    for _ in range(3):
        _, states = jax.vmap(lambda g, st, v: tx.update(g, st, None, value=v))(jnp.ones((4, 2)), states, values)
    assert states.scale.shape == (4,) and states.step.tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 1.0}, "parameter 'factor' must lie in"),
        ({"patience": 0}, "parameter 'patience' must be a positive integer"),
        ({"rtol": 0.0, "atol": 0.0}, "parameter 'atol' must be > 0 when rtol is 0"),
        ({"rtol": 1.5}, "parameter 'rtol' must lie in"),
        ({"accumulation_size": 0}, "parameter 'accumulation_size'"),
        ({"min_scale": -1.0}, "parameter 'min_scale' must be >= 0"),
    ],
)
def test_plateau_rejects_bad_arguments_by_name(kwargs: dict, match: str) -> None:
    with pytest.raises(lrkit.ControlError, match=match):
        lo.plateau(lrkit.constant(0.1), **kwargs)


def test_plateau_rejects_a_non_schedule() -> None:
    with pytest.raises(lrkit.ScheduleError, match="parameter 's' must be an lrkit schedule or an optax schedule"):
        lo.plateau(0.1)  # type: ignore[arg-type]
