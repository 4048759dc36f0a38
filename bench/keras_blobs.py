"""The classic blobs experiment in Keras 3 (torch backend) with lrkit's schedule and monitor, against the lab's numbers.

The lab's `lr` study: `lrkit.lab.problems.get_problem("blobs")` (1000 points, 3 classes, the
classic split), an MLP 2-50-3 (ReLU, He-uniform hidden, Glorot-uniform output, zero biases),
plain SGD at a constant lr, batches of 32, 200 epochs. Here the same run is written in Keras:
`keras.optimizers.SGD(lrkit.keras.LearningRateSchedule(lrkit.constant(lr)))` and an
`lrkit.keras.Monitor`, and its test accuracy per lr (mean and std over seeds) is printed beside
the lab's population trainer's. Seeds differ between the two (Keras draws its own initial weights
and order), so agreement means within seed noise; a run whose loss is not finite counts as diverged.
`tests/test_keras_blobs.py` runs a shortened version.

    OMP_NUM_THREADS=1 .venv/bin/python bench/keras_blobs.py [--seeds 3] [--epochs 200]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

import lrkit
import lrkit.keras
from lrkit.lab.problems import get_problem
from lrkit.lab.runner import study

LRS = tuple(10.0**-k for k in range(8))  # the lab's lr study: 1 ... 1e-7


def keras_run(lr: float, seed: int, epochs: int) -> tuple[float, bool, lrkit.keras.Monitor]:
    """One Keras run on blobs: (final test accuracy, whether the loss stopped being finite, its monitor)."""
    import keras

    p = get_problem("blobs")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(50, activation="relu", kernel_initializer="he_uniform"),
        keras.layers.Dense(3, kernel_initializer="glorot_uniform"),
    ])  # fmt: skip
    optimizer = keras.optimizers.SGD(learning_rate=lrkit.keras.LearningRateSchedule(lrkit.constant(lr)))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    monitor = lrkit.keras.Monitor(ratios=False)
    x, y = p.x_train.numpy(), p.y_train.numpy()
    model.fit(x, y, batch_size=p.batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[monitor])
    _, accuracy = model.evaluate(p.x_test.numpy(), p.y_test.numpy(), batch_size=len(x), verbose=0)
    diverged = not np.isfinite(monitor.history["loss"]).all()
    return float(accuracy), diverged, monitor


def compare(lrs: tuple[float, ...], seeds: int, epochs: int) -> list[dict[str, float]]:
    """Per lr: the lab's and Keras' mean and std test accuracy over `seeds` seeds, and how many runs diverged."""
    lab = {row["value"]: row for row in study("lr", values=list(lrs), seeds=seeds, epochs=epochs).summary()}
    rows = []
    for lr in lrs:
        runs = [keras_run(lr, seed, epochs) for seed in range(seeds)]
        accuracy = np.array([acc for acc, diverged, _ in runs if not diverged] or [math.nan])
        row = lab[f"{lr:g}"]
        rows.append({
            "lr": lr, "lab_acc": row["test_acc"], "lab_std": row["test_acc_std"], "lab_diverged": row["diverged"],
            "keras_acc": float(accuracy.mean()), "keras_std": float(accuracy.std()), "keras_diverged": sum(d for _, d, _ in runs),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = compare(LRS, args.seeds, args.epochs)
    print(f"blobs, plain SGD, {args.epochs} epochs, {args.seeds} seeds: test accuracy, mean ± std (diverged runs)")
    print(f"{'lr':>8}  {'lab':>17}  {'keras + lrkit':>17}  {'|diff|':>7}")
    for r in rows:
        lab = f"{r['lab_acc']:.3f} ± {r['lab_std']:.3f} ({r['lab_diverged']})"
        ker = f"{r['keras_acc']:.3f} ± {r['keras_std']:.3f} ({r['keras_diverged']})"
        print(f"{r['lr']:>8g}  {lab:>17}  {ker:>17}  {abs(r['lab_acc'] - r['keras_acc']):>7.3f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
