"""Tutorial 4: warm restarts and weight averaging — SGDR against cosine, then SWA on top.

After Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2017) and Izmailov et al.,
"Averaging Weights Leads to Wider Optima and Better Generalization" (2018), on the digits MLP with
SGD (momentum 0.9), 3 seeds:
1. one cosine decay over the whole budget against SGDR (cycles of 1/7, 2/7 and 4/7 of it), both in
   one batched population (`lrkit.lab.train`); SGDR has a good model at the end of every cycle;
2. SWA: SGD at a high constant lr (0.3) while `torch.optim.swa_utils.AveragedModel` averages the weights
   once per epoch over the last 25% — the average against the last iterate it was built from.

What it shows, with the numbers: on this small MLP SGDR and cosine end level (SGDR's cycle ends are
usable models along the way); the SWA average is far better than the noisy last iterate of a high
constant lr (a clearly lower test loss), though not better than a well-decayed cosine here.

Run: `python examples/04_restarts_and_averaging.py [FIGURES_DIR]` (about 15 s on one core).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from _tutorial import findings, out_dir, save

import lrkit
import lrkit.lab
from lrkit.torch.data import epoch_batches, steps_per_epoch

SEEDS, EPOCHS, LR, SWA_LR = 3, 28, 0.05, 0.3  # SWA_LR: a high constant lr, whose last iterate is noisy


def evaluate(model: torch.nn.Module, problem: lrkit.lab.Problem) -> tuple[float, float]:
    """Test loss and accuracy."""
    with torch.no_grad():
        out = model(problem.x_test)
        return float(problem.loss(out, problem.y_test)), float(problem.accuracy(out, problem.y_test))


def swa_run(problem: lrkit.lab.Problem, seed: int, per_epoch: int) -> dict[str, tuple[float, float]]:
    """SGD at the constant SWA_LR, the weights averaged once per epoch over the last 25%; (loss, acc) of last iterate and average."""
    torch.manual_seed(seed)
    model = problem.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    swa_start = (3 * EPOCHS // 4) * per_epoch
    sched, average = lrkit.Scheduler(opt, lr=lrkit.constant(SWA_LR)), torch.optim.swa_utils.AveragedModel(model)
    for step, (x, y) in enumerate(epoch_batches(problem.x_train, problem.y_train, problem.batch_size, seed, EPOCHS), 1):
        opt.zero_grad()
        problem.loss(model(x), y).backward()
        opt.step()
        sched.step()
        if step >= swa_start and step % per_epoch == 0:
            average.update_parameters(model)  # no BatchNorm in this MLP: no statistics to recompute
    return {"last iterate": evaluate(model, problem), "SWA average": evaluate(average.module, problem)}


def main() -> None:
    out = out_dir()
    problem = lrkit.lab.get_problem("digits")
    per_epoch = steps_per_epoch(len(problem.x_train), problem.batch_size)
    total = EPOCHS * per_epoch
    arms = {"cosine": lrkit.cosine(start=LR, steps=total), "sgdr": lrkit.sgdr(start=LR, first_cycle=math.ceil(total / 7), cycle_mult=2.0)}
    members = [lrkit.lab.Member(lr=s, optimizer="sgd(momentum=0.9)", seed=k) for s in arms.values() for k in range(SEEDS)]
    result = lrkit.lab.train(problem, members, epochs=EPOCHS)
    loss = result.test_loss.reshape(len(arms), SEEDS, -1).mean(axis=1)
    acc = result.test_acc.reshape(len(arms), SEEDS, -1).mean(axis=1)
    cycle_ends = [EPOCHS // 7, 3 * EPOCHS // 7, EPOCHS]  # the epochs where SGDR's cycles end (its lr is near 0)
    print(f"test loss / accuracy (mean of {SEEDS} seeds) after {EPOCHS} epochs: cosine {loss[0, -1]:.4f} / {acc[0, -1]:.3f},"
          f" SGDR {loss[1, -1]:.4f} / {acc[1, -1]:.3f}")  # fmt: skip
    print("at the end of each SGDR cycle (epochs " + ", ".join(map(str, cycle_ends)) + "): SGDR "
          + ", ".join(f"{acc[1, e - 1]:.3f}" for e in cycle_ends) + "; cosine at the same epochs "
          + ", ".join(f"{acc[0, e - 1]:.3f}" for e in cycle_ends))  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, name in enumerate(arms):
        ax.plot(np.arange(1, EPOCHS + 1), loss[i], label=name)
    ax.set(xlabel="epoch", ylabel="test loss", yscale="log", title="digits MLP, SGD momentum 0.9")
    ax.legend()
    save(fig, out, "sgdr-vs-cosine.png")

    runs = [swa_run(problem, seed, per_epoch) for seed in range(SEEDS)]
    swa = {name: [float(np.mean([r[name][i] for r in runs])) for i in (0, 1)] for name in runs[0]}
    print(f"SWA (constant lr {SWA_LR}, weights averaged each epoch over the last 25%): test loss / accuracy")
    for name, (test_loss, test_acc) in swa.items():
        print(f"  {name:>12}: {test_loss:.4f} / {test_acc:.3f}")
    findings({"final_loss": {"cosine": float(loss[0, -1]), "sgdr": float(loss[1, -1])},
              "final_accuracy": {"cosine": float(acc[0, -1]), "sgdr": float(acc[1, -1])},
              "sgdr_cycle_end_accuracy": [float(acc[1, e - 1]) for e in cycle_ends],
              "cosine_at_cycle_ends": [float(acc[0, e - 1]) for e in cycle_ends], "swa": swa})  # fmt: skip


if __name__ == "__main__":
    main()
