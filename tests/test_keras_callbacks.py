"""lrkit.keras's callbacks in real Keras fits: Plateau against Keras' own ReduceLROnPlateau and on top of a schedule,
Guard restoring bad batches, Monitor recording the batch's loss, lr and gradient norm."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import lrkit  # noqa: E402
import lrkit.keras  # noqa: E402
from lrkit.errors import ControlError, DivergenceError  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_with(lr: Any, metrics: list[str] | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse", metrics=metrics)
    return model


def data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.1 * rng.normal(size=(n, 1))).astype("float32")


# -- Plateau -------------------------------------------------------------------
PLATEAU_CASES = [
    {"patience": 3},
    {"patience": 0},
    {"patience": 1, "cooldown": 2},
    {"patience": 2, "cooldown": 1, "min_delta": 0.05},
    {"patience": 2, "factor": 0.5, "min_lr": 0.004},
    {"patience": 4, "cooldown": 3, "mode": "max", "monitor": "val_acc"},
]


@pytest.mark.parametrize("case", PLATEAU_CASES)
@pytest.mark.parametrize("walk", [0, 1, 2])
def test_plateau_gives_keras_own_lrs_on_a_constant_lr(case: dict[str, Any], walk: int) -> None:
    kwargs = {"monitor": "val_loss", **case}
    metrics = 1.0 + np.cumsum(np.random.default_rng(walk).normal(0.0, 0.05, 200))  # a noisy walk: plateaus and progress
    ours_model, keras_model = model_with(0.1), model_with(0.1)
    ours, theirs = lrkit.keras.Plateau(**kwargs), keras.callbacks.ReduceLROnPlateau(**kwargs)
    ours.set_model(ours_model)
    theirs.set_model(keras_model)
    ours.on_train_begin()
    theirs.on_train_begin()
    changes = 0
    for epoch, value in enumerate(metrics):
        ours.on_epoch_end(epoch, {kwargs["monitor"]: float(value)})
        theirs.on_epoch_end(epoch, {kwargs["monitor"]: float(value)})
        ours_lr, keras_lr = float(ours_model.optimizer.learning_rate), float(keras_model.optimizer.learning_rate)
        assert ours_lr == pytest.approx(keras_lr, rel=1e-6), f"epoch {epoch}"
        changes += ours_lr != pytest.approx(0.1)
    assert changes > 0  # the walk does reach plateaus


def test_plateau_works_on_top_of_a_schedule_where_keras_own_refuses() -> None:
    s = lrkit.warmup(lrkit.cosine(start=0.1, steps=400), steps=40)
    lr = lrkit.keras.LearningRateSchedule(s)
    x, y = data()
    theirs = keras.callbacks.ReduceLROnPlateau(monitor="loss", min_delta=10.0, patience=1)
    with pytest.raises(TypeError, match="not settable"):  # Keras' own callback cannot reduce a scheduled lr
        model_with(lrkit.keras.LearningRateSchedule(s)).fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[theirs])
    model = model_with(lr)
    seen: list[tuple[int, float]] = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append((int(model.optimizer.iterations), float(model.optimizer.learning_rate)))
    )
    plateau = lrkit.keras.Plateau(monitor="loss", patience=2, min_delta=10.0)  # no epoch improves by 10: reductions after epochs 2, 4, 6
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0, callbacks=[plateau, record])
    scales = [0.1 ** (epoch // 2) for epoch in range(8)]  # the scale in force after each epoch's end
    expected = [np.float32(s(t) * (1.0 if t < 4 else scales[t // 4 - 1])) for t, _ in seen]
    np.testing.assert_allclose([v for _, v in seen], expected, rtol=1e-6)
    assert lr.scale == pytest.approx(1e-3) and plateau.state is not None and plateau.state.changes == 3
    np.testing.assert_allclose(history.history["learning_rate"], [np.float32(s(4 * (e + 1)) * scales[e]) for e in range(8)], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1.5}, "parameter 'factor' must lie in (0.0, 1.0), got 1.5"),
        ({"mode": "maximum"}, "parameter 'mode' must be one of 'auto', 'min', 'max', got 'maximum'"),
        ({"min_delta": -1e-4}, "parameter 'min_delta' must be >= 0, got -0.0001"),
        ({"patience": -1}, "parameter 'patience' must be an integer >= 0, got -1"),
    ],
)
def test_plateau_bad_arguments_raise(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError) as info:
        lrkit.keras.Plateau(**kwargs)
    assert str(info.value) == f"Plateau: {message}"


def test_plateau_missing_metric_raises_instead_of_warning() -> None:
    x, y = data()
    with pytest.raises(ControlError, match=r"parameter 'monitor' must name a logged quantity .*got 'val_loss'"):
        model_with(0.1).fit(x, y, epochs=1, verbose=0, callbacks=[lrkit.keras.Plateau()])


# -- Guard ---------------------------------------------------------------------
def poisoned(x: np.ndarray, y: np.ndarray, batches: tuple[int, ...], batch_size: int = 8, value: float = np.nan) -> np.ndarray:
    y = y.copy()
    for b in batches:
        y[b * batch_size : (b + 1) * batch_size] = value
    return y


def test_guard_skips_a_nan_batch_exactly() -> None:
    x, y = data()
    s = lrkit.cosine(start=0.05, steps=40)
    guarded, clean = model_with(lrkit.keras.LearningRateSchedule(s)), model_with(lrkit.keras.LearningRateSchedule(s))
    guard = lrkit.keras.Guard()
    history = guarded.fit(x, poisoned(x, y, (3,)), batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[guard])
    keep = np.r_[0:24, 32:64]  # the same batches without the poisoned one
    clean.fit(x[keep], y[keep], batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert [(i.step, i.kind, i.action, i.steps_lost) for i in guard.incidents] == [(3, "nonfinite_loss", "skip", 0)]
    assert int(guarded.optimizer.iterations) == 7  # the skipped batch did not count as an update: the schedule is not shifted
    for a, b in zip(guarded.get_weights(), clean.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert np.isfinite(history.history["loss"]).all()  # the epoch's logged mean leaves the bad batch out


def test_guard_restores_a_spike_and_cuts_the_lr_only_when_it_repeats() -> None:
    x, y = data(512)
    lr = lrkit.keras.LearningRateSchedule(lrkit.constant(0.01))
    model = model_with(lr)
    guard = lrkit.keras.Guard(snapshot_every=10)
    model.fit(x, poisoned(x, y, (35, 50), value=1e3), batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[guard])
    first, second = guard.incidents
    assert (first.step, first.kind, first.action, first.restored_step, first.steps_lost) == (35, "spike", "restore", 30, 5)
    assert (second.step, second.kind, second.action) == (50, "spike", "rollback")  # repeated before the run recovered
    assert second.lr_after == pytest.approx(0.5 * second.lr_before)
    assert lr.scale == 0.5 and guard.scale == 0.5 and guard.rollbacks == 1
    assert np.isfinite(model.get_weights()[0]).all()


def test_guard_gives_up_on_a_real_divergence_with_a_clear_error() -> None:
    x, y = data(256)
    model = model_with(50.0)
    with pytest.raises(DivergenceError, match=r"training diverged again at step .* after 2 rollbacks"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[lrkit.keras.Guard(max_rollbacks=2)])


def test_guard_bad_arguments_raise() -> None:
    with pytest.raises(ControlError, match="Guard: parameter 'cut' must lie in"):
        lrkit.keras.Guard(cut=0.0)
    with pytest.raises(ControlError, match="must be compiled"):
        g = lrkit.keras.Guard()
        g.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        g.on_train_begin()


# -- Monitor -------------------------------------------------------------------
def test_monitor_records_the_batch_loss_lr_and_gradient_norm() -> None:
    x, y = data()
    s = lrkit.step_decay(start=0.05, factor=0.5, every=5)
    model = model_with(lrkit.keras.LearningRateSchedule(s))
    xb, yb = x[:16], y[:16]
    weights = [v.value for v in model.trainable_weights]
    loss0 = torch.nn.functional.mse_loss(model(xb), torch.as_tensor(yb))
    norm0 = float(torch.nn.utils.get_total_norm(torch.autograd.grad(loss0, weights)))
    mon = lrkit.keras.Monitor()
    model.fit(x, y, batch_size=16, epochs=12, shuffle=False, verbose=0, callbacks=[mon])
    h = mon.history
    assert h["step"].tolist() == list(range(48))
    np.testing.assert_array_equal(h["lr"].astype(np.float32), s.values(range(48)).astype(np.float32))
    assert h["loss"][0] == pytest.approx(loss0.item(), rel=1e-5)  # the batch's own loss, not the epoch's running mean
    assert h["grad_norm"][0] == pytest.approx(norm0, rel=1e-5)
    assert np.isnan(h["update_ratio"][0]) and (h["update_ratio"][1:] > 0).all()
    assert (h["momentum"] == 0.0).all()
    assert [f.kind for f in mon.diagnose()]  # the findings of lrkit.analysis.diagnose
