"""lrkit.keras.find_lr: the range test on a compiled Keras model, everything restored, lrkit's result and rules;
and the classic blobs experiment in Keras giving the lab's numbers (shortened; bench/keras_blobs.py is the full one)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import lrkit  # noqa: E402
import lrkit.keras  # noqa: E402
from lrkit.errors import FinderError  # noqa: E402
from lrkit.lab.problems import get_problem  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs_model(optimizer: keras.optimizers.Optimizer) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(50, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


@pytest.mark.parametrize("lr", [0.01, lrkit.keras.LearningRateSchedule(lrkit.warmup(lrkit.constant(0.01), steps=50))])
def test_find_lr_restores_weights_and_optimizer_state_and_suggests_like_lrkit(lr: object) -> None:
    p = get_problem("blobs")
    x, y = p.x_train.numpy(), p.y_train.numpy()
    model = blobs_model(keras.optimizers.Adam(learning_rate=lr))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # Adam's moments and step count are not zero any more
    before = [v.numpy().copy() for v in [*model.variables, *model.optimizer.variables]]
    paths = [v.path for v in model.optimizer.variables]
    lr_before = float(model.optimizer.learning_rate)
    result = lrkit.keras.find_lr(model, x, y, start=1e-5, end=10.0, steps=80)
    assert [v.path for v in model.optimizer.variables] == paths  # the ramp is not left behind as an optimizer variable
    assert isinstance(result, lrkit.LRFinderResult) and result.signal == "train loss" and result.lr_before == lr_before
    for saved, v in zip(before, [*model.variables, *model.optimizer.variables]):
        np.testing.assert_array_equal(v.numpy(), saved)
    assert model.optimizer._learning_rate is lr or not isinstance(lr, lrkit.keras.LearningRateSchedule)
    assert float(model.optimizer.learning_rate) == lr_before
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-5, 10.0, 80)[: len(result.lrs)], rtol=1e-9)
    again = lrkit.LRFinderResult.from_runs(result.lrs, result.runs, stop_reason=result.stop_reason, smoothing=0.98)
    assert again.suggestions == result.suggestions  # the pure rules of lrkit.find_lr, nothing Keras-made
    assert 1e-4 < result.suggestion < 1.0  # Adam on blobs: the torch range test suggests about 1e-2


def test_a_model_saved_after_find_lr_loads_with_its_optimizer_state(tmp_path: Path) -> None:
    p = get_problem("blobs")
    x, y = p.x_train.numpy(), p.y_train.numpy()
    model = blobs_model(keras.optimizers.SGD(lrkit.keras.LearningRateSchedule(lrkit.cosine(start=0.1, steps=500)), momentum=0.9))
    lrkit.keras.find_lr(model, x, y, steps=20, start=1e-3, end=1.0)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) > 0
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_find_lr_with_validation_data_and_bad_inputs() -> None:
    p = get_problem("blobs")
    x, y = p.x_train.numpy(), p.y_train.numpy()
    model = blobs_model(keras.optimizers.SGD(0.1))
    result = lrkit.keras.find_lr(model, x, y, steps=20, start=1e-3, end=1.0, validation_data=(p.x_test.numpy()[:64], p.y_test.numpy()[:64]))
    assert result.signal == "validation loss" and 10 <= len(result.lrs) <= 20 and result.stop_reason in ("completed", "diverged")
    with pytest.raises(FinderError, match="find_lr: parameter 'steps' must be an integer >= 10, got 5"):
        lrkit.keras.find_lr(model, x, y, steps=5)
    with pytest.raises(FinderError, match="find_lr: parameter 'x' must hold inputs and targets of one equal"):
        lrkit.keras.find_lr(model, x, y[:10])
    with pytest.raises(FinderError, match="find_lr: parameter 'model' must be compiled"):
        lrkit.keras.find_lr(keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]), x, y)


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "keras_blobs.py"
    spec = importlib.util.spec_from_file_location("keras_blobs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_keras_blobs_gives_the_lab_numbers_within_seed_noise() -> None:
    rows = _bench().compare((0.1, 1e-6), seeds=3, epochs=20)  # the full run: 8 lrs x 3 seeds x 200 epochs
    for r in rows:
        noise = np.hypot(r["lab_std"], r["keras_std"])
        assert abs(r["keras_acc"] - r["lab_acc"]) <= 0.05 + 2 * noise, r
        assert r["keras_diverged"] == r["lab_diverged"] == 0
    good, tiny = rows
    assert good["keras_acc"] > 0.7 and tiny["keras_acc"] < 0.5  # the lab's finding: a good lr learns, a tiny one does not
