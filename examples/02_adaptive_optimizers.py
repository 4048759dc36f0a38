"""Tutorial 2: the adaptive optimizers compared at their defaults, and "3e-4 for Adam" examined.

SGD, AdaGrad, RMSprop and Adam, each at torch.optim's default lr (1e-3, 1e-2, 1e-2, 1e-3), train the
blobs MLP with five seeds in one batched population (`lrkit.lab.study("optimizer")`). Then Adam alone
over lrs from 1e-4 to 0.1, to see where Karpathy's famous 3e-4 lands on this problem.

What it shows, with the numbers: at the defaults plain SGD crawls while the adaptive optimizers learn;
3e-4 is a safe Adam lr (it learns and never diverges) but not this problem's best: a larger lr reaches
75% accuracy in fewer epochs. A default is a starting point, not a tuned value.

Run: `python examples/02_adaptive_optimizers.py [FIGURES_DIR]` (about 10 s on one core).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from _tutorial import findings, out_dir, save

import lrkit.lab

SEEDS, EPOCHS = 5, 100
ADAM_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def adam_sweep(problem: lrkit.lab.Problem) -> tuple[list[float], list[float]]:
    """Adam at each of ADAM_LRS (five seeds each, one population): mean final test accuracy and epochs to 75%."""
    members = [lrkit.lab.Member(lr=lr, optimizer="adam", seed=s) for lr in ADAM_LRS for s in range(SEEDS)]
    result = lrkit.lab.train(problem, members, epochs=EPOCHS)
    acc = result.test_acc.reshape(len(ADAM_LRS), SEEDS, -1)  # (lr, seed, epoch)
    reached = np.where((acc >= 0.75).any(axis=2), (acc >= 0.75).argmax(axis=2) + 1, np.inf)
    return acc[:, :, -1].mean(axis=1).tolist(), np.median(reached, axis=1).tolist()


def main() -> None:
    out = out_dir()
    study = lrkit.lab.study("optimizer", seeds=SEEDS, epochs=EPOCHS)
    defaults = {row["value"]: row["test_acc"] for row in study.summary()}
    print("at torch.optim's default lrs: final test accuracy (mean of 5 seeds)")
    for name, acc in defaults.items():
        print(f"  {name:>8}: {acc:.3f}")
    save(study.plot_curves("acc"), out, "optimizers-accuracy.png")

    final, epochs_to = adam_sweep(lrkit.lab.get_problem("blobs"))
    best = ADAM_LRS[int(np.argmin(epochs_to))]
    print("Adam: lr -> final test accuracy, median epochs to 75%")
    for lr, acc, reach in zip(ADAM_LRS, final, epochs_to):
        print(f"  {lr:g}: {acc:.3f}, {reach:g}")
    print(f"3e-4 reaches 75% in {epochs_to[1]:g} epochs; the fastest lr here, {best:g}, in {min(epochs_to):g}")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogx(ADAM_LRS, final, "o-")
    ax.axvline(3e-4, color="grey", ls="--", label="3e-4")
    ax.set(xlabel="Adam lr", ylabel="final test accuracy", title="Adam on blobs, 100 epochs")
    ax.legend()
    save(fig, out, "adam-lr.png")
    findings({"defaults": defaults, "adam_lrs": list(ADAM_LRS), "adam_final": final, "adam_epochs_to_75": epochs_to, "adam_fastest": best})


if __name__ == "__main__":
    main()
