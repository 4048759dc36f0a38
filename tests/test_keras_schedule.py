"""lrkit.keras.LearningRateSchedule: the lrkit value at every step in a real Keras optimizer, saved and loaded with the model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import lrkit  # noqa: E402
import lrkit.keras  # noqa: E402
from lrkit.errors import ScheduleError  # noqa: E402

STEPS = 5000  # past the growing table's first chunk (4096 steps)
SCHEDULES = {
    "warmup-cosine": lrkit.warmup(lrkit.cosine(start=0.1, steps=3000), steps=500),
    "sgdr": lrkit.sgdr(start=0.1, first_cycle=700, cycle_mult=2.0),
    "cyclic": lrkit.cyclic(low=1e-3, high=0.1, half_cycle=333, mode="triangular2"),
    "one-cycle": lrkit.one_cycle(peak=0.1, total_steps=4000),
    "exponential": lrkit.exponential(start=0.1, rate=0.5, every=1000),
    "multistep": lrkit.multistep(start=0.1, milestones=(1000, 2500, 4200), factor=0.3),
    "wsd": lrkit.wsd(peak=0.1, total_steps=4500, warmup_steps=200, decay_steps=900),
    "product": lrkit.constant(0.5) * lrkit.inverse_sqrt(peak=0.1, warmup_steps=100),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Keras' tiny steps are slower on threads shared with other test workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def float32(s: lrkit.Schedule, steps: np.ndarray) -> np.ndarray:
    return s.values(steps).astype(np.float32)  # Keras' lr is float32: the lrkit value, rounded once


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_equals_lrkit_at_every_step_with_a_horizon_and_holds_past_it(name: str) -> None:
    s = SCHEDULES[name]
    lr = lrkit.keras.LearningRateSchedule(s, horizon=STEPS - 1)
    t = np.arange(STEPS + 1000)
    got = keras.ops.convert_to_numpy(lr(t))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:STEPS], float32(s, t[:STEPS]))
    assert (got[STEPS:] == got[STEPS - 1]).all()  # past the horizon the value at the horizon holds


@pytest.mark.parametrize("name", ["sgdr", "exponential", "product"])
def test_without_a_horizon_the_table_grows_exactly(name: str) -> None:
    s = SCHEDULES[name]
    lr = lrkit.keras.LearningRateSchedule(s)
    steps = [*range(0, STEPS, 7), 4095, 4096, 4097, 9000, 123_457]
    got = np.array([float(lr(t)) for t in steps], dtype=np.float32)
    np.testing.assert_array_equal(got, float32(s, np.array(steps)))


def tiny_model(schedule: object, optimizer: type = keras.optimizers.SGD) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer(learning_rate=schedule), loss="mse")
    return model


def data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")


@pytest.mark.parametrize("optimizer", [keras.optimizers.SGD, keras.optimizers.Adam])
def test_the_optimizer_uses_the_value_of_each_step(optimizer: type) -> None:
    s = lrkit.warmup(lrkit.cosine(start=0.1, steps=200), steps=100)
    model = tiny_model(lrkit.keras.LearningRateSchedule(s), optimizer)
    seen: list[float] = []
    record = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: seen.append(float(model.optimizer.learning_rate)))
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=40, verbose=0, callbacks=[record])  # 320 updates: warmup, cosine, its end
    np.testing.assert_array_equal(np.array(seen, np.float32), float32(s, np.arange(320)))
    assert int(model.optimizer.iterations) == 320


def test_sgd_update_is_the_lr_times_the_gradient() -> None:
    s = lrkit.linear(start=0.2, end=0.0, steps=10)
    model = tiny_model(lrkit.keras.LearningRateSchedule(s))
    x, y = data(8)
    for step in range(3):
        before = [w.detach().clone() for w in (v.value for v in model.trainable_weights)]
        loss = torch.nn.functional.mse_loss(model(x), torch.as_tensor(y))
        grads = torch.autograd.grad(loss, [v.value for v in model.trainable_weights])
        model.train_on_batch(x, y)
        for w0, g, v in zip(before, grads, model.trainable_weights):
            torch.testing.assert_close(v.value.detach(), w0 - np.float32(s(step)) * g, rtol=1e-5, atol=1e-7)


def test_model_save_and_load_bring_the_schedule_and_its_scale_back(tmp_path: Path) -> None:
    s = SCHEDULES["sgdr"]
    lr = lrkit.keras.LearningRateSchedule(s, horizon=20_000)
    model = tiny_model(lr)
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    lr.scale = 0.25  # as a plateau would leave it
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    back = loaded.optimizer._learning_rate
    assert isinstance(back, lrkit.keras.LearningRateSchedule)
    assert back.schedule == s and back.horizon == 20_000 and back.scale == 0.25
    assert int(loaded.optimizer.iterations) == 24
    assert float(loaded.optimizer.learning_rate) == np.float32(0.25 * s(24))
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)  # training goes on from the saved step
    assert float(loaded.optimizer.learning_rate) == np.float32(0.25 * s(32))


def test_config_is_the_lrkit_spec_and_keras_serialization_round_trips() -> None:
    s = SCHEDULES["warmup-cosine"]
    lr = lrkit.keras.LearningRateSchedule(s)
    config = keras.optimizers.schedules.serialize(lr)
    assert config["config"]["schedule"] == repr(s) and lrkit.parse(config["config"]["schedule"]) == s
    back = keras.optimizers.schedules.deserialize(config)
    assert isinstance(back, lrkit.keras.LearningRateSchedule) and back.schedule == s
    assert lrkit.keras.LearningRateSchedule(repr(s)).schedule == s  # the spec text is accepted as well


def test_matches_keras_own_exponential_decay() -> None:
    ours = lrkit.keras.LearningRateSchedule(lrkit.exponential(start=0.1, rate=0.5, every=100), horizon=3000)
    theirs = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    t = np.arange(3000)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(t)), [float(theirs(i)) for i in t], rtol=2e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"schedule": 0.1}, TypeError, "parameter 'schedule' must be an lrkit schedule or its spec text, got 0.1"),
        ({"schedule": "cosine(start=0.1)"}, ScheduleError, "'steps' is required"),
        ({"schedule": lrkit.constant(0.1), "horizon": -1}, ScheduleError, "parameter 'horizon' must be an integer in"),
        ({"schedule": lrkit.constant(0.1), "horizon": 2.5}, TypeError, "parameter 'horizon'"),
        ({"schedule": lrkit.constant(0.1), "scale": -1.0}, ScheduleError, "parameter 'scale' must be >= 0, got -1.0"),
    ],
)
def test_bad_arguments_raise_lrkit_errors(kwargs: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        lrkit.keras.LearningRateSchedule(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ScheduleError)


def test_another_keras_backend_is_refused_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from lrkit.errors import LrkitValueError
    from lrkit.keras._backend import load

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")  # as if Keras had been imported with KERAS_BACKEND=jax first
    with pytest.raises(LrkitValueError, match=r"lrkit.keras: parameter 'KERAS_BACKEND' must be 'torch' .*, got 'jax'"):
        load()
