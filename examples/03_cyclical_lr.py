"""Tutorial 3: Smith's cyclical learning rates — the range test, bounds from it, triangular vs the tuned constant, one-cycle.

After Smith, "Cyclical Learning Rates for Training Neural Networks" (2017) and "Super-convergence" (2018):
1. the lr range test (`lrkit.torch.finder.find_on_problem`: 100 updates, the lr rising exponentially)
   on the digits MLP gives `bounds()`: where the loss starts to fall and where it stops;
2. a triangular cycle between those bounds (half-cycle: 4 epochs) against the best of five constant lrs;
3. one-cycle up to the upper bound.
All members (3 seeds each) train together in one batched population (`lrkit.lab.train`).

What it shows, with the numbers: the steps each schedule needs to reach 95% test accuracy and the
final accuracy. The triangular cycle, its bounds read off one 100-step test, comes within 1.25x of
the steps of the best of five constants (a sweep) and matches its final accuracy; one-cycle ends with
the highest accuracy of all. Smith's "fewer steps than the tuned constant" does not show on this small
MLP: the cycle's value here is that it needs no sweep.

Run: `python examples/03_cyclical_lr.py [FIGURES_DIR]` (about 20 s on one core).
"""

from __future__ import annotations

import numpy as np
from _tutorial import findings, out_dir, save

import lrkit
import lrkit.lab
from lrkit.torch.data import steps_per_epoch
from lrkit.torch.finder import find_on_problem

SEEDS, EPOCHS, TARGET = 3, 24, 0.95
CONSTANTS = (0.003, 0.01, 0.03, 0.1, 0.3)


def steps_to(acc: np.ndarray, steps_per_epoch: int) -> float:
    """Median over seeds of the optimizer steps until the test accuracy first reaches TARGET (inf if never)."""
    hit = acc >= TARGET
    steps = np.where(hit.any(axis=1), (hit.argmax(axis=1) + 1) * steps_per_epoch, np.inf)
    return float(np.median(steps))


def main() -> None:
    out = out_dir()
    problem = lrkit.lab.get_problem("digits")
    test = find_on_problem(problem, "sgd(momentum=0.9)", steps=100)
    low, high = test.bounds()
    print(f"range test (sgd momentum 0.9): loss falls from lr {low:.3g}, stops falling at {high:.3g}; suggestion {test.suggestion:.3g}")
    save(test.plot(), out, "range-test.png")

    per_epoch = steps_per_epoch(len(problem.x_train), problem.batch_size)
    total = EPOCHS * per_epoch
    arms: dict[str, lrkit.Schedule] = {f"constant {lr:g}": lrkit.constant(lr) for lr in CONSTANTS}
    arms["triangular"] = lrkit.cyclic(low=low, high=high, half_cycle=4 * per_epoch)
    arms["one-cycle"] = lrkit.one_cycle(peak=high, total_steps=total)
    members = [lrkit.lab.Member(lr=s, optimizer="sgd(momentum=0.9)", seed=k) for s in arms.values() for k in range(SEEDS)]
    result = lrkit.lab.train(problem, members, epochs=EPOCHS)
    acc = result.test_acc.reshape(len(arms), SEEDS, -1)
    reach = {name: steps_to(acc[i], per_epoch) for i, name in enumerate(arms)}
    final = {name: float(acc[i, :, -1].mean()) for i, name in enumerate(arms)}
    tuned = min(CONSTANTS, key=lambda lr: (reach[f"constant {lr:g}"], -final[f"constant {lr:g}"]))
    print(f"steps to {TARGET:.0%} test accuracy (median of {SEEDS} seeds) and final accuracy after {total} steps:")
    for name in arms:
        print(f"  {name:>16}: {reach[name]:>6g} steps, final {final[name]:.3f}")
    best = f"constant {tuned:g}"
    print(f"tuned constant (best of the sweep): {tuned:g}, {reach[best]:g} steps; triangular {reach['triangular']:g} steps"
          f" ({reach['triangular'] / reach[best]:.2f}x), one-cycle {reach['one-cycle']:g}; highest final accuracy:"
          f" {max(final, key=final.__getitem__)}")  # fmt: skip
    findings({"low": low, "high": high, "tuned_constant": tuned, "steps_to_target": reach, "final_accuracy": final,
              "total_steps": total})  # fmt: skip


if __name__ == "__main__":
    main()
