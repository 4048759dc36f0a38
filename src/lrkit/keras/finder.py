"""`lrkit.keras.find_lr`: the learning-rate range test for a compiled Keras model.

The ramp, the stopping rule and the result are lrkit's own (`lrkit.torch.finder`'s config, its
divergence test and its result assembly, `lrkit.LRFinderResult` with the pure suggestion rules);
what is Keras here is one `train_on_batch` per lr. The weights, the optimizer state (moments,
step count) and the metrics are copied before the test and put back after it, whatever happens.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.analysis import suggest
from lrkit.errors import FinderError
from lrkit.finder_result import LRFinderResult
from lrkit.keras._backend import load
from lrkit.keras._state import Snapshot, compiled, training_variables
from lrkit.keras.schedule import current_lr
from lrkit.torch.data import MinibatchOrder
from lrkit.torch.finder.config import FinderConfig
from lrkit.torch.finder.loop import DivergenceTest, Run, result

keras = load()
FUNC = "find_lr"


def find_lr(
    model: Any,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    batch_size: int = 32,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge: float | None = 4.0,
    validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    repeats: int = 1,
    seed: int = 0,
) -> LRFinderResult:
    """Run the range test on a compiled Keras model and suggest an lr; leaves weights and optimizer state as it found them.

    Args:
        model: a compiled, built `keras.Model` (its optimizer and loss are the ones tested).
        x, y: training inputs and targets (arrays of equal length); minibatches of `batch_size` in
            `lrkit.torch.data`'s shuffled order for `seed`, cycled as long as the test needs.
        start, end, steps, mode, smoothing, diverge, repeats: as in `lrkit.find_lr`.
        validation_data: `(x_val, y_val)`: record the validation loss after each update instead of the train loss.

    Example:
        >>> import keras, numpy as np, lrkit.keras
        >>> keras.utils.set_random_seed(0)
        >>> x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32"); y = (x[:, 0] > x[:, 1]).astype("int64")
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
        >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        >>> model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
        >>> before = model.get_weights()[0].copy()
        >>> result = lrkit.keras.find_lr(model, x, y, start=1e-4, end=10, steps=60)
        >>> 1e-4 < result.suggestion < 10, bool((model.get_weights()[0] == before).all()), round(float(model.optimizer.learning_rate), 6)
        (True, True, 0.1)
    """
    config = FinderConfig(start=start, end=end, steps=steps, mode=mode, smoothing=smoothing, diverge=diverge, repeats=repeats)
    model = compiled(FUNC, model, FinderError)
    batches = _batches(x, y, validate.integer(FUNC, "batch_size", batch_size, FinderError), validate.seed(FUNC, "seed", seed, FinderError))
    val = None if validation_data is None else _pair(validation_data)
    table = config.lrs()
    optimizer = model.optimizer
    lr_before = current_lr(optimizer)
    state = Snapshot([*training_variables(model), *model.metrics_variables])
    original = optimizer._learning_rate  # Keras' setter refuses to swap a schedule for a number, so the test swaps the object
    ramp = keras.Variable(float(table[0]), dtype=keras.config.floatx(), trainable=False, name="lrkit_find_lr")
    runs: list[Run] = []
    try:
        optimizer._learning_rate = ramp
        for i in range(config.repeats):
            if i:
                state.restore()  # each repeat starts from the same weights but sees fresh batches
            runs.append(_run(config, model, ramp, table, batches, val))
    finally:
        optimizer._learning_rate = original
        _untrack(optimizer, ramp)
        state.restore()
    return result(runs, config, table.size, lr_before=lr_before, signal=f"{'validation' if val is not None else 'train'} loss")


def _untrack(optimizer: Any, ramp: Any) -> None:
    """Forget the ramp Keras tracked as an optimizer variable when it was set: a saved model would not load its optimizer."""
    tracker = getattr(optimizer, "_tracker", None)
    if tracker is not None:
        tracker.untrack(ramp)


def _run(config: FinderConfig, model: Any, ramp: Any, table: npt.NDArray[np.float64], batches: Iterator[tuple[Any, Any]],
         val: tuple[Any, Any] | None) -> Run:  # fmt: skip
    """One ramp: an update at each lr of `table`, the signal recorded, until done, non-finite or diverged."""
    lrs: list[float] = []
    signal: list[float] = []
    stop = DivergenceTest(config.diverge, max(3, table.size // 10), config.smoothing)
    for lr in table:
        ramp.assign(float(lr))
        xb, yb = next(batches)
        value = float(model.train_on_batch(xb, yb, return_dict=True)["loss"])
        if val is not None and math.isfinite(value):  # a non-finite train loss stops the test, whatever validation says
            value = float(model.evaluate(*val, batch_size=len(xb), verbose=0, return_dict=True)["loss"])
        lrs.append(float(lr))
        signal.append(value)
        if not math.isfinite(value):
            return Run(lrs, signal, "non-finite")
        if stop.update(float(suggest.objective(value, False))):
            return Run(lrs, signal, "diverged")
    return Run(lrs, signal, "completed")


def _pair(data: Any) -> tuple[Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        validate.wrong_type(FUNC, "validation_data", "must be a pair (x_val, y_val)", type(data).__name__, FinderError)
    x, y = np.asarray(data[0]), np.asarray(data[1])
    _same_length("validation_data", x, y)
    return x, y


def _same_length(param: str, x: npt.NDArray[Any], y: npt.NDArray[Any]) -> None:
    if x.ndim == 0 or len(x) == 0 or len(x) != len(y):
        validate.fail(FUNC, param, "must hold inputs and targets of one equal, non-zero length", (x.shape, y.shape), FinderError)


def _batches(x: npt.ArrayLike, y: npt.ArrayLike, batch_size: int, seed: int) -> Iterator[tuple[Any, Any]]:
    """Minibatches in lrkit's shuffled order for `seed` (`lrkit.torch.data`), epoch after epoch, for as long as asked."""
    xs, ys = np.asarray(x), np.asarray(y)
    _same_length("x", xs, ys)
    order = MinibatchOrder(len(xs), seed)

    def cycle() -> Iterator[tuple[Any, Any]]:
        while True:
            for idx in order.epoch(batch_size):
                yield xs[idx.numpy()], ys[idx.numpy()]

    return cycle()
