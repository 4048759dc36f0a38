"""Tutorial 1: the dynamics of the learning rate on blobs — lr, momentum, decay and patience.

The classic study (an MLP 2 -> 50 -> 3 trained by SGD on three Gaussian blobs, after Brownlee's
"Understand the Dynamics of Learning Rate on Deep Learning Neural Networks") redone with `lrkit.lab`:
every (value, seed) is one member of a batched population, so five seeds cost about one run.

What it shows, with the numbers:
- lr 1.0 oscillates (its training accuracy swings from epoch to epoch), 0.1 and 0.01 learn,
  1e-4 and below crawl (far from the accuracy the good lrs reach);
- momentum 0.9 reaches the plateau sooner than plain SGD;
- with reduce-on-plateau, a short patience ends with a lower lr than a long one.

Run: `python examples/01_lr_dynamics.py [FIGURES_DIR]` (about 10 s on one core).
"""

from __future__ import annotations

import numpy as np
from _tutorial import findings, out_dir, save

import lrkit.lab

SEEDS, EPOCHS = 5, 100


def swing(study: lrkit.lab.StudyResult) -> dict[str, float]:
    """Per lr, how much the training accuracy swings from epoch to epoch over the second half (mean over seeds).

    The standard deviation of the epoch-to-epoch changes: a steady climb has none, an oscillation a lot.
    """
    out = {}
    for label, acc in study.curves("train_acc").items():
        changes = np.diff(acc[:, EPOCHS // 2 :], axis=1)
        out[label] = float(np.nanmean(changes.std(axis=1)))
    return out


def main() -> None:
    out = out_dir()
    lr = lrkit.lab.study("lr", values=[1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5], seeds=SEEDS, epochs=EPOCHS)
    acc = {row["value"]: row["test_acc"] for row in lr.summary()}
    swings = swing(lr)
    print("learning rate: final test accuracy (mean of 5 seeds), swing of the training accuracy from epoch to epoch")
    for label in lr.values:
        print(f"  lr {label:>6}: accuracy {acc[label]:.3f}, training accuracy swings {100 * swings[label]:.1f} points")
    save(lr.plot_curves("acc"), out, "lr-accuracy.png")
    save(lr.plot_sensitivity(), out, "lr-sensitivity.png")

    momentum = lrkit.lab.study("momentum", values=[0.0, 0.9], seeds=SEEDS, epochs=EPOCHS)
    reach = {row["value"]: row["epochs_to_0.75"] for row in momentum.summary(threshold=0.75)}
    print(f"momentum (lr 0.01): epochs to 75% test accuracy: 0 -> {reach['0']:g}, 0.9 -> {reach['0.9']:g}")
    save(momentum.plot_curves("acc"), out, "momentum-accuracy.png")

    decay = lrkit.lab.study("decay", values=[1e-1, 1e-3, 1e-4], seeds=SEEDS, epochs=EPOCHS)
    decayed = {row["value"]: (row["test_acc"], row["final_lr"]) for row in decay.summary()}
    for label, (a, last) in decayed.items():
        print(f"inverse-time decay {label}: final lr {last:.2g}, accuracy {a:.3f}")
    save(decay.plot_curves("acc"), out, "decay-accuracy.png")

    patience = lrkit.lab.study("patience", values=[2, 10], seeds=SEEDS, epochs=EPOCHS)
    final_lr = {row["value"]: row["final_lr"] for row in patience.summary()}
    print(f"reduce-on-plateau (factor 0.1): final lr with patience 2: {final_lr['2']:.2g}, with patience 10: {final_lr['10']:.2g}")
    save(patience.plot_curves("acc"), out, "patience-accuracy.png")
    findings({"accuracy": acc, "swing": swings, "epochs_to_75": reach, "decay": decayed, "patience_final_lr": final_lr})


if __name__ == "__main__":
    main()
